"""The memory presets' evidence: A_last and F_last on Fashion-MNIST Blurry10-Online.

er with every memory preset, and icarl with herding, closest-to-centre and random selection
(the same quotas: capacity // classes seen, chosen once per task), mlp400, memory 500, each run
a `python -m runner` subprocess into its own directory; finished runs are reused. Prints mean ±
std over seeds and writes the table and the per-run rows as CSV.

    .venv/bin/python bench/memory_evidence.py --seeds 1 2 3 --threads 1
    .venv/bin/python bench/memory_evidence.py --only er/ring er/gss --seeds 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baselines_table import mean_std  # noqa: E402
from bench.common import format_table  # noqa: E402
from bench.runs import REPO, run_or_reuse  # noqa: E402

ER_PRESETS = [
    "random",
    "reservoir",
    "class_balanced",
    "experience_balanced",
    "ring",
    "herding",
    "closest_to_center",
    "cluster",
    "uncertainty",
    "prototype",
    "gdumb",
    "gss",
]
# icarl's selection strategies on equal quotas (intake=task, groupby=class, no fill).
ICARL = {
    "herding": ["mem_manage=herding"],
    "closest_to_center": ["mem_manage=closest_to_center"],
    "random": [
        "mem_manage=parametric",
        "mem_manage.select=random",
        "mem_manage.intake=task",
        "mem_manage.fill=false",
    ],
}
SETTINGS = {(f"er/{name}", "er"): [f"mem_manage={name}"] for name in ER_PRESETS} | {
    (f"icarl/{name}", "icarl"): overrides for name, overrides in ICARL.items()
}


def run_one(label: str, mode: str, memory: list[str], seed: int, args: argparse.Namespace) -> dict:
    """One run (or the finished one on disk) and its summary row."""
    run_dir = Path(args.out) / label.replace("/", "_") / f"seed{seed}"
    overrides = [
        f"mode={mode}",
        *memory,
        "dataset=fashion_mnist",
        "stream=online",
        "exp=blurry10",
        "model=mlp400",
        f"mem_size={args.mem_size}",
        f"seed={seed}",
        "progress=false",
        f"num_threads={args.threads}",
    ]
    base = {"setting": label, "seed": seed}
    row = run_or_reuse(run_dir, overrides, f"{label} seed {seed}")
    if row is None:
        return {**base, "status": "failed"}
    scores = f"A_last {row['A_last']:.2f}  F_last {row['F_last']:.2f}  {row['wall_s']:.0f}s"
    print(f"{label:22s} seed {seed}: {scores}", flush=True)
    return {**row, **base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--only", nargs="+", default=None, help="labels such as er/ring")
    parser.add_argument("--mem-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench_memory"))
    args = parser.parse_args()
    settings = {k: v for k, v in SETTINGS.items() if args.only is None or k[0] in args.only}
    rows = [
        run_one(label, mode, memory, seed, args)
        for seed in args.seeds
        for (label, mode), memory in settings.items()
    ]
    runs = pd.DataFrame(rows)
    table = []
    for label, _ in settings:
        done = runs[(runs["setting"] == label) & (runs.get("status") == "complete")]
        table.append(
            {
                "setting": label,
                "seeds": len(done),
                "A_last": mean_std(done["A_last"]) if len(done) else "n/a",
                "F_last": mean_std(done["F_last"]) if len(done) else "n/a",
                "wall_s": mean_std(done["wall_s"]) if len(done) else "n/a",
            }
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "memory_runs.csv", index=False)
    pd.DataFrame(table).to_csv(out / "memory_table.csv", index=False)
    print(f"\nfashion_mnist, online blurry10, mlp400, mem {args.mem_size}, seeds {args.seeds}\n")
    print(format_table(table, list(table[0])))


if __name__ == "__main__":
    main()
