"""GEM: the projected gradient opposes no earlier task's memory gradient, and is the raw one when
none is opposed; one constraint per earlier task, from the memory's task ids."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from rainbow_runner.methods.gradients import flat_gradient, loss_gradient, project_on_cone
from rainbow_runner.runner.options import check_method_and_memory_options
from tests.conftest import compose_config
from tests.methods.test_methods_agem import stream_gradient
from tests.methods.test_methods_common import build_trainer

# No random crop or flip: the memory's inputs are then the same in the test and in the method.
PLAIN = ["mode=gem", "exp=disjoint", "n_epoch=1", "mem_size=100", "crop_padding=0", "flip=false"]


def satisfied(memories: torch.Tensor, projected: torch.Tensor, raw: torch.Tensor) -> bool:
    """G_k·g̃ >= 0 for every k, up to the QP's ε·v (about 1e-3 of the violation corrected)."""
    tolerance = 1e-3 * memories.norm(dim=1) * raw.norm()
    return bool((memories @ projected >= -tolerance).all())


def test_default_memory_is_a_ring_buffer_with_a_share_per_task_and_knobs_are_arguments():
    cfg = compose_config(["mode=gem"])
    assert cfg.mem_manage.name == "ring" and cfg.mem_manage.fixed
    assert cfg.mode.patterns_per_experience == 256 and cfg.mode.memory_strength == 0.5
    check_method_and_memory_options(cfg)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_the_qp_projection_satisfies_every_constraint(margin):
    torch.manual_seed(0)
    memories = torch.randn(6, 40) + 1.0  # a common direction: the cone is not a line
    for _ in range(20):
        gradient = torch.randn(40) * 3
        projected = project_on_cone(gradient, memories, margin)
        assert satisfied(memories, projected, gradient)
        assert torch.equal(projected, gradient) == bool((memories @ gradient >= 0).all())
    opposed = -memories[0] - memories[3]
    assert (memories @ opposed < 0).sum() >= 2  # violates at least those two constraints
    assert satisfied(memories, project_on_cone(opposed, memories, margin), opposed)


def test_without_margin_the_projection_is_the_closest_satisfying_gradient():
    """One constraint: GEM's QP is then A-GEM's closed form g − (g·G/G·G) G (up to eps)."""
    torch.manual_seed(1)
    memory, gradient = torch.randn(30), torch.randn(30)
    gradient = gradient - (gradient @ memory + 2.0) / (memory @ memory) * memory  # g·G = -2
    projected = project_on_cone(gradient, memory[None], margin=0.0, eps=1e-9)
    expected = gradient - (gradient @ memory) / (memory @ memory) * memory
    assert torch.allclose(projected, expected, atol=1e-5)


def test_an_unopposed_gradient_is_returned_as_it_is():
    torch.manual_seed(2)
    memories = torch.randn(4, 25)
    gradient = memories.sum(0) + 0.01 * torch.randn(25)
    assert (memories @ gradient >= 0).all()
    assert project_on_cone(gradient, memories, 0.5) is gradient
    assert project_on_cone(gradient, memories[:0], 0.5) is gradient  # no earlier task yet


def trainer_in_task_2(tmp_path):
    """Task 2 begun (head of 6 classes), 20 stored samples of each of tasks 0 and 1 (the
    ring's fixed share), and 5 of task 2 (online, the stream so far is stored too)."""
    trainer = build_trainer(tmp_path, PLAIN)
    trainer.task_id = trainer.context.task_id = 2
    trainer.n_exposed = trainer.context.n_exposed = trainer.split.exposed[2]
    for task, n in ((0, 20), (1, 20), (2, 5)):
        stored = trainer.split.train_tasks[task][-n:]
        trainer.memory.add(stored, trainer.train_labels_cpu[stored], 6, task_ids=task)
    trainer.begin_task()
    return trainer


def test_a_step_is_projected_against_each_earlier_tasks_memory(tmp_path):
    trainer = trainer_in_task_2(tmp_path)
    method, model, context = trainer.method, trainer.model, trainer.context
    groups = method.task_groups()  # 256 > 20 stored per task: each task's whole share
    assert len(groups) == 2
    for task, group in enumerate(groups):
        assert torch.isin(group, trainer.split.train_tasks[task]).all() and len(group) == 20
    batch, parameters, before = stream_gradient(trainer, trainer.split.train_tasks[2][:16])
    memories = torch.stack(
        [
            loss_gradient(F.cross_entropy(model(context.inputs(g)), context.labels(g)), parameters)
            for g in groups
        ]
    )
    assert (memories @ before < 0).any()  # the new classes' batch opposes the old tasks
    method.adjust_gradients(batch)
    after = flat_gradient(parameters)
    assert satisfied(memories, after, before) and not torch.equal(after, before)


def test_a_memory_without_task_ids_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="mem_manage=reservoir"):
        build_trainer(tmp_path, [*PLAIN, "mem_manage=reservoir"])
