"""The contract every registered mode keeps: its config is its constructor, default memories,
tensor-only state that reloads; end to end in tests/methods/test_methods_e2e.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rainbow_runner.datasets import load_dataset
from rainbow_runner.memory import MEMORIES
from rainbow_runner.methods import METHODS
from rainbow_runner.runner.app import build_split, seed_everything
from rainbow_runner.runner.options import OptionError, accepted_options, check_options
from rainbow_runner.runner.reporting.results import ResultWriter
from rainbow_runner.runner.trainer import Trainer
from tests.conftest import CONF, compose_config

BASELINES = ["gdumb", "icarl", "ewc", "rwalk", "bic"]
DEFAULT_MEMORY = {
    "gdumb": "gdumb",
    "icarl": "prototype",
    "bic": "prototype",
    "ewc": "reservoir",
    "rwalk": "reservoir",
}


def build_trainer(run_dir: Path, overrides: list[str]) -> Trainer:
    """A Trainer on digits, as runner.app.run builds it, for driving tasks one by one."""
    cfg = compose_config([*overrides, "progress=false"])
    data = load_dataset(cfg.dataset.name, str(cfg.data_root), False, None)
    split = build_split(cfg, data)
    seed_everything(int(cfg.seed))
    writer = ResultWriter(Path(run_dir), tensorboard=False)
    trainer = Trainer(cfg, data, split, torch.device("cpu"), writer)
    trainer.task_id = 0
    return trainer


def trainer_at_second_task(run_dir: Path, overrides: list[str]) -> Trainer:
    """A run after task 0 (memory filled) with task 1 begun (head grown, new optimizer)."""
    trainer = build_trainer(run_dir, overrides)
    trainer.train_task(0, trainer.split.train_tasks[0])
    trainer.task_id = trainer.context.task_id = 1
    trainer.n_exposed = trainer.context.n_exposed = trainer.split.exposed[1]
    trainer.begin_task()
    return trainer


@pytest.mark.parametrize("mode", BASELINES)
def test_default_memory_is_the_papers_choice(mode):
    cfg = compose_config([f"mode={mode}"])
    assert cfg.mem_manage.name == DEFAULT_MEMORY[mode]
    assert METHODS.get(mode).name == mode
    MEMORIES.get(cfg.mem_manage.name)


def test_a_memory_choice_on_the_command_line_wins():
    assert compose_config(["mode=icarl", "mem_manage=random"]).mem_manage.name == "random"


ALL_MODES = METHODS.names()
ALL_MEMORIES = MEMORIES.names()


def config_keys(path: Path) -> dict[str, str]:
    """key -> its comment, for every top-level key of a conf yaml (`name` aside)."""
    keys = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#", "-", "defaults")) and ":" in line:
            key, _, rest = line.partition(":")
            if key != "name":
                keys[key] = rest.partition("#")[2].strip()
    return keys


@pytest.mark.parametrize(
    ("group", "registry", "name"),
    [("mode", METHODS, m) for m in ALL_MODES] + [("mem_manage", MEMORIES, m) for m in ALL_MEMORIES],
)
def test_a_config_holds_exactly_the_constructor_arguments_each_with_a_comment(
    group, registry, name
):
    path = CONF / group / f"{name}.yaml"
    keys = config_keys(path)
    assert set(keys) == set(accepted_options(registry.get(name))), path  # no hidden knob
    assert all(keys.values()), f"{path}: every knob says what it does"
    check_options(group, registry, compose_config([f"{group}={name}"])[group])


@pytest.mark.parametrize("mode", ALL_MODES)
def test_every_mode_has_a_default_memory(mode):
    assert (CONF / "mem_manage_by_mode" / f"default_{mode}.yaml").exists()
    assert compose_config([f"mode={mode}"]).mem_manage.name in ALL_MEMORIES


def test_a_typo_in_a_mode_option_names_the_valid_ones():
    cfg = compose_config(["mode=ewc", "+mode.reg_coeff=5"])
    with pytest.raises(OptionError, match="mode=ewc has no option mode.reg_coeff; its options"):
        check_options("mode", METHODS, cfg.mode)
    cfg = compose_config(["mode=ewc", "mode.reg_coef=strong"])
    with pytest.raises(OptionError, match="mode.reg_coef='strong' is a str"):
        check_options("mode", METHODS, cfg.mode)


OFFLINE_ONLY = {"expert_gate"}  # modes that refuse stream=online (the default) before training
MODEL = {"l2p": ["model=vit_tiny"]}  # modes that refuse the default model (l2p prompts a ViT)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_state_is_tensors_only_and_reloads_into_a_fresh_method(tmp_path, mode):
    overrides = [f"mode={mode}", "exp=disjoint", "n_epoch=1", "mem_size=60"]
    overrides += ["stream=offline"] if mode in OFFLINE_ONLY else []
    overrides += MODEL.get(mode, [])
    trainer = build_trainer(tmp_path / "a", overrides)
    for task_id in range(min(2, trainer.split.n_tasks)):
        trainer.train_task(task_id, trainer.split.train_tasks[task_id])
    state = trainer.method.state_dict()
    assert all(isinstance(value, torch.Tensor) for value in state.values())

    fresh = build_trainer(tmp_path / "b", overrides)
    fresh.n_exposed = fresh.context.n_exposed = trainer.n_exposed  # as a resumed run sets them
    fresh.task_id = fresh.context.task_id = trainer.task_id
    fresh.model.grow(trainer.n_exposed)
    fresh.model.load_state_dict(trainer.model.state_dict())
    fresh.method.load_state_dict(state)
    reloaded = fresh.method.state_dict()
    assert reloaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(reloaded[key].cpu(), value.cpu()), key
    x = fresh.augmenter.normalize(fresh.test_x[:32])
    assert torch.allclose(fresh.method.predict(x), trainer.method.predict(x))
