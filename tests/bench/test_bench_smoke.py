"""The benchmark scripts still run at toy sizes (no timing asserts: their numbers vary)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from bench import end_to_end, memory_selection, op_count, throughput


def test_throughput_bench_runs_every_kind_of_row(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "throughput.csv"
    rows = throughput.main(
        [
            "--device=cpu",
            "--models=mlp400,resnet32",
            "--batches=4",
            "--resnet-batches=2",
            "--steps=2",
            "--resnet-steps=1",
            "--rounds=1",
            "--trans=none,cutmix+autoaug",
            "--replay=no,yes,rm",
            "--augment=4",
            "--candidates=40",
            "--eval-batch=16",
            "--threads=0",
            f"--csv={out}",
        ]
    )
    assert torch.get_num_threads() == threads  # --threads=0 leaves the process alone
    printed = capsys.readouterr().out
    assert printed.startswith("cpu:")  # the device is recorded with the numbers
    assert len(rows) == 12
    assert {(r["model"], r["trans"], r["replay"]) for r in rows} >= {
        ("mlp400", "cutmix+autoaug", "yes"),
        ("mlp400", "cutmix+autoaug", "rm"),
        ("resnet32", "none", "no"),
    }
    assert all(r["ratio"] > 0 and math.isfinite(r["ratio"]) for r in rows)
    assert [r["batch"] for r in rows if r["model"] == "mlp400"] == [4, 8, 8] * 2
    assert "candidate-perturbations/s" in printed
    assert "| autoaug | 4 |" in printed  # the TRANS-alone table
    with open(out) as handle:
        assert len(list(csv.DictReader(handle))) == 12


def test_op_count_bench_counts_fewer_kernels_per_step_when_steps_are_prepared_ahead(capsys):
    common = ["--device=cpu", "--batches=8", "--steps=16", "--replay=no,yes"]
    common += ["--trans=none,cutmix+autoaug"]
    each = op_count.main([*common, "--extra=augment_chunk=0"])
    ahead = op_count.main([*common, "--extra=augment_chunk=128"])  # 16 steps per call
    assert capsys.readouterr().out.startswith("cpu:")
    assert len(each) == len(ahead) == 4
    for one, many in zip(each, ahead, strict=True):
        assert one["bare kernels"] == many["bare kernels"] > 10  # the model's own step
        # a step adds at least its argmax to the bare step; preparing 16 steps in one call
        # spreads the fetch, crop, normalisation and TRANS over them
        assert one["bare kernels"] < many["loop kernels"] < one["loop kernels"] - 3
        assert 0 < many["bound"] <= 1 and many["drawing ops"] > 0
    with_replay = [row for row in ahead if row["replay"] == "yes"]
    assert all(row["batch"] == 16 for row in with_replay)  # 8 incoming + 8 replayed


@pytest.mark.slow
def test_end_to_end_bench_measures_runs_and_skips_unknown_modes(tmp_path, capsys):
    out = tmp_path / "e2e.csv"
    rows = end_to_end.main(
        [
            "--modes=er,no_such_mode",
            "--base=dataset=digits n_epoch=1 mem_size=50 num_threads=1",
            "--concurrent=2",
            f"--csv={out}",
            f"--work-dir={tmp_path / 'runs'}",
        ]
    )
    assert "skip mode=no_such_mode" in capsys.readouterr().out
    assert [r["jobs"] for r in rows] == [1, 2, 2]
    for row in rows:
        assert row["status"] == "complete", row["status"]
        assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["peak_rss_mb"] > 50
        assert 0 <= row["A_last"] <= 100
    with open(out) as handle:
        assert len(list(csv.DictReader(handle))) == 3


def test_memory_selection_bench_times_every_strategy_and_checks_herding(tmp_path, monkeypatch):
    monkeypatch.setattr(memory_selection, "CONTINUUM_PYTHON", tmp_path / "absent")  # ours alone
    out = tmp_path / "selection.csv"
    args = ["--per-class=60", "--dim=8", "--keep=5", "--repeats=1", f"--csv={out}"]
    rows = memory_selection.main(args)
    functions = {row["function"] for row in rows}
    assert {"herding", "closest_to_center", "cluster (k-means)", "random"} <= functions
    herding = next(row for row in rows if row["function"] == "herding")
    assert herding["note"] == "same choice as before"
    assert len(list(csv.DictReader(out.open()))) == len(rows)


def test_vs_avalanche_bench_tables_both_sides_and_marks_modes_not_in_this_runner(
    tmp_path, monkeypatch, capsys
):
    from bench import vs_avalanche

    commands = []

    def fake_child(command, cwd, env, timeout):  # no Avalanche, no data set: canned children
        commands.append(command)
        if str(vs_avalanche.AVALANCHE_SIDE) in command:
            return 0, '{"A_last": 70.0}\n', 20.0, 10.0, 1000.0
        seed = int(next(c for c in command if c.startswith("seed=")).split("=")[1])
        run_dir = Path(next(c for c in command if c.startswith("hydra.run.dir=")).split("=")[1])
        (run_dir / "results").mkdir(parents=True)
        summary = "A_last,status\n" + f"{70 + 2 * seed},complete\n"
        (run_dir / "results" / "summary.csv").write_text(summary)
        return 0, "", 10.0, 8.0, 500.0

    monkeypatch.setattr(vs_avalanche, "run_child", fake_child)
    monkeypatch.setattr(vs_avalanche, "AVALANCHE_PYTHON", tmp_path)  # "installed"
    out = tmp_path / "vs.csv"
    rows = vs_avalanche.main(
        ["--strategies", "Replay", "Cumulative", "--seeds", "1", "2"] + [f"--csv={out}"]
    )
    replay, cumulative = rows
    assert replay["ours_A_last"] == "73.00±1.41" and replay["avalanche_A_last"] == "70.00±0.00"
    assert replay["wall_ratio"] == "0.50" and replay["rss_ratio"] == "0.50"
    ours = [c for c in commands if "-m" in c]
    assert "experiment=fashion_mnist_avalanche_ci" in ours[0] and "num_threads=1" in ours[0]
    if not vs_avalanche.registered("cumulative"):
        assert cumulative["note"] == "not in this runner"
    assert len(list(csv.DictReader(out.open()))) == 2
    assert len(list(csv.DictReader((tmp_path / "vs_runs.csv").open()))) >= 4

    monkeypatch.setattr(vs_avalanche, "AVALANCHE_PYTHON", tmp_path / "absent")
    rows = vs_avalanche.main(["--strategies", "Replay", "--csv="])
    assert "Avalanche side skipped" in capsys.readouterr().out
    assert rows[0]["avalanche_A_last"] == "n/a" and rows[0]["ours_A_last"] == "72.00±0.00"


def test_vs_avalanche_lists_a_strategy_it_cannot_compare_without_running_it(monkeypatch):
    from bench import vs_avalanche

    commands = []
    monkeypatch.setattr(vs_avalanche, "run_child", lambda command, *_: commands.append(command))
    rows = vs_avalanche.main(["--strategies", "AR1", "LearningToPrompt", "--csv="])
    assert commands == []
    assert [row["mode"] for row in rows] == ["ar1", "l2p"]
    assert all(row["note"].startswith("not comparable: ") for row in rows)


def test_arch_evidence_tables_the_seeds_and_quotes_a_refusal(tmp_path, monkeypatch):
    from bench import arch_evidence

    def fake_run(run_dir, overrides, name, rerun=False, replace=False):  # no data set, no runs
        if "stream=online" in overrides:  # as the runner refuses expert_gate online
            run_dir.mkdir(parents=True)
            (run_dir / "run.log").write_text("[t][INFO] config\n[t][ERROR] ValueError: no online\n")
            return None
        seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
        return {
            "A_last": 60.0 + seed,
            "F_last": 9.0,
            "wall_s": 2.0,
            "cpu_s": 1.5,
            "status": "complete",
        }

    monkeypatch.setattr(arch_evidence, "run_or_reuse", fake_run)
    out = tmp_path / "arch.csv"
    args = ["--modes=expert_gate", "--exps=disjoint", "--seeds", "1", "2", "--no-probes"]
    online, offline = arch_evidence.main([*args, f"--out={tmp_path}", f"--csv={out}"])
    assert online["seeds"] == 0 and online["note"] == "ValueError: no online"
    assert offline["seeds"] == 2 and offline["A_last"] == "61.50±0.71"
    assert offline["protocol"] == "n_epoch=1"
    runs = list(csv.DictReader(out.with_name("arch_runs.csv").open()))
    assert sorted(run["status"] for run in runs) == ["complete", "complete", "refused", "refused"]
