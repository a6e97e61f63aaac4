"""TRANS augmentations: shapes and dtypes, per-image draws, cutmix's exact lambda, bad names."""

import math

import pytest
import torch
from torch.nn import functional as nnf
from torchvision.transforms.v2 import functional as F

from rainbow_runner.datasets.augment import ops as image_ops
from rainbow_runner.datasets.augment import policies as transforms
from rainbow_runner.datasets.augment.pipeline import (
    BATCH_MIXES,
    IMAGE_TRANSFORMS,
    Augmenter,
    MixedBatch,
    StepBatches,
)
from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.methods.base import mixed_cross_entropy

SHAPES = [(1, 8), (1, 28), (3, 32)]  # digits, MNIST-like, CIFAR-like


def batch_of(channels: int, side: int, n: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize(("channels", "side"), SHAPES)
@pytest.mark.parametrize("name", ["cutout", "randaug", "autoaug"])
def test_image_transforms_keep_shape_dtype_and_change_pixels(name, channels, side):
    torch.manual_seed(0)
    images = batch_of(channels, side)
    out = IMAGE_TRANSFORMS[name](images)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert (out != images).any()


@pytest.mark.parametrize(("channels", "side"), SHAPES)
@pytest.mark.parametrize(
    "trans", [["cutmix"], ["cutout"], ["randaug"], ["autoaug"], ["cutmix", "autoaug"]]
)
def test_every_trans_choice_trains_a_batch(trans, channels, side):
    torch.manual_seed(1)
    augmenter = Augmenter(
        trans, [0.5] * channels, [0.25] * channels, True, side, torch.device("cpu")
    )
    labels = torch.arange(32) % 10
    batch = augmenter.train_batch(batch_of(channels, side, n=32), labels)
    assert batch.x.shape == (32, channels, side, side) and batch.x.dtype == torch.float32
    assert torch.isfinite(batch.x).all()


@pytest.mark.parametrize("name", ["randaug", "autoaug", "cutout"])
def test_identical_images_in_one_batch_get_different_draws(name):
    torch.manual_seed(2)
    images = batch_of(1, 28, n=1).expand(64, -1, -1, -1).contiguous()
    out = IMAGE_TRANSFORMS[name](images)
    distinct = torch.unique(out.flatten(1), dim=0)
    assert len(distinct) > 8  # torchvision's batch call would give 1 (one draw per batch)


def test_grouped_operations_equal_torchvision_on_each_image():
    images = batch_of(3, 16, n=6, seed=3)
    pairs = [("ShearX", 0.2), ("ShearX", -0.2), ("Rotate", 20.0), ("Equalize", 0.0)]
    pairs += [("Identity", 0.0), ("Posterize", 4.0)]
    table = image_ops.OperationTable(pairs, (3, 16, 16), torch.device("cpu"))
    out = table.apply(images, torch.arange(6))
    shear = math.degrees(math.atan(0.2))
    nearest = F.InterpolationMode.NEAREST
    expected = [
        F.affine(images[0], angle=0.0, translate=[0, 0], scale=1.0, shear=[shear, 0.0],
                 interpolation=nearest, fill=0, center=[0, 0]),
        F.affine(images[1], angle=0.0, translate=[0, 0], scale=1.0, shear=[-shear, 0.0],
                 interpolation=nearest, fill=0, center=[0, 0]),
        F.rotate(images[2], angle=20.0, interpolation=nearest, fill=0),
        F.equalize(images[3]),
        images[4],
        F.posterize(images[5], 4),
    ]  # fmt: skip
    for got, want in zip(out, expected, strict=True):
        assert torch.equal(got, want)


def test_magnitude_scales_follow_torchvision():
    assert transforms.operation_magnitude("Rotate", 9, 10, 32, 32) == pytest.approx(30.0)
    assert transforms.operation_magnitude("TranslateX", 30, 31, 28, 28) == pytest.approx(
        150 / 331 * 28
    )
    assert transforms.operation_magnitude("Posterize", 9, 10, 32, 32) == 4.0
    assert transforms.operation_magnitude("Solarize", 0, 10, 32, 32) == 1.0


def test_cutout_paints_a_clipped_grey_square():
    torch.manual_seed(4)
    images = torch.zeros(200, 1, 28, 28, dtype=torch.uint8)
    out = transforms.cutout(images, 14)
    painted = (out == transforms.GREY).flatten(1).sum(1)
    assert painted.max() == 14 * 14 and painted.min() >= 7 * 7  # full inside, clipped at edges


def test_random_rotation_by_zero_is_identity_and_keeps_dtype():
    images = batch_of(3, 8, n=4)
    assert torch.equal(transforms.random_rotation(images, 0.0), images)
    assert transforms.random_rotation(images, 90.0).dtype == torch.uint8


@pytest.mark.parametrize("lam", [0.1, 0.37, 0.5, 0.93])
def test_cutmix_box_area_approximates_one_minus_lambda(lam):
    top, bottom, left, right = transforms.cutmix_box(32, 32, lam, 16, 16)
    cut = int(32 * math.sqrt(1 - lam)) // 2 * 2
    assert (bottom - top, right - left) == (cut, cut)


def test_cutmix_lambda_is_the_exact_pixel_ratio_and_labels_follow_the_pixels():
    """A chunk of steps of different sizes: every step mixes within its own batch, each with
    its own gate, box and lam."""
    torch.manual_seed(5)
    sizes = [8, 5, 16, 1, 3]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    n = sum(sizes)
    # Image i is filled with the value i, so each pixel tells where it came from.
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 12, 12).contiguous()
    y = torch.arange(n) + 100
    mixed_steps, lams = 0, set()
    for _ in range(20):
        batches = transforms.cutmix(StepBatches(x, y, sizes)).split()
        assert [len(b.y) for b in batches] == sizes
        for start, size, batch in zip(starts, sizes, batches, strict=True):
            own_images = torch.arange(start, start + size)
            assert torch.equal(batch.y, own_images + 100)
            if batch.y_mix is None:
                assert torch.equal(batch.x, x[start : start + size]) and batch.lam == 1.0
                continue
            mixed_steps += 1
            lams.add(batch.lam)
            assert 0.0 <= batch.lam < 1.0
            partners = batch.y_mix - 100
            assert sorted(partners.tolist()) == own_images.tolist()  # a shuffle of its own batch
            for i, partner in enumerate(partners.tolist()):
                own = (batch.x[i] == start + i).float().mean().item()
                if partner != start + i:
                    assert own == pytest.approx(batch.lam)
                    share = (batch.x[i] == partner).float().mean().item()
                    assert share == pytest.approx(1 - batch.lam)
    assert 25 < mixed_steps < 75  # probability 0.5 per step, 100 steps
    assert len(lams) > 10  # each step draws its own box


