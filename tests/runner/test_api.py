"""`from rainbow_runner import run`: the same run directory as the command line, the summary
row returned, no heavy import before the call, and bad input raised rather than exiting."""

import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import run_cli

OVERRIDES = ["mode=er", "n_tasks=2", "n_epoch=1", "mem_size=50", "num_threads=1"]
OVERRIDES += ["progress=false", "log_every=10"]


def files_of(run_dir):
    """Relative paths, with TensorBoard's host- and time-stamped event file names generalised."""
    return sorted(
        "tb/events" if path.parent.name == "tb" else str(path.relative_to(run_dir))
        for path in run_dir.rglob("*")
        if path.is_file()
    )


def test_the_api_writes_what_the_command_line_writes(tmp_path):
    from rainbow_runner import run

    assert run_cli([*OVERRIDES, f"hydra.run.dir={tmp_path / 'cli'}"]).returncode == 0
    summary = run(OVERRIDES, run_dir=tmp_path / "api")
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    assert files_of(api_dir) == files_of(cli_dir)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", "run.log", "tb/events"} <= set(
        files_of(api_dir)
    )
    written = pd.read_csv(api_dir / "results" / "summary.csv").iloc[0]
    assert summary["A_last"] == written["A_last"] and summary["status"] == "complete"
    for name in ("acc_matrix.csv", "summary.csv"):
        api, cli = (pd.read_csv(d / "results" / name) for d in (api_dir, cli_dir))
        pd.testing.assert_frame_equal(
            api.drop(columns="seconds", errors="ignore"),
            cli.drop(columns="seconds", errors="ignore"),
        )
    assert (api_dir / ".hydra" / "overrides.yaml").read_text() == (
        cli_dir / ".hydra" / "overrides.yaml"
    ).read_text()
    assert "A_last" in (api_dir / "run.log").read_text()


def test_bad_input_raises(tmp_path):
    from rainbow_runner import run

    with pytest.raises(ValueError, match="batchsize"):
        run([*OVERRIDES, "batchsize=0"], run_dir=tmp_path / "bad")


def test_importing_the_package_loads_no_runner_or_torch():
    heavy = "('torch', 'hydra', 'rainbow_runner.')"
    code = f"import sys, rainbow_runner; print([m for m in sys.modules if m.startswith({heavy})])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
