"""mem_manage=uncertainty: Rainbow Memory's diverse memory, ranked by perturbation disagreement."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import torch

from rainbow_runner.datasets.augment import policies as transforms
from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.memory.base import MEMORIES, SelectionContext
from rainbow_runner.memory.parametric import ParametricMemory
from rainbow_runner.memory.selection import uncertainty_from_predictions

log = logging.getLogger(__name__)

Perturbation = Callable[[torch.Tensor], torch.Tensor]


def _vr_perturbations(side: int) -> list[Perturbation]:
    """The reference's 12 `vr` perturbations; cutout sizes 8..32 are scaled to the image side."""
    sizes = [max(1, round(s * side / 32)) for s in (8, 16, 24, 32)]
    return [partial(transforms.cutout, size=size) for size in sizes] + [
        partial(transforms.random_flip, dim=-1),
        partial(transforms.random_flip, dim=-2),
        partial(transforms.random_rotation, max_degrees=45.0),
        partial(transforms.random_rotation, max_degrees=90.0),
        partial(transforms.OPERATIONS["Invert"], m=0.0),
        partial(transforms.OPERATIONS["Solarize"], m=128 / 255),
        partial(transforms.OPERATIONS["Solarize"], m=64 / 255),
        partial(transforms.OPERATIONS["Solarize"], m=32 / 255),
    ]


def perturbations(metric: str, k: int, side: int) -> list[Perturbation]:
    """The K perturbations of an uncert_metric (vr cycles through its 12 when K != 12)."""
    if metric == "vr":
        base = _vr_perturbations(side)
        return [base[i % len(base)] for i in range(k)]
    single = {
        "vr_randaug": transforms.rand_augment,
        "vr_cutout": transforms.cutout_half,
        "vr_autoaug": transforms.auto_augment,
    }[metric]
    return [single] * k


UNCERTAINTY_METRICS = ("vr", "vr_randaug", "vr_cutout", "vr_autoaug")


def perturb_all(images: torch.Tensor, views: list[Perturbation]) -> torch.Tensor:
    """(K*n, ...) perturbed copies of an (n, ...) batch; rows j*n .. j*n+n-1 are view j.

    When every view is the same function (vr_randaug, vr_cutout, vr_autoaug) it is called once
    on the K-times repeated batch: the transforms draw per image, so each copy still gets its
    own independent perturbation, with one set of tensor operations instead of K.
    """
    if all(view is views[0] for view in views):
        return views[0](images.repeat(len(views), *([1] * (images.dim() - 1))))
    return torch.cat([view(images) for view in views])


@torch.inference_mode()
def perturbed_predictions(
    indices: torch.Tensor, context: SelectionContext, views: list[Perturbation]
) -> torch.Tensor:
    """(N, K) labels the model predicts for each candidate under each perturbation.

    Column j is perturbation j. Each batch's K perturbed copies go through the model in one
    forward of about `context.batchsize` images (so max(1, batchsize // K) candidates a batch);
    the model is in eval mode, so batch composition does not change a prediction.
    """
    model, k = context.model, len(views)

    def votes(images: torch.Tensor) -> torch.Tensor:
        labels = model(context.normalize(perturb_all(images, views))).argmax(1)
        return labels.view(k, len(images)).t()

    batches = context.map_batches(indices, votes, batchsize=max(1, context.batchsize // k))
    return torch.cat(batches).cpu()


@MEMORIES.register("uncertainty")
class UncertaintyMemory(ParametricMemory):
    """Per class, samples spread evenly over the uncertainty ranking (the "rainbow").

    The preset intake=task, groupby=class, select=rainbow (no fill: capacity // n_exposed per
    class, spare slots at random) on the candidates' perturbation disagreement. The first task
    (no model trained on earlier data) picks an equal-class random subset.
    """

    def __init__(
        self,
        capacity: int,
        seed: int,
        metric: str = "vr",
        k: int = 12,
    ) -> None:
        super().__init__(
            capacity, seed, groupby="class", select="rainbow", intake="task", fill=False
        )
        if metric not in UNCERTAINTY_METRICS:
            raise ChoiceError(
                f"unknown mem_manage.metric '{metric}'; valid choices are: "
                f"{', '.join(UNCERTAINTY_METRICS)}."
            )
        if int(k) < 1:
            raise ValueError(
                f"mem_manage.k={k} must be 1 or more (the paper uses 12 perturbations)."
            )
        self.metric, self.k = metric, int(k)
        self.scoring_seconds = 0.0  # of the last update, for the run's logs
        self.last_uncertainty = torch.empty(0)

    def update_report(self) -> dict[str, object]:
        return {"scoring_seconds": self.scoring_seconds, "uncertainty": self.last_uncertainty}

    def select(
        self, indices: torch.Tensor, labels: torch.Tensor, context: SelectionContext
    ) -> torch.Tensor:
        self.scoring_seconds = 0.0
        self.last_uncertainty = torch.empty(0)
        return super().select(indices, labels, context)

    def selection_features(self, indices: torch.Tensor, context: SelectionContext) -> torch.Tensor:
        """Each candidate's uncertainty (zeros on the first task, or when everything fits)."""
        if len(indices) <= self.capacity or context.task_id == 0:
            return torch.zeros(len(indices))
        started = time.perf_counter()
        side = context.fetch_images(indices[:1]).shape[-1]
        views = perturbations(self.metric, self.k, side)
        predictions = perturbed_predictions(indices, context, views)
        n_classes = int(predictions.max()) + 1
        scores = uncertainty_from_predictions(predictions, n_classes)
        self.scoring_seconds = time.perf_counter() - started
        self.last_uncertainty = scores
        log.info(
            "uncertainty (%s, K=%d) of %d candidates: %.2fs, mean %.3f",
            self.metric,
            self.k,
            len(indices),
            self.scoring_seconds,
            float(scores.mean()),
        )
        return scores
