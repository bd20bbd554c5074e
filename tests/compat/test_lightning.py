"""CompatModule: method parsing, frozen old head, and the loss wiring of every method."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toolkit.compat.lightning import METHODS, CompatModule, method_parts
from toolkit.compat.losses import (
    bct_influence_loss,
    focal_distillation_loss,
    logit_difference_inhibition_loss,
    naive_congruent_loss,
)
from toolkit.models.zoo import build_model

# every loss setting is required (the config holds the defaults); these are the test's own values
SETTINGS = dict(lr=1e-3, weight_decay=1e-4, bct_weight=1.0, naive_weight=1.0, fd_weight=1.0, fd_kind_bct="lm",
                alpha=1.0, beta=5.0, temperature=100.0, lm_reduction="mean", shift_pixels=0, projection=False,
                ldi_weight=0.8, ldi_margin=0.25, ldi_p=2.0, ldi_top_k=2, ldi_alpha=1.0, ldi_beta=2.0)


def make(method: str, hidden: int = 8, embed_dim: int = 6, dropout: float = 0.1, **kw) -> CompatModule:
    """A CompatModule over a 4x4-input MLP with 4 classes."""
    net = build_model("mlp", (1, 4, 4), 4, hidden=hidden, embed_dim=embed_dim, dropout=dropout)
    return CompatModule(net, [1, 4, 4], method=method, **{**SETTINGS, **kw})


def test_method_parts():
    assert method_parts("none") == (False, None, False)
    assert method_parts("bct") == (True, None, False)
    assert method_parts("naive") == (False, None, True)
    assert method_parts("fd-kl") == (False, "kl", False)
    assert method_parts("fd-lm") == (False, "lm", False)
    assert method_parts("bct+fd") == (True, "lm", False)
    assert method_parts("bct+fd", "kl") == (True, "kl", False)
    with pytest.raises(ValueError, match="unknown method"):
        method_parts("fd")


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 4, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0, 3])  # class 3 is new: no old counterpart
    y_old = torch.tensor([0, 1, 2, 3, 0, 3])  # 3 = synthesized BCT row (>= old_classes = 3)
    old_correct = torch.tensor([True, False, True, False, True, False])
    old_logits = torch.randn(6, 3, generator=g)
    return x, y, y_old, old_correct, old_logits


def _module(method: str, **kw) -> CompatModule:
    torch.manual_seed(0)
    m = make(method, dropout=0.0, old_head_rows=4, old_embed_dim=5, fd_columns=3, old_classes=3, bct_weight=0.7,
             naive_weight=0.3, fd_weight=0.5, alpha=1.0, beta=5.0, temperature=4.0, **kw)
    if m.uses_bct:
        m.set_old_head(torch.randn(4, 5), torch.randn(4))
    if m.fd_kind is not None:
        m.set_fd_index(torch.tensor([2, 0, 1]))  # old class j is new class fd_index[j]
    return m.eval()


@pytest.mark.parametrize("method", METHODS)
def test_compute_loss_matches_the_loss_functions(method):
    m = _module(method)
    x, y, y_old, old_correct, old_logits = _batch()
    total, parts = m.compute_loss((x, y, y_old, old_correct, old_logits))
    emb = m.net.embed(x)
    logits = m.net.head(emb)
    expected = {}
    if method == "naive":
        expected["ce+naive"] = naive_congruent_loss(logits, y, old_correct, 0.3)
    else:
        expected["ce"] = F.cross_entropy(logits, y)
    if method in ("bct", "bct+fd", "bct+ldi"):
        expected["bct"] = 0.7 * bct_influence_loss(emb, y_old, m.old_weight, m.old_bias, m.projection)
    if method in ("fd-kl", "fd-lm", "bct+fd"):
        kind = "kl" if method == "fd-kl" else "lm"
        mask = torch.tensor([True, True, True, False, True, False])  # new-class samples are not distilled
        expected["fd"] = 0.5 * focal_distillation_loss(logits[:, [2, 0, 1]], old_logits, old_correct, kind=kind,
                                                       alpha=1.0, beta=5.0, temperature=4.0, mask=mask)
    if method in ("ldi", "bct+ldi"):  # same columns and mask as FD, its own settings (SETTINGS)
        mask = torch.tensor([True, True, True, False, True, False])
        expected["ldi"] = 0.8 * logit_difference_inhibition_loss(
            logits[:, [2, 0, 1]], old_logits, margin=0.25, p=2.0, top_k=2, old_correct=old_correct, alpha=1.0,
            beta=2.0, mask=mask)
    assert set(parts) == set(expected)
    for k, v in expected.items():
        assert parts[k].item() == pytest.approx(v.item(), rel=1e-6), k
    assert total.item() == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-6)


def test_old_head_is_frozen_buffer_and_projection_only_when_needed():
    m = _module("bct")
    names = {n for n, _ in m.named_parameters()}
    assert not any(n.startswith("old_") for n in names)
    assert {"old_weight", "old_bias"} <= {n for n, _ in m.named_buffers()}
    assert m.projection is not None and m.projection.weight.shape == (5, 6)  # E_new 6 -> E_old 5
    x, y, y_old, old_correct, old_logits = _batch()
    total, _ = m.compute_loss((x, y, y_old, old_correct, old_logits))
    total.backward()
    assert m.projection.weight.grad is not None
    same = make("bct", embed_dim=5, old_head_rows=4, old_embed_dim=5)
    assert same.projection is None
    forced = make("bct", embed_dim=5, old_head_rows=4, old_embed_dim=5, projection=True)
    assert forced.projection is not None


def test_missing_old_parts_raise():
    with pytest.raises(ValueError, match="old_head_rows"):
        make("bct")
    with pytest.raises(ValueError, match="fd_columns"):
        make("fd-kl")


class SpyOld(torch.nn.Module):
    """An old model that records what it is run on (inputs, train mode, grad mode)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.lin = torch.nn.Linear(16, num_classes)
        self.drop = torch.nn.Dropout(0.5)  # eval mode must switch it off
        self.calls: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append({"x": x.clone(), "training": self.training, "grad": torch.is_grad_enabled()})
        return self.lin(self.drop(x.flatten(1)))


