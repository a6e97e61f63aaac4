"""The pieces a Trainer wires, built from the config: speed settings, augmenter, run settings."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from rainbow_runner.datasets.augment.pipeline import Augmenter
from rainbow_runner.datasets.base import ImageData
from rainbow_runner.methods.base import RunSettings
from rainbow_runner.runner.config_check import ConfigError
from rainbow_runner.runner.models import (
    MixedPrecision,
    keep_freed_memory,
    optimize_model,
    switch_setting,
)

log = logging.getLogger(__name__)


def speed_and_augmenter(
    cfg: DictConfig, data: ImageData, model: torch.nn.Module, device: torch.device
) -> tuple[MixedPrecision, Augmenter]:
    """AMP, memory format and compile applied to the model, and the augmenter (base crop/flip,
    TRANS, CUDA graphs), fixed once for the run."""
    keep_freed_memory()
    on_gpu = device.type == "cuda"
    if on_gpu:  # fastest convolution algorithms for the (fixed) batch shapes
        torch.backends.cudnn.benchmark = True
    try:
        precision = MixedPrecision(cfg.amp, device)
        speed = optimize_model(model, device, cfg.channels_last, cfg.compile)
        graphs = switch_setting(cfg.cuda_graphs, "cuda_graphs") != "off"
    except ValueError as error:
        raise ConfigError(str(error)) from error
    augmenter = Augmenter(
        list(cfg.trans),
        data.mean,
        data.std,
        data.hflip if cfg.flip == "auto" else bool(cfg.flip),
        data.image_shape[-1],
        device,
        padding=None if cfg.crop_padding == "auto" else int(cfg.crop_padding),
        cuda_graphs=graphs,
    )
    graphs_on = "on" if on_gpu and graphs else "off"
    log.info("speed: amp %s | %s | cuda_graphs %s", precision.mode, speed, graphs_on)
    return precision, augmenter


def run_settings(cfg: DictConfig, online: bool) -> RunSettings:
    """The run-wide settings methods read, resolved once."""
    return RunSettings(
        batchsize=int(cfg.batchsize),
        mem_batchsize=int(cfg.mem_batchsize),
        eval_batchsize=int(cfg.eval_batchsize),
        n_epoch=int(cfg.n_epoch),
        memory_epochs=int(cfg.stream.memory_epochs),
        online=online,
        replay=str(cfg.replay),
        seed=int(cfg.seed),
        memory_name=str(cfg.mem_manage.name),
        online_iter=int(cfg.stream.online_iter),
    )


class DeviceImages:
    """A data set's uint8 images on the device (a lazy folder reader stays on the host), read
    by training-set indices."""

    def __init__(self, images, device: torch.device) -> None:
        self.images = images.to(device) if isinstance(images, torch.Tensor) else images
        self.device = device

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        """uint8 images on the device, for any index tensor."""
        images = self.images
        if isinstance(images, torch.Tensor):
            if indices.device != images.device:
                indices = indices.to(images.device)
            if indices.dim() == 1 and indices.dtype in (torch.int64, torch.int32):
                return images.index_select(0, indices)  # ~7x faster than [] for small batches
            return images[indices]
        return images[indices].to(self.device, non_blocking=True)
