"""iCaRL: nearest-mean-of-exemplars, BCE distillation targets, old head rows kept, all trained."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rainbow_runner.datasets.augment.pipeline import MixedBatch
from rainbow_runner.methods.functional import class_means, nearest_mean_scores
from tests.methods.test_methods_common import build_trainer


def test_nearest_mean_picks_the_closest_normalised_class_mean():
    means = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    features = torch.tensor([[5.0, 1.0, 0.0], [0.1, 0.2, 3.0], [0.0, 2.0, 1.9], [-1.0, 0.0, -0.5]])
    scores = nearest_mean_scores(features, means)
    assert scores.argmax(1).tolist() == [0, 2, 1, 1]
    # scale does not matter: features are normalised first
    assert torch.allclose(nearest_mean_scores(10 * features, means), scores, atol=1e-5)


def test_classes_without_exemplars_are_never_predicted():
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    means = class_means(features, torch.tensor([0, 0, 2]), n_classes=3)
    assert means[1].isnan().all() and not means[[0, 2]].isnan().any()
    scores = nearest_mean_scores(torch.tensor([[0.5, 0.5], [0.0, 1.0]]), means)
    assert torch.isinf(scores[:, 1]).all()
    assert scores.argmax(1).tolist()[1] == 2


def test_class_means_are_unit_means_of_unit_features():
    features = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    means = class_means(features, torch.tensor([0, 0]), n_classes=1)
    expected = F.normalize(torch.tensor([[0.6, 1.8]]), dim=1)
    assert torch.allclose(means, expected)


def test_old_head_rows_are_kept_and_every_parameter_is_trained(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=icarl", "exp=disjoint", "n_epoch=1", "mem_size=60"])
    trainer.train_task(0, trainer.split.train_tasks[0])
    old_weight = trainer.model.head.weight.detach().clone()
    assert old_weight.shape[0] == 2
    trainer.model.grow(4)  # what train_task does for task 1
    trainer.new_optimizer()
    trainer.method.before_task(1)
    assert torch.equal(trainer.model.head.weight[:2], old_weight)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in trainer.model.parameters()}  # BN and head included
    assert trainer.method.old_model.head.weight.shape[0] == 2
    assert not any(p.requires_grad for p in trainer.method.old_model.parameters())


def test_loss_targets_old_classes_with_the_old_models_sigmoid(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=icarl", "exp=blurry10", "n_epoch=1", "mem_size=60"])
    method = trainer.method
    trainer.train_task(0, trainer.split.train_tasks[0])
    trainer.context.task_id = 1  # as train_task(1) sets it
    assert method.context.n_old == 2  # blurry: the classes of task 0's group, not all exposed ones
    x = trainer.augmenter.normalize(trainer.test_x[:8])
    y = trainer.test_labels[:8]
    loss, logits = method.loss(MixedBatch(x, y))
    targets = F.one_hot(y, 10).float()
    targets[:, :2] = torch.sigmoid(method.old_model(x)[:, :2])
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 8
    assert torch.allclose(loss, expected)


def test_predictions_come_from_the_exemplar_means_after_a_task(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=icarl", "exp=disjoint", "n_epoch=1", "mem_size=60"])
    trainer.train_task(0, trainer.split.train_tasks[0])
    means = trainer.method.means
    assert means.shape == (2, trainer.model.feature_dim)
    x = trainer.augmenter.normalize(trainer.test_x[:16])
    with torch.no_grad():
        expected = nearest_mean_scores(trainer.model.features(x), means)
    assert torch.allclose(trainer.method.predict(x), expected)
