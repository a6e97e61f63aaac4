"""Avalanche 0.6.0's MAS on the vs_avalanche protocol, instrumented (docs/catalog.md, mas): Ω per
layer after each experience (head rows of seen and unseen classes apart), CE and λ·penalty every
75 steps, per-class test accuracy after each experience. --variant nohead zeroes the head's Ω,
seenhead the Ω of the head rows of classes not seen yet. Run from outside the repository:

    cd /tmp && <repo>/.venv-avalanche/bin/python <repo>/bench/mas_trace_avalanche.py --variant stock
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
import avalanche_side as side  # noqa: E402
import torch  # noqa: E402
from avalanche.training import supervised  # noqa: E402
from avalanche.training.plugins import MASPlugin  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--variant", default="stock")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--exps", type=int, default=5)
args = p.parse_args()
torch.set_num_threads(1)
bm, mlp = side.protocol(args.seed)
test_set = side.load_sets(side.FASHION)[1]
print([n for n, _ in mlp.named_parameters()])


class Traced(MASPlugin):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.it = 0

    def before_training_exp(self, strategy, **kw):
        self.it = 0

    def before_backward(self, strategy, **kw):
        ce = float(strategy.loss.detach())
        super().before_backward(strategy, **kw)
        pen = float(strategy.loss) - ce
        if strategy.clock.train_exp_counter >= 1 and self.it % 75 == 0:
            exp = strategy.clock.train_exp_counter
            print(f"  exp{exp} it{self.it} CE {ce:.4f} lambda*pen {pen:.4f}")
        self.it += 1

    def after_training_exp(self, strategy, **kw):
        exp = strategy.clock.train_exp_counter
        with torch.no_grad():
            out = strategy.model(
                torch.stack([strategy.experience.dataset[i][0] for i in range(512)])
            )
            print(f"exp{exp} mean ||f||2 on own data {out.norm(dim=1).mean():.3f}")
        super().after_training_exp(strategy, **kw)
        seen = 2 * (exp + 1)
        if args.variant == "nohead":
            for k in list(self.importance):
                if k.startswith("classifier"):
                    self.importance[k].data.zero_()
        if args.variant == "seenhead":
            self.importance["classifier.weight"].data[seen:] = 0
            self.importance["classifier.bias"].data[seen:] = 0
        for name, imp in self.importance.items():
            v = imp.data
            line = f"  Omega[{name}] mean {v.mean():.3e} max {v.max():.3e}"
            if name.startswith("classifier"):
                unseen = v[seen:].mean() if seen < 10 else 0
                line += f" seen rows mean {v[:seen].mean():.3e} unseen {unseen:.3e}"
            print(line)


plugin = Traced(lambda_reg=1.0, alpha=0.5)
common = side.training_args(mlp)
strategy = supervised.Naive(model=mlp, plugins=[plugin], **common)
tx = torch.stack([test_set[i][0] for i in range(len(test_set))])
ty = torch.tensor(test_set.targets)
for e, experience in enumerate(bm.train_stream):
    if e >= args.exps:
        break
    strategy.train(experience)
    with torch.no_grad():
        pred = mlp(tx).argmax(1)
    per = [round(100 * float((pred[ty == c] == c).float().mean()), 1) for c in range(10)]
    print(
        f"after exp{e}: acc all {100 * float((pred == ty).float().mean()):.2f} per class {per}",
        flush=True,
    )
