"""Avalanche 0.6.0 and this runner side by side on Avalanche's class-incremental Fashion-MNIST.

One protocol (conf/experiment/fashion_mnist_avalanche_ci.yaml, ../shared/REFERENCE.md): 5 tasks
of 2 classes in the order 0..9, MLP 784-400-400-10 without BatchNorm, SGD lr 0.01 momentum 0.9,
batch 32, 1 epoch, memory 500, no augmentation. Per strategy and seed, each system runs as a
child process, one at a time: Avalanche's in .venv-avalanche (bench/avalanche_side.py; make it
with `bash scripts/setup_avalanche.sh`), ours as `python -m runner
experiment=fashion_mnist_avalanche_ci mode=<ours>`. Printed per strategy: final average accuracy
on all 10,000 test images (mean ± std over seeds), wall time and peak RSS of each child, and the
ratios ours / Avalanche. Without .venv-avalanche, ours alone. Modes this checkout has not
registered yet are listed as "not in this runner".

    .venv/bin/python bench/vs_avalanche.py --seeds 1 --threads 1
    .venv/bin/python bench/vs_avalanche.py --strategies Replay EWC --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import format_table  # noqa: E402

AVALANCHE_PYTHON = REPO / ".venv-avalanche" / "bin" / "python"
AVALANCHE_SIDE = REPO / "bench" / "avalanche_side.py"
EXPERIMENT = "experiment=fashion_mnist_avalanche_ci"
DEFAULT_CSV = REPO / "bench" / "results" / "cpu_vs_avalanche.csv"

# Avalanche strategy -> (our mode, its own knobs as passed to Avalanche, our mode.<knob> values,
# other overrides of ours). Knobs are Avalanche 0.6.0's defaults; where Avalanche has none
# (marked "required") the value is stated here and given to both sides. The protocol's
# memory (500) and memory batch (32, as many as stream samples) override Avalanche's defaults.
# Avalanche's EWC, SI, MAS, LwF, LFL, RWalk replay nothing: ours runs them with mem_size=0.
# La-MAML's knobs, the same on both sides (Avalanche 0.6.0's defaults)
LAMAML_KNOBS = {
    "n_inner_updates": 5,
    "second_order": True,
    "grad_clip_norm": 1.0,
    "learn_lr": True,
    "lr_alpha": 0.25,
    "sync_update": False,
    "alpha_init": 0.1,
}
STRATEGIES: dict[str, tuple[str, dict, dict, list[str]]] = {
    "Naive": ("finetune", {}, {}, []),
    "Cumulative": ("cumulative", {}, {}, []),
    "JointTraining": ("joint", {}, {}, []),
    "FromScratchTraining": ("from_scratch", {}, {}, []),
    "Replay": ("er", {"mem_size": 500}, {}, []),
    # ewc_lambda required: our conf's (the paper's) 100; Avalanche keeps one penalty per task
    "EWC": ("ewc", {"ewc_lambda": 100.0, "mode": "separate"}, {"reg_coef": 100.0}, ["mem_size=0"]),
    "SynapticIntelligence": (  # si_lambda required: 1.0
        "si",
        {"si_lambda": 1.0, "eps": 1e-7},
        {"si_lambda": 1.0, "eps": 1e-7},
        ["mem_size=0"],
    ),
    "MAS": (
        "mas",
        {"lambda_reg": 1.0, "alpha": 0.5},
        {"lambda_reg": 1.0, "alpha": 0.5},
        ["mem_size=0"],
    ),
    # alpha and temperature required: LwF's paper values 1 and 2
    "LwF": (
        "lwf",
        {"alpha": 1.0, "temperature": 2.0},
        {"alpha": 1.0, "temperature": 2.0},
        ["mem_size=0"],
    ),
    "LFL": ("lfl", {"lambda_e": 0.1}, {"lambda_e": 0.1}, ["mem_size=0"]),  # lambda_e required: 0.1
    # patterns_per_exp required: 100 (500 over 5 experiences)
    "GEM": ("gem", {"patterns_per_exp": 100, "memory_strength": 0.5}, {"memory_strength": 0.5}, []),
    "AGEM": ("agem", {"patterns_per_exp": 100, "sample_size": 64}, {"sample_size": 64}, []),
    # Avalanche's DER is DER++ with beta 0.5 by default: beta 0 for our der, 0.5 for derpp
    "DER": ("der", {"mem_size": 500, "alpha": 0.1, "beta": 0.0}, {"alpha": 0.1}, []),
    "DER++": (
        "derpp",
        {"mem_size": 500, "alpha": 0.1, "beta": 0.5},
        {"alpha": 0.1, "beta": 0.5},
        [],
    ),
    "ER_ACE": ("er_ace", {"mem_size": 500, "batch_size_mem": 10}, {}, ["mem_batchsize=10"]),
    # subsample required: MIRPlugin's default 200; batch_size_mem: the protocol's 32 (default 1)
    "MIR": (
        "mir",
        {"mem_size": 500, "subsample": 200, "batch_size_mem": 32},
        {"subsample": 200},
        [],
    ),
    # mem_strength is our memory's n_sub (mem_manage=gss), not a knob of the mode. Avalanche's
    # memory gradients are of groups of a batch's size; ours of single samples (gss_batch_size
    # 1): with groups of 32 ours scores 43-44 (seeds 1-2) against Avalanche's 52-56
    "GSS_greedy": (
        "gss",
        {"mem_size": 500, "mem_strength": 1, "input_size": [1, 28, 28]},
        {},
        ["mem_manage.n_sub=1"],
    ),
    "SCR": (  # Avalanche's memory default is 100 and its memory batch 100
        "scr",
        {"mem_size": 500, "temperature": 0.1, "batch_size_mem": 100},
        {"temperature": 0.1},
        ["mem_batchsize=100"],
    ),
    "CoPE": (
        "cope",
        {"mem_size": 500, "n_classes": 10, "p_size": 100, "alpha": 0.99, "T": 0.1},
        {"p_size": 100, "alpha": 0.99, "temperature": 0.1},
        [],
    ),
    "GDumb": ("gdumb", {"mem_size": 500}, {}, []),
    "ICaRL": (
        "icarl",
        {"memory_size": 500, "buffer_transform": None, "fixed_memory": True},
        {},
        [],
    ),
    # stage 2: Avalanche's SGD lr 0.1 on the bias layer against our Adam 0.001 (left as is)
    "BiC": (
        "bic",
        {
            "mem_size": 500,
            "val_percentage": 0.1,
            "T": 2,
            "stage_2_epochs": 200,
            "lamb": -1,
            "lr": 0.1,
        },
        {"holdout_fraction": 0.1, "temperature": 2, "bias_epochs": 200},
        [],
    ),
    # Avalanche: RWalkPlugin over Naive (no replay); its delta_t (score update every 10 steps)
    # has no counterpart here
    "RWalk": (
        "rwalk",
        {"ewc_lambda": 0.1, "ewc_alpha": 0.9, "delta_t": 10},
        {"reg_coef": 0.1, "alpha": 0.9},
        ["mem_size=0"],
    ),
    # the CWR layer of Avalanche's SimpleMLP is its `classifier`, as our head; no memory
    "CWRStar": ("cwr_star", {"cwr_layer_name": "classifier"}, {}, []),
    # Avalanche's default generator: MlpVAE with a 2-d latent, Adam lr 0.01, trained after each
    # experience for the solver's epochs (1), as many generated rows as stream rows per step
    "GenerativeReplay": (
        "generative_replay",
        {},
        {"latent_dim": 2, "generator_epochs": 1, "generator_lr": 0.01},
        [],
    ),
    # lamaml_v2 (torch.func); buffer: the protocol's memory 500 and memory batch 32
    "LaMAML": (
        "lamaml",
        {**LAMAML_KNOBS, "max_buffer_size": 500, "buffer_mb_size": 32},
        LAMAML_KNOBS,
        [],
    ),
}
# Avalanche strategies this protocol cannot run (our mode, why): listed in the table, never run.
NOT_COMPARABLE: dict[str, tuple[str, str]] = {
    "AR1": (
        "ar1",
        "Avalanche's AR1 builds its own ImageNet-pretrained MobileNetV1 (pytorchcv download, "
        "RGB input, Batch Renormalization); no download here, and not the protocol's MLP",
    ),
    "ExpertGateStrategy": (
        "expert_gate",
        "Avalanche's gates and experts sit on torchvision's ImageNet-pretrained AlexNet "
        "features (a download, 3x227x227 input); not the protocol's MLP",
    ),
    "LearningToPrompt": (
        "l2p",
        "Avalanche's L2P builds timm's vit_base_patch16_224 with pretrained weights (a "
        "download; timm is not in .venv-avalanche); not the protocol's MLP",
    ),
}
STRATEGIES_BY_MODE = {entry[0]: entry for entry in STRATEGIES.values()}
COLUMNS = [
    "strategy",
    "mode",
    "seeds",
    "avalanche_A_last",
    "ours_A_last",
    "avalanche_wall_s",
    "ours_wall_s",
    "wall_ratio",
    "avalanche_cpu_s",
    "ours_cpu_s",
    "cpu_ratio",
    "avalanche_rss_mb",
    "ours_rss_mb",
    "rss_ratio",
    "note",
]
RUN_COLUMNS = ["system", "strategy", "mode", "seed", "A_last", "wall_s", "cpu_s", "peak_rss_mb"]
RUN_COLUMNS.append("status")


def registered(mode: str) -> bool:
    """Whether this checkout can run mode: its conf exists and a method is registered."""
    from rainbow_runner.methods import METHODS

    return (REPO / "conf" / "mode" / f"{mode}.yaml").exists() and mode in METHODS.names()


def our_overrides(mode: str, knobs: dict, extra: list[str]) -> tuple[list[str], list[str]]:
    """mode.<knob>=value for the knobs our mode's conf has, and the names it lacks."""
    keys = set(OmegaConf.load(REPO / "conf" / "mode" / f"{mode}.yaml"))
    found = [f"mode.{k}={json.dumps(v)}" for k, v in knobs.items() if k in keys]
    return found + extra, [k for k in knobs if k not in keys]


