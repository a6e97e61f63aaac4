"""Payload alignment from an empty memory, as DER uses it: rows stay with their samples."""

import math

import pytest
import torch

from rainbow_runner.memory import MEMORIES


def rows_for(indices: torch.Tensor, width: int) -> torch.Tensor:
    """A payload row that names its sample: index * 10 + column."""
    return indices[:, None].float() * 10 + torch.arange(width).float()


@pytest.mark.parametrize("name", ["reservoir", "random"])
def test_payloads_follow_their_samples_from_an_empty_memory_on(name):
    memory = MEMORIES.get(name)(capacity=20, seed=3)
    for start in range(0, 200, 16):
        incoming = torch.arange(start, min(start + 16, 200))
        width = 2 if start < 96 else 4  # the head grows after 6 batches
        memory.add(incoming, incoming % 4, width, payloads={"logits": rows_for(incoming, width)})
    rows, found = memory.payload("logits", memory.indices)
    assert found.all() and rows.shape == (20, 4)
    early = memory.indices < 96  # stored with 2 columns: the other two are blank
    assert torch.equal(rows[:, :2], rows_for(memory.indices, 2))
    assert rows[early, 2:].isnan().all() and torch.equal(
        rows[~early], rows_for(memory.indices[~early], 4)
    )
    gone = torch.tensor([i for i in range(200) if i not in set(memory.indices.tolist())])
    rows, found = memory.payload("logits", gone)
    assert not found.any() and rows.isnan().all()


def test_an_empty_memory_answers_blank_rows():
    memory = MEMORIES.get("reservoir")(capacity=0, seed=1)
    memory.add(torch.arange(4), torch.zeros(4, dtype=torch.long), 2, {"t": torch.ones(4)})
    rows, found = memory.payload("t", torch.arange(2))
    assert len(memory) == 0 and not found.any() and all(math.isnan(v) for v in rows.tolist())
