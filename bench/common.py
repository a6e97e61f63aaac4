"""Shared benchmark helpers: the device in words, synthetic data, a real Trainer, timing."""

from __future__ import annotations

import copy
import csv
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch, as the command line does

# isort: split
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from rainbow_runner.datasets.base import ImageData  # noqa: E402
from rainbow_runner.datasets.splits import make_split  # noqa: E402
from rainbow_runner.runner.config import compose_config  # noqa: E402
from rainbow_runner.runner.config_check import resolve_device  # noqa: E402
from rainbow_runner.runner.models import MixedPrecision  # noqa: E402
from rainbow_runner.runner.reporting.results import ResultWriter  # noqa: E402
from rainbow_runner.runner.trainer import Trainer  # noqa: E402

SHAPES = {"mlp400": (1, 28, 28), "resnet18": (3, 32, 32), "resnet32": (3, 32, 32)}
TRANS_SETS = {"none": [], "cutmix+autoaug": ["cutmix", "autoaug"]}
# --replay: no (mode=er, no memory), yes (er + reservoir: the memory changes every batch),
# rm (rm + its uncertainty memory: fixed during the stream, so whole steps are drawn ahead)
REPLAY_MODES = {"no": "er", "yes": "er", "rm": "rm"}


class BareStep:
    """The limit: the model's own training step on a batch that is already on the device,
    in the loop's precision (amp) and memory format (channels_last)."""

    def __init__(self, model, cfg, precision: MixedPrecision, batch: int, shape, device) -> None:
        self.model = copy.deepcopy(model).train()
        self.optimizer = instantiate(cfg.optimizer)(self.model.parameters())
        self.precision = precision
        self.x = torch.randn(batch, *shape, device=device)
        self.y = torch.randint(0, self.model.n_classes, (batch,), device=device)

    def __call__(self, steps: int) -> None:
        for _ in range(steps):
            with self.precision.autocast():
                loss = F.cross_entropy(self.model(self.x), self.y)
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward_and_step(loss, self.optimizer)


# Run directories of benchmark trainers (logs, events): removed when the process exits.
_SCRATCH = tempfile.TemporaryDirectory(prefix="bench_", ignore_cleanup_errors=True)


def describe_device(device: torch.device) -> str:
    """What the numbers were measured on, printed with every table."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return (
        f"{device.type}: {name} | torch {torch.__version__} | threads {torch.get_num_threads()} "
        f"| cpus {os.cpu_count()} | OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )


def pick_device(name: str) -> torch.device:
    return resolve_device(name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pick_clock(name: str, device: torch.device) -> Callable[[], float]:
    """cpu: this process's CPU seconds, immune to other jobs on a shared CPU (single-threaded
    CPU runs only); wall: elapsed seconds (GPUs, multi-threaded runs); auto picks."""
    if name == "auto":
        single = device.type == "cpu" and torch.get_num_threads() == 1
        name = "cpu" if single else "wall"
    return time.process_time if name == "cpu" else time.perf_counter


def time_call(
    fn: Callable[[], object], device: torch.device, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds of fn() on `clock`, with the device's queue drained before and after."""
    synchronize(device)
    started = clock()
    fn()
    synchronize(device)
    return clock() - started


def synthetic_data(
    n_train: int, shape: tuple[int, int, int], n_classes: int = 10, seed: int = 0
) -> ImageData:
    """Random uint8 images with balanced labels: data loading is not what we measure."""
    generator = torch.Generator().manual_seed(seed)
    channels = shape[0]
    n_test = max(n_classes, n_train // 10)
    return ImageData(
        name="synthetic",
        train_x=torch.randint(0, 256, (n_train, *shape), dtype=torch.uint8, generator=generator),
        train_y=torch.arange(n_train) % n_classes,
        test_x=torch.randint(0, 256, (n_test, *shape), dtype=torch.uint8, generator=generator),
        test_y=torch.arange(n_test) % n_classes,
        class_names=[str(c) for c in range(n_classes)],
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        hflip=True,
    )


def build_trainer(
    overrides: list[str], data: ImageData, device: torch.device, run_dir: Path | None = None
) -> Trainer:
    """A real Trainer, ready to step task 0: model grown, optimizer made, before_task called."""
    cfg = compose_config(["progress=false", f"device={device}", *overrides])
    split = make_split(data.train_y, data.n_classes, int(cfg.n_tasks), float(cfg.exp.blurry), 0)
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(dir=_SCRATCH.name))
    trainer = Trainer(cfg, data, split, device, ResultWriter(run_dir))
    trainer.task_id = trainer.context.task_id = 0
    trainer.n_exposed = trainer.context.n_exposed = split.exposed[0]
    trainer.begin_task()
    return trainer


def fill_memory(trainer: Trainer, n_samples: int) -> None:
    """Put n random training samples into the trainer's memory, as a run past its start would."""
    fill = torch.randperm(len(trainer.train_labels_cpu))[:n_samples]
    labels = trainer.train_labels_cpu.index_select(0, fill)
    if trainer.memory.streaming:
        trainer.memory.add(fill, labels, trainer.n_exposed)
    else:  # a per-task manager holds what its last end_task kept
        trainer.memory.indices, trainer.memory.labels = fill, labels


def images_per_step(trainer: Trainer, batch: int) -> int:
    """Stream plus replayed images of one online step."""
    return batch + len(trainer.method.replay(torch.arange(batch)))


def loop_trainer(
    model_name: str,
    batch: int,
    trans_name: str,
    replay: str,
    steps: int,
    device: torch.device,
    extra: tuple[str, ...] = (),
) -> tuple[Trainer, ImageData]:
    """A trainer on synthetic data as mid-way through a stream: memory full where it replays."""
    mem_size = 0 if replay == "no" else 500
    data = synthetic_data(max(2000, mem_size + batch * steps), SHAPES[model_name])
    overrides = [
        f"model={model_name}",
        f"mode={REPLAY_MODES[replay]}",
        f"mem_size={mem_size}",
        f"batchsize={batch}",
        f"trans=[{','.join(TRANS_SETS[trans_name])}]",
        *extra,
    ]
    trainer = build_trainer(overrides, data, device)
    if mem_size:
        fill_memory(trainer, mem_size)
        if hasattr(trainer.memory, "n_seen"):  # reservoir as mid-way through Fashion-MNIST:
            trainer.memory.n_seen = 30_000  # ~1 replacement per 4 batches, not one per sample
    return trainer, data


def write_rows(path: Path, rows: list[dict], columns: list[str], device: torch.device) -> None:
    """The rows as a CSV, each with the device it was measured on."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns + ["device"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "device": describe_device(device)})


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-flavoured markdown table, so README tables are pasted from the output."""
    cells = [[_format(row.get(c, "")) for c in columns] for row in rows]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


def _format(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    return str(value)
