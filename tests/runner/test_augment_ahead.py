"""augment_chunk: the augmentation of batches known ahead runs as one call per chunk of steps,
and every step still trains on its own indices' images, stream and replay alike."""

from __future__ import annotations

import math

import pytest
import torch

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.runner.config_check import ConfigError, check_config
from rainbow_runner.runner.steps import PlannedStep
from tests.conftest import compose_config
from tests.runner.test_speed_loop import digits_trainer


def recording_trainer(tmp_path, overrides: list[str]):
    """A digits trainer whose augmentation is the identity (so a step's images can be checked
    against its indices) and which records every augmentation call and every step's indices
    and batch."""
    trainer = digits_trainer(tmp_path, ["mode=er", "mem_size=40", *overrides])
    calls, prepared, steps = [], [], []

    def identity(images: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        return images.clone()

    trainer.augmenter.augment_images = identity
    runner = trainer.steps
    batches_ahead, train_step = runner.batches_ahead, runner.train_step

    def recording_batches_ahead(planned):
        batches = batches_ahead(planned)
        prepared.extend(zip([step.indices.clone() for step in planned], batches, strict=True))
        return batches

    def recording_train_step(batch):
        indices, expected = prepared.pop(0)
        assert batch is expected  # each step trains on the batch prepared for it, in order
        steps.append((indices, MixedBatch(batch.x.clone(), batch.y.clone())))
        train_step(batch)

    runner.batches_ahead, runner.train_step = recording_batches_ahead, recording_train_step
    return trainer, calls, steps


def is_batch_of(trainer, batch: MixedBatch, indices: torch.Tensor) -> bool:
    """batch holds exactly the (unaugmented, normalised) images and labels of indices."""
    images = trainer.augmenter.normalize(trainer.train_x[indices])
    return torch.equal(batch.x, images) and torch.equal(
        batch.y, trainer.steps.train_labels[indices]
    )


@pytest.mark.parametrize("online_iter", [1, 3])
def test_online_chunks_give_every_step_its_own_images_and_repeats(tmp_path, online_iter):
    trainer, calls, steps = recording_trainer(
        tmp_path, ["mode=rm", "augment_chunk=64", f"stream.online_iter={online_iter}"]
    )
    trainer.memory.indices = torch.arange(300, 340)  # what an earlier task's end_stream kept
    trainer.memory.labels = trainer.train_labels_cpu[300:340].clone()
    stream = torch.randperm(300)[:200]  # 13 incoming batches, the last of 8
    trainer.online_pass(stream)
    n_incoming = math.ceil(200 / 16)
    assert len(steps) == n_incoming * online_iter
    for number, (indices, batch) in enumerate(steps):
        incoming = stream[16 * (number // online_iter) :][:16]
        assert torch.equal(indices[: len(incoming)], incoming)
        assert len(indices) == 2 * len(incoming) and (indices[len(incoming) :] >= 300).all()
        assert is_batch_of(trainer, batch, indices)  # the images of its own indices
    per_chunk = max(1, 4 // online_iter)  # 64 images // batch 16 = 4 steps per chunk
    assert len(calls) == math.ceil(n_incoming / per_chunk)
    assert calls[0] == 32 * per_chunk * online_iter


@pytest.mark.parametrize(
    "overrides",
    [["mode=rm"], ["mode=er", "mem_manage=reservoir"], ["mode=bic", "mem_manage=reservoir"]],
    ids=["rm_uncertainty", "er_reservoir", "bic_reservoir"],
)
def test_a_chunk_drawn_ahead_replays_exactly_what_step_by_step_draws(tmp_path, overrides):
    """rm's memory changes at end_stream, a reservoir with every batch: either way the chunk's
    batches are the ones a step-by-step pass draws, and its memory ends the same."""
    runs = {}
    for chunk in (0, 64):
        trainer, calls, steps = recording_trainer(
            tmp_path / str(chunk), [*overrides, f"augment_chunk={chunk}"]
        )
        if not trainer.memory.streaming:  # what an earlier task's end_stream kept
            trainer.memory.indices = torch.arange(300, 340)
            trainer.memory.labels = trainer.train_labels_cpu[300:340].clone()
        trainer.online_pass(torch.arange(240))  # 15 incoming batches of 16
        runs[chunk] = (calls, steps, trainer.memory.indices.clone())
    (calls_each, steps_each, memory_each) = runs[0]
    (calls_ahead, steps_ahead, memory_ahead) = runs[64]
    sizes = [len(indices) for indices, _ in steps_each]
    assert sizes[1:] == [32] * 14  # replay from the second step on, at the latest
    assert calls_each == sizes  # one augmentation call per step
    assert calls_ahead == [sum(sizes[i : i + 4]) for i in range(0, 15, 4)]  # 4 steps per call
    for (indices, _), (ahead, batch) in zip(steps_each, steps_ahead, strict=True):
        assert torch.equal(indices, ahead)
        assert is_batch_of(trainer, batch, ahead)
    assert torch.equal(memory_each, memory_ahead)


def test_stepwise_draws_train_each_incoming_batch_before_the_memory_sees_it(tmp_path):
    """A method that draws with the model (DER, A-GEM) gets one step at a time and
    observe_stream after that batch's steps; its draws match a step-by-step pass."""
    runs = {}
    for stepwise in (False, True):
        trainer, calls, steps = recording_trainer(
            tmp_path / str(stepwise), ["mem_manage=reservoir", "augment_chunk=64"]
        )
        memory_at_step = []
        train_step = trainer.steps.train_step

        def recording(batch, train_step=train_step, trainer=trainer, seen=memory_at_step):
            seen.append(trainer.memory.indices.clone())
            train_step(batch)

        trainer.steps.train_step = recording
        trainer.method.stepwise_draws = stepwise
        trainer.online_pass(torch.arange(240))  # 15 incoming batches of 16
        runs[stepwise] = steps, memory_at_step, trainer.memory.indices.clone()
    for (indices, _), (same, _) in zip(runs[False][0], runs[True][0], strict=True):
        assert torch.equal(indices, same)
    assert torch.equal(runs[False][2], runs[True][2])
    for number, memory in enumerate(runs[True][1]):  # only the batches before this one
        assert (memory < 16 * number).all() and len(memory) == min(40, 16 * number)


def test_augment_chunk_0_augments_each_online_step_whole(tmp_path):
    trainer, calls, steps = recording_trainer(tmp_path, ["augment_chunk=0", "mode=finetune"])
    trainer.online_pass(torch.arange(160))
    assert len(steps) == 10
    assert calls == [16] * 10


def test_epochs_augment_a_chunk_of_batches_per_call(tmp_path):
    trainer, calls, steps = recording_trainer(tmp_path, ["augment_chunk=48"])
    pool = torch.arange(100, 230)  # 130 samples: 9 batches, 3 per chunk
    trainer.run_epoch(pool, len(pool))
    assert calls == [48, 48, 34]
    seen = torch.cat([indices for indices, _ in steps])
    assert torch.equal(seen.sort().values, pool)  # each sample once, in 16s and a last 2
    assert [len(indices) for indices, _ in steps] == [16] * 8 + [2]
    for indices, batch in steps:
        assert is_batch_of(trainer, batch, indices)


def test_a_chunk_draws_a_fresh_augmentation_for_every_image(tmp_path):
    trainer = digits_trainer(tmp_path, ["trans=[autoaug]"])
    torch.manual_seed(0)
    same = torch.zeros(16, dtype=torch.long)  # one image, 4 batches of 16 copies
    images = [batch.x for batch in trainer.steps.batches_ahead([PlannedStep(same, 16)] * 4)]
    assert [x.shape for x in images] == [(16, *trainer.train_x.shape[1:])] * 4
    # more different images than one batch could hold (8x8 digits: ~half the draws coincide)
    assert len(torch.unique(torch.cat(images).flatten(1), dim=0)) > 16
    assert all(not torch.equal(images[0], other) for other in images[1:])


@pytest.mark.parametrize("mode", ["er", "rm", "bic", "ewc"])
def test_a_step_puts_the_incoming_batch_first_and_its_replay_after(tmp_path, mode):
    trainer = digits_trainer(tmp_path, [f"mode={mode}", "mem_size=40"])
    labels = trainer.train_labels_cpu
    trainer.memory.indices, trainer.memory.labels = torch.arange(40), labels[:40].clone()
    incoming = torch.arange(100, 116)
    step = PlannedStep.of(incoming, trainer.method.replay(incoming))
    assert torch.equal(step.indices[:16], incoming) and step.n_stream == 16
    assert len(step.indices) == 32 and (step.indices[16:] < 40).all()  # 16 memory rows
    batch = trainer.steps.batches_ahead([step])[0]
    assert batch.from_memory.tolist() == [False] * 16 + [True] * 16
    assert torch.equal(batch.memory_indices, step.indices[16:])


def test_a_negative_augment_chunk_is_a_config_error():
    with pytest.raises(ConfigError, match="augment_chunk=-1"):
        check_config(compose_config(["augment_chunk=-1"]))


@pytest.mark.parametrize("stream", ["online", "offline"])
def test_stepwise_draws_see_every_earlier_step_trained(tmp_path, stream):
    """A model-aware replay() (MIR) is called right before its own step, online and in epochs."""
    trainer, _, steps = recording_trainer(tmp_path, ["augment_chunk=64"])
    trainer.method.stepwise_draws = True
    trainer.memory.indices = torch.arange(300, 340)
    trainer.memory.labels = trainer.train_labels_cpu[300:340].clone()
    replay, seen = trainer.method.replay, []

    def recording_replay(stream_indices: torch.Tensor) -> torch.Tensor:
        seen.append(len(steps))  # steps trained before this draw
        return replay(stream_indices)

    trainer.method.replay = recording_replay
    pool = torch.arange(160)  # 10 batches of 16
    if stream == "online":
        trainer.online_pass(pool)
    else:
        trainer.run_epoch(pool, len(pool))
    assert seen == list(range(10))
