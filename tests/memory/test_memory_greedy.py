"""mem_manage=gdumb: GDumb's greedy class-balanced sampler."""

from __future__ import annotations

import numpy as np
import torch

from rainbow_runner.memory.greedy_balanced import GreedyBalancedMemory


def skewed_stream(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.zeros(900), np.repeat(np.arange(1, 5), 40), [5] * 8])
    labels = rng.permutation(labels).astype(np.int64)
    return torch.arange(len(labels)) + 1000, torch.from_numpy(labels)


def test_stays_class_balanced_under_a_skewed_stream():
    indices, labels = skewed_stream()
    memory = GreedyBalancedMemory(capacity=120, seed=0)
    for start in range(0, len(indices), 16):
        memory.observe(indices[start : start + 16], labels[start : start + 16], n_exposed=6)
    counts = memory.class_counts(6).tolist()
    assert len(memory) == 120
    assert counts[5] == 8  # a class with fewer samples than its share keeps them all
    assert counts[1:5] == [20, 20, 20, 20]  # 120 // 6 classes
    assert counts[0] == 120 - 88  # the dominant class keeps only the leftover room
    assert torch.equal(memory.labels, labels[memory.indices - 1000])  # labels stay paired


def test_fills_greedily_while_there_is_room():
    memory = GreedyBalancedMemory(capacity=10, seed=0)
    memory.observe(torch.arange(6), torch.zeros(6, dtype=torch.long), n_exposed=1)
    assert memory.indices.tolist() == list(range(6))


def test_batch_size_does_not_change_the_class_counts():
    indices, labels = skewed_stream(1)
    one = GreedyBalancedMemory(capacity=60, seed=0)
    one.observe(indices, labels, n_exposed=6)
    many = GreedyBalancedMemory(capacity=60, seed=0)
    for start in range(0, len(indices), 7):
        many.observe(indices[start : start + 7], labels[start : start + 7], n_exposed=6)
    assert one.class_counts(6).tolist() == many.class_counts(6).tolist()


def test_state_round_trip_keeps_the_classes_seen(tmp_path):
    indices, labels = skewed_stream(2)
    memory = GreedyBalancedMemory(capacity=30, seed=0)
    memory.observe(indices[:500], labels[:500], n_exposed=6)
    memory.save(tmp_path / "memory.npz")
    restored = GreedyBalancedMemory(capacity=30, seed=0)
    restored.load(tmp_path / "memory.npz")
    memory.observe(indices[500:], labels[500:], n_exposed=6)
    restored.observe(indices[500:], labels[500:], n_exposed=6)
    assert torch.equal(memory.indices, restored.indices)


def test_skipping_batches_that_would_all_be_dropped_changes_nothing(monkeypatch):
    indices, labels = skewed_stream(seed=3)
    fast, slow = GreedyBalancedMemory(capacity=60, seed=1), GreedyBalancedMemory(60, seed=1)
    skipped = 0
    for start in range(0, len(indices), 8):
        batch = indices[start : start + 8], labels[start : start + 8]
        skipped += fast._drops_all(batch[1])
        fast.observe(*batch, n_exposed=6)
        with monkeypatch.context() as patch:
            patch.setattr(slow, "_drops_all", lambda labels: False)
            slow.observe(*batch, n_exposed=6)
        assert torch.equal(fast.indices, slow.indices)
    assert skipped > 20  # the skewed stream's class 0 is at its quota for most of the stream
    assert fast.rng.random() == slow.rng.random()  # no draw was skipped or added
