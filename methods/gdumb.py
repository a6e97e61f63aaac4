"""mode=gdumb: GDumb (Prabhu et al., ECCV 2020): a greedy class-balanced memory and a model
trained from scratch on that memory alone at every evaluation point."""

from __future__ import annotations

import copy
import hashlib
import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rainbow_runner.methods.base import METHODS, Method, MethodContext
from rainbow_runner.methods.functional import reinitialize


@METHODS.register("gdumb")
class GDumb(Method):
    """The stream only fills the memory; then the model is re-initialised, given a new
    optimizer, and trained n_epoch epochs on the memory (whatever stream= says).

    With eval_period on an online stream (the CLIB paper's protocol), the memory takes the
    stream in as it flows and each anytime point trains a copy of the model from scratch on
    the memory of that moment for anytime_epochs epochs, scores it and discards it.
    """

    needs_task_boundaries = True  # retrains from scratch on the memory at each task's end

    offline_only = True
    anytime_online = True
    trains_on_stream = False  # online (under eval_period): the stream only fills the memory

    def __init__(self, context: MethodContext, anytime_epochs: int = 256) -> None:
        super().__init__(context)
        if anytime_epochs < 1:
            raise ValueError(
                f"mode.anytime_epochs={anytime_epochs} must be a positive number of epochs on "
                f"the memory at each anytime point (the paper's code: 256)."
            )
        self.anytime_epochs = anytime_epochs
        self.last_predictor: tuple[bytes, nn.Module] | None = None  # (its inputs' digest, it)

    def offline_pool(self, task_indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        return task_indices[:0], 0  # nothing is learned from the stream itself

    def end_stream(self, task_id: int, task_indices: torch.Tensor, streamed: bool) -> None:
        super().end_stream(task_id, task_indices, streamed)
        reinitialize(self.model)
        self.context.new_optimizer()

    def memory_epochs(self) -> int:
        return self.context.settings.n_epoch

    def anytime_predictor(self) -> nn.Module | None:
        """A copy of the model, re-initialised and trained on the memory as it is now: as the
        paper's code, one warm-up epoch at lr/10, then cosine-annealed epochs at the run's
        optimizer settings; the run's model, optimizer and memory are left untouched.

        The copy is a function of the memory, the global random streams, the model and the
        optimizer settings: when none changed since the last point (a full, balanced memory
        drops every sample; the stream trains nothing), the last copy is that same model
        and is returned instead of being trained again.
        """
        indices, context = self.memory.indices, self.context
        if not len(indices) or context.optimizer is None:
            return None
        digest = self._predictor_inputs()
        if self.last_predictor is not None and self.last_predictor[0] == digest:
            return self.last_predictor[1]
        model = self._train_from_scratch(indices)
        self.last_predictor = (digest, model)
        return model

    def _predictor_inputs(self) -> bytes:
        """A digest of everything a from-scratch copy's training reads."""
        digest = hashlib.sha256()
        for tensor in (self.memory.indices, self.memory.labels, torch.get_rng_state()):
            digest.update(tensor.cpu().numpy().tobytes())
        if torch.cuda.is_available():
            for state in torch.cuda.get_rng_state_all():
                digest.update(state.numpy().tobytes())
        _, numpy_key, numpy_pos, has_gauss, gauss = np.random.get_state()
        digest.update(numpy_key.tobytes())
        digest.update(repr((random.getstate(), numpy_pos, has_gauss, gauss)).encode())
        for name, tensor in self.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        optimizer = self.context.optimizer
        settings = (type(optimizer).__name__, optimizer.defaults, self.context.settings.batchsize)
        digest.update(repr(settings).encode())
        return digest.digest()

    def _train_from_scratch(self, indices: torch.Tensor) -> nn.Module:
        """anytime_epochs epochs on the memory from a re-initialised copy of the model."""
        context = self.context
        model = copy.deepcopy(self.model)
        reinitialize(model)
        model.train()
        optimizer = type(context.optimizer)(model.parameters(), **context.optimizer.defaults)
        lr = optimizer.defaults["lr"]
        batchsize = context.settings.batchsize
        labels = context.labels(indices)
        for epoch in range(self.anytime_epochs):
            rest = max(1, self.anytime_epochs - 1)
            scale = 0.1 if epoch == 0 else 0.5 * (1 + math.cos(math.pi * (epoch - 1) / rest))
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
            order = torch.randperm(len(indices))
            for start in range(0, len(order), batchsize):
                rows = order[start : start + batchsize]
                images = context.fetch_images(indices[rows])
                x = context.normalize(context.augment(images))
                loss = F.cross_entropy(model(x), labels[rows.to(labels.device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return model
