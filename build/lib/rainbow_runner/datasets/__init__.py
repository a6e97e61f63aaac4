"""Data sets as uint8 image tensors (or lazy folders) plus class-incremental task splits."""

from rainbow_runner.datasets.base import DatasetError, ImageData, ImageSource
from rainbow_runner.datasets.registry import DATASET_NAMES, load_dataset
from rainbow_runner.datasets.rm_json import read_rm_split
from rainbow_runner.datasets.splits import TaskSplit, make_split

__all__ = [
    "DATASET_NAMES",
    "DatasetError",
    "ImageData",
    "ImageSource",
    "TaskSplit",
    "load_dataset",
    "make_split",
    "read_rm_split",
]
