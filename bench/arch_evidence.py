"""Issue 19's evidence table: A_last and F_last of the architectural, generative and prompt-based
modes on Fashion-MNIST, per split (disjoint, blurry10) and stream (online, offline).

cwr_star, ar1, generative_replay, expert_gate, lamaml and l2p; mlp400 and memory 500 (mem_size
is ignored by the modes without a memory), `num_threads=1`; each run a `python -m runner`
subprocess into its own directory; finished runs are reused. A setting a mode refuses is run
anyway: the runner refuses it before training (a few CPU seconds) and the table quotes its
reason. A few more refusals (settings outside the grid) are probed the same way into
*_refusals.csv. The CPU budget of this machine sets a reduced protocol (PROTOCOL below, quoted in
the table): offline runs train 1 epoch per task (Fashion-MNIST's preset: 5), and a mode whose
step costs several plain steps has its own reduction. l2p runs on a vit_tiny (8x8 input)
pretrained on scikit-learn's digits here (no ImageNet weights can be downloaded), made once by
this script. Prints mean ± std over seeds; writes the table, the per-run rows and the refusals.

    .venv/bin/python bench/arch_evidence.py --seeds 1 2 3
    .venv/bin/python bench/arch_evidence.py --modes cwr_star --exps disjoint --seeds 1
"""

from __future__ import annotations

import argparse
import shutil
import sys
from itertools import product
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baselines_table import mean_std  # noqa: E402
from bench.common import format_table  # noqa: E402
from bench.runs import REPO, finished_run, run_or_reuse  # noqa: E402

MODES = ["cwr_star", "ar1", "expert_gate", "l2p", "generative_replay", "lamaml"]
EXPS = ["disjoint", "blurry10"]
STREAMS = ["online", "offline"]
# Fashion-MNIST is read from data_root (./data) or else Debian's /usr/share/datasets/fashion-mnist.
DATASET, MEM_SIZE = "fashion_mnist", 500
MODEL = {"l2p": "vit_tiny"}  # mlp400 for the others
OFFLINE = ["n_epoch=1"]  # offline: 1 epoch per task (Fashion-MNIST's preset: 5), for CPU time
VIT_WEIGHTS = "{vit_weights}"  # filled with the digits-pretrained vit_tiny's path
# Each mode's own overrides beyond the common ones: a checkpoint where needed, its reduction.
PROTOCOL: dict[str, list[str]] = {
    "cwr_star": [],
    "ar1": [],
    "expert_gate": [],
    "l2p": [f"model.weights={VIT_WEIGHTS}"],
    # Avalanche's default: the VAE trains for the solver's epochs (1); the mode's conf: 10
    "generative_replay": ["mode.generator_epochs=1"],
    "lamaml": [],
}
EXPENSIVE = {"lamaml"}  # its later seeds run after every other mode's
# Settings outside the grid, probed for their refusal message only (each refused before training).
REFUSAL_PROBES: list[tuple[str, list[str]]] = [
    ("l2p", ["model=mlp400"]),
    ("ar1", ["mem_manage=herding"]),
    ("ar1", ["mode.latent_layer=9"]),
]


def digits_vit(path: Path) -> Path:
    """A vit_tiny backbone trained 8 epochs on digits' training images (~10 s), written to path
    unless there: a backbone pretrained on another data set, as L2P assumes one (the e2e tests'
    l2p runs use it too)."""
    if path.exists():
        return path
    import torch
    from torch.nn import functional as F

    from rainbow_runner.datasets.registry import load_dataset
    from rainbow_runner.runner.models.vit import vit

    data = load_dataset("digits", "./data", False, None)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x, y = (data.train_x.float() / 255 - mean) / std, data.train_y
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = vit(data.image_shape, data.n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        for rows in torch.randperm(len(x), generator=generator).split(32):
            loss = F.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.backbone.state_dict(), path)
    return path


def overrides_of(mode: str, exp: str, stream: str, seed: int, args: argparse.Namespace) -> list:
    """The runner's overrides for one run of the protocol (online blurry10 in the order
    bench/baselines_table.py gives them, so its finished runs of these modes can be reused)."""
    own = [o.replace(VIT_WEIGHTS, str(args.vit_weights)) for o in PROTOCOL[mode]]
    return [
        f"mode={mode}",
        f"dataset={DATASET}",
        f"stream={stream}",
        f"exp={exp}",
        f"model={MODEL.get(mode, 'mlp400')}",
        f"mem_size={MEM_SIZE}",
        f"seed={seed}",
        "progress=false",
        f"num_threads={args.threads}",
        *(OFFLINE if stream == "offline" else []),
        *own,
    ]


def refusal(run_dir: Path) -> str:
    """The reason the runner logged for stopping a run (its last ERROR line), or ''."""
    log = run_dir / "run.log"
    if not log.exists():
        return ""
    errors = [line for line in log.read_text().splitlines() if "[ERROR]" in line]
    return errors[-1].split("[ERROR]", 1)[1].strip() if errors else ""


def run_one(mode: str, exp: str, stream: str, seed: int, args: argparse.Namespace) -> dict:
    """One run (or the finished one on disk) and its row; a refused run's row says why."""
    run_dir = Path(args.out) / mode / f"{stream}_{exp}" / f"seed{seed}"
    overrides = overrides_of(mode, exp, stream, seed, args)
    base = {"mode": mode, "exp": exp, "stream": stream, "seed": seed}
    borrowed = Path(args.reuse_from or "/nonexistent") / mode / f"seed{seed}"
    if not finished_run(run_dir, overrides) and finished_run(borrowed, overrides):
        shutil.copytree(borrowed, run_dir, dirs_exist_ok=True)  # baselines_table ran it already
    # the bench owns its run directories: an unfinished one is replaced
    row = run_or_reuse(run_dir, overrides, f"{mode} {stream} {exp} seed {seed}", replace=True)
    if row is None:
        reason = refusal(run_dir)
        status = "refused" if reason.startswith(("ValueError", "ChoiceError")) else "failed"
        return {**base, "status": status, "note": reason}
    scores = f"A_last {row['A_last']:.2f}  F_last {row['F_last']:.2f}"
    print(
        f"{mode:17s} {stream:7s} {exp:8s} seed {seed}: {scores}  "
        f"{row['wall_s']:.0f} s wall, {row['cpu_s']:.0f} s CPU",
        flush=True,
    )
    return {**row, **base, "note": ""}


