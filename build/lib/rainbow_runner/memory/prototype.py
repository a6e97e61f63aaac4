"""mem_manage=prototype: iCaRL herding on L2-normalised features, an equal quota per class."""

from __future__ import annotations

import torch

from rainbow_runner.memory.base import MEMORIES, Memory, SelectionContext, extract_features
from rainbow_runner.memory.selection import herding_selection


@MEMORIES.register("prototype")
class PrototypeMemory(Memory):
    """Per task, herd capacity // n_exposed exemplars per class from memory ∪ task samples."""

    def select(
        self, indices: torch.Tensor, labels: torch.Tensor, context: SelectionContext
    ) -> torch.Tensor:
        n_per_class = self.capacity // max(context.n_exposed, 1)
        features = extract_features(indices, context)
        positions = herding_selection(features, labels.to(features.device), n_per_class)
        return positions.cpu()
