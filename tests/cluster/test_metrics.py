"""Clustering metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import fowlkes_mallows_score

from toolkit.cluster.metrics import bcubed_f, cluster_counts, evaluate, pairwise_f

TRUE = np.array([0, 0, 0, 1, 1])
PRED = np.array([0, 0, 1, 1, 1])


def test_pairwise_hand_computed():
    # ordered same-cluster pairs: pred {3 pairs*2... } -> tk = (4 + 1 + 4) - 5 = 4, pk = (4 + 9) - 5 = 8, qk = (9 + 4) - 5 = 8
    p, r, f = pairwise_f(TRUE, PRED)
    assert (p, r) == pytest.approx((0.5, 0.5))
    assert f == pytest.approx(0.5)


def test_bcubed_hand_computed():
    # precision: items in pred cluster {0,1}: 2 * (2/2); pred cluster {2,3,4}: item2 1/3, items3,4 2/3 each -> (2 + 1/3 + 4/3)/5
    p, r, f = bcubed_f(TRUE, PRED)
    assert p == pytest.approx((2 + 1 / 3 + 4 / 3) / 5)
    # recall: class {0,1,2}: items0,1 2/3 each, item2 1/3; class {3,4}: 1 each -> (4/3 + 1/3 + 2)/5
    assert r == pytest.approx((4 / 3 + 1 / 3 + 2) / 5)
    assert f == pytest.approx(2 * p * r / (p + r))


def test_pairwise_geometric_mean_matches_sklearn_fmi():
    rng = np.random.default_rng(0)
    t, q = rng.integers(0, 20, 2000), rng.integers(0, 30, 2000)
    p, r, _ = pairwise_f(t, q)
    assert np.sqrt(p * r) == pytest.approx(fowlkes_mallows_score(t, q))


def test_bcubed_matches_naive_loop():
    rng = np.random.default_rng(1)
    t, q = rng.integers(0, 7, 300), rng.integers(0, 9, 300)
    prec = np.mean([np.mean(t[q == q[i]] == t[i]) for i in range(300)])
    rec = np.mean([np.mean(q[t == t[i]] == q[i]) for i in range(300)])
    p, r, _ = bcubed_f(t, q)
    assert (p, r) == pytest.approx((prec, rec))


def test_all_singletons_is_defined_not_nan():
    p, r, f = pairwise_f(np.array([0, 0, 1, 1]), np.arange(4))
    assert (p, r, f) == (1.0, 0.0, 0.0)
    m = evaluate(np.array([0, 0, 1, 1]), np.arange(4))
    assert all(np.isfinite(v) for v in m.values())
    assert cluster_counts(np.arange(4)) == {"num_clusters": 4, "num_singletons": 4, "num_clusters_90": 4}
    # two clusters of 45 points plus ten singletons: 90 of 100 points sit in the two large clusters
    frag = np.concatenate([np.zeros(45, int), np.ones(45, int), np.arange(2, 12)])
    assert cluster_counts(frag) == {"num_clusters": 12, "num_singletons": 10, "num_clusters_90": 2}
    assert cluster_counts(np.concatenate([frag, [12]]))["num_clusters_90"] == 3  # 90 of 101 < 90%


def test_perfect_clustering_and_unlabelled():
    m = evaluate(TRUE, TRUE + 10)
    assert m["pairwise_f"] == m["bcubed_f"] == pytest.approx(1.0)
    assert m["nmi"] == pytest.approx(1.0) and m["ari"] == pytest.approx(1.0)
    assert set(evaluate(None, PRED)) == {"num_clusters", "num_singletons", "num_clusters_90"}


def test_class_bootstrap_wins_separates_a_clear_winner_from_a_tie():
    from toolkit.cluster.metrics import class_bootstrap_wins

    y = np.repeat(np.arange(20), 10)
    perfect, merged = y.copy(), y // 2  # merged joins pairs of classes
    # merged listed first: ties would go to it, so it loses only if its cross-class merges are counted
    wins = class_bootstrap_wins(y, {"merged": merged, "perfect": perfect}, n_boot=50)
    assert wins == {"merged": 0.0, "perfect": 1.0}
    # two clusterings that each split a different class: the winner depends on which classes are drawn
    a, b = y.copy(), y.copy()
    a[y == 0] = np.where(np.arange(10) < 5, 100, 0)
    b[y == 1] = np.where(np.arange(10) < 5, 101, 1)
    wins = class_bootstrap_wins(y, {"a": a, "b": b}, n_boot=200, seed=1)
    assert 0.2 < wins["a"] < 0.8 and abs(wins["a"] + wins["b"] - 1.0) < 1e-9
    with pytest.raises(ValueError):
        class_bootstrap_wins(y, {})


def test_class_bootstrap_scores_are_paired_replicates_whose_spread_shrinks_with_more_classes():
    from toolkit.cluster.metrics import class_bootstrap_scores, pairwise_f

    def split_some(y: np.ndarray) -> np.ndarray:  # every third class split in two: F depends on which are drawn
        pred = y.copy()
        for c in np.unique(y)[::3]:
            rows = np.flatnonzero(y == c)
            pred[rows[: len(rows) // 2]] = 1000 + c
        return pred

    few, many = np.repeat(np.arange(6), 10), np.repeat(np.arange(120), 10)
    spreads = []
    for y in (few, many):
        pred = split_some(y)
        boot = class_bootstrap_scores(y, {"p": pred, "same": pred.copy(), "perfect": y}, n_boot=100, seed=3)
        assert boot["p"].shape == (100,) and np.array_equal(boot["p"], boot["same"])  # same draws for every entry
        assert np.all(boot["perfect"] == 1.0) and boot["p"].mean() < 1.0
        assert abs(boot["p"].mean() - pairwise_f(y, pred)[2]) < 0.05
        spreads.append(boot["p"].std())
    assert spreads[0] > 2 * spreads[1] > 0.0
    with pytest.raises(ValueError, match="length"):
        class_bootstrap_scores(few, {"short": few[:-1]})
