"""mode=der, mode=derpp: Dark Experience Replay (Buzzega et al., NeurIPS 2020): the memory keeps
the logits each sample had when it was stored, and replay matches them; DER++ also replays
labels."""

from __future__ import annotations

import torch

from rainbow_runner.methods.base import METHODS, NO_ROWS, Method, MethodContext, TrainBatch
from rainbow_runner.methods.functional import rows_cross_entropy, stored_logit_distance

LOGITS = "logits"  # the memory payload: one row of logits per stored sample
LATER_CLASSES = ("floor", "ignore")  # targets for the logits of classes exposed after storing


@METHODS.register("der")
class DarkExperienceReplay(Method):
    """CE on the stream rows + alpha · MSE(logits, stored logits) on mem_batchsize memory rows.

    A stream step's rows are [stream | logit rows | label rows]: replay() draws each memory
    batch on its own (DER++'s label rows only when beta > 0), so loss() reads the roles from
    n_stream and the row count. In the memory epochs after an online task every row is a
    memory row: CE on its label, as er trains them, plus alpha · MSE to its stored logits.

    Logits are stored when a sample enters the memory: online, those of the step that trained
    on its incoming batch (its augmented view, before the update; stepwise_draws makes
    observe_stream follow that step); offline, eval-mode logits of the task's samples when the
    memory takes them in at end_stream.
    """

    replays = True
    stepwise_draws = True
    beta = 0.0  # DER++'s weight of the label rows (der has none)

    def __init__(
        self, context: MethodContext, alpha: float = 0.1, later_classes: str = "floor"
    ) -> None:
        super().__init__(context)
        if later_classes not in LATER_CLASSES:
            raise ValueError(
                f"mode.later_classes={later_classes!r} is not one of {', '.join(LATER_CLASSES)}."
            )
        if not context.memory.streaming:
            raise ValueError(
                f"mode={self.name} stores logits as samples enter the memory and needs a "
                f"memory that takes them in as they come (reservoir, random, gdumb), not "
                f"mem_manage={context.settings.memory_name}."
            )
        self.alpha = alpha
        self.floor_later = later_classes == "floor"
        self.mem_batchsize = context.settings.mem_batchsize
        self.stream_logits: torch.Tensor | None = None  # the last step's, for observe_stream

    def replay(self, stream_indices: torch.Tensor) -> torch.Tensor:
        if len(self.memory) == 0:
            return NO_ROWS
        draws = [self.memory.sample(self.mem_batchsize)]
        if self.beta > 0:
            draws.append(self.memory.sample(self.mem_batchsize))  # equal sizes: split in half
        return torch.cat(draws)

    def row_roles(self, batch: TrainBatch) -> tuple[slice, slice, slice]:
        """The rows trained on with CE, those matched to stored logits, DER++'s label rows."""
        if batch.n_stream == 0:  # a memory epoch
            return slice(None), slice(None), slice(0, 0)
        start = batch.n_stream
        n_logit = (len(batch.y) - start) // (2 if self.beta > 0 else 1)
        return slice(0, start), slice(start, start + n_logit), slice(start + n_logit, None)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch.x)
        data, logit_rows, label_rows = self.row_roles(batch)
        if batch.n_stream:
            self.stream_logits = logits[data].detach().float()
        loss = rows_cross_entropy(logits, batch, data)
        if len(batch.indices[logit_rows]) and self.alpha > 0:
            stored, _ = self.memory.payload(LOGITS, batch.indices[logit_rows])
            loss = loss + self.alpha * stored_logit_distance(
                logits[logit_rows], stored, self.floor_later
            )
        if len(batch.indices[label_rows]) and self.beta > 0:
            loss = loss + self.beta * rows_cross_entropy(logits, batch, label_rows)
        return loss, logits

    def observe_stream(self, stream_indices: torch.Tensor) -> None:
        """The incoming batch goes to the memory with the logits its last step computed."""
        labels = self.context.train_labels.index_select(0, stream_indices)
        payloads = {LOGITS: self.stream_logits}
        self.memory.add(stream_indices, labels, self.context.n_exposed, payloads=payloads)
        self.stream_logits = None

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        """Offline, the task's samples are offered with the current model's logits."""
        if streamed or self.memory.capacity == 0:  # online, each batch went in with its logits
            super().end_stream(task_id, task_indices, streamed)
            return
        context = self.context

        def model_logits(images: torch.Tensor) -> torch.Tensor:
            return self.model(context.normalize(images)).float()

        logits = torch.cat(context.selection().map_batches(task_indices, model_logits))
        labels = context.train_labels[task_indices]
        self.memory.add(task_indices, labels, context.n_exposed, payloads={LOGITS: logits})


@METHODS.register("derpp")
class DarkExperienceReplayPlusPlus(DarkExperienceReplay):
    """DER plus beta · CE on the labels of a second, independently drawn memory batch."""

    def __init__(
        self,
        context: MethodContext,
        alpha: float = 0.1,
        beta: float = 0.5,
        later_classes: str = "floor",
    ) -> None:
        super().__init__(context, alpha, later_classes)
        self.beta = beta
