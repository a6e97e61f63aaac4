"""BCL-Dual and BCL-Single: the evaluation-set memory's share and isolation, distillation to
stored soft targets by hand, and the Reptile interpolation's limits (beta=1: the inner loop's
result, beta=0: unchanged weights)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from rainbow_runner.methods.der import LOGITS
from rainbow_runner.methods.gradients import parameter_snapshot
from rainbow_runner.runner.options import check_method_and_memory_options
from rainbow_runner.runner.steps import PlannedStep
from tests.conftest import compose_config
from tests.methods.test_methods_common import build_trainer

# No random crop or flip: two trainers then see the same batch (a fresh optimizer: same step).
PLAIN = ["exp=disjoint", "mem_size=50", "crop_padding=0", "flip=false"]


def batch_of(trainer, stream, replayed):
    return trainer.steps.batches_ahead([PlannedStep.of(stream, replayed)])[0]


def started(tmp_path, overrides):
    trainer = build_trainer(tmp_path, [*PLAIN, *overrides])
    trainer.begin_task()
    trainer.model.train()
    return trainer


def observe(trainer, indices):
    """The memories take in a batch as after its step (stored logits: zeros)."""
    trainer.method.stream_logits = torch.zeros(len(indices), trainer.n_exposed)
    trainer.method.observe_stream(indices)


@pytest.mark.parametrize("mode", ["bcl", "bcl_single"])
def test_default_memory_is_a_reservoir_and_knobs_are_arguments(mode):
    cfg = compose_config([f"mode={mode}"])
    assert cfg.mem_manage.name == "reservoir" and cfg.mode.beta == 0.3 and cfg.mode.n_meta == 2
    assert ("n_val" in cfg.mode) == (mode == "bcl")
    check_method_and_memory_options(cfg)


def test_evaluation_set_holds_n_val_of_the_memory_and_is_never_replayed(tmp_path):
    trainer = started(tmp_path, ["mode=bcl", "mode.replay_batch_size=30"])
    method = trainer.method
    assert method.val_memory.capacity == 10 and trainer.memory.capacity == 40  # 0.2 of 50
    task = trainer.split.train_tasks[0]
    for chunk in task[:200].split(10):
        observe(trainer, chunk)
    val, replay = set(method.val_memory.indices.tolist()), set(trainer.memory.indices.tolist())
    assert len(val) == 10 and len(replay) == 40 and not val & replay
    for _ in range(20):  # every inner-loop draw comes from the replay memory only
        drawn = set(method.replay(task[:10]).tolist())
        assert drawn <= replay and not drawn & val


def test_bcl_single_has_no_evaluation_set_and_no_outer_step(tmp_path):
    trainer = started(tmp_path, ["mode=bcl_single"])
    assert trainer.method.val_memory.capacity == 0 and trainer.memory.capacity == 50
    observe(trainer, trainer.split.train_tasks[0][:50])
    assert len(trainer.method.val_memory) == 0 and len(trainer.memory) == 50
    before = parameter_snapshot(list(trainer.model.parameters()))
    trainer.method.outer_step()  # nothing to step on
    for param, start in zip(trainer.model.parameters(), before, strict=True):
        assert torch.equal(param, start)


def test_distillation_uses_the_stored_soft_targets(tmp_path):
    """loss = CE(all rows) + memory_strength · mean over rows and classes of p·(log p − log q),
    p = softmax(stored/T), q = softmax(logits/T), by hand; own logits stored: no KD term."""
    options = ["mode=bcl", "mode.memory_strength=7", "mode.temperature=2"]
    trainer = started(tmp_path, options)
    trainer.model.eval()  # deterministic logits
    task = trainer.split.train_tasks[0]
    stored_idx = task[100:108]
    soft = torch.randn(8, trainer.n_exposed, generator=torch.Generator().manual_seed(3)) * 4
    labels = trainer.train_labels_cpu[stored_idx]
    trainer.memory.add(stored_idx, labels, trainer.n_exposed, payloads={LOGITS: soft})
    batch = batch_of(trainer, task[:6], stored_idx)
    loss, logits = trainer.method.loss(batch)
    p = F.softmax(soft / 2, 1)
    q = F.log_softmax(logits[6:].detach() / 2, 1)
    kd = (p * (p.log() - q)).sum() / (8 * trainer.n_exposed)
    expected = F.cross_entropy(logits.detach(), batch.y) + 7 * kd
    assert kd > 0.01 and loss.item() == pytest.approx(expected.item(), rel=1e-5)

    own = started(tmp_path / "own", options)
    own.model.eval()
    with torch.no_grad():
        mine = own.model(own.context.inputs(stored_idx))
    own.memory.add(stored_idx, labels, own.n_exposed, payloads={LOGITS: mine})
    batch = batch_of(own, task[:6], stored_idx)
    loss, logits = own.method.loss(batch)
    ce = F.cross_entropy(logits.detach(), batch.y)
    assert loss.item() == pytest.approx(ce.item(), abs=1e-5)


def meta_step(tmp_path, beta, overrides=()):
    """One update (n_meta=1) from the seed's weights: stored rows replayed, an evaluation set."""
    options = ["mode=bcl", "mode.n_meta=1", "mode.inner_steps=2", f"mode.beta={beta}"]
    trainer = started(tmp_path, [*options, *overrides])
    task = trainer.split.train_tasks[0]
    soft = {LOGITS: torch.randn(10, trainer.n_exposed, generator=torch.Generator().manual_seed(1))}
    labels = trainer.train_labels_cpu[task[100:110]]
    trainer.memory.add(task[100:110], labels, trainer.n_exposed, payloads=soft)
    trainer.method.val_memory.add(task[200:210], trainer.train_labels_cpu[task[200:210]], 2)
    before = parameter_snapshot(list(trainer.model.parameters()))
    trainer.method.update(batch_of(trainer, task[:10], task[100:110]))
    return before, parameter_snapshot(list(trainer.model.parameters()))


