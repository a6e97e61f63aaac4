"""Expert Gate: the gate with the lowest reconstruction error picks the expert."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rainbow_runner.methods.expert_gate import gate_errors
from rainbow_runner.methods.networks import GateAutoencoder
from tests.methods.test_methods_common import build_trainer

SETTINGS = ["mode=expert_gate", "exp=disjoint", "stream=offline", "n_epoch=1"]


def constant_gate(width: int, output: torch.Tensor) -> GateAutoencoder:
    """An autoencoder whose reconstruction is always `output`: it knows that one input only."""
    gate = GateAutoencoder(width, code=3)
    with torch.no_grad():
        gate.decoder.weight.zero_()
        gate.decoder.bias.copy_(output)
    return gate


class ConstantExpert(nn.Module):
    """An expert whose scores are the same for every input."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = torch.tensor(scores)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores.expand(len(x), -1)


def test_gate_errors_are_lowest_for_the_gate_that_reconstructs_the_input():
    a, b = torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([0.0, 2.0, 2.0, 0.0])
    gates = [constant_gate(4, a), constant_gate(4, b)]
    errors = gate_errors(gates, torch.stack([a, b, a + 0.1]))
    assert errors[0].tolist() == [0.0, pytest.approx(2.5)]  # (1+4+4+1)/4
    assert errors.argmin(1).tolist() == [0, 1, 0]


def test_predict_answers_with_the_expert_of_the_best_reconstructing_gate(tmp_path):
    trainer = build_trainer(tmp_path, SETTINGS)
    method = trainer.method
    trainer.n_exposed = trainer.context.n_exposed = 4
    first, second = torch.zeros(64), torch.ones(64)
    method.gates = [constant_gate(64, first), constant_gate(64, second)]
    method.experts = [ConstantExpert([5.0, 1.0]), ConstantExpert([0.0, 1.0, 2.0, 7.0])]
    x = torch.stack([first, second, second * 0.9, first + 0.2]).view(4, 1, 8, 8)
    scores = method.predict(x)
    assert scores.argmax(1).tolist() == [0, 3, 3, 0]
    assert scores[0, 2:].isneginf().all()  # the first expert has no rows for classes 2, 3
    assert scores[1].tolist() == [0.0, 1.0, 2.0, 7.0]


def test_a_new_expert_starts_from_the_most_related_one(tmp_path):
    trainer = build_trainer(tmp_path, SETTINGS)
    split = trainer.split
    for task in range(2):
        trainer.task_id = trainer.context.task_id = task
        trainer.n_exposed = trainer.context.n_exposed = split.exposed[task]
        trainer.train_task(task, split.train_tasks[task])
    method = trainer.method
    assert len(method.gates) == 2 and len(method.experts) == 2
    with torch.no_grad():  # the model now matches no expert: begin_task must copy one in
        for param in trainer.model.parameters():
            param.add_(1.0)
    trainer.task_id = trainer.context.task_id = 2
    trainer.n_exposed = trainer.context.n_exposed = split.exposed[2]
    trainer.begin_task()
    inputs = method.task_inputs(2)
    errors = torch.cat([gate_errors(method.gates[:2], x) for x in inputs]).mean(0)
    related = int(errors.argmin())
    assert method.related == [-1, method.related[1], related] and len(method.gates) == 3
    expert = method.experts[related].state_dict()
    for name, value in trainer.model.state_dict().items():
        if name.startswith("backbone."):
            assert torch.equal(value, expert[name]), name
    rows = len(expert["head.weight"])
    assert torch.equal(trainer.model.head.weight[:rows], expert["head.weight"])


def test_an_online_stream_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="stream=online.*run it with stream=offline"):
        build_trainer(tmp_path, ["mode=expert_gate", "stream=online"])
