"""One run: check the config, load the data, split it, train, and write every output."""

from __future__ import annotations

import logging
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rainbow_runner.datasets import make_split, read_rm_split
from rainbow_runner.datasets.base import DatasetError
from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.datasets.splits import TaskSplit, check_split_arguments
from rainbow_runner.runner.arithmetic import arithmetic_settings
from rainbow_runner.runner.checkpoint import (
    CHECKPOINT_NAME,
    Checkpointer,
    CheckpointError,
    resume_command,
    resume_state,
)
from rainbow_runner.runner.config import group_choice, memory_of
from rainbow_runner.runner.config_check import (
    ConfigError,
    check_config,
    check_data_settings,
    config_warnings,
    resolve_device,
)
from rainbow_runner.runner.evaluation import ACCURACY_DECIMALS
from rainbow_runner.runner.models.workload import MACS_PER_THREAD, forward_macs, threads_for
from rainbow_runner.runner.options import apply_deprecated_keys, check_method_and_memory_options
from rainbow_runner.runner.reporting.metrics import summarize
from rainbow_runner.runner.reporting.results import (
    ResultWriter,
    command_line_overrides,
    headline_metrics,
    hparams_of,
)
from rainbow_runner.runner.rundir import RunDirectory, RunDirectoryError, run_directory
from rainbow_runner.runner.running import MAX_PENDING_STEPS
from rainbow_runner.runner.scenarios import check_scenario, load_data_and_split
from rainbow_runner.runner.task_free import build_iblurry_split, check_task_free
from rainbow_runner.runner.trainer import NonFiniteLossError, Trainer

log = logging.getLogger("runner")

USER_ERRORS = (
    ConfigError,
    ChoiceError,
    DatasetError,
    CheckpointError,
    RunDirectoryError,
    NonFiniteLossError,
    ValueError,
)
PACKAGES = ("torch", "torchvision", "numpy", "hydra-core", "omegaconf", "pandas", "scikit-learn")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def config_choices(cfg: DictConfig) -> dict:
    """The settings that identify a run in summaries and reports."""
    return {
        "mode": cfg.mode.name,
        "scenario": str(cfg.get("scenario", "class_incremental")),
        "mem_manage": memory_of(cfg.mode.name, cfg.mem_manage.name, "none"),
        "dataset": cfg.dataset.name,
        "stream": cfg.stream.name,
        "exp": cfg.exp.name,
        "model": group_choice(cfg, "model"),
        "mem_size": int(memory_of(cfg.mode.name, cfg.mem_size, 0)),
        "trans": "+".join(cfg.trans) if cfg.trans else "none",
        "seed": int(cfg.seed),
        "split_seed": int(cfg.split_seed),
        "n_tasks": int(cfg.n_tasks),
        "n_epoch": int(cfg.n_epoch),
        "batchsize": int(cfg.batchsize),
        "lr": float(cfg.lr),
        "optimizer": group_choice(cfg, "optimizer"),
        "scheduler": group_choice(cfg, "scheduler"),
        "mem_batchsize": int(cfg.mem_batchsize),
        "warmup_epochs": int(cfg.warmup_epochs),
        "memory_metric": str(
            memory_of(cfg.mode.name, cfg.mem_manage.get("metric"), None) or "none"
        ),
    }


def environment_record() -> dict:
    """Package versions and git revision, so a result can be traced to its code."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
    except OSError:
        revision = ""
    return {
        "python": platform.python_version(),
        "packages": versions,
        "git_revision": revision or None,
        "git_uncommitted_changes": uncommitted_changes() if revision else None,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def uncommitted_changes(folder: Path = Path(__file__).parent) -> bool | None:
    """Whether the code's checkout differs from its revision (`git status --porcelain`)."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain"],
            capture_output=True,
            text=True,
            cwd=folder,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return bool(status.strip())


