"""The paper's Blurry10-Online pattern on Fashion-MNIST: RM against ER and fine-tuning.

Runs five configurations x seeds through `python -m runner` (one subprocess per run, so each
is exactly what a user would type), reads every run's results/summary.csv and
results/memory_updates.csv, prints mean ± std of A_last (and A_avg, F_last), the seconds spent
scoring uncertainty per task (tasks 2..T; task 1 is random) and the wall time, and writes
per-run and aggregated CSVs. Finished runs are reused, so an interrupted bench resumes.

    .venv/bin/python bench/rm_evidence.py                      # 5 configs x seeds 1-3
    .venv/bin/python bench/rm_evidence.py --seeds 1 --jobs 2   # quicker, two runs at a time
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runs import finished_run  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SETTING = [
    "dataset=fashion_mnist",
    "stream=online",
    "exp=blurry10",
    "mem_size=500",
    "model=mlp400",
    "progress=false",
]
CONFIGS = {
    "rm (cutmix+autoaug)": ["mode=rm", "mem_manage=uncertainty", "trans=[cutmix,autoaug]"],
    "rm w/o DA": ["mode=rm", "mem_manage=uncertainty", "trans=[]"],
    "er / reservoir": ["mode=er", "mem_manage=reservoir", "trans=[]"],
    "er / random": ["mode=er", "mem_manage=random", "trans=[]"],
    "finetune": ["mode=finetune", "trans=[]"],
}


def run_one(name: str, seed: int, out: Path, threads: int, extra: list[str]) -> dict:
    """One run as a subprocess (skipped when it already ran these overrides), as a result row."""
    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    run_dir = out / f"{slug}_seed{seed}"
    summary_path = run_dir / "results" / "summary.csv"
    wall_path = run_dir / "wall_seconds.txt"
    overrides = [*SETTING, *CONFIGS[name], f"seed={seed}", f"num_threads={threads}", *extra]
    if not (wall_path.exists() and finished_run(run_dir, overrides)):
        # the bench owns its run directories: an unfinished one is replaced
        command = [sys.executable, "-m", "runner", *overrides, f"hydra.run.dir={run_dir}"]
        command.append("overwrite=true")
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{name} seed {seed} failed:\n{result.stderr[-3000:]}")
        wall_path.write_text(f"{wall:.2f}\n")
        print(f"  done: {name}, seed {seed}, {wall:.0f}s", flush=True)
    summary = pd.read_csv(summary_path).iloc[0]
    updates_path = run_dir / "results" / "memory_updates.csv"
    scoring = float("nan")
    if updates_path.exists():
        updates = pd.read_csv(updates_path)
        scoring = updates.scoring_seconds[updates.task > 0].mean()
    return {
        "config": name,
        "seed": seed,
        "A_last": summary.A_last,
        "A_avg": summary.A_avg,
        "F_last": summary.F_last,
        "scoring_seconds_per_task": scoring,
        "train_seconds": summary.seconds,
        "wall_seconds": float(wall_path.read_text()),
        "run_dir": str(run_dir),
    }


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, in the order of CONFIGS."""
    grouped = runs.groupby("config", sort=False)
    table = grouped[["A_last", "A_avg", "F_last"]].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat}" for metric, stat in table.columns]
    table["scoring_seconds_per_task"] = grouped.scoring_seconds_per_task.mean()
    table["wall_seconds"] = grouped.wall_seconds.mean()
    table["n_seeds"] = grouped.seed.count()
    return table.reset_index()


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| configuration | A_last | A_avg | F_last | scoring s/task | wall s/run | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        scoring = (
            "-" if pd.isna(row.scoring_seconds_per_task) else f"{row.scoring_seconds_per_task:.2f}"
        )
        lines.append(
            f"| {row.config} | {row.A_last_mean:.2f} ± {row.A_last_std:.2f} "
            f"| {row.A_avg_mean:.2f} ± {row.A_avg_std:.2f} "
            f"| {row.F_last_mean:.2f} ± {row.F_last_std:.2f} "
            f"| {scoring} | {row.wall_seconds:.0f} | {row.n_seeds} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "rm_evidence")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: auto)")
    parser.add_argument("extra", nargs="*", help="more overrides for every run, e.g. n_epoch=1")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, seed) for seed in args.seeds for name in args.configs]
    print(f"{len(jobs)} runs into {args.out} ({args.jobs} at a time, {threads} threads each)")
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: run_one(*job, args.out, threads, args.extra), jobs))
    runs = pd.DataFrame(rows)
    table = aggregate(runs)
    runs.to_csv(args.out / "runs.csv", index=False)
    table.to_csv(args.out / "table.csv", index=False)
    print(f"\n{' '.join(SETTING[:-1])}, seeds {args.seeds}, {os.cpu_count()} CPUs")
    print(markdown(table))
    print(f"\nbench wall time {time.perf_counter() - started:.0f}s; CSVs in {args.out}")


if __name__ == "__main__":
    main()
