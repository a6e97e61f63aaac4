"""mode=lamaml: La-MAML (Gupta et al., NeurIPS 2020): look-ahead meta-learning with a learned
learning rate per parameter, and a replay memory in the meta-loss."""

from __future__ import annotations

import torch
from torch.func import functional_call
from torch.nn import functional as F

from rainbow_runner.methods.base import METHODS, MethodContext, TrainBatch, without_prefix
from rainbow_runner.methods.er import ExperienceReplay
from rainbow_runner.methods.functional import mixed_cross_entropy

ALPHA = "alpha."  # checkpoint prefix of the learned learning rates


def grown_rates(rates: torch.Tensor | None, like: torch.Tensor, init: float) -> torch.Tensor:
    """A parameter's learning rates, new rows (a grown head) starting at init."""
    grown = torch.full_like(like, init, dtype=torch.float32)
    if rates is not None:
        grown[: len(rates)] = rates
    return grown.requires_grad_(True)


def clip_norm_(tensors: list[torch.Tensor], max_norm: float) -> None:
    """Scale tensors in place so that their joint L2 norm is at most max_norm."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))
    torch._foreach_mul_(tensors, (max_norm / (norm + 1e-6)).clamp(max=1.0))


@METHODS.register("lamaml")
class LookAheadMAML(ExperienceReplay):
    """A step (owned update): the fast weights θ_0 = θ take n_inner_updates SGD steps over
    consecutive pieces of the step's stream rows, θ_k+1 = θ_k − α·clip(∇L_piece(θ_k)) (α the
    learned rates, the gradient clipped elementwise to ±grad_clip_norm); after each the
    meta-loss is CE of the fast weights on all rows, stream and mem_batchsize memory rows
    (er's replay). The mean meta-loss gives the gradients of θ and α (through the look-ahead,
    second order unless second_order is false; both clipped to norm grad_clip_norm); α takes
    an SGD step of lr_alpha (learn_lr), then θ ← θ − max(α, 0)·g, or with sync_update the run's
    optimizer steps θ with g at its own learning rate. functional_call keeps the fast weights
    off the model. BatchNorm: the look-ahead pieces use the running statistics (a piece may
    be one sample), the meta-loss forwards batch statistics on scratch copies, and one forward
    of the updated model moves the real statistics.
    """

    def __init__(
        self,
        context: MethodContext,
        n_inner_updates: int = 5,
        second_order: bool = True,
        grad_clip_norm: float = 1.0,
        learn_lr: bool = True,
        lr_alpha: float = 0.25,
        alpha_init: float = 0.1,
        sync_update: bool = False,
    ) -> None:
        super().__init__(context)
        if n_inner_updates < 1 or grad_clip_norm <= 0 or lr_alpha < 0 or alpha_init < 0:
            raise ValueError(
                f"mode.n_inner_updates={n_inner_updates}, mode.grad_clip_norm={grad_clip_norm},"
                f" mode.lr_alpha={lr_alpha}, mode.alpha_init={alpha_init}: La-MAML needs at "
                f"least one inner update, a positive clip norm and non-negative rates."
            )
        self.n_inner_updates, self.second_order = n_inner_updates, second_order
        self.grad_clip_norm, self.learn_lr, self.lr_alpha = grad_clip_norm, learn_lr, lr_alpha
        self.alpha_init, self.sync_update = alpha_init, sync_update
        self.alphas: dict[str, torch.Tensor] = {}

    def prepare_model(self) -> None:
        """One learned rate per parameter entry; a grown head's new rows start at alpha_init."""
        self.alphas = {
            name: grown_rates(self.alphas.get(name), param.detach(), self.alpha_init)
            for name, param in self.model.named_parameters()
        }

    def parameter_groups(self) -> list:
        """sync_update: the run's optimizer steps the weights; else none (update() does)."""
        return list(self.model.parameters()) if self.sync_update else []

    def learning_rates(self) -> dict[str, torch.Tensor]:
        """The rates the weight update applies: the learned ones clipped at 0."""
        return {name: alpha.detach().clamp(min=0) for name, alpha in self.alphas.items()}

    def inner_pieces(self, batch: TrainBatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The look-ahead's batches: the stream rows (all rows in a memory epoch) cut into
        n_inner_updates pieces of two rows or more (BatchNorm needs two)."""
        rows = ~batch.from_memory
        if rows.sum() < 2:
            rows = torch.ones_like(rows)
        x, y = batch.x[rows], batch.y[rows]
        n_pieces = max(1, min(self.n_inner_updates, len(y) // 2))
        return list(zip(x.tensor_split(n_pieces), y.tensor_split(n_pieces), strict=True))

    def inner_forward(self, fast: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Logits of a look-ahead piece; BatchNorm normalises with its running statistics (a
        piece may be one sample) and leaves them alone."""
        was_training = self.model.training
        self.model.eval()
        try:
            return functional_call(self.model, fast, (x,))
        finally:
            self.model.train(was_training)

    def update(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        params = dict(self.model.named_parameters())
        alphas = [self.alphas[name] for name in params]
        fast = dict(params)
        # the fast weights' forwards move copies of the BatchNorm statistics, not the model's
        scratch = {name: b.clone() for name, b in self.model.named_buffers()}
        meta_losses = []
        for x, y in self.inner_pieces(batch):
            inner_loss = F.cross_entropy(self.inner_forward(fast, x), y)
            grads = torch.autograd.grad(
                inner_loss, list(fast.values()), create_graph=self.second_order, allow_unused=True
            )
            clip = self.grad_clip_norm
            fast = {
                name: weight if grad is None else weight - alpha * grad.clamp(-clip, clip)
                for (name, weight), alpha, grad in zip(fast.items(), alphas, grads, strict=True)
            }
            logits = functional_call(self.model, {**fast, **scratch}, (batch.x,))
            meta_losses.append(mixed_cross_entropy(logits, batch))
        meta_loss = torch.stack(meta_losses).mean()
        grads = torch.autograd.grad(meta_loss, [*params.values(), *alphas], allow_unused=True)
        self.outer_update(list(params.values()), alphas, grads)
        with torch.no_grad():  # the statistics follow the updated weights, as in plain training
            self.model(batch.x)
        return meta_loss.detach(), logits.detach()

    @torch.no_grad()
    def outer_update(
        self,
        params: list[torch.Tensor],
        alphas: list[torch.Tensor],
        grads: tuple[torch.Tensor | None, ...],
    ) -> None:
        """Learn the rates, then step the weights with the clipped rates (or the optimizer)."""
        grads = [
            torch.zeros_like(t) if g is None else g
            for t, g in zip([*params, *alphas], grads, strict=True)
        ]
        weight_grads, alpha_grads = grads[: len(params)], grads[len(params) :]
        clip_norm_(weight_grads, self.grad_clip_norm)
        if self.learn_lr:
            clip_norm_(alpha_grads, self.grad_clip_norm)
            torch._foreach_add_(alphas, alpha_grads, alpha=-self.lr_alpha)
        if self.sync_update:
            for param, grad in zip(params, weight_grads, strict=True):
                param.grad = grad
            self.context.optimizer.step()
            return
        rates = [alpha.clamp(min=0) for alpha in alphas]
        torch._foreach_sub_(params, torch._foreach_mul(weight_grads, rates))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {ALPHA + name: alpha.detach() for name, alpha in self.alphas.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        stored = without_prefix(state, ALPHA, self.context.device)
        self.alphas = {name: rates.clone().requires_grad_(True) for name, rates in stored.items()}
