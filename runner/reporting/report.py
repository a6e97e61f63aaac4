"""`python -m runner.report PATH... [--out DIR]`: mean ± std over seeds for every configuration.

A configuration is every setting but the seeds (runner/reporting/settings.py): runs whose
settings differ in anything (an optimizer, `mem_batchsize`, `mode.reg_coef`) are never averaged
together, and the settings that tell the rows apart are shown as columns.

Reads every run's results/summary.csv, tasks.csv and acc_matrix.csv under the paths and writes
report.csv, report.md, accuracy_curves.png and acc_matrix_<config>.png. Runs without a summary,
failed or cut short are listed in report.md and counted in n_incomplete, never dropped silently.
Jobs in a sweep directory that its multirun.yaml did not launch are listed and not merged.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rainbow_runner.runner.config import memory_of
from rainbow_runner.runner.reporting.plots import plot_anytime, plot_curves, plot_matrices
from rainbow_runner.runner.reporting.settings import MISSING, distinguishing_keys, saved_settings
from rainbow_runner.runner.reporting.sweeps import foreign_runs

CONFIG_KEYS = ["mode", "mem_manage", "dataset", "stream", "exp", "mem_size", "trans"]
# summary.csv's other settings, shown when they tell configurations apart
EXTRA_KEYS = [
    "scenario",
    "model",
    "n_tasks",
    "n_epoch",
    "batchsize",
    "lr",
    "optimizer",
    "scheduler",
    "mem_batchsize",
    "warmup_epochs",
    "memory_metric",
]
GROUP_KEYS = CONFIG_KEYS + EXTRA_KEYS
METRICS = ["A_last", "A_avg", "F_last", "I_last"]
CSV_METRICS = METRICS + ["ACC", "BWT", "FWT", "seconds", "A_AUC"]  # A_AUC: runs with eval_period
JOINT_KEYS = ["dataset", "exp", "model"]  # a joint run gives I_last to runs sharing these


@dataclass
class Report:
    """The aggregated table and the runs it could not use, as written to disk."""

    table: pd.DataFrame
    runs: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    markdown: str = ""


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Every run directory under paths: one with results/, Hydra's .hydra/ or a run.log."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise ValueError(f"report path {path} does not exist.")
        for marker in ("results/summary.csv", "results/tasks.csv", ".hydra/config.yaml"):
            found.update(hit.parent.parent for hit in path.rglob(marker))
        found.update(hit.parent for hit in path.rglob("run.log"))
    return sorted(found)


def expected_tasks(row: pd.Series) -> int:
    """mode=joint trains all tasks as one; every other mode trains n_tasks tasks."""
    return 1 if row["mode"] == "joint" else int(row["n_tasks"])


def config_of_unfinished_run(run_dir: Path) -> dict | None:
    """The settings of a run that wrote no summary, from Hydra's saved config (if readable)."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.exists():
        return None
    try:
        from omegaconf import OmegaConf

        import rainbow_runner.runner.config  # noqa: F401  (the config's resolvers)
        from rainbow_runner.runner.app import config_choices

        return config_choices(OmegaConf.load(saved))
    except Exception:  # an unreadable config still gets its directory listed
        return None


