"""Batched augmentation on uint8 image tensors, on whatever device the batch lives on."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch

from rainbow_runner.datasets.augment import policies  # noqa: F401  (registers the TRANS entries)
from rainbow_runner.datasets.augment.batches import (
    BATCH_MIXES,
    IMAGE_TRANSFORMS,
    MixedBatch,
    StepBatches,
)
from rainbow_runner.datasets.choices import ChoiceError

# Above this many table entries (e.g. 64x64 images), crops are two gathers, rows then columns.
MAX_CROP_TABLE_ENTRIES = 1 << 21


@cache
def crop_tables(
    height: int, width: int, padding: int, hflip: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Source positions in the padded image of every crop offset (and its mirror image).

    Returns rows (span, H), cols (span or 2*span, W) and, when small enough, their product
    flattened to (span * len(cols), H * W), so that a crop and flip is a single gather.
    """
    span, padded_width = 2 * padding + 1, width + 2 * padding
    rows = torch.arange(span)[:, None] + torch.arange(height)
    cols = torch.arange(span)[:, None] + torch.arange(width)
    if hflip:
        cols = torch.cat([cols, cols.flip(1)])
    flat = None
    if span * len(cols) * height * width <= MAX_CROP_TABLE_ENTRIES:
        flat = rows[:, None, :, None] * padded_width + cols[None, :, None, :]
        flat = flat.reshape(span * len(cols), height * width).to(device)
    return rows.to(device), cols.to(device), flat


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool) -> torch.Tensor:
    """Random crop of the zero-padded images and, if hflip, a random mirror: one gather.

    Every image draws its own crop offset (uniform over the (2p+1)^2 offsets) and, with hflip,
    mirrors with probability 1/2, as a random crop followed by a random mirror would; a handful of
    tensor operations per batch whatever its size, so small batches stay cheap.
    """
    if padding <= 0 and not hflip:
        return images
    batch, channels, height, width = images.shape
    rows, cols, flat = crop_tables(height, width, padding, hflip, images.device)
    padded = torch.nn.functional.pad(images, (padding,) * 4) if padding > 0 else images
    if flat is not None:
        pattern = torch.randint(0, len(flat), (batch,), device=images.device)
        index = flat.index_select(0, pattern)[:, None, :].expand(batch, channels, height * width)
        return padded.reshape(batch, channels, -1).gather(2, index).view(images.shape)
    pattern = torch.randint(0, len(rows) * len(cols), (batch,), device=images.device)
    row_index = rows.index_select(0, pattern // len(cols))[:, None, :, None]
    col_index = cols.index_select(0, pattern % len(cols))[:, None, None, :]
    picked_rows = padded.gather(2, row_index.expand(batch, channels, height, padded.shape[-1]))
    return picked_rows.gather(3, col_index.expand(batch, channels, height, width))


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
        padding: int | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        """padding: the base random crop's zero padding (None: image_size // 8, at least 1; 0:
        no crop); hflip: the base random mirror; cuda_graphs: on CUDA, replay the TRANS tables'
        passes as captured graphs (the same images, far fewer launches)."""
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
        self.padding = max(1, image_size // 8) if padding is None else int(padding)
        self.cuda_graphs = cuda_graphs
        mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1)
        # (x / 255 - mean) / std as one multiply-add: x * scale + shift.
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float, standardised per channel (what the model sees at test time)."""
        return torch.addcmul(self.shift, images, self.scale)  # uint8 in: one kernel, not two

    def augment_images(self, images: torch.Tensor) -> torch.Tensor:
        """The per-image part: base crop and flip, then each TRANS transform."""
        images = random_crop_flip(images, self.padding, self.hflip)
        for transform in self.image_transforms:
            images = transform(images, graphs=self.cuda_graphs)
        return images

    def finish_steps(
        self, augmented: torch.Tensor, labels: torch.Tensor, sizes: Sequence[int]
    ) -> list[MixedBatch]:
        """Consecutive steps' batches from augment_images' output: each step mixed within its
        own batch (if asked), all normalised in one call."""
        steps = StepBatches(augmented, labels, list(sizes))
        for mix in self.batch_mixes:
            steps = mix(steps)
        steps.x = self.normalize(steps.x)
        return steps.split()

    def train_batch(self, images: torch.Tensor, labels: torch.Tensor) -> MixedBatch:
        """A ready-to-train batch: augmented, normalised and, where asked, mixed."""
        return self.finish_steps(self.augment_images(images), labels, [len(labels)])[0]
