"""The composed memory library: strategies on hand-made data, the policies' invariants under
streams, fixed and flexible quotas, features at a named layer, user functions by import path."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rainbow_runner.datasets.choices import ChoiceError
from rainbow_runner.memory import MEMORIES, STRATEGIES, GroupQuota, SelectionContext, kmeans
from rainbow_runner.memory.base import extract_features
from rainbow_runner.memory.quota import padded_layout
from rainbow_runner.memory.strategies import closest_to_center, cluster, herding
from tests.memory import user_functions


def context(task_id: int, n_exposed: int, images: torch.Tensor | None = None) -> SelectionContext:
    torch.manual_seed(0)
    images = torch.randint(0, 255, (2000, 1, 3, 3), dtype=torch.uint8) if images is None else images
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 4))
    model.features = lambda x: model[0](x)
    return SelectionContext(
        model=model,
        fetch_images=lambda indices: images[indices],
        normalize=lambda x: x.float() / 255,
        n_exposed=n_exposed,
        task_id=task_id,
        device=torch.device("cpu"),
    )


def blurry_stream(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices, labels and task ids of a 4-task stream; classes keep arriving, some recur."""
    generator = torch.Generator().manual_seed(seed)
    tasks = torch.arange(n) * 4 // n
    labels = (2 * tasks + torch.randint(0, 3, (n,), generator=generator)) % 8
    return torch.arange(n), labels, tasks


STREAMING = ["random", "reservoir", "class_balanced", "experience_balanced", "ring", "gdumb"]
PER_TASK = ["herding", "closest_to_center", "cluster", "prototype", "uncertainty"]


@pytest.mark.parametrize("name", STREAMING + PER_TASK + ["parametric"])
@pytest.mark.parametrize("seed", [0, 1])
def test_capacity_is_never_exceeded_under_any_stream(name, seed):
    memory = MEMORIES.get(name)(capacity=37, seed=seed)
    indices, labels, tasks = blurry_stream(1200, seed)
    for task in range(4):
        in_task = tasks == task
        task_indices, task_labels = indices[in_task], labels[in_task]
        memory.begin_task(task)
        if memory.streaming:
            for start in range(0, len(task_indices), 13):
                memory.add(task_indices[start : start + 13], task_labels[start : start + 13], 8)
                assert len(memory) <= 37
        memory.end_task(task_indices, task_labels, context(task, 8), streamed=memory.streaming)
        assert 0 < len(memory) <= 37
        assert len(torch.unique(memory.indices)) == len(memory)  # no sample twice
        assert torch.equal(memory.labels, labels[memory.indices])  # labels stay paired


def test_class_balanced_class_counts_differ_by_at_most_one_among_seen_classes():
    memory = MEMORIES.get("class_balanced")(capacity=50, seed=0)
    indices, labels, tasks = blurry_stream(2000, 3)
    for start in range(0, 2000, 16):
        memory.add(indices[start : start + 16], labels[start : start + 16], 8)
        offered = torch.bincount(labels[: start + 16], minlength=8)
        counts = memory.class_counts(8)
        if len(memory) == 50:  # a class is within one of the largest, or keeps all it was offered
            short = counts < counts.max() - 1
            assert torch.equal(counts[short], offered[short]), (counts, offered)
    assert len(memory) == 50
    assert sorted(memory.class_counts(8).tolist()) == [6, 6, 6, 6, 6, 6, 7, 7]


def test_experience_balanced_task_counts_differ_by_at_most_one_among_tasks():
    memory = MEMORIES.get("experience_balanced")(capacity=50, seed=0)
    indices, labels, tasks = blurry_stream(2000, 4)
    for start in range(0, 2000, 16):
        batch = slice(start, start + 16)
        memory.add(indices[batch], labels[batch], 8, task_ids=tasks[batch])
        stored_tasks = memory.stored_task_ids()
        assert torch.equal(stored_tasks, tasks[memory.indices])  # task ids follow their samples
        offered = torch.bincount(tasks[: start + 16], minlength=4)
        counts = torch.bincount(stored_tasks, minlength=4)
        if len(memory) == 50:  # a task is within one of the largest, or keeps all it offered
            short = counts < counts.max() - 1
            assert torch.equal(counts[short], offered[short]), (counts, offered)
    assert sorted(torch.bincount(memory.stored_task_ids()).tolist()) == [12, 12, 13, 13]


