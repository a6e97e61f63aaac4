"""Rainbow Memory's scores and selection: pure functions, then the manager on a toy model."""

import numpy as np
import pytest
import torch
from torch import nn

from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.memory import MEMORIES, SelectionContext
from rainbow_runner.memory.selection import rainbow_select, uncertainty_from_predictions
from rainbow_runner.memory.uncertainty import (
    UNCERTAINTY_METRICS,
    perturbations,
    perturbed_predictions,
)


def test_a_constant_prediction_has_zero_uncertainty():
    predictions = torch.full((5, 12), 3)
    assert torch.equal(uncertainty_from_predictions(predictions, 10), torch.zeros(5))


def test_known_disagreement_patterns_give_known_scores():
    predictions = torch.tensor(
        [
            [0, 0, 1, 1, 1, 2],  # top class 3 of 6 votes -> 0.5
            [4, 4, 4, 4, 4, 1],  # 5 of 6 -> 1/6
            [0, 1, 2, 3, 4, 5],  # 1 of 6 -> 5/6, the maximum
        ]
    )
    scores = uncertainty_from_predictions(predictions, 6)
    assert scores.tolist() == pytest.approx([0.5, 1 / 6, 5 / 6])


def test_rainbow_takes_evenly_spaced_ranks_of_the_uncertainty_order():
    rng = np.random.default_rng(0)
    uncertainty = rng.permutation(100) / 100  # ranks 0..99 in a shuffled candidate order
    keep = rainbow_select(np.zeros(100, dtype=int), uncertainty, 10, 1, rng)
    assert sorted(uncertainty[keep] * 100) == pytest.approx([0, 10, 20, 30, 40, 50, 60, 70, 80, 90])


def test_rainbow_step_is_count_over_quota_as_in_the_paper():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], [25, 40])
    uncertainty = np.concatenate([np.arange(25), np.arange(40)]) / 100
    keep = rainbow_select(labels, uncertainty, 10, 2, rng)  # quota 5 per class
    assert sorted(uncertainty[keep][labels[keep] == 0] * 100) == pytest.approx([0, 5, 10, 15, 20])
    assert sorted(uncertainty[keep][labels[keep] == 1] * 100) == pytest.approx([0, 8, 16, 24, 32])


