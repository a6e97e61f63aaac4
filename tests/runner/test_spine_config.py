"""Config composition, defaults per data set and mode, and every early error path."""

from pathlib import Path

import pytest
import torch

from tests.conftest import CONF, compose_config, run_cli, run_in_process

GROUPS = ["mode", "mem_manage", "dataset", "stream", "exp", "model", "optimizer", "scheduler"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes(group):
    for option in options(group):
        cfg = compose_config([f"{group}={option}"])
        assert cfg.mode.name and cfg.dataset.name and cfg.exp.name


def test_default_is_rainbow_memory_on_digits_online_blurry10():
    cfg = compose_config([])
    assert (cfg.mode.name, cfg.mem_manage.name) == ("rm", "uncertainty")
    assert (cfg.dataset.name, cfg.stream.name, cfg.exp.name, cfg.exp.blurry) == (
        "digits",
        "online",
        "blurry10",
        10,
    )
    assert cfg.split_seed == cfg.seed == 1


def test_dataset_carries_paper_defaults_and_command_line_wins():
    cifar100 = compose_config(["dataset=cifar100"])
    assert cifar100.model._target_.endswith("resnet32_cifar")
    assert (cifar100.n_epoch, cifar100.lr, cifar100.batchsize) == (256, 0.03, 16)
    imagenet = compose_config(["dataset=imagenet"])
    assert (imagenet.n_tasks, imagenet.topk) == (10, 5)
    assert imagenet.scheduler._target_.endswith("MultiStepLR")
    chosen = compose_config(["dataset=cifar10", "model=mlp400", "n_epoch=3"])
    assert chosen.model._target_.endswith("mlp") and chosen.n_epoch == 3


def test_mem_manage_default_follows_the_mode_and_an_explicit_choice_wins():
    assert compose_config(["mode=er"]).mem_manage.name == "reservoir"
    assert compose_config(["mode=er", "mem_manage=default"]).mem_manage.name == "reservoir"
    assert compose_config(["mode=er", "mem_manage=random"]).mem_manage.name == "random"


def test_any_blurry_level_through_a_parameter():
    cfg = compose_config(["exp=blurry10", "exp.blurry=45"])
    assert cfg.exp.name == "blurry45"


def test_cos_scheduler_floor_is_one_percent_of_lr():
    cfg = compose_config(["lr=0.2"])
    assert cfg.scheduler.eta_min == pytest.approx(0.002)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("mem_size=-5", "mem_size=-5"),
        ("batchsize=0", "batchsize=0"),
        ("n_epoch=-1", "n_epoch=-1"),
        ("exp.blurry=150", "exp.blurry=150"),
        ("n_tasks=3", "n_tasks=3 does not divide the 10 classes"),
        ("trans=[bogus]", "unknown trans entry 'bogus'"),
        ("device=tpu", "device=tpu"),
    ],
)
def test_bad_values_are_refused_before_training(tmp_path, override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        run_in_process(tmp_path, ["progress=false", override])
    assert not (tmp_path / "results" / "tasks.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_a_gpu_is_an_error_not_a_silent_fallback(tmp_path):
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_in_process(tmp_path, ["progress=false", "device=cuda"])


def test_missing_data_set_names_where_it_looked(tmp_path):
    with pytest.raises(RuntimeError, match=str(tmp_path)):
        run_in_process(tmp_path / "run", ["dataset=mnist", f"data_root={tmp_path}"])


def test_cli_user_error_is_one_paragraph_and_exit_status_2(tmp_path):
    result = run_cli(["mem_size=-5", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2
    assert "mem_size=-5 must be 0 or more" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unknown_choice_lists_the_valid_ones(tmp_path):
    result = run_cli(["mode=nope", f"hydra.run.dir={tmp_path}"])
    assert result.returncode != 0
    assert "nope" in result.stderr and "finetune" in result.stderr and "er" in result.stderr


def test_cli_help_lists_groups_and_cfg_job_prints_the_composed_config():
    help_text = run_cli(["--help"]).stdout
    for group in ["mode", "mem_manage", "dataset", "stream", "exp", "model"]:  # runner/help.py
        assert f"\n  {group} " in help_text
    job = run_cli(["--cfg", "job", "mode=finetune", "mem_size=7"]).stdout
    assert "name: finetune" in job and "mem_size: 7" in job


def test_run_directories_name_the_split_and_seed():
    text = Path(CONF / "config.yaml").read_text()
    assert "${exp.name}" in text and "${seed}" in text and "${hydra.job.num}" in text


def test_the_avalanche_protocol_preset_composes_its_settings():
    cfg = compose_config(["experiment=fashion_mnist_avalanche_ci", "mode=er"])
    assert cfg.dataset.name == "fashion_mnist" and cfg.exp.name == "disjoint"
    assert list(cfg.exp.class_order) == list(range(10)) and cfg.stream.name == "offline"
    assert (cfg.batchsize, cfg.mem_batchsize, cfg.n_epoch, cfg.lr) == (32, 32, 1, 0.01)
    assert cfg.model.batchnorm is False and cfg.optimizer.nesterov is False
    assert cfg.optimizer.weight_decay == 0.0 and cfg.scheduler._target_.endswith("ConstantLR")
    assert list(cfg.trans) == [] and cfg.crop_padding == 0 and cfg.flip is False
