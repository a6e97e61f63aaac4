"""DER and DER++: logits stored at insertion stay with their samples, memory rows are matched to
their own stored logits, DER++ adds only its label term, and both beat finetune end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import TrainBatch
from rainbow_runner.methods.der import LOGITS, DarkExperienceReplay, DarkExperienceReplayPlusPlus
from rainbow_runner.methods.functional import stored_logit_distance
from tests.conftest import TINY, compose_config, run_in_process
from tests.methods.test_methods_common import build_trainer
from tests.runner.test_resume_checkpoint import assert_resumed_runs_repeat_the_run

NAN = float("nan")


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit, blanks (NaN) included."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))


def test_later_classes_are_floored_or_ignored_and_blank_rows_never_count():
    stored = torch.tensor([[1.0, 3.0], [NAN, NAN]])  # stored when the head had 2 classes
    logits = torch.tensor([[1.0, 3.0, 0.0, 2.0], [5.0, 5.0, 5.0, 5.0]], requires_grad=True)
    floored = stored_logit_distance(logits, stored)  # targets [1, 3, 1, 1]; row 2 is blank
    assert floored.item() == pytest.approx((0 + 0 + 1 + 1) / 4)
    assert stored_logit_distance(logits, stored, floor_later=False).item() == 0.0
    floored.backward()
    assert logits.grad[1].abs().sum() == 0  # nothing stored: no pull at all


def test_stored_logits_are_those_seen_at_insertion_and_leave_with_their_sample(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=der", "exp=disjoint", "n_epoch=1", "mem_size=30"])
    method, memory = trainer.method, trainer.memory
    offered: dict[int, torch.Tensor] = {}  # index -> the logits it was offered with
    observe = method.observe_stream

    def recording_observe(stream_indices):
        kept = memory.indices.clone()
        kept_rows = memory.payload(LOGITS, kept)[0].clone() if len(kept) else None
        offered.update(zip(stream_indices.tolist(), method.stream_logits.clone(), strict=True))
        observe(stream_indices)
        still = torch.isin(kept, memory.indices)
        if still.any():  # replacing other slots leaves the kept rows bit for bit
            rows, _ = memory.payload(LOGITS, kept[still])
            assert identical(rows[:, : kept_rows.shape[1]], kept_rows[still])

    method.observe_stream = recording_observe
    for task_id in range(2):  # the head grows from 2 to 4 classes
        trainer.task_id = task_id
        trainer.train_task(task_id, trainer.split.train_tasks[task_id])
    rows, found = memory.payload(LOGITS, memory.indices)
    assert found.all() and rows.shape[1] == 4
    for index, row in zip(memory.indices.tolist(), rows, strict=True):
        width = len(offered[index])
        assert torch.equal(row[:width], offered[index]) and row[width:].isnan().all()
    assert (rows[:, 2:].isnan().all(1)).any()  # some task-0 samples survived task 1
    evicted = torch.tensor(sorted(set(offered) - set(memory.indices.tolist())))
    assert len(evicted) > len(memory)  # the reservoir replaced slots many times
    gone, found = memory.payload(LOGITS, evicted)
    assert not found.any() and gone.isnan().all()
    with torch.no_grad():  # the stored rows are not what the model says now
        now = trainer.model.eval()(trainer.context.inputs(memory.indices))
    assert not torch.allclose(now[:, :2], rows[:, :2], atol=1e-3)


def test_offline_the_task_goes_in_with_the_eval_mode_logits_of_the_end_of_its_stream(tmp_path):
    overrides = ["mode=derpp", "stream=offline", "exp=disjoint", "n_epoch=1", "mem_size=100"]
    trainer = build_trainer(tmp_path, overrides)
    trainer.train_task(0, trainer.split.train_tasks[0])  # offline: no memory epochs after it
    memory = trainer.memory
    with torch.no_grad():
        expected = trainer.model.eval()(trainer.context.inputs(memory.indices))
    rows, found = memory.payload(LOGITS, memory.indices)
    assert len(memory) == 100 and found.all()
    assert torch.allclose(rows, expected, atol=1e-5)


def filled_trainer(tmp_path, mode: str):
    """An eval-mode model (rows independent of the batch) whose memory holds 40 task-0 samples
    stored with the model's present logits, except sample 0's first logit (+2)."""
    trainer = build_trainer(tmp_path, [f"mode={mode}", "exp=disjoint", "mem_size=100"])
    trainer.model.eval()
    stored = trainer.split.train_tasks[0][:40]
    with torch.no_grad():
        logits = trainer.model(trainer.context.inputs(stored))
    logits[0, 0] += 2.0
    labels = trainer.train_labels_cpu[stored]
    trainer.memory.add(stored, labels, trainer.n_exposed, payloads={LOGITS: logits})
    return trainer, stored


def batch_of(trainer, indices: torch.Tensor, n_stream: int) -> TrainBatch:
    """Un-augmented rows (the model's inputs for their indices) with their roles."""
    x = trainer.context.inputs(indices)
    return TrainBatch(x, trainer.context.labels(indices), indices=indices, n_stream=n_stream)


def test_memory_rows_are_matched_to_their_own_stored_logits(tmp_path):
    trainer, stored = filled_trainer(tmp_path, "der")
    method, stream = trainer.method, trainer.split.train_tasks[0][200:216]
    shuffled = stored[torch.randperm(len(stored))]  # any order: rows are looked up by index
    for rows, extra in ((shuffled[stored[0] != shuffled], 0.0), (shuffled, 4.0)):
        loss, logits = method.loss(batch_of(trainer, torch.cat([stream, rows]), len(stream)))
        plain = F.cross_entropy(logits[:16], trainer.context.labels(stream))
        # equal stored and current logits add nothing; sample 0's stored +2 adds 2² once
        expected = plain + method.alpha * extra / (len(rows) * logits.shape[1])
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_der_is_derpp_without_its_label_term(tmp_path):
    trainer, stored = filled_trainer(tmp_path, "derpp")
    derpp, context = trainer.method, trainer.context
    der = DarkExperienceReplay(context, alpha=derpp.alpha)
    no_label_term = DarkExperienceReplayPlusPlus(context, alpha=derpp.alpha, beta=0.0)
    assert len(der.replay(stored)) == len(no_label_term.replay(stored)) == 16
    assert len(derpp.replay(stored)) == 32  # DER++ draws a second batch for its labels
    stream, logit_rows, label_rows = (
        trainer.split.train_tasks[0][200:216],
        stored[:16],
        stored[16:32],
    )
    full = batch_of(trainer, torch.cat([stream, logit_rows, label_rows]), 16)
    without_labels = batch_of(trainer, torch.cat([stream, logit_rows]), 16)
    loss_der = der.loss(without_labels)[0]
    assert torch.equal(no_label_term.loss(without_labels)[0], loss_der)
    loss_pp, logits = derpp.loss(full)
    label_term = F.cross_entropy(logits[32:], context.labels(label_rows))
    assert loss_pp.item() == pytest.approx((loss_der + derpp.beta * label_term).item(), rel=1e-5)


def test_derpp_with_beta_0_runs_exactly_as_der(tmp_path):
    settings = [*TINY, "exp=disjoint", "stream=online"]
    der = run_in_process(tmp_path / "der", ["mode=der", *settings])
    derpp = run_in_process(tmp_path / "derpp", ["mode=derpp", "mode.beta=0", *settings])
    assert der["A_last"] == derpp["A_last"]
    tasks = [pd.read_csv(tmp_path / name / "results" / "tasks.csv") for name in ("der", "derpp")]
    assert tasks[0].test_acc.tolist() == tasks[1].test_acc.tolist()


@pytest.mark.parametrize("mode", ["der", "derpp"])
def test_default_memory_is_reservoir(mode):
    assert compose_config([f"mode={mode}"]).mem_manage.name == "reservoir"


def test_a_resumed_run_keeps_the_stored_logits(tmp_path, monkeypatch):
    """Checkpoints inside the stream and a memory epoch: the payloads come back exactly."""
    overrides = ["mode=derpp", "n_epoch=2", "mem_size=60", "progress=false"]
    assert_resumed_runs_repeat_the_run(tmp_path, overrides, monkeypatch)


def test_a_memory_chosen_at_the_end_of_a_task_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mem_manage=uncertainty"):
        run_in_process(tmp_path, ["mode=der", "mem_manage=uncertainty", *TINY])


@pytest.fixture(scope="module")
def finetune_runs(tmp_path_factory):
    """finetune's A_last per (stream, exp), computed once for the module."""
    runs = {}

    def a_last(stream: str, exp: str) -> float:
        if (stream, exp) not in runs:
            run_dir = tmp_path_factory.mktemp(f"finetune_{stream}_{exp}")
            settings = ["mode=finetune", f"stream={stream}", f"exp={exp}", *TINY]
            runs[stream, exp] = run_in_process(run_dir, settings)["A_last"]
        return runs[stream, exp]

    return a_last


@pytest.mark.parametrize("exp", ["disjoint", "blurry10"])
@pytest.mark.parametrize("stream", ["online", "offline"])
@pytest.mark.parametrize("mode", ["der", "derpp"])
def test_der_modes_run_and_beat_finetune(tmp_path, finetune_runs, mode, stream, exp):
    summary = run_in_process(tmp_path, [f"mode={mode}", f"stream={stream}", f"exp={exp}", *TINY])
    assert summary["status"] == "complete" and summary["tasks_done"] == 5
    assert summary["A_last"] > finetune_runs(stream, exp) + 15.0  # finetune: ~20
