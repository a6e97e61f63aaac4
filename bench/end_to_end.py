"""Wall time, CPU time and peak memory of whole runs, each in its own `python -m runner`.

Default: the paper's blurry10 online Fashion-MNIST runs (mlp400, mem_size 500) for
mode=rm (trans=[cutmix,autoaug], mem_manage.metric=vr_randaug), er, ewc and gdumb; modes
that do not exist yet are skipped with a message. --concurrent N also runs N copies of the
first job at once, to check that a sweep on one machine slows down at most linearly.

    .venv/bin/python bench/end_to_end.py --csv bench/end_to_end.csv
    .venv/bin/python bench/end_to_end.py --modes er --concurrent 2
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import format_table  # noqa: E402

# Per mode: the extra overrides of the measured run (the paper's settings for RM).
MODE_OVERRIDES = {
    "rm": ["trans=[cutmix,autoaug]", "mem_manage.metric=vr_randaug"],
    "er": [],
    "ewc": [],
    "gdumb": [],
}
COLUMNS = [
    "mode",
    "overrides",
    "env",
    "jobs",
    "wall_s",
    "cpu_s",
    "train_s",
    "peak_rss_mb",
    "A_last",
    "status",
]


def run_jobs(
    overrides: list[str], n_jobs: int, work_dir: Path, timeout: float, env: dict | None = None
) -> list[dict]:
    """n_jobs copies of one `python -m runner` at once; wall, CPU and peak RSS of each child."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    started = time.perf_counter()
    processes = []
    for job in range(n_jobs):
        run_dir = work_dir / f"job{job}_{time.monotonic_ns()}"
        command = [sys.executable, "-m", "runner", *overrides, f"hydra.run.dir={run_dir}"]
        log = open(run_dir.with_suffix(".log"), "w")  # closed once the job has ended
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log, env=env)
        processes.append((process, run_dir, log))
    rows = []
    for process, run_dir, log in processes:
        deadline = started + timeout
        while True:  # wait4: this child's own rusage (ru_maxrss = its peak resident memory)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        log.close()
        rows.append(_row(run_dir, process.returncode, wall, usage))
    return rows


def _row(run_dir: Path, returncode: int, wall: float, usage) -> dict:
    summary = _read_summary(run_dir / "results" / "summary.csv")
    status = summary.get("status", "no summary")
    if returncode != 0:
        tail = run_dir.with_suffix(".log").read_text().strip().splitlines()[-1:]
        status = f"exit {returncode}: {tail[0][:120] if tail else ''}"
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "train_s": float(summary["seconds"]) if "seconds" in summary else float("nan"),
        "peak_rss_mb": usage.ru_maxrss / 1024.0,  # Linux reports KiB
        "A_last": float(summary["A_last"]) if "A_last" in summary else float("nan"),
        "status": status,
    }


def _read_summary(path: Path) -> dict:
    if not path.exists():
        return {}
    with open(path) as handle:
        return next(csv.DictReader(handle), {})


def available_modes() -> set[str]:
    return {path.stem for path in (REPO / "conf" / "mode").glob("*.yaml")}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="rm,er,ewc,gdumb")
    parser.add_argument(
        "--base",
        default="dataset=fashion_mnist stream=online exp=blurry10 mem_size=500 model=mlp400",
        help="overrides shared by every run (space separated)",
    )
    parser.add_argument("--extra", default="", help="more overrides for every run")
    parser.add_argument("--concurrent", type=int, default=0, help="also run N copies at once")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per batch of jobs")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="KEY=VALUE for the runs, e.g. OMP_WAIT_POLICY=ACTIVE",
    )
    parser.add_argument("--csv", type=Path, default=None, help="write the rows here")
    parser.add_argument("--work-dir", type=Path, default=None, help="run dirs (default: new temp)")
    args = parser.parse_args(argv)

    base = args.base.split() + args.extra.split() + ["progress=false"]
    modes = [m for m in args.modes.split(",") if m]
    known = available_modes()
    env = dict(item.split("=", 1) for item in args.env)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"runs in {work_dir} | cpus {os.cpu_count()} | env {args.env} | {sys.executable}")
    rows = []
    for mode in modes:
        if mode not in known:
            print(f"skip mode={mode}: conf/mode/{mode}.yaml does not exist yet")
            continue
        overrides = base + [f"mode={mode}"] + MODE_OVERRIDES.get(mode, [])
        batches = [1] + ([args.concurrent] if args.concurrent > 1 and not rows else [])
        for n_jobs in batches:
            for result in run_jobs(overrides, n_jobs, work_dir, args.timeout, env):
                row = {"mode": mode, "overrides": " ".join(overrides), "env": " ".join(args.env)}
                row.update(jobs=n_jobs, **result)
                rows.append(row)
                print(format_table([row], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(format_table(rows, COLUMNS))
    if args.csv is not None and rows:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
