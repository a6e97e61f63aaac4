"""GEM-format files: our writer's files read back as the same stream; anything else refused."""

from __future__ import annotations

import runpy

import pytest
import torch

from rainbow_runner.datasets import load_dataset
from rainbow_runner.datasets.base import DatasetError
from rainbow_runner.datasets.gem_format import read_gem_file, write_gem_file
from rainbow_runner.datasets.transformed import task_permutations, transformed_stream
from tests.conftest import REPO


class Payload:
    """Not a tensor: weights_only loading must never build it."""

    built = False

    def __reduce__(self):
        return (Payload.mark, ())

    @staticmethod
    def mark():
        Payload.built = True


@pytest.mark.parametrize("kind", ["permuted", "rotated"])
def test_the_reader_round_trips_the_script(tmp_path, kind):
    path = tmp_path / "stream.pt"
    script = runpy.run_path(str(REPO / "scripts" / "write_gem_format.py"))
    script["write"](f"{kind}_digits", str(path), 3, 5, script["samples"]("120"))
    ours, our_split = transformed_stream(load_dataset("digits", ""), kind, 3, 5, 120)
    data, split = read_gem_file(path)
    assert torch.equal(data.train_x, ours.train_x) and torch.equal(data.test_x, ours.test_x)
    assert torch.equal(data.train_y, ours.train_y) and torch.equal(data.test_y, ours.test_y)
    assert (data.mean, data.std) == (ours.mean, ours.std)
    assert split.scenario == our_split.scenario == "domain_incremental"
    assert all(
        torch.equal(a, b) for a, b in zip(split.train_tasks, our_split.train_tasks, strict=True)
    )
    assert torch.equal(split.test_tasks, our_split.test_tasks)
    train_tasks, _ = torch.load(path, weights_only=True)
    if kind == "permuted":  # GEM's descriptor: the task's permutation
        assert torch.equal(train_tasks[1][0], task_permutations(64, 3, 5)[1])
    assert train_tasks[0][1].dtype == torch.float32 and train_tasks[0][1].shape == (120, 64)


def test_a_class_split_file_reads_as_its_classes_in_file_order(tmp_path):
    data = load_dataset("digits", "")
    x = data.train_x.reshape(len(data.train_y), -1).float() / 255
    tasks = [
        [t, x[torch.isin(data.train_y, c)], data.train_y[torch.isin(data.train_y, c)]]
        for t, c in enumerate([torch.tensor([7, 2]), torch.tensor([0, 1, 3, 4, 5, 6, 8, 9])])
    ]
    torch.save([tasks, tasks], tmp_path / "uneven.pt")
    with pytest.raises(DatasetError, match="disjoint label sets of equal size"):
        read_gem_file(tmp_path / "uneven.pt")
    groups = [
        torch.tensor([7, 2]),
        torch.tensor([0, 1]),
        torch.tensor([3, 4]),
        torch.tensor([5, 6]),
        torch.tensor([8, 9]),
    ]
    tasks = [
        [t, x[torch.isin(data.train_y, c)], data.train_y[torch.isin(data.train_y, c)]]
        for t, c in enumerate(groups)
    ]
    torch.save([tasks, tasks], tmp_path / "split.pt")
    _, split = read_gem_file(tmp_path / "split.pt")
    assert split.class_order.tolist() == [2, 7, 0, 1, 3, 4, 5, 6, 8, 9]
    assert split.exposed == [2, 4, 6, 8, 10] and split.scenario == "task_incremental"


def test_a_pickle_holding_an_arbitrary_object_is_refused_unrun(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save([[["d", Payload(), torch.zeros(1)]], []], path)
    with pytest.raises(DatasetError, match="weights_only=True"):
        read_gem_file(path)
    assert not Payload.built


@pytest.mark.parametrize(
    "content,message",
    [
        ({"train": 1}, r"\[train_tasks, test_tasks\]"),
        ([[["d", torch.full((2, 64), 2.0), torch.zeros(2, dtype=torch.long)]]] * 2, "train task 0"),
        ([[["d", torch.zeros(2, 64), torch.zeros(3, dtype=torch.long)]]] * 2, "train task 0"),
    ],
)
def test_content_of_another_shape_is_refused(tmp_path, content, message):
    torch.save(content, tmp_path / "bad.pt")
    with pytest.raises(DatasetError, match=message):
        read_gem_file(tmp_path / "bad.pt")
    with pytest.raises(DatasetError, match="no such file"):
        read_gem_file(tmp_path / "missing.pt")


def test_write_gem_file_keeps_each_tasks_test_rows(tmp_path):
    stream, split = transformed_stream(load_dataset("digits", ""), "permuted", 2, 0, 50)
    write_gem_file(stream, split, tmp_path / "s.pt", ["a", "b"])
    train_tasks, test_tasks = torch.load(tmp_path / "s.pt", weights_only=True)
    assert [t[0] for t in test_tasks] == ["a", "b"]
    assert [len(t[2]) for t in test_tasks] == [len(stream.test_y) // 2] * 2
