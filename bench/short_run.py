"""CPU seconds of a short run (each period's stream cut to its first fraction), optionally with
the functions that take them: a before/after yardstick for a mode's speed.

The run goes through `rainbow_runner.run` in this process, as a full one would, with the split
truncated; `--profile` adds cProfile on process CPU time and prints the top functions.

    .venv/bin/python bench/short_run.py --fraction 0.1 \
        experiment=fashion_mnist_iblurry50_10_online \
        mode=clib model=mlp400 mem_size=500 eval_period=1000 seed=1 num_threads=1
    .venv/bin/python bench/short_run.py --fraction 0.03 --profile 30 mode=clib ...
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runs import REPO  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.1, help="share of each period kept")
    parser.add_argument("--profile", type=int, default=0, help="print the top N functions")
    parser.add_argument("--out", default=str(REPO / "outputs" / "short_run"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if not 0 < args.fraction <= 1:
        raise ValueError(f"--fraction={args.fraction} must lie in (0, 1].")

    import rainbow_runner
    import rainbow_runner.runner.app as app

    build_split = app.build_split

    def short_split(cfg, data):
        split = build_split(cfg, data)
        split.train_tasks = [t[: int(len(t) * args.fraction)] for t in split.train_tasks]
        return split

    app.build_split = short_split
    profiler = cProfile.Profile(time.process_time)
    overrides = [*args.overrides, "progress=false", "overwrite=true"]
    started, cpu = time.perf_counter(), time.process_time()
    if args.profile:
        profiler.enable()
    row = rainbow_runner.run(overrides, args.out)
    profiler.disable()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    scores = "  ".join(f"{key} {row[key]}" for key in ("A_AUC", "A_last") if key in row)
    print(f"fraction {args.fraction}: CPU {cpu:.1f} s, wall {wall:.1f} s  {scores}")
    if args.profile:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(args.profile)
        print(text.getvalue())


if __name__ == "__main__":
    main()
