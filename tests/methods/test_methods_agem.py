"""A-GEM: the projected gradient never opposes the reference gradient of earlier tasks' memory;
memory rows are never trained on; it forgets less than finetune where its guarantee holds."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from rainbow_runner.methods.gradients import flat_gradient, loss_gradient
from rainbow_runner.runner.steps import PlannedStep
from tests.conftest import TINY, compose_config, run_in_process
from tests.methods.test_methods_common import build_trainer, trainer_at_second_task
from tests.runner.test_resume_checkpoint import (
    assert_same_results,
    resume_from,
    run_keeping_checkpoints,
)

# No random crop or flip: the reference batch is then the same in the test and in the method.
PLAIN = ["mode=agem", "exp=disjoint", "n_epoch=1", "mem_size=100", "crop_padding=0", "flip=false"]


def trainer_in_task_1(tmp_path):
    """After task 0 (memory: task 0's samples), at the start of task 1 (head of 4 classes)."""
    return trainer_at_second_task(tmp_path, PLAIN)


def stream_gradient(trainer, stream: torch.Tensor) -> tuple[object, list, torch.Tensor]:
    """A stream batch's prepared batch, the parameters its loss reaches and its gradient (left
    in .grad for adjust_gradients), in train mode as the loop steps."""
    method, model = trainer.method, trainer.model
    batch = trainer.steps.batches_ahead([PlannedStep(stream, len(stream))])[0]
    model.train()
    trainer.optimizer.zero_grad(set_to_none=True)
    method.loss(batch)[0].backward()
    parameters = [param for param in model.parameters() if param.grad is not None]
    return batch, parameters, flat_gradient(parameters)


def gradients(trainer, stream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The stream batch's gradient before and after adjust_gradients, and the reference one."""
    method, model = trainer.method, trainer.model
    batch, parameters, before = stream_gradient(trainer, stream)
    memory = trainer.memory.indices  # sample_size 256 > 100 stored: the whole memory
    x = trainer.context.inputs(memory)
    reference = loss_gradient(F.cross_entropy(model(x), trainer.context.labels(memory)), parameters)
    method.adjust_gradients(batch)
    return before, flat_gradient(parameters), reference


def test_default_memory_is_reservoir():
    assert compose_config(["mode=agem"]).mem_manage.name == "reservoir"


def test_a_conflicting_gradient_is_projected_to_a_non_negative_dot_product(tmp_path):
    trainer = trainer_in_task_1(tmp_path)
    before, after, reference = gradients(trainer, trainer.split.train_tasks[1][:16])
    assert torch.dot(before, reference) < 0  # new classes' batch against task 0's memory
    scale = before.norm() * reference.norm()
    assert torch.dot(after, reference) >= -1e-6 * scale  # zero up to float rounding
    expected = before - torch.dot(before, reference) / reference.dot(reference) * reference
    assert torch.allclose(after, expected, atol=1e-6)


def test_an_agreeing_gradient_is_left_unchanged(tmp_path):
    trainer = trainer_in_task_1(tmp_path)
    stream = trainer.memory.indices[:16]  # task 0's own samples agree with its memory
    before, after, reference = gradients(trainer, stream)
    assert torch.dot(before, reference) >= 0
    assert torch.equal(after, before)


def test_the_reference_leaves_out_the_current_tasks_samples(tmp_path):
    trainer = trainer_in_task_1(tmp_path)
    task_1 = trainer.split.train_tasks[1]
    trainer.method.observe_stream(task_1[:40])  # the stream so far is in the memory too
    drawn = trainer.method.reference_indices()
    assert len(drawn) > 0 and not torch.isin(drawn, task_1).any()
    assert torch.isin(drawn, trainer.split.train_tasks[0]).all()


def test_steps_train_on_stream_rows_only_and_there_are_no_memory_epochs(tmp_path):
    trainer = build_trainer(tmp_path, PLAIN)
    method, seen, projected = trainer.method, [], []
    update, adjust = method.update, method.adjust_gradients

    def recording_update(batch):
        seen.append((batch.n_stream, len(batch.y), bool(batch.from_memory.any())))
        return update(batch)

    def recording_adjust(batch):
        projected.append(len(method.reference_indices()))
        adjust(batch)

    method.update, method.adjust_gradients = recording_update, recording_adjust
    sizes = []
    for task_id in range(2):
        trainer.task_id = task_id
        task = trainer.split.train_tasks[task_id]
        trainer.train_task(task_id, task)
        sizes.append(math.ceil(len(task) / 16))
    assert method.memory_epochs() == 0 and trainer.steps.global_step == sum(sizes)
    assert all(n_stream == rows and not replayed for n_stream, rows, replayed in seen)
    assert not any(projected[: sizes[0]])  # task 0 has no earlier task to protect
    assert all(projected[sizes[0] :])  # every step of task 1 has a reference


def test_a_resumed_run_draws_the_same_references(tmp_path, monkeypatch):
    overrides = ["mode=agem", "mem_size=60", "progress=false"]
    reference = tmp_path / "reference"
    run_in_process(reference, [*overrides, "checkpoint_every=0"])
    kept = run_keeping_checkpoints(
        tmp_path / "kept", [*overrides, "checkpoint_every=9"], monkeypatch
    )
    inside = [k for k in kept if k["inside"] and k["task"] >= 1]
    after_task = [k for k in kept if not k["inside"] and 0 < k["task"] < 5]
    for n, checkpoint in enumerate([inside[len(inside) // 2], after_task[1]]):
        resume_from(
            checkpoint["path"], tmp_path / f"resumed{n}", [*overrides, "checkpoint_every=9"]
        )
        assert_same_results(tmp_path / f"resumed{n}", reference)


# A-GEM's guarantee is first order for plain SGD on the loss it differentiates; with BatchNorm
# (the evaluated model uses running statistics) and Nesterov momentum, the defaults, it ends
# near finetune in disjoint class-incremental runs (docs/contract_modes.md).
GUARANTEED = ["model.batchnorm=false", "optimizer.momentum=0", "optimizer.nesterov=false"]


@pytest.mark.parametrize("stream", ["online", "offline"])
def test_agem_forgets_less_than_finetune_on_a_disjoint_split(tmp_path, stream):
    settings = [*TINY, "exp=disjoint", f"stream={stream}", "mem_size=500", "lr=0.02", *GUARANTEED]
    finetune = run_in_process(tmp_path / "finetune", ["mode=finetune", *settings])
    agem = run_in_process(tmp_path / "agem", ["mode=agem", *settings])
    assert agem["status"] == "complete" and agem["tasks_done"] == 5
    assert agem["A_last"] > finetune["A_last"] + 8.0  # seed 1: +30 online, +13 offline
