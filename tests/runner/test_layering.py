"""The house's layering: datasets <- memory <- methods <- runner, one import namespace, and no
side effects from importing a method."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = "rainbow_runner"
# What each layer may import from the project (itself included); runner may import anything.
ALLOWED = {
    "datasets": {"datasets"},
    "memory": {"datasets", "memory"},
    "methods": {"datasets", "memory", "methods"},
    "runner": {"datasets", "memory", "methods", "runner"},
}
TOP_LEVEL = set(ALLOWED) | {"conf"}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, in functions too, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; spell it out")
            found.append((node.lineno, node.module or ""))
    return found


def layer_files(layer: str) -> list[Path]:
    return sorted((REPO / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    wrong = []
    for path in layer_files(layer):
        for line, module in project_imports(path):
            parts = module.split(".")
            if parts[0] in TOP_LEVEL:  # a bare `runner`/`datasets`/... import: a second name
                wrong.append(f"{path.relative_to(REPO)}:{line} imports {module} outside {PACKAGE}")
            elif parts[0] == PACKAGE and len(parts) > 1 and parts[1] not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(REPO)}:{line} ({layer}) imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_check_would_catch_a_method_reading_the_trainer(tmp_path):
    file = tmp_path / "bad.py"
    file.write_text("def f():\n    from rainbow_runner.runner.trainer import Trainer\n")
    assert project_imports(file) == [(2, "rainbow_runner.runner.trainer")]


def test_importing_methods_and_memories_loads_no_runner_module_and_no_second_name():
    code = (
        "import sys, os, torch, torchvision, omegaconf\n"  # torch sets its own variables
        "before = dict(os.environ)\n"
        "import rainbow_runner.methods, rainbow_runner.memory, rainbow_runner.datasets\n"
        "names = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('runner', 'methods', 'memory', 'datasets', 'conf'))\n"
        "print('second names:', names)\n"
        "print('runner loaded:', any(m.startswith('rainbow_runner.runner') for m in sys.modules))\n"
        "print('environment changed:', dict(os.environ) != before)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == [
        "second names: []",
        "runner loaded: False",
        "environment changed: False",
    ]


def test_every_registered_class_comes_from_one_module_name():
    from rainbow_runner.memory import MEMORIES
    from rainbow_runner.methods import METHODS

    for registry in (METHODS, MEMORIES):
        for name in registry.names():
            assert registry.get(name).__module__.startswith(f"{PACKAGE}."), name
