"""TRANS augmentations (cutout, randaug, autoaug, cutmix) and the perturbations RM scores with.

Everything works on uint8 (B, C, H, W) batches on the batch's own device, for 1 or 3 channels
and any size down to 8x8. torchvision's RandAugment/AutoAugment draw one operation per call,
i.e. one for a whole batch; here every image draws its own operations (as the paper's per-image
PIL pipeline did), and each distinct (operation, magnitude) pair is applied once to the
sub-batch that drew it: a loop over operations, never over images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache

import torch
from torch.nn import functional as nnf
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from runner.augment import MixedBatch, register_batch_mix, register_image_transform

GREY = 128  # cutout fill: the reference's Cutout paints grey (125, 122, 113)
CUTMIX_PROBABILITY = 0.5  # share of training batches that are cut-mixed (the paper's)
CUTMIX_ALPHA = 1.0  # lambda ~ Beta(alpha, alpha)
RANDAUG_NUM_OPS = 2  # operations per image (torchvision's and the RandAugment paper's default)
RANDAUG_MAGNITUDE = 9  # magnitude bin out of RANDAUG_BINS
RANDAUG_BINS = 31
AUTOAUG_BINS = 10
NEAREST = InterpolationMode.NEAREST

Operation = Callable[[torch.Tensor, float], torch.Tensor]


def _affine(
    images: torch.Tensor,
    shear: tuple[float, float] = (0.0, 0.0),
    translate: tuple[int, int] = (0, 0),
    center: list[int] | None = None,
) -> torch.Tensor:
    return F.affine(
        images,
        angle=0.0,
        translate=list(translate),
        scale=1.0,
        shear=list(shear),
        interpolation=NEAREST,
        fill=0,
        center=center,
    )


# The AutoAugment/RandAugment operation set, with torchvision's parametrisation.
OPERATIONS: dict[str, Operation] = {
    "Identity": lambda x, m: x,
    "ShearX": lambda x, m: _affine(x, shear=(math.degrees(math.atan(m)), 0.0), center=[0, 0]),
    "ShearY": lambda x, m: _affine(x, shear=(0.0, math.degrees(math.atan(m))), center=[0, 0]),
    "TranslateX": lambda x, m: _affine(x, translate=(int(m), 0)),
    "TranslateY": lambda x, m: _affine(x, translate=(0, int(m))),
    "Rotate": lambda x, m: F.rotate(x, angle=m, interpolation=NEAREST, fill=0),
    "Brightness": lambda x, m: F.adjust_brightness(x, 1.0 + m),
    "Color": lambda x, m: F.adjust_saturation(x, 1.0 + m),
    "Contrast": lambda x, m: F.adjust_contrast(x, 1.0 + m),
    "Sharpness": lambda x, m: F.adjust_sharpness(x, 1.0 + m),
    "Posterize": lambda x, m: F.posterize(x, int(m)),
    "Solarize": lambda x, m: F.solarize(x, 255.0 * m),
    "AutoContrast": lambda x, m: F.autocontrast(x),
    "Equalize": lambda x, m: F.equalize(x),
    "Invert": lambda x, m: F.invert(x),
}
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"} | {
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
}
RANDAUG_OPERATIONS = tuple(name for name in OPERATIONS if name != "Invert")
AUTOAUG_OPERATIONS = tuple(OPERATIONS)

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


def apply_operations(
    images: torch.Tensor, names: Sequence[str], operation: torch.Tensor, magnitude: torch.Tensor
) -> torch.Tensor:
    """Image i gets names[operation[i]] at magnitude[i]: one call per distinct pair.

    Args:
        images: uint8 (B, C, H, W) on any device.
        names: operation names, keys of OPERATIONS.
        operation: (B,) CPU long tensor of indices into names.
        magnitude: (B,) CPU float tensor of signed magnitudes.
    """
    keys = torch.stack([operation.double(), magnitude.double()], dim=1)
    pairs, group = torch.unique(keys, dim=0, return_inverse=True)
    result = images.clone()
    for number, (index, value) in enumerate(pairs.tolist()):
        name = names[int(index)]
        if name == "Identity":
            continue
        members = torch.nonzero(group == number).flatten().to(images.device)
        result[members] = OPERATIONS[name](images[members], value)
    return result


def _random_signs(signed: torch.Tensor) -> torch.Tensor:
    flip = signed & (torch.rand(signed.shape) < 0.5)
    return torch.where(flip, -1.0, 1.0)


@cache
def _randaug_table(height: int, width: int, level: int, n_bins: int) -> tuple:
    magnitudes = torch.tensor(
        [operation_magnitude(n, level, n_bins, height, width) for n in RANDAUG_OPERATIONS]
    )
    signed = torch.tensor([n in SIGNED for n in RANDAUG_OPERATIONS])
    return magnitudes, signed


def rand_augment(
    images: torch.Tensor,
    num_ops: int = RANDAUG_NUM_OPS,
    level: int = RANDAUG_MAGNITUDE,
    n_bins: int = RANDAUG_BINS,
) -> torch.Tensor:
    """RandAugment with an independent draw of operations and signs for every image."""
    batch, _, height, width = images.shape
    magnitudes, signed = _randaug_table(height, width, level, n_bins)
    for _ in range(num_ops):
        operation = torch.randint(len(RANDAUG_OPERATIONS), (batch,))
        magnitude = magnitudes[operation] * _random_signs(signed[operation])
        images = apply_operations(images, RANDAUG_OPERATIONS, operation, magnitude)
    return images


@cache
def _policy_table(height: int, width: int, stage: int) -> tuple:
    steps = [sub_policy[stage] for sub_policy in CIFAR10_POLICY]
    operation = torch.tensor([AUTOAUG_OPERATIONS.index(name) for name, _, _ in steps])
    probability = torch.tensor([p for _, p, _ in steps])
    magnitude = torch.tensor(
        [operation_magnitude(n, level, AUTOAUG_BINS, height, width) for n, _, level in steps]
    )
    signed = torch.tensor([name in SIGNED for name, _, _ in steps])
    return operation, probability, magnitude, signed


def auto_augment(images: torch.Tensor) -> torch.Tensor:
    """AutoAugment (CIFAR-10 policy) with an independent sub-policy draw for every image."""
    batch, _, height, width = images.shape
    choice = torch.randint(len(CIFAR10_POLICY), (batch,))
    for stage in (0, 1):
        operation, probability, magnitude, signed = _policy_table(height, width, stage)
        applied = torch.rand(batch) < probability[choice]
        chosen = torch.where(applied, operation[choice], 0)  # 0 = Identity
        signs = _random_signs(signed[choice])
        images = apply_operations(images, AUTOAUG_OPERATIONS, chosen, magnitude[choice] * signs)
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
    batch: MixedBatch, probability: float = CUTMIX_PROBABILITY, alpha: float = CUTMIX_ALPHA
) -> MixedBatch:
    """Paste a box from a shuffled copy of the batch; lam = the exact share of own pixels."""
    if batch.y_mix is not None or float(torch.rand(())) >= probability:
        return batch
    size, _, height, width = batch.x.shape
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    centre_y, centre_x = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom, left, right = cutmix_box(height, width, lam, centre_y, centre_x)
    permutation = torch.randperm(size, device=batch.x.device)
    mixed = batch.x.clone()
    mixed[:, :, top:bottom, left:right] = batch.x[permutation, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return MixedBatch(mixed, batch.y, batch.y[permutation], lam)


@register_image_transform("cutout")
def cutout_half(images: torch.Tensor) -> torch.Tensor:
    """trans=[cutout]: a square of half the image side (16 px on 32x32, as DeVries & Taylor)."""
    return cutout(images, max(1, images.shape[-1] // 2))


register_image_transform("randaug")(rand_augment)
register_image_transform("autoaug")(auto_augment)
register_batch_mix("cutmix")(cutmix)
