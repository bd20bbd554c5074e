"""method=ldi / bct+ldi: wiring in the LightningModule (cached and online old logits) and an end-to-end run."""

from __future__ import annotations

import json

import pytest
import torch

from tests.compat.test_lightning import SpyOld, _batch, _module
from toolkit.cli import app
from toolkit.compat.lightning import method_parts
from toolkit.compat.losses import logit_difference_inhibition_loss
from toolkit.models.classifier import random_shift

TINY = ["data.max_train=300", "data.max_test=150", "train.epochs=3", "old.epochs=2", "bootstrap.n=100",
        "trainer.progress=false"]


def test_method_parts_of_ldi():
    assert method_parts("ldi") == (False, "ldi", False)
    assert method_parts("bct+ldi") == (True, "ldi", False)
    assert method_parts("bct+ldi", "kl") == (True, "ldi", False)  # fd.kind_for_bct is for bct+fd only


def test_ldi_needs_its_settings():
    with pytest.raises(ValueError, match="ldi_weight"):
        _module("ldi", ldi_margin=None)
    _module("fd-kl", ldi_weight=None, ldi_margin=None)  # other methods do not read them


@pytest.mark.parametrize("method", ["ldi", "bct+ldi"])
def test_ldi_on_augmented_batch_uses_the_old_model_on_the_same_shifted_inputs(method):
    """shift_pixels > 0: LDI reads old_model(shifted batch), the same online path as FD, not the cached columns."""
    m = _module(method, shift_pixels=1)
    old = SpyOld()
    cols = torch.tensor([0, 1, 2])
    m.set_old_model(old, cols)
    x, y, y_old, old_correct, old_logits = _batch()
    torch.manual_seed(11)
    _, parts = m.compute_loss((x, y, y_old, ~old_correct, torch.full_like(old_logits, 50.0)))
    assert len(old.calls) == 1 and old.calls[0]["training"] is False and old.calls[0]["grad"] is False
    torch.manual_seed(11)
    shifted = random_shift(x, 1)
    assert torch.equal(old.calls[0]["x"], shifted)
    with torch.no_grad():
        expect_old = old.eval()(shifted)
    expect_correct = (expect_old.argmax(1) == y_old) & (y_old < 3)
    expected = 0.8 * logit_difference_inhibition_loss(  # settings of test_lightning.SETTINGS
        m.net(shifted)[:, [2, 0, 1]], expect_old[:, cols], margin=0.25, p=2.0, top_k=2, old_correct=expect_correct,
        alpha=1.0, beta=2.0, mask=y_old < 3)
    assert parts["ldi"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert "fd" not in parts and ("bct" in parts) == (method == "bct+ldi")


def test_ldi_without_augmentation_uses_the_cached_columns():
    m = _module("ldi", shift_pixels=0)
    old = SpyOld()
    m.set_old_model(old, torch.tensor([0, 1, 2]))
    x, y, y_old, old_correct, old_logits = batch = _batch()
    _, parts = m.compute_loss(batch)
    assert old.calls == []
    expected = 0.8 * logit_difference_inhibition_loss(
        m.net(x)[:, [2, 0, 1]], old_logits, margin=0.25, p=2.0, top_k=2, old_correct=old_correct, alpha=1.0,
        beta=2.0, mask=y_old < 3)
    assert parts["ldi"].item() == pytest.approx(expected.item(), rel=1e-6)


def _agreement(out) -> float:
    import numpy as np

    new = np.load(out / "predictions.npz")["predictions"]
    old = np.load(out / "old_predictions.npz")["predictions"]
    return float((new == old).mean())


def test_train_compatible_ldi_end_to_end(runner, tmp_path):
    """A tiny method=ldi run on the bundled digits writes metrics.json; a strong weight pulls toward the old model."""
    base = ["train-compatible", "--json", "-q", *TINY]
    res = runner.invoke(app, [*base, "method=ldi", f"output_dir={tmp_path / 'ldi'}"])
    assert res.exit_code == 0, res.stderr
    m = json.loads((tmp_path / "ldi" / "metrics.json").read_text())["metrics"]
    assert m["method"] == "ldi" and m["n"] == 150 and m["old_logits"] == "cached"
    assert json.loads(res.stdout)["config"]["ldi"]["margin"] == 0.5
    old_ck = tmp_path / "ldi" / "old_model.pt"
    runs = {}
    for name, extra in (("free", ["ldi.weight=0"]), ("strong", ["ldi.weight=50", "ldi.margin=0"])):
        r = runner.invoke(app, [*base, "method=ldi", f"old.checkpoint={old_ck}", f"output_dir={tmp_path / name}",
                                *extra])
        assert r.exit_code == 0, r.stderr
        runs[name] = _agreement(tmp_path / name)
    assert runs["strong"] > runs["free"] + 0.05, runs
