"""Per-image image operations on uint8 batches: every image its own draw, a few passes per batch.

An `OperationTable` holds every (operation, signed magnitude) pair a policy can draw,
precomputed for one image shape: pointwise operations as 256-entry lookup tables, geometric
ones (nearest-neighbour affine maps) as source-pixel maps. A batch in which each image drew
its own pair is then one lookup gather and one map gather, whatever the mix of draws. The
data-dependent pointwise operations (contrast, autocontrast, equalize) build their tables
from each image's statistics; sharpness and colour blend the sub-batch that drew them.

Lookup tables and maps are built by running torchvision's own kernels on a ramp of the 256
values and on an image of pixel indices, so those results equal torchvision's bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import accumulate

import torch
from torch.nn import functional as nnf
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

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


# The AutoAugment/RandAugment operation set with torchvision's parametrisation: the reference
# each batched kind below reproduces, one image and one magnitude at a time.
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

# How each operation is applied in a batch.
# (The lookup kinds are numbered together: sorted by kind, their images are one slice.)
IDENTITY, LOOKUP, CONTRAST, AUTOCONTRAST, EQUALIZE, GEOMETRIC, SHARPNESS, COLOR = range(8)
N_KINDS = 8
KIND_OF = {
    "Identity": IDENTITY,
    "Brightness": LOOKUP,
    "Posterize": LOOKUP,
    "Solarize": LOOKUP,
    "Invert": LOOKUP,
    "ShearX": GEOMETRIC,
    "ShearY": GEOMETRIC,
    "TranslateX": GEOMETRIC,
    "TranslateY": GEOMETRIC,
    "Rotate": GEOMETRIC,
    "Contrast": CONTRAST,
    "AutoContrast": AUTOCONTRAST,
    "Equalize": EQUALIZE,
    "Sharpness": SHARPNESS,
    "Color": COLOR,
}


def _source_map(name: str, magnitude: float, height: int, width: int) -> torch.Tensor:
    """(H*W,) source pixel of every output pixel under a geometric operation; H*W = fill."""
    pixel_numbers = torch.arange(1, height * width + 1, dtype=torch.float32)
    moved = OPERATIONS[name](pixel_numbers.view(1, 1, height, width), magnitude)
    source = moved.flatten().round().long() - 1  # 0 was the fill: no source pixel
    return torch.where(source < 0, height * width, source)


def _lookup_row(name: str, magnitude: float) -> torch.Tensor:
    """(256,) uint8: what a pointwise operation makes of every value."""
    ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256)
    return OPERATIONS[name](ramp, magnitude).flatten()


@cache
def _ramp(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 256 uint8 values, in `dtype`: the input of every lookup table."""
    return torch.arange(256, dtype=dtype, device=device)


def _complement(factor: torch.Tensor) -> torch.Tensor:
    # 1 - factor in float64 before rounding to float32, and addcmul's fused multiply-add, as
    # torchvision's blend computes `image * factor + other * (1 - factor)`: equal bit for bit.
    return (1.0 - factor).float()


def _grey(images: torch.Tensor) -> torch.Tensor:
    """(n, H, W) float grey levels of RGB images, floored as torchvision's uint8 kernels do."""
    red, green, blue = images.unbind(1)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).floor_()


