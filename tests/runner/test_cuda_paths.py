"""CUDA-only paths: whole-batch tables and their CUDA graphs, and a training step with no host
sync. Skipped without a GPU (CI has none); run them where one is lent:
`python -m pytest tests/runner/test_cuda_paths.py`."""

from __future__ import annotations

import pytest
import torch

from bench.common import build_trainer, fill_memory, synthetic_data
from rainbow_runner.datasets.augment import policies as transforms
from rainbow_runner.datasets.augment.pipeline import StepBatches

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CPU, CUDA = torch.device("cpu"), torch.device("cuda:0")  # as images.device names it


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda_graphs"])
def test_gpu_policies_equal_the_cpu_sorted_path_image_for_image(shape, graphs):
    images = torch.randint(0, 256, (64, *shape), dtype=torch.uint8)
    for policy in (transforms.auto_augment, transforms.rand_augment):
        for call in range(4):  # eager, then captured, then replayed (same table twice in randaug)
            torch.manual_seed(call)  # the draws are made on the CPU: the same on both devices
            want = policy(images)
            torch.manual_seed(call)
            got = policy(images.to(CUDA), graphs=graphs).cpu()
            assert torch.equal(got, want), (policy.__name__, call)
    if graphs:
        assert transforms.autoaug_table(shape, 0, CUDA).graphs  # the replays did happen


def test_a_replayed_graph_returns_a_fresh_tensor_each_call():
    table = transforms.randaug_table((1, 28, 28), 9, 31, CUDA)
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, device=CUDA)
    pair = torch.full((8,), 2 * transforms.RANDAUG_OPERATIONS.index("Posterize"))
    outputs = [table.apply(images, pair) for _ in range(3)]  # eager, captured, replayed
    assert table.graphs
    kept = outputs[2].clone()
    other = torch.full((8,), 2 * transforms.RANDAUG_OPERATIONS.index("Equalize"))
    table.apply(images, other)  # another replay of the same graph
    assert torch.equal(outputs[2], kept)
    assert torch.equal(outputs[1], outputs[2])


def test_gpu_cutmix_equals_the_cpu_one_for_a_chunk_of_steps():
    images = torch.randint(0, 256, (80, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(80) % 10
    sizes = [16, 32, 8, 24]
    for seed in range(4):
        torch.manual_seed(seed)  # every draw is made on the CPU: the same on both devices
        want = transforms.cutmix(StepBatches(images, labels, sizes), probability=1.0)
        torch.manual_seed(seed)
        got = transforms.cutmix(StepBatches(images.to(CUDA), labels.to(CUDA), sizes), 1.0)
        assert torch.equal(got.x.cpu(), want.x) and torch.equal(got.y_mix.cpu(), want.y_mix)
        assert got.lams == want.lams


@pytest.mark.parametrize("chunked", [False, True], ids=["step_by_step", "chunk_of_16"])
@pytest.mark.parametrize("trans", [[], ["cutmix", "autoaug"], ["randaug"]])
def test_training_steps_never_wait_for_the_gpu(trans, chunked):
    data = synthetic_data(2000, (1, 28, 28))
    overrides = ["model=mlp400", "mode=er", "mem_size=200", "batchsize=16", "log_every=1000"]
    trainer = build_trainer([*overrides, f"trans=[{','.join(trans)}]"], data, CUDA)
    fill_memory(trainer, 200)
    trainer.online_pass(torch.randperm(2000)[:512])  # warm-up: tables built, graphs captured
    trainer._flush_window()
    torch.cuda.set_sync_debug_mode("error")
    try:  # online_pass's body, without its end-of-pass flush
        if chunked:  # 16 incoming batches drawn ahead and prepared in one call, twice
            for start in range(0, 512, 256):
                incoming = [torch.arange(s, s + 16) for s in range(start, start + 256, 16)]
                trainer._online_chunk(incoming, 1)
        else:
            for start in range(0, 320, 16):
                incoming = torch.arange(start, start + 16)
                trainer.step(trainer.method.online_batch(incoming))
                trainer.method.observe_stream(incoming)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer._flush_window()
    assert trainer.steps.global_step >= 20
    trainer.writer.close()
