"""L2P: the ViT stays frozen while prompts, keys and head learn; key matching picks prompts."""

from __future__ import annotations

import pytest
import torch

from rainbow_runner.methods.base import TrainBatch
from rainbow_runner.methods.l2p import select_prompts
from tests.methods.test_methods_common import build_trainer

SETTINGS = ["mode=l2p", "model=vit_tiny", "exp=disjoint", "stream=offline", "n_epoch=1"]


def test_select_prompts_takes_the_most_similar_keys_and_sums_their_cosines():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    query = torch.tensor([[2.0, 0.1], [0.0, 3.0]])
    chosen, similarity = select_prompts(query, keys, top_k=2)
    assert chosen.tolist() == [[0, 2], [1, 2]]
    cosine = torch.nn.functional.cosine_similarity
    expected = cosine(query[0], keys[0], 0) + cosine(query[0], keys[2], 0)
    assert similarity[0].item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_step_moves_prompts_keys_and_head_and_never_the_backbone(tmp_path):
    trainer = build_trainer(tmp_path, SETTINGS)
    trainer.begin_task()
    method, model = trainer.method, trainer.model
    backbone = {name: value.clone() for name, value in model.backbone.state_dict().items()}
    keys, prompts = method.keys.detach().clone(), method.prompts.detach().clone()
    indices = trainer.split.train_tasks[0][:16]
    x = trainer.augmenter.normalize(trainer.fetch_images(indices))
    batch = TrainBatch(x, trainer.steps.train_labels[indices], indices=indices, n_stream=16)
    method.update(batch)
    assert all(param.grad is None for param in model.backbone.parameters())
    assert method.keys.grad is not None and method.keys.grad.abs().sum() > 0
    assert method.prompts.grad.abs().sum() > 0 and model.head.weight.grad.abs().sum() > 0
    assert not torch.equal(method.keys, keys) and not torch.equal(method.prompts, prompts)
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone[name]), name


def test_a_model_without_token_access_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="mode=l2p .* model=vit_tiny"):
        build_trainer(tmp_path, ["mode=l2p", "model=mlp400"])


def test_the_train_mask_leaves_only_the_current_tasks_classes_in_the_cross_entropy(tmp_path):
    trainer = build_trainer(tmp_path, SETTINGS)
    trainer.task_id = trainer.context.task_id = 1
    trainer.n_exposed = trainer.context.n_exposed = 4
    trainer.begin_task()
    method = trainer.method
    indices = trainer.split.train_tasks[1][:16]
    x = trainer.augmenter.normalize(trainer.fetch_images(indices))
    batch = TrainBatch(x, trainer.steps.train_labels[indices], indices=indices, n_stream=16)
    assert set(batch.y.tolist()) == {2, 3}
    torch.manual_seed(0)
    loss, logits = method.loss(batch)
    _, similarity = method.prompted(x)
    masked = torch.nn.functional.cross_entropy(logits[:, 2:], batch.y - 2)
    expected = masked - 0.1 * similarity.mean()
    assert logits.shape == (16, 4)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
