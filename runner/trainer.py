"""The one training loop: tasks, online or offline streams, memory epochs and evaluation."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from datasets.base import ImageData
from datasets.splits import TaskSplit
from memory import MEMORIES, SelectionContext
from methods import METHODS
from runner.augment import Augmenter
from runner.metrics import a_avg, forgetting
from runner.results import ResultWriter

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training diverged; results of the finished tasks are already on disk."""


@dataclass
class Evaluation:
    """Test accuracies after one task, in %."""

    accuracy: float
    accuracy_topk: float
    group_accuracy: np.ndarray
    class_accuracy: np.ndarray


@dataclass
class RunRecord:
    """What the run has measured so far: enough to compute every metric."""

    task_accuracy: list[float] = field(default_factory=list)
    acc_matrix: list[np.ndarray] = field(default_factory=list)
    untrained_group_accuracy: np.ndarray | None = None
    seconds: float = 0.0


class Trainer:
    """Wires data, model, method and memory, and runs the task sequence."""

    def __init__(
        self,
        cfg: DictConfig,
        data: ImageData,
        split: TaskSplit,
        device: torch.device,
        writer: ResultWriter,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.writer = writer
        self.method = METHODS.get(cfg.mode.name)(self)
        self.split = self.method.prepare_split(split)
        self.n_groups = split.n_classes // split.classes_per_task
        self.train_x = self._to_device(data.train_x)
        self.test_x = self._to_device(data.test_x)
        self.train_labels_cpu = split.relabel(data.train_y)
        self.train_labels = self.train_labels_cpu.to(device)
        self.test_labels = split.relabel(data.test_y).to(device)
        self.n_exposed = self.split.exposed[0]
        self.model = instantiate(cfg.model, in_shape=data.image_shape, n_classes=self.n_exposed).to(
            device
        )
        memory_options = {k: v for k, v in cfg.mem_manage.items() if k != "name"}
        capacity = int(cfg.mem_size) if self.method.uses_memory else 0
        self.memory = MEMORIES.get(cfg.mem_manage.name)(
            capacity=capacity, seed=int(cfg.seed), **memory_options
        )
        self.augmenter = Augmenter(
            list(cfg.trans), data.mean, data.std, data.hflip, data.image_shape[-1], device
        )
        self.online = cfg.stream.name == "online" and not self.method.offline_only
        self.global_step = 0
        self.record = RunRecord()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.progress: tqdm | None = None
        self._reset_running()

    def _to_device(self, images):
        return images.to(self.device) if isinstance(images, torch.Tensor) else images

    def fetch_images(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 training images on the device, for any index tensor."""
        if isinstance(self.train_x, torch.Tensor):
            return self.train_x[indices.to(self.train_x.device)]
        return self.train_x[indices].to(self.device, non_blocking=True)

    def selection_context(self) -> SelectionContext:
        return SelectionContext(
            model=self.model,
            fetch_images=self.fetch_images,
            normalize=self.augmenter.normalize,
            n_exposed=self.n_exposed,
            task_id=self.task_id,
            device=self.device,
            batchsize=int(self.cfg.eval_batchsize),
        )

    def new_optimizer(self) -> None:
        """A fresh optimizer and scheduler per task, as in the paper (the head may have grown)."""
        self.optimizer = instantiate(self.cfg.optimizer)(self.model.parameters())
        self.scheduler = instantiate(self.cfg.scheduler)(self.optimizer)

    # --- steps and epochs -------------------------------------------------------------------

    def _reset_running(self) -> None:
        zero = torch.zeros((), device=self.device)
        self.loss_sum, self.correct_sum, self.seen_sum = zero.clone(), zero.clone(), zero.clone()
        self.window_steps = 0
        self.task_loss_sum, self.task_steps = zero.clone(), 0

    def step(self, indices: torch.Tensor) -> None:
        """One gradient step on the given training-set indices."""
        images = self.fetch_images(indices)
        labels = self.train_labels[indices.to(self.device)]
        batch = self.augmenter.train_batch(images, labels)
        self.model.train()
        loss, logits = self.method.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.after_step()
        self.global_step += 1
        detached = loss.detach()
        self.loss_sum += detached
        self.task_loss_sum += detached
        self.task_steps += 1
        self.correct_sum += (logits.detach().argmax(1) == batch.y).sum()
        self.seen_sum += len(batch.y)
        self.window_steps += 1
        if self.progress is not None:
            self.progress.update(1)
        if self.window_steps >= int(self.cfg.log_every):
            self._flush_window()

    def _flush_window(self) -> None:
        """Sync once per window: check the loss, log it, update the progress bar."""
        if self.window_steps == 0:
            return
        mean_loss = (self.loss_sum / self.window_steps).item()
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"the training loss became {mean_loss} in task {self.task_id} (steps up to "
                f"{self.global_step}); lower lr={self.cfg.lr} or check the data. Results of "
                f"the {len(self.record.task_accuracy)} finished task(s) are in results/."
            )
        accuracy = 100.0 * (self.correct_sum / self.seen_sum.clamp(min=1)).item()
        lr = self.optimizer.param_groups[0]["lr"]
        self.writer.scalar("train/loss", mean_loss, self.global_step)
        self.writer.scalar("train/accuracy", accuracy, self.global_step)
        self.writer.scalar("train/lr", lr, self.global_step)
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{accuracy:.1f}")
        self.loss_sum.zero_()
        self.correct_sum.zero_()
        self.seen_sum.zero_()
        self.window_steps = 0

    def _plan_steps(self, n_steps: int) -> None:
        if self.progress is not None:
            self.progress.total = (self.progress.total or 0) + n_steps
            self.progress.refresh()

    def run_epoch(self, pool: torch.Tensor) -> None:
        """One shuffled pass over the pool of training-set indices, then a scheduler step."""
        batchsize = int(self.cfg.batchsize)
        order = pool[torch.randperm(len(pool))]
        self._plan_steps(math.ceil(len(order) / batchsize))
        for start in range(0, len(order), batchsize):
            self.step(order[start : start + batchsize])
        self.scheduler.step()

    def online_pass(self, task_indices: torch.Tensor) -> None:
        """Each incoming batch once, in stream order, with online_iter steps per batch."""
        batchsize, repeats = int(self.cfg.batchsize), int(self.cfg.stream.online_iter)
        self._plan_steps(math.ceil(len(task_indices) / batchsize) * repeats)
        for start in range(0, len(task_indices), batchsize):
            incoming = task_indices[start : start + batchsize]
            for _ in range(repeats):
                indices = self.method.online_batch(incoming)
                if len(indices):
                    self.step(indices)
            self.method.observe_stream(incoming)
        self.scheduler.step()

    def train_task(self, task_id: int, task_indices: torch.Tensor) -> None:
        """Everything that happens between two evaluations."""
        self.task_id = task_id
        self.n_exposed = self.split.exposed[task_id]
        self.model.grow(self.n_exposed)
        self.new_optimizer()
        self.method.before_task(task_id)
        if self.online:
            self.online_pass(task_indices)
        else:
            for _ in range(int(self.cfg.n_epoch)):
                pool = self.method.offline_pool(task_indices)
                if len(pool):
                    self.run_epoch(pool)
        self.method.end_stream(task_id, task_indices, streamed=self.online)
        for _ in range(self.method.memory_epochs(self.online)):
            if len(self.memory):
                self.run_epoch(self.memory.indices)
        self._flush_window()
        self.method.after_task(task_id)

    # --- evaluation -------------------------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self) -> Evaluation:
        """Accuracy on the test samples of the exposed classes, per class and per task group."""
        self.model.eval()
        n_test, topk = len(self.test_labels), int(self.cfg.topk)
        top1 = torch.zeros(n_test, dtype=torch.bool, device=self.device)
        in_topk = torch.zeros(n_test, dtype=torch.bool, device=self.device)
        batchsize = int(self.cfg.eval_batchsize)
        for start in range(0, n_test, batchsize):
            stop = min(start + batchsize, n_test)
            images = self.test_x[torch.arange(start, stop)].to(self.device, non_blocking=True)
            scores = self.method.predict(self.augmenter.normalize(images))
            best = scores.topk(min(topk, scores.shape[1]), dim=1).indices
            labels = self.test_labels[start:stop]
            top1[start:stop] = best[:, 0] == labels
            in_topk[start:stop] = (best == labels[:, None]).any(1)
        exposed = self.test_labels < self.n_exposed
        n_classes = self.split.n_classes
        per_class_total = torch.bincount(self.test_labels, minlength=n_classes).clamp(min=1)
        per_class = torch.bincount(self.test_labels[top1], minlength=n_classes) / per_class_total
        groups = self.split.label_group(self.test_labels)
        per_group = torch.bincount(groups[top1], minlength=self.n_groups) / torch.bincount(
            groups, minlength=self.n_groups
        ).clamp(min=1)
        return Evaluation(
            accuracy=100.0 * top1[exposed].float().mean().item(),
            accuracy_topk=100.0 * in_topk[exposed].float().mean().item(),
            group_accuracy=100.0 * per_group.cpu().numpy(),
            class_accuracy=100.0 * per_class.cpu().numpy(),
        )

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> RunRecord:
        """Train and evaluate every task, writing results after each one."""
        self.task_id = 0
        self.record.untrained_group_accuracy = self.evaluate().group_accuracy
        started = time.perf_counter()
        for task_id, task_indices in enumerate(self.split.train_tasks):
            task_started = time.perf_counter()
            self.progress = tqdm(
                total=0,
                desc=f"task {task_id + 1}/{self.split.n_tasks}",
                disable=not self.cfg.progress,
                leave=False,
                dynamic_ncols=True,
            )
            try:
                self.train_task(task_id, task_indices)
            finally:
                self.progress.close()
                self.progress = None
            evaluation = self.evaluate()
            self._record_task(task_id, task_indices, evaluation, time.perf_counter() - task_started)
            self._reset_running()
        self.record.seconds = time.perf_counter() - started
        return self.record

    def _record_task(
        self, task_id: int, task_indices: torch.Tensor, evaluation: Evaluation, seconds: float
    ) -> None:
        record = self.record
        record.task_accuracy.append(evaluation.accuracy)
        record.acc_matrix.append(evaluation.group_accuracy)
        matrix = np.vstack(record.acc_matrix)
        train_loss = (self.task_loss_sum / max(self.task_steps, 1)).item()
        topk = int(self.cfg.topk)
        row = {
            "task": task_id,
            "n_seen_classes": self.n_exposed,
            "n_train_samples": len(task_indices),
            "memory_size": len(self.memory),
            "test_acc": evaluation.accuracy,
            f"test_acc_top{topk}": evaluation.accuracy_topk,
            "A_avg_so_far": a_avg(np.array(record.task_accuracy)),
            "forgetting_so_far": forgetting(matrix),
            "train_loss": train_loss,
            "steps": self.global_step,
            "wall_seconds": seconds,
        }
        self.writer.add_task(row, evaluation.group_accuracy)
        self.writer.scalar("test/accuracy", evaluation.accuracy, task_id)
        self.writer.scalar(f"test/accuracy_top{topk}", evaluation.accuracy_topk, task_id)
        self.writer.scalar("test/train_loss", train_loss, task_id)
        self.writer.histogram("memory/class", self.memory.labels.numpy(), task_id)
        log.info(
            "task %d/%d | classes %d | train %d | memory %d | test acc %.2f%% | loss %.4f | %.1fs",
            task_id + 1,
            self.split.n_tasks,
            self.n_exposed,
            len(task_indices),
            len(self.memory),
            evaluation.accuracy,
            train_loss,
            seconds,
        )
