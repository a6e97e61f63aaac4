"""mode=ewcpp: EWC++ (Chaudhry et al., ECCV 2018), the CLIB paper's "EWC++" baseline: online EWC
whose Fisher is a running average of squared gradients updated at every step."""

from __future__ import annotations

from rainbow_runner.methods.base import METHODS, MethodContext
from rainbow_runner.methods.rwalk import RWalk, normalized


@METHODS.register("ewcpp")
class EWCPlusPlus(RWalk):
    """RWalk's Fisher EMA F ← (1−alpha)·F + alpha·g² every step, without its path score:
    after each task θ* ← θ and importance = F as it stands, scaled to max 1 unless
    normalize=False (one penalty, replaced each task); every step adds
    reg_coef · Σ importance · (θ − θ*)². ewc instead estimates a fresh per-sample Fisher on
    task ∪ memory after each task and sums it (docs/catalog_clib.md).
    """

    def __init__(
        self,
        context: MethodContext,
        reg_coef: float = 1.0,
        alpha: float = 0.5,
        normalize: bool = True,
    ) -> None:
        super().__init__(context, reg_coef=reg_coef, alpha=alpha)
        self.normalize = bool(normalize)

    def after_task(self, task_id: int) -> None:
        if self.fisher:
            self.consolidate(normalized(self.fisher) if self.normalize else self.fisher)
