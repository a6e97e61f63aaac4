"""Start-up: a run imports torchvision and TensorBoard's writer only when it needs them (augment
operations, resnet34, the first event), not before its first training step."""

import subprocess
import sys

from tests.conftest import REPO

CHECK = """
import sys
import rainbow_runner.runner.app, rainbow_runner.runner.cli
from rainbow_runner.runner.reporting.results import ResultWriter
writer = ResultWriter(sys.argv[1])
heavy = ('torchvision', 'torch.utils.tensorboard')
def loaded():
    names = {m.split('.')[0] + ('.tb' if 'tensorboard' in m else '') for m in sys.modules
             if m.startswith(heavy)}
    return sorted(names)
print(loaded())
writer.scalar('x', 1.0, 0)
writer.close()
print(loaded())
"""


def test_torchvision_and_tensorboard_load_when_needed(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    before, after = result.stdout.strip().splitlines()
    assert before == "[]"
    assert "torch.tb" in after and any((tmp_path / "tb").iterdir())
