"""Gradient-space mathematics methods share: flat gradients, projections (A-GEM, GEM's QP),
virtual SGD steps and interference (MIR), Reptile interpolation (MER)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

# --- gradient projection ---


def flat_gradient(parameters: Iterable[nn.Parameter]) -> torch.Tensor:
    """Every parameter's .grad in one vector (zeros where a parameter got none)."""
    return torch.cat(
        [
            (param.grad if param.grad is not None else torch.zeros_like(param)).reshape(-1)
            for param in parameters
        ]
    )


def assign_flat_gradient(parameters: Iterable[nn.Parameter], gradient: torch.Tensor) -> None:
    """Write a flat vector back into the parameters' .grad, in flat_gradient's order."""
    offset = 0
    for param in parameters:
        size = param.numel()
        value = gradient[offset : offset + size].view_as(param)
        if param.grad is None:
            param.grad = value.clone()
        else:
            param.grad.copy_(value)
        offset += size


def loss_gradient(loss: torch.Tensor, parameters: list[nn.Parameter]) -> torch.Tensor:
    """d loss / d parameters in flat_gradient's order (zeros where unused); .grad is untouched."""
    gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
    return torch.cat(
        [
            (gradient if gradient is not None else torch.zeros_like(param)).reshape(-1)
            for gradient, param in zip(gradients, parameters, strict=True)
        ]
    )


def project_on_reference(gradient: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A-GEM's projection: g unchanged when g·g_ref >= 0, else g − (g·g_ref / g_ref·g_ref) g_ref.

    The result never increases the reference loss to first order: its dot product with the
    reference gradient is >= 0.
    """
    dot = torch.dot(gradient, reference)
    if dot >= 0:
        return gradient
    return gradient - dot / torch.dot(reference, reference).clamp(min=1e-12) * reference


def project_on_cone(
    gradient: torch.Tensor, memories: torch.Tensor, margin: float = 0.5, eps: float = 1e-3
) -> torch.Tensor:
    """GEM's projection (Lopez-Paz & Ranzato 2017): g unchanged when g·G_k >= 0 for every row
    G_k of memories (one gradient per earlier task), else g̃ = Gᵀv + g with v the solution of
    the dual QP min_v ½vᵀ(GGᵀ + εI)v + (Gg)ᵀv s.t. v >= margin (quadprog, float64, on the
    host), so that G·g̃ = μ − εv >= −εv. margin (memory_strength) biases g̃ further into the
    cone. ε = eps · min_k |G_k|² keeps GGᵀ positive definite; GEM and Avalanche add an
    absolute 1e-3, which exceeds |G_k|² when gradients are small and then leaves constraints
    violated by more than the violation it corrects.
    """
    if len(memories) == 0 or bool((memories @ gradient >= 0).all()):
        return gradient
    g = memories.detach().double().cpu().numpy()
    gram = g @ g.T
    squares = np.diag(gram)
    ridge = eps * max(float(squares.min()), 1e-12 * float(squares.max()), 1e-30)
    gram = 0.5 * (gram + gram.T) + np.eye(len(g)) * ridge
    dots = g @ gradient.detach().double().cpu().numpy()
    identity = np.eye(len(g))
    import quadprog  # only GEM needs it: not at every method's import

    v = quadprog.solve_qp(gram, -dots, identity, np.full(len(g), float(margin)))[0]
    step = torch.from_numpy(v).to(memories) @ memories
    return gradient + step.to(gradient.dtype)


# --- interference (MIR) ---


def virtual_sgd_parameters(
    model: nn.Module, loss: torch.Tensor, param_groups: list[dict]
) -> dict[str, torch.Tensor]:
    """θ − lr·∇loss for the trainable parameters of an optimizer's groups (each group's lr),
    detached and by name, for torch.func.functional_call: a look-ahead that leaves the real
    parameters and their .grad as they are (no momentum or weight decay, as in MIR)."""
    names = {id(param): name for name, param in model.named_parameters()}
    params, lrs = [], []
    for group in param_groups:
        for param in group["params"]:
            if param.requires_grad:
                params.append(param)
                lrs.append(float(group["lr"]))
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {
        names[id(param)]: torch.add(param.detach(), grad.detach(), alpha=-lr)
        for param, lr, grad in zip(params, lrs, grads, strict=True)
        if grad is not None
    }


def most_interfered(loss_before: torch.Tensor, loss_after: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k candidates whose loss rises most from θ to θ' (MIR's criterion)."""
    increase = loss_after - loss_before
    return torch.topk(increase, min(k, len(increase))).indices


# --- Reptile (MER) ---


def parameter_snapshot(parameters: list[nn.Parameter]) -> list[torch.Tensor]:
    """Detached copies of the parameters' current values, to interpolate back towards."""
    return [param.detach().clone() for param in parameters]


@torch.no_grad()
def reptile_interpolate(
    parameters: list[nn.Parameter], before: list[torch.Tensor], weight: float
) -> None:
    """Reptile's meta step in place: θ ← θ_before + weight·(θ − θ_before).

    weight=0 restores θ_before exactly, weight=1 keeps θ (torch.lerp is exact at both ends).
    """
    for param, start in zip(parameters, before, strict=True):
        param.copy_(torch.lerp(start, param, weight))
