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


def mean_gradient(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """The gradient of the batch's mean cross-entropy (the mean of per_sample_gradients), flat,
    the model in eval mode; the parameters' .grad is untouched."""
    params = [v for v in model.parameters() if v.requires_grad]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            loss = F.cross_entropy(model(inputs), labels.to(inputs.device))
            gradients = torch.autograd.grad(loss, params, allow_unused=True)
    finally:
        model.train(was_training)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).flatten()
            for g, p in zip(gradients, params, strict=True)
        ]
    )


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

    def __init__(self, capacity: int, seed: int, n_sub: int = 10, gss_batch_size: int = 1) -> None:
        super().__init__(capacity, seed)
        if int(n_sub) < 1:
            raise ValueError(f"mem_manage.n_sub={n_sub} must be 1 or more (the paper uses 10).")
        if int(gss_batch_size) < 1:
            raise ValueError(
                f"mem_manage.gss_batch_size={gss_batch_size} must be 1 or more (1: one sample "
                "per memory gradient; the authors' code uses 10, Avalanche the batch size)."
            )
        self.n_sub = int(n_sub)
        self.gss_batch_size = int(gss_batch_size)
        self.scores = torch.empty(0)  # one per stored sample, aligned with indices

    def _context(self) -> SelectionContext:
        if self.context_provider is None:
            raise RuntimeError(
                "mem_manage=gss scores samples by the model's gradients: bind_context() first "
                "(the runner does)."
            )
        return self.context_provider()

    def _inputs(self, context: SelectionContext, indices: torch.Tensor) -> torch.Tensor:
        return context.normalize(context.fetch_images(indices.to(context.device)))

    def _gradients(
        self, context: SelectionContext, indices: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        inputs = self._inputs(context, indices)
        return per_sample_gradients(context.model, inputs, labels.to(context.device))

    def observe(self, indices: torch.Tensor, labels: torch.Tensor, n_exposed: int) -> None:
        if self.capacity == 0 or len(indices) == 0:
            return
        context = self._context()
        subset = self._memory_gradients(context) if len(self) else None
        take = min(self.capacity - len(self), len(indices))
        if take:
            scores = self._scores(context, indices[:take], labels[:take], subset)
            self.indices = torch.cat([self.indices, indices[:take]])
            self.labels = torch.cat([self.labels, labels[:take]])
            self.scores = torch.cat([self.scores, scores])
        if take == len(indices):
            return
        rest, rest_labels = indices[take:], labels[take:]
        if subset is not None:
            # the batch's gradient is the mean of its samples' gradients: one backward pass
            # decides whether the per-sample gradients are needed at all
            batch_gradient = mean_gradient(context.model, self._inputs(context, rest), rest_labels)
            if float(gradient_scores(batch_gradient[None], subset)[0]) >= 1:
                return  # aligned with the memory: nothing new to keep
        scores = self._scores(context, rest, rest_labels, subset)
        stored = self.scores.double().numpy().copy()
        for slot, position in greedy_replacements(stored, scores.double().numpy(), self.rng):
            self.indices[slot] = rest[position]
            self.labels[slot] = rest_labels[position]
        self.scores = torch.from_numpy(stored).float()

    def _memory_gradients(self, context: SelectionContext) -> torch.Tensor:
        """The gradients the incoming samples are compared with: of n_sub random stored samples
        (gss_batch_size 1), else of up to n_sub disjoint random groups of gss_batch_size."""
        size = min(self.gss_batch_size, len(self))
        groups = min(self.n_sub, len(self) // size)
        drawn = torch.from_numpy(self.rng.choice(len(self), groups * size, replace=False))
        indices, labels = self.indices[drawn], self.labels[drawn]
        if size == 1:
            return self._gradients(context, indices, labels)
        return torch.stack(
            [
                mean_gradient(
                    context.model, self._inputs(context, group), group_labels.to(context.device)
                )
                for group, group_labels in zip(indices.split(size), labels.split(size), strict=True)
            ]
        )

    def _scores(
        self,
        context: SelectionContext,
        indices: torch.Tensor,
        labels: torch.Tensor,
        subset: torch.Tensor | None,
    ) -> torch.Tensor:
        """gradient_scores of these samples against the memory subset's gradients."""
        if subset is None:
            return torch.full((len(indices),), FIRST_SCORE)
        return gradient_scores(self._gradients(context, indices, labels), subset)

    def extra_state(self) -> dict[str, np.ndarray | int | float]:
        return {"scores": self.scores.numpy()}

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        self.scores = torch.from_numpy(np.asarray(state["scores"], dtype=np.float32))
