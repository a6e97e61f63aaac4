"""SLDA: exact streaming statistics, the LDA head, a backbone that never moves, runs that learn."""

from __future__ import annotations

import copy

import pytest
import torch

from rainbow_runner.methods.functional import add_class_statistics, lda_parameters
from rainbow_runner.runner.options import check_method_and_memory_options
from tests.conftest import TINY, compose_config, run_in_process
from tests.methods.test_methods_common import build_trainer
from tests.runner.test_resume_checkpoint import assert_resumed_runs_repeat_the_run


def pooled_covariance(features: torch.Tensor, labels: torch.Tensor, n_classes: int):
    """Per-class means and the pooled within-class covariance (biased, /N), in one go."""
    means = torch.stack([features[labels == c].mean(0) for c in range(n_classes)])
    centered = features - means[labels]
    return means, centered.T @ centered / len(features)


def test_slda_keeps_no_memory_and_its_knobs_are_constructor_arguments():
    cfg = compose_config(["mode=slda"])
    assert cfg.mode.shrinkage == 1e-4 and cfg.mode.streaming_update_sigma is True
    check_method_and_memory_options(cfg)
    assert compose_config(["mode=slda"]).mem_manage.name == "random"  # as finetune; capacity 0


@pytest.mark.parametrize("batchsize", [1, 7, 64])
def test_streamed_means_and_covariance_equal_the_data_ones_however_batched(batchsize):
    torch.manual_seed(0)
    n_classes, width = 4, 6
    labels = torch.randint(0, n_classes - 1, (200,))  # class 3 never appears
    features = torch.randn(200, width, dtype=torch.float64) * 3 + labels[:, None] * 2.0
    means = torch.zeros(n_classes, width, dtype=torch.float64)
    counts = torch.zeros(n_classes, dtype=torch.float64)
    scatter = torch.zeros(width, width, dtype=torch.float64)
    for start in range(0, 200, batchsize):
        rows = slice(start, start + batchsize)
        means, counts, scatter = add_class_statistics(
            means, counts, scatter, features[rows], labels[rows]
        )
    expected_means, expected_covariance = pooled_covariance(features, labels, n_classes - 1)
    assert torch.allclose(means[:3], expected_means) and (means[3] == 0).all()
    assert counts.tolist() == torch.bincount(labels, minlength=n_classes).tolist()
    assert torch.allclose(scatter / counts.sum(), expected_covariance)
    fixed = add_class_statistics(means, counts, None, features[:5], labels[:5])
    assert fixed[2] is None and fixed[1].sum() == 205


def test_lda_parameters_are_the_shrunk_inverse_covariance_times_the_means():
    torch.manual_seed(1)
    means = torch.randn(3, 5, dtype=torch.float64)
    root = torch.randn(5, 5, dtype=torch.float64)
    covariance = root @ root.T
    weight, bias = lda_parameters(means, covariance, 0.1)
    precision = torch.linalg.inv(0.9 * covariance + 0.1 * torch.eye(5, dtype=torch.float64))
    assert torch.allclose(weight, (precision @ means.T).T)
    assert torch.allclose(bias, -0.5 * torch.einsum("cd,de,ce->c", means, precision, means))


def test_after_one_pass_the_method_holds_the_class_means_and_covariance_of_the_features(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=slda", "exp=disjoint"])
    method, task = trainer.method, trainer.split.train_tasks[0]
    trainer.train_task(0, task)
    with torch.no_grad():
        x = trainer.augmenter.normalize(trainer.fetch_images(task))  # un-augmented
        features = trainer.model.eval().features(x).double()
    labels = trainer.steps.train_labels[task]
    means, covariance = pooled_covariance(features, labels, 2)
    assert torch.allclose(method.means[:2], means) and (method.counts[2:] == 0).all()
    assert torch.allclose(method.covariance(), covariance)
    weight, bias = lda_parameters(means, covariance, 1e-4)  # the LDA the scores come from
    scores = features @ weight.T + bias
    assert torch.allclose(method.predict(x).double(), scores, rtol=1e-4, atol=1e-3)


def test_the_model_never_changes_and_no_optimizer_is_built(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=slda", "exp=disjoint", "stream=offline", "n_epoch=2"])
    before = copy.deepcopy(trainer.model.state_dict())  # weights and BatchNorm statistics
    for task_id in range(2):
        trainer.train_task(task_id, trainer.split.train_tasks[task_id])
        assert trainer.optimizer is None and trainer.schedule.scheduler is None
    assert trainer.steps.global_step > 0
    for name, value in trainer.model.state_dict().items():
        rows = value[: len(before[name])] if name.startswith("head.") else value  # head grew
        assert torch.equal(rows, before[name]), name


def test_a_fixed_covariance_is_the_identity_and_scores_by_nearest_mean(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=slda", "mode.streaming_update_sigma=false"])
    trainer.train_task(0, trainer.split.train_tasks[0])
    method = trainer.method
    assert torch.equal(method.covariance(), torch.eye(len(method.scatter), dtype=torch.float64))
    features = method.features(trainer.augmenter.normalize(trainer.test_x[:50]))
    nearest = torch.cdist(features, method.means).argmin(1)  # every class is seen (blurry)
    assert torch.equal(method.scores(features).argmax(1), nearest)


def test_slda_runs_online_and_offline_with_the_same_result_well_above_chance(tmp_path):
    settings = ["mode=slda", "exp=disjoint", *TINY]
    online = run_in_process(tmp_path / "on", [*settings, "stream=online"])
    offline = run_in_process(tmp_path / "off", [*settings, "stream=offline"])
    assert online["status"] == offline["status"] == "complete" and online["tasks_done"] == 5
    assert online["A_last"] > 80.0  # 10 classes: chance is 10%
    assert offline["A_last"] == pytest.approx(online["A_last"], abs=0.5)  # order-free statistics


def test_state_reloads_into_a_fresh_method_with_the_same_predictions(tmp_path):
    trainer = build_trainer(tmp_path / "a", ["mode=slda", "exp=disjoint"])
    for task_id in range(2):
        trainer.train_task(task_id, trainer.split.train_tasks[task_id])
    fresh = build_trainer(tmp_path / "b", ["mode=slda", "exp=disjoint"])
    fresh.model.grow(trainer.n_exposed)
    fresh.context.n_exposed = trainer.n_exposed
    fresh.method.load_state_dict(trainer.method.state_dict())
    x = fresh.augmenter.normalize(fresh.test_x[:32])
    assert torch.equal(fresh.method.predict(x), trainer.method.predict(x))


def test_a_resumed_run_repeats_the_uninterrupted_one(tmp_path, monkeypatch):
    """Resumed after a task, inside an epoch, inside a later one: the statistics go on."""
    overrides = ["mode=slda", "stream=offline", "exp=disjoint", "n_epoch=2", "progress=false"]
    assert_resumed_runs_repeat_the_run(tmp_path, overrides, monkeypatch)
