"""The report's plots: legends from the settings that differ, readable matrix text, and every
plot linked from report.md."""

import pandas as pd

from rainbow_runner.runner.reporting.plots import legend_labels, text_colour
from rainbow_runner.runner.reporting.report import write_report
from tests.runner.test_report import make_run


def test_legends_name_only_the_settings_that_differ():
    runs = pd.DataFrame(
        {
            "config": ["a", "a", "b", "c"],
            "mode": ["er", "er", "er", "rm"],
            "dataset": ["digits"] * 4,
            "optimizer": ["sgd", "sgd", "adam", "sgd"],
        }
    )
    labels = legend_labels(runs, ["mode", "dataset", "optimizer"])
    assert labels == {"a": "er optimizer=sgd", "b": "er optimizer=adam", "c": "rm optimizer=sgd"}
    assert legend_labels(runs[runs.config == "a"], ["mode", "dataset"]) == {"a": "er"}


def test_matrix_text_is_dark_on_bright_cells_and_light_on_dark_ones():
    assert text_colour(95.0) == "black" and text_colour(10.0) == "white"


def test_report_md_links_every_plot(tmp_path):
    for seed in (1, 2):
        make_run(tmp_path / f"er_{seed}", "er", seed, 80.0 + seed)
        make_run(tmp_path / f"ft_{seed}", "finetune", seed, 60.0 + seed)
    write_report([tmp_path], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    plots = sorted(path.name for path in (tmp_path / "out").glob("*.png"))
    assert len(plots) == 3 and "## Plots" in text
    assert all(f"({name})" in text for name in plots)
