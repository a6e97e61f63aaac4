"""Selection speed: our strategies beside Continuum 1.2.7's herding functions, in one run.

Choosing 500 exemplars (250 per class) from 12,000 candidates of 400 features (2 classes x
6,000, the size of a Fashion-MNIST task with mlp400 features), one CPU thread. Features are
Gaussian, and mlp400's features of Fashion-MNIST's first two classes when the data set is
found. Each function is timed by the process's CPU time (other jobs on a shared machine do not
inflate it), best of --repeats. Continuum runs in its own environment (.venv-continuum, made by
scripts/setup_continuum.sh) in a subprocess on the same features; without it, ours alone.

    .venv/bin/python bench/memory_selection.py
    .venv/bin/python bench/memory_selection.py --csv bench/results/cpu_memory_selection.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_device, format_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONTINUUM_PYTHON = REPO / ".venv-continuum" / "bin" / "python"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# Continuum's functions, timed in their own interpreter (numpy), on the same .npy features.
CONTINUUM_SCRIPT = """
import json, sys, time
import numpy as np
from continuum.rehearsal import herd_closest_to_barycenter, herd_closest_to_cluster, herd_random
features, labels = np.load(sys.argv[1]), np.load(sys.argv[2])
n, repeats = int(sys.argv[3]), int(sys.argv[4])
x = np.arange(len(labels)); t = np.zeros(len(labels), dtype=np.int64)
result = {}
for name, fn in (("barycenter", herd_closest_to_barycenter), ("cluster", herd_closest_to_cluster),
                 ("random", herd_random)):
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        chosen, _, _ = fn(x, labels, t, features, n)
        best = min(best, time.process_time() - started)
    result[name] = {"ms": best * 1e3, "chosen": chosen.tolist()}
print(json.dumps(result))
"""


def gaussian_features(n_per_class: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((2 * n_per_class, dim)).astype(np.float32)
    return features, np.repeat([0, 1], n_per_class)


def mlp400_features(n_per_class: int) -> tuple[np.ndarray, np.ndarray] | None:
    """An untrained, seeded mlp400's features of Fashion-MNIST's classes 0 and 1 (if found)."""
    import torch

    from rainbow_runner.datasets import load_dataset
    from rainbow_runner.runner.models.networks import mlp

    try:
        data = load_dataset("fashion_mnist", str(REPO / "data"))
    except Exception:  # noqa: BLE001  (no data set here: Gaussian features only)
        return None
    picks = [torch.nonzero(data.train_y == c).flatten()[:n_per_class] for c in (0, 1)]
    indices = torch.cat(picks)
    torch.manual_seed(0)
    model = mlp((1, 28, 28), n_classes=2).eval()
    with torch.no_grad():
        features = model.features(data.train_x[indices].float() / 255)
    return features.numpy(), data.train_y[indices].numpy()


def time_ours(
    features: np.ndarray, labels: np.ndarray, n: int, repeats: int, stat: str = "best"
) -> dict:
    """ms (CPU time, best or median of repeats) and the choice of each of our strategies."""
    import torch

    from rainbow_runner.memory.herding import herding_selection
    from rainbow_runner.memory.strategies import STRATEGIES, GroupQuota
    from tests.memory.legacy import legacy_herding_selection

    torch.set_num_threads(1)
    x, y = torch.from_numpy(features), torch.from_numpy(labels).long()
    quota = GroupQuota(y, torch.bincount(y).clamp(max=n), 2 * n)
    calls = {
        "herding (before: aae1a0f)": lambda: legacy_herding_selection(x, y, n),
        "herding": lambda: herding_selection(x, y, n),
        "closest_to_center": lambda: STRATEGIES["closest_to_center"](x, y, y, quota, rng()),
        "cluster (k-means)": lambda: STRATEGIES["cluster"](x, y, y, quota, rng()),
        "random": lambda: STRATEGIES["random"](x, y, y, quota, rng()),
    }
    result = {}
    for name, call in calls.items():
        spent, chosen = [], None
        for _ in range(repeats):
            started = time.process_time()
            chosen = call()
            spent.append(time.process_time() - started)
        ms = (min(spent) if stat == "best" else float(np.median(spent))) * 1e3
        result[name] = {"ms": ms, "chosen": chosen.tolist()}
    return result


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def time_continuum(features: np.ndarray, labels: np.ndarray, n: int, repeats: int) -> dict | None:
    if not CONTINUUM_PYTHON.exists():
        return None
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "f.npy", features)
        np.save(Path(folder) / "y.npy", labels)
        command = [str(CONTINUUM_PYTHON), "-c", CONTINUUM_SCRIPT, "f.npy", "y.npy", str(n)]
        # Run outside the repository: its datasets/ folder would shadow Continuum's `datasets`.
        done = subprocess.run(
            [*command, str(repeats)],
            cwd=folder,
            capture_output=True,
            text=True,
            env={**os.environ, **SINGLE_THREAD},
            check=False,
        )
    if done.returncode != 0:
        print(f"Continuum failed:\n{done.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=6000)
    parser.add_argument("--dim", type=int, default=400)
    parser.add_argument("--keep", type=int, default=250, help="exemplars per class")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    parser.add_argument(
        "--stat", choices=["best", "median"], default="best", help="of our repeats' CPU times"
    )
    args = parser.parse_args(argv)
    cases = {"gaussian": gaussian_features(args.per_class, args.dim)}
    if args.dim == 400 and (real := mlp400_features(args.per_class)) is not None:
        cases["mlp400 fashion-mnist"] = real
    rows = []
    for case, (features, labels) in cases.items():
        ours = time_ours(features, labels, args.keep, args.repeats, args.stat)
        theirs = time_continuum(features, labels, args.keep, args.repeats) or {}
        same = ours["herding"]["chosen"] == ours["herding (before: aae1a0f)"]["chosen"]
        for name, found in ours.items():
            row = {"features": case, "library": "ours", "function": name, "ms": found["ms"]}
            row["note"] = "same choice as before" if name == "herding" and same else ""
            rows.append(row)
        for name, found in theirs.items():
            row = {"features": case, "library": "continuum 1.2.7", "function": name}
            mine = {"barycenter": "herding", "cluster": "closest_to_center"}.get(name)
            overlap = ""
            if mine:
                shared = len(set(found["chosen"]) & set(ours[mine]["chosen"]))
                overlap = f"{shared}/{len(found['chosen'])} shared with our {mine}"
            rows.append({**row, "ms": found["ms"], "note": overlap})
    header = (
        f"{describe_device(torch.device('cpu'))}, 1 thread, {2 * args.per_class} candidates x "
        f"{args.dim} features, {args.keep} per class, CPU ms ({args.stat} of {args.repeats})"
    )
    print(header)
    if not CONTINUUM_PYTHON.exists():
        print("(Continuum not installed: bash scripts/setup_continuum.sh; ours alone)")
    shown = [{**row, "ms": f"{row['ms']:.1f}"} for row in rows]
    print(format_table(shown, ["features", "library", "function", "ms", "note"]))
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=["features", "library", "function", "ms", "note"]
            )
            writer.writeheader()
            writer.writerows(rows)
        print(f"written: {args.csv}")
    return rows


if __name__ == "__main__":
    main()
