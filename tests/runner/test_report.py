"""runner.report on hand-made run directories: known means and stds, joint I_last, and every
missing or partial run listed."""

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from rainbow_runner.runner.app import config_choices
from rainbow_runner.runner.reporting.report import main, write_report
from tests.conftest import compose_config, run_cli

TINY = ["n_tasks=2", "n_epoch=1", "mem_size=50"]


@cache
def choices(mode: str, seed: int, overrides: tuple[str, ...] = ()) -> dict:
    """The summary's settings columns, as the runner would write them for this config."""
    return config_choices(compose_config([f"mode={mode}", f"seed={seed}", *TINY, *overrides]))


def make_run(
    run_dir: Path,
    mode: str,
    seed: int,
    a_last: float,
    status: str = "complete",
    tasks_done: int | None = None,
    seconds: float = 1.0,
    overrides: tuple[str, ...] = (),
) -> dict:
    """A run directory as the runner writes it, with chosen numbers."""
    n_rows = 1 if mode == "joint" else 2
    tasks_done = n_rows if tasks_done is None else tasks_done
    summary = choices(mode, seed, overrides) | {
        "A_last": a_last,
        "A_avg": a_last - 10,
        "F_last": seed * 2.0,
        "I_last": float("nan"),
        "BWT": -seed * 2.0,
        "FWT": 0.0,
        "tasks_done": tasks_done,
        "seconds": seconds,
        "status": status,
    }
    results = run_dir / "results"
    results.mkdir(parents=True)
    (run_dir / ".hydra").mkdir()  # the runner's run directories always hold the saved config
    config = compose_config([f"mode={mode}", f"seed={seed}", *TINY, *overrides])
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")
    pd.DataFrame([summary]).to_csv(results / "summary.csv", index=False)
    accuracies = np.linspace(a_last - 20, a_last, n_rows)[:tasks_done]
    pd.DataFrame({"task": range(tasks_done), "test_acc": accuracies}).to_csv(
        results / "tasks.csv", index=False
    )
    matrix = pd.DataFrame(
        np.full((tasks_done, n_rows), a_last), columns=["task0", "task1"][:n_rows]
    )
    matrix.insert(0, "after_task", range(tasks_done))
    matrix.to_csv(results / "acc_matrix.csv", index=False)
    return summary


def make_unfinished_run(run_dir: Path, mode: str, seed: int) -> None:
    """A job that Hydra started (config saved) but that wrote no results."""
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = compose_config([f"mode={mode}", f"seed={seed}", *TINY])
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- mode={mode}\n- seed={seed}\n")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sweep")
    for seed, a_last, seconds in [(1, 80.0, 1.0), (2, 82.0, 2.0), (3, 84.0, 3.0)]:
        make_run(tmp_path / f"er_{seed}", "er", seed, a_last, seconds=seconds)
        make_run(tmp_path / f"joint_{seed}", "joint", seed, 90.0 + seed)
    make_run(tmp_path / "finetune_1", "finetune", 1, 60.0)
    make_run(
        tmp_path / "finetune_2", "finetune", 2, 50.0, status="failed: RuntimeError", tasks_done=1
    )
    make_unfinished_run(tmp_path / "nested" / "finetune_3", "finetune", 3)
    return tmp_path


def row_of(table: pd.DataFrame, mode: str) -> pd.Series:
    return table[table["mode"] == mode].iloc[0]


def test_means_stds_and_joint_intransigence(sweep, tmp_path):
    report = write_report([sweep], tmp_path / "out")
    er = row_of(report.table, "er")
    assert (er.A_last_mean, er.A_last_std) == pytest.approx((82.0, 2.0))  # sample std, ddof=1
    assert (er.A_avg_mean, er.F_last_mean, er.F_last_std) == pytest.approx((72.0, 4.0, 2.0))
    assert (er.seconds_mean, er.seconds_std) == pytest.approx((2.0, 1.0))
    # joint run of the same split seed: 91 - 80, 92 - 82, 93 - 84
    assert (er.I_last_mean, er.I_last_std) == pytest.approx((10.0, 1.0))
    assert er.joint_acc_mean == pytest.approx(92.0)
    assert (er.n_seeds, er.n_incomplete, er.seeds) == (3, 0, "1 2 3")
    joint = row_of(report.table, "joint")
    assert (joint.A_last_mean, joint.n_seeds) == (pytest.approx(92.0), 3)