def run_child(
    command: list[str], cwd: Path, env: dict, timeout: float
) -> tuple[int, str, float, float, float]:
    """Exit code, stdout, wall and CPU seconds and peak RSS (MB, from wait4) of one child."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, env=env)
        while True:  # wait4: this child's own rusage (ru_maxrss = its peak resident memory)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read() if code == 0 else (out.read() + err.read())
    cpu = usage.ru_utime + usage.ru_stime
    return code, text, wall, cpu, usage.ru_maxrss / 1024.0  # Linux reports KiB


def thread_env(threads: int) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run_avalanche(strategy: str, seed: int, args: argparse.Namespace) -> dict:
    """One Avalanche run in .venv-avalanche, from outside the repository (its datasets/
    folder would shadow imports)."""
    knobs = STRATEGIES[strategy][1]
    command = [str(AVALANCHE_PYTHON), str(AVALANCHE_SIDE), f"--strategy={strategy}"]
    command += [f"--seed={seed}", f"--knobs={json.dumps(knobs)}", f"--threads={args.threads}"]
    code, text, wall, cpu, rss = run_child(
        command, Path(tempfile.gettempdir()), thread_env(args.threads), args.timeout
    )
    row = {"system": "avalanche 0.6.0", "seed": seed, "wall_s": wall, "cpu_s": cpu}
    row["peak_rss_mb"] = rss
    if code != 0:
        return {**row, "status": f"exit {code}: {_last_line(text)}"}
    return {
        **row,
        "A_last": json.loads(text.strip().splitlines()[-1])["A_last"],
        "status": "complete",
    }


def run_ours(mode: str, overrides: list[str], seed: int, args: argparse.Namespace) -> dict:
    """One `python -m runner` of the protocol into a scratch run directory."""
    with tempfile.TemporaryDirectory(prefix="vs_avalanche_") as run_dir:
        command = [sys.executable, "-m", "runner", EXPERIMENT, f"mode={mode}", f"seed={seed}"]
        command += [f"num_threads={args.threads}", "progress=false", *overrides]
        command.append(f"hydra.run.dir={run_dir}")
        env = thread_env(args.threads)
        code, text, wall, cpu, rss = run_child(command, REPO, env, args.timeout)
        row = {"system": "ours", "seed": seed, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss}
        summary = Path(run_dir) / "results" / "summary.csv"
        if code != 0 or not summary.exists():
            return {**row, "status": f"exit {code}: {_last_line(text)}"}
        with open(summary) as handle:
            found = next(csv.DictReader(handle))
    return {**row, "A_last": float(found["A_last"]), "status": found["status"]}


def _said(strategy: str, mode: str, run: dict) -> dict:
    """Print one finished run as it ends (a table of 20 strategies takes a while)."""
    accuracy = f"{run.get('A_last', float('nan')):.2f}"
    print(
        f"{strategy} seed {run['seed']} {run['system']}: A_last {accuracy}, "
        f"{run['wall_s']:.1f} s, {run['peak_rss_mb']:.0f} MB, {run['status']}",
        flush=True,
    )
    return {**run, "strategy": strategy, "mode": mode}


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def mean_std(values: list[float], digits: int = 2) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f}±{std:.{digits}f}"


def ratio(ours: list[float], theirs: list[float]) -> str:
    """Ours / Avalanche of the means (below 1: ours is faster or smaller)."""
    if not ours or not theirs:
        return "n/a"
    return f"{statistics.mean(ours) / statistics.mean(theirs):.2f}"


def summarise(strategy: str, mode: str, runs: list[dict], note: str) -> dict:
    """One table row: mean ± std over the complete seeds of each system."""

    def pick(system: str, key: str) -> list[float]:
        return [
            r[key] for r in runs if r["system"].startswith(system) and r["status"] == "complete"
        ]

    failed = [
        f"{r['system']} seed {r['seed']}: {r['status']}" for r in runs if r["status"] != "complete"
    ]
    seeds = sorted({r["seed"] for r in runs})
    return {
        "strategy": strategy,
        "mode": mode,
        "seeds": " ".join(map(str, seeds)),
        "avalanche_A_last": mean_std(pick("avalanche", "A_last")),
        "ours_A_last": mean_std(pick("ours", "A_last")),
        "avalanche_wall_s": mean_std(pick("avalanche", "wall_s"), 1),
        "ours_wall_s": mean_std(pick("ours", "wall_s"), 1),
        "wall_ratio": ratio(pick("ours", "wall_s"), pick("avalanche", "wall_s")),
        "avalanche_cpu_s": mean_std(pick("avalanche", "cpu_s"), 1),
        "ours_cpu_s": mean_std(pick("ours", "cpu_s"), 1),
        "cpu_ratio": ratio(pick("ours", "cpu_s"), pick("avalanche", "cpu_s")),
        "avalanche_rss_mb": mean_std(pick("avalanche", "peak_rss_mb"), 0),
        "ours_rss_mb": mean_std(pick("ours", "peak_rss_mb"), 0),
        "rss_ratio": ratio(pick("ours", "peak_rss_mb"), pick("avalanche", "peak_rss_mb")),
        "note": "; ".join([n for n in [note, *failed] if n]),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        choices=[*STRATEGIES, *NOT_COMPARABLE],
        help=f"also {', '.join(NOT_COMPARABLE)}: a row saying why they are not run",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per child (0: all)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child run")
    parser.add_argument(
        "--csv", default=str(DEFAULT_CSV), help="the table (runs: *_runs.csv); '' for none"
    )
    parser.add_argument(
        "--from-runs",
        nargs="+",
        type=Path,
        default=[],
        help="table of earlier *_runs.csv (later files win), no runs; rewrites the runs CSV",
    )
    args = parser.parse_args(argv)

    if args.from_runs:
        # a later file's run of the same (system, strategy, seed) replaces an earlier one's
        merged = {
            (row["system"], row["strategy"], row["seed"]): _typed(row)
            for path in args.from_runs
            for row in csv.DictReader(path.open())
        }
        runs = list(merged.values())
        if args.csv:
            path = Path(args.csv)
            _write(path.with_name(f"{path.stem}_runs.csv"), runs, RUN_COLUMNS)
    else:
        runs = run_all(args)
    rows = []
    for strategy in args.strategies:
        if strategy in NOT_COMPARABLE:
            mode, why = NOT_COMPARABLE[strategy]
            rows.append({"strategy": strategy, "mode": mode, "note": f"not comparable: {why}"})
            continue
        mode = STRATEGIES[strategy][0]
        found = [run for run in runs if run["strategy"] == strategy]
        if found or not args.from_runs:
            rows.append(summarise(strategy, mode, found, _note(mode)))
    seeds = sorted({int(run["seed"]) for run in runs}) or args.seeds
    print(
        f"\ncpu, {args.threads or 'all'} thread(s) per run, one run at a time, seeds "
        f"{' '.join(map(str, seeds))}; ratios = ours / Avalanche\n"
    )
    print(format_table(rows, COLUMNS))
    if args.csv:
        _write(Path(args.csv), rows, COLUMNS)
        print(f"written: {args.csv}")
    return rows


def run_all(args: argparse.Namespace) -> list[dict]:
    """Every (strategy, seed) in both systems, one at a time; the runs CSV is rewritten after
    each strategy, so a stopped bench keeps what it measured (--from-runs tables it)."""
    with_avalanche = AVALANCHE_PYTHON.exists()
    if not with_avalanche:
        print(
            f"Avalanche side skipped: {AVALANCHE_PYTHON} does not exist "
            "(make it with `bash scripts/setup_avalanche.sh`); running ours alone.",
            flush=True,
        )
    runs = []
    for strategy in (name for name in args.strategies if name in STRATEGIES):
        mode, _, knobs, extra = STRATEGIES[strategy]
        ours = registered(mode)
        if ours:
            overrides, missing = our_overrides(mode, knobs, extra)
            if missing:
                print(f"{strategy}: ours lacks mode.{', mode.'.join(missing)} (left at default)")
        for seed in args.seeds:
            if with_avalanche:
                runs.append(_said(strategy, mode, run_avalanche(strategy, seed, args)))
            if ours:
                runs.append(_said(strategy, mode, run_ours(mode, overrides, seed, args)))
        if args.csv:
            path = Path(args.csv)
            _write(path.with_name(f"{path.stem}_runs.csv"), runs, RUN_COLUMNS)
    return runs


def _note(mode: str) -> str:
    if not registered(mode):
        return "not in this runner"
    missing = our_overrides(mode, STRATEGIES_BY_MODE[mode][2], [])[1]
    return f"ours lacks mode.{', mode.'.join(missing)}" if missing else ""


def _typed(row: dict) -> dict:
    """A runs-CSV row with its numbers as numbers."""
    numbers = {k: float(row[k]) for k in ("A_last", "wall_s", "cpu_s", "peak_rss_mb") if row[k]}
    return {**row, **numbers, "seed": int(row["seed"])}


def _write(path: Path, rows: list[dict], columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
