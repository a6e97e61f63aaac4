"""TRANS augmentations (cutout, randaug, autoaug, cutmix) and the perturbations RM scores with.

Everything works on uint8 (B, C, H, W) batches on the batch's own device, for 1 or 3 channels
and any size down to 8x8. torchvision's RandAugment/AutoAugment draw one operation per call,
i.e. one for a whole batch; here every image draws its own operations (as the paper's per-image
PIL pipeline did). A policy's (operation, magnitude) pairs are precomputed once per image
shape (runner/image_ops.py), so a whole batch of different draws is a few gathers: no loop
over images, and none over operations either, except for the blends (sharpness, colour).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from torch.nn import functional as nnf

from rainbow_runner.datasets.augment.batches import (
    StepBatches,
    register_batch_mix,
    register_image_transform,
)
from rainbow_runner.datasets.augment.ops import OPERATIONS, OperationTable
from rainbow_runner.datasets.devices import to_device_async

GREY = 128  # cutout fill: the reference's Cutout paints grey (125, 122, 113)
CUTMIX_PROBABILITY = 0.5  # share of training batches that are cut-mixed (the paper's)
CUTMIX_ALPHA = 1.0  # lambda ~ Beta(alpha, alpha)
RANDAUG_NUM_OPS = 2  # operations per image (torchvision's and the RandAugment paper's default)
RANDAUG_MAGNITUDE = 9  # magnitude bin out of RANDAUG_BINS
RANDAUG_BINS = 31
AUTOAUG_BINS = 10
POLICY_STEPS = 20  # AutoAugment's probabilities are multiples of 2/20: see _autoaug_draws
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"} | {
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
}
RANDAUG_OPERATIONS = tuple(name for name in OPERATIONS if name != "Invert")

# AutoAugment's CIFAR-10 policy: 25 sub-policies of two (operation, probability, magnitude bin).
CIFAR10_POLICY = (
    (("Invert", 0.1, 0), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 0), ("Equalize", 0.9, 0)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 0), ("Equalize", 0.5, 0)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 0), ("AutoContrast", 0.4, 0)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 0)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 0), ("Equalize", 0.6, 0)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 0)),
    (("AutoContrast", 0.8, 0), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 0)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 0), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 0), ("Invert", 0.1, 0)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 0)),
)


def operation_magnitude(name: str, level: int, n_bins: int, height: int, width: int) -> float:
    """The unsigned magnitude of bin `level` out of `n_bins` (torchvision's scales)."""
    fraction = level / (n_bins - 1)
    if name in ("ShearX", "ShearY"):
        return 0.3 * fraction
    if name == "TranslateX":
        return 150.0 / 331.0 * width * fraction
    if name == "TranslateY":
        return 150.0 / 331.0 * height * fraction
    if name == "Rotate":
        return 30.0 * fraction
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 0.9 * fraction
    if name == "Posterize":
        return float(round(8 - 4 * fraction))
    if name == "Solarize":
        return 1.0 - fraction
    return 0.0


def _both_signs(name: str, magnitude: float) -> list[tuple[str, float]]:
    """The +magnitude and -magnitude pairs of an operation (the same twice when unsigned)."""
    return [(name, magnitude), (name, -magnitude if name in SIGNED else magnitude)]


@cache
def randaug_table(
    shape: tuple[int, int, int], level: int, n_bins: int, device: torch.device
) -> OperationTable:
    """RandAugment's pairs: operation o at +magnitude is pair 2o, at -magnitude pair 2o + 1."""
    _, height, width = shape
    pairs = []
    for name in RANDAUG_OPERATIONS:
        pairs += _both_signs(name, operation_magnitude(name, level, n_bins, height, width))
    return OperationTable(pairs, shape, device)


def rand_augment(
    images: torch.Tensor,
    num_ops: int = RANDAUG_NUM_OPS,
    level: int = RANDAUG_MAGNITUDE,
    n_bins: int = RANDAUG_BINS,
    graphs: bool = True,
) -> torch.Tensor:
    """RandAugment with an independent draw of operations and signs for every image.

    graphs: on CUDA, replay the table's passes as captured graphs (the same images).
    """
    table = randaug_table(tuple(images.shape[1:]), level, n_bins, images.device)
    for _ in range(num_ops):  # a uniform pair is a uniform operation and a fair sign
        draw = torch.randint(len(table.pairs), (len(images),))
        images = table.apply(images, draw, graphs=graphs)
    return images


@cache
def autoaug_table(shape: tuple[int, int, int], stage: int, device: torch.device) -> OperationTable:
    """Stage `stage` of the CIFAR-10 policy: pair 0 = not applied, 1 + 2k (+1) = sub-policy k."""
    _, height, width = shape
    pairs = [("Identity", 0.0)]
    for sub_policy in CIFAR10_POLICY:
        name, _, level = sub_policy[stage]
        pairs += _both_signs(name, operation_magnitude(name, level, AUTOAUG_BINS, height, width))
    return OperationTable(pairs, shape, device)


@cache
def _autoaug_draws() -> tuple[torch.Tensor, torch.Tensor]:
    """Each stage's pair for every equally likely outcome of one image's policy draw.

    An outcome is (sub-policy, u0, u1) with u uniform over POLICY_STEPS steps: stage s applies
    its operation when u_s < POLICY_STEPS * p_s, at -magnitude in the lower half of that range.
    Every policy probability is a multiple of 2 / POLICY_STEPS, so this is the policy's
    distribution exactly (both signs equally likely), drawn with one randint for the batch.
    """
    steps = POLICY_STEPS
    sub_policy, u0, u1 = torch.meshgrid(
        torch.arange(len(CIFAR10_POLICY)), torch.arange(steps), torch.arange(steps), indexing="ij"
    )
    stage_pairs = []
    for stage, u in enumerate((u0, u1)):
        scaled = steps * torch.tensor([p[stage][1] for p in CIFAR10_POLICY], dtype=torch.float64)
        cutoff = scaled.round().long()
        assert torch.allclose(scaled, cutoff.double()) and cutoff.remainder(2).eq(0).all()
        cutoff = cutoff[sub_policy]
        pair = torch.where(u < cutoff, 1 + 2 * sub_policy + (2 * u < cutoff), 0)
        stage_pairs.append(pair.flatten())
    return stage_pairs[0], stage_pairs[1]


def auto_augment(images: torch.Tensor, graphs: bool = True) -> torch.Tensor:
    """AutoAugment (CIFAR-10 policy) with an independent sub-policy draw for every image.

    graphs: on CUDA, replay the tables' passes as captured graphs (the same images).
    """
    stage_pairs = _autoaug_draws()
    outcome = torch.randint(len(stage_pairs[0]), (len(images),))
    for stage, pairs in enumerate(stage_pairs):
        table = autoaug_table(tuple(images.shape[1:]), stage, images.device)
        images = table.apply(images, pairs.index_select(0, outcome), graphs=graphs)
    return images


def cutout(images: torch.Tensor, size: int, fill: int = GREY) -> torch.Tensor:
    """Paint a size x size square (clipped at the border) at a random centre in every image."""
    batch, _, height, width = images.shape
    device = images.device
    centre_y = torch.randint(0, height, (batch, 1), device=device)
    centre_x = torch.randint(0, width, (batch, 1), device=device)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    in_rows = (rows >= centre_y - size // 2) & (rows < centre_y + size // 2)
    in_cols = (cols >= centre_x - size // 2) & (cols < centre_x + size // 2)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return images.masked_fill(mask, fill)


def random_flip(images: torch.Tensor, dim: int) -> torch.Tensor:
    """Flip a random half of the images along dim (-1 horizontal, -2 vertical)."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(dim), images)


def random_rotation(images: torch.Tensor, max_degrees: float) -> torch.Tensor:
    """Rotate every image by its own angle drawn from [-max_degrees, max_degrees], black fill."""
    batch, _, height, width = images.shape
    angle = (torch.rand(batch, device=images.device) * 2 - 1) * math.radians(max_degrees)
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(angle)
    # Rotation in pixel space, expressed in the normalised [-1, 1] coordinates of affine_grid.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * height / width, zero], 1),
            torch.stack([sin * width / height, cos, zero], 1),
        ],
        1,
    )
    grid = nnf.affine_grid(theta, list(images.shape), align_corners=False)
    rotated = nnf.grid_sample(images.float(), grid, mode="nearest", align_corners=False)
    return rotated.round_().clamp_(0, 255).to(torch.uint8)


def cutmix_box(height: int, width: int, lam: float, centre_y: int, centre_x: int) -> tuple:
    """(top, bottom, left, right) of the box covering about 1 - lam of the image."""
    cut_ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut_ratio), int(width * cut_ratio)
    top, bottom = max(centre_y - cut_h // 2, 0), min(centre_y + cut_h // 2, height)
    left, right = max(centre_x - cut_w // 2, 0), min(centre_x + cut_w // 2, width)
    return top, bottom, left, right


def cutmix(
    steps: StepBatches, probability: float = CUTMIX_PROBABILITY, alpha: float = CUTMIX_ALPHA
) -> StepBatches:
    """Each step, with the given probability, pastes a box from a shuffled copy of its own batch;
    its lam = the exact share of own pixels. One pass over all the steps of a chunk (uint8)."""
    if steps.y_mix is not None:
        return steps
    _, _, height, width = steps.x.shape
    n_steps = len(steps.sizes)
    paste_by_step = np.zeros((n_steps, 1, height, width), dtype=np.uint8)  # 255 in the box
    lams = []
    for step, (gate, lam, centre_y, centre_x) in enumerate(torch.rand(n_steps, 4).tolist()):
        if gate >= probability:
            lams.append(1.0)
            continue
        if alpha != 1.0:  # Beta(1, 1) is the uniform draw above
            lam = float(torch.distributions.Beta(alpha, alpha).sample())
        top, bottom, left, right = cutmix_box(
            height, width, lam, int(centre_y * height), int(centre_x * width)
        )
        paste_by_step[step, :, top:bottom, left:right] = 255
        lams.append(1.0 - (bottom - top) * (right - left) / (height * width))
    if min(lams) >= 1.0:
        return steps
    # Drawn and built on the host, whatever the device: a few small operations, two copies.
    step_of_image = torch.arange(n_steps).repeat_interleave(torch.tensor(steps.sizes))
    # a random order of each step's images, within the step: sort by step, then a random key
    permutation = torch.rand(len(step_of_image), dtype=torch.float64).add_(step_of_image).argsort()
    paste = torch.from_numpy(paste_by_step).index_select(0, step_of_image)
    permutation = to_device_async(permutation, steps.x.device)
    paste = to_device_async(paste, steps.x.device)
    partners = steps.x.index_select(0, permutation)
    # the partner's bits where paste is 255, the image's own elsewhere (bit operations on uint8:
    # ~10x faster than where() on a CPU)
    mixed = steps.x ^ ((steps.x ^ partners) & paste)
    return StepBatches(mixed, steps.y, steps.sizes, steps.y.index_select(0, permutation), lams)


@register_image_transform("cutout")
def cutout_half(images: torch.Tensor, graphs: bool = True) -> torch.Tensor:
    """trans=[cutout]: a square of half the image side (16 px on 32x32, as DeVries & Taylor).

    graphs is accepted (and unused) so that every TRANS entry takes the same arguments.
    """
    return cutout(images, max(1, images.shape[-1] // 2))


register_image_transform("randaug")(rand_augment)
register_image_transform("autoaug")(auto_augment)
register_batch_mix("cutmix")(cutmix)