def probe_refusals(args: argparse.Namespace) -> list[dict]:
    """The reason for each REFUSAL_PROBES setting, from a run the runner stops before training."""
    rows = []
    for mode, extra in REFUSAL_PROBES:
        if mode not in args.modes:
            continue
        name = "_".join(e.split("=")[0].replace(".", "_") for e in extra)
        run_dir = Path(args.out) / mode / f"refused_{name}"
        keys = {e.split("=")[0] for e in extra}
        kept = [  # the grid's overrides, less those the probe replaces (a new model's knobs too)
            o
            for o in overrides_of(mode, "disjoint", "online", 1, args)
            if o.split("=")[0] not in keys and not ("model" in keys and o.startswith("model."))
        ]
        overrides = [*kept, *extra]
        row = run_or_reuse(run_dir, overrides, f"{mode} {' '.join(extra)}", replace=True)
        reason = refusal(run_dir) if row is None else "(not refused: ran to completion)"
        rows.append({"mode": mode, "setting": " ".join(extra), "reason": reason})
    return rows


def table(runs: pd.DataFrame, args: argparse.Namespace) -> list[dict]:
    """Mean ± std over the complete seeds of each (mode, exp, stream), in the grid's order."""
    runs = runs.reindex(columns=[*runs.columns, *({"status", "note"} - set(runs.columns))])
    rows = []
    for mode in args.modes:
        for stream in args.streams:
            for exp in args.exps:
                these = runs[(runs["mode"] == mode) & (runs.exp == exp) & (runs.stream == stream)]
                done = these[these.status == "complete"]
                notes = sorted({n for n in these.note if isinstance(n, str) and n})
                row = {"mode": mode, "stream": stream, "exp": exp, "seeds": len(done)}
                for key in ("A_last", "F_last", "wall_s", "cpu_s"):
                    row[key] = mean_std(done[key]) if len(done) else "n/a"
                row["protocol"] = protocol_note(mode, stream)
                row["note"] = "; ".join(notes)
                rows.append(row)
    return rows


def protocol_note(mode: str, stream: str) -> str:
    """What this row ran beyond the common overrides, as the table states it."""
    own = [o.replace(f"={VIT_WEIGHTS}", "=<digits-pretrained>") for o in PROTOCOL[mode]]
    model = [f"model={MODEL[mode]}"] if mode in MODEL else []
    return " ".join([*model, *(OFFLINE if stream == "offline" else []), *own])


def write_tables(runs: pd.DataFrame, args: argparse.Namespace, csv: Path) -> list[dict]:
    """The table and the per-run rows as CSV; returns the table."""
    summary = table(runs, args)
    pd.DataFrame(summary).to_csv(csv, index=False)
    columns = ["mode", "stream", "exp", "seed", "A_last", "F_last", "wall_s", "cpu_s", "status"]
    runs.reindex(columns=[*columns, "note"]).to_csv(
        csv.with_name(csv.stem + "_runs.csv"), index=False
    )
    return summary


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--exps", nargs="+", default=EXPS, choices=EXPS)
    parser.add_argument("--streams", nargs="+", default=STREAMS, choices=STREAMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench_arch"))
    default_csv = REPO / "bench" / "results" / "cpu_arch_evidence.csv"
    parser.add_argument("--csv", default=str(default_csv))
    parser.add_argument("--no-probes", action="store_true", help="skip the refusal probes")
    parser.add_argument(
        "--reuse-from",
        default=str(REPO / "outputs" / "bench_baselines"),
        help="bench/baselines_table.py's --out: its finished online blurry10 runs are copied",
    )
    args = parser.parse_args(argv)
    args.vit_weights = (Path(args.out) / "vit_tiny_digits.pt").resolve()
    if "l2p" in args.modes:
        digits_vit(args.vit_weights)
    csv = Path(args.csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    refusals = [] if args.no_probes else probe_refusals(args)
    if refusals:
        pd.DataFrame(refusals).to_csv(csv.with_name(csv.stem + "_refusals.csv"), index=False)
    # every mode's first seed, then the cheap modes' other seeds, then the expensive ones':
    # a grid stopped early has every setting once and the most seeds
    jobs = sorted(
        product(args.modes, args.seeds, args.streams, args.exps),
        key=lambda job: (
            job[0] in EXPENSIVE and job[1] != args.seeds[0],
            job[1],
            args.modes.index(job[0]),
        ),
    )
    rows = []
    for mode, seed, stream, exp in jobs:
        rows.append(run_one(mode, exp, stream, seed, args))
        summary = write_tables(pd.DataFrame(rows), args, csv)  # after each run: a stop keeps it
    print(
        f"\n{DATASET}, mlp400 (unless said), mem {MEM_SIZE}, num_threads={args.threads}, "
        f"seeds {args.seeds}, CPU\n"
    )
    print(format_table(summary, list(summary[0])))
    if refusals:
        print("\n" + format_table(refusals, ["mode", "setting", "reason"]))
    return summary


if __name__ == "__main__":
    main()