def test_beta_one_is_the_inner_loop_result_and_beta_zero_changes_nothing(tmp_path):
    start, full = meta_step(tmp_path / "one", 1.0)
    start_zero, unchanged = meta_step(tmp_path / "zero", 0.0)
    _, partial = meta_step(tmp_path / "part", 0.3)
    for a, b, c, d, e in zip(start, full, start_zero, unchanged, partial, strict=True):
        assert torch.equal(a, c) and torch.equal(c, d)  # beta=0: exactly the weights before
        assert torch.allclose(e, a + 0.3 * (b - a), atol=1e-6)  # the same inner loop, 0.3 of it
    assert any(not torch.equal(a, b) for a, b in zip(start, full, strict=True))


def test_beta_one_with_one_inner_step_is_a_plain_replay_step(tmp_path):
    """bcl_single, beta=1, n_meta=1, no KD: exactly er's step on the same rows."""
    options = ["mode.n_meta=1", "mode.beta=1.0", "mode.memory_strength=0"]
    bcl = started(tmp_path / "bcl", ["mode=bcl_single", *options])
    er = started(tmp_path / "er", ["mode=er"])
    task = er.split.train_tasks[0]
    for trainer in (bcl, er):
        trainer.method.update(batch_of(trainer, task[:10], task[100:110]))
    for param, other in zip(bcl.model.parameters(), er.model.parameters(), strict=True):
        assert torch.allclose(param, other, atol=1e-6)


def test_adapt_evaluates_an_adapted_copy_and_trains_on_the_original(tmp_path):
    trainer = started(tmp_path, ["mode=bcl", "mode.adapt=true", "mode.adapt_lr=0.5"])
    task = trainer.split.train_tasks[0]
    trainer.method.val_memory.add(task[:10], trainer.train_labels_cpu[task[:10]], 2)
    x = trainer.context.inputs(task[20:30])
    trainer.model.eval()
    before = parameter_snapshot(list(trainer.model.parameters()))
    with torch.inference_mode():
        adapted, plain = trainer.method.predict(x), trainer.model(x)
    assert not torch.allclose(adapted, plain)
    for param, start in zip(trainer.model.parameters(), before, strict=True):
        assert torch.equal(param, start)


def test_checkpoint_keeps_the_evaluation_set_and_the_routing(tmp_path):
    trainer = started(tmp_path / "a", ["mode=bcl"])
    task = trainer.split.train_tasks[0]
    observe(trainer, task[:100])
    resumed = started(tmp_path / "b", ["mode=bcl"])
    resumed.method.load_state_dict(trainer.method.state_dict())
    assert torch.equal(resumed.method.val_memory.indices, trainer.method.val_memory.indices)
    for method in (trainer.method, resumed.method):
        method.split_off_val(task[100:150])
    assert torch.equal(resumed.method.val_memory.indices, trainer.method.val_memory.indices)
