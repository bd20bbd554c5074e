"""Each compatibility loss against a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from toolkit.compat.losses import (
    bct_influence_loss,
    distillation_distance,
    focal_distillation_loss,
    naive_congruent_loss,
    synthesize_head_rows,
)


def test_bct_influence_loss_hand_case():
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    w = torch.eye(2)
    b = torch.tensor([0.0, 1.0])
    labels = torch.tensor([0, 0, -1])  # third sample: class unknown to the old head -> excluded
    # sample 0: logits [1, 1] -> CE = log 2; sample 1: logits [0, 3] -> CE = log(1 + e^3)
    expected = (math.log(2.0) + math.log(1 + math.exp(3.0))) / 2
    assert bct_influence_loss(emb, labels, w, b).item() == pytest.approx(expected, rel=1e-6)


def test_bct_influence_loss_gradient_reaches_embedding_not_old_head():
    emb = torch.tensor([[1.0, 0.0, 3.0]], requires_grad=True)
    w = torch.eye(2, requires_grad=True)
    proj = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    loss = bct_influence_loss(emb, torch.tensor([1]), w, None, proj)
    assert loss.item() == pytest.approx(math.log(1 + math.e), rel=1e-6)  # logits [1, 0], label 1
    loss.backward()
    assert emb.grad is not None and proj.weight.grad is not None
    assert w.grad is None


def test_bct_influence_loss_all_excluded_is_zero_and_dim_mismatch_raises():
    emb = torch.ones(2, 2, requires_grad=True)
    assert bct_influence_loss(emb, torch.tensor([-1, -1]), torch.eye(2)).item() == 0.0
    with pytest.raises(ValueError, match="projection"):
        bct_influence_loss(torch.ones(1, 3), torch.tensor([0]), torch.eye(2))


def test_synthesize_head_rows_are_class_means():
    emb = torch.tensor([[1.0, 1.0], [3.0, 5.0], [10.0, 0.0], [0.0, 2.0]])
    lab = torch.tensor([2, 2, 0, 3])
    rows = synthesize_head_rows(emb, lab, 4, torch.tensor([2, 3]))
    assert rows.tolist() == [[0.0, 0.0], [0.0, 0.0], [2.0, 3.0], [0.0, 2.0]]
    with pytest.raises(ValueError, match="no training sample"):
        synthesize_head_rows(emb, lab, 4, torch.tensor([1]))


def test_naive_loss_weights_old_correct_samples():
    logits = torch.zeros(2, 2)
    labels = torch.tensor([0, 1])
    # each CE = log 2; only sample 0 old-correct -> log2 + 0.5 * (log2 + 0) / 2
    loss = naive_congruent_loss(logits, labels, torch.tensor([True, False]), weight=0.5)
    assert loss.item() == pytest.approx(math.log(2) * (1 + 0.25), rel=1e-6)


def test_fd_lm_distance_mean_by_default_and_sum():
    new = torch.tensor([[1.0, 2.0]])
    old = torch.tensor([[0.0, 0.0]])
    assert distillation_distance(new, old, "lm").item() == pytest.approx(1.25)  # 0.5 * (1 + 4) / 2 classes
    assert distillation_distance(new, old, "lm", lm_reduction="sum").item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="lm_reduction"):
        distillation_distance(new, old, "lm", lm_reduction="max")


@pytest.mark.parametrize("num_classes", [10, 136, 1000])
def test_fd_lm_and_fd_kl_have_the_same_size_at_equal_weight(num_classes):
    """With the default conventions FD-LM ≈ FD-KL (τ = 100) and neither grows with K.

    On random logits (i.i.d. N(0, 1) new and old) E[½·mean_c Δ²] = 1 for every K, and τ²·KL at large τ
    is the centred version, smaller by (K − 1)/K.  The paper's sum over classes would make FD-LM K
    times larger, so this fails for it.
    """
    g = torch.Generator().manual_seed(num_classes)
    new = torch.randn(512, num_classes, generator=g, dtype=torch.float64)
    old = torch.randn(512, num_classes, generator=g, dtype=torch.float64)
    correct = torch.rand(512, generator=g) < 0.7
    lm = focal_distillation_loss(new, old, correct, kind="lm").item()  # default reduction
    kl = focal_distillation_loss(new, old, correct, kind="kl", temperature=100.0).item()
    expected_base = 1.0 + 5.0 * correct.double().mean().item()  # mean focal weight α + β·old_correct
    assert lm / expected_base == pytest.approx(1.0, rel=0.15)  # does not scale with K
    assert lm / kl == pytest.approx(num_classes / (num_classes - 1), rel=0.02)
    summed = focal_distillation_loss(new, old, correct, kind="lm", lm_reduction="sum").item()
    assert summed / lm == pytest.approx(num_classes)


def test_fd_kl_distance_hand_case():
    new = torch.tensor([[0.0, 0.0]])
    old = torch.tensor([[math.log(3.0), 0.0]])  # p_old = [3/4, 1/4] at tau=1
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert distillation_distance(new, old, "kl", temperature=1.0).item() == pytest.approx(expected, rel=1e-5)
    # tau = 2: p_old = softmax([ln3 / 2, 0]) and the tau^2 = 4 factor
    a = math.sqrt(3.0)
    p = [a / (1 + a), 1 / (1 + a)]
    expected2 = 4 * sum(pi * math.log(pi / 0.5) for pi in p)
    assert distillation_distance(new, old, "kl", temperature=2.0).item() == pytest.approx(expected2, rel=1e-5)


def test_fd_kl_large_temperature_approaches_centered_logit_matching():
    torch.manual_seed(0)
    new, old = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    kl = distillation_distance(new, old, "kl", temperature=1000.0)  # float64: no cancellation
    d = (new - new.mean(1, keepdim=True)) - (old - old.mean(1, keepdim=True))
    lm_centered = d.pow(2).sum(1) / (2 * 5)  # tau^2 KL -> ||d||^2 / (2K) as tau -> inf
    assert torch.allclose(kl, lm_centered, rtol=1e-2)


def test_focal_distillation_filter_weights_and_mask():
    new = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]])
    old = torch.zeros(3, 2)
    # D (½·sum) = [2.5, 0.5, 4.5]; weights alpha + beta*correct = [1+5, 1, masked]; the masked (new-class)
    # sample leaves the denominator: mean over the 2 distilled samples
    loss = focal_distillation_loss(new, old, torch.tensor([True, False, True]), kind="lm", alpha=1.0, beta=5.0,
                                   lm_reduction="sum", mask=torch.tensor([True, True, False]))
    assert loss.item() == pytest.approx((6 * 2.5 + 1 * 0.5) / 2)
    # alpha = 0: distil only old-correct samples (no mask: mean over the whole batch)
    loss0 = focal_distillation_loss(new, old, torch.tensor([True, False, False]), kind="lm", alpha=0.0, beta=1.0,
                                    lm_reduction="sum")
    assert loss0.item() == pytest.approx(2.5 / 3)


@pytest.mark.parametrize("kind", ["kl", "lm"])
def test_new_class_samples_do_not_dilute_the_distillation(kind):
    """Samples of classes unknown to the old model are dropped from the term and its denominator."""
    g = torch.Generator().manual_seed(1)
    new, old = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    correct = torch.tensor([True, False, True, True, False, True, True, False])
    only_old = focal_distillation_loss(new[:5], old[:5], correct[:5], kind=kind, temperature=4.0)
    mask = torch.tensor([True] * 5 + [False] * 3)  # 3 new-class samples appended to the batch
    padded = focal_distillation_loss(new, old, correct, kind=kind, temperature=4.0, mask=mask)
    assert padded.item() == pytest.approx(only_old.item(), rel=1e-6)
    shuffled = torch.tensor([5, 0, 6, 1, 2, 7, 3, 4])  # position in the batch does not matter either
    assert focal_distillation_loss(new[shuffled], old[shuffled], correct[shuffled], kind=kind, temperature=4.0,
                                   mask=mask[shuffled]).item() == pytest.approx(only_old.item(), rel=1e-6)
    leaf = new.clone().requires_grad_(True)
    none = focal_distillation_loss(leaf, old, correct, kind=kind, mask=torch.zeros(8, dtype=torch.bool))
    assert none.item() == 0.0
    none.backward()  # still part of the graph
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) == 0.0


def test_distance_rejects_bad_arguments():
    with pytest.raises(ValueError):
        distillation_distance(torch.zeros(1, 2), torch.zeros(1, 3), "lm")
    with pytest.raises(ValueError):
        distillation_distance(torch.zeros(1, 2), torch.zeros(1, 2), "l1")
    with pytest.raises(ValueError):
        distillation_distance(torch.zeros(1, 2), torch.zeros(1, 2), "kl", temperature=0.0)
