"""Avalanche's side of bench/vs_avalanche.py: one strategy, one seed, on the shared protocol.

Runs in .venv-avalanche (scripts/setup_avalanche.sh), started by the bench as a child process
from outside the repository. Builds Avalanche's class-incremental benchmark from the same
Fashion-MNIST IDX files as tensors (class order 0..9, 5 experiences of 2 classes, normalised by
the training set's mean and std as our loader does), trains the MLP 784-400-400-10 (Avalanche's
SimpleMLP, dropout 0) with SGD lr 0.01 momentum 0.9, batch 32, 1 epoch per experience, and
prints one JSON line: the final accuracy on all 10,000 test images and the training seconds.

    .venv-avalanche/bin/python bench/avalanche_side.py --strategy Replay --seed 1 \
        --knobs '{"mem_size": 500}'
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch
from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.models import SimpleMLP
from avalanche.training import supervised
from avalanche.training.determinism.rng_manager import RNGManager
from avalanche.training.plugins import EvaluationPlugin, RWalkPlugin
from torch import nn

from rainbow_runner.datasets.folder import channel_stats
from rainbow_runner.datasets.idx import find_idx_files, read_idx

FASHION = Path("/usr/share/datasets/fashion-mnist")
# Avalanche's MlpVAE decodes through a sigmoid and then Normalize(0.1307, 0.3081) (MNIST's
# statistics, fixed in its decoder): GenerativeReplay's images are normalised with those, so that
# generated and real images share a scale (the other strategies: Fashion-MNIST's own statistics).
MNIST_STATS = {"GenerativeReplay": (0.1307, 0.3081)}


class TensorSet(torch.utils.data.TensorDataset):
    """Images and labels as tensors, with the `targets` Avalanche's generators read."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__(images, labels)
        self.targets = labels.tolist()


def load_sets(
    folder: Path, stats: tuple[float, float] | None = None
) -> tuple[TensorSet, TensorSet]:
    """Fashion-MNIST as float tensors normalised as the runner normalises its uint8 images
    (stats: a fixed mean and std instead of the training set's)."""
    files = find_idx_files(folder)
    if files is None:
        raise SystemExit(f"no Fashion-MNIST IDX files in {folder}")
    arrays = {key: read_idx(path, 3 if key.endswith("x") else 1) for key, path in files.items()}
    train_x = torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1)
    mean, std = ([stats[0]], [stats[1]]) if stats else channel_stats(train_x)

    def images(raw: torch.Tensor) -> torch.Tensor:
        return (raw.float() / 255 - mean[0]) / std[0]

    test_x = torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1)
    train_y = torch.from_numpy(arrays["train_y"].astype("int64"))
    test_y = torch.from_numpy(arrays["test_y"].astype("int64"))
    return TensorSet(images(train_x), train_y), TensorSet(images(test_x), test_y)


def _multistep_without_verbose(*args, verbose: bool = False, **kwargs):
    return torch.optim.lr_scheduler.MultiStepLR(*args, **kwargs)


class IgnoresTaskLabels(nn.Module):
    """The MLP called as model(x, task_labels), as LaMAML's functional_call calls it."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp(x)


def build_strategy(name: str, knobs: dict, mlp: SimpleMLP, common: dict):
    """Avalanche's strategy `name` with its own knobs; models are adapted where it needs one."""
    if name == "RWalk":  # a plugin over plain training in Avalanche
        return supervised.Naive(model=mlp, plugins=[RWalkPlugin(**knobs)], **common)
    if name == "DER++":
        return supervised.DER(model=mlp, **knobs, **common)
    if name == "ICaRL":  # its loss is its own (BCE with distillation): no criterion
        features = nn.Sequential(nn.Flatten(), mlp.features)
        common = {key: value for key, value in common.items() if key != "criterion"}
        return supervised.ICaRL(
            feature_extractor=features, classifier=mlp.classifier, **knobs, **common
        )
    if name == "BiC":  # 0.6.0 passes MultiStepLR(verbose=False), which this torch no longer takes
        from avalanche.training.plugins import bic

        bic.MultiStepLR = _multistep_without_verbose
    if name == "SCR":
        from avalanche.models import SCRModel

        features = nn.Sequential(nn.Flatten(), mlp.features)
        projection = nn.Sequential(nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 128))
        return supervised.SCR(model=SCRModel(features, projection), **knobs, **common)
    if name == "CoPE":  # its prototypes live in a p_size-dimensional output space
        p_size = knobs.get("p_size", 100)
        model = SimpleMLP(num_classes=p_size, hidden_size=400, hidden_layers=2, drop_rate=0)
        common = {**common, "optimizer": torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)}
        return supervised.CoPE(model=model, **knobs, **common)
    if name == "LaMAML":  # lamaml_v2 (torch.func): the `higher`-based lamaml is not installed
        from avalanche.training.supervised.lamaml_v2 import LaMAML

        return LaMAML(model=IgnoresTaskLabels(mlp), **knobs, **common)
    return getattr(supervised, name)(model=mlp, **knobs, **common)


def protocol(seed: int, data: Path = FASHION, stats=None):
    """The seeded class-incremental benchmark (5 experiences, classes 0..9 in order) and the
    MLP 784-400-400-10 of the protocol (also the MAS traces' set-up)."""
    RNGManager.set_random_seeds(seed)
    train_set, test_set = load_sets(data, stats)
    benchmark = nc_benchmark(
        train_set,
        test_set,
        n_experiences=5,
        task_labels=False,
        shuffle=False,
        seed=seed,
        fixed_class_order=list(range(10)),
    )
    mlp = SimpleMLP(num_classes=10, input_size=784, hidden_size=400, hidden_layers=2, drop_rate=0)
    return benchmark, mlp


def training_args(mlp: SimpleMLP) -> dict:
    """The protocol's optimizer, loss, batch, epochs and silent evaluator for a strategy."""
    return {
        "optimizer": torch.optim.SGD(mlp.parameters(), lr=0.01, momentum=0.9),
        "criterion": nn.CrossEntropyLoss(),
        "train_mb_size": 32,
        "train_epochs": 1,
        "eval_mb_size": 1024,
        "device": torch.device("cpu"),
        "evaluator": EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),  # no printing
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", required=True, help="Avalanche's class name, e.g. Replay")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--knobs", default="{}", help="the strategy's own arguments, as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=FASHION)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="No loggers specified")
    if args.threads:
        torch.set_num_threads(args.threads)
    benchmark, mlp = protocol(args.seed, args.data, MNIST_STATS.get(args.strategy))
    common = training_args(mlp)
    strategy = build_strategy(args.strategy, json.loads(args.knobs), mlp, common)
    started = time.perf_counter()
    if args.strategy == "JointTraining":  # all experiences at once
        strategy.train(benchmark.train_stream)
    else:
        for experience in benchmark.train_stream:
            strategy.train(experience)
    train_s = time.perf_counter() - started
    metrics = strategy.eval(benchmark.test_stream)
    accuracy = next(v for k, v in metrics.items() if k.startswith("Top1_Acc_Stream/eval_phase"))
    result = {"strategy": args.strategy, "seed": args.seed, "A_last": 100 * accuracy}
    result["train_s"] = train_s
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
