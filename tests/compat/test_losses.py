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
    logit_difference_inhibition_loss,
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


# LDI hand case: |new - old| = [1, 0.2, 2] (sample 0) and [0.5, 3, 0] (sample 1); margin 0.5.
# Old logits order the classes differently per sample: sample 0 ranks 1 > 0 > 2, sample 1 ranks 0 > 1 > 2.
LDI_NEW = torch.tensor([[1.0, 1.2, -3.0], [0.5, 3.0, -0.5]])
LDI_OLD = torch.tensor([[0.0, 1.0, -1.0], [1.0, 0.0, -0.5]])


def test_ldi_hand_case_all_classes_and_p():
    # p = 2: excess [0.5, 0, 1.5] -> mean of squares 2.5/3; [0, 2.5, 0] -> 6.25/3; batch mean 8.75/6
    ldi = logit_difference_inhibition_loss
    assert ldi(LDI_NEW, LDI_OLD, margin=0.5, p=2.0, top_k=None).item() == pytest.approx(8.75 / 6, rel=1e-6)
    # p = 1: (2/3 + 2.5/3) / 2
    assert ldi(LDI_NEW, LDI_OLD, margin=0.5, p=1.0, top_k=None).item() == pytest.approx(0.75, rel=1e-6)
    # margin 0: plain mean squared difference, mean over classes then samples (no 1/2, as the reference)
    assert ldi(LDI_NEW, LDI_OLD, margin=0.0, p=2.0, top_k=None).item() == pytest.approx(
        ((1 + 0.04 + 4) / 3 + (0.25 + 9) / 3) / 2, rel=1e-6)
    # a top_k above K means all classes
    assert ldi(LDI_NEW, LDI_OLD, margin=0.5, p=2.0, top_k=5).item() == pytest.approx(8.75 / 6, rel=1e-6)


def test_ldi_gradient_hand_case():
    new = LDI_NEW.clone().requires_grad_(True)
    logit_difference_inhibition_loss(new, LDI_OLD, margin=0.5, p=2.0, top_k=None).backward()
    # d/dz (|z - z_old| - 0.5)^2 = 2 (|Δ| - 0.5) sign(Δ), divided by 3 classes and 2 samples
    expected = torch.tensor([[2 * 0.5, 0.0, -2 * 1.5], [0.0, 2 * 2.5, 0.0]]) / 6
    assert torch.allclose(new.grad, expected, atol=1e-6)


def test_ldi_top_k_is_chosen_per_sample():
    """top_k = 1 keeps each sample's own highest old logit: class 1 for sample 0, class 0 for sample 1.

    Both differences are within the margin there, so the loss is 0.  A selection shared by the batch
    (what sorting along the batch axis, as the reference code's compute_topk does, amounts to: the
    same columns for every sample) gives a positive loss for every choice of column, so this fails
    for it.
    """
    ldi = logit_difference_inhibition_loss
    assert ldi(LDI_NEW, LDI_OLD, margin=0.5, p=2.0, top_k=1).item() == 0.0
    excess = torch.relu((LDI_NEW - LDI_OLD).abs() - 0.5).pow(2)
    for col in range(3):  # the same column for both samples
        assert excess[:, col].mean().item() > 0.1
    # top_k = 2: classes {1, 0} for sample 0 -> [0, 0.25] mean 0.125; {0, 1} for sample 1 -> 6.25 / 2
    assert ldi(LDI_NEW, LDI_OLD, margin=0.5, p=2.0, top_k=2).item() == pytest.approx((0.125 + 3.125) / 2)
    # permuting the classes (same permutation for new and old) does not change the selected terms
    perm = torch.tensor([2, 0, 1])
    assert ldi(LDI_NEW[:, perm], LDI_OLD[:, perm], margin=0.5, p=2.0, top_k=2).item() == pytest.approx(1.625)


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_ldi_zero_loss_and_zero_gradient_within_the_margin(p):
    g = torch.Generator().manual_seed(2)
    old = 5 * torch.randn(16, 7, generator=g)
    new = (old + 0.49 * (2 * torch.rand(16, 7, generator=g) - 1)).requires_grad_(True)  # |Δ| < 0.49 < ξ
    loss = logit_difference_inhibition_loss(new, old, margin=0.5, p=p, top_k=None)
    assert loss.item() == 0.0
    loss.backward()
    assert new.grad is not None and float(new.grad.abs().max()) == 0.0
    # just beyond the margin the loss and gradient are not zero
    far = (old + 0.6).requires_grad_(True)
    loss2 = logit_difference_inhibition_loss(far, old, margin=0.5, p=p, top_k=None)
    assert loss2.item() == pytest.approx(0.1**p, rel=1e-4)
    loss2.backward()
    assert float(far.grad.abs().min()) > 0.0


def test_ldi_focal_weight_and_new_class_samples():
    ldi = logit_difference_inhibition_loss
    correct = torch.tensor([True, False])
    # weights 1 + 3 = 4 (old correct) and 1
    assert ldi(LDI_NEW, LDI_OLD, margin=0.5, p=2.0, top_k=None, old_correct=correct, alpha=1.0,
               beta=3.0).item() == pytest.approx((4 * 2.5 / 3 + 6.25 / 3) / 2, rel=1e-6)
    # three new-class samples with large differences appended: out of the sum and the denominator
    g = torch.Generator().manual_seed(4)
    new = torch.cat([LDI_NEW, 10 * torch.randn(3, 3, generator=g)])
    old = torch.cat([LDI_OLD, torch.zeros(3, 3)])
    mask = torch.tensor([True, True, False, False, False])
    assert ldi(new, old, margin=0.5, p=2.0, top_k=None, mask=mask).item() == pytest.approx(8.75 / 6, rel=1e-6)
    assert ldi(new, old, margin=0.5, p=2.0, top_k=None).item() > 8.75 / 6 + 1  # unmasked they would count
    leaf = new.clone().requires_grad_(True)
    none = ldi(leaf, old, margin=0.5, p=2.0, top_k=None, mask=torch.zeros(5, dtype=torch.bool))
    assert none.item() == 0.0
    none.backward()
    assert leaf.grad is not None and float(leaf.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("kw, match", [
    (dict(margin=-0.1), "margin"), (dict(p=0.5), "p must"), (dict(top_k=0), "top_k"),
    (dict(beta=1.0), "old_correct"),
])
def test_ldi_rejects_bad_arguments(kw, match):
    args = {"margin": 0.5, "p": 2.0, "top_k": None, **kw}
    with pytest.raises(ValueError, match=match):
        logit_difference_inhibition_loss(LDI_NEW, LDI_OLD, **args)
    with pytest.raises(ValueError, match="shape"):
        logit_difference_inhibition_loss(LDI_NEW, LDI_OLD[:, :2], margin=0.5, p=2.0, top_k=None)
