"""mem_manage=gss: GSS-greedy (Aljundi et al., NeurIPS 2019), gradient-based sample selection.

A sample's score is the largest cosine similarity (+1, so in [0, 2]) between its loss gradient
and the gradients of a random subset of the memory: a high score means redundant. While there
is room every sample is stored with its score. Once full, if the incoming batch's gradient
is not aligned with any sampled memory gradient (score < 1), each sample draws a stored sample
i with probability proportional to the stored scores and replaces it with probability
C_i / (C_i + c), as in the authors' and Mammoth's greedy buffers. Gradients are per sample
(torch.func), of the current model in eval mode; the runner hands the memory the model
(bind_context) and trains, then observes, one incoming batch at a time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from rainbow_runner.memory.base import MEMORIES, Memory, SelectionContext

FIRST_SCORE = 0.1  # the score of samples stored while the memory is empty (as Mammoth)
# Per-sample gradients are taken for at most this many floats at once (512 MiB).
_GRADIENT_FLOATS = 1 << 27


def per_sample_gradients(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """(n, parameters) gradients of each sample's cross-entropy, the model in eval mode."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())

    def loss(p: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (x[None],))
        return F.cross_entropy(logits, y[None])

    was_training = model.training
    model.eval()
    try:
        n_params = sum(v.numel() for v in params.values())
        size = max(1, _GRADIENT_FLOATS // max(n_params, 1))
        chunks = []
        for start in range(0, len(inputs), size):
            g = vmap(grad(loss), in_dims=(None, 0, 0))(
                params, inputs[start : start + size], labels[start : start + size]
            )
            chunks.append(torch.cat([g[k].flatten(1) for k in params], 1))
        return torch.cat(chunks)
    finally:
        model.train(was_training)


def gradient_scores(incoming: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """max_j cos(incoming_i, memory_j) + 1 for each incoming gradient (FIRST_SCORE if none)."""
    if len(memory) == 0:
        return torch.full((len(incoming),), FIRST_SCORE)
    similarity = F.normalize(incoming, dim=1) @ F.normalize(memory, dim=1).t()
    return (similarity.max(1).values + 1).cpu()


def greedy_replacements(
    stored_scores: np.ndarray, incoming_scores: np.ndarray, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """(slot, incoming position) replacements of GSS-greedy on a full memory, in order.

    Each incoming sample draws a slot with probability proportional to the stored scores and
    takes it with probability C_slot / (C_slot + c); stored_scores is updated in place.
    """
    replaced = []
    for position, score in enumerate(incoming_scores):
        total = stored_scores.sum()
        if total <= 0:
            break
        slot = int(rng.choice(len(stored_scores), p=stored_scores / total))
        if rng.random() < stored_scores[slot] / (stored_scores[slot] + score):
            stored_scores[slot] = score
            replaced.append((slot, position))
    return replaced


@MEMORIES.register("gss")
class GSSMemory(Memory):
    """GSS-greedy: keep the samples whose gradients are the least alike."""

    streaming = True
    intake_uses_model = True

    def __init__(self, capacity: int, seed: int, n_sub: int = 10) -> None:
        super().__init__(capacity, seed)
        if int(n_sub) < 1:
            raise ValueError(f"mem_manage.n_sub={n_sub} must be 1 or more (the paper uses 10).")
        self.n_sub = int(n_sub)
        self.scores = torch.empty(0)  # one per stored sample, aligned with indices

    def _context(self) -> SelectionContext:
        if self.context_provider is None:
            raise RuntimeError(
                "mem_manage=gss scores samples by the model's gradients: bind_context() first "
                "(the runner does)."
            )
        return self.context_provider()

    def _gradients(
        self, context: SelectionContext, indices: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        inputs = context.normalize(context.fetch_images(indices.to(context.device)))
        return per_sample_gradients(context.model, inputs, labels.to(context.device))

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        if self.capacity == 0 or len(indices) == 0:
            return
        context = self._context()
        incoming = self._gradients(context, indices, labels)
        subset = torch.empty(0, incoming.shape[1], device=incoming.device)
        if len(self):
            drawn = torch.from_numpy(
                self.rng.choice(len(self), min(self.n_sub, len(self)), replace=False)
            )
            subset = self._gradients(context, self.indices[drawn], self.labels[drawn])
        scores = gradient_scores(incoming, subset)
        take = min(self.capacity - len(self), len(indices))
        if take:
            self.indices = torch.cat([self.indices, indices[:take]])
            self.labels = torch.cat([self.labels, labels[:take]])
            self.scores = torch.cat([self.scores, scores[:take]])
        if take == len(indices):
            return
        batch_score = gradient_scores(incoming[take:].mean(0, keepdim=True), subset)
        if float(batch_score[0]) >= 1:  # aligned with the memory: nothing new to keep
            return
        stored = self.scores.double().numpy().copy()
        for slot, position in greedy_replacements(stored, scores[take:].double().numpy(), self.rng):
            self.indices[slot] = indices[take + position]
            self.labels[slot] = labels[take + position]
        self.scores = torch.from_numpy(stored).float()

    def extra_state(self) -> dict[str, np.ndarray | int | float]:
        return {"scores": self.scores.numpy()}

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        self.scores = torch.from_numpy(np.asarray(state["scores"], dtype=np.float32))
