"""mode=pnn: a column per task, old columns frozen, task_incremental only."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from rainbow_runner.runner.config_check import ConfigError
from tests.conftest import TINY, run_in_process
from tests.methods.test_methods_common import trainer_at_second_task

PNN = ["mode=pnn", "exp=disjoint", "n_epoch=1"]


def test_old_columns_receive_no_gradient_and_stay_as_they_were(tmp_path):
    trainer = trainer_at_second_task(tmp_path, PNN)
    columns = trainer.method.columns.columns
    assert len(columns) == 2
    old = {name: p.detach().clone() for name, p in columns[0].named_parameters()}
    new = {name: p.detach().clone() for name, p in columns[1].named_parameters()}
    assert not any(p.requires_grad for p in columns[0].parameters())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in columns[1].parameters()}

    indices = trainer.split.train_tasks[1][:16]
    x = trainer.context.inputs(indices)
    loss = torch.nn.functional.cross_entropy(
        trainer.method.columns(x)[:, 2:4], trainer.context.labels(indices) - 2
    )
    loss.backward()
    assert all(p.grad is None for p in columns[0].parameters())
    laterals = columns[1].laterals
    assert all(adapter.weight.grad.abs().sum() > 0 for row in laterals for adapter in row)

    trainer.train_task(1, trainer.split.train_tasks[1])
    for name, parameter in columns[0].named_parameters():
        assert torch.equal(parameter, old[name]), name
    assert any(not torch.equal(p, new[n]) for n, p in columns[1].named_parameters())


@pytest.mark.parametrize("overrides", [["exp=disjoint"], ["dataset=permuted_digits", "n_tasks=2"]])
def test_pnn_refuses_every_scenario_but_task_incremental(tmp_path, overrides):
    with pytest.raises(ConfigError, match="mode=pnn cannot run in scenario=.*task_incremental"):
        run_in_process(tmp_path, ["mode=pnn", *overrides, *TINY])


def test_pnn_learns_every_task_and_forgets_nothing(tmp_path):
    summary = run_in_process(
        tmp_path, ["mode=pnn", "scenario=task_incremental", "exp=disjoint", *TINY]
    )
    matrix = pd.read_csv(tmp_path / "results" / "acc_matrix.csv").iloc[:, 1:].to_numpy()
    assert summary["status"] == "complete" and summary["A_last"] > 80.0
    # A task's accuracy is fixed once learnt: its column and the earlier ones are frozen, and
    # later columns' heads are other tasks' classes, masked at test.
    for task in range(5):
        assert (matrix[task:, task] == matrix[task, task]).all()
    assert summary["BWT"] == 0.0 and summary["F_last"] == 0.0
