"""Write our permuted/rotated stream as a GEM-format file, so other codebases run our exact tasks.

    python scripts/write_gem_format.py permuted_fashion_mnist out.pt --n-tasks 20 \
        --split-seed 1 --samples-per-task 1000 --data-root /usr/share/datasets

The file is `torch.save([train_tasks, test_tasks])`, each task [descriptor, X, y] with X float
(N, D) in [0, 1] (datasets/gem_format.py); the descriptor is the task's pixel permutation
(int64, as GEM's mnist_permutations.py) or its rotation angle in degrees (float). Reading it back
with dataset=gem_file dataset.path=out.pt gives the same stream as dataset=<name>.
"""

from __future__ import annotations

import argparse

import torch

from rainbow_runner.datasets import load_dataset
from rainbow_runner.datasets.gem_format import write_gem_file
from rainbow_runner.datasets.transformed import (
    task_angles,
    task_permutations,
    transform_of,
    transformed_stream,
)


def samples(value: str) -> float | int | None:
    """--samples-per-task: a count, a fraction, or 'all'."""
    if value == "all":
        return None
    return float(value) if "." in value else int(value)


def write(
    name: str,
    out: str,
    n_tasks: int,
    split_seed: int,
    samples_per_task: float | None,
    data_root: str = "./data",
) -> None:
    """The stream dataset=name, n_tasks=..., split_seed=... trains on, written to out."""
    transform = transform_of(name)
    if transform is None:
        raise SystemExit(f"{name} is not a permuted_<name> or rotated_<name> data set.")
    kind, base = transform
    data = load_dataset(base, data_root)
    stream, split = transformed_stream(data, kind, n_tasks, split_seed, samples_per_task)
    _, _, h, w = data.train_x.shape
    if kind == "permuted":
        descriptors = task_permutations(h * w, n_tasks, split_seed)
    else:
        descriptors = [torch.tensor(angle) for angle in task_angles(n_tasks, split_seed)]
    write_gem_file(stream, split, out, descriptors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="permuted_<name> or rotated_<name>, e.g. permuted_mnist")
    parser.add_argument("out", help="the .pt file to write")
    parser.add_argument("--n-tasks", type=int, default=20)
    parser.add_argument("--split-seed", type=int, default=1, help="the runner's split_seed")
    parser.add_argument(
        "--samples-per-task", type=samples, default=1000, help="a count, a fraction or all"
    )
    parser.add_argument("--data-root", default="./data")
    args = parser.parse_args()
    write(
        args.dataset, args.out, args.n_tasks, args.split_seed, args.samples_per_task, args.data_root
    )


if __name__ == "__main__":
    main()
