"""The fuzz list: every bad input stops with exit status 2 and one `error:` paragraph naming the
value, no traceback, and the run directory's earlier run exactly as it was (run.log aside, which
records each attempt; settings rejected before the run starts do not even reach it)."""

from __future__ import annotations

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rainbow_runner.runner.checkpoint import CHECKPOINT_NAME
from tests.conftest import run_cli
from tests.runner.helpers import assert_unchanged, run_cli_batch, snapshot

EARLIER = ["mode=finetune", "n_epoch=1", "n_tasks=2", "progress=false"]
START = "start"  # refused before Hydra writes anything in the directory (run.log untouched)
PREPARE = "prepare"  # refused once the data, split or checkpoint is read, before any write

# id, overrides (after EARLIER), what the message must contain, where it is refused, run dir.
# {name} in an override or fragment is a path the fixture makes (see `places`).
CASES: list[tuple[str, list[str], list[str], str, str]] = [
    ("unknown_mode", ["mode=nope"], ["mode/nope", "finetune", "rwalk"], START, "earlier"),
    ("unknown_memory", ["mem_manage=nope"], ["mem_manage/nope", "reservoir"], START, "earlier"),
    ("unknown_dataset", ["dataset=nope"], ["dataset/nope", "fashion_mnist"], START, "earlier"),
    ("unknown_key", ["foo=1"], ["foo", "+foo=1"], START, "earlier"),
    ("sweep_without_multirun", ["seed=1,2"], ["seed=1,2", "--multirun"], START, "earlier"),
    ("unparsable_list", ["trans=[cutmix"], ["trans=[cutmix"], START, "earlier"),
    ("empty_seed", ["seed="], ["seed="], START, "earlier"),
    ("batchsize_text", ["batchsize=abc"], ["batchsize=abc", "whole number"], START, "earlier"),
    ("batchsize_zero", ["batchsize=0"], ["batchsize=0"], START, "earlier"),
    ("n_tasks_text", ["n_tasks=abc"], ["n_tasks=abc"], START, "earlier"),
    ("n_tasks_zero", ["n_tasks=0"], ["n_tasks=0"], START, "earlier"),
    ("n_tasks_not_dividing", ["n_tasks=3"], ["n_tasks=3", "does not divide"], PREPARE, "earlier"),
    ("n_epoch_fraction", ["n_epoch=1.5"], ["n_epoch=1.5", "whole number"], START, "earlier"),
    ("n_epoch_negative", ["n_epoch=-1"], ["n_epoch=-1"], START, "earlier"),
    ("mem_size_fraction", ["mem_size=1.5"], ["mem_size=1.5", "whole number"], START, "earlier"),
    ("mem_size_negative", ["mem_size=-5"], ["mem_size=-5 must be 0 or more"], START, "earlier"),
    ("mem_batchsize_negative", ["mem_batchsize=-1"], ["mem_batchsize=-1"], START, "earlier"),
    ("mem_batchsize_unresolved", ["mem_batchsize=${nope}"], ["mem_batchsize"], START, "earlier"),
    ("lr_zero", ["lr=0"], ["lr=0", "greater than 0"], START, "earlier"),
    ("lr_text", ["lr=abc"], ["lr=abc"], START, "earlier"),
    ("lr_infinite", ["lr=inf"], ["lr=inf"], START, "earlier"),
    ("seed_negative", ["seed=-1"], ["seed=-1", "between 0 and 4294967295"], START, "earlier"),
    ("split_seed_text", ["split_seed=abc"], ["split_seed=abc"], START, "earlier"),
    ("trans_string", ["trans=cutmix"], ["trans=cutmix", "trans=[cutmix]"], START, "earlier"),
    ("trans_unknown", ["trans=[cutmix,bogus]"], ["unknown trans entry 'bogus'"], START, "earlier"),
    (
        "uncert_metric",
        ["uncert_metric=bogus"],
        ["uncert_metric=bogus", "vr_cutout"],
        START,
        "earlier",
    ),
    ("uncert_k_zero", ["uncert_k=0"], ["uncert_k=0"], START, "earlier"),
    (
        "memory_metric",
        ["mem_manage=uncertainty", "mem_manage.metric=bogus"],
        ["bogus", "vr_randaug"],
        PREPARE,
        "earlier",
    ),
    ("amp_unknown", ["amp=bogus"], ["amp=bogus", "bf16"], START, "earlier"),
    ("channels_last", ["channels_last=maybe"], ["channels_last=maybe"], START, "earlier"),
    ("cuda_graphs", ["cuda_graphs=maybe"], ["cuda_graphs=maybe"], START, "earlier"),
    ("compile", ["compile=maybe"], ["compile=maybe"], START, "earlier"),
    ("device_cpu_index", ["device=cpu:7"], ["device=cpu:7"], START, "earlier"),
    ("device_unknown", ["device=tpu"], ["device=tpu"], START, "earlier"),
    ("device_cuda_index", ["device=cuda:99"], ["device=cuda:99"], START, "earlier"),
    ("topk_above_classes", ["topk=20"], ["topk=20", "10 classes"], PREPARE, "earlier"),
    ("topk_zero", ["topk=0"], ["topk=0"], START, "earlier"),
    ("joint_acc_text", ["joint_acc=abc"], ["joint_acc=abc"], START, "earlier"),
    (
        "joint_acc_range",
        ["joint_acc=150"],
        ["joint_acc=150", "between 0 and 100"],
        START,
        "earlier",
    ),
    ("eval_batchsize", ["eval_batchsize=0"], ["eval_batchsize=0"], START, "earlier"),
    ("log_every", ["log_every=0"], ["log_every=0"], START, "earlier"),
    ("checkpoint_every", ["checkpoint_every=-1"], ["checkpoint_every=-1"], START, "earlier"),
    ("num_threads", ["num_threads=-1"], ["num_threads=-1"], START, "earlier"),
    ("augment_chunk", ["augment_chunk=-1"], ["augment_chunk=-1"], START, "earlier"),
    ("warmup_epochs", ["warmup_epochs=-1"], ["warmup_epochs=-1"], START, "earlier"),
    ("online_iter", ["stream.online_iter=0"], ["stream.online_iter=0"], START, "earlier"),
    ("memory_epochs", ["stream.memory_epochs=-1"], ["stream.memory_epochs=-1"], START, "earlier"),
    ("blurry_range", ["exp.blurry=150"], ["exp.blurry=150"], START, "earlier"),
    ("blurry_text", ["exp.blurry=abc"], ["exp.blurry=abc"], START, "earlier"),
    ("resume_text", ["resume=maybe"], ["resume=maybe", "true or false"], START, "earlier"),
    ("progress_text", ["progress=yes"], ["progress=yes"], START, "earlier"),
    ("download_text", ["download=maybe"], ["download=maybe"], START, "earlier"),
    (
        "resume_and_overwrite",
        ["resume=true", "overwrite=true"],
        ["overwrite=true"],
        START,
        "earlier",
    ),
    ("patience_negative", ["patience=-1"], ["patience=-1", "0 or more"], START, "earlier"),
    (
        "val_share_one",
        ["patience=2", "val_share=1"],
        ["val_share=1 must be strictly between 0 and 1"],
        START,
        "earlier",
    ),
    ("val_share_zero", ["val_share=0"], ["val_share=0 must be strictly between"], START, "earlier"),
    (
        "patience_online",
        ["patience=2"],
        ["patience=2", "stream=online", "patience=0"],
        START,
        "earlier",
    ),
    ("grad_clip_negative", ["grad_clip=-1"], ["grad_clip=-1", "0 or more"], START, "earlier"),
    (
        "schedule_per",
        ["lr_schedule_per=step"],
        ["lr_schedule_per", "epoch, task"],
        START,
        "earlier",
    ),
    ("empty_data_root", ["data_root="], ["data_root="], START, "earlier"),
    ("missing_data", ["dataset=mnist", "data_root={empty}"], ["{empty}"], PREPARE, "earlier"),
    ("corrupt_data", ["dataset=mnist", "data_root={garbage}"], ["{garbage}"], PREPARE, "earlier"),
    ("bad_split_files", ["exp.split_files={splits}"], ["{splits}"], PREPARE, "earlier"),
    ("run_dir_under_a_file", [], ["hydra.run.dir={file}/run", "is a file"], START, "{file}/run"),
    ("run_dir_unresolved", [], ["hydra.run.dir", "nope"], START, "${nope}"),
    (
        "earlier_run_kept",
        [],
        ["holds an earlier run", "resume=true", "overwrite=true"],
        PREPARE,
        "earlier",
    ),
    (
        "results_without_checkpoint",
        ["resume=true"],
        ["no checkpoint.pt", "overwrite=true"],
        PREPARE,
        "no_checkpoint",
    ),
    ("corrupt_checkpoint", ["resume=true"], ["{zeros}/checkpoint.pt", "corrupt"], PREPARE, "zeros"),
    ("malicious_checkpoint", ["resume=true"], ["{evil}/checkpoint.pt"], PREPARE, "evil"),
    (
        "corrupt_memory_generator",
        ["resume=true"],
        ["{memory_bytes}/checkpoint.pt", "SyntaxError"],
        PREPARE,
        "memory_bytes",
    ),
    ("other_settings", ["resume=true", "lr=0.1"], ["lr=0.05 (now 0.1)"], PREPARE, "resumable"),
    (
        "other_log_every",
        ["resume=true", "log_every=7"],
        ["log_every 50 (now 7", "log_every=50"],
        PREPARE,
        "resumable",
    ),
]

