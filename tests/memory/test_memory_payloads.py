"""Per-sample payloads stay with their samples through every manager's replacements."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rainbow_runner.memory import MEMORIES, SelectionContext

STREAMING = ["random", "reservoir", "gdumb"]


def feed(memory, n_batches: int, batch: int = 16, width: int = 3, seed: int = 0) -> dict:
    """Stream batches with a payload row per sample that encodes the sample's index."""
    generator = torch.Generator().manual_seed(seed)
    given = {}
    for number in range(n_batches):
        indices = torch.arange(number * batch, (number + 1) * batch)
        labels = torch.randint(0, 5, (batch,), generator=generator)
        rows = indices[:, None].float() + torch.rand(batch, width, generator=generator)
        memory.add(indices, labels, 5, payloads={"logits": rows})
        given.update({int(i): row for i, row in zip(indices, rows, strict=True)})
    return given


@pytest.mark.parametrize("name", STREAMING)
def test_every_stored_sample_keeps_the_row_it_was_inserted_with(name):
    memory = MEMORIES.get(name)(capacity=40, seed=3)
    given = feed(memory, n_batches=20)
    assert len(memory) == 40 and len(memory.payloads["logits"]) == 40
    for index, row in zip(memory.indices.tolist(), memory.payloads["logits"], strict=True):
        assert torch.equal(row, given[index])
    rows, found = memory.payload("logits", memory.indices.flip(0))
    assert found.all() and torch.equal(rows, memory.payloads["logits"].flip(0))


def test_an_evicted_sample_has_no_row_and_a_later_replacement_leaves_the_others_alone():
    memory = MEMORIES.get("reservoir")(capacity=10, seed=0)
    given = feed(memory, n_batches=1, batch=10)
    before = dict(zip(memory.indices.tolist(), memory.payloads["logits"], strict=True))
    feed(memory, n_batches=6, batch=10, seed=1)  # later batches replace some slots
    gone = sorted(set(before) - set(memory.indices.tolist()))
    assert gone  # something was replaced
    rows, found = memory.payload("logits", torch.tensor(gone))
    assert not found.any() and rows.isnan().all()
    for index in set(before) & set(memory.indices.tolist()):  # still stored: bit-identical
        rows, _ = memory.payload("logits", torch.tensor([index]))
        assert torch.equal(rows[0], before[index]) and torch.equal(rows[0], given[index])


def test_samples_added_without_a_value_get_blank_rows_and_wider_rows_pad_older_ones():
    memory = MEMORIES.get("reservoir")(capacity=100, seed=0)
    memory.add(torch.arange(4), torch.zeros(4, dtype=torch.long), 2, {"logits": torch.ones(4, 2)})
    memory.add(torch.arange(4, 6), torch.zeros(2, dtype=torch.long), 4)  # no payload given
    memory.add(
        torch.arange(6, 8), torch.zeros(2, dtype=torch.long), 4, {"logits": torch.ones(2, 4)}
    )
    stored = memory.payloads["logits"]
    assert stored.shape == (8, 4)
    assert torch.equal(stored[:4, :2], torch.ones(4, 2)) and stored[:4, 2:].isnan().all()
    assert stored[4:6].isnan().all() and torch.equal(stored[6:], torch.ones(2, 4))


def fixed_context() -> SelectionContext:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5))
    model.features = lambda x: x.flatten(1)  # herding reads the model's features
    images = torch.randint(0, 255, (200, 1, 2, 2), dtype=torch.uint8)
    return SelectionContext(
        model=model,
        fetch_images=lambda indices: images[indices],
        normalize=lambda x: x.float() / 255,
        n_exposed=5,
        task_id=1,
        device=torch.device("cpu"),
    )


@pytest.mark.parametrize("name", ["uncertainty", "prototype"])
def test_a_per_task_selection_keeps_the_rows_of_the_samples_it_keeps(name):
    memory = MEMORIES.get(name)(capacity=20, seed=0)
    memory.indices, memory.labels = torch.arange(20), torch.arange(20) % 5
    memory.payloads["task"] = torch.arange(20)[:, None] * 10  # an integer payload
    task = torch.arange(100, 160)
    memory.end_task(task, task % 5, fixed_context(), streamed=False)
    kept_old = memory.indices < 100
    assert torch.equal(memory.payloads["task"][kept_old, 0], memory.indices[kept_old] * 10)
    assert (memory.payloads["task"][~kept_old] == -1).all()  # new samples: no value given


def test_payloads_survive_the_checkpoint_and_the_npz_file_without_pickle(tmp_path):
    memory = MEMORIES.get("reservoir")(capacity=30, seed=1)
    feed(memory, n_batches=6)
    path = tmp_path / "memory.npz"
    memory.save(path)
    with np.load(path, allow_pickle=False) as archive:
        assert "payload_logits" in archive.files
    copy = MEMORIES.get("reservoir")(capacity=30, seed=1)
    copy.load(path)
    assert torch.equal(copy.indices, memory.indices)
    assert torch.equal(copy.payloads["logits"], memory.payloads["logits"])
    feed(memory, n_batches=2, seed=9)  # the same generator state: the same future
    feed(copy, n_batches=2, seed=9)
    assert torch.equal(copy.indices, memory.indices)
    assert torch.equal(copy.payloads["logits"], memory.payloads["logits"])