@pytest.mark.parametrize("method", ["fd-kl", "fd-lm", "bct+fd", "naive"])
def test_augmented_batch_uses_old_model_on_the_same_shifted_inputs(method):
    """shift_pixels > 0: old logits and focal weights are old_model(shifted batch), not the cached columns."""
    from toolkit.models.classifier import random_shift

    m = _module(method, shift_pixels=1)
    old = SpyOld()
    cols = torch.tensor([0, 1, 2])
    m.set_old_model(old, cols)
    old.train()  # set_old_model and the training step must put it in eval mode anyway
    x, y, y_old, old_correct, old_logits = _batch()
    cached_correct, cached_logits = ~old_correct, torch.full_like(old_logits, 50.0)  # deliberately wrong
    torch.manual_seed(11)
    _, parts = m.compute_loss((x, y, y_old, cached_correct, cached_logits))
    assert len(old.calls) == 1
    call = old.calls[0]
    torch.manual_seed(11)
    shifted = random_shift(x, 1)  # the same random shift the step drew
    assert not torch.equal(shifted, x)
    assert torch.equal(call["x"], shifted)
    assert call["training"] is False and call["grad"] is False
    with torch.no_grad():
        expect_old = old.eval()(shifted)
    expect_correct = (expect_old.argmax(1) == y_old) & (y_old < 3)
    logits = m.net(shifted)
    if method == "naive":
        expected = naive_congruent_loss(logits, y, expect_correct, 0.3)
        assert parts["ce+naive"].item() == pytest.approx(expected.item(), rel=1e-6)
        return
    kind = "kl" if method == "fd-kl" else "lm"
    mask = y_old < 3
    expected = 0.5 * focal_distillation_loss(logits[:, [2, 0, 1]], expect_old[:, cols], expect_correct, kind=kind,
                                             alpha=1.0, beta=5.0, temperature=4.0, mask=mask)
    assert parts["fd"].item() == pytest.approx(expected.item(), rel=1e-5)
    stale = 0.5 * focal_distillation_loss(logits[:, [2, 0, 1]], cached_logits, cached_correct, kind=kind,
                                          alpha=1.0, beta=5.0, temperature=4.0, mask=mask)
    assert abs(stale.item() - expected.item()) > 1e-3
    assert m.online_old_correct == [int(expect_correct.sum()), 6]


def test_no_augmentation_keeps_the_cached_fast_path():
    m = _module("fd-kl", shift_pixels=0)
    old = SpyOld()
    m.set_old_model(old, torch.tensor([0, 1, 2]))
    batch = _batch()
    _, parts = m.compute_loss(batch)
    assert old.calls == []
    x, y, y_old, old_correct, old_logits = batch
    expected = 0.5 * focal_distillation_loss(m.net(x)[:, [2, 0, 1]], old_logits, old_correct, kind="kl",
                                             alpha=1.0, beta=5.0, temperature=4.0, mask=y_old < 3)
    assert parts["fd"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_augmentation_without_old_model_raises_and_bct_does_not_need_it():
    with pytest.raises(RuntimeError, match="needs the old model"):
        _module("fd-lm", shift_pixels=1).compute_loss(_batch())
    _module("bct", shift_pixels=1).compute_loss(_batch())  # BCT reads no old outputs per sample
    _module("none", shift_pixels=1).compute_loss(_batch())


def test_old_model_is_not_a_submodule():
    m = _module("fd-kl", shift_pixels=1)
    m.set_old_model(SpyOld(), torch.tensor([0, 1, 2]))
    assert not any(k.startswith("_old_net") or ".lin." in k for k in m.state_dict())
    assert all(not n.startswith("_old_net") for n, _ in m.named_parameters())