PWNED = "rainbow_runner_fuzz_pwned"


class Evil:
    """Unpickling this would run a shell command."""

    def __reduce__(self):
        import os

        return (os.system, (f"touch /tmp/{PWNED}",))


def write_places(work: Path) -> dict[str, Path]:
    """The earlier run, bad data, bad splits and bad checkpoints the cases point at."""
    earlier = work / "earlier"
    result = run_cli([*EARLIER, f"hydra.run.dir={earlier}"])
    assert result.returncode == 0, result.stderr[-2000:]
    places = {"earlier": earlier, "empty": work / "empty", "garbage": work / "garbage"}
    places["empty"].mkdir()
    places["garbage"].mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (places["garbage"] / name).write_bytes(b"\x00\x00\x08\x03 not an IDX file")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (places["garbage"] / name).write_bytes(gzip.compress(b"\x00")[:8])
    places["splits"] = work / "splits"
    places["splits"].mkdir()
    (places["splits"] / "digits_train_blurry10_rand1_cls10_task0.json").write_text("{not json")
    places["file"] = work / "a_file"
    places["file"].write_text("")
    checkpoint = torch.load(earlier / CHECKPOINT_NAME, weights_only=True)
    for name in ("no_checkpoint", "zeros", "evil", "memory_bytes", "resumable"):
        places[name] = work / name
        shutil.copytree(earlier, places[name])
    (places["no_checkpoint"] / CHECKPOINT_NAME).unlink()
    (places["zeros"] / CHECKPOINT_NAME).write_bytes(b"\x00" * 100)
    with open(places["evil"] / CHECKPOINT_NAME, "wb") as handle:
        torch.save({"format": 1, "payload": Evil()}, handle, pickle_module=pickle)
    corrupt = dict(checkpoint)
    corrupt["memory"] = {
        **checkpoint["memory"],
        "rng": torch.from_numpy(np.frombuffer(b"{'a': (", np.uint8).copy()),
    }
    torch.save(corrupt, places["memory_bytes"] / CHECKPOINT_NAME)
    return places