def test_cutmix_is_registered_as_a_batch_mix_and_does_not_mix_twice():
    assert BATCH_MIXES["cutmix"] is transforms.cutmix
    already = StepBatches(
        torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
        torch.zeros(4, dtype=torch.long),
        [4],
        torch.ones(4, dtype=torch.long),
        [0.3],
    )
    assert transforms.cutmix(already, probability=1.0) is already


def test_mixed_cross_entropy_weights_the_two_labels_by_lam():
    torch.manual_seed(6)
    logits, y, y_mix = torch.randn(6, 4), torch.randint(0, 4, (6,)), torch.randint(0, 4, (6,))
    loss = mixed_cross_entropy(logits, MixedBatch(logits, y, y_mix, 0.3))
    expected = 0.3 * nnf.cross_entropy(logits, y) + 0.7 * nnf.cross_entropy(logits, y_mix)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    plain = mixed_cross_entropy(logits, MixedBatch(logits, y, y_mix, 1.0))
    assert plain.item() == pytest.approx(nnf.cross_entropy(logits, y).item(), rel=1e-6)


def test_unknown_trans_entry_names_the_valid_ones():
    with pytest.raises(
        ChoiceError, match="unknown trans entry .mixup.*autoaug, cutout, randaug, cutmix"
    ):
        Augmenter(["mixup"], [0.5], [0.25], False, 8, torch.device("cpu"))


def test_autoaug_draw_tables_give_the_policy_probabilities_exactly():
    first, second = transforms._autoaug_draws()
    n_outcomes, n_policies = len(first), len(transforms.CIFAR10_POLICY)
    for k, policy in enumerate(transforms.CIFAR10_POLICY):
        for stage, pairs in enumerate((first, second)):
            probability = policy[stage][1]
            for sign in (0, 1):  # each sign of sub-policy k's operation: p / 2 of its draws
                share = (pairs == 1 + 2 * k + sign).sum().item() / n_outcomes
                assert share == pytest.approx(probability / 2 / n_policies, abs=1e-12)
        # the two stages draw independently: both applied with probability p0 * p1
        both = ((first == 1 + 2 * k) | (first == 2 + 2 * k)) & (second != 0)
        want = policy[0][1] * policy[1][1] / n_policies
        assert both.sum().item() / n_outcomes == pytest.approx(want, abs=1e-12)
