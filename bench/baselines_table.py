"""The paper's Blurry10-Online comparison on Fashion-MNIST (mlp400, memory 500), as a table.

Runs every (mode, seed) as `python -m runner ...` into its own run directory, reads each
results/summary.csv, and prints mean ± std over seeds of A_last, F_last, wall and CPU seconds
per mode, next to the paper's MNIST column; writes the table and the per-run rows as CSV.
Finished runs (summary status "complete") are reused, so an interrupted table picks up where it
stopped. `--modes all` is every registered mode.

    .venv/bin/python bench/baselines_table.py                      # 9 modes x seeds 1-3
    .venv/bin/python bench/baselines_table.py --seeds 1 --jobs 2   # quicker: one seed
    .venv/bin/python bench/baselines_table.py --modes ewc rwalk -- n_epoch=1  # extra overrides
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import format_table  # noqa: E402
from bench.runs import REPO, finished_run, run_or_reuse  # noqa: E402

MODES = ["rm", "ewc", "rwalk", "icarl", "gdumb", "bic", "er", "finetune", "joint"]
# Blurry10-Online, MNIST, last accuracy % (the paper's Table 2; er/finetune/joint not listed).
PAPER_MNIST = {
    "rm": "91.80±0.69",
    "ewc": "90.98±0.61",
    "rwalk": "90.69±0.62",
    "gdumb": "88.51±0.52",
    "icarl": "78.09±0.60",
    "bic": "77.75±1.27",
}


def available(mode: str) -> bool:
    """A mode can run when its config exists and a method is registered under its name."""
    if not (REPO / "conf" / "mode" / f"{mode}.yaml").exists():
        return False
    sys.path.insert(0, str(REPO))
    from rainbow_runner.methods import METHODS

    return mode in METHODS.names()


def run_one(mode: str, seed: int, args: argparse.Namespace) -> dict:
    """One run as a subprocess (or the finished one already on disk) and its summary row."""
    run_dir = Path(args.out) / mode / f"seed{seed}"
    overrides = [
        f"mode={mode}",
        f"dataset={args.dataset}",
        "stream=online",
        "exp=blurry10",
        "model=mlp400",
        f"mem_size={args.mem_size}",
        f"seed={seed}",
        "progress=false",
        f"num_threads={args.threads}",
        *args.overrides,
    ]
    if args.no_run and not (
        finished_run(run_dir, overrides) and (run_dir / "bench_wall.json").exists()
    ):
        note = refusal(run_dir)
        return {"mode": mode, "seed": seed, "status": "failed" if note else "missing", "note": note}
    # the bench owns its run directories: an unfinished one is replaced
    row = run_or_reuse(run_dir, overrides, f"{mode} seed {seed}", args.rerun, replace=True)
    if row is None:
        return {"mode": mode, "seed": seed, "status": "failed", "note": refusal(run_dir)}
    scores = f"A_last {row['A_last']:.2f}  F_last {row['F_last']:.2f}"
    print(f"{mode:9s} seed {seed}: {scores}  {row['wall_s']:.0f}s", flush=True)
    return row


def refusal(run_dir: Path) -> str:
    """The error a failed run logged last (the runner's one-paragraph refusal), or ''."""
    log = run_dir / "run.log"
    errors = (
        [line for line in log.read_text().splitlines() if "[ERROR]" in line] if log.exists() else []
    )
    return errors[-1].split("] ", 1)[-1] if errors else ""


def mean_std(values: pd.Series) -> str:
    if len(values) == 0:
        return "n/a"
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f}±{std:.2f}"


def table(runs: pd.DataFrame, modes: list[str]) -> pd.DataFrame:
    """Mean ± std over the complete seeds of each mode, in the order asked for."""
    rows = []
    for mode in modes:
        done = runs[(runs["mode"] == mode) & (runs["status"] == "complete")]
        rows.append(
            {
                "mode": mode,
                "seeds": len(done),
                "A_last": mean_std(done["A_last"]) if len(done) else "n/a",
                "F_last": mean_std(done["F_last"]) if len(done) else "n/a",
                "wall_s": mean_std(done["wall_s"]) if len(done) else "n/a",
                "cpu_s": mean_std(done["cpu_s"]) if "cpu_s" in done and len(done) else "n/a",
                "paper_mnist_A_last": PAPER_MNIST.get(mode, "-"),
                "note": _notes(runs, mode),
            }
        )
    return pd.DataFrame(rows)


def _notes(runs: pd.DataFrame, mode: str) -> str:
    """Why seeds are missing: the refusals of failed runs, or the count not run yet."""
    mine = runs[runs["mode"] == mode]
    notes = sorted(set(mine["note"].dropna())) if "note" in mine else []
    missing = int((mine["status"] == "missing").sum())
    return "; ".join([*notes, *([f"{missing} seed(s) not run yet"] if missing else [])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=MODES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--mem-size", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: all)")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench_baselines"))
    parser.add_argument("--rerun", action="store_true", help="ignore finished runs on disk")
    parser.add_argument("--no-run", action="store_true", help="table the finished runs only")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides (after --)")
    args = parser.parse_args()

    if args.modes == ["all"]:
        from rainbow_runner.methods import METHODS

        args.modes = sorted(METHODS.names())
    modes = []
    for mode in args.modes:
        if available(mode):
            modes.append(mode)
        else:
            print(f"skipping mode={mode}: not available in this checkout", file=sys.stderr)
    jobs = [(mode, seed) for mode in modes for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda job: run_one(*job, args), jobs))
    runs = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "baselines_runs.csv", index=False)
    summary = table(runs, modes)
    summary.to_csv(out / "baselines_table.csv", index=False)
    title = (
        f"{args.dataset}, online blurry10, mlp400, mem {args.mem_size}, "
        f"seeds {' '.join(map(str, args.seeds))}"
    )
    print(f"\n{title}\n")
    print(format_table(summary.to_dict("records"), list(summary.columns)))
    print(f"\nwritten: {out / 'baselines_table.csv'} and {out / 'baselines_runs.csv'}")


if __name__ == "__main__":
    main()