def fill(text: str, places: dict[str, Path]) -> str:
    for name, path in places.items():
        text = text.replace("{" + name + "}", str(path))
    return text


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    places = write_places(work)
    directories = {name: p for name, p in places.items() if (p / "run.log").exists()}
    before = {name: snapshot(p) for name, p in directories.items()}
    logs = {name: (p / "run.log").read_text() for name, p in directories.items()}
    commands = []
    for _, overrides, _, _, run_dir in CASES:
        where = str(places[run_dir]) if run_dir in places else fill(run_dir, places)
        commands.append([*EARLIER, *(fill(o, places) for o in overrides), f"hydra.run.dir={where}"])
    results = dict(zip([case[0] for case in CASES], run_cli_batch(commands, work), strict=True))
    return {"places": places, "results": results, "before": before, "logs": logs}


@pytest.mark.parametrize(
    ("overrides", "fragments", "stage"),
    [pytest.param(o, f, s, id=i) for i, o, f, s, _ in CASES],
)
def test_a_bad_input_exits_2_with_one_paragraph_naming_it(
    fuzz, request, overrides, fragments, stage
):
    result = fuzz["results"][request.node.callspec.id]
    stderr = result["stderr"]
    assert result["code"] == 2, stderr[-2000:] + result["stdout"][-2000:]
    assert "Traceback" not in stderr and "Traceback" not in result["stdout"]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fill(fragment, fuzz["places"]) in lines[0]
    if stage == START:
        assert not result["log_grew"], "refused after Hydra wrote run.log"


def test_no_bad_input_changed_an_earlier_run(fuzz):
    for name, before in fuzz["before"].items():
        assert_unchanged(fuzz["places"][name], before, fuzz["logs"][name])
    assert not Path(f"/tmp/{PWNED}").exists()
