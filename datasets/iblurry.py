"""i-Blurry-N-M streams (Koh et al., ICLR 2022): disjoint and blurry classes, no task boundaries.

N% of the classes are disjoint: partitioned over the periods, each seen only in its own. The
other classes are blurry: each has a home period holding (100 - M)% of its samples, and its
other M% are dealt over the other periods. Within a period the samples are shuffled, so a new
class appears when its first sample does; labels are the classes' order of first appearance
(as the paper's code, whose `exposed_classes` grow with the stream), so the classes seen after
s stream samples are exactly the labels below max(label so far) + 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rainbow_runner.datasets.base import DatasetError
from rainbow_runner.datasets.rm_json import _class_order, available_stems
from rainbow_runner.datasets.splits import TaskSplit


def iblurry_class_roles(
    n_classes: int, n_tasks: int, disjoint_pct: float, generator: torch.Generator
) -> tuple[list[list[int]], list[list[int]]]:
    """Per period, its disjoint classes and the blurry classes whose home it is.

    As the paper's sampler: a seeded class permutation; the first floor(C·N/100 / T)·T classes
    are disjoint, T-way partitioned; the rest are blurry (home periods dealt round-robin, where
    the paper's code drops the C mod T leftover classes: here every class is streamed).
    """
    if not 0 <= disjoint_pct <= 100:
        raise ValueError(f"exp.disjoint_classes={disjoint_pct} is outside 0..100 (e.g. 50).")
    order = torch.randperm(n_classes, generator=generator).tolist()
    n_disjoint = int(n_classes * disjoint_pct // 100) // n_tasks * n_tasks
    per_task = n_disjoint // n_tasks
    disjoint = [order[t * per_task : (t + 1) * per_task] for t in range(n_tasks)]
    blurry: list[list[int]] = [[] for _ in range(n_tasks)]
    for position, klass in enumerate(order[n_disjoint:]):
        blurry[position % n_tasks].append(klass)
    return disjoint, blurry


def first_appearance_split(
    train_labels: torch.Tensor, periods: list[torch.Tensor], n_classes: int
) -> TaskSplit:
    """The TaskSplit of periods of original-label indices: labels in order of first appearance,
    exposed[t] = classes seen by the end of period t, and stream-following exposure."""
    stream = torch.cat(periods)
    seen: dict[int, None] = {}
    for klass in train_labels[stream].tolist():
        seen.setdefault(klass, None)
    missing = sorted(set(range(n_classes)) - set(seen))
    class_order = torch.tensor(list(seen) + missing, dtype=torch.long)
    exposed, n_seen, start = [], 0, 0
    for period in periods:
        start += len(period)
        n_seen = len({*train_labels[stream[:start]].tolist()}) if start else n_seen
        exposed.append(max(1, n_seen))
    classes_per_task = max(1, n_classes // len(periods))
    return TaskSplit(class_order, list(periods), exposed, classes_per_task, stream_exposure=True)


def make_iblurry_split(
    train_labels: torch.Tensor,
    n_classes: int,
    n_tasks: int,
    disjoint_pct: float,
    blurry_pct: float,
    seed: int,
) -> TaskSplit:
    """The i-Blurry-N-M stream of a data set, reproducible from seed.

    Each blurry class keeps round((100 - M)% · its count) samples at home; its other samples
    are pooled with the other blurry classes', shuffled, and each is dealt to the other period
    with the fewest dealt so far (periods stay near equal size; the paper's code deals its pool
    to every period, home included). Every sample appears exactly once.
    """
    if not 0 <= blurry_pct <= 100:
        raise ValueError(f"exp.blurry={blurry_pct} is outside 0..100 (e.g. exp.blurry=10).")
    generator = torch.Generator().manual_seed(int(seed))
    disjoint, blurry = iblurry_class_roles(n_classes, n_tasks, disjoint_pct, generator)
    periods: list[list[torch.Tensor]] = [[] for _ in range(n_tasks)]
    pool, pool_home = [], []
    for task in range(n_tasks):
        for klass in disjoint[task] + blurry[task]:
            members = torch.nonzero(train_labels == klass).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            n_away = 0 if klass in disjoint[task] or n_tasks == 1 else len(members)
            n_away = int(round(n_away * blurry_pct / 100.0))
            periods[task].append(members[: len(members) - n_away])
            pool.append(members[len(members) - n_away :])
            pool_home += [task] * n_away
    if pool:
        shuffle = torch.randperm(sum(len(p) for p in pool), generator=generator)
        pooled, homes = torch.cat(pool)[shuffle], torch.tensor(pool_home, dtype=torch.long)[shuffle]
        dealt = [[] for _ in range(n_tasks)]
        for index, home in zip(pooled.tolist(), homes.tolist(), strict=True):
            target = min((t for t in range(n_tasks) if t != home), key=lambda t: len(dealt[t]))
            dealt[target].append(index)
        for task in range(n_tasks):
            periods[task].append(torch.tensor(dealt[task], dtype=torch.long))
    shuffled = []
    for parts in periods:
        indices = torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
        shuffled.append(indices[torch.randperm(len(indices), generator=generator)])
    return first_appearance_split(train_labels, shuffled, n_classes)


def iblurry_file_stem(dataset: str, n_tasks: int, disjoint: int, blurry: int, seed: int) -> str:
    return f"{dataset}_split{n_tasks}_n{disjoint}_m{blurry}_rand{seed}_task"


def read_iblurry_split(
    split_dir: str,
    dataset: str,
    n_tasks: int,
    disjoint_pct: int,
    blurry_pct: int,
    seed: int,
    train_files: list[str],
    train_labels: torch.Tensor,
    class_names: list[str],
) -> TaskSplit:
    """The stream of the paper's `{ds}_split{T}_n{N}_m{M}_rand{seed}_task{i}.json` files.

    Records are {filepath (or file_name), klass, label}; the files' labels are checked to be
    one per class, but the runner's labels follow first appearance as the paper's code does.
    split_dir is the folder of the files or its parent holding a `{dataset}/` folder.
    """
    stem = iblurry_file_stem(dataset, n_tasks, disjoint_pct, blurry_pct, seed)
    folders = [Path(split_dir), Path(split_dir) / dataset]
    folder = next((f for f in folders if (f / f"{stem}0.json").is_file()), None)
    if folder is None:
        available = available_stems(folders, f"{dataset}_split*_task0.json")
        raise DatasetError(
            f"No split file {stem}0.json in {' or '.join(map(str, folders))}. "
            f"Available for {dataset}: {', '.join(available) or 'none'}."
        )
    n_files = len(list(folder.glob(f"{stem}*.json")))
    if n_files != n_tasks:
        raise DatasetError(f"{folder}/{stem}*.json: {n_files} files, but n_tasks={n_tasks}.")
    position = {name: index for index, name in enumerate(train_files)}
    all_records, periods = [], []
    for task in range(n_tasks):
        path = folder / f"{stem}{task}.json"
        try:
            records = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetError(f"Cannot read split file {path}: {error}") from error
        names = [record.get("filepath", record.get("file_name")) for record in records]
        unknown = [name for name in names if name not in position]
        if unknown:
            raise DatasetError(
                f"{path}: {len(unknown)} file names are not in the data set's train files, "
                f"e.g. {unknown[:3]} (the data set lists e.g. {train_files[:2]})."
            )
        all_records += records
        periods.append(torch.tensor([position[name] for name in names], dtype=torch.long))
    _class_order(all_records, class_names, f"{folder}/{stem}*")  # one label per class, checked
    return first_appearance_split(train_labels, periods, len(class_names))
