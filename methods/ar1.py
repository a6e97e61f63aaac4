"""mode=ar1: AR1* with latent replay (Pellegrini et al., IROS 2020): a CWR* head, replay of
activations stored at a cut layer, lower layers slowed down or frozen after the first task."""

from __future__ import annotations

import torch
from torch import nn

from rainbow_runner.methods.base import METHODS, NO_ROWS, MethodContext, TrainBatch
from rainbow_runner.methods.cwr_star import CopyWeightsWithReinit
from rainbow_runner.methods.functional import mixed_cross_entropy

LATENT = "latent"  # the memory payload: a stored sample's flattened activations at the cut


@METHODS.register("ar1")
class AR1(CopyWeightsWithReinit):
    """The backbone is cut before module `latent_layer` of its nn.Sequential: a step runs the
    stream rows through the lower part and concatenates the replayed rows' stored activations
    there, so replay trains the upper part and the head only. Replay starts with the second
    task (mem_batchsize rows per step), as Avalanche's; the memory stores each sample's
    activations (eval mode, un-augmented) when it takes the sample in. After the first task
    the lower part's learning rate is lr·inc_lr (0: frozen, Avalanche's) and every BatchNorm's
    momentum becomes inc_update_rate. The head is CWR*'s, with cur_j counting the memory too.
    """

    uses_memory = True

    def __init__(
        self,
        context: MethodContext,
        latent_layer: int = 4,
        inc_lr: float = 0.0,
        inc_update_rate: float = 5e-5,
        past_weight: str = "sqrt",
    ) -> None:
        super().__init__(context, freeze_remaining_model=False, past_weight=past_weight)
        backbone = context.model.backbone
        if not isinstance(backbone, nn.Sequential) or not 0 < latent_layer < len(backbone):
            valid = f"1..{len(backbone) - 1}" if isinstance(backbone, nn.Sequential) else "none"
            raise ValueError(
                f"mode=ar1 cuts the backbone before module mode.latent_layer={latent_layer} of "
                f"its nn.Sequential and needs a position inside it (this model: {valid}); "
                f"models whose backbone is not an nn.Sequential (resnet34) cannot be cut."
            )
        if not context.memory.streaming:
            raise ValueError(
                f"mode=ar1 stores each sample's latent activations as it enters the memory and "
                f"needs a memory that takes samples in as they come (reservoir, random, gdumb), "
                f"not mem_manage={context.settings.memory_name}."
            )
        if not 0.0 <= inc_lr <= 1.0 or not 0.0 <= inc_update_rate <= 1.0:
            raise ValueError(
                f"mode.inc_lr={inc_lr}, mode.inc_update_rate={inc_update_rate}: AR1 needs both "
                f"in [0, 1] (a factor on the lower layers' lr, a BatchNorm momentum)."
            )
        self.lower, self.upper = backbone[:latent_layer], backbone[latent_layer:]
        self.inc_lr, self.inc_update_rate = inc_lr, inc_update_rate
        self.mem_batchsize = context.settings.mem_batchsize
        with torch.no_grad():
            first = context.split.train_tasks[0][:1]
            self.latent_shape = self.latents(context.inputs(first)).shape[1:]

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Activations at the cut (as they are stored: eval mode, no gradient)."""
        was_training = self.model.training
        self.lower.eval()
        with torch.no_grad(), self.context.precision.autocast():
            acts = self.lower(x).float()
        self.lower.train(was_training)
        return acts

    def task_counts(self, task_id: int) -> torch.Tensor:
        """cur_j: the task's samples plus the memory's, which train the head too."""
        counts = super().task_counts(task_id)
        if task_id > 0:
            counts += self.memory.class_counts(len(counts)).to(counts)
        return counts

    def prepare_model(self) -> None:
        super().prepare_model()
        later = self.context.task_id > 0
        self.lower.requires_grad_(not later or self.inc_lr > 0)
        if later:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = self.inc_update_rate

    def parameter_groups(self) -> list:
        lower = [p for p in self.lower.parameters() if p.requires_grad]
        lower_ids = {id(p) for p in self.lower.parameters()}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in lower_ids]
        return [{"params": lower}, {"params": rest}] if lower else [{"params": rest}]

    def before_task(self, task_id: int) -> None:
        super().before_task(task_id)
        groups = self.context.optimizer.param_groups
        if task_id > 0 and len(groups) == 2:  # the lower layers learn inc_lr times slower
            for key in ("lr", "initial_lr"):
                if key in groups[0]:
                    groups[0][key] *= self.inc_lr

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if self.context.task_id == 0 or len(self.memory) == 0:
            return NO_ROWS
        return self.memory.sample(self.mem_batchsize)

    def forward_with_replay(self, batch: TrainBatch) -> torch.Tensor:
        """Logits of the batch: stream rows through the whole network, replayed rows from their
        stored activations (rows without one: computed now, without gradient)."""
        replayed = batch.from_memory
        stream = self.lower(batch.x[~replayed]) if not replayed.all() else None
        dtype = torch.float32 if stream is None else stream.dtype
        acts = torch.zeros(len(batch.y), *self.latent_shape, device=batch.x.device, dtype=dtype)
        if stream is not None:
            acts[~replayed] = stream
        if replayed.any():
            stored, found = self.memory.payload(LATENT, batch.indices[replayed.cpu()])
            stored = stored.to(acts.device, dtype).reshape(-1, *self.latent_shape)
            if not found.all():
                missing = ~found.to(acts.device)
                stored[missing] = self.latents(batch.x[replayed][missing]).to(dtype)
            acts[replayed] = stored
        return self.model.head(self.upper(acts))

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward_with_replay(batch)
        return mixed_cross_entropy(logits, batch), logits

    def observe_stream(self, stream_indices: torch.Tensor) -> None:
        """The incoming batch goes to the memory with its activations at the cut."""
        labels = self.context.train_labels.index_select(0, stream_indices)
        acts = self.latents(self.context.inputs(stream_indices)).flatten(1)
        self.memory.add(stream_indices, labels, self.context.n_exposed, {LATENT: acts})

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        """Offline, the task's samples are offered with their activations."""
        if streamed or self.memory.capacity == 0:
            return
        context = self.context
        acts = torch.cat(
            context.selection().map_batches(
                task_indices, lambda images: self.latents(context.normalize(images)).flatten(1)
            )
        )
        labels = context.train_labels[task_indices]
        self.memory.add(task_indices, labels, context.n_exposed, payloads={LATENT: acts})
