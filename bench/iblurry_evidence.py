"""The i-Blurry evidence table: A_AUC and A_last on Fashion-MNIST i-Blurry-50-10 online.

clib, rm, er, mir, ewc, bic and gdumb (gdumb: a from-scratch copy trained on the memory at each
anytime point, as the CLIB paper evaluates it), `experiment=fashion_mnist_iblurry50_10_online`:
mlp400, memory 500, anytime evaluation every 1,000 stream samples. Each run is a `python -m
runner` subprocess into its own directory; finished runs are reused. Prints mean ± std over
seeds, writes the per-run rows and the table as CSV, and the accuracy curves through
`python -m runner.report` (anytime_curves.png in the output folder).

    .venv/bin/python bench/iblurry_evidence.py --seeds 1 2 3 --threads 1
    .venv/bin/python bench/iblurry_evidence.py --modes gdumb --seeds 1 --csv bench/results/x.csv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baselines_table import mean_std  # noqa: E402
from bench.common import format_table  # noqa: E402
from bench.runs import REPO, run_or_reuse  # noqa: E402

MODES = ["clib", "rm", "er", "mir", "ewc", "bic", "gdumb"]
EXPERIMENT = "fashion_mnist_iblurry50_10_online"


def run_one(mode: str, seed: int, args: argparse.Namespace) -> dict:
    """One run (or the finished one on disk) and its row: A_AUC, A_last, wall seconds."""
    run_dir = Path(args.out) / mode / f"seed{seed}"
    overrides = [
        f"experiment={EXPERIMENT}",
        f"mode={mode}",
        "model=mlp400",
        f"mem_size={args.mem_size}",
        f"eval_period={args.eval_period}",
        f"seed={seed}",
        "progress=false",
        f"num_threads={args.threads}",
    ]
    base = {"mode": mode, "seed": seed}
    row = run_or_reuse(run_dir, overrides, f"{mode} seed {seed}")
    if row is None:
        return {**base, "status": "failed"}
    scores = f"A_AUC {row['A_AUC']:.2f}  A_last {row['A_last']:.2f}  {row['wall_s']:.0f}s"
    print(f"{mode:6s} seed {seed}: {scores}", flush=True)
    return {**row, **base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--mem-size", type=int, default=500)
    parser.add_argument("--eval-period", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench_iblurry"))
    default_csv = REPO / "bench" / "results" / "cpu_iblurry_evidence.csv"
    parser.add_argument("--csv", default=str(default_csv))
    args = parser.parse_args()
    rows = [run_one(mode, seed, args) for seed in args.seeds for mode in args.modes]
    runs = pd.DataFrame(rows)
    table = []
    for mode in args.modes:
        done = runs[(runs["mode"] == mode) & (runs.get("status") == "complete")]
        table.append(
            {
                "mode": mode,
                "seeds": len(done),
                **{
                    key: mean_std(done[key]) if len(done) else "n/a"
                    for key in ("A_AUC", "A_last", "wall_s", "cpu_s")
                    if key in done
                },
            }
        )
    csv = Path(args.csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_csv(csv, index=False)
    columns = ["mode", "seed", "A_AUC", "A_last", "wall_s", "cpu_s", "status"]
    runs.reindex(columns=columns).to_csv(csv.with_name(csv.stem + "_runs.csv"), index=False)
    dirs = [str(Path(args.out) / mode) for mode in args.modes if (Path(args.out) / mode).exists()]
    report = [sys.executable, "-m", "runner.report", *dirs, "--out", args.out]
    subprocess.run(report, cwd=REPO, capture_output=True, text=True, check=False)
    print(
        f"\nfashion_mnist, i-Blurry-50-10 online, mlp400, mem {args.mem_size}, anytime every "
        f"{args.eval_period}, seeds {args.seeds}; curves: {Path(args.out) / 'anytime_curves.png'}\n"
    )
    print(format_table(table, list(table[0])))


if __name__ == "__main__":
    main()
