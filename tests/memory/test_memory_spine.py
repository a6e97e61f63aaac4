"""Memory invariants: capacity, reservoir uniformity, class balance, npz round trip."""

import copy

import numpy as np
import pytest
import torch

from rainbow_runner.memory import MEMORIES, SelectionContext, balanced_quota
from rainbow_runner.memory.selection import random_subset


def stream(n: int, n_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.arange(n), torch.randint(0, n_classes, (n,), generator=generator)


@pytest.mark.parametrize("name", ["random", "reservoir"])
@pytest.mark.parametrize("class_balanced", [False, True])
def test_capacity_is_never_exceeded_and_indices_are_unique(name, class_balanced):
    memory = MEMORIES.get(name)(capacity=50, seed=1, class_balanced=class_balanced)
    indices, labels = stream(1000, 5)
    for start in range(0, 1000, 16):
        memory.observe(indices[start : start + 16], labels[start : start + 16], 5)
        assert len(memory) <= 50
    assert len(memory) == 50
    assert len(torch.unique(memory.indices)) == 50
    assert torch.equal(labels[memory.indices], memory.labels)


def test_reservoir_keeps_every_stream_position_with_equal_probability():
    capacity, n, trials = 20, 200, 600
    hits = np.zeros(n)
    indices, labels = stream(n, 4)
    for trial in range(trials):
        memory = MEMORIES.get("reservoir")(capacity=capacity, seed=trial)
        for start in range(0, n, 10):
            memory.observe(indices[start : start + 10], labels[start : start + 10], 4)
        hits[memory.indices.numpy()] += 1
    inclusion = hits / trials
    # Each position is kept with probability capacity / n = 0.1; compare early and late halves.
    assert inclusion.mean() == pytest.approx(0.1, abs=1e-9)
    assert inclusion[: n // 2].mean() == pytest.approx(0.1, abs=0.015)
    assert inclusion[n // 2 :].mean() == pytest.approx(0.1, abs=0.015)


def test_reservoir_batch_update_equals_one_sample_at_a_time():
    """Replacements land as sequential reservoir sampling would place them (later wins)."""
    capacity = 8
    memory = MEMORIES.get("reservoir")(capacity=capacity, seed=3)
    indices, labels = stream(400, 5)
    expected_indices = None
    for start in range(0, 400, 64):  # big batches: slots drawn twice in one call
        batch, batch_labels = indices[start : start + 64], labels[start : start + 64]
        if len(memory) == capacity:
            rng = copy.deepcopy(memory.rng)
            expected_indices = memory.indices.clone()
            counters = memory.n_seen + np.arange(1, len(batch) + 1)
            slots = (rng.random(len(batch)) * counters).astype(np.int64)
            for offset, slot in enumerate(slots):
                if slot < capacity:
                    expected_indices[slot] = batch[offset]
        memory.observe(batch, batch_labels, 5)
        if expected_indices is not None:
            assert torch.equal(memory.indices, expected_indices)
            assert torch.equal(memory.labels, labels[memory.indices])
    assert expected_indices is not None


def test_reservoir_counter_carries_over_tasks():
    memory = MEMORIES.get("reservoir")(capacity=10, seed=0)
    indices, labels = stream(100, 2)
    memory.observe(indices[:50], labels[:50], 2)
    memory.observe(indices[50:], labels[50:], 2)
    assert memory.n_seen == 100


def test_class_balanced_reservoir_equalises_a_skewed_stream():
    memory = MEMORIES.get("reservoir")(capacity=40, seed=0, class_balanced=True)
    labels = torch.cat([torch.zeros(400, dtype=torch.long), torch.arange(4).repeat_interleave(30)])
    indices = torch.arange(len(labels))
    for start in range(0, len(labels), 16):
        memory.observe(indices[start : start + 16], labels[start : start + 16], 4)
    counts = memory.class_counts(4).tolist()
    assert sum(counts) == 40
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize(
    ("counts", "capacity", "expected"),
    [
        ([10, 10, 10], 30, [10, 10, 10]),
        ([10, 10, 10], 12, [4, 4, 4]),
        ([2, 50, 50], 20, [2, 9, 9]),
        ([2, 50, 49], 21, [2, 10, 9]),
        ([0, 5, 100], 10, [0, 5, 5]),
    ],
)
def test_balanced_quota_water_fills(counts, capacity, expected):
    quota = balanced_quota(np.array(counts), capacity)
    assert quota.tolist() == expected
    assert quota.sum() == min(capacity, sum(counts))


def test_class_balanced_random_subset_respects_quota():
    labels = torch.tensor([0] * 100 + [1] * 10 + [2] * 40)
    keep = random_subset(labels, 60, np.random.default_rng(0), class_balanced=True)
    assert torch.bincount(labels[keep]).tolist() == [25, 10, 25]
    assert len(torch.unique(keep)) == 60


def test_random_memory_end_task_offline_keeps_capacity(tmp_path):
    memory = MEMORIES.get("random")(capacity=30, seed=3)
    indices, labels = stream(100, 3)
    context = SelectionContext(
        model=torch.nn.Identity(),
        fetch_images=lambda i: i,
        normalize=lambda x: x,
        n_exposed=3,
        task_id=0,
        device=torch.device("cpu"),
    )
    memory.end_task(indices, labels, context=context, streamed=False)
    assert len(memory) == 30
    memory.end_task(indices, labels, context=context, streamed=True)
    assert len(memory) == 30  # a streamed task was already observed: nothing is added twice


@pytest.mark.parametrize("name", ["random", "reservoir"])
def test_npz_round_trip_restores_contents_and_random_state(tmp_path, name):
    memory = MEMORIES.get(name)(capacity=20, seed=5, class_balanced=(name == "reservoir"))
    indices, labels = stream(100, 4)
    memory.observe(indices[:60], labels[:60], 4)
    path = tmp_path / "memory.npz"
    memory.save(path)
    restored = MEMORIES.get(name)(capacity=20, seed=99, class_balanced=(name == "reservoir"))
    restored.load(path)
    assert torch.equal(restored.indices, memory.indices)
    memory.observe(indices[60:], labels[60:], 4)
    restored.observe(indices[60:], labels[60:], 4)
    assert torch.equal(restored.indices, memory.indices)
    assert np.load(path, allow_pickle=False)["indices"].dtype == np.int64


def test_negative_capacity_is_refused():
    with pytest.raises(ValueError, match="mem_size=-1"):
        MEMORIES.get("random")(capacity=-1, seed=0)