def contrast_lookup(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(n, C, 256) tables blending every value with its image's mean grey level (float64 factor)."""
    floats = _grey(images) if images.shape[1] == 3 else images.float()
    mean = floats.mean(dim=tuple(range(1, floats.dim())))
    ramp = _ramp(images.device, torch.float32)
    table = torch.addcmul(
        ramp * factor.float()[:, None], mean[:, None], _complement(factor)[:, None]
    )
    table = table.clamp_(0, 255).to(torch.uint8)
    return table[:, None, :].expand(-1, images.shape[1], -1)


def autocontrast_lookup(images: torch.Tensor) -> torch.Tensor:
    """(n, C, 256) tables stretching each channel's [min, max] to [0, 255]."""
    floats = images.float()
    minimum = floats.amin(dim=(-2, -1))[..., None]
    maximum = floats.amax(dim=(-2, -1))[..., None]
    flat = maximum == minimum
    inverse_scale = (maximum - minimum).mul_(1.0 / 255)
    minimum = minimum.masked_fill(flat, 0.0)
    inverse_scale = inverse_scale.masked_fill(flat, 1.0)
    ramp = _ramp(images.device, torch.float32)
    return ramp.sub(minimum).div_(inverse_scale).clamp_(0, 255).to(torch.uint8)


def equalize_lookup(images: torch.Tensor) -> torch.Tensor:
    """(n, C, 256) histogram-equalisation tables, PIL's scheme (as torchvision's equalize)."""
    n, channels = images.shape[:2]
    flat = images.reshape(n * channels, -1)
    bins = n * channels * 256
    offsets = torch.arange(0, bins, 256, device=images.device)[:, None]
    bin_of_pixel = (flat.long() + offsets).flatten()
    histogram = torch.zeros(bins, dtype=torch.long, device=images.device)
    # scatter_add_, not bincount: bincount waits for the GPU to size its output
    histogram = histogram.scatter_add_(0, bin_of_pixel, torch.ones_like(bin_of_pixel))
    histogram = histogram.view(n, channels, 256)
    below = histogram.cumsum(2).sub_(histogram)  # pixels darker than each value
    top_count = histogram.gather(2, flat.amax(1).view(n, channels, 1).long())
    step = (flat.shape[-1] - top_count).div_(255, rounding_mode="floor")
    table = below.add_(step // 2).div_(step.clamp(min=1), rounding_mode="floor").clamp_(max=255)
    return torch.where(step == 0, _ramp(images.device, torch.long), table).to(torch.uint8)


def sharpen(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend every image with its smoothed self by its own factor, borders untouched."""
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
    inner.addcmul_(blurred.sub_(inner), _complement(factor).view(-1, 1, 1, 1))
    return output.clamp_(0, 255).to(torch.uint8)


def saturate(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend every RGB image with its grey version by its own factor (grey images unchanged)."""
    if images.shape[1] != 3:
        return images
    grey = _grey(images)[:, None]
    blended = images.mul(factor.float().view(-1, 1, 1, 1))
    blended.addcmul_(grey, _complement(factor).view(-1, 1, 1, 1))
    return blended.clamp_(0, 255).to(torch.uint8)


LOOKUP_BUILDERS = {
    CONTRAST: contrast_lookup,
    AUTOCONTRAST: lambda images, factor: autocontrast_lookup(images),
    EQUALIZE: lambda images, factor: equalize_lookup(images),
}
BLENDS = {SHARPNESS: sharpen, COLOR: saturate}


class OperationTable:
    """Every (operation, signed magnitude) pair of a policy, precomputed for one image shape."""

    def __init__(
        self, pairs: Sequence[tuple[str, float]], shape: tuple[int, int, int], device: torch.device
    ) -> None:
        channels, height, width = shape
        self.pairs = list(pairs)
        kinds = [KIND_OF[name] for name, _ in pairs]
        if channels == 1:  # colour is the identity on grey images (as in torchvision and PIL)
            kinds = [IDENTITY if kind == COLOR else kind for kind in kinds]
        self.kind = torch.tensor(kinds)
        self.kind_on_device = self.kind.to(device)
        self.kinds_in_table = torch.bincount(self.kind, minlength=N_KINDS).tolist()
        self.graphs: dict[tuple[int, ...], CapturedApply] = {}
        self.shapes_seen: dict[tuple[int, ...], int] = {}
        self.factor = torch.tensor([1.0 + m for _, m in pairs], dtype=torch.float64, device=device)
        identity_map = torch.arange(height * width)
        identity_row = torch.arange(256, dtype=torch.uint8)
        self.source = torch.stack(
            [
                _source_map(name, m, height, width) if kind == GEOMETRIC else identity_map
                for (name, m), kind in zip(pairs, kinds, strict=True)
            ]
        ).to(device)
        self.lookup = torch.stack(
            [
                _lookup_row(name, m) if kind == LOOKUP else identity_row
                for (name, m), kind in zip(pairs, kinds, strict=True)
            ]
        ).to(device)

    def apply(
        self, images: torch.Tensor, pair: torch.Tensor, whole_batch: bool | None = None
    ) -> torch.Tensor:
        """Image i gets pair[i] (a CPU index into the table's pairs); uint8 in, uint8 out.

        whole_batch (default: on CUDA) runs every pass over the whole batch, identity entries
        where an image drew another kind: a short fixed list of kernels and no host sync,
        which is what a GPU wants. Otherwise the batch is sorted by kind first, so that each
        pass touches only the images that drew it, which is what a CPU wants (7x less work
        at 512 images).
        """
        kinds = self.kind.index_select(0, pair)
        counts = torch.bincount(kinds, minlength=N_KINDS).tolist()
        if counts[IDENTITY] == len(images):
            return images
        on_gpu = images.device.type == "cuda"
        if whole_batch is None:
            whole_batch = on_gpu
        if whole_batch:
            if on_gpu:  # a pageable copy would wait for the queue
                pair = pair.pin_memory()
            pair = pair.to(images.device, non_blocking=True)
            if on_gpu and CUDA_GRAPHS.enabled:
                return self._replay_graph(images, pair)
            return self._apply_whole_batch(images, pair, counts)
        return self._apply_sorted(images, pair, kinds, counts)

    def _replay_graph(self, images: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """The whole-batch passes (all of the table's kinds) as one captured CUDA graph.

        A batch shape is captured the second time it is seen (a one-off last batch stays
        eager), up to CUDA_GRAPHS.max_shapes shapes per table; each replay costs a few
        microseconds of launch instead of one launch per kernel.
        """
        key = tuple(images.shape)
        graph = self.graphs.get(key)
        if graph is None:
            seen = self.shapes_seen.get(key, 0) + 1
            self.shapes_seen[key] = seen
            if seen < 2 or len(self.graphs) >= CUDA_GRAPHS.max_shapes:
                return self._apply_whole_batch(images, pair, self.kinds_in_table)
            graph = self.graphs[key] = CapturedApply(self, images, pair)
        return graph(images, pair)

    def _apply_whole_batch(
        self, images: torch.Tensor, pair: torch.Tensor, counts: list[int]
    ) -> torch.Tensor:
        """Every pass on every image (pair on the images' device); kinds with count 0 skipped."""
        batch, channels, height, width = images.shape
        kinds = self.kind_on_device.index_select(0, pair)
        factor = self.factor.index_select(0, pair)
        flat = images.reshape(batch, channels, height * width)
        if any(counts[kind] for kind in (LOOKUP, CONTRAST, AUTOCONTRAST, EQUALIZE)):
            lookup = self.lookup.index_select(0, pair)[:, None, :].expand(-1, channels, -1)
            for kind in (CONTRAST, AUTOCONTRAST, EQUALIZE):
                if counts[kind]:
                    built = LOOKUP_BUILDERS[kind](images, factor)
                    lookup = torch.where((kinds == kind)[:, None, None], built, lookup)
            flat = lookup.gather(2, flat.long())
        if counts[GEOMETRIC]:
            source = self.source.index_select(0, pair)[:, None, :].expand(-1, channels, -1)
            flat = nnf.pad(flat, (0, 1)).gather(2, source)  # the extra last pixel is the fill
        output = flat.view(batch, channels, height, width)
        for kind in (SHARPNESS, COLOR):
            if counts[kind]:  # factor 1 blends an image with nothing: exactly itself
                own = torch.where(kinds == kind, factor, torch.ones_like(factor))
                output = BLENDS[kind](output, own)
        return output

    def _apply_sorted(
        self, images: torch.Tensor, pair: torch.Tensor, kinds: torch.Tensor, counts: list[int]
    ) -> torch.Tensor:
        """Each pass on the contiguous slice of the images that drew its kind."""
        batch, channels, height, width = images.shape
        ends = list(accumulate(counts))
        span = [slice(end - count, end) for end, count in zip(ends, counts, strict=True)]
        order = torch.argsort(kinds, stable=True).to(images.device, non_blocking=True)
        pair = pair.to(images.device, non_blocking=True).index_select(0, order)
        output = images.index_select(0, order)
        flat = output.view(batch, channels, height * width)
        factor = self.factor.index_select(0, pair)
        lookups = slice(span[LOOKUP].start, span[EQUALIZE].stop)
        if lookups.stop > lookups.start:
            lookup = self.lookup.index_select(0, pair)[:, None, :].repeat(1, channels, 1)
            for kind in (CONTRAST, AUTOCONTRAST, EQUALIZE):
                if counts[kind]:
                    own = span[kind]
                    lookup[own] = LOOKUP_BUILDERS[kind](output[own], factor[own])
            flat[lookups] = lookup[lookups].gather(2, flat[lookups].long())
        if counts[GEOMETRIC]:
            moved = span[GEOMETRIC]
            padded = nnf.pad(flat[moved], (0, 1))  # the extra last pixel is the fill
            source = self.source.index_select(0, pair[moved])[:, None, :]
            flat[moved] = padded.gather(2, source.expand(-1, channels, -1))
        for kind in (SHARPNESS, COLOR):
            if counts[kind]:
                own = span[kind]
                output[own] = BLENDS[kind](output[own], factor[own])
        unsort = torch.empty_like(order)
        unsort[order] = torch.arange(batch, device=order.device)
        return output.index_select(0, unsort)


@dataclass
class GraphSettings:
    """conf `cuda_graphs` (set by the Trainer): replay TRANS tables as CUDA graphs on GPUs."""

    enabled: bool = True
    max_shapes: int = 8  # captured batch shapes per table; later shapes run eagerly


CUDA_GRAPHS = GraphSettings()


class CapturedApply:
    """One table's whole-batch passes for one batch shape, captured once, then replayed."""

    def __init__(self, table: OperationTable, images: torch.Tensor, pair: torch.Tensor) -> None:
        self.images, self.pair = images.clone(), pair.clone()
        warm_up = torch.cuda.Stream(images.device)  # capture needs the kernels loaded first
        warm_up.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(warm_up):
            table._apply_whole_batch(self.images, self.pair, table.kinds_in_table)
        torch.cuda.current_stream(images.device).wait_stream(warm_up)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = table._apply_whole_batch(self.images, self.pair, table.kinds_in_table)

    def __call__(self, images: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        self.images.copy_(images)
        self.pair.copy_(pair)
        self.graph.replay()
        return self.output.clone()  # the next replay overwrites self.output
