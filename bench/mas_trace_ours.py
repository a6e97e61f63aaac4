"""Our mode=mas on the vs_avalanche protocol (mem_size=0), instrumented as
bench/mas_trace_avalanche.py (docs/catalog.md, mas). Environment switches try the paper's scale:
SQUARE=1 (objective ‖f‖₂², not ‖f‖₂), FULLSCALE=1 (penalty λ·Σ, not λ/2·Σ), FIRSTFULL=1
(Ω = Ω_task after the first task, not (1 − alpha)·Ω_task); TASKS=k stops after k tasks.

    SQUARE=1 FULLSCALE=1 FIRSTFULL=1 .venv/bin/python bench/mas_trace_ours.py seed=1
"""

import functools
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch

from rainbow_runner.datasets.idx import find_idx_files, read_idx
from rainbow_runner.methods import functional as F
from rainbow_runner.methods import mas as M
from rainbow_runner.methods import regularization as R
from rainbow_runner.runner.app import run
from rainbow_runner.runner.config import compose_config

if os.environ.get("SQUARE"):
    F._mean_output_norm = lambda logits: logits.float().norm(dim=1).pow(2).mean()
files = find_idx_files(Path("/usr/share/datasets/fashion-mnist"))
tx = torch.from_numpy(read_idx(files["test_x"], 3).copy()).unsqueeze(1)
ty = torch.from_numpy(read_idx(files["test_y"], 1).astype("int64"))

orig_init = M.MAS.__init__


@functools.wraps(orig_init)
def init(self, context, **kw):
    orig_init(self, context, **kw)
    if os.environ.get("FULLSCALE"):
        self.penalty_scale *= 2
    self.it = 0


M.MAS.__init__ = init

orig_loss = R.RegularizedReplay.loss


def loss(self, batch):
    total, logits = orig_loss(self, batch)
    if self.anchors:
        pen = float(self.penalty())
        if self.it % 75 == 0:
            print(
                f"  task{self.context.task_id} it{self.it} CE {float(total) - pen:.4f} "
                f"pen {pen:.4f}",
                flush=True,
            )
    self.it += 1
    return total, logits


R.RegularizedReplay.loss = loss

orig_after = M.MAS.after_task


def after(self, task_id):
    self.it = 0
    first = not self.importance
    with torch.no_grad():
        x = self.context.inputs(self.context.split.train_tasks[task_id][:512])
        print(f"task{task_id} mean ||f|| on own data {self.model(x).norm(dim=1).mean():.3f}")
    orig_after(self, task_id)
    if first and os.environ.get("FIRSTFULL"):
        self.importance = {k: v / (1 - self.alpha) for k, v in self.importance.items()}
    for name, v in self.importance.items():
        print(f"  Omega[{name}] mean {v.mean():.3e} max {v.max():.3e}")
    with torch.no_grad():
        self.model.eval()
        pred = self.model(self.context.normalize(tx.to(self.context.device))).argmax(1)
        self.model.train()
    per = [round(100 * float((pred[ty == c] == c).float().mean()), 1) for c in range(10)]
    print(
        f"after task{task_id}: acc all {100 * float((pred == ty).float().mean()):.2f} "
        f"per class {per}",
        flush=True,
    )
    if task_id + 1 >= int(os.environ.get("TASKS", 5)):
        raise SystemExit(0)


M.MAS.after_task = after

over = [
    "experiment=fashion_mnist_avalanche_ci",
    "mode=mas",
    "seed=1",
    "num_threads=1",
    "progress=false",
    "mem_size=0",
] + sys.argv[1:]
torch.set_num_threads(1)
with tempfile.TemporaryDirectory() as d:
    out = run(compose_config(over), Path(d))
    print("summary", {k: out[k] for k in out if "A_" in k} if isinstance(out, dict) else out)
