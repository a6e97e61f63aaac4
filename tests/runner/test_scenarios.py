"""Task- and domain-incremental scenarios: the multi-head mask, refusals, and runs that learn."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from rainbow_runner.datasets.scenarios import restrict_to_task
from rainbow_runner.datasets.splits import TaskSplit
from rainbow_runner.runner.config_check import ConfigError
from rainbow_runner.runner.evaluation import evaluate_test_set
from rainbow_runner.runner.models.speed import MixedPrecision
from tests.conftest import TINY, run_in_process

TASK_RUN = ["scenario=task_incremental", "exp=disjoint", "stream=online", *TINY]
DOMAIN_RUN = ["dataset=permuted_digits", "n_tasks=3", "dataset.samples_per_task=500", *TINY]


def evaluate(split: TaskSplit, scores: torch.Tensor, labels: torch.Tensor, n_seen: int = 1):
    images = torch.zeros(len(labels), 1, 1, 1, dtype=torch.uint8)
    return evaluate_test_set(
        torch.nn.Identity(),
        lambda _x: scores,
        images,
        labels,
        split=split,
        n_groups=split.n_groups,
        n_exposed=split.n_classes,
        topk=1,
        batchsize=len(labels),
        device=torch.device("cpu"),
        normalize=lambda x: x.float(),
        precision=MixedPrecision("off", torch.device("cpu")),
        n_seen_tasks=n_seen,
    )


def test_task_incremental_never_predicts_a_class_outside_the_task():
    # 6 classes in 3 tasks of 2; every sample's highest score is a class of another task, its
    # own class beats its task's other class.
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    scores = torch.zeros(6, 6)
    scores[torch.arange(6), (labels + 2) % 6] = 9.0  # another task's class wins outright
    scores[torch.arange(6), labels] = 5.0
    split = TaskSplit(torch.arange(6), [], [2, 4, 6], 2)
    assert evaluate(split, scores, labels).accuracy == 0.0  # class_incremental: top-1 overall
    split.scenario = "task_incremental"
    result = evaluate(split, scores, labels)
    assert result.accuracy == 100.0 and result.group_accuracy.tolist() == [100.0] * 3


def test_domain_incremental_groups_by_the_samples_task_and_counts_seen_tasks():
    labels = torch.tensor([0, 1, 0, 1])
    scores = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    split = TaskSplit(torch.arange(2), [], [2, 2], 2, scenario="domain_incremental")
    split.test_tasks = torch.tensor([0, 0, 1, 1])
    assert split.n_groups == 2
    result = evaluate(split, scores, labels, n_seen=1)
    assert result.accuracy == 100.0  # task 1's samples are not yet counted
    assert result.group_accuracy.tolist() == [100.0, 50.0]
    assert evaluate(split, scores, labels, n_seen=2).accuracy == 75.0


def test_the_loss_sees_only_each_rows_task_classes():
    logits = torch.tensor([[0.0, 1.0, 8.0, 9.0], [7.0, 6.0, 0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 3])  # task 0 (classes 0, 1) and task 1 (classes 2, 3)
    masked = restrict_to_task(logits, labels, "task_incremental", 2)
    expected = F.cross_entropy(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    loss = F.cross_entropy(masked, labels)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert logits.grad[0, 2:].abs().sum() == 0 and logits.grad[1, :2].abs().sum() == 0
    assert restrict_to_task(logits, labels, "class_incremental", 2) is logits


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["scenario=task_incremental", "exp=blurry10"], "exp=disjoint"),
        (["dataset=permuted_digits", "scenario=class_incremental"], "domain_incremental"),
        (["scenario=domain_incremental"], "permuted_<name>"),
        (["scenario=joint_incremental"], "valid choices"),
    ],
)
def test_settings_a_scenario_cannot_run_are_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_in_process(tmp_path, ["mode=finetune", *overrides, *TINY])
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("mode", ["finetune", "er", "gem"])
def test_task_incremental_runs_learn(tmp_path, mode):
    summary = run_in_process(tmp_path, [f"mode={mode}", *TASK_RUN])
    tasks = pd.read_csv(tmp_path / "results" / "tasks.csv")
    assert summary["status"] == "complete" and summary["scenario"] == "task_incremental"
    assert tasks.n_seen_classes.tolist() == [2, 4, 6, 8, 10]
    # Two classes per task: chance is 50%; within its task even finetune stays well above.
    assert summary["A_last"] > 75.0 and summary["ACC"] > 75.0


@pytest.mark.parametrize("mode", ["finetune", "er", "gem"])
def test_domain_incremental_runs_learn(tmp_path, mode):
    summary = run_in_process(tmp_path, [f"mode={mode}", *DOMAIN_RUN])
    tasks = pd.read_csv(tmp_path / "results" / "tasks.csv")
    matrix = pd.read_csv(tmp_path / "results" / "acc_matrix.csv")
    assert summary["status"] == "complete" and summary["dataset"] == "permuted_digits"
    assert tasks.n_seen_classes.tolist() == [10, 10, 10]
    assert tasks.n_train_samples.tolist() == [500, 500, 500]
    assert matrix.shape[0] == 3  # one row per task, a column per permutation
    # 10 classes: chance is 10%. Seen on digits (split_seed=1): ACC finetune 40, er 73, gem 50;
    # finetune forgets the earlier permutations (BWT -69), replay keeps them.
    assert summary["ACC"] > {"finetune": 30.0, "er": 60.0, "gem": 40.0}[mode]
    assert matrix.iloc[-1, -1] > 50.0  # the last permutation, just learnt
    assert {"BWT", "FWT"} <= set(summary)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["n_tasks=5"], "holds 2 tasks but n_tasks=5; set n_tasks=2"),
        (["n_tasks=2", "scenario=class_incremental"], "use scenario=domain_incremental"),
        (["n_tasks=2", "dataset.path=null"], "needs dataset.path"),
    ],
)
def test_a_gem_file_that_does_not_fit_the_run_is_refused(tmp_path, overrides, message):
    from rainbow_runner.datasets import load_dataset
    from rainbow_runner.datasets.gem_format import write_gem_file
    from rainbow_runner.datasets.transformed import transformed_stream

    stream, split = transformed_stream(load_dataset("digits", ""), "rotated", 2, 0, 50)
    write_gem_file(stream, split, tmp_path / "s.pt", [0.0, 1.0])
    run = ["mode=finetune", "dataset=gem_file", f"dataset.path={tmp_path / 's.pt'}", *TINY]
    with pytest.raises(ConfigError, match=message):
        run_in_process(tmp_path / "run", [*run, *overrides])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["dataset=permuted_digits", "n_tasks=3"], "set n_tasks=2"),
        (["exp=disjoint"], "needs dataset=permuted_<name>"),
    ],
)
def test_a_tuning_run_that_cannot_be_drawn_is_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_in_process(tmp_path, ["mode=finetune", "tuning_tasks=2", *overrides, *TINY])
