"""A non-editable install lives beside other packages: one namespace, conf/ inside, a command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install .` (a wheel, not editable) into a folder of its own, dependencies aside;
    built from a copy, so that the build leaves nothing in the repository."""
    source = tmp_path_factory.mktemp("source") / "rainbow-runner"
    skip = shutil.ignore_patterns(".*", "build", "outputs", "multirun", "data", "__pycache__")
    shutil.copytree(REPO, source, ignore=skip)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--target", str(target), str(source)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return target


def run_installed(target: Path, args: list[str], cwd: Path, extra_path: str = "") -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (extra_path, str(target)) if p)}
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_the_install_holds_one_namespace_with_its_configs(installed):
    top_level = sorted(p.name for p in installed.iterdir() if not p.name.endswith(".dist-info"))
    assert top_level in (["rainbow_runner"], ["bin", "rainbow_runner"])
    package = installed / "rainbow_runner"
    assert (package / "conf" / "config.yaml").exists()
    assert (package / "conf" / "mode" / "rm.yaml").exists()
    assert (package / "datasets" / "augment" / "pipeline.py").exists()
    assert not (package / "tests").exists() and not (package / "bench").exists()


def test_the_installed_runner_runs_from_another_directory_beside_a_foreign_datasets(
    installed, tmp_path
):
    """A package called `datasets` (as Hugging Face's) earlier on the path changes nothing."""
    foreign = tmp_path / "foreign"
    (foreign / "datasets").mkdir(parents=True)
    (foreign / "datasets" / "__init__.py").write_text("NAME = 'someone else'\n")
    args = ["-m", "rainbow_runner", "mode=er", "n_epoch=1", "progress=false", "num_threads=1"]
    args.append(f"hydra.run.dir={tmp_path / 'run'}")
    output = run_installed(installed, args, tmp_path, extra_path=str(foreign))
    assert "A_last" in output
    assert (tmp_path / "run" / "results" / "summary.csv").exists()
    check = "import datasets, rainbow_runner.runner.app as app; print(datasets.NAME, app.__file__)"
    printed = run_installed(installed, ["-c", check], tmp_path, extra_path=str(foreign)).split()
    assert printed[:2] == ["someone", "else"]
    assert printed[2].startswith(str(installed))


def test_the_console_command_prints_its_config_and_a_shell_completion(installed, tmp_path):
    command = installed / "bin" / "rainbow-runner"
    env = {**os.environ, "PYTHONPATH": str(installed)}
    job = subprocess.run(
        [str(command), "mode=finetune", "--cfg", "job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "name: finetune" in job.stdout
    completion = subprocess.run(
        [str(command), "-sc", "install=bash"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "complete" in completion.stdout and "rainbow-runner" in completion.stdout
