"""`--help`: the groups and their options from conf/, every key of conf/config.yaml with its
description from runner/schema.py (one source), and examples."""

from omegaconf import OmegaConf

from rainbow_runner.runner.config import CONFIG_DIR
from rainbow_runner.runner.help import help_text
from rainbow_runner.runner.schema import SETTINGS
from tests.conftest import run_cli


def test_every_config_key_is_listed_with_its_schema_description():
    text = help_text()
    lines = text.splitlines()
    keys = [
        key
        for key in OmegaConf.load(CONFIG_DIR / "config.yaml")
        if key not in ("hydra", "defaults")
    ]
    assert len(keys) > 30
    for key in keys:
        assert key in SETTINGS, f"conf/config.yaml's {key} has no row in runner/schema.py"
        [line] = [line for line in lines if line.startswith(f"  {key}=")]
        assert SETTINGS[key].help in line


def test_groups_and_their_options_from_conf_and_no_internal_group():
    text = help_text()
    for group in ("mode", "mem_manage", "dataset", "stream", "exp", "model", "optimizer"):
        options = sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))
        assert f"\n  {group} " in text and all(option in text for option in options)
    assert "mem_manage_by_mode" not in text and "default_rm" not in text
    assert "the CL method (methods/)" in text  # the comment of config.yaml's defaults line
    assert "Examples:" in text and "--multirun" in text


def test_the_command_prints_it_and_exits_0():
    result = run_cli(["--help"], timeout=60)
    assert result.returncode == 0 and result.stdout == help_text()
