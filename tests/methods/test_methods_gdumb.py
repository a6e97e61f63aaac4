"""GDumb: learns only from its memory, from scratch, at every evaluation point."""

from __future__ import annotations

import math

import pandas as pd
import torch

from rainbow_runner.methods.functional import reinitialize
from rainbow_runner.runner.models import mlp
from tests.conftest import run_in_process
from tests.methods.test_methods_common import build_trainer


def test_reinitialize_draws_new_weights_for_every_layer():
    torch.manual_seed(0)
    model = mlp((1, 8, 8), n_classes=4)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.5)  # as if trained
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    reinitialize(model)
    for name, param in model.named_parameters():
        assert not torch.equal(param, before[name]), name


def test_every_task_retrains_from_scratch_on_the_memory_only(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=gdumb", "exp=disjoint", "n_epoch=2", "mem_size=60"])
    trainer.train_task(0, trainer.split.train_tasks[0])
    assert trainer.steps.global_step == 2 * math.ceil(60 / 16)  # no step on the stream itself
    first_task_weights = trainer.model.backbone[1].weight.detach().clone()
    optimizer = trainer.optimizer
    trainer.train_task(1, trainer.split.train_tasks[1])
    assert trainer.optimizer is not optimizer
    # re-initialised, then 8 steps: far from where task 0 left it
    drift = (trainer.model.backbone[1].weight - first_task_weights).abs().mean()
    assert drift > 0.01


def test_online_and_offline_streams_give_the_same_run(tmp_path):
    settings = ["mode=gdumb", "exp=blurry10", "n_epoch=1", "mem_size=100", "progress=false"]
    run_in_process(tmp_path / "on", [*settings, "stream=online"])
    run_in_process(tmp_path / "off", [*settings, "stream=offline"])
    on = pd.read_csv(tmp_path / "on" / "results" / "tasks.csv").drop(columns="wall_seconds")
    off = pd.read_csv(tmp_path / "off" / "results" / "tasks.csv").drop(columns="wall_seconds")
    pd.testing.assert_frame_equal(on, off)
