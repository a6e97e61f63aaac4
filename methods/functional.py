"""The mathematics methods share, as pure functions: losses, distillation, weight penalties and
importances, nearest-mean and LDA classification and re-initialisation (gradient-space maths:
methods/gradients.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.datasets.augment.batches import MixedBatch
from rainbow_runner.memory.base import SelectionContext, extract_features


def mixed_cross_entropy(logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
    """lam * CE(y) + (1 - lam) * CE(y_mix): plain CE when the batch was not mixed."""
    if batch.y_mix is None or batch.lam >= 1.0:
        return F.cross_entropy(logits, batch.y)
    log_probs = F.log_softmax(logits, 1)  # once for both terms
    own, partner = F.nll_loss(log_probs, batch.y), F.nll_loss(log_probs, batch.y_mix)
    return torch.lerp(partner, own, batch.lam)


def rows_cross_entropy(
    logits: torch.Tensor, batch: MixedBatch, rows: slice | torch.Tensor
) -> torch.Tensor:
    """mixed_cross_entropy over some of a batch's rows (one role of the rows): a contiguous
    block, or a bool mask / positions."""
    y_mix = None if batch.y_mix is None else batch.y_mix[rows]
    part = MixedBatch(batch.x[rows], batch.y[rows], y_mix, batch.lam)
    return mixed_cross_entropy(logits[rows], part)


def asymmetric_cross_entropy(
    logits: torch.Tensor,
    batch: MixedBatch,
    stream_rows: slice | torch.Tensor,
    memory_rows: slice | torch.Tensor,
) -> torch.Tensor:
    """ER-ACE's loss (Caccia et al. 2022): the stream rows' CE sees only the logits of classes
    present among them (the others are masked, so they get no gradient and new classes do not
    push old ones down), the memory rows' CE is over every logit; the mean of the two terms
    (Avalanche's ACECriterion), or the one term whose rows are present."""
    terms = []
    stream_y = batch.y[stream_rows]
    if len(stream_y):
        present = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        present[stream_y] = True
        if batch.y_mix is not None:
            present[batch.y_mix[stream_rows]] = True
        masked = logits.masked_fill(~present, torch.finfo(logits.dtype).min)
        terms.append(rows_cross_entropy(masked, batch, stream_rows))
    if len(batch.y[memory_rows]):
        terms.append(rows_cross_entropy(logits, batch, memory_rows))
    return sum(terms) / len(terms)


def stored_logit_distance(
    logits: torch.Tensor, stored: torch.Tensor, floor_later: bool = True
) -> torch.Tensor:
    """DER's term: mean squared distance between logits and the logits stored at insertion.

    stored is NaN where nothing was stored and may be narrower than logits: the head has grown
    since. The columns of classes exposed after a sample was stored count, with floor_later, at
    its lowest stored logit (a head that covered every class from the start, as Mammoth's,
    stores those columns low: CE pushes them down); else only stored entries count. Rows with
    nothing stored never count.
    """
    width = logits.shape[1]
    target = stored[:, :width].to(device=logits.device, dtype=torch.float32)
    target = F.pad(target, (0, width - target.shape[1]), value=float("nan"))
    if floor_later:
        floor = target.nan_to_num(float("inf")).amin(1, keepdim=True)
        target = torch.where(target.isnan(), floor, target)
    known = target.isfinite()
    squared = (logits.float() - target.nan_to_num(0.0, posinf=0.0)).pow(2)
    return squared.masked_fill(~known, 0.0).sum() / known.sum().clamp(min=1)


# --- distillation ---


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of the model in eval mode with no trainable parameters (the teacher)."""
    teacher = copy.deepcopy(model).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def teacher_from_state(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Rebuild a saved teacher whose head may be smaller than the current model's."""
    teacher = frozen_copy(template)
    head = getattr(teacher, "head", None)
    if head is not None and "head.weight" in state:
        device = head.weight.device
        head.weight = nn.Parameter(state["head.weight"].to(device), requires_grad=False)
        head.bias = nn.Parameter(state["head.bias"].to(device), requires_grad=False)
    teacher.load_state_dict(state)
    return teacher


def soft_cross_entropy(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """−Σ softmax(teacher/T) · log_softmax(student/T), averaged over the batch (BiC's L_d)."""
    target = F.softmax(teacher_logits / temperature, dim=1)
    return -(target * F.log_softmax(student_logits / temperature, dim=1)).sum(1).mean()


def kl_distillation(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch (LwF, as Avalanche):
    soft_cross_entropy less the teacher's entropy, so it is 0 where the two agree."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    target = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_student, target, reduction="batchmean")


# --- weight penalties ---

HEAD_PREFIX = "head."


def penalized_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every trainable parameter except the growing head's (its rows change with the classes)."""
    return {
        name: param
        for name, param in model.named_parameters()
        if param.requires_grad and not name.startswith(HEAD_PREFIX)
    }


def _overlap(param: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """The leading slice of a parameter that existed when it was anchored (heads may grow)."""
    if param.shape == anchor.shape:
        return param
    return param[tuple(slice(0, n) for n in anchor.shape)]


def quadratic_penalty(
    params: dict[str, torch.Tensor],
    anchors: dict[str, torch.Tensor],
    importance: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Σ importance · (θ − θ*)² over the anchored parameters."""
    terms = [
        (importance[name] * (_overlap(params[name], anchor) - anchor).pow(2)).sum()
        for name, anchor in anchors.items()
    ]
    if not terms:
        return torch.zeros((), device=next(iter(params.values())).device)
    return torch.stack(terms).sum()


def mean_gradient_statistic(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    names: list[str],
    objective: Callable[[torch.Tensor], torch.Tensor],
    statistic: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Per named parameter, the sample-weighted mean over mini-batches of statistic(∇ objective
    (model(x))), in eval mode (BatchNorm's running statistics untouched); zeros where a
    parameter gets no gradient. The shape of the Fisher (EWC) and of MAS's importance."""
    was_training = model.training
    model.eval()
    params = {name: param for name, param in model.named_parameters() if name in names}
    total = {name: torch.zeros_like(param) for name, param in params.items()}
    n_samples = 0
    for x in batches:
        grads = torch.autograd.grad(objective(model(x)), list(params.values()), allow_unused=True)
        for name, gradient in zip(params, grads, strict=True):
            if gradient is not None:
                total[name] += statistic(gradient) * len(x)
        n_samples += len(x)
    model.train(was_training)
    return {name: value / max(n_samples, 1) for name, value in total.items()}


def _predicted_label_ce(logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, logits.argmax(1).detach())


def _mean_output_norm(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().norm(dim=1).mean()


def diagonal_fisher(
    model: nn.Module, batches: Iterable[torch.Tensor], names: list[str]
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher as the reference estimates it: squared gradients of mini-batch CE at
    the model's own predictions, weighted by batch size, averaged over all samples (eval mode).
    """
    return mean_gradient_statistic(model, batches, names, _predicted_label_ce, torch.square)


def output_norm_importance(
    model: nn.Module, batches: Iterable[torch.Tensor], names: list[str]
) -> dict[str, torch.Tensor]:
    """MAS's importance: |∇ of the mean L2 norm of the outputs|, weighted by batch size and
    averaged over all samples (Avalanche's objective: the norm, not its square)."""
    return mean_gradient_statistic(model, batches, names, _mean_output_norm, torch.abs)


def path_integral_importance(
    path: torch.Tensor, change: torch.Tensor, damping: float
) -> torch.Tensor:
    """SI's importance of one task: max(ω, 0) / (Δ² + ξ), ω = Σ_steps −g·δθ the path integral
    and Δ the parameter's whole change over the task (ω < 0 means it went uphill: no importance).
    """
    return path.clamp(min=0.0) / (change.pow(2) + damping)


# --- nearest mean of exemplars ---


def class_means(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Normalised mean of the normalised features per class; NaN rows for absent classes."""
    features = F.normalize(features.float(), dim=1)
    sums = torch.zeros(n_classes, features.shape[1], device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_classes)[:n_classes]
    means = F.normalize(sums, dim=1)
    return means.masked_fill((counts == 0)[:, None], float("nan"))


def sample_class_means(
    indices: torch.Tensor, labels: torch.Tensor, selection: SelectionContext, n_classes: int
) -> torch.Tensor | None:
    """class_means of the current model's features of training samples (the NME classifier
    after a task: iCaRL, SCR); None without samples."""
    if not len(indices):
        return None
    features = extract_features(indices, selection)
    return class_means(features, labels.to(features.device), n_classes)


def nearest_mean_scores(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """−‖f/‖f‖ − μ_c‖² per class (highest = nearest mean); −inf for classes with no mean."""
    distance = torch.cdist(F.normalize(features.float(), dim=1), means.nan_to_num(0.0)).pow(2)
    return (-distance).masked_fill(means.isnan().any(1)[None, :], float("-inf"))


# --- linear discriminant analysis (SLDA) ---


def add_class_statistics(
    means: torch.Tensor,
    counts: torch.Tensor,
    scatter: torch.Tensor | None,
    features: torch.Tensor,
    labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Class means, counts and the pooled within-class scatter Σ_c Σ_{i∈c} (x_i − μ_c)(x_i − μ_c)ᵀ
    after one more batch, merged exactly (Chan et al.), so batching and order do not matter.

    scatter=None skips the scatter (a fixed covariance) and returns None for it.
    """
    features = features.to(means.dtype)
    batch_counts = torch.bincount(labels, minlength=len(means)).to(means.dtype)
    sums = torch.zeros_like(means).index_add_(0, labels, features)
    batch_means = sums / batch_counts.clamp(min=1)[:, None]
    total = counts + batch_counts
    delta = batch_means - means  # rows of classes absent from the batch get weight 0 below
    new_means = means + delta * (batch_counts / total.clamp(min=1))[:, None]
    if scatter is None:
        return new_means, total, None
    centered = features - batch_means[labels]
    between = counts * batch_counts / total.clamp(min=1)  # n_a n_b / (n_a + n_b) per class
    return new_means, total, scatter + centered.T @ centered + (delta * between[:, None]).T @ delta


def lda_parameters(
    means: torch.Tensor, covariance: torch.Tensor, shrinkage: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """LDA's linear scores f·Wᵀ + b: W = Λμ (one row per class), b = −½ diag(μᵀΛμ), with
    Λ = ((1 − ε)Σ + εI)⁻¹ applied through a Cholesky solve (SPD for any ε > 0)."""
    identity = torch.eye(len(covariance), dtype=covariance.dtype, device=covariance.device)
    shrunk = (1.0 - shrinkage) * covariance + shrinkage * identity
    factor = torch.linalg.cholesky_ex(shrunk).L  # _ex: no device sync to check for errors
    weight = torch.cholesky_solve(means.T, factor).T
    return weight, -0.5 * (means * weight).sum(1)


# --- re-initialisation ---


def reinitialize(model: nn.Module) -> None:
    """Fresh random weights in place (every layer's own init, the growing head's included)."""
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
