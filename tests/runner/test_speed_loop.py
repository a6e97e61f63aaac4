"""The fast paths of the training loop do what the slow ones did: crops, normalising, AMP, NHWC."""

from __future__ import annotations

import math

import pytest
import torch

from rainbow_runner.datasets.augment import pipeline as augment
from rainbow_runner.datasets.augment.pipeline import Augmenter, random_crop_flip
from rainbow_runner.datasets.splits import make_split
from rainbow_runner.runner import models
from rainbow_runner.runner import running as running_module
from rainbow_runner.runner.config_check import ConfigError
from rainbow_runner.runner.reporting.results import ResultWriter
from rainbow_runner.runner.running import RunningSums
from rainbow_runner.runner.steps import PlannedStep
from rainbow_runner.runner.trainer import Trainer
from tests.conftest import compose_config


def reference_crops(image: torch.Tensor, padding: int, hflip: bool) -> list[torch.Tensor]:
    """Every crop (and mirrored crop) of one zero-padded image, the slow obvious way."""
    _, height, width = image.shape
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    crops = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + height, left : left + width]
            crops.append(crop)
            if hflip:
                crops.append(crop.flip(-1))
    return crops


def which_crop(image: torch.Tensor, crops: list[torch.Tensor]) -> int:
    matches = [i for i, crop in enumerate(crops) if torch.equal(crop, image)]
    assert len(matches) == 1, "the output is not exactly one crop of its input"
    return matches[0]


@pytest.mark.parametrize("separable", [False, True])
@pytest.mark.parametrize(("channels", "hflip"), [(1, True), (3, True), (3, False)])
def test_crop_flip_outputs_are_crops_of_their_own_input_and_cover_all_offsets(
    monkeypatch, separable, channels, hflip
):
    if separable:  # the two-gather path used for large images
        monkeypatch.setattr(augment, "MAX_CROP_TABLE_ENTRIES", 0)
    augment.crop_tables.cache_clear()
    torch.manual_seed(0)
    side, padding, batch = 6, 1, 400
    base = torch.arange(1, channels * side * side + 1, dtype=torch.uint8)
    images = torch.stack([base.roll(i).view(channels, side, side) for i in range(batch)])
    out = random_crop_flip(images, padding, hflip)
    augment.crop_tables.cache_clear()
    assert out.shape == images.shape and out.dtype == torch.uint8
    seen = set()
    for i in range(batch):
        seen.add(which_crop(out[i], reference_crops(images[i], padding, hflip)))
    n_choices = (2 * padding + 1) ** 2 * (2 if hflip else 1)
    assert seen == set(range(n_choices))  # 400 draws cover all 9 or 18 choices


def test_crop_flip_mirrors_half_of_the_images():
    torch.manual_seed(1)
    images = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(2000, 1, 1, 1)
    out = random_crop_flip(images, 0, hflip=True)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert ((out == images).flatten(1).all(1) | mirrored).all()
    assert 0.45 < mirrored.float().mean().item() < 0.55


def test_normalize_is_the_standardisation_it_replaces():
    mean, std = (0.2, 0.5, 0.7), (0.3, 0.25, 0.1)
    augmenter = Augmenter([], mean, std, True, 8, torch.device("cpu"))
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(augmenter.normalize(images), expected, rtol=1e-5, atol=1e-5)


def test_amp_defaults_to_off_on_cpu_and_rejects_unknown_values():
    cpu = torch.device("cpu")
    assert models.MixedPrecision("auto", cpu).mode == "off"
    assert models.MixedPrecision(False, cpu).mode == "off"  # YAML reads `off` as false
    assert not models.MixedPrecision("off", cpu).enabled
    with pytest.raises(ValueError, match="amp=fp8"):
        models.MixedPrecision("fp8", cpu)


def test_channels_last_gives_the_same_outputs_and_auto_leaves_cpu_alone():
    torch.manual_seed(0)
    model = models.resnet32_cifar((3, 16, 16), 4).eval()
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    assert "channels_last off" in models.optimize_model(model, torch.device("cpu"), "auto", False)
    assert not model.channels_last
    models.optimize_model(model, torch.device("cpu"), True, False)
    assert model.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    mlp = models.mlp((1, 8, 8), 3)
    assert "channels_last off" in models.optimize_model(mlp, torch.device("cpu"), True, False)


def digits_trainer(tmp_path, overrides: list[str]) -> Trainer:
    from rainbow_runner.datasets import load_dataset

    cfg = compose_config(["progress=false", "device=cpu", *overrides])
    data = load_dataset("digits", "")
    split = make_split(data.train_y, data.n_classes, int(cfg.n_tasks), float(cfg.exp.blurry), 1)
    trainer = Trainer(cfg, data, split, torch.device("cpu"), ResultWriter(tmp_path, False))
    trainer.task_id, trainer.n_exposed = 0, split.exposed[0]
    trainer.new_optimizer()
    return trainer


