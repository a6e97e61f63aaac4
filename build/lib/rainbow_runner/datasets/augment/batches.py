"""The batch types and the TRANS registries every augmentation step shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# Per-sample image transforms: uint8 (B, C, H, W) -> uint8 (B, C, H, W), a fresh draw per image,
# called as transform(images, graphs=...) (graphs: replay CUDA graphs where the transform has them).
IMAGE_TRANSFORMS: dict[str, Callable[..., torch.Tensor]] = {}
# Mixes that also mix the labels (cutmix): each step mixes within its own batch; they run on the
# uint8 images of a chunk of steps at once (StepBatches), before normalisation.
BATCH_MIXES: dict[str, Callable[..., StepBatches]] = {}


def register_image_transform(name: str) -> Callable:
    """Make a per-sample transform selectable as trans=[name]."""

    def decorate(fn: Callable[..., torch.Tensor]) -> Callable:
        IMAGE_TRANSFORMS[name] = fn
        return fn

    return decorate


def register_batch_mix(name: str) -> Callable:
    """Make a label-mixing batch transform selectable as trans=[name]."""

    def decorate(fn: Callable[..., StepBatches]) -> Callable:
        BATCH_MIXES[name] = fn
        return fn

    return decorate


@dataclass
class MixedBatch:
    """A training batch whose loss is lam * CE(y) + (1 - lam) * CE(y_mix)."""

    x: torch.Tensor
    y: torch.Tensor
    y_mix: torch.Tensor | None = None
    lam: float = 1.0


@dataclass
class StepBatches:
    """Consecutive steps' batches back to back, so that mixing and normalising them is one call.

    sizes: images per step; y_mix: each image's partner label where a mix ran, else None;
    lams: each step's lam (1.0 = that step is not mixed), None when no step is.
    """

    x: torch.Tensor
    y: torch.Tensor
    sizes: list[int]
    y_mix: torch.Tensor | None = None
    lams: list[float] | None = None

    def split(self) -> list[MixedBatch]:
        """Each step's own MixedBatch (views, no copies)."""
        xs, ys = self.x.split(self.sizes), self.y.split(self.sizes)
        if self.lams is None:  # no step mixed
            return [MixedBatch(x, y) for x, y in zip(xs, ys, strict=True)]
        partners = self.y_mix.split(self.sizes)
        return [
            MixedBatch(x, y, partner, lam) if lam < 1.0 else MixedBatch(x, y)
            for x, y, partner, lam in zip(xs, ys, partners, self.lams, strict=True)
        ]
