"""CWR*: the consolidation rule on a hand-made case, a frozen backbone, consolidated test rows."""

from __future__ import annotations

import pytest
import torch

from rainbow_runner.methods.cwr_star import consolidate_weights
from tests.conftest import compose_config
from tests.methods.test_methods_common import build_trainer

CONSOLIDATED = torch.tensor([[1.0, 1.0], [0.0, 0.0], [7.0, 7.0]])
PAST = torch.tensor([4.0, 0.0, 2.0])
TRAINED = torch.tensor([[3.0, 1.0], [1.0, 3.0], [9.0, 9.0]])
CURRENT = torch.tensor([1.0, 1.0, 0.0])  # class 2 is not in the task: it keeps its row


@pytest.mark.parametrize(
    "past_weight,class_0",
    [
        # task rows' mean 2: shifted rows [1, -1], [-1, 1]; class 0: ([1,1]·4 + [1,-1]·1) / 5
        ("count", [1.0, 0.6]),
        # a = √(4/1) = 2: ([1,1]·2 + [1,-1]) / 3
        ("sqrt", [1.0, 1.0 / 3.0]),
    ],
)
def test_consolidated_rows_are_the_weighted_average_of_past_and_mean_shifted_rows(
    past_weight, class_0
):
    merged, past = consolidate_weights(CONSOLIDATED, PAST, TRAINED, CURRENT, past_weight)
    expected = torch.tensor([class_0, [-1.0, 1.0], [7.0, 7.0]])  # class 1 is new: its row
    assert torch.allclose(merged, expected)
    assert past.tolist() == [5.0, 1.0, 2.0]


def test_a_bad_past_weight_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="mode.past_weight='linear' is not one of sqrt, count"):
        build_trainer(tmp_path, ["mode=cwr_star", "mode.past_weight=linear"])


def test_after_the_first_task_only_the_head_moves_and_the_test_uses_consolidated_rows(tmp_path):
    assert compose_config(["mode=cwr_star"]).mode.freeze_remaining_model is True
    trainer = build_trainer(tmp_path, ["mode=cwr_star", "exp=disjoint", "n_epoch=1"])
    method, model = trainer.method, trainer.model
    for task_id in range(2):
        trainer.task_id = task_id
        if task_id == 1:
            backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        trainer.train_task(task_id, trainer.split.train_tasks[task_id])
    for key, value in model.backbone.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, backbone[key]), key
    assert (
        method.past[:4].tolist()
        == torch.bincount(
            trainer.context.train_labels[torch.cat(trainer.split.train_tasks[:2])], minlength=4
        )[:4]
        .float()
        .tolist()
    )
    assert torch.equal(model.head.weight.detach()[:4], method.consolidated[:4])
    assert (model.head.bias == 0).all() and not model.head.bias.requires_grad