def test_bad_speed_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="amp=fast"):
        digits_trainer(tmp_path, ["amp=fast"])
    with pytest.raises(ConfigError, match="channels_last=maybe"):
        digits_trainer(tmp_path, ["channels_last=maybe"])
    with pytest.raises(ConfigError, match="cuda_graphs=sometimes"):
        digits_trainer(tmp_path, ["cuda_graphs=sometimes"])


def test_fetch_images_fast_path_matches_indexing(tmp_path):
    trainer = digits_trainer(tmp_path, [])
    indices = torch.tensor([5, 0, 17, 5])
    for index in (indices, indices.int()):
        assert torch.equal(trainer.fetch_images(index), trainer.train_x[indices])
    mask = torch.zeros(len(trainer.train_x), dtype=torch.bool)
    mask[[3, 9]] = True
    assert torch.equal(trainer.fetch_images(mask), trainer.train_x[[3, 9]])


def loss_recording_trainer(tmp_path, overrides: list[str]) -> tuple[Trainer, list[float]]:
    """A digits trainer and the list its every step's loss is appended to."""
    trainer = digits_trainer(tmp_path, overrides)
    losses = []
    loss_of = trainer.method.loss

    def recording_loss(batch):
        loss, logits = loss_of(batch)
        losses.append(loss.item())
        return loss, logits

    trainer.method.loss = recording_loss
    return trainer, losses


def one_step(trainer: Trainer, indices: torch.Tensor) -> None:
    """A training step on the given stream indices, as the loop runs it."""
    trainer.steps.run([PlannedStep(indices, len(indices))], together=True)


def test_task_loss_and_window_sums_add_up_over_flushes(tmp_path):
    trainer, losses = loss_recording_trainer(tmp_path, ["log_every=3", "mem_size=0"])
    for start in range(0, 7 * 16, 16):
        one_step(trainer, torch.arange(start, start + 16))
    running = trainer.steps.running
    assert running.window_steps == 1 and running.seen_sum == 16
    trainer.steps.flush_window()
    assert running.task_steps == 7
    assert running.task_loss_sum.item() == pytest.approx(sum(losses), rel=1e-5)


def test_pending_steps_are_added_up_at_the_cap_without_losing_any(tmp_path, monkeypatch):
    monkeypatch.setattr(running_module, "MAX_PENDING_STEPS", 5)
    trainer, losses = loss_recording_trainer(tmp_path, ["log_every=1000", "mem_size=0"])
    trainer.run_epoch(torch.arange(12 * 16), 12 * 16)  # 12 steps: added up after steps 5 and 10
    running = trainer.steps.running
    assert len(running.step_losses) == 2 and running.window_steps == 12
    assert running.loss_sum.item() == pytest.approx(sum(losses[:10]), rel=1e-5)
    trainer.steps.flush_window()
    assert running.task_loss_sum.item() == pytest.approx(sum(losses), rel=1e-5)
    assert 0 <= running.correct_sum.item() <= 12 * 16


def test_running_sums_round_trip_through_their_state_dict():
    sums = RunningSums(torch.device("cpu"))
    for step in range(3):
        logits = torch.randn(4, 3)
        sums.add_step(torch.tensor(0.5 + step), logits, torch.tensor([0, 1, 2, 0]))
    copy = RunningSums(torch.device("cpu"))
    copy.load_state_dict(sums.state_dict())
    assert sums.flush(str).loss == copy.flush(str).loss == pytest.approx(1.5)
    assert copy.task_steps == 3 and copy.task_loss() == pytest.approx(1.5)


def test_a_step_runs_under_bf16_autocast_on_cpu(tmp_path):
    """The AMP branch the GPU takes, exercised where it can run here (CPU bf16 autocast)."""
    trainer = digits_trainer(tmp_path, ["amp=bf16", "mem_size=0"])
    assert trainer.precision.mode == "bf16"
    before = [p.detach().clone() for p in trainer.model.parameters()]
    one_step(trainer, torch.arange(16))
    after = list(trainer.model.parameters())
    assert all(p.dtype == torch.float32 for p in after)  # master weights stay float32
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    stats = trainer.steps.running.flush(str)
    assert math.isfinite(stats.loss) and stats.loss > 0


def test_the_base_crop_and_flip_are_config_keys_and_can_be_turned_off(tmp_path):
    default = digits_trainer(tmp_path / "a", [])
    assert default.augmenter.padding == 1 and default.augmenter.hflip is False  # digits: 8 px
    off = digits_trainer(tmp_path / "b", ["crop_padding=0", "flip=false"])
    images = off.train_x[:32]
    assert torch.equal(off.augmenter.augment_images(images), images)  # nothing left to do
    on = digits_trainer(tmp_path / "c", ["crop_padding=2", "flip=true"])
    assert on.augmenter.padding == 2 and on.augmenter.hflip is True
    assert not torch.equal(on.augmenter.augment_images(images), images)
