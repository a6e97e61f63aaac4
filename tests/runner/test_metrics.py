"""Metric formulas against hand-computed accuracy matrices."""

import math

import numpy as np
import pytest

from rainbow_runner.runner.reporting.metrics import (
    a_avg,
    a_last,
    backward_transfer,
    forgetting,
    forward_transfer,
    intransigence,
    summarize,
)

# After task i (rows), accuracy on task j's classes (columns), 3 tasks.
MATRIX = np.array(
    [
        [90.0, 0.0, 0.0],
        [70.0, 80.0, 0.0],
        [60.0, 50.0, 85.0],
    ]
)
TASK_ACC = np.array([90.0, 75.0, 65.0])
UNTRAINED = np.array([10.0, 12.0, 8.0])


def test_last_and_average_accuracy():
    assert a_last(TASK_ACC) == 65.0
    assert a_avg(TASK_ACC) == pytest.approx((90 + 75 + 65) / 3)


def test_forgetting_uses_best_earlier_accuracy_of_old_tasks():
    # task 0: best 90 -> 60 (30); task 1: best 80 -> 50 (30)
    assert forgetting(MATRIX) == pytest.approx(30.0)
    # after two tasks only task 0 is old: 90 -> 70
    assert forgetting(MATRIX[:2]) == pytest.approx(20.0)
    assert forgetting(MATRIX[:1]) == 0.0


def test_forgetting_can_be_negative_when_old_tasks_improve():
    improving = np.array([[50.0, 0.0], [70.0, 60.0]])
    assert forgetting(improving) == pytest.approx(-20.0)


def test_backward_and_forward_transfer_as_gem_defines_them():
    # BWT: ((60 - 90) + (50 - 80)) / 2
    assert backward_transfer(MATRIX) == pytest.approx(-30.0)
    # FWT: ((a[0,1] - b1) + (a[1,2] - b2)) / 2 = ((0 - 12) + (0 - 8)) / 2
    assert forward_transfer(MATRIX, UNTRAINED) == pytest.approx(-10.0)


def test_intransigence_needs_a_joint_accuracy():
    assert intransigence(80.0, 65.0) == pytest.approx(15.0)
    assert math.isnan(intransigence(None, 65.0))


def test_summary_names_every_metric():
    summary = summarize(TASK_ACC, MATRIX, UNTRAINED, joint_acc=88.0)
    assert summary == pytest.approx(
        {
            "A_last": 65.0,
            "A_avg": 230 / 3,
            "F_last": 30.0,
            "I_last": 23.0,
            "ACC": 65.0,  # (60 + 50 + 85) / 3
            "BWT": -30.0,
            "FWT": -10.0,
        }
    )
