"""The report's plots: accuracy curves per data set and split, one accuracy matrix per
configuration. Tasks are counted from 0, as in the CSVs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

BAND = "line: mean over seeds; band: ± sample std"


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+=-]+", "_", label).strip("_")


def text_colour(value: float, vmax: float = 100.0) -> str:
    """Black on viridis' bright upper half, white on its dark lower half."""
    return "black" if value >= 0.6 * vmax else "white"


def legend_labels(runs: pd.DataFrame, keys: list[str]) -> dict[str, str]:
    """Each configuration named by the settings that differ among the runs given (the panel's)."""
    differing = [key for key in keys if runs[key].astype(str).nunique() > 1] or ["mode"]
    labels = {}
    for label, group in runs.groupby("config"):
        first = group.iloc[0]
        parts = [str(first[key]) if key == "mode" else f"{key}={first[key]}" for key in differing]
        labels[label] = " ".join(parts)
    return labels


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def side_by_side(runs: pd.DataFrame) -> tuple[object, list[tuple[object, tuple, pd.DataFrame]]]:
    """A figure with one panel per (dataset, exp) of the runs: (axis, key, its runs) each."""
    keys = sorted(runs.groupby(["dataset", "exp"]).groups)
    figure, axes = pyplot().subplots(1, len(keys), figsize=(6 * len(keys), 4.8), squeeze=False)
    panels = [
        (axis, (dataset, exp), runs[(runs["dataset"] == dataset) & (runs["exp"] == exp)])
        for axis, (dataset, exp) in zip(axes[0], keys, strict=True)
    ]
    return figure, panels


def plot_curves(runs: pd.DataFrame, keys: list[str], out: Path) -> Path:
    """accuracy_curves.png: accuracy after each task, mean over seeds with a ±std band."""
    figure, panels = side_by_side(runs)
    for axis, (dataset, exp), in_panel in panels:
        names = legend_labels(in_panel, keys)
        for label, group in in_panel.groupby("config"):
            curves = [
                pd.read_csv(Path(d) / "results" / "tasks.csv")["test_acc"] for d in group.run_dir
            ]
            curves = np.vstack([c.to_numpy() for c in curves if len(c) == len(curves[0])])
            mean, std = curves.mean(axis=0), curves.std(axis=0, ddof=1) if len(curves) > 1 else 0
            name = f"{names[label]} (n={len(curves)})"
            if group["mode"].iloc[0] == "joint":
                axis.axhline(mean[-1], linestyle="--", color="gray", label=f"{name}, final")
                continue
            tasks = np.arange(len(mean))
            (line,) = axis.plot(tasks, mean, marker="o", label=name)
            axis.fill_between(tasks, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            axis.set_xticks(tasks)
        axis.set_title(f"{dataset} {exp}\n{BAND}", fontsize=11)
        axis.set(xlabel="after task (from 0)", ylabel="test accuracy (%)")
        axis.legend(fontsize=8)
    return _save(figure, out / "accuracy_curves.png")


def plot_matrices(runs: pd.DataFrame, out: Path) -> list[Path]:
    """acc_matrix_<config>.png: accuracy on each task's classes after each task, seed mean."""
    plt = pyplot()
    written = []
    for label, group in runs.groupby("config"):
        files = [Path(d) / "results" / "acc_matrix.csv" for d in group.run_dir]
        matrices = [
            pd.read_csv(f).drop(columns="after_task").to_numpy() for f in files if f.exists()
        ]
        if not matrices:
            continue
        matrices = [m for m in matrices if m.shape == matrices[0].shape]
        matrix = np.mean(matrices, axis=0)
        rows, columns = matrix.shape
        figure, axis = plt.subplots(figsize=(max(5.0, 2.0 + 0.8 * columns), 2.0 + 0.7 * rows))
        image = axis.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
        if matrix.size <= 400:
            for (i, j), value in np.ndenumerate(matrix):
                colour = text_colour(value)
                axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8, color=colour)
        axis.set_xticks(range(columns), [str(j) for j in range(columns)])
        axis.set_yticks(range(rows), [str(i) for i in range(rows)])
        axis.set(xlabel="classes of task (from 0)", ylabel="after task (from 0)")
        seeds = f"mean of {len(matrices)} seed{'s' if len(matrices) > 1 else ''}"
        axis.set_title(f"{label.replace(' ', chr(10), 1)}\n({seeds})", fontsize=10)
        figure.colorbar(image, ax=axis, label="accuracy (%)")
        written.append(_save(figure, out / f"acc_matrix_{slug(label)}.png"))
    return written


def plot_anytime(runs: pd.DataFrame, keys: list[str], out: Path) -> Path | None:
    """anytime_curves.png: anytime accuracy vs stream samples seen (results/anytime.csv), one
    line per configuration, mean over seeds with a ±std band; None when no run has the file."""
    files = {d: Path(d) / "results" / "anytime.csv" for d in runs.run_dir}
    with_curve = runs[[files[d].exists() for d in runs.run_dir]]
    if with_curve.empty:
        return None
    figure, panels = side_by_side(with_curve)
    for axis, (dataset, exp), in_panel in panels:
        names = legend_labels(in_panel, keys)
        for label, group in in_panel.groupby("config"):
            curves = [pd.read_csv(files[d]) for d in group.run_dir]
            curves = [c for c in curves if len(c) == len(curves[0]) and len(c)]
            if not curves:
                continue
            accuracy = np.vstack([c["accuracy"].to_numpy() for c in curves])
            seen = np.mean([c["n_samples_seen"].to_numpy() for c in curves], axis=0)
            mean = accuracy.mean(axis=0)
            std = accuracy.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
            (line,) = axis.plot(seen, mean, label=f"{names[label]} (n={len(curves)})")
            axis.fill_between(seen, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        axis.set_title(f"{dataset} {exp}: anytime accuracy\n{BAND}", fontsize=11)
        axis.set(xlabel="stream samples seen", ylabel="accuracy on seen classes (%)")
        axis.legend(fontsize=8)
    return _save(figure, out / "anytime_curves.png")


def _save(figure, path: Path) -> Path:
    """Lay out, write and close a figure (closed: sweeps plot many)."""
    plt = pyplot()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