def spread_bound(n: int, kept: int) -> float:
    """4 standard deviations of the mean of `kept` positions drawn without replacement from
    range(n): the variance of one uniform position, (n^2 - 1) / 12, over kept, times the
    finite-population correction."""
    return 4 * math.sqrt((n**2 - 1) / 12 / kept * (n - kept) / (n - 1))


@pytest.mark.parametrize("name", ["class_balanced", "experience_balanced"])
def test_a_balanced_memory_keeps_a_uniform_sample_of_each_groups_stream(name):
    # A re-drawn random subset of memory + batch would keep about the last 300 samples (mean
    # position ~2,850); a reservoir per group keeps each of the 3,000 with probability 50/3,000.
    memory = MEMORIES.get(name)(capacity=50, seed=0)
    for start in range(0, 3000, 10):
        memory.add(
            torch.arange(start, start + 10), torch.zeros(10, dtype=torch.long), 1, task_ids=0
        )
    kept = memory.indices.double()
    assert len(kept) == 50
    assert abs(kept.mean() - 2999 / 2) < spread_bound(3000, 50)  # 490
    # The count from the first half is hypergeometric (~Binomial(50, 1/2)): within 4 std.
    assert abs(int((kept < 1500).sum()) - 25) < 4 * math.sqrt(50 * 0.25)
    # A second class (task) arrives: the first group's share halves, by a uniform subset.
    for start in range(3000, 4000, 10):
        memory.add(torch.arange(start, start + 10), torch.ones(10, dtype=torch.long), 2, task_ids=1)
    first, second = memory.indices[memory.indices < 3000], memory.indices[memory.indices >= 3000]
    assert len(first) == len(second) == 25
    assert abs(first.double().mean() - 2999 / 2) < spread_bound(3000, 25)
    assert abs(second.double().mean() - (3000 + 3999) / 2) < spread_bound(1000, 25)


def test_ring_keeps_each_tasks_newest_samples_in_arrival_order():
    memory = MEMORIES.get("ring")(capacity=12, seed=0, fixed=True, n_tasks=4)
    indices, labels, tasks = blurry_stream(400, 5)
    for start in range(0, 400, 7):
        stop = min(start + 7, 400)
        memory.add(indices[start:stop], labels[start:stop], 8, task_ids=tasks[start:stop])
        seen = indices[:stop]
        for task in tasks[:stop].unique().tolist():
            arrived = seen[tasks[:stop] == task]
            stored = memory.indices[memory.stored_task_ids() == task]
            assert stored.tolist() == arrived[-3:].tolist()  # FIFO: the newest 3, oldest first


