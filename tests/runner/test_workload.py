"""num_threads=0 on the CPU: the thread count follows the model's multiply-adds per step."""

import torch
from torch import nn

from rainbow_runner.runner.models import mlp, resnet32_cifar
from rainbow_runner.runner.models.workload import MACS_PER_THREAD, forward_macs, threads_for


def test_forward_macs_counts_linear_and_conv_layers():
    # mlp400 on 8x8 digits: 64*400 + 400*400 (the growing head, 10 classes wide, is left out)
    assert forward_macs(mlp((1, 8, 8), 10), (1, 8, 8)) == 64 * 400 + 400 * 400
    conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 8, 1, stride=2))
    assert forward_macs(conv, (3, 32, 32)) == 16 * 32 * 32 * 27 + 8 * 16 * 16 * 16
    model = resnet32_cifar((3, 32, 32), 10)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert 60e6 < forward_macs(model, (3, 32, 32)) < 80e6  # ResNet-32: ~69M per image
    assert model.training  # left as found: mode and BatchNorm statistics
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_threads_follow_the_work_per_step():
    digits_step = 16 * forward_macs(mlp((1, 8, 8), 10), (1, 8, 8))  # 3M
    fashion_step = 16 * forward_macs(mlp((1, 28, 28), 10), (1, 28, 28))  # 7.6M
    assert threads_for(digits_step, 2) == threads_for(fashion_step, 2) == 1
    assert threads_for(16 * 69e6, 2) == 2 and threads_for(16 * 69e6, 64) == 22
    assert threads_for(2 * MACS_PER_THREAD, 8) == 2 and threads_for(0, 8) == 1
