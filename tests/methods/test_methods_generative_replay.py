"""Generative replay: generated rows labelled by the previous solver; the VAE is checkpointed."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.methods.base import TrainBatch
from tests.methods.test_methods_common import build_trainer, trainer_at_second_task

SETTINGS = ["mode=generative_replay", "exp=disjoint", "stream=offline", "n_epoch=1"]


def test_the_replayed_rows_carry_the_previous_solvers_labels(tmp_path):
    trainer = trainer_at_second_task(tmp_path, SETTINGS)
    method = trainer.method
    assert method.old_vae is not None and method.old_solver is not None
    torch.manual_seed(0)
    x_gen, y_gen = method.generated_batch(64)
    assert x_gen.shape[1:] == (1, 8, 8)
    old_logits = method.old_solver(x_gen)
    assert old_logits.shape[1] == 2  # the solver frozen after task 0 knew classes 0 and 1
    assert torch.equal(y_gen, old_logits.argmax(1))
    assert set(y_gen.tolist()) <= {0, 1}
    # the step's loss is the mean CE over the stream rows and these generated, labelled rows
    indices = trainer.split.train_tasks[1][:16]
    x = trainer.augmenter.normalize(trainer.fetch_images(indices))
    batch = TrainBatch(x, trainer.steps.train_labels[indices], indices=indices, n_stream=16)
    torch.manual_seed(1)
    loss, logits = method.loss(batch)
    torch.manual_seed(1)
    x_gen, y_gen = method.generated_batch(16)
    all_logits = trainer.model(torch.cat([x, x_gen]))
    expected = F.cross_entropy(all_logits, torch.cat([batch.y, y_gen]))
    assert logits.shape == (16, 4)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_replay_weight_zero_is_plain_training_and_the_vae_reloads(tmp_path):
    trainer = trainer_at_second_task(tmp_path, [*SETTINGS, "mode.replay_weight=0"])
    method = trainer.method
    indices = trainer.split.train_tasks[1][:16]
    batch = MixedBatch(
        trainer.augmenter.normalize(trainer.fetch_images(indices)),
        trainer.steps.train_labels[indices],
    )
    loss, logits = method.loss(batch)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, batch.y).item(), rel=1e-6)
    state = method.state_dict()
    other = build_trainer(tmp_path / "other", [*SETTINGS, "mode.replay_weight=0"]).method
    other.load_state_dict(state)
    torch.manual_seed(2)
    images = method.old_vae.sample(4)
    torch.manual_seed(2)
    assert torch.equal(other.old_vae.sample(4), images)


def test_a_bad_generator_size_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"mode.latent_dim=0"):
        build_trainer(tmp_path, [*SETTINGS, "mode.latent_dim=0"])