def test_herding_returns_the_known_optimum_on_a_hand_made_2d_case():
    # Class 0: mean of the unit vectors (0.25, 0.65); p3 is the point nearest it, {p3, p2} a
    # pair whose mean is nearest it (tied with {p1, p4}); scales do not matter (normalised).
    p1, p2, p3, p4 = [1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-0.6, 0.8]
    features = torch.tensor([[2 * v for v in p1], [3 * v for v in p2], p3, p4, [5.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    quota = GroupQuota(labels, torch.tensor([4, 1]), 5)
    order = herding(features, labels, labels, quota, np.random.default_rng(0)).tolist()
    assert order == [2, 1, 0, 3, 4]  # hand-computed: p3, p2, p1, p4, then class 1
    unit = torch.nn.functional.normalize(features[:4], dim=1)
    mean = unit.mean(0)
    best = min(
        (unit[list(pair)].mean(0) - mean).norm() for pair in itertools.combinations(range(4), 2)
    )
    assert (unit[order[:2]].mean(0) - mean).norm() == pytest.approx(float(best))
    assert (unit[order[:1]].mean(0) - mean).norm() == pytest.approx(
        float(min((u - mean).norm() for u in unit))
    )


def test_closest_to_center_returns_the_points_nearest_the_mean():
    # Class 0 on a line at 0, 1, 2, 10 (mean 3.25): nearest are 2, then 1. Class 1 at
    # (0, 5), (0, 7), (0, 30) (mean 14): nearest is 7.
    features = torch.tensor(
        [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0], [0.0, 5.0], [0.0, 7.0], [0.0, 30.0]]
    )
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    quota = GroupQuota(labels, torch.tensor([2, 1]), 3)
    chosen = closest_to_center(features, labels, labels, quota, np.random.default_rng(0))
    assert chosen.tolist() == [2, 1, 5]


def assert_one_per_blob_nearest_its_mean(
    chosen: torch.Tensor, features: torch.Tensor, size: int
) -> None:
    """Blobs of `size` consecutive rows: one kept member each, the one nearest the blob mean."""
    assert sorted((chosen // size).tolist()) == list(range(len(chosen)))
    for pick in chosen.tolist():
        start = pick // size * size
        blob = features[start : start + size].double()
        assert pick - start == int((blob - blob.mean(0)).norm(dim=1).argmin())


def test_cluster_takes_the_member_nearest_each_k_means_centre():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    blobs = np.concatenate([c + rng.normal(0, 0.5, (30, 2)) for c in centres])
    features = torch.tensor(blobs, dtype=torch.float32)
    labels = torch.zeros(90, dtype=torch.long)
    quota = GroupQuota(labels, torch.tensor([3]), 3)
    chosen = cluster(features, labels, labels, quota, np.random.default_rng(1))
    assert_one_per_blob_nearest_its_mean(chosen, features, 30)


def test_cluster_seeds_on_a_sample_of_a_large_group_and_still_finds_every_blob():
    """Group 0 (3 blobs x 150) is larger than the seeding sample (max(3k, 256) = 256 members):
    the seeds come from 256 distinct members of it; group 1 (40) seeds on all of its own."""
    rng = np.random.default_rng(0)
    centres = 10.0 * np.eye(3, 8)
    blobs = np.concatenate([c + rng.normal(0, 1.0, (150, 8)) for c in centres])
    features = torch.tensor(
        np.concatenate([blobs, rng.normal(0, 1.0, (40, 8))]), dtype=torch.float32
    )
    labels = torch.tensor([0] * 450 + [1] * 40)
    _, valid = padded_layout(labels, 2)
    sample = kmeans._seed_sample(valid, 3, np.random.default_rng(1))
    assert sample.shape == (2, 256) and valid.gather(1, sample)[0].all()
    assert len(set(sample[0].tolist())) == 256
    assert sorted(sample[1][valid.gather(1, sample)[1]].tolist()) == list(range(40))
    quota = GroupQuota(labels, torch.tensor([3, 2]), 5)
    chosen = cluster(features, labels, labels, quota, np.random.default_rng(1))
    assert_one_per_blob_nearest_its_mean(chosen[:3], features, 150)
    assert len(set(chosen[3:].tolist())) == 2 and (chosen[3:] >= 450).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cluster_keeps_the_member_nearest_each_centre_in_float32_whatever_the_product(
    monkeypatch, dtype
):
    """bfloat16 rounds these blobs' coordinates by up to ~0.016, about their spread: the kept
    member is measured again in float32, so it is still the one nearest its blob's mean."""
    monkeypatch.setattr(kmeans, "product_dtype", lambda device: dtype)
    rng = np.random.default_rng(0)
    blobs = np.concatenate([c + rng.normal(0, 0.02, (40, 8)) for c in 10.0 * np.eye(3, 8)])
    features = torch.tensor(blobs, dtype=torch.float32)
    labels = torch.zeros(120, dtype=torch.long)
    quota = GroupQuota(labels, torch.tensor([3]), 3)
    chosen = cluster(features, labels, labels, quota, np.random.default_rng(1))
    assert_one_per_blob_nearest_its_mean(chosen, features, 40)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_takes_the_one_signature_and_respects_the_quota(name):
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (200,))
    features = torch.rand(200, 1) if name == "rainbow" else torch.randn(200, 6)
    groups = labels
    counts = torch.tensor([5, 0, 7, 3])
    quota = GroupQuota(groups, counts, 15)
    chosen = STRATEGIES[name](features, labels, torch.zeros(200), quota, np.random.default_rng(0))
    assert len(torch.unique(chosen)) == len(chosen) == 15
    assert torch.bincount(groups[chosen], minlength=4).tolist() == [5, 0, 7, 3]


def test_fixed_versus_flexible_quotas_on_a_hand_made_stream():
    """3 tasks of 2 new classes, 20 samples each, capacity 12, 6 classes in all."""
    flexible = MEMORIES.get("parametric")(capacity=12, seed=0, intake="task", fill=False)
    fixed = MEMORIES.get("parametric")(capacity=12, seed=0, intake="task", fixed=True, n_classes=6)
    expected = {"flexible": [[6, 6], [3, 3, 3, 3], [2] * 6], "fixed": [[2, 2], [2] * 4, [2] * 6]}
    for task in range(3):
        task_indices = torch.arange(task * 40, (task + 1) * 40)
        task_labels = 2 * task + task_indices % 2
        for name, memory in (("flexible", flexible), ("fixed", fixed)):
            memory.end_task(task_indices, task_labels, context(task, 2 * task + 2), False)
            counts = memory.class_counts(2 * task + 2).tolist()
            assert counts == expected[name][task], name
    # fill (the default) hands a small class's unused share to the others.
    filled = MEMORIES.get("parametric")(capacity=12, seed=0, intake="task")
    labels = torch.tensor([0] * 20 + [1] * 2 + [2] * 20)
    filled.end_task(torch.arange(42), labels, context(0, 3), False)
    assert filled.class_counts(3).tolist() == [5, 2, 5]


def test_a_user_strategy_and_a_user_grouping_by_import_path_are_called():
    user_functions.CALLS.clear()
    memory = MEMORIES.get("parametric")(
        capacity=4,
        seed=0,
        groupby="tests.memory.user_functions:parity",
        select="tests.memory.user_functions:pick_first",
    )
    memory.add(torch.arange(10, 20), torch.arange(10), 10)
    assert user_functions.CALLS == [10]
    assert memory.indices.tolist() == [10, 11]  # the first even and the first odd label


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"select": "herd"}, "unknown mem_manage.select 'herd'"),
        ({"groupby": "colour"}, "unknown mem_manage.groupby 'colour'"),
        ({"select": "nowhere.module:f"}, "neither a built-in name nor an importable function"),
        ({"select": "herding"}, "use mem_manage.intake=task"),
        ({"intake": "epoch"}, "unknown mem_manage.intake"),
    ],
)
def test_bad_parts_fail_with_a_message_that_says_what_to_do(options, message):
    with pytest.raises(ChoiceError, match=message):
        MEMORIES.get("parametric")(capacity=10, seed=0, **options)


