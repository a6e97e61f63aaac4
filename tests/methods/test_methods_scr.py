"""SCR: the SupCon loss, the nearest-class-mean prediction and its means from the memory."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.memory.base import extract_features
from rainbow_runner.methods.embedding import supervised_contrastive_loss
from rainbow_runner.runner.options import check_method_and_memory_options
from tests.conftest import compose_config
from tests.methods.test_methods_common import build_trainer

SCR_RUN = ["mode=scr", "exp=disjoint", "n_epoch=1", "mem_size=100"]


def test_scr_defaults_to_a_reservoir_and_its_knobs_are_constructor_arguments():
    cfg = compose_config(["mode=scr"])
    assert cfg.mem_manage.name == "reservoir" and cfg.mode.temperature == 0.1
    check_method_and_memory_options(cfg)


def test_supcon_loss_of_orthogonal_classes_is_the_hand_computed_value():
    """Rows equal within a class and orthogonal across: a row's 3 positives score e^{1/T}, its
    4 negatives e^0, so each positive's log-probability is 1/T − log(3e^{1/T} + 4)."""
    rows = torch.eye(2).repeat_interleave(4, dim=0)  # 8 rows, 2 classes of 4
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    temperature = 0.5
    expected = -(1 / temperature - math.log(3 * math.exp(1 / temperature) + 4))
    loss = supervised_contrastive_loss(rows, labels, temperature)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_supcon_loss_is_lower_for_identical_same_class_pairs_than_for_shuffled_pairs():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(4, 16), dim=1)
    labels = torch.arange(4).repeat(4)  # 16 samples, 4 classes
    first = centres[labels] + 0.1 * torch.randn(16, 16)
    paired = supervised_contrastive_loss(torch.cat([first, first]), labels.repeat(2), 0.1)
    other_class = (torch.arange(16) + 1) % 16  # the next sample: always another class
    shuffled = torch.cat([first, first[other_class]])
    unpaired = supervised_contrastive_loss(shuffled, labels.repeat(2), 0.1)
    # 7 positives per row: log 7 is the least a row can score (all its positives tied on top)
    assert math.log(7) < paired.item() < math.log(7) + 0.2
    assert unpaired.item() > 3 * paired.item()


def test_scr_predicts_the_nearest_class_mean_of_hand_made_features(tmp_path):
    trainer = build_trainer(tmp_path, SCR_RUN)
    method = trainer.method
    trainer.model.backbone = nn.Flatten()  # features = the input itself
    method.means = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    x = torch.tensor([[2.0, 0.1], [0.1, 3.0], [-1.0, -0.2], [5.0, 4.0], [-0.1, 9.0]])
    # [5, 4] is nearer to class 1's mean than to class 0's in raw distance, not in direction
    assert method.predict(x.view(5, 1, 1, 2)).argmax(1).tolist() == [0, 1, 2, 0, 1]


def test_means_after_a_task_are_the_memorys_normalised_class_means(tmp_path):
    trainer = build_trainer(tmp_path, SCR_RUN)
    trainer.train_task(0, trainer.split.train_tasks[0])
    method, memory = trainer.method, trainer.memory
    features = F.normalize(extract_features(memory.indices, method.context.selection()), dim=1)
    for label in memory.labels.unique().tolist():
        mean = F.normalize(features[memory.labels == label].mean(0), dim=0)
        assert torch.allclose(method.means[label], mean, atol=1e-5)
    x = trainer.augmenter.normalize(trainer.test_x[:64])
    nearest = torch.cdist(F.normalize(trainer.model.features(x), dim=1), method.means)
    assert torch.equal(method.predict(x).argmax(1), nearest.argmin(1))


def test_scr_trains_the_projection_head_and_checkpoints_it(tmp_path):
    trainer = build_trainer(tmp_path, SCR_RUN)
    before = [p.detach().clone() for p in trainer.method.projection.parameters()]
    trainer.train_task(0, trainer.split.train_tasks[0])
    after = list(trainer.method.projection.parameters())
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    state = trainer.method.state_dict()
    assert {"projection.0.weight", "projection.2.bias", "means"} <= set(state)
