"""Host syncs per training step on CUDA; the GPU augmentation path against the CPU one.

A sync stalls Python until the GPU queue drains, so one per step costs a small model most of
its GPU speed. This counts them with torch.cuda.set_sync_debug_mode over real Trainer steps
(ER replay, each TRANS set), outside the once-per-window log flush; checks that
autoaug/randaug tables applied to the whole batch on the GPU (eager, captured and replayed
as CUDA graphs) give the CPU's sorted result; times both with and without graphs.

    python bench/sync_check.py            # needs a CUDA device
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402  (first: it sets the OpenMP policy before torch loads)
    build_trainer,
    describe_device,
    fill_memory,
    format_table,
    synthetic_data,
)

# isort: split
import torch  # noqa: E402

from rainbow_runner.datasets.augment import ops as image_ops
from rainbow_runner.datasets.augment import policies as transforms  # noqa: E402

TRANS_SETS = {"none": [], "cutmix+autoaug": ["cutmix", "autoaug"], "randaug": ["randaug"]}


def syncs_per_step(trans: list[str], batch: int, steps: int, device: torch.device) -> float:
    """Mean host syncs per step of an ER online pass (memory full, no log flush)."""
    data = synthetic_data(4000, (1, 28, 28))
    overrides = ["model=mlp400", "mode=er", "mem_size=500", f"batchsize={batch}"]
    overrides += [f"trans=[{','.join(trans)}]", f"log_every={10 * steps}"]
    trainer = build_trainer(overrides, data, device)
    fill_memory(trainer, 500)
    trainer.online_pass(torch.randperm(len(data.train_y))[: batch * 3])  # warm-up
    trainer._flush_window()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.online_pass(torch.randperm(len(data.train_y))[: batch * steps])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for warning in caught[:3]:
        print("  sync:", str(warning.message).splitlines()[0])
    trainer.writer.close()
    return sum("synchroniz" in str(w.message) for w in caught) / steps


def table_mismatches(device: torch.device, batch: int = 256, calls: int = 4) -> list[dict]:
    """Images whose GPU whole-batch result differs from the CPU sorted result, per table.

    Each table is applied `calls` times to one batch shape: eagerly, then captured as a CUDA
    graph, then replayed, each with fresh draws.
    """
    rows = []
    cpu = torch.device("cpu")
    for shape in [(1, 28, 28), (3, 32, 32)]:
        images = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8)
        tables = {
            "autoaug0": lambda d, shape=shape: transforms.autoaug_table(shape, 0, d),
            "autoaug1": lambda d, shape=shape: transforms.autoaug_table(shape, 1, d),
            "randaug": lambda d, shape=shape: transforms.randaug_table(shape, 9, 31, d),
        }
        for name, table in tables.items():
            on_cpu, on_gpu = table(cpu), table(device)
            differing, worst = 0, 0
            for _ in range(calls):
                pair = torch.randint(len(on_cpu.pairs), (batch,))
                want = on_cpu.apply(images, pair)
                got = on_gpu.apply(images.to(device), pair).cpu()
                differing += int((got != want).flatten(1).any(1).sum())
                worst = max(worst, int((got.int() - want.int()).abs().max()))
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "table": name,
                    "images x calls": f"{batch} x {calls}",
                    "graphs captured": len(on_gpu.graphs),
                    "differing images": differing,
                    "max abs diff": worst,
                }
            )
    return rows


def augment_timings(device: torch.device, calls: int = 200) -> list[dict]:
    """Microseconds per autoaug/randaug call on the GPU, with and without CUDA graphs."""
    rows = []
    for batch in (16, 512):
        images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8, device=device)
        for graphs in (False, True):
            image_ops.CUDA_GRAPHS.enabled = graphs
            for name, transform in (
                ("autoaug", transforms.auto_augment),
                ("randaug", transforms.rand_augment),
            ):
                for _ in range(5):
                    transform(images)  # warm-up and capture
                torch.cuda.synchronize(device)
                started = time.perf_counter()
                for _ in range(calls):
                    transform(images)
                torch.cuda.synchronize(device)
                seconds = (time.perf_counter() - started) / calls
                rows.append(
                    {
                        "trans": name,
                        "batch": batch,
                        "cuda_graphs": graphs,
                        "us per call": 1e6 * seconds,
                    }
                )
    image_ops.CUDA_GRAPHS.enabled = True
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="16,128")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("sync_check.py needs a CUDA device (host syncs only exist there).")
    device = torch.device("cuda")
    print(describe_device(device))
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        for name, trans in TRANS_SETS.items():
            syncs = syncs_per_step(trans, batch, args.steps, device)
            rows.append({"batch": batch, "trans": name, "syncs per step": syncs})
    print(format_table(rows, list(rows[0])))
    print()
    mismatches = table_mismatches(device)
    print(format_table(mismatches, list(mismatches[0])))
    print()
    timings = augment_timings(device)
    print(format_table(timings, list(timings[0])))


if __name__ == "__main__":
    main()
