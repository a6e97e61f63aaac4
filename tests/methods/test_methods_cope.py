"""CoPE: momentum prototypes, the PPP loss against its per-sample formulas, nearest prototype."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from rainbow_runner.methods.base import TrainBatch
from rainbow_runner.methods.embedding import momentum_prototypes, pseudo_prototypical_proxy_loss
from rainbow_runner.runner.options import check_method_and_memory_options
from tests.conftest import compose_config
from tests.methods.test_methods_common import build_trainer

COPE_RUN = ["mode=cope", "exp=disjoint", "n_epoch=1", "mem_size=100"]


def test_cope_defaults_to_a_class_balanced_memory_and_the_papers_knobs():
    cfg = compose_config(["mode=cope"])
    assert cfg.mem_manage.name == "class_balanced"
    assert cfg.mode.alpha == 0.99 and cfg.mode.temperature == 0.1
    check_method_and_memory_options(cfg)


def test_prototypes_move_toward_the_class_mean_by_the_momentum():
    torch.manual_seed(0)
    prototypes = F.normalize(torch.randn(4, 8), dim=1)
    prototypes[3] = float("nan")  # class 3 not seen yet
    embeddings = F.normalize(torch.randn(6, 8), dim=1)
    labels = torch.tensor([0, 0, 0, 3, 3, 1])
    updated = momentum_prototypes(prototypes, embeddings, labels, alpha=0.9)
    mean = F.normalize(embeddings[:3].mean(0), dim=0)
    assert torch.allclose(updated[0], F.normalize(0.9 * prototypes[0] + 0.1 * mean, dim=0))
    assert (updated[0] @ mean) > (prototypes[0] @ mean) + 0.01  # closer to the class mean
    assert torch.allclose(updated[3], F.normalize(embeddings[3:5].mean(0), dim=0))  # its mean
    assert torch.equal(updated[2], prototypes[2])  # not in the batch: untouched
    assert torch.allclose(updated.norm(dim=1), torch.ones(4))


def per_sample_ppp(x: torch.Tensor, y: torch.Tensor, prototypes: dict, t: float) -> float:
    """The paper's eq. 4-6 sample by sample: P(c | proxy m, x) = e^{m·x/t} / (e^{m·x/t} +
    Σ_{k≠c} e^{p_k·x/t}); attractor log of the mean over c's proxies, repellor log(1 − mean of
    a pseudo-prototype's and the prototype's P) for every row of another class."""

    def probability(proxy, anchor, c):
        rest = sum(math.exp(p @ anchor / t) for k, p in prototypes.items() if k != c)
        near = math.exp(proxy @ anchor / t)
        return near / (near + rest)

    total = 0.0
    for i, (anchor, c) in enumerate(zip(x, y.tolist(), strict=True)):
        mates = [x[j] for j in range(len(x)) if y[j] == c and j != i]
        proxies = [probability(m, anchor, c) for m in [*mates, prototypes[c]]]
        total += math.log(sum(proxies) / len(proxies))
        for j in range(len(x)):
            if y[j] != c:
                pair = (probability(anchor, x[j], c) + probability(prototypes[c], x[j], c)) / 2
                total += math.log(1 - pair)
    return -total / len(x)


def test_ppp_loss_is_the_papers_per_sample_formula():
    torch.manual_seed(1)
    protos = F.normalize(torch.randn(5, 6), dim=1)
    protos[4] = float("nan")  # an exposed class without a prototype takes no part
    x = F.normalize(torch.randn(9, 6), dim=1)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 0])
    loss = pseudo_prototypical_proxy_loss(x, y, protos, 0.1)
    expected = per_sample_ppp(x.double(), y, {k: protos[k].double() for k in range(4)}, 0.1)
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


def test_ppp_loss_is_low_at_the_prototypes_and_high_at_the_wrong_ones():
    prototypes = torch.eye(3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    at_own = pseudo_prototypical_proxy_loss(prototypes[labels], labels, prototypes, 0.1)
    at_next = pseudo_prototypical_proxy_loss(prototypes[(labels + 1) % 3], labels, prototypes, 0.1)
    assert at_own.item() < 0.01 and at_next.item() > 3.0


def test_a_step_moves_its_classes_prototypes_toward_their_batch_means(tmp_path):
    trainer = build_trainer(tmp_path, COPE_RUN)
    trainer.train_task(0, trainer.split.train_tasks[0])
    method, model = trainer.method, trainer.model
    before = method.prototypes.clone()
    indices = trainer.split.train_tasks[0][:32]
    x = trainer.augmenter.normalize(trainer.fetch_images(indices))
    y = trainer.steps.train_labels[indices]
    model.train()
    method.update(TrainBatch(x, y, indices=indices, n_stream=32))
    embeddings, labels = method.step
    method.after_step()
    for label in labels.unique().tolist():
        mean = F.normalize(embeddings[labels == label].mean(0), dim=0)
        expected = F.normalize(0.99 * before[label] + 0.01 * mean, dim=0)
        assert torch.allclose(method.prototypes[label], expected, atol=1e-6)
        assert method.prototypes[label] @ mean > before[label] @ mean
    assert method.prototypes[2:].isnan().all()  # later tasks' classes: no prototype yet
    test_x = trainer.augmenter.normalize(trainer.test_x[:64])
    scores = method.predict(test_x)
    nearest = F.normalize(model.features(test_x), dim=1) @ method.prototypes[:2].T
    assert torch.equal(scores.argmax(1), nearest.argmax(1))
