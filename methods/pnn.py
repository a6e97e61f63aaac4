"""mode=pnn: Progressive Neural Networks (Rusu et al. 2016), task_incremental only.

One MLP column per task, each with its own head over its task's classes. Column k's layer l
takes column k's layer l-1 plus a lateral adapter (a linear map, Avalanche's LinearAdapter)
from every earlier column's layer l-1. A new task adds a column and freezes the earlier ones
(no gradient: their parameters leave the optimizer and stop requiring grad), so old tasks
never forget. predict() returns every column's head side by side: task k's classes get column
k's scores, which the task-incremental evaluation picks by the sample's task. The runner's
model (cfg.model) is not used.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.datasets.scenarios import TASK_INCREMENTAL
from rainbow_runner.methods.base import METHODS, Method, MethodContext, TrainBatch


class Column(nn.Module):
    """One task's MLP: depth hidden layers, laterals from n_before earlier columns, a head."""

    def __init__(self, n_inputs: int, hidden: int, depth: int, n_outputs: int, n_before: int):
        super().__init__()
        sizes = [n_inputs] + [hidden] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))
        self.head = nn.Linear(hidden, n_outputs)
        # laterals[l][j]: column j's layer-l activation into this column's layer l+1 (or head)
        self.laterals = nn.ModuleList(
            nn.ModuleList(nn.Linear(hidden, b, bias=False) for _ in range(n_before))
            for b in [hidden] * (depth - 1) + [n_outputs]
        )

    def forward(
        self, x: torch.Tensor, earlier: list[list[torch.Tensor]]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Head scores and this column's hidden activations, given the earlier columns'."""
        activations, h = [], x
        for depth, layer in enumerate(self.layers):
            z = layer(h)
            if depth > 0:
                z = z + sum(
                    adapter(column[depth - 1])
                    for adapter, column in zip(self.laterals[depth - 1], earlier, strict=True)
                )
            h = F.relu(z)
            activations.append(h)
        scores = self.head(h) + sum(
            adapter(column[-1]) for adapter, column in zip(self.laterals[-1], earlier, strict=True)
        )
        return scores, activations


class ProgressiveColumns(nn.Module):
    """The columns of a PNN; forward gives all heads' scores side by side."""

    def __init__(self, n_inputs: int, hidden: int, depth: int, classes_per_task: int) -> None:
        super().__init__()
        self.n_inputs, self.hidden, self.depth = n_inputs, hidden, depth
        self.classes_per_task = classes_per_task
        self.columns = nn.ModuleList()

    def add_column(self) -> Column:
        """A new column for the next task; the earlier ones are frozen."""
        for parameter in self.columns.parameters():
            parameter.requires_grad_(False)
            parameter.grad = None  # the last task's, stale
        column = Column(
            self.n_inputs, self.hidden, self.depth, self.classes_per_task, len(self.columns)
        )
        self.columns.append(column)
        return column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, earlier, scores = x.flatten(1), [], []
        for column in self.columns:
            column_scores, activations = column(x, earlier)
            earlier.append(activations)
            scores.append(column_scores)
        return torch.cat(scores, 1)


@METHODS.register("pnn")
class ProgressiveNeuralNetwork(Method):
    """A column per task with lateral adapters; earlier columns frozen; task ids required."""

    uses_memory = False
    needs_task_boundaries = True
    scenarios = (TASK_INCREMENTAL,)

    def __init__(self, context: MethodContext, hidden: int = 100, depth: int = 2) -> None:
        super().__init__(context)
        shape = context.fetch_images(torch.zeros(1, dtype=torch.long)).shape[1:]
        self.columns = ProgressiveColumns(
            math.prod(shape), hidden, depth, context.classes_per_task
        ).to(context.device)
        self.columns.add_column()

    def prepare_model(self) -> None:
        while len(self.columns.columns) < self.context.task_id + 1:
            self.columns.add_column().to(self.context.device)

    def parameter_groups(self) -> list[nn.Parameter]:
        return list(self.columns.columns[-1].parameters())

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.columns(batch.x)[:, : self.context.n_exposed]
        masked = self.context.task_logits(logits, batch.y, batch.y_mix)
        return F.cross_entropy(masked, batch.y), logits

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.columns(x)[:, : self.context.n_exposed]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"columns.{key}": value for key, value in self.columns.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        n_columns = 1 + max(int(key.split(".")[2]) for key in state)
        while len(self.columns.columns) < n_columns:
            self.columns.add_column().to(self.context.device)
        self.columns.load_state_dict({key[len("columns.") :]: v for key, v in state.items()})
