"""The mathematics of the embedding-space methods, as pure functions: the supervised contrastive
loss (SCR), momentum prototypes and the pseudo-prototypical proxy loss (CoPE), and the bounded
feature-space perturbation of replayed samples (RAR)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from rainbow_runner.methods.functional import class_means

NEVER = -1e4  # a logit that counts for nothing (finite: no NaN gradients when all are absent)


def supervised_contrastive_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """SupCon (Khosla et al. 2020), SCR's loss: every row's mean log-probability of picking a
    same-label row among all other rows, similarities being cosines / temperature.

    embeddings: every view's rows stacked (two views of a batch: 2B rows), with labels to match.
    """
    embeddings = F.normalize(embeddings.float(), dim=1)
    self_pairs = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    similarity = (embeddings @ embeddings.T / temperature).masked_fill(self_pairs, float("-inf"))
    log_prob = similarity - similarity.logsumexp(dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_pairs
    positive_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1)
    return -(positive_log_prob / positives.sum(1).clamp_min(1)).mean()


def momentum_prototypes(
    prototypes: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor, alpha: float
) -> torch.Tensor:
    """CoPE's update: p_c ← normalise(α·p_c + (1 − α)·batch mean of class c), for the classes in
    the batch; a class's first batch mean becomes its prototype (NaN rows: not seen yet)."""
    means = class_means(embeddings.detach(), labels, len(prototypes))
    in_batch = ~means.isnan().any(1, keepdim=True)
    moved = F.normalize(alpha * prototypes + (1.0 - alpha) * means, dim=1)
    moved = torch.where(prototypes.isnan(), means, moved)
    return torch.where(in_batch, moved, prototypes)


def pseudo_prototypical_proxy_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, temperature: float
) -> torch.Tensor:
    """CoPE's PPP loss (De Lange & Tuytelaars 2021, eq. 4-6), averaged over the batch.

    For a row x of class c, the probability of c given a proxy m (c's prototype, or another
    row of class c: a pseudo-prototype) is e^{m·x/T} / (e^{m·x/T} + Σ_{k≠c} e^{p_k·x/T}). The
    attractor raises each row's mean of it over its class's proxies; the repellor lowers, for
    every row of another class, the mean of a pseudo-prototype's and c's prototype's. Proxies are
    constants (gradients reach the anchors only); prototypes of unseen classes (NaN) take no part.
    Every class in the batch needs a prototype.
    """
    embeddings = embeddings.float()
    seen = ~prototypes.isnan().any(1)
    proxies = embeddings.detach()
    # logits[k, a]: prototype k against anchor a; pair[r, a]: pseudo-prototype r against anchor a
    logits = (prototypes.nan_to_num(0.0) @ embeddings.T / temperature).masked_fill(
        ~seen[:, None], NEVER
    )
    pair = proxies @ embeddings.T / temperature
    # others[r, a]: log Σ_{k ≠ class of r} e^{p_k·x_a/T}, the denominator's rest for proxy r
    classes = torch.arange(len(prototypes), device=labels.device)
    not_own = (classes[None, :, None] != labels[:, None, None]).expand(-1, -1, len(labels))
    others = logits[None].expand(len(labels), -1, -1).masked_fill(~not_own, NEVER)
    others = others.logsumexp(dim=1)
    own_prototype = logits[labels]  # [r, a]: prototype of r's class against anchor a

    def log_probability(proxy: torch.Tensor) -> torch.Tensor:
        return proxy - torch.logaddexp(proxy, others)

    same = labels[:, None] == labels[None, :]
    self_pairs = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    count = same.sum(0)  # per anchor: its pseudo-prototypes (itself excluded) + its prototype
    pseudo = log_probability(pair).exp().masked_fill(~same | self_pairs, 0.0).sum(0)
    prototype = log_probability(own_prototype).diagonal().exp()  # r = a: a's own class
    attractor = ((pseudo + prototype) / count).log().sum()
    repelled = (log_probability(pair).exp() + log_probability(own_prototype).exp()) / 2
    repellor = (1.0 - repelled).clamp_min(1e-12).log().masked_fill(same, 0.0).sum()
    return -(attractor + repellor) / len(labels)


def perturb_toward_features(
    extract: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    targets: torch.Tensor,
    epsilon: torch.Tensor,
    steps: int,
    low: torch.Tensor,
    high: torch.Tensor,
) -> torch.Tensor:
    """RAR's retrospective perturbation: `steps` signed-gradient (PGD) steps of epsilon / steps
    that move extract(x) toward targets, the change kept within ±epsilon and x within
    [low, high] (tensors broadcast per channel). Gradients reach nothing but the perturbation.
    """
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        distance = (extract(x + delta).float() - targets).pow(2).sum()
        (gradient,) = torch.autograd.grad(distance, delta)
        with torch.no_grad():
            stepped = delta - epsilon / steps * gradient.sign()
            stepped = torch.maximum(torch.minimum(stepped, epsilon), -epsilon)
            delta.copy_(torch.minimum(torch.maximum(x + stepped, low), high) - x)
    return (x + delta).detach()
