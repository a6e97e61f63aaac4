"""The Python API (RehearsalMemory) without trainer or Hydra, and saving memories without pickle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rainbow_runner.memory import MEMORIES, RehearsalMemory


def task_data(task: int, n: int = 60, seed: int = 0):
    generator = torch.Generator().manual_seed(seed + task)
    labels = 2 * task + torch.arange(n) % 2
    x = torch.randn(n, 3, 4, 4, generator=generator) + labels[:, None, None, None]
    return x, labels


def test_build_add_get_sample_as_continuum_is_used():
    memory = RehearsalMemory(20, select="herding", groupby="class", fill=False)
    for task in range(3):
        x, y = task_data(task)
        memory.add(x, y, task, features=x.flatten(1)[:, :8])
    x, y, t = memory.get()
    assert len(memory) == len(x) == 18  # 20 // 6 classes seen = 3 each
    assert torch.bincount(y).tolist() == [3] * 6
    assert torch.equal(t, y // 2)  # each sample keeps the task it came with
    for label in range(6):  # every stored input is one that was offered with that label
        offered, _ = task_data(label // 2)
        rows = x[y == label]
        assert all((offered == row).all((1, 2, 3)).any() for row in rows)
    bx, by, bt = memory.sample(5)
    assert bx.shape == (5, 3, 4, 4) and len(set(by.tolist())) >= 1 and len(bt) == 5


def test_herding_through_the_api_equals_the_strategy_on_the_same_features():
    x, y = task_data(0, n=100)
    features = torch.randn(100, 6)
    memory = RehearsalMemory(10, select="herding", fill=False)
    memory.add(x, y, 0, features=features)
    from rainbow_runner.memory.herding import herding_selection

    expected = herding_selection(features, y, 5)
    assert torch.equal(memory.get()[0], x[expected])


def test_features_from_a_model_at_a_named_layer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 5), torch.nn.ReLU())
    model.features = lambda inputs: model(inputs)
    x, y = task_data(0)
    by_layer = RehearsalMemory(8, select="closest_to_center", model=model, layer="1")
    by_layer.add(x, y, 0)
    by_hand = RehearsalMemory(8, select="closest_to_center")
    by_hand.add(x, y, 0, features=model[1](model[0](x)))
    assert torch.equal(by_layer.get()[0], by_hand.get()[0])


def test_without_features_a_feature_strategy_ranks_the_inputs():
    x, y = task_data(0)
    on_inputs = RehearsalMemory(6, select="closest_to_center")
    on_inputs.add(x, y, 0)
    given = RehearsalMemory(6, select="closest_to_center")
    given.add(x, y, 0, features=x.flatten(1))
    assert torch.equal(on_inputs.get()[0], given.get()[0])


@pytest.mark.parametrize("select", ["random", "herding", "fifo"])
def test_the_npz_round_trip_is_exact_and_loads_without_pickle(tmp_path, select):
    memory = RehearsalMemory(16, select=select, groupby="experience", seed=3)
    for task in range(2):
        x, y = task_data(task)
        memory.add(x, y, task, features=x.mean((1, 2, 3))[:, None].repeat(1, 3))
    path = tmp_path / "memory.npz"
    memory.save(path)
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert {"indices", "labels", "payload_x", "payload_task_id", "rng"} <= set(archive.files)
    restored = RehearsalMemory.from_file(path)
    for got, want in zip(restored.get(), memory.get(), strict=True):
        assert torch.equal(got, want)
    assert torch.equal(restored.manager.payloads["features"], memory.manager.payloads["features"])
    for one in (memory, restored):  # the same generator state and counters: the same future
        x, y = task_data(2)
        one.add(x, y, 2, features=x.mean((1, 2, 3))[:, None].repeat(1, 3))
    for got, want in zip(restored.get(), memory.get(), strict=True):
        assert torch.equal(got, want)
    assert torch.equal(restored.sample(4)[0], memory.sample(4)[0])


def test_a_user_strategy_callable_is_saved_by_import_path(tmp_path):
    from tests.memory import user_functions

    memory = RehearsalMemory(4, select=user_functions.pick_first)
    memory.add(*task_data(0))
    memory.save(tmp_path / "m.npz")
    restored = RehearsalMemory.from_file(tmp_path / "m.npz")
    assert restored.settings["select"] == "tests.memory.user_functions:pick_first"
    assert torch.equal(restored.get()[0], memory.get()[0])


@pytest.mark.parametrize("name", ["class_balanced", "experience_balanced", "ring", "random"])
def test_a_runner_memory_state_round_trip_is_exact_with_task_ids(tmp_path, name):
    memory = MEMORIES.get(name)(capacity=25, seed=2)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (300,), generator=generator)
    for start in range(0, 200, 10):
        memory.add(
            torch.arange(start, start + 10), labels[start : start + 10], 5, task_ids=start // 70
        )
    memory.save(tmp_path / "memory.npz")
    restored = MEMORIES.get(name)(capacity=25, seed=99)
    restored.load(tmp_path / "memory.npz")
    assert torch.equal(restored.indices, memory.indices)
    assert torch.equal(restored.stored_task_ids(), memory.stored_task_ids())
    assert restored.task_id == memory.task_id
    for one in (memory, restored):
        for start in range(200, 300, 10):
            one.add(torch.arange(start, start + 10), labels[start : start + 10], 5, task_ids=3)
    assert torch.equal(restored.indices, memory.indices)
    assert torch.equal(restored.stored_task_ids(), memory.stored_task_ids())
