"""Anytime evaluation (Koh et al., ICLR 2022): test accuracy on the classes seen so far every
eval_period stream samples, its area under the curve (A_AUC), and results/anytime.csv.

An evaluation leaves training untouched: it runs in eval mode without gradients, puts the
model's train/eval mode and every global random stream back as it found them, and BatchNorm's
running statistics are not updated in eval mode. A run with and without it trains identically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rainbow_runner.runner.checkpoint import rng_state, set_rng_state
from rainbow_runner.runner.reporting.results import write_csv_atomically

ANYTIME_CSV = "anytime.csv"
ANYTIME_COLUMNS = ("n_samples_seen", "task", "accuracy", "n_seen_classes")


def a_auc(accuracies: np.ndarray) -> float:
    """A_AUC: the area under the anytime accuracy curve, Σ_i f(i·Δn)·Δn with Δn normalised to
    1 / (evaluation points), i.e. the mean of the anytime accuracies (the paper's code computes
    `np.mean(eval_results["test_acc"])`); NaN without evaluation points."""
    accuracies = np.asarray(accuracies, dtype=float)
    return float(np.mean(accuracies)) if len(accuracies) else float("nan")


@dataclass
class AnytimeEvaluation:
    """The evaluation schedule of one run and the points measured so far."""

    period: int  # stream samples between evaluations (0 = off)
    rows: list[dict] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.period > 0

    def due(self, seen_before: int, seen_after: int) -> bool:
        """Whether a batch taking the stream from seen_before to seen_after crosses a multiple of
        the period (one evaluation per batch, after its steps, even if it crosses several)."""
        return self.enabled and seen_after // self.period > seen_before // self.period

    def measure(
        self,
        model: torch.nn.Module,
        evaluate: Callable[[], float],
        *,
        n_samples_seen: int,
        task: int,
        n_seen_classes: int,
    ) -> dict:
        """Evaluate without disturbing training (mode and random streams restored); the row."""
        was_training, streams = model.training, rng_state()
        try:
            with torch.no_grad():
                accuracy = float(evaluate())
        finally:
            set_rng_state(streams)
            model.train(was_training)
        row = {
            "n_samples_seen": int(n_samples_seen),
            "task": int(task),
            "accuracy": round(accuracy, 4),
            "n_seen_classes": int(n_seen_classes),
        }
        self.rows.append(row)
        return row

    def write(self, results_dir: Path) -> None:
        """results/anytime.csv: every point so far (a resumed run rewrites the restored ones)."""
        frame = pd.DataFrame(self.rows, columns=list(ANYTIME_COLUMNS))
        write_csv_atomically(frame, Path(results_dir) / ANYTIME_CSV)

    def summary(self) -> dict[str, float]:
        """A_AUC over the points so far (nothing when anytime evaluation is off)."""
        if not self.enabled or not self.rows:
            return {}
        return {"A_AUC": a_auc(np.array([row["accuracy"] for row in self.rows]))}

    def state_dict(self) -> dict:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state: dict | None) -> None:
        self.rows = [dict(row) for row in (state or {}).get("rows", [])]
