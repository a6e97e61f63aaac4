"""Images/s of the bare model against the runner's training loop, and RM's scoring rate.

(a) bare: forward, cross-entropy, backward and an SGD step on one device-resident float batch
    (the limit no loop can beat); (b) loop: the real Trainer's online pass (memory sampling,
    uint8 fetch, crop/flip, TRANS, normalise, the method's loss, the step, the running sums)
    on synthetic uint8 data; ratio = (b) / (a) at the same images per step. (c) RM's
    uncertainty scoring in candidate-perturbations/s, when memory/uncertainty.py exists.

    .venv/bin/python bench/throughput.py                       # the full table
    .venv/bin/python bench/throughput.py --models mlp400 --batches 16 --steps 200
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402  (first: it sets the OpenMP policy before torch loads)
    SHAPES,
    BareStep,
    build_trainer,
    describe_device,
    format_table,
    images_per_step,
    loop_trainer,
    pick_clock,
    pick_device,
    synthetic_data,
    time_call,
    write_rows,
)

# isort: split
import torch  # noqa: E402

from rainbow_runner.datasets.augment.pipeline import BATCH_MIXES, IMAGE_TRANSFORMS, StepBatches  # noqa: E402
from rainbow_runner.memory import selection, uncertainty  # noqa: E402

COLUMNS = ["model", "input", "batch", "trans", "replay", "bare img/s", "loop img/s", "ratio"]


def throughput_row(
    model_name: str,
    batch: int,
    trans_name: str,
    replay: str,
    steps: int,
    rounds: int,
    device: torch.device,
    clock,
    extra: tuple[str, ...] = (),
) -> dict | None:
    """One line of the table: bare and loop images/s at the same images per step.

    Bare and loop chunks of `steps` steps alternate for `rounds` rounds and each keeps its
    fastest: other processes on a shared CPU only ever slow a chunk down.
    """
    shape = SHAPES[model_name]
    trainer, data = loop_trainer(model_name, batch, trans_name, replay, steps, device, extra)
    per_step = images_per_step(trainer, batch)
    n_train = len(data.train_y)

    def loop() -> None:
        trainer.online_pass(torch.randperm(n_train)[: batch * steps])

    bare = BareStep(trainer.model, trainer.cfg, trainer.precision, per_step, shape, device)
    trainer.online_pass(torch.randperm(n_train)[: batch * 3])  # warm-up
    bare(3)
    loop_seconds, bare_seconds = float("inf"), float("inf")
    for _ in range(rounds):
        loop_seconds = min(loop_seconds, time_call(loop, device, clock))
        bare_seconds = min(bare_seconds, time_call(lambda: bare(steps), device, clock))
    trainer.steps.flush_window()
    trainer.writer.close()
    bare_rate, loop_rate = per_step * steps / bare_seconds, per_step * steps / loop_seconds
    return {
        "model": model_name,
        "input": "x".join(str(s) for s in shape),
        "batch": per_step,
        "trans": trans_name,
        "replay": replay,
        "bare img/s": bare_rate,
        "loop img/s": loop_rate,
        "ratio": loop_rate / bare_rate,
    }


def scoring_rows(batch: int, n_candidates: int, device: torch.device, clock) -> list[dict]:
    """RM's uncertainty scoring of mlp400 candidates (K perturbed forwards per candidate)."""
    shape = SHAPES["mlp400"]
    data = synthetic_data(max(2000, n_candidates), shape)
    overrides = ["model=mlp400", "mode=er", f"eval_batchsize={batch}"]
    trainer = build_trainer(overrides, data, device)
    context = trainer.context.selection()
    candidates = torch.arange(n_candidates)
    k = 12  # the paper's K (conf/mem_manage/uncertainty.yaml)
    rows = []
    for metric in uncertainty.UNCERTAINTY_METRICS:
        views = uncertainty.perturbations(metric, k, shape[-1])

        def score(views=views) -> None:
            predictions = uncertainty.perturbed_predictions(candidates, context, views)
            selection.uncertainty_from_predictions(predictions, int(predictions.max()) + 1)

        score()  # warm-up
        seconds = min(time_call(score, device, clock) for _ in range(2))
        rows.append(
            {
                "metric": metric,
                "K": k,
                "candidates": n_candidates,
                "candidate-perturbations/s": n_candidates * k / seconds,
                "s per 1,000 candidates": 1000 * seconds / n_candidates,
            }
        )
    trainer.writer.close()
    return rows


