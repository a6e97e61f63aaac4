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
from itertools import accumulate

import torch
from torch.nn import functional as nnf

from rainbow_runner.datasets.augment.lookups import (
    autocontrast_lookup,
    blend_weights,
    contrast_lookup,
    equalize_lookup,
    saturate,
    sharpen,
)
from rainbow_runner.datasets.devices import to_device_async


class _TorchvisionFunctional:
    """torchvision.transforms.v2.functional, imported at the first operation (~1-5 s of torch
    and torchvision imports that a run without randaug/autoaug never needs)."""

    def __getattr__(self, name: str):
        from torchvision.transforms.v2 import functional

        return getattr(functional, name)


F = _TorchvisionFunctional()


def nearest():
    from torchvision.transforms.v2 import InterpolationMode

    return InterpolationMode.NEAREST


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
        interpolation=nearest(),
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
    "Rotate": lambda x, m: F.rotate(x, angle=m, interpolation=nearest(), fill=0),
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


POINTWISE_KINDS = (LOOKUP, CONTRAST, AUTOCONTRAST, EQUALIZE)  # all one lookup gather
DATA_LOOKUP_KINDS = (CONTRAST, AUTOCONTRAST, EQUALIZE)  # tables from each image's statistics


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
        factor = torch.tensor([1.0 + m for _, m in pairs], dtype=torch.float64, device=device)
        self.factor, self.complement = blend_weights(factor)
        # Whole-batch blends: images that drew another kind blend with weight 0 (exactly as is).
        self.sharpness_complement = torch.where(
            self.kind_on_device == SHARPNESS, self.complement, 0.0
        )
        colour = self.kind_on_device == COLOR
        self.colour_factor = torch.where(colour, self.factor, 1.0)
        self.colour_complement = torch.where(colour, self.complement, 0.0)
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
        self,
        images: torch.Tensor,
        pair: torch.Tensor,
        whole_batch: bool | None = None,
        graphs: bool = True,
    ) -> torch.Tensor:
        """Image i gets pair[i] (a CPU index into the table's pairs); uint8 in, uint8 out.

        graphs: on CUDA, the whole-batch passes are replayed as captured graphs (same images).

        whole_batch (default: on CUDA) runs every pass over the whole batch, identity entries
        where an image drew another kind: a short fixed list of kernels and no host sync,
        which is what a GPU wants. Otherwise the batch is sorted by kind first, so that each
        pass touches only the images that drew it, which is what a CPU wants (as fast at 16
        images, 2x faster at 32, 7x at 512).
        """
        on_gpu = images.device.type == "cuda"
        if whole_batch is None:
            whole_batch = on_gpu
        if on_gpu and whole_batch:
            pair = to_device_async(pair, images.device)
            if graphs:
                return self._replay_graph(images, pair)
            return self._apply_whole_batch(images, pair, self.kinds_in_table)
        kinds = self.kind.index_select(0, pair)
        counts = torch.bincount(kinds, minlength=N_KINDS).tolist()
        if counts[IDENTITY] == len(images):
            return images
        if whole_batch:
            return self._apply_whole_batch(images, pair.to(images.device), counts)
        return self._apply_sorted(images, pair, kinds, counts)

    def _replay_graph(self, images: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """The whole-batch passes (all of the table's kinds) as one captured CUDA graph.

        A batch shape is captured the second time it is seen (a one-off last batch stays
        eager), up to MAX_GRAPH_SHAPES shapes per table; each replay costs a few
        microseconds of launch instead of one launch per kernel.
        """
        key = tuple(images.shape)
        graph = self.graphs.get(key)
        if graph is None:
            seen = self.shapes_seen.get(key, 0) + 1
            self.shapes_seen[key] = seen
            if seen < 2 or len(self.graphs) >= MAX_GRAPH_SHAPES:
                return self._apply_whole_batch(images, pair, self.kinds_in_table)
            graph = self.graphs[key] = CapturedApply(self, images, pair)
        return graph(images, pair)

    def _data_lookups(
        self,
        images: torch.Tensor,
        values: torch.Tensor,
        pair: torch.Tensor,
        wanted: Sequence[int],
    ) -> dict[int, torch.Tensor]:
        """(n, C, 256) tables of the wanted data-dependent kinds, for every image given.

        values: the images' pixels as int64 (n, C, H*W), which the lookup gather needs anyway.
        """
        built = {}
        if CONTRAST in wanted:
            factor = self.factor.index_select(0, pair)
            complement = self.complement.index_select(0, pair)
            built[CONTRAST] = contrast_lookup(images, factor, complement)
        if AUTOCONTRAST in wanted or EQUALIZE in wanted:
            minimum, maximum = torch.aminmax(images.flatten(2), dim=-1)
            if AUTOCONTRAST in wanted:
                built[AUTOCONTRAST] = autocontrast_lookup(minimum, maximum)
            if EQUALIZE in wanted:
                built[EQUALIZE] = equalize_lookup(values, maximum)
        return built

    def _apply_whole_batch(
        self, images: torch.Tensor, pair: torch.Tensor, counts: Sequence[int]
    ) -> torch.Tensor:
        """Every pass on every image (pair on the images' device); kinds with count 0 skipped."""
        batch, channels, height, width = images.shape
        flat = images.reshape(batch, channels, height * width)
        if any(counts[kind] for kind in POINTWISE_KINDS):
            values = flat.long()
            lookup = self.lookup.index_select(0, pair)[:, None, :].expand(-1, channels, -1)
            wanted = [kind for kind in DATA_LOOKUP_KINDS if counts[kind]]
            built = self._data_lookups(images, values, pair, wanted)
            if built:
                kinds = self.kind_on_device.index_select(0, pair)[:, None, None]
                for kind, table in built.items():
                    lookup = torch.where(kinds == kind, table, lookup)
            flat = lookup.gather(2, values)
        if counts[GEOMETRIC]:
            source = self.source.index_select(0, pair)[:, None, :].expand(-1, channels, -1)
            flat = nnf.pad(flat, (0, 1)).gather(2, source)  # the extra last pixel is the fill
        output = flat.view(batch, channels, height, width)
        if counts[SHARPNESS]:
            output = sharpen(output, self.sharpness_complement.index_select(0, pair))
        if counts[COLOR]:
            colour_factor = self.colour_factor.index_select(0, pair)
            output = saturate(output, colour_factor, self.colour_complement.index_select(0, pair))
        return output

    def _apply_sorted(
        self, images: torch.Tensor, pair: torch.Tensor, kinds: torch.Tensor, counts: list[int]
    ) -> torch.Tensor:
        """Each pass on the contiguous slice of the images that drew its kind."""
        batch, channels, height, width = images.shape
        ends = list(accumulate(counts))
        span = [slice(end - count, end) for end, count in zip(ends, counts, strict=True)]
        order = torch.argsort(kinds, stable=True)
        unsort = torch.argsort(order).to(images.device, non_blocking=True)
        pair = pair.index_select(0, order).to(images.device, non_blocking=True)
        output = images.index_select(0, order.to(images.device, non_blocking=True))
        flat = output.view(batch, channels, height * width)
        lookups = slice(span[LOOKUP].start, span[EQUALIZE].stop)  # LOOKUP..EQUALIZE: one slice
        if lookups.stop > lookups.start:
            values = flat[lookups].long()
            tables = []  # the slice's lookup tables, kind by kind, in slice order
            if counts[LOOKUP]:
                rows = self.lookup.index_select(0, pair[span[LOOKUP]])
                tables.append(rows[:, None, :].expand(-1, channels, -1))
            for kind in DATA_LOOKUP_KINDS:
                if counts[kind]:
                    own = span[kind]
                    own_values = values[own.start - lookups.start : own.stop - lookups.start]
                    built = self._data_lookups(output[own], own_values, pair[own], [kind])
                    tables.append(built[kind])
            table = tables[0] if len(tables) == 1 else torch.cat(tables)
            torch.gather(table, 2, values, out=flat[lookups])
        if counts[GEOMETRIC]:
            moved = span[GEOMETRIC]
            padded = nnf.pad(flat[moved], (0, 1))  # the extra last pixel is the fill
            source = self.source.index_select(0, pair[moved])[:, None, :]
            torch.gather(padded, 2, source.expand(-1, channels, -1), out=flat[moved])
        if counts[SHARPNESS]:
            own = span[SHARPNESS]
            output[own] = sharpen(output[own], self.complement.index_select(0, pair[own]))
        if counts[COLOR]:
            own = span[COLOR]
            factor, complement = self.factor[pair[own]], self.complement[pair[own]]
            output[own] = saturate(output[own], factor, complement)
        return output.index_select(0, unsort)


MAX_GRAPH_SHAPES = 8  # captured batch shapes per table; later shapes run eagerly


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