def test_partial_and_missing_runs_are_listed_not_dropped(sweep, tmp_path):
    report = write_report([sweep], tmp_path / "out")
    finetune = row_of(report.table, "finetune")
    assert (finetune.n_seeds, finetune.n_incomplete) == (1, 2)
    assert finetune.A_last_mean == 60.0 and np.isnan(finetune.A_last_std)
    listed = "\n".join(report.problems)
    assert "finetune_2" in listed and "failed: RuntimeError, 1/2 tasks" in listed
    assert "finetune_3" in listed and "no results/summary.csv (mode=finetune seed=3)" in listed
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Missing or partial runs" in markdown and "finetune_3" in markdown
    assert "| 82.00 ± 2.00 |" in markdown and "| n_incomplete |" in markdown


def test_files_written(sweep, tmp_path):
    out = tmp_path / "out"
    write_report([sweep], out)
    csv = pd.read_csv(out / "report.csv")
    assert len(csv) == 3 and {"config", "A_last_mean", "A_last_std", "n_seeds"} <= set(csv)
    assert (out / "accuracy_curves.png").stat().st_size > 1000
    matrices = sorted(p.name for p in out.glob("acc_matrix_*.png"))
    assert len(matrices) == 3
    assert "acc_matrix_er_reservoir_digits_online_blurry10_mem50_none.png" in matrices


def test_a_seed_present_elsewhere_but_absent_here_is_listed(tmp_path):
    make_run(tmp_path / "er_1", "er", 1, 80.0)
    make_run(tmp_path / "er_2", "er", 2, 80.0)
    make_run(tmp_path / "finetune_1", "finetune", 1, 60.0)
    report = write_report([tmp_path], tmp_path)
    assert any("finetune/none" in line and "no run for seed 2" in line for line in report.problems)


def test_configurations_differing_in_lr_are_separate_rows(tmp_path):
    first = make_run(tmp_path / "a", "er", 1, 80.0)
    make_run(tmp_path / "b", "er", 1, 70.0)
    summary = pd.read_csv(tmp_path / "b" / "results" / "summary.csv")
    summary["lr"] = first["lr"] / 10
    summary.to_csv(tmp_path / "b" / "results" / "summary.csv", index=False)
    report = write_report([tmp_path], tmp_path)
    assert sorted(report.table.A_last_mean) == [70.0, 80.0]
    assert "| lr |" in report.markdown


def test_cli_prints_the_table_and_fails_on_no_runs(sweep, tmp_path, capsys):
    assert main([str(sweep), "--out", str(tmp_path / "cli")]) == 0
    assert "| er | reservoir | digits |" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert "no run directories" in capsys.readouterr().err


def test_runs_whose_knobs_differ_are_never_averaged(tmp_path):
    """optimizer, mem_batchsize and a method knob are settings: each value is its own row."""
    settings = {
        "sgd": ("optimizer=sgd",),
        "adam": ("optimizer=adam",),
        "membatch": ("mem_batchsize=4",),
        "coef": ("mode.reg_coef=1",),
    }
    for offset, (name, overrides) in enumerate(settings.items()):
        for seed in (1, 2):
            make_run(
                tmp_path / f"{name}_{seed}",
                "ewc",
                seed,
                60.0 + 10 * offset + seed,
                overrides=overrides,
            )
    report = write_report([tmp_path], tmp_path / "out")
    table = report.table
    assert len(table) == 4 and list(table.n_seeds) == [2, 2, 2, 2]
    assert sorted(table.A_last_mean) == [61.5, 71.5, 81.5, 91.5]
    assert {"optimizer", "mem_batchsize", "mode.reg_coef"} <= set(table.columns)
    header = report.markdown.splitlines()[2]
    assert "| optimizer |" in header and "| mode.reg_coef |" in header
    assert "optimizer.betas" not in header  # implied by the optimizer shown before it
    adam = table[table.optimizer == "adam"].iloc[0]
    assert adam.A_last_mean == 71.5 and "optimizer=adam" in adam.config


def test_a_real_sweep_of_a_method_knob_gives_one_row_per_value(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["--multirun", "mode=ewc", "mode.reg_coef=1,10", "seed=1,2", "n_tasks=2", "n_epoch=1"]
        + ["mem_size=50", "num_threads=1", "progress=false", f"hydra.sweep.dir={sweep}"]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = {
        run.name: pd.read_csv(run / "results" / "summary.csv").iloc[0]
        for run in sweep.iterdir()
        if (run / "results").exists()
    }
    report = write_report([sweep], tmp_path / "out")
    print(report.markdown)
    assert len(report.table) == 2 and list(report.table.n_seeds) == [2, 2]
    for coef, jobs in (("1", ("0_", "1_")), ("10", ("2_", "3_"))):
        row = report.table[report.table["mode.reg_coef"] == coef].iloc[0]
        a_last = [s.A_last for name, s in summaries.items() if name.startswith(jobs)]
        assert row.A_last_mean == pytest.approx(np.mean(a_last))