def augment_rows(batches: list[int], device: torch.device, clock, calls: int = 200) -> list[dict]:
    """Microseconds per call of every TRANS entry alone, on uint8 1x28x28 batches."""
    rows = []
    for batch in batches:
        images = torch.randint(0, 256, (batch, *SHAPES["mlp400"]), dtype=torch.uint8, device=device)
        labels = torch.randint(0, 10, (batch,), device=device)
        entries = {name: partial(transform, images) for name, transform in IMAGE_TRANSFORMS.items()}
        for name, mix in BATCH_MIXES.items():  # always mixing (probability 1), as a worst case
            entries[name] = partial(mix, StepBatches(images, labels, [batch]), probability=1.0)
        for name, call in entries.items():

            def repeat(call=call) -> None:
                for _ in range(calls):
                    call()

            repeat()  # warm-up: builds the cached tables
            seconds = min(time_call(repeat, device, clock) for _ in range(3))
            rows.append({"trans": name, "batch": batch, "us per call": 1e6 * seconds / calls})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--models", default="mlp400,resnet18,resnet32")
    parser.add_argument("--batches", default="16,128,256", help="stream batch sizes for mlp400")
    parser.add_argument("--resnet-batches", default="16", help="stream batch sizes for resnets")
    parser.add_argument("--steps", type=int, default=100, help="steps per timed chunk, mlp400")
    parser.add_argument("--resnet-steps", type=int, default=4, help="steps per chunk, resnets")
    parser.add_argument("--rounds", type=int, default=5, help="timed chunks; the best is kept")
    parser.add_argument("--trans", default="none,cutmix+autoaug")
    parser.add_argument("--replay", default="no,yes,rm", help="no, yes (er, reservoir), rm")
    parser.add_argument("--augment", default="16,512", help="batch sizes of the TRANS-alone table")
    parser.add_argument("--candidates", type=int, default=5000, help="0 skips the scoring bench")
    parser.add_argument("--eval-batch", type=int, default=1024, help="scoring batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = all cores)")
    parser.add_argument("--clock", default="auto", choices=["auto", "cpu", "wall"])
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--extra", default="", help="config overrides for the loop, e.g. augment_chunk=0"
    )
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    clock = pick_clock(args.clock, device)
    print(describe_device(device), "| clock", clock.__name__)
    rows = []
    for model_name in args.models.split(","):
        is_mlp = model_name == "mlp400"
        batches = args.batches if is_mlp else args.resnet_batches
        steps = args.steps if is_mlp else args.resnet_steps
        rounds = args.rounds if is_mlp else max(2, args.rounds // 2)
        for batch in (int(b) for b in batches.split(",")):
            for trans_name in args.trans.split(","):
                for replay in args.replay.split(","):
                    row = throughput_row(
                        model_name,
                        batch,
                        trans_name,
                        replay,
                        steps,
                        rounds,
                        device,
                        clock,
                        tuple(args.extra.split()),
                    )
                    if row is not None:
                        rows.append(row)
                        print(format_table([row], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(format_table(rows, COLUMNS))
    if args.augment:
        augment = augment_rows([int(b) for b in args.augment.split(",")], device, clock)
        print()
        print(format_table(augment, list(augment[0])))
    if args.candidates > 0:
        scoring = scoring_rows(int(args.eval_batch), args.candidates, device, clock)
        if scoring:
            print()
            print(format_table(scoring, list(scoring[0])))
    if args.csv is not None and rows:
        write_rows(args.csv, rows, COLUMNS, device)
    return rows


if __name__ == "__main__":
    main()