def sweep_launcher() -> DictConfig | None:
    """The launcher config of the multirun this job belongs to (None for a single run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return HydraConfig.get().launcher


def job_threads(
    requested: int, launcher: DictConfig | None, cores: int | None = None
) -> int | None:
    """Torch threads for this job, so parallel jobs of a sweep do not oversubscribe the cores.

    requested > 0 wins; 0 means: the launcher's CPUs per job (submitit cpus_per_task, Ray
    remote.num_cpus), else cores // n_jobs for joblib, else torch's default (None).
    """
    if requested > 0:
        return requested
    if launcher is None:
        return None
    per_job = launcher.get("cpus_per_task") or OmegaConf.select(launcher, "ray.remote.num_cpus")
    if per_job:
        return int(per_job)
    n_jobs = launcher.get("n_jobs")
    if not n_jobs:
        return None
    cores = cores or len(os.sched_getaffinity(0))
    parallel = cores + 1 + int(n_jobs) if n_jobs < 0 else int(n_jobs)  # joblib: -1 = all cores
    return max(1, cores // max(1, parallel))


def build_split(cfg: DictConfig, data) -> TaskSplit:
    """The paper's split files when exp.split_files is set, else the seeded generator."""
    check_split_arguments(data.n_classes, int(cfg.n_tasks), float(cfg.exp.blurry))
    if cfg.exp.get("disjoint_classes") is not None:
        return build_iblurry_split(cfg, data)
    if cfg.exp.split_files:
        return read_rm_split(
            str(cfg.exp.split_files),
            cfg.dataset.name,
            cfg.exp.name,
            int(cfg.split_seed),
            int(cfg.n_tasks),
            data.train_files or [],
            data.class_names,
        )
    order = cfg.exp.get("class_order")
    return make_split(
        data.train_y,
        data.n_classes,
        int(cfg.n_tasks),
        float(cfg.exp.blurry),
        int(cfg.split_seed),
        None if order is None else [int(c) for c in order],
    )


def write_summary(writer: ResultWriter, cfg: DictConfig, trainer: Trainer, status: str) -> dict:
    """summary.csv from whatever the run finished, so a failure loses nothing."""
    record = trainer.record
    summary = config_choices(cfg)
    if record.task_accuracy:
        metrics = summarize(
            np.array(record.task_accuracy),
            np.vstack(record.acc_matrix),
            record.untrained_group_accuracy,
            None if cfg.joint_acc is None else float(cfg.joint_acc),
        )
        summary.update({name: round(value, ACCURACY_DECIMALS) for name, value in metrics.items()})
    summary.update(
        {name: round(value, ACCURACY_DECIMALS) for name, value in trainer.anytime.summary().items()}
    )
    # A run that stopped early never set record.seconds: count up to now (resumed runs included).
    seconds = record.seconds if status == "complete" else time.perf_counter() - trainer.run_started
    summary.update(tasks_done=len(record.task_accuracy), seconds=round(seconds, 2), status=status)
    writer.write_summary(summary)
    writer.hparams(hparams_of(summary, command_line_overrides()), headline_metrics(summary))
    return summary


def set_threads(cfg: DictConfig, model: torch.nn.Module, data, device: torch.device) -> str:
    """torch's thread count for this job, and why: num_threads, its share of the cores in a
    sweep, else (num_threads=0 on the CPU) what the model's work per step pays off for."""
    threads = job_threads(int(cfg.num_threads), sweep_launcher())
    reason = "num_threads" if int(cfg.num_threads) else "the job's share of the cores"
    if threads is None and device.type == "cpu":
        macs = forward_macs(model, data.image_shape) * int(cfg.batchsize)
        threads = threads_for(macs, len(os.sched_getaffinity(0)))
        reason = (
            f"num_threads=0: {macs / 1e6:.0f}M multiply-adds per step, one thread per "
            f"{MACS_PER_THREAD / 1e6:.0f}M"
        )
    if threads is None:
        return "torch's default"
    torch.set_num_threads(threads)
    return reason


