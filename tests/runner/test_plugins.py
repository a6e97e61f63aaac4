"""The switches every mode accepts (runner/plugins.py, runner/schedule.py): early stopping on
held-out rows, gradient clipping, and the lr schedule stepped per epoch or per task."""

from __future__ import annotations

import pytest
import torch

from rainbow_runner.runner.plugins import GradientClipping, hold_out_validation
from rainbow_runner.runner.steps import StepRunner
from tests.conftest import record_learning_rates, run_in_process
from tests.methods.test_methods_common import build_trainer

OFFLINE = ["stream=offline", "exp=disjoint", "progress=false", "num_threads=1"]


@pytest.mark.parametrize(("patience", "n_epoch", "expected"), [(3, 8, 3), (1, 8, 1), (9, 4, 4)])
def test_early_stopping_stops_after_patience_epochs_without_improvement(
    tmp_path, patience, n_epoch, expected
):
    # lr 1e-9 cannot change a prediction (nor can BatchNorm statistics: none), so the accuracy
    # before the first epoch stays the best
    overrides = ["mode=finetune", *OFFLINE, "lr=1e-9", "model.batchnorm=false"]
    overrides += [f"n_epoch={n_epoch}", f"patience={patience}"]
    trainer = build_trainer(tmp_path, overrides)
    steps_per_epoch = [-(-len(task) // 16) for task in trainer.split.train_tasks]
    trainer.run()
    assert trainer.early_stopping.epochs_trained == [expected] * 5
    assert trainer.steps.global_step == expected * sum(steps_per_epoch)


def test_early_stopping_restore_best_ends_the_task_on_its_best_weights(tmp_path):
    overrides = ["mode=finetune", *OFFLINE, "n_epoch=3", "patience=5", "restore_best=true"]
    trainer = build_trainer(tmp_path, [*overrides, "lr=0.5"])  # too large: accuracy jumps about
    trainer.run()
    stopping = trainer.early_stopping
    assert stopping.epochs_trained == [3] * 5
    assert stopping.validation_accuracy(stopping.rows) == pytest.approx(stopping.best)


def test_held_out_validation_rows_are_never_trained_on_nor_stored(tmp_path, monkeypatch):
    trained: list[torch.Tensor] = []
    original = StepRunner.train_step

    def recording_step(self, batch):
        trained.append(batch.indices.clone())
        return original(self, batch)

    monkeypatch.setattr(StepRunner, "train_step", recording_step)
    overrides = ["mode=er", *OFFLINE, "n_epoch=2", "patience=2", "val_share=0.2", "mem_size=200"]
    trainer = build_trainer(tmp_path, overrides)
    reference = build_trainer(tmp_path / "b", ["mode=er", *OFFLINE])  # patience=0: no hold-out
    held_out = trainer.early_stopping.held_out
    for kept, held, whole in zip(
        trainer.split.train_tasks, held_out, reference.split.train_tasks, strict=True
    ):
        assert len(set(kept.tolist()) & set(held.tolist())) == 0
        assert sorted(kept.tolist() + held.tolist()) == sorted(whole.tolist())
        assert len(held) == round(0.2 * len(whole))
    trainer.run()
    never = set(torch.cat(held_out).tolist())
    assert trained and never.isdisjoint(torch.cat(trained).tolist())
    assert never.isdisjoint(trainer.memory.indices.tolist()) and len(trainer.memory) == 200
    # the same rows for the same split_seed, other rows for another
    again = hold_out_validation(reference.split, 0.2, 1)[1]
    other = hold_out_validation(reference.split, 0.2, 2)[1]
    assert all(torch.equal(a, b) for a, b in zip(again, held_out, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(other, held_out, strict=True))


def _norms_seen_by_sgd(monkeypatch) -> list[float]:
    norms: list[float] = []
    original = torch.optim.SGD.step

    def recording_step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"]]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return original(self, closure)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    return norms


def test_grad_clip_bounds_the_gradient_norm_the_optimizer_sees(tmp_path, monkeypatch):
    norms = _norms_seen_by_sgd(monkeypatch)
    base = ["mode=er", "n_epoch=1", "n_tasks=2", "progress=false", "num_threads=1"]
    run_in_process(tmp_path / "free", base)
    free = list(norms)
    norms.clear()
    run_in_process(tmp_path / "clipped", [*base, "grad_clip=0.05"])
    assert max(free) > 0.5  # without clipping the norms go well above the bound
    assert len(norms) == len(free) and max(norms) <= 0.05 * (1 + 1e-5)


def test_grad_clip_acts_on_amp_unscaled_gradients():
    from rainbow_runner.runner.models import MixedPrecision

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    precision = GradientClipping(MixedPrecision("fp16", torch.device("cpu")), 0.1)
    seen = []
    optimizer.step = lambda closure=None: seen.append(  # what a step reads
        torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    )
    loss = 100 * model(torch.randn(16, 8)).square().mean()
    precision.backward(loss, optimizer)  # scaled by 65536, then unscaled
    precision.step(optimizer)
    assert seen and seen[0] == pytest.approx(0.1, rel=1e-4)


GAMMA = 1 / 1.1  # scheduler=anneal: ExponentialLR's factor per step


@pytest.mark.parametrize(
    ("per", "expected"),
    [
        ("epoch", [1.0, GAMMA] * 5),  # restarted at every task, stepped after each epoch
        ("task", [GAMMA**task for task in range(5) for _ in range(2)]),  # one step per task
    ],
)
def test_the_lr_schedule_steps_per_epoch_or_per_task(tmp_path, monkeypatch, per, expected):
    rates = record_learning_rates(monkeypatch)
    overrides = ["mode=finetune", *OFFLINE, "n_epoch=2", "lr=1.0"]
    overrides += ["scheduler=anneal", f"lr_schedule_per={per}", "mem_size=0"]
    run_in_process(tmp_path, overrides)
    seen = []
    for task in range(5):
        for epoch in (1, 2):
            lrs = {round(lr, 9) for t, e, lr in rates if (t, e) == (task, epoch)}
            assert len(lrs) == 1  # constant within an epoch
            seen.append(lrs.pop())
    assert seen == pytest.approx(expected)


def test_a_resumed_run_with_early_stopping_repeats_the_uninterrupted_one(tmp_path, monkeypatch):
    """The patience count, the best accuracy and the best weights travel in the checkpoint."""
    from tests.runner.test_resume_checkpoint import OFFLINE_ER, assert_resumed_runs_repeat_the_run

    overrides = [*OFFLINE_ER, "n_epoch=4", "patience=2", "restore_best=true", "val_share=0.2"]
    assert_resumed_runs_repeat_the_run(tmp_path, overrides, monkeypatch)
