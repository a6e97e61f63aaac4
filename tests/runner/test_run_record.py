"""What a run directory says about the run: its name (no memory for modes that keep none),
run_info.json's uncommitted-changes flag, the summary's settings columns."""

import json
import subprocess

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rainbow_runner.runner.app import config_choices, environment_record, uncommitted_changes
from rainbow_runner.runner.config import CONFIG_DIR
from tests.conftest import compose_config, run_in_process


def run_directory_names(overrides: list[str]) -> tuple[str, str]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    cfg.hydra.job.num = 0
    run = OmegaConf.select(cfg, "hydra.run.dir").split("/")[2]
    return run, OmegaConf.select(cfg, "hydra.sweep.subdir")


@pytest.mark.parametrize(
    ("mode", "run", "subdir"),
    [
        ("finetune", "finetune_none_online_blurry10_mem0", "0_digits_finetune_none_"),
        ("slda", "slda_none_online_blurry10_mem0", "0_digits_slda_none_"),
        ("er", "er_reservoir_online_blurry10_mem500", "0_digits_er_reservoir_"),
    ],
)
def test_a_mode_without_memory_names_none(mode, run, subdir):
    got_run, got_subdir = run_directory_names([f"mode={mode}"])
    assert got_run == run and got_subdir.startswith(subdir)
    choices = config_choices(compose_config([f"mode={mode}"]))  # summary.csv and the report
    memory = run.split("_")[1], int(run.rsplit("mem", 1)[1])
    assert (choices["mem_manage"], choices["mem_size"]) == memory
    assert choices["memory_metric"] == "none"


def test_uncommitted_changes_are_flagged(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    assert uncommitted_changes(tmp_path) is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert uncommitted_changes(tmp_path) is True
    assert uncommitted_changes(tmp_path.parent / "not-a-repo-folder-xyz") is None
    assert isinstance(environment_record()["git_uncommitted_changes"], bool)  # this checkout


def test_run_info_is_written(tmp_path):
    run_in_process(tmp_path / "run", ["mode=finetune", "n_tasks=2", "n_epoch=1"])
    assert "git_uncommitted_changes" in json.loads((tmp_path / "run" / "run_info.json").read_text())


def test_the_summary_names_every_setting_by_its_config_name():
    choices = config_choices(compose_config(["optimizer=adam", "mem_batchsize=4"]))
    assert (choices["model"], choices["optimizer"], choices["scheduler"]) == (
        "mlp400",
        "adam",
        "cos",
    )
    assert (choices["mem_batchsize"], choices["warmup_epochs"]) == (4, 0)
    assert choices["memory_metric"] == "vr"  # rm's uncertainty memory
    assert config_choices(compose_config(["mode=er"]))["memory_metric"] == "none"