def restored_trainer(trainer: Trainer, state: dict, path: Path) -> None:
    """Put the trainer back as the checkpoint says; any failure is the checkpoint's fault."""
    try:
        trainer.load_state_dict(state)
    except Exception as error:  # corrupt content raises anything from KeyError to SyntaxError
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's model, method or memory, or its content "
            f"is corrupt ({type(error).__name__}: {str(error)[:300]}); delete it to start over."
        ) from error


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run one configured experiment into run_dir and return its summary row.

    Everything that can reject the run (settings, data, split, checkpoint, the directory's
    earlier run) is checked before the first write; a rejected run leaves the directory as it
    found it (Hydra's run.log aside, which records every attempt).
    """
    check_config(cfg)
    for warning in apply_deprecated_keys(cfg):
        log.warning(warning)
    check_method_and_memory_options(cfg)
    check_task_free(cfg)
    check_scenario(cfg)
    device = resolve_device(str(cfg.device))
    seed_everything(int(cfg.seed))
    run_dir = Path(run_dir)
    wait = 30.0 if os.environ.get("SUBMITIT_EXECUTOR") else 0.0  # a requeue follows its exit
    with run_directory(run_dir, wait_seconds=wait) as directory:
        try:
            prepared = prepare(cfg, run_dir, device, directory)
        except BaseException:
            directory.restore_hydra_files()
            raise
        directory.start(fresh=prepared.state is None)
        return train(cfg, prepared)


@dataclass
class Prepared:
    """A run that passed every check, built and restored, with nothing written yet."""

    trainer: Trainer
    writer: ResultWriter
    state: dict | None


def prepare(
    cfg: DictConfig, run_dir: Path, device: torch.device, directory: RunDirectory
) -> Prepared:
    """Check and build everything the run needs, in memory only."""
    log.info("run directory: %s | device: %s", run_dir, device)
    log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    for warning in config_warnings(cfg):
        log.warning(warning)
    data, split = load_data_and_split(cfg, build_split)
    check_data_settings(cfg, data.n_classes)
    checkpoint_path = run_dir / CHECKPOINT_NAME
    writer = ResultWriter(
        run_dir,
        open_now=False,
        loggers={} if cfg.get("logger") is None else OmegaConf.to_container(cfg.logger),
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    trainer = Trainer(cfg, data, split, device, writer)
    reason = set_threads(cfg, trainer.model, data, device)
    log.info("torch threads: %d (%s)", torch.get_num_threads(), reason)
    arithmetic = arithmetic_settings(cfg, device, MAX_PENDING_STEPS)
    state = resume_state(cfg, checkpoint_path, device, arithmetic)
    command = resume_command(run_dir)
    log.info("if interrupted, continue with: %s", command)
    writer.purge_step = None if state is None else state["global_step"] + 1
    trainer.checkpointer = Checkpointer(
        checkpoint_path, int(cfg.checkpoint_every), cfg, command, arithmetic
    )
    if state is not None:
        restored_trainer(trainer, state, checkpoint_path)
    else:  # last, so that a bad value is reported as such, not as the directory's earlier run
        directory.check_fresh_start(bool(cfg.resume), bool(cfg.get("overwrite", False)))
    return Prepared(trainer, writer, state)


def train(cfg: DictConfig, prepared: Prepared) -> dict:
    """Train, writing results after every task and the summary at the end (or on failure)."""
    trainer, writer = prepared.trainer, prepared.writer
    writer.open()
    writer.write_json("run_info.json", environment_record())
    status = "complete"
    try:
        trainer.run()
    except BaseException as error:
        status = f"failed: {type(error).__name__}"
        raise
    finally:
        summary = write_summary(writer, cfg, trainer, status)
        writer.text("config", OmegaConf.to_yaml(cfg, resolve=True))
        writer.close(complete=status == "complete")
    if not cfg.get("keep_checkpoint", True):  # a complete run: nothing left to resume
        (writer.run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
    log.info(
        "A_last %.2f | A_avg %.2f | F_last %.2f | I_last %.2f",
        summary["A_last"],
        summary["A_avg"],
        summary["F_last"],
        summary["I_last"],
    )
    return summary
