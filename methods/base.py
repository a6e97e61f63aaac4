"""What a CL method may change about plain training: a handful of hooks over one loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.datasets.choices import Registry
from rainbow_runner.datasets.splits import TaskSplit

if TYPE_CHECKING:
    from rainbow_runner.runner.trainer import Trainer


class Method:
    """Plain training; subclasses override only the hooks where they differ.

    The loop (runner/trainer.py) calls, per task: before_task; then either the online pass
    (online_batch + step per incoming batch, then observe_stream) or offline epochs over
    offline_pool; then end_stream (the memory update); then memory_epochs epochs on the
    memory alone; then after_task. Every step calls loss, backward, optimizer step, after_step.
    """

    name = "method"
    uses_memory = True  # False: the memory is never filled (mem_size is ignored)
    offline_only = False  # True: trains offline whatever stream= says (gdumb, joint)

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.options = trainer.cfg.mode

    @property
    def model(self) -> torch.nn.Module:
        return self.trainer.model

    @property
    def memory(self):
        return self.trainer.memory

    def prepare_split(self, split: TaskSplit) -> TaskSplit:
        """The task sequence this method trains on (joint merges all tasks into one)."""
        return split

    def before_task(self, task_id: int) -> None:
        """Called after the head has grown and the optimizer was re-created for the task."""

    def online_batch(self, stream_indices: torch.Tensor) -> torch.Tensor:
        """Training-set indices of one online step: the incoming batch and what it replays.

        Like observe_stream, it must not depend on the model: the loop draws a few steps'
        batches before it trains on them (augment_chunk), in step-by-step order.
        """
        return stream_indices

    def observe_stream(self, stream_indices: torch.Tensor) -> None:
        """Let streaming memories see the incoming batch once its steps are drawn."""
        if self.memory.streaming and self.uses_memory:
            labels = self.trainer.train_labels_cpu.index_select(0, stream_indices)
            self.memory.observe(stream_indices, labels, self.trainer.n_exposed)

    def offline_pool(self, task_indices: torch.Tensor) -> torch.Tensor:
        """Training-set indices that one offline epoch of this task shuffles over."""
        return task_indices

    def loss(self, batch: MixedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss of a batch and the logits it came from."""
        logits = self.model(batch.x)
        return mixed_cross_entropy(logits, batch), logits

    def after_step(self) -> None:
        """After optimizer.step(); gradients are still in .grad (path integrals, EMAs)."""

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        """The memory update once the task's stream has been trained on."""
        if self.uses_memory:
            labels = self.trainer.train_labels_cpu[task_indices]
            self.memory.end_task(task_indices, labels, self.trainer.selection_context(), streamed)

    def memory_epochs(self, online: bool) -> int:
        """Epochs on the memory alone after the memory update."""
        if not online or not self.uses_memory:
            return 0
        return int(self.trainer.cfg.stream.memory_epochs)

    def memory_pool(self) -> torch.Tensor:
        """Training-set indices that each memory epoch shuffles over (bic holds some out)."""
        return self.memory.indices

    def after_task(self, task_id: int) -> None:
        """After the task's training, before its evaluation."""

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores used for evaluation (highest wins)."""
        return self.model(x)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Method state to checkpoint (tensors only)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None


def with_prefix(prefix: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """values under prefix-ed keys, to share one flat checkpoint dict with other entries."""
    return {prefix + name: value for name, value in values.items()}


def without_prefix(
    state: dict[str, torch.Tensor], prefix: str, device: torch.device | None = None
) -> dict[str, torch.Tensor]:
    """The entries saved under prefix, the prefix removed (moved to device when given)."""
    return {
        key[len(prefix) :]: value if device is None else value.to(device)
        for key, value in state.items()
        if key.startswith(prefix)
    }


def mixed_cross_entropy(logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
    """lam * CE(y) + (1 - lam) * CE(y_mix): plain CE when the batch was not mixed."""
    if batch.y_mix is None or batch.lam >= 1.0:
        return F.cross_entropy(logits, batch.y)
    log_probs = F.log_softmax(logits, 1)  # once for both terms
    own, partner = F.nll_loss(log_probs, batch.y), F.nll_loss(log_probs, batch.y_mix)
    return torch.lerp(partner, own, batch.lam)


METHODS: Registry[Method] = Registry("mode")
