"""mode=gss: experience replay whose default memory is GSS-greedy, scored with the run's own model;
offline, each stream sample is offered once, right after the step that first trained on it."""

from __future__ import annotations

import copy

import numpy as np
import torch

from rainbow_runner.memory.gss import gradient_scores, mean_gradient, per_sample_gradients
from rainbow_runner.runner.options import check_method_and_memory_options
from rainbow_runner.runner.steps import PlannedStep
from tests.conftest import TINY, compose_config
from tests.methods.test_methods_common import build_trainer

OFFLINE = ["mode=gss", "stream=offline", "exp=disjoint", *TINY]


def test_the_default_memory_is_gss_greedy():
    cfg = compose_config(["mode=gss"])
    assert cfg.mem_manage.name == "gss" and set(cfg.mode) == {"name"}
    check_method_and_memory_options(cfg)


def offer_two_batches(trainer) -> tuple[torch.Tensor, torch.Tensor, np.random.Generator]:
    """Offer the first task's samples 0-15, then 16-31; the two batches and a generator in the
    state the memory drew from while scoring the second (to replay its draw)."""
    trainer.begin_task()
    method, memory, task = trainer.method, trainer.memory, trainer.split.train_tasks[0]
    first, second = task[:16], task[16:32]
    method.offer(first)
    rng = np.random.default_rng()
    rng.bit_generator.state = copy.deepcopy(memory.rng.bit_generator.state)
    method.offer(second)
    return first, second, rng


def test_the_memory_scores_incoming_samples_with_the_runs_model(tmp_path):
    trainer = build_trainer(tmp_path, OFFLINE)
    memory, task = trainer.memory, trainer.split.train_tasks[0]
    assert memory.context_provider().model is trainer.model
    first, second, rng = offer_two_batches(trainer)
    # the same scores from the model's own per-sample gradients and the same memory draw
    compared = first[torch.from_numpy(rng.choice(16, memory.n_sub, replace=False))]
    context = trainer.context
    incoming = per_sample_gradients(trainer.model, context.inputs(second), context.labels(second))
    subset = per_sample_gradients(trainer.model, context.inputs(compared), context.labels(compared))
    assert torch.allclose(memory.scores[16:], gradient_scores(incoming, subset), atol=1e-5)
    assert torch.equal(memory.indices, task[:32])


def test_with_gss_batch_size_each_memory_gradient_is_a_random_groups_mean(tmp_path):
    trainer = build_trainer(
        tmp_path, [*OFFLINE, "mem_manage.n_sub=3", "mem_manage.gss_batch_size=4"]
    )
    memory = trainer.memory
    first, second, rng = offer_two_batches(trainer)
    groups = first[torch.from_numpy(rng.choice(16, 3 * 4, replace=False))].split(4)
    context = trainer.context
    subset = torch.stack(
        [mean_gradient(trainer.model, context.inputs(g), context.labels(g)) for g in groups]
    )
    incoming = per_sample_gradients(trainer.model, context.inputs(second), context.labels(second))
    assert torch.allclose(memory.scores[16:], gradient_scores(incoming, subset), atol=1e-5)


def test_offline_each_sample_is_offered_once_after_its_first_step(tmp_path):
    trainer = build_trainer(tmp_path, [*OFFLINE, "n_epoch=2"])
    method, memory = trainer.method, trainer.memory
    offered, observe = [], memory.observe

    def recording_observe(indices, labels, n_exposed):
        offered.append(indices.clone())
        observe(indices, labels, n_exposed)

    memory.observe = recording_observe
    steps = []
    update = method.update

    def recording_update(batch):
        steps.append((batch.indices[: batch.n_stream].clone(), len(offered)))
        return update(batch)

    method.update = recording_update
    task = trainer.split.train_tasks[0]
    trainer.train_task(0, task)
    everything = torch.cat(offered)
    assert torch.equal(everything.sort().values, task.sort().values)  # each sample once
    assert all(len(batch) <= 16 for batch in offered)
    first_epoch = len(steps) // 2
    # a step's stream rows are offered right after it: before the next step runs
    for n, (stream, n_offered) in enumerate(steps[:first_epoch]):
        assert n_offered == n and torch.equal(offered[n], stream)
    assert len(offered) == first_epoch  # the second epoch offers nothing new
    assert len(memory) == 100
    later = trainer.steps.batches_ahead([PlannedStep.of(task[:16], method.replay(task[:16]))])
    assert later[0].n_stream == 16 and len(later[0].y) == 32  # ER: mem_batchsize replayed
