"""Batched augmentation on uint8 image tensors, on whatever device the batch lives on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from runner.registry import ChoiceError

# Per-sample image transforms: uint8 (B, C, H, W) -> uint8 (B, C, H, W), a fresh draw per image.
IMAGE_TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
# Batch-level mixes that also mix the labels (cutmix); applied after normalisation.
BATCH_MIXES: dict[str, Callable[..., MixedBatch]] = {}


def register_image_transform(name: str) -> Callable:
    """Make a per-sample transform selectable as trans=[name]."""

    def decorate(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
        IMAGE_TRANSFORMS[name] = fn
        return fn

    return decorate


def register_batch_mix(name: str) -> Callable:
    """Make a label-mixing batch transform selectable as trans=[name]."""

    def decorate(fn: Callable[..., MixedBatch]) -> Callable:
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


def random_crop(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad and crop back to size at an independent random offset per image."""
    if padding <= 0:
        return images
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    offset_y = torch.randint(0, 2 * padding + 1, (batch, 1), device=images.device)
    offset_x = torch.randint(0, 2 * padding + 1, (batch, 1), device=images.device)
    rows = offset_y + torch.arange(height, device=images.device)
    cols = offset_x + torch.arange(width, device=images.device)
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror a random half of the images."""
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class Augmenter:
    """Turns uint8 batches into normalised float batches: base crop/flip, TRANS, then mixes."""

    def __init__(
        self,
        trans: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        hflip: bool,
        image_size: int,
        device: torch.device,
    ) -> None:
        valid = sorted(IMAGE_TRANSFORMS) + sorted(BATCH_MIXES)
        for name in trans:
            if name not in valid:
                raise ChoiceError(
                    f"unknown trans entry '{name}' in trans={list(trans)}; valid entries are: "
                    f"{', '.join(valid)} (e.g. trans=[cutmix,autoaug], or trans=[] for none)."
                )
        self.image_transforms = [IMAGE_TRANSFORMS[n] for n in trans if n in IMAGE_TRANSFORMS]
        self.batch_mixes = [BATCH_MIXES[n] for n in trans if n in BATCH_MIXES]
        self.hflip = hflip
        self.padding = max(1, image_size // 8)
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float, standardised per channel (what the model sees at test time)."""
        return (images.float().div_(255.0) - self.mean) / self.std

    def augment_images(self, images: torch.Tensor) -> torch.Tensor:
        """The per-image part: base crop and flip, then each TRANS transform."""
        images = random_crop(images, self.padding)
        if self.hflip:
            images = random_hflip(images)
        for transform in self.image_transforms:
            images = transform(images)
        return images

    def train_batch(self, images: torch.Tensor, labels: torch.Tensor) -> MixedBatch:
        """A ready-to-train batch: augmented, normalised and, where asked, mixed."""
        batch = MixedBatch(self.normalize(self.augment_images(images)), labels)
        for mix in self.batch_mixes:
            batch = mix(batch)
        return batch
