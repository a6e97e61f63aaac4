"""Per-image batched operations equal torchvision's kernels on each image, bit for bit."""

import pytest
import torch

from rainbow_runner.datasets.augment import ops as image_ops
from rainbow_runner.datasets.augment import policies as transforms

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 12, 20)]  # digits, MNIST, CIFAR, non-square
CPU = torch.device("cpu")


def images_of(shape: tuple[int, int, int], n: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=generator)
    images[1] = 7  # flat: equalize and autocontrast leave it as it is
    images[2] = images[2] // 4 + 100  # a narrow range of values
    return images


def policy_tables(shape: tuple[int, int, int]) -> dict[str, image_ops.OperationTable]:
    """Every table a policy uses (each holds its (operation, signed magnitude) pairs)."""
    return {
        "autoaug0": transforms.autoaug_table(shape, 0, CPU),
        "autoaug1": transforms.autoaug_table(shape, 1, CPU),
        "randaug": transforms.randaug_table(shape, 9, 31, CPU),
    }


@pytest.mark.parametrize("whole_batch", [False, True], ids=["sorted", "whole_batch"])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_pair_of_every_policy_equals_torchvision(shape, whole_batch):
    images = images_of(shape)
    for table_name, table in policy_tables(shape).items():
        for number, (name, magnitude) in enumerate(table.pairs):
            got = table.apply(images, torch.full((len(images),), number), whole_batch)
            want = image_ops.OPERATIONS[name](images, magnitude)
            assert torch.equal(got, want), (table_name, name, magnitude)


@pytest.mark.parametrize("whole_batch", [False, True], ids=["sorted", "whole_batch"])
@pytest.mark.parametrize("shape", SHAPES)
def test_a_batch_of_different_draws_equals_each_image_on_its_own(shape, whole_batch):
    images = images_of(shape, n=40, seed=1)
    for table in policy_tables(shape).values():
        pairs = table.pairs
        pair = torch.randint(len(pairs), (len(images),), generator=torch.Generator().manual_seed(2))
        got = table.apply(images, pair, whole_batch)
        for image, out, number in zip(images, got, pair.tolist(), strict=True):
            name, magnitude = pairs[number]
            assert torch.equal(out, image_ops.OPERATIONS[name](image[None], magnitude)[0]), name


def test_operation_kinds_cover_every_operation_and_colour_is_identity_on_grey():
    assert set(image_ops.KIND_OF) == set(image_ops.OPERATIONS)
    table = image_ops.OperationTable([("Color", 0.5), ("Invert", 0.0)], (1, 8, 8), CPU)
    images = images_of((1, 8, 8), n=4)
    assert torch.equal(table.apply(images, torch.zeros(4, dtype=torch.long)), images)
    assert torch.equal(table.apply(images, torch.ones(4, dtype=torch.long)), 255 - images)


def test_source_maps_point_off_image_pixels_at_the_fill():
    source = image_ops._source_map("TranslateX", 3.0, 4, 6)
    assert source.view(4, 6)[:, :3].eq(24).all()  # shifted right by 3: the left columns fill
    assert torch.equal(source.view(4, 6)[:, 3:], torch.arange(24).view(4, 6)[:, :3])
