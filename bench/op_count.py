"""Tensor operations per training step: the loop's against the bare model's, on any device.

A small model on a fast GPU is bound by the host: each kernel launch costs the host 5-50 us
whatever the batch, so the loop/bare throughput ratio there tends to the ratio of kernels per
step. This counts them without a GPU: every aten operation of real Trainer steps (the same
loop as bench/throughput.py) is dispatched through a counting mode and sorted into
  kernels: operations that compute (a launch each on a GPU),
  views:   operations that only make a new view of a tensor (no launch),
  drawing: what replay/observe_stream do to pick each step's indices, on the host
           whatever the device (memory sampling, reservoir updates).
bound = bare kernels / loop kernels: the throughput ratio a launch-bound GPU would give.
On the CPU the autoaug/randaug tables take the sorted path (more, smaller operations); on
CUDA they run whole-batch, captured as CUDA graphs (a replay is not an aten operation).

    .venv/bin/python bench/op_count.py                      # mlp400 at batch 16 and 128
    .venv/bin/python bench/op_count.py --device cuda        # what a GPU dispatches
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402  (first: it sets the OpenMP policy before torch loads)
    SHAPES,
    BareStep,
    describe_device,
    format_table,
    images_per_step,
    loop_trainer,
    pick_device,
    write_rows,
)

# isort: split
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

COLUMNS = ["model", "batch", "trans", "replay", "bare kernels", "loop kernels", "loop views"]
COLUMNS += ["drawing ops", "bound"]
# aten operations that return a view or a tensor's metadata: no kernel runs
VIEW_OPERATIONS = {
    "alias",
    "as_strided",
    "detach",
    "expand",
    "lift_fresh",
    "permute",
    "select",
    "slice",
    "split",
    "split_with_sizes",
    "squeeze",
    "t",
    "transpose",
    "unbind",
    "unflatten",
    "unsqueeze",
    "view",
    "_unsafe_view",
    "_reshape_alias",
}


class OperationCounter(TorchDispatchMode):
    """Counts every aten operation dispatched while active, by kind and by phase."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()
        self.phase = "drawing"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        kind = "views" if name in VIEW_OPERATIONS else "kernels"
        self.counts[(self.phase, kind)] += 1
        return func(*args, **(kwargs or {}))


def count_row(
    model_name: str,
    batch: int,
    trans_name: str,
    replay: str,
    steps: int,
    device: torch.device,
    extra: tuple[str, ...] = (),
) -> dict:
    """Operations per step of an online pass of `steps` steps, and of the bare model's step."""
    trainer, data = loop_trainer(model_name, batch, trans_name, replay, steps, device, extra)
    n_train = len(data.train_y)
    trainer.online_pass(torch.randperm(n_train)[: batch * 3])  # warm-up: caches and tables
    counter = OperationCounter()
    run_steps = trainer.steps.run

    def counted_steps(planned: list, together: bool) -> None:
        counter.phase = "steps"
        run_steps(planned, together)
        counter.phase = "drawing"

    trainer.steps.run = counted_steps
    stream = torch.randperm(n_train)[: batch * steps]
    with counter:
        trainer.online_pass(stream)
    trainer.writer.close()
    per_step = images_per_step(trainer, batch)
    shape = SHAPES[model_name]
    bare = BareStep(trainer.model, trainer.cfg, trainer.precision, per_step, shape, device)
    bare(2)
    bare_counter = OperationCounter()
    bare_counter.phase = "steps"
    with bare_counter:
        bare(steps)
    bare_kernels = bare_counter.counts[("steps", "kernels")] / steps
    loop_kernels = counter.counts[("steps", "kernels")] / steps
    drawing = counter.counts[("drawing", "kernels")] + counter.counts[("drawing", "views")]
    return {
        "model": model_name,
        "batch": per_step,
        "trans": trans_name,
        "replay": replay,
        "bare kernels": bare_kernels,
        "loop kernels": loop_kernels,
        "loop views": counter.counts[("steps", "views")] / steps,
        "drawing ops": drawing / steps,
        "bound": bare_kernels / loop_kernels,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, auto or cuda[:N]")
    parser.add_argument("--models", default="mlp400")
    parser.add_argument("--batches", default="16,128", help="stream batch sizes")
    parser.add_argument("--trans", default="none,cutmix+autoaug")
    parser.add_argument("--replay", default="no,yes,rm", help="no, yes (er, reservoir), rm")
    parser.add_argument("--steps", type=int, default=64, help="counted steps per row")
    parser.add_argument("--extra", default="", help="config overrides, e.g. augment_chunk=0")
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    torch.manual_seed(0)
    print(describe_device(device))
    rows = []
    for model_name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            for trans_name in args.trans.split(","):
                for replay in args.replay.split(","):
                    row = count_row(
                        model_name,
                        batch,
                        trans_name,
                        replay,
                        args.steps,
                        device,
                        tuple(args.extra.split()),
                    )
                    rows.append(row)
                    print(format_table([row], COLUMNS).splitlines()[-1], flush=True)
    print()
    print(format_table(rows, COLUMNS))
    if args.csv is not None:
        write_rows(args.csv, rows, COLUMNS, device)
    return rows


if __name__ == "__main__":
    main()