@pytest.mark.parametrize("seed", range(5))
def test_rainbow_respects_quota_and_fills_the_capacity(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(6, size=300, p=[0.02, 0.08, 0.2, 0.2, 0.2, 0.3])
    uncertainty = rng.random(300)
    capacity = 120  # quota 20 per class; class 0 has about 6 candidates
    keep = rainbow_select(labels, uncertainty, capacity, 6, rng)
    counts = np.bincount(labels[keep], minlength=6)
    available = np.bincount(labels, minlength=6)
    assert len(keep) == capacity and len(np.unique(keep)) == capacity
    assert counts[0] == available[0]  # a small class keeps everything
    assert (counts >= np.minimum(available, 20)).all()  # every class gets at least its quota
    # Only the slots a small class left free go beyond the quotas.
    assert (counts - np.minimum(available, 20)).sum() == capacity - np.minimum(available, 20).sum()


def test_rainbow_keeps_everything_when_it_fits():
    keep = rainbow_select(np.array([0, 1, 1]), np.zeros(3), 5, 2, np.random.default_rng(0))
    assert keep.tolist() == [0, 1, 2]


def test_equal_uncertainty_gives_a_random_equal_class_subset():
    labels = np.repeat(np.arange(4), 50)
    picks = [
        rainbow_select(labels, np.zeros(200), 40, 4, np.random.default_rng(seed))
        for seed in range(3)
    ]
    for keep in picks:
        assert np.bincount(labels[keep]).tolist() == [10, 10, 10, 10]
    assert not np.array_equal(picks[0], picks[1])


class ToyModel(nn.Module):
    """Predicts class 0 when the image's mean is below `cut`, else class 1 (or a constant)."""

    def __init__(self, cut: float | None) -> None:
        super().__init__()
        self.cut = cut
        self.bias = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(1)
        if self.cut is None:
            return self.bias + torch.tensor([1.0, 0.0]).expand(len(x), 2)
        high = (mean > self.cut).float()
        return torch.stack([1 - high, high], 1) + self.bias


def context_for(images: torch.Tensor, model: nn.Module, task_id: int) -> SelectionContext:
    return SelectionContext(
        model=model,
        fetch_images=lambda idx: images[idx],
        normalize=lambda x: x.float() / 255,
        n_exposed=2,
        task_id=task_id,
        device=torch.device("cpu"),
        batchsize=64,
    )


@pytest.mark.parametrize("metric", UNCERTAINTY_METRICS)
def test_a_constant_model_scores_zero_and_the_memory_stays_class_balanced(metric):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (200, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(200) % 2
    memory = MEMORIES.get("uncertainty")(capacity=40, seed=0, metric=metric, k=4)
    memory.end_task(torch.arange(200), labels, context_for(images, ToyModel(None), 1), True)
    assert torch.equal(memory.last_uncertainty, torch.zeros(200))
    assert memory.scoring_seconds > 0
    assert torch.bincount(memory.labels).tolist() == [20, 20]


def test_uncertain_samples_are_found_and_spread_over_the_memory():
    """Images near the model's decision boundary flip under invert/solarize; others don't."""
    torch.manual_seed(1)
    dark = torch.zeros(100, 1, 8, 8, dtype=torch.uint8)  # mean 0: far from the cut
    grey = torch.full((100, 1, 8, 8), 120, dtype=torch.uint8)  # invert -> 135: crosses 127.5
    images = torch.cat([dark, grey])
    labels = torch.zeros(200, dtype=torch.long)
    memory = MEMORIES.get("uncertainty")(capacity=20, seed=0, metric="vr", k=12)
    context = context_for(images, ToyModel(127.5 / 255), 1)
    context.n_exposed = 1
    memory.end_task(torch.arange(200), labels, context, True)
    scores = memory.last_uncertainty
    assert scores[:100].max() < scores[100:].min()
    kept_grey = int((memory.indices >= 100).sum())
    assert kept_grey == 10  # evenly spaced over the ranking: half from each end


def test_the_first_task_is_equal_class_random_without_scoring():
    images = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8)
    labels = torch.cat([torch.zeros(250), torch.ones(50)]).long()
    memory = MEMORIES.get("uncertainty")(capacity=60, seed=0)
    memory.end_task(torch.arange(300), labels, context_for(images, ToyModel(0.5), 0), True)
    assert memory.scoring_seconds == 0.0 and len(memory.last_uncertainty) == 0
    assert torch.bincount(memory.labels).tolist() == [30, 30]


def test_vr_has_the_papers_twelve_perturbations_and_cycles_for_other_k():
    assert len(perturbations("vr", 12, 28)) == 12
    cycled = perturbations("vr", 14, 28)
    assert cycled[12] is cycled[0] and len(cycled) == 14
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    for metric in UNCERTAINTY_METRICS:
        for view in perturbations(metric, 12, 32):
            out = view(images)
            assert out.shape == images.shape and out.dtype == torch.uint8


def small_bn_model(n_classes: int = 10) -> nn.Module:
    """A conv net whose BatchNorm has non-trivial running stats (eval mode uses them)."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, n_classes),
    )
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    return model.train()  # map_batches must switch it to eval for the scoring


def test_one_batched_forward_per_batch_predicts_as_one_forward_per_view():
    """Deterministic views (vr's invert/solarize, plus identity and a flip): same labels."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (37, 1, 8, 8), dtype=torch.uint8)
    model = small_bn_model()
    context = context_for(images, model, 1)
    context.batchsize = 16
    context.normalize = lambda x: x.float() / 127.5 - 1  # centred, so the labels vary
    views = [lambda x: x, lambda x: x.flip(-1)] + perturbations("vr", 12, 8)[8:]
    assert len(views) == 6
    forward_sizes = []
    hook = model.register_forward_hook(lambda m, i, o: forward_sizes.append(len(i[0])))
    try:
        batched = perturbed_predictions(torch.arange(37), context, views)
    finally:
        hook.remove()
    assert model.training  # restored after scoring

    model.eval()
    reference = []
    with torch.inference_mode():  # the old scoring: K forwards of `batchsize` candidates
        for start in range(0, 37, 16):
            batch = images[start : start + 16]
            votes = [model(context.normalize(view(batch))).argmax(1) for view in views]
            reference.append(torch.stack(votes, 1))
    reference = torch.cat(reference)
    assert batched.shape == (37, 6) and batched.device.type == "cpu"
    assert torch.equal(batched, reference)
    assert len(torch.unique(batched)) > 1  # the check is not vacuous
    # one forward per batch of batchsize // K = 2 candidates, i.e. K * 2 = 12 images
    assert forward_sizes == [12] * 18 + [6]


def test_a_repeated_random_view_gives_k_independent_draws_per_candidate():
    """vr_cutout's single view, called once on the K-times repeated batch, draws K cutouts."""
    torch.manual_seed(0)
    k, n = 12, 40
    images = torch.full((n, 1, 8, 8), 255, dtype=torch.uint8)

    class FirstGreyPixel(nn.Module):
        """Predicts the flat index of an image's first painted (non-white) pixel."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            painted = (x.flatten(1) < 1.0).float()
            return painted * torch.arange(64, 0, -1, dtype=torch.float32)

    (view,) = set(perturbations("vr_cutout", k, 8))
    calls = []

    def counted(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return view(batch)

    context = context_for(images, FirstGreyPixel(), 1)
    context.batchsize = 120  # 10 candidates x 12 views per forward
    predictions = perturbed_predictions(torch.arange(n), context, [counted] * k)
    assert predictions.shape == (n, k)
    assert calls == [10 * k] * 4  # the view ran once per batch, on all K copies together
    distinct = torch.tensor([len(torch.unique(row)) for row in predictions])
    assert (distinct > 1).all()  # no candidate got K copies of one perturbation
    for i in range(k):
        for j in range(i + 1, k):
            assert not torch.equal(predictions[:, i], predictions[:, j])


def test_unknown_uncert_metric_and_bad_k_are_refused():
    with pytest.raises(ChoiceError, match="unknown mem_manage.metric 'entropy'.*vr, vr_randaug"):
        MEMORIES.get("uncertainty")(capacity=10, seed=0, metric="entropy")
    with pytest.raises(ValueError, match="mem_manage.k=0"):
        MEMORIES.get("uncertainty")(capacity=10, seed=0, k=0)
