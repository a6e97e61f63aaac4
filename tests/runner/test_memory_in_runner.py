"""What the runner gives the memory library: the run's totals for fixed quotas, the task of
every streamed sample, and the model at intake for GSS (trained, then observed, batch by batch)."""

from __future__ import annotations

import torch

from rainbow_runner.runner.options import build_memory
from tests.conftest import TINY, compose_config
from tests.methods.test_methods_common import build_trainer


def test_fixed_quotas_get_the_runs_number_of_classes_and_tasks():
    cfg = compose_config(["mem_manage=class_balanced", "mem_manage.fixed=true"])
    assert build_memory(cfg, 500, n_classes=10, n_tasks=5).fixed_share == 50
    cfg = compose_config(["mem_manage=ring", "mem_manage.fixed=true"])
    assert build_memory(cfg, 500, n_classes=10, n_tasks=5).fixed_share == 100
    cfg = compose_config(["mem_manage=random"])  # takes neither: none passed
    assert build_memory(cfg, 500, n_classes=10, n_tasks=5).capacity == 500


def test_a_streaming_memory_stores_the_task_each_sample_came_in_with(tmp_path):
    overrides = ["mode=er", "mem_manage=experience_balanced", "exp=disjoint", *TINY]
    trainer = build_trainer(tmp_path, overrides)
    for task_id in range(3):
        trainer.train_task(task_id, trainer.split.train_tasks[task_id])
        memory = trainer.memory
        for task in range(task_id + 1):
            mine = torch.isin(memory.indices, trainer.split.train_tasks[task])
            assert (memory.stored_task_ids()[mine] == task).all()
        counts = torch.bincount(memory.stored_task_ids(), minlength=task_id + 1)
        assert int(counts.max() - counts.min()) <= 1  # balanced over the tasks so far


def test_gss_gets_the_model_and_the_loop_observes_batch_by_batch(tmp_path):
    trainer = build_trainer(tmp_path, ["mode=er", "mem_manage=gss", "exp=disjoint", *TINY])
    trainer.train_task(0, trainer.split.train_tasks[0])
    memory = trainer.memory
    assert memory.context_provider is not None
    assert len(memory) == 100 and len(memory.scores) == 100
    assert torch.equal(memory.labels, trainer.train_labels_cpu[memory.indices])