def load_runs(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """One row per run with a `complete` flag and its settings (runner/reporting/settings.py),
    and a line for every run that is not complete."""
    rows, problems = [], []
    for run_dir in run_dirs:
        summary_file = run_dir / "results" / "summary.csv"
        if summary_file.exists():
            row = pd.read_csv(summary_file).iloc[0].to_dict()
            done, expected = int(row["tasks_done"]), expected_tasks(pd.Series(row))
            row["complete"] = row["status"] == "complete" and done >= expected
            if not row["complete"]:
                problems.append(f"`{run_dir}`: {row['status']}, {done}/{expected} tasks")
        else:
            row = config_of_unfinished_run(run_dir)
            overrides = run_dir / ".hydra" / "overrides.yaml"
            detail = (
                overrides.read_text().replace("\n- ", " ").strip("- \n")
                if overrides.exists()
                else ""
            )
            problems.append(
                f"`{run_dir}`: no results/summary.csv" + (f" ({detail})" if detail else "")
            )
            if row is None:
                continue
            row.update(status="no summary", tasks_done=0, complete=False)
        memoryless = memory_of(str(row["mode"]), None, "none") == "none"
        if memoryless:  # summaries written before config_choices said so
            row.update(mem_manage="none", mem_size=0, memory_metric="none")
        settings = saved_settings(run_dir, set(row), memoryless)
        row.update(settings)
        row["settings"] = list(settings)
        row["run_dir"] = str(run_dir)
        rows.append(row)
    runs = pd.DataFrame(rows)
    if not runs.empty:
        runs["trans"] = runs["trans"].fillna("none").astype(str)
        runs = runs.reindex(columns=list(dict.fromkeys([*runs.columns, *GROUP_KEYS, *CSV_METRICS])))
    return runs, problems


def identify_configurations(runs: pd.DataFrame) -> list[str]:
    """Label each run's configuration in runs["config"]; return the keys shown besides
    CONFIG_KEYS: those that tell configurations apart (summary columns, then group choices,
    then top-level keys, then method/memory/model knobs)."""
    saved = sorted({key for keys in runs.pop("settings") for key in keys})
    saved.sort(key=lambda key: ("." in key, key))
    for key in [*saved, *EXTRA_KEYS]:
        if runs[key].isna().any():
            runs[key] = runs[key].astype(object).fillna(MISSING)
    shown = distinguishing_keys(runs, CONFIG_KEYS, EXTRA_KEYS + saved)
    runs["config"] = [config_label(row, shown) for row in runs.to_dict("records")]
    return shown


def attach_joint_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """joint_acc from complete joint runs (same split seed first), and I_last recomputed from it."""
    runs = runs.copy()
    joint = runs[runs["complete"] & (runs["mode"] == "joint")]
    by_split = joint.groupby([*JOINT_KEYS, "split_seed"])["A_last"].mean().rename("joint_split")
    by_setting = joint.groupby(JOINT_KEYS)["A_last"].mean().rename("joint_any")
    runs = runs.merge(by_split, how="left", left_on=[*JOINT_KEYS, "split_seed"], right_index=True)
    runs = runs.merge(by_setting, how="left", left_on=JOINT_KEYS, right_index=True)
    runs["joint_acc"] = runs["joint_split"].fillna(runs["joint_any"])
    found = runs["joint_acc"].notna()
    runs.loc[found, "I_last"] = runs.loc[found, "joint_acc"] - runs.loc[found, "A_last"]
    return runs.drop(columns=["joint_split", "joint_any"])


def aggregate(runs: pd.DataFrame, shown: list[str]) -> pd.DataFrame:
    """One row per configuration: mean and sample std (ddof=1) over its complete runs."""
    complete = runs[runs["complete"]]
    stats = complete.groupby("config")[CSV_METRICS].agg(["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    grouped = runs.groupby("config")
    table = pd.DataFrame(
        {
            **{key: grouped[key].first() for key in CONFIG_KEYS + shown},
            "n_seeds": grouped["complete"].sum().astype(int),
            "n_incomplete": grouped["complete"].apply(lambda done: int((~done).sum())),
            "seeds": grouped["seed"].apply(lambda seeds: " ".join(map(str, sorted(set(seeds))))),
        }
    )
    table["joint_acc_mean"] = complete.groupby("config")["joint_acc"].mean()
    table = table.join(stats).reset_index()
    order = ["dataset", "exp", "stream", "mem_size", "mode", "config"]
    return table.sort_values(order, kind="stable").reset_index(drop=True)


def absent_seeds(runs: pd.DataFrame) -> list[str]:
    """Configurations lacking seeds that other configurations of the same data set have."""
    lines = []
    for _, of_dataset in runs.groupby("dataset"):
        all_seeds = set(of_dataset["seed"])
        for label, of_config in of_dataset.groupby("config"):
            missing = sorted(all_seeds - set(of_config["seed"]))
            if missing:
                lines.append(f"{label}: no run for seed {', '.join(map(str, missing))}")
    return lines


def config_label(config: dict, extras: list[str]) -> str:
    """A short name of a configuration, for legends, titles and file names."""
    label = (
        f"{config['mode']}/{config['mem_manage']} {config['dataset']} {config['stream']} "
        f"{config['exp']} mem{config['mem_size']} {config['trans']}"
    )
    return label + "".join(f" {key}={config[key]}" for key in extras)


def mean_std(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.2f}" if std is None or math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def markdown(table: pd.DataFrame, runs: pd.DataFrame, problems: list[str], shown: list[str]) -> str:
    """The README-style table, then every run the means could not use."""
    keys = CONFIG_KEYS + shown
    metrics = METRICS + (["A_AUC"] if table["A_AUC_mean"].notna().any() else [])
    header = keys + metrics + ["joint_acc", "time (s)", "n_seeds"]
    show_incomplete = bool(table["n_incomplete"].any())
    header += ["n_incomplete"] if show_incomplete else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.to_dict("records"):
        cells = [str(row[key]) for key in keys]
        cells += [mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        cells += [mean_std(row["joint_acc_mean"], float("nan"))]
        cells += [mean_std(row["seconds_mean"], row["seconds_std"]), str(row["n_seeds"])]
        cells += [str(row["n_incomplete"])] if show_incomplete else []
        lines.append("| " + " | ".join(cells) + " |")
    n_complete = int(runs["complete"].sum()) if not runs.empty else 0
    text = [f"# Results: {n_complete} complete runs, mean ± std (ddof=1) over seeds", ""]
    text += lines + ["", "## Missing or partial runs", ""]
    text += [f"- {line}" for line in problems] if problems else ["None."]
    return "\n".join(text) + "\n"


def plot_links(plots: list[Path]) -> str:
    """report.md's section linking the plots written beside it."""
    if not plots:
        return ""
    lines = ["", "## Plots", ""]
    lines += [f"![{plot.stem}]({plot.name})" for plot in plots[:1]]
    lines += [f"- [{plot.stem}]({plot.name})" for plot in plots[1:]]
    return "\n".join(lines) + "\n"


def write_report(paths: list[Path], out: Path) -> Report:
    """Aggregate every run under paths and write report.csv, report.md and the plots to out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        raise ValueError(f"no run directories under {', '.join(map(str, paths))}.")
    foreign, foreign_problems = foreign_runs(run_dirs)
    runs, problems = load_runs([d for d in run_dirs if d not in foreign])
    problems = foreign_problems + problems
    if runs.empty:  # nothing to tabulate, but every directory found is still listed
        text = "# Results: no run could be read\n\n## Missing or partial runs\n\n"
        text += "".join(f"- {line}\n" for line in problems)
        (out / "report.md").write_text(text)
        return Report(table=pd.DataFrame(), runs=runs, problems=problems, markdown=text)
    shown = identify_configurations(runs)
    runs = attach_joint_accuracy(runs)
    problems += absent_seeds(runs)
    table = aggregate(runs, shown)
    table.to_csv(out / "report.csv", index=False)
    complete = runs[runs["complete"]]
    plots = []
    if not complete.empty:
        plots = [plot_curves(complete, CONFIG_KEYS + shown, out), *plot_matrices(complete, out)]
        anytime = plot_anytime(complete, CONFIG_KEYS + shown, out)
        plots += [anytime] if anytime is not None else []
    text = markdown(table, runs, problems, shown) + plot_links(plots)
    (out / "report.md").write_text(text)
    return Report(table=table, runs=runs, problems=problems, markdown=text)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the table; exit status 2 when no run is found."""
    parser = argparse.ArgumentParser(
        prog="python -m runner.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, help="run or sweep directories (searched recursively)"
    )
    parser.add_argument("--out", type=Path, help="where to write (default: PATH if one, else .)")
    args = parser.parse_args(argv)
    out = args.out or (args.paths[0] if len(args.paths) == 1 else Path("."))
    try:
        report = write_report(args.paths, out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.markdown, end="")
    print(f"report: {out / 'report.md'}")
    return 0


def cli() -> None:
    """The `rainbow-report` console command."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
