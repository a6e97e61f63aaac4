"""AR1: the latent memory holds the cut layer's activations, replay stops above the cut, the
lower layers' slower learning rate, and the settings it refuses."""

from __future__ import annotations

import pytest
import torch

from rainbow_runner.methods.ar1 import LATENT
from rainbow_runner.methods.base import TrainBatch
from tests.methods.test_methods_common import build_trainer, trainer_at_second_task

OVERRIDES = ["mode=ar1", "exp=disjoint", "stream=online", "n_epoch=1", "mem_size=60"]


def test_the_memory_holds_each_sample_s_first_hidden_layer_output(tmp_path):
    trainer = trainer_at_second_task(tmp_path, OVERRIDES)
    method, model, memory = trainer.method, trainer.model, trainer.memory
    incoming = trainer.split.train_tasks[1][:16]
    method.observe_stream(incoming)
    kept = incoming[torch.isin(incoming, memory.indices)]
    assert len(kept) > 0 and memory.payloads[LATENT].shape[1] == 400
    stored, found = memory.payload(LATENT, kept)
    model.eval()
    with torch.no_grad():  # Flatten, Linear, BatchNorm, ReLU: mlp400's first hidden layer
        linear, batchnorm = model.backbone[1], model.backbone[2]
        expected = torch.relu(batchnorm(linear(trainer.context.inputs(kept).flatten(1))))
    assert found.all() and torch.allclose(stored, expected, atol=1e-5)


def test_replayed_rows_give_no_gradient_below_the_cut_and_stream_rows_do(tmp_path):
    trainer = trainer_at_second_task(tmp_path, [*OVERRIDES, "mode.inc_lr=0.5"])
    method, model, context = trainer.method, trainer.model, trainer.context
    groups = context.optimizer.param_groups
    assert groups[0]["lr"] == pytest.approx(0.5 * groups[1]["lr"])  # the lower layers: inc_lr
    memory_rows = trainer.memory.indices[:8]
    stream_rows = trainer.split.train_tasks[1][:8]
    for indices, n_stream in [(memory_rows, 0), (stream_rows, 8)]:
        x, y = context.inputs(indices), context.labels(indices)
        model.zero_grad(set_to_none=True)
        loss, _ = method.loss(TrainBatch(x, y, indices=indices, n_stream=n_stream))
        loss.backward()
        lower = [p.grad for p in method.lower.parameters()]
        upper = [p.grad for p in method.upper.parameters() if p.requires_grad]
        assert all(g is not None and g.abs().sum() > 0 for g in upper)
        if n_stream == 0:
            assert all(g is None for g in lower)
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in lower)


def test_by_default_the_lower_layers_are_frozen_after_the_first_task(tmp_path):
    trainer = trainer_at_second_task(tmp_path, OVERRIDES)
    lower = trainer.method.lower
    assert not any(p.requires_grad for p in lower.parameters())
    assert trainer.model.backbone[5].momentum == 5e-5  # inc_update_rate
    optimized = {id(p) for g in trainer.context.optimizer.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in lower.parameters()}


@pytest.mark.parametrize(
    "override,message",
    [
        ("mem_manage=herding", "needs a memory that takes samples in as they come"),
        ("mode.latent_layer=7", r"mode.latent_layer=7 .* \(this model: 1..6\)"),
        ("mode.inc_lr=2.0", r"AR1 needs both in \[0, 1\]"),
    ],
)
def test_settings_ar1_cannot_run_are_refused_before_training(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        build_trainer(tmp_path, ["mode=ar1", override])
