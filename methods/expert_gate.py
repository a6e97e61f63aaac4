"""mode=expert_gate: Expert Gate (Aljundi et al., CVPR 2017), as Avalanche's ExpertGateStrategy:
one expert network per task and one autoencoder gate per task; at test the expert whose gate
reconstructs the input best answers."""

from __future__ import annotations

import math

import torch
from torch import nn

from rainbow_runner.methods.base import (
    METHODS,
    Method,
    MethodContext,
    with_prefix,
    without_prefix,
)
from rainbow_runner.methods.functional import frozen_copy, teacher_from_state
from rainbow_runner.methods.networks import GateAutoencoder


def gate_errors(gates: list[GateAutoencoder], x: torch.Tensor) -> torch.Tensor:
    """(samples, gates): each gate's mean squared reconstruction error of each input."""
    return torch.stack([gate.errors(x.float()) for gate in gates], dim=1)


def routed_scores(
    experts: list[nn.Module], chosen: torch.Tensor, x: torch.Tensor, n: int
) -> torch.Tensor:
    """Each row's scores from its chosen expert, over n classes (a column an expert's head does
    not have yet scores −inf)."""
    scores = torch.full((len(x), n), float("-inf"), device=x.device)
    for index in chosen.unique().tolist():
        rows = chosen == index
        logits = experts[index](x[rows]).float()
        scores[rows, : logits.shape[1]] = logits[:, :n]
    return scores


@METHODS.register("expert_gate")
class ExpertGate(Method):
    """Before a task's training its gate (an autoencoder on the flat, normalised inputs) trains
    ae_epochs on the task; the model then restarts from the earlier expert whose gate
    reconstructs the task's data best (the most related task: Avalanche's relatedness
    1 − (e_old − e_new)/e_new is largest there) and trains as the task's expert; it is frozen
    at the task's end. predict() routes each input to the expert of its lowest-error gate.
    No replay memory.
    """

    uses_memory = False
    needs_task_boundaries = True  # a gate and an expert per task

    def __init__(
        self,
        context: MethodContext,
        ae_latent_dim: int = 100,
        ae_epochs: int = 2,
        ae_lr: float = 0.001,
    ) -> None:
        super().__init__(context)
        if context.settings.online:
            raise ValueError(
                "mode=expert_gate cannot run with stream=online: each task's autoencoder gate "
                "is trained on the whole task before the most related expert is chosen and the "
                "task's expert trained on it (Aljundi et al.; Avalanche's ExpertGateStrategy), "
                "which needs the task's data up front; run it with stream=offline."
            )
        if ae_latent_dim < 1 or ae_epochs < 1 or ae_lr <= 0:
            raise ValueError(
                f"mode.ae_latent_dim={ae_latent_dim}, mode.ae_epochs={ae_epochs}, "
                f"mode.ae_lr={ae_lr}: expert_gate needs positive values."
            )
        shape = context.fetch_images(torch.zeros(1, dtype=torch.long)).shape[1:]
        self.width = math.prod(shape)
        self.ae_latent_dim, self.ae_epochs, self.ae_lr = ae_latent_dim, ae_epochs, ae_lr
        self.gates: list[GateAutoencoder] = []
        self.experts: list[nn.Module] = []
        self.related: list[int] = []  # the expert each task's expert started from (-1: none)

    def task_inputs(self, task_id: int) -> list[torch.Tensor]:
        """The task's un-augmented inputs, a training batch at a time."""
        indices = self.context.split.train_tasks[task_id]
        return [
            self.context.inputs(chunk)
            for chunk in indices.split(self.context.settings.eval_batchsize)
        ]

    def train_gate(self, inputs: list[torch.Tensor]) -> GateAutoencoder:
        gate = GateAutoencoder(self.width, self.ae_latent_dim).to(self.context.device)
        optimizer = torch.optim.Adam(gate.parameters(), lr=self.ae_lr)
        x = torch.cat(inputs).float()
        generator = torch.Generator().manual_seed(self.context.settings.seed + len(self.gates))
        for _ in range(self.ae_epochs):
            order = torch.randperm(len(x), generator=generator).to(x.device)
            for rows in order.split(self.context.settings.batchsize):
                loss = gate.errors(x[rows]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return gate.eval().requires_grad_(False)

    @torch.no_grad()
    def prepare_model(self) -> None:
        """Train the task's gate, then start the model from the most related expert."""
        task_id = self.context.task_id
        if task_id < len(self.gates):  # resumed inside a task: its gate exists
            return
        inputs = self.task_inputs(task_id)
        with torch.enable_grad():
            self.gates.append(self.train_gate(inputs))
        if not self.experts:
            self.related.append(-1)
            return
        errors = torch.cat([gate_errors(self.gates[:-1], x) for x in inputs]).mean(0)
        related = int(errors.argmin())
        self.related.append(related)
        self.start_from(self.experts[related])
        self.context.writer.scalar("expert_gate/related_task", related, task_id)

    def start_from(self, expert: nn.Module) -> None:
        """Copy an expert's weights into the model; head rows it lacks keep their fresh init."""
        state = expert.state_dict()
        for name, value in self.model.state_dict().items():
            saved = state[name]
            target = value if value.shape == saved.shape else value[: len(saved)]  # head rows
            target.copy_(saved)

    def after_task(self, task_id: int) -> None:
        self.experts.append(frozen_copy(self.model))

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if not self.experts:
            return self.model(x)
        gates = self.gates[: len(self.experts)]
        chosen = gate_errors(gates, x).argmin(1)
        return routed_scores(self.experts, chosen, x, self.context.n_exposed)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"related": torch.tensor(self.related, dtype=torch.long)}
        for index, gate in enumerate(self.gates):
            state |= with_prefix(f"gate{index}.", gate.state_dict())
        for index, expert in enumerate(self.experts):
            state |= with_prefix(f"expert{index}.", expert.state_dict())
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.context.device
        self.related = state["related"].tolist()
        self.gates, self.experts = [], []
        while f"gate{len(self.gates)}.decoder.bias" in state:
            gate = GateAutoencoder(self.width, self.ae_latent_dim).to(device)
            gate.load_state_dict(without_prefix(state, f"gate{len(self.gates)}."))
            self.gates.append(gate.eval().requires_grad_(False))
        while f"expert{len(self.experts)}.head.bias" in state:
            saved = without_prefix(state, f"expert{len(self.experts)}.")
            self.experts.append(teacher_from_state(self.model, saved))
