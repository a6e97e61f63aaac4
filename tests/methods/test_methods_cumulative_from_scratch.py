"""cumulative retrains on all the data seen so far; from_scratch starts every task afresh."""

from __future__ import annotations

import torch

from tests.methods.test_methods_common import build_trainer


def test_cumulative_offline_pool_grows_by_each_task(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=cumulative", "stream=offline", "exp=disjoint"])
    method, tasks = trainer.method, trainer.split.train_tasks
    sizes = []
    for task_id, task in enumerate(tasks):
        trainer.context.task_id = task_id
        pool, n_stream = method.offline_pool(task)
        assert n_stream == len(task) and torch.equal(pool[:n_stream], task)
        assert set(pool.tolist()) == set(torch.cat(tasks[: task_id + 1]).tolist())
        sizes.append(len(pool))
    assert sizes == torch.cumsum(torch.tensor([len(task) for task in tasks]), 0).tolist()
    assert len(trainer.memory) == 0


def test_cumulative_online_replays_the_earlier_tasks_only(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=cumulative", "stream=online", "exp=disjoint"])
    method, tasks = trainer.method, trainer.split.train_tasks
    assert len(method.replay(tasks[0][:16])) == 0  # nothing before the first task
    trainer.context.task_id = 2
    drawn = torch.cat([method.replay(tasks[2][:16]) for _ in range(20)])
    assert len(drawn) == 20 * trainer.context.settings.mem_batchsize
    earlier = set(torch.cat(tasks[:2]).tolist())
    assert set(drawn.tolist()) <= earlier
    labels = set(trainer.steps.train_labels[drawn].tolist())
    assert labels == {0, 1, 2, 3}  # both earlier tasks' classes, none of task 2's


def test_from_scratch_reinitialises_every_weight_before_a_new_task(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=from_scratch", "exp=disjoint", "n_epoch=1"])
    trainer.train_task(0, trainer.split.train_tasks[0])
    trained = {name: param.detach().clone() for name, param in trainer.model.named_parameters()}
    trainer.task_id = trainer.context.task_id = 1
    trainer.n_exposed = trainer.context.n_exposed = trainer.split.exposed[1]
    trainer.begin_task()
    for name, param in trainer.model.named_parameters():
        old, new = trained[name], param.detach()[: len(trained[name])]  # old head rows too
        assert (new != old).float().mean() > 0.99, name
        if new.dim() > 1:  # a weight matrix is a new draw, not a nudge (BatchNorm's go to 1)
            assert (new - old).abs().mean() > 0.5 * old.abs().mean(), name
    assert len(trainer.memory) == 0
