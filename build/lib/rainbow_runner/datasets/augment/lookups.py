"""The data-dependent image operations: lookup tables from each image's own statistics, blends.

Every image in a batch brings its own factor. torchvision's kernels are the reference, bit for
bit (tests/test_image_ops.py); the comments say where the arithmetic order matters for that.
"""

from __future__ import annotations

from functools import cache

import torch


@cache
def ramp(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 256 uint8 values, in `dtype`: the input of every lookup table."""
    return torch.arange(256, dtype=dtype, device=device)


@cache
def _histogram_offsets(rows: int, device: torch.device) -> torch.Tensor:
    """(rows, 1): where each image channel's 256 bins start in one flat histogram."""
    return torch.arange(0, rows * 256, 256, device=device)[:, None]


def blend_weights(factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (factor, 1 - factor) from float64 factors.

    1 - factor is taken in float64 before rounding to float32, as torchvision's blend computes
    `image * factor + other * (1 - factor)` with Python floats: equal bit for bit.
    """
    return factor.float(), (1.0 - factor).float()


def grey_levels(images: torch.Tensor) -> torch.Tensor:
    """(n, H, W) float grey levels of RGB images, floored as torchvision's uint8 kernels do."""
    red, green, blue = images.unbind(1)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).floor_()


def contrast_lookup(
    images: torch.Tensor, factor: torch.Tensor, complement: torch.Tensor
) -> torch.Tensor:
    """(n, C, 256) tables blending every value with its image's mean grey level."""
    if images.shape[1] == 3:
        mean = grey_levels(images).mean(dim=(1, 2))
    else:  # sums of at most 2^24 / 255 integers: exact in float32, whatever the order
        mean = images.flatten(1).mean(1, dtype=torch.float32)
    table = torch.addcmul(
        ramp(images.device, torch.float32) * factor[:, None], mean[:, None], complement[:, None]
    )
    table = table.clamp_(0, 255).to(torch.uint8)
    return table[:, None, :].expand(-1, images.shape[1], -1)


def autocontrast_lookup(minimum: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
    """(n, C, 256) tables stretching each channel's [minimum, maximum] ((n, C) uint8) to 0..255."""
    low, high = minimum.float()[..., None], maximum.float()[..., None]
    flat = high == low
    inverse_scale = (high - low).mul_(1.0 / 255)
    low = low.masked_fill_(flat, 0.0)
    inverse_scale = inverse_scale.masked_fill_(flat, 1.0)
    return (
        ramp(low.device, torch.float32).sub(low).div_(inverse_scale).clamp_(0, 255).to(torch.uint8)
    )


def equalize_lookup(values: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
    """(n, C, 256) histogram-equalisation tables, PIL's scheme (as torchvision's equalize).

    values: the pixels as int64 (n, C, H*W); maximum: each channel's largest value (n, C).
    """
    n, channels, pixels = values.shape
    bins = values.view(n * channels, pixels) + _histogram_offsets(n * channels, values.device)
    bins = bins.view(-1)
    histogram = torch.zeros(n * channels * 256, dtype=torch.long, device=values.device)
    # scatter_add_, not bincount: bincount waits for the GPU to size its output (and is no
    # faster on a CPU)
    histogram = histogram.scatter_add_(0, bins, torch.ones_like(bins)).view(n, channels, 256)
    below = histogram.cumsum(2).sub_(histogram)  # pixels darker than each value
    top_count = histogram.gather(2, maximum.long()[..., None])
    step = (pixels - top_count).div_(255, rounding_mode="floor")
    table = below.add_(step // 2).div_(step.clamp(min=1), rounding_mode="floor").clamp_(max=255)
    return torch.where(step == 0, ramp(values.device, torch.long), table).to(torch.uint8)


def sharpen(images: torch.Tensor, complement: torch.Tensor) -> torch.Tensor:
    """Blend every image with its smoothed self (weight `complement`), borders untouched.

    A complement of 0 leaves an image exactly as it was.
    """
    height, width = images.shape[-2:]
    if height <= 2 or width <= 2:
        return images
    output = images.float()
    # torchvision's 3x3 kernel (1 around a 5, over 13) as exact integer sums of shifted slices:
    # a sum of integers over 13 is never within float error of a half, so the rounding agrees.
    rows = output[..., :-2, :] + output[..., 1:-1, :]
    rows += output[..., 2:, :]
    blurred = rows[..., :-2] + rows[..., 1:-1]
    blurred += rows[..., 2:]
    inner = output[..., 1:-1, 1:-1]
    blurred = blurred.add_(inner, alpha=4).div_(13).round_()
    inner.addcmul_(blurred.sub_(inner), complement.view(-1, 1, 1, 1))
    return output.clamp_(0, 255).to(torch.uint8)


def saturate(images: torch.Tensor, factor: torch.Tensor, complement: torch.Tensor) -> torch.Tensor:
    """Blend every RGB image with its grey version (grey images unchanged).

    Factor 1 with complement 0 leaves an image exactly as it was.
    """
    if images.shape[1] != 3:
        return images
    grey = grey_levels(images)[:, None]
    blended = images.mul(factor.view(-1, 1, 1, 1))
    blended.addcmul_(grey, complement.view(-1, 1, 1, 1))
    return blended.clamp_(0, 255).to(torch.uint8)
