"""Sweep plumbing without running jobs: launcher configs, presets, the per-job thread policy."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rainbow_runner.runner.app import job_threads
from tests.conftest import CONF, compose_config

pytestmark = pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/\w+' is validated against")


def hydra_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True).hydra


def test_joblib_launcher_extends_the_plugin_with_two_jobs():
    launcher = hydra_config(["hydra/launcher=joblib"]).launcher
    assert launcher._target_.endswith("JoblibLauncher")
    assert (launcher.n_jobs, launcher.prefer) == (2, "processes")


def test_slurm_launcher_extends_submitit_slurm_with_one_gpu_per_job():
    launcher = hydra_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]).launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.setup) == ("gpu", 1, [])
    assert launcher.timeout_min > 0 and launcher.array_parallelism > 0


def test_sweep_subdir_starts_with_the_job_number_and_the_report_callback_is_on():
    hydra = hydra_config([])
    assert OmegaConf.to_container(hydra.sweep)["subdir"].startswith("${hydra.job.num}_")
    assert (
        hydra.callbacks.report._target_ == "rainbow_runner.runner.reporting.callbacks.SweepReport"
    )


SETTING_PRESETS = sorted(
    p.stem for p in (CONF / "experiment").glob("*.yaml") if p.stem.endswith(("_online", "_offline"))
)  # <dataset>_<exp>_<stream>; protocol presets (..._avalanche_ci) have tests of their own


@pytest.mark.parametrize("preset", SETTING_PRESETS)
def test_every_setting_preset_composes_to_the_setting_in_its_name(preset):
    setting, stream = preset.rsplit("_", 1)
    datasets = [p.stem for p in (CONF / "dataset").glob("*.yaml")]  # exp names may hold "_"
    dataset = max((d for d in datasets if setting.startswith(f"{d}_")), key=len)
    exp = setting[len(dataset) + 1 :]
    cfg = compose_config([f"experiment={preset}"])
    assert (cfg.dataset.name, cfg.exp.name, cfg.stream.name) == (dataset, exp, stream)
    assert cfg.mem_size > 0 and cfg.n_tasks > 1


def test_paper_presets_carry_the_paper_memory_and_command_line_wins():
    assert compose_config(["experiment=cifar100_blurry10_online"]).mem_size == 2000
    imagenet = compose_config(["experiment=imagenet_blurry10_online"])
    assert (imagenet.mem_size, imagenet.topk, imagenet.n_tasks) == (20000, 5, 10)
    assert imagenet.model._target_.endswith("resnet34")
    assert compose_config(["experiment=mnist_blurry10_online", "mem_size=200"]).mem_size == 200


@pytest.mark.parametrize(
    ("requested", "launcher", "cores", "expected"),
    [
        (3, {"n_jobs": 2}, 2, 3),  # an explicit num_threads wins
        (0, None, 2, None),  # single run: torch's default (all cores)
        (0, {"n_jobs": 2}, 2, 1),  # joblib: cores // n_jobs
        (0, {"n_jobs": 4}, 16, 4),
        (0, {"n_jobs": -1}, 8, 1),  # joblib -1: one job per core
        (0, {"n_jobs": 3}, 2, 1),  # never below one thread
        (0, {"cpus_per_task": 6, "timeout_min": 60}, 32, 6),  # submitit
        (0, {"ray": {"remote": {"num_cpus": 2}}}, 16, 2),  # ray
        (0, {"timeout_min": 60, "cpus_per_task": None}, 2, None),  # submitit, no CPU count
    ],
)
def test_job_threads_divides_the_cores_between_parallel_jobs(requested, launcher, cores, expected):
    launcher = None if launcher is None else OmegaConf.create(launcher)
    assert job_threads(requested, launcher, cores) == expected