def test_fixed_quotas_need_the_runs_number_of_groups():
    with pytest.raises(ValueError, match="needs the run's number of groups"):
        MEMORIES.get("class_balanced")(capacity=10, seed=0, fixed=True)


def test_features_come_from_a_named_layer_even_before_an_in_place_relu():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(9, 5),
        torch.nn.ReLU(inplace=True),
        torch.nn.Linear(5, 2),
    )
    images = torch.randint(0, 255, (30, 1, 3, 3), dtype=torch.uint8)
    selection = SelectionContext(
        model=model,
        fetch_images=lambda i: images[i],
        normalize=lambda x: x.float() / 255,
        n_exposed=2,
        task_id=0,
        device=torch.device("cpu"),
        batchsize=7,
    )
    features = extract_features(torch.arange(30), selection, layer="1")
    expected = model[1](model[0](images.float() / 255))
    assert torch.allclose(features, expected)
    assert (features < 0).any()  # taken before the in-place ReLU overwrote the output
    with pytest.raises(ValueError, match="is not a layer of the model; its layers are: 0, 1"):
        extract_features(torch.arange(3), selection, layer="backbone.9")


def test_a_feature_preset_reads_the_configured_layer():
    images = torch.randint(0, 255, (200, 1, 3, 3), dtype=torch.uint8)
    chosen = {}
    for layer in ("", "1"):
        memory = MEMORIES.get("closest_to_center")(capacity=10, seed=0, layer=layer)
        selection = context(0, 2, images)
        selection.model.features = lambda x: x.flatten(1) ** 3  # differs from layer "1"
        memory.end_task(torch.arange(200), torch.arange(200) % 2, selection, streamed=False)
        chosen[layer] = memory.indices.tolist()
    assert chosen[""] != chosen["1"]
