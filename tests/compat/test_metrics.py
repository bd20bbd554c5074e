"""Flip metrics on a crafted prediction table; retrieval metrics against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from toolkit.compat.metrics import (
    bct_criterion,
    bootstrap_ci,
    cross_model_retrieval,
    flip_rates,
    flipped_samples,
    per_class_flips,
    rel_nfr_reason,
    retrieval_metrics,
)

# crafted table: old correct at 0,1,2,4,5,8; new correct at 0,1,4,6,7,8,9
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
OLD = np.array([0, 0, 0, 1, 1, 1, 0, 0, 2, 1])
NEW = np.array([0, 0, 1, 1, 1, 0, 1, 1, 2, 2])


def test_flip_rates_crafted_table():
    m = flip_rates(Y, OLD, NEW)
    assert m["er_old"] == pytest.approx(0.4)
    assert m["er_new"] == pytest.approx(0.3)
    assert m["nfr"] == pytest.approx(0.2)  # samples 2 and 5
    assert m["pfr"] == pytest.approx(0.3)  # samples 6, 7, 9
    assert m["rel_nfr"] == pytest.approx(0.2 / (0.6 * 0.3))
    assert m["n"] == 10


def test_rel_nfr_nan_when_new_model_perfect():
    assert np.isnan(flip_rates(Y, OLD, Y)["rel_nfr"])


def test_flipped_samples_list():
    rows = flipped_samples(np.arange(100, 110), Y, OLD, NEW)
    neg = [(r["id"], r["old"], r["new"]) for r in rows if r["flip"] == "negative"]
    pos = [r["id"] for r in rows if r["flip"] == "positive"]
    assert neg == [(102, 0, 1), (105, 1, 0)]
    assert pos == [106, 107, 109]


def test_per_class_flips():
    pc = per_class_flips(Y, OLD, NEW)
    assert pc[0]["nfr"] == pytest.approx(0.25)
    assert pc[2]["pfr"] == pytest.approx(0.5)


def test_bootstrap_ci_covers_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    old = np.where(rng.random(400) < 0.8, y, (y + 1) % 5)
    new = np.where(rng.random(400) < 0.85, y, (y + 2) % 5)
    m = flip_rates(y, old, new)
    ci = bootstrap_ci(y, old, new, n_boot=500, seed=1)
    for k in ("er_old", "er_new", "nfr", "pfr", "rel_nfr"):
        lo, hi = ci[k]
        assert lo <= m[k] <= hi and hi > lo
    assert ci == bootstrap_ci(y, old, new, n_boot=500, seed=1)
    same = bootstrap_ci(y, old, old, n_boot=100)
    assert same["nfr"] == [0.0, 0.0]


def test_retrieval_hand_case():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    r = retrieval_metrics(emb, emb, np.array([0, 0, 1, 1]))
    assert r == {"top1": 1.0, "top5": 1.0, "map": 1.0}
    # query 0 = [1, 0]: gallery 1..3 ranked g1 (0.9) > g2? no: cos(q0,g3)=0.11 > cos(q0,g2)=0
    bad = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, 0.8]])
    r2 = retrieval_metrics(bad, bad, np.array([0, 0, 1, 1]))
    # q0 -> g2 (wrong), q1 -> g3 (wrong), q2 -> g3 (right), q3 -> g2 (right)
    assert r2["top1"] == pytest.approx(0.5)
    # AP: q0 ranks g2, g3, g1 -> relevant at 3 -> 1/3; q1 ranks g3, g2, g0 -> 1/3; q2, q3 -> 1
    assert r2["map"] == pytest.approx((1 / 3 + 1 / 3 + 1 + 1) / 4)


def test_retrieval_map_matches_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 60)
    q = rng.normal(size=(60, 8)) + labels[:, None]
    g = rng.normal(size=(60, 8)) + labels[:, None]
    r = retrieval_metrics(q, g, labels, chunk=7)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    aps, top1 = [], 0
    for i in range(60):
        mask = np.arange(60) != i
        s = (qn[i] @ gn.T)[mask]
        rel = labels[mask] == labels[i]
        aps.append(average_precision_score(rel, s))
        top1 += rel[np.argmax(s)]
    assert r["map"] == pytest.approx(np.mean(aps), rel=1e-6)
    assert r["top1"] == pytest.approx(top1 / 60)


def test_cross_model_matrix_and_criterion():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 10)
    centers = rng.normal(size=(5, 16))
    old = centers[labels] + 1.5 * rng.normal(size=(50, 16))
    new_compat = centers[labels] + 0.1 * rng.normal(size=(50, 16))  # same space, tighter classes
    rot = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    new_indep = new_compat @ rot  # good on its own, in an unrelated space
    mc = cross_model_retrieval(old, new_compat, labels)
    mi = cross_model_retrieval(old, new_indep, labels)
    assert mc["new_new"]["top1"] == pytest.approx(mi["new_new"]["top1"])  # rotation-invariant
    assert bct_criterion(mc)["pass"] is True
    assert mi["new_old"]["top1"] < mi["old_old"]["top1"]
    assert bct_criterion(mi)["pass"] is False
    assert bct_criterion(mc)["applicable"] is True and bct_criterion(mi)["applicable"] is True
    assert cross_model_retrieval(old, new_compat[:, :8], labels)["new_old"] is None


def test_bct_criterion_not_applicable_instead_of_failed():
    """Different embedding sizes, or an old model already at 100% top-1: applicable false with a reason."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 6)
    old = rng.normal(size=(24, 8))
    differ = bct_criterion(cross_model_retrieval(old, rng.normal(size=(24, 5)), labels))
    assert differ["applicable"] is False and differ["pass"] is None
    assert "different sizes" in differ["reason"] and differ["new_old"] is None
    perfect_old = np.eye(4)[labels] * 5 + 0.01 * rng.normal(size=(24, 4))  # old/old top-1 = 100%
    full = bct_criterion(cross_model_retrieval(perfect_old, perfect_old + 0.01, labels))
    assert full["old_old"] == 1.0 and full["applicable"] is False and full["pass"] is None
    assert "cannot exceed" in full["reason"]
    assert bct_criterion(cross_model_retrieval(perfect_old, perfect_old, labels), "map")["applicable"] is False


def test_rel_nfr_reason():
    assert rel_nfr_reason(flip_rates(Y, OLD, NEW)) is None
    assert "ER_new = 0" in rel_nfr_reason(flip_rates(Y, OLD, Y))
    assert "ER_old = 1" in rel_nfr_reason(flip_rates(Y, (Y + 1) % 3, NEW))
