"""kNN, graph construction, density, decoding and the hierarchy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.cluster.graph import build_graph, gt_density
from toolkit.cluster.hierarchy import (
    absorb_fragments,
    attach_singletons,
    cluster_hierarchy,
    components,
    fragment_size,
    select_parents,
    training_graphs,
)
from toolkit.cluster.knn import knn_search, l2_normalize


def blobs(n_per=30, classes=4, dim=8, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(classes), n_per)


def test_knn_excludes_self_and_sorts():
    x = l2_normalize(np.random.default_rng(0).normal(size=(50, 4)))
    nbrs, sims = knn_search(x, 5)
    assert nbrs.shape == (50, 4)
    assert not (nbrs == np.arange(50)[:, None]).any()
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    np.testing.assert_allclose(sims[:, 0], np.sum(x * x[nbrs[:, 0]], axis=1), rtol=1e-5)


def test_knn_with_duplicates_drops_self_by_id():
    x = l2_normalize(np.ones((12, 3), np.float32))
    nbrs, _ = knn_search(x, 4)
    assert not (nbrs == np.arange(12)[:, None]).any()


def test_hnsw_path_agrees_with_exact():
    x = l2_normalize(blobs(50, 4, 16)[0])
    exact, _ = knn_search(x, 6)
    approx, _ = knn_search(x, 6, exact_max_points=10)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact, approx, strict=True)])
    assert overlap > 0.95


def test_gt_density_hand_computed():
    nbrs = np.array([[1, 2], [0, 2], [0, 1]])
    sims = np.array([[0.9, 0.5], [0.9, 0.4], [0.5, 0.4]], np.float32)
    labels = np.array([0, 0, 1])
    np.testing.assert_allclose(gt_density(nbrs, sims, labels), [(0.9 - 0.5) / 2, (0.9 - 0.4) / 2, (-0.5 - 0.4) / 2])


def test_graph_edges_point_to_centre_and_rows_normalise():
    x, y = blobs(10, 3)
    x = l2_normalize(x)
    nbrs, sims = knn_search(x, 4)
    g = build_graph(x, x, nbrs, sims, y)
    src, dst = g.edges()
    assert g.num_edges() == 30 * 3
    np.testing.assert_array_equal(dst.numpy(), np.repeat(np.arange(30), 3))
    np.testing.assert_array_equal(src.numpy(), nbrs.reshape(-1))
    row = torch.zeros(30).index_add_(0, dst, g.edata["affine"])
    np.testing.assert_allclose(row.numpy(), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(g.edata["labels_conn"].numpy(), (y[src] == y[dst]).astype(int))


def test_select_parents_keeps_best_higher_density_edge():
    src = np.array([1, 2, 0, 3])
    dst = np.array([0, 0, 1, 2])
    dist = np.array([0.3, 0.1, 0.05, 0.9])
    density = np.array([0.1, 0.5, 0.7, 0.9])
    parent = select_parents(src, dst, dist, density, tau=0.5, num_nodes=4)
    # node 0: edges from 1 (d=.3) and 2 (d=.1), both denser -> 2; node 1: from 0 not denser -> none;
    # node 2: from 3 denser but dist .9 >= 1 - tau -> none
    np.testing.assert_array_equal(parent, [2, -1, -1, -1])


def test_components_of_forest():
    labels = components(np.array([1, 2]), np.array([0, 3]), 5)
    assert labels[0] == labels[1] and labels[2] == labels[3] and len(set(labels)) == 3


class _OracleModel:
    """Predicts P_same from the true labels (tests decoding independently of learning)."""

    def __init__(self, x, y):
        self.lookup = {tuple(np.round(v, 5)): c for v, c in zip(l2_normalize(x), y, strict=True)}

    def __call__(self, g):
        f = g.ndata["features"].numpy()
        lab = np.array([self.lookup[tuple(np.round(v, 5))] for v in f])
        src, dst = (t.numpy() for t in g.edges())
        p = torch.from_numpy((lab[src] == lab[dst]).astype(np.float32) * 0.98 + 0.01)
        sims = g.edata["raw_affine"]
        den = torch.zeros(g.num_nodes()).index_add_(0, g.edges()[1], sims * (2 * p - 1)) / 9
        return p, den


def test_hierarchy_with_oracle_links_recovers_classes():
    x, y = blobs(40, 5, 16, spread=0.3)
    labels, stats = cluster_hierarchy(x, _OracleModel(x, y), k=10, tau=0.5, max_levels=5)
    from toolkit.cluster.metrics import pairwise_f

    assert pairwise_f(y, labels)[2] > 0.95
    assert stats[0].nodes == 200 and stats[0].edges_added > 0


def test_training_graphs_levels_shrink():
    x, y = blobs(30, 6, 8, spread=0.2)
    graphs = training_graphs(x, y, [10, 5], [2, 3], {})
    sizes = [g.num_nodes() for g in graphs]
    assert sizes.count(180) == 2 and any(s < 180 for s in sizes)  # one level 0 per k, then smaller levels
    assert all("density" in g.ndata and "mask_conn" in g.edata for g in graphs)
    with pytest.raises(ValueError, match="differ in length"):
        training_graphs(x, y, [10, 5], [2], {})


def test_hierarchy_on_cluster_means_with_oracle_links_recovers_classes():
    x, y = blobs(40, 5, 16, spread=0.3)
    labels, stats = cluster_hierarchy(x, _OracleModel(x, y), k=10, tau=0.5, max_levels=5, knn_on="cluster")
    from toolkit.cluster.metrics import pairwise_f

    assert pairwise_f(y, labels)[2] > 0.95 and stats[0].nodes == 200
    with pytest.raises(ValueError, match="knn_on"):
        cluster_hierarchy(x, _OracleModel(x, y), k=10, knn_on="centroid")


def test_training_graphs_on_cluster_means_link_clusters_by_their_mean_cosine():
    x, y = blobs(10, 40, 8, spread=0.3)
    peak = training_graphs(x, y, [10], [3], {})
    mean = training_graphs(x, y, [10], [3], {}, knn_on="cluster")
    assert len(mean) >= 2 and mean[0].num_edges() == peak[0].num_edges()  # level 0 is the same graph
    g = mean[1]
    src, dst = g.edges()
    cf = g.ndata["cluster_features"]
    np.testing.assert_allclose(g.edata["raw_affine"].numpy(), (cf[src] * cf[dst]).sum(1).numpy(), atol=1e-5)
    f = g.ndata["features"]
    assert not np.allclose(g.edata["raw_affine"].numpy(), (f[src] * f[dst]).sum(1).numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="knn_on"):
        training_graphs(x, y, [10], [2], {}, knn_on="x")



def test_relational_edge_features_match_a_direct_computation():
    from toolkit.cluster.graph import knn_edges, relational_edge_features

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nbrs, sims = knn_search(x, 5)
    src, dst, _ = knn_edges(nbrs, sims)
    nbr_cos, jac = relational_edge_features(x, nbrs, sims, src, dst, chunk=7)  # several chunks
    lists = [set([i, *nbrs[i][nbrs[i] >= 0].tolist()]) for i in range(len(x))]
    means = np.stack([x[i] + sum(max(float(s), 0.0) * x[j] for j, s in zip(nbrs[i], sims[i], strict=True) if j >= 0)
                      for i in range(len(x))])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    for e in range(len(src)):
        a, b = lists[src[e]], lists[dst[e]]
        assert jac[e] == pytest.approx(len(a & b) / len(a | b))
        assert nbr_cos[e] == pytest.approx(float(means[src[e]] @ means[dst[e]]), abs=1e-5)
    # both are rotation invariant, as the linkage head's inputs must be under model.train.rotate
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    xr = (x @ q).astype(np.float32)
    nbr_cos_r, jac_r = relational_edge_features(xr, nbrs, sims, src, dst)
    np.testing.assert_allclose(nbr_cos_r, nbr_cos, atol=1e-5)
    np.testing.assert_array_equal(jac_r, jac)


def test_decode_keep_leaves_fragments_in_training_levels():
    x, y = blobs(n_per=20, classes=20, spread=0.6)
    full = training_graphs(x, y, [10], [2], {})
    half = training_graphs(x, y, [10], [2], {}, decode_keep=0.5)
    assert len(full) == len(half) == 2
    assert full[0].num_nodes() == half[0].num_nodes() == 400  # level 0 is the same
    # level 1 keeps the nodes whose parent edge was dropped: more, smaller fragments
    assert half[1].num_nodes() > full[1].num_nodes()
    children_full = 400 - full[1].num_nodes()
    children_half = 400 - half[1].num_nodes()
    assert children_half == pytest.approx(0.5 * children_full, abs=2)


def test_hierarchy_tau_upper_applies_to_levels_above_zero_only():
    x, y = blobs(40, 5, 16, spread=0.3)
    model = _OracleModel(x, y)
    kw = {"k": 3, "tau": 0.5, "max_levels": 5, "early_stop": False}  # k=3: level 0 leaves 11 trees for 5 classes
    same, _ = cluster_hierarchy(x, model, **kw)
    explicit, _ = cluster_hierarchy(x, model, **kw, tau_upper=0.5)
    np.testing.assert_array_equal(same, explicit)  # None means tau at every level
    level0, _ = cluster_hierarchy(x, model, **{**kw, "max_levels": 1})
    frozen, stats = cluster_hierarchy(x, model, **kw, tau_upper=1.0)
    np.testing.assert_array_equal(frozen, level0)  # no upper-level edge passes P(same) > 1
    assert len(stats) >= 2 and stats[1].edges_added == 0 and stats[0].edges_added > 0
    assert frozen.max() > same.max()  # the upper levels are what merge level 0's trees


class _CountingCosineModel:
    """P(same) from the edge cosine; counts calls (tests the memo, whose reuse must not change any result)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, g):
        self.calls += 1
        sims = g.edata["raw_affine"]
        den = torch.zeros(g.num_nodes()).index_add_(0, g.edges()[1], sims) / 9
        return (sims + 1) / 2, den


def test_hierarchy_memo_reuses_lower_levels_without_changing_labels():
    x, _ = blobs(40, 5, 16, spread=0.6)
    kw = {"k": 5, "max_levels": 6, "early_stop": False}
    pairs = [(t, u) for t in (0.8, 0.85, 0.9) for u in (0.7, 0.8, 0.9, None)]
    plain = [cluster_hierarchy(x, _CountingCosineModel(), tau=t, tau_upper=u, **kw)[0] for t, u in pairs]
    assert len({lab.max() for lab in plain}) > 2  # the grid does change the clustering
    counting, memo = _CountingCosineModel(), {}
    for (t, u), expected in zip(pairs, plain, strict=True):
        labels, stats = cluster_hierarchy(x, counting, tau=t, tau_upper=u, memo=memo, **kw)
        np.testing.assert_array_equal(labels, expected)
    levels_run = sum(len(cluster_hierarchy(x, _CountingCosineModel(), tau=t, tau_upper=u, **kw)[1]) for t, u in pairs)
    assert counting.calls < levels_run  # reused, not recomputed
    assert (0.8,) in memo and () in memo  # level 1 once per level-0 tau, level 0 once
    assert sum(len(k) == 0 for k in memo) == 1


def test_attach_singletons_joins_lone_points_to_their_nearest_neighbours_cluster():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 4, 5])  # 2, 3, 4, 5 alone
    nearest = np.array([1, 0, 1, 4, 3, 0, 4, 8, 7])  # 2 -> cluster 0, 3 -> cluster 1, 4 and 5 each other's
    out = attach_singletons(labels, nearest)
    assert out.max() + 1 == 3
    assert len({*out[[0, 1, 2, 5]]}) == 1 and len({*out[[3, 4, 6]]}) == 1 and out[7] == out[8]
    assert out[0] != out[3] and out[7] not in (out[0], out[3])
    np.testing.assert_array_equal(attach_singletons(np.array([0, 0, 1, 1]), np.array([1, 0, 3, 2])),
                                  np.array([0, 0, 1, 1]))  # nothing alone: unchanged
    lone = attach_singletons(np.array([0, 0, 1]), np.array([1, 0, -1]))  # no neighbour: stays alone
    assert lone[2] != lone[0]


def test_hierarchy_singletons_attach_leaves_no_cluster_of_one():
    x, _ = blobs(40, 5, 16, spread=0.6)
    kw = {"k": 5, "tau": 0.97, "max_levels": 3}  # a high tau: most points are left alone
    kept, _ = cluster_hierarchy(x, _CountingCosineModel(), **kw)
    assert (np.bincount(kept) == 1).sum() > 10
    attached, _ = cluster_hierarchy(x, _CountingCosineModel(), **kw, singletons="attach")
    assert (np.bincount(attached) == 1).sum() == 0 and attached.max() < kept.max()
    multi = np.bincount(kept)[kept] > 1  # points already in a cluster keep their cluster-mates
    assert len(np.unique(kept[multi])) == len(np.unique(attached[multi]))
    with pytest.raises(ValueError, match="singletons"):
        cluster_hierarchy(x, _CountingCosineModel(), **kw, singletons="drop")


def test_fragment_size_is_a_fraction_of_the_point_weighted_mean_cluster_size():
    labels = np.repeat([0, 1, 2], [10, 10, 2])  # sum(s^2) / N = 204 / 22
    assert fragment_size(labels, 0.5) == int(np.ceil(0.5 * 204 / 22)) == 5
    assert fragment_size(labels, 0.0) == 1


def test_absorb_fragments_moves_small_clusters_to_the_cluster_their_neighbours_vote_for():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3])  # clusters 2 (points 8, 9) and 3 (point 10) are small
    nbrs = np.full((11, 3), -1)
    sims = np.zeros((11, 3), dtype=np.float32)
    nbrs[8], sims[8] = [9, 0, 4], [0.9, 0.8, 0.3]   # 8: its fragment-mate, then clusters 0 (0.8) and 1 (0.3)
    nbrs[9], sims[9] = [8, 5, 1], [0.9, 0.4, 0.35]  # 9: cluster 1 (0.4) and cluster 0 (0.35): 0 wins 1.15 to 0.7
    nbrs[10], sims[10] = [8, 9, -1], [0.7, 0.6, -np.inf]  # 10: only fragment neighbours: stays alone
    out = absorb_fragments(labels, nbrs, sims, min_size=3)
    assert out[8] == out[9] == out[0] and out[4] != out[0]
    assert out[10] not in (out[0], out[4]) and out.max() == 2  # 0..C'-1
    assert len({*out[:4]}) == 1 and len({*out[4:8]}) == 1  # large clusters never move or merge
    np.testing.assert_array_equal(absorb_fragments(labels, nbrs, sims, min_size=1), labels)


def test_hierarchy_min_cluster_fraction_leaves_fewer_small_clusters():
    x, _ = blobs(40, 5, 16, spread=0.6)
    kw = {"k": 5, "tau": 0.97, "max_levels": 3, "singletons": "attach"}
    plain, _ = cluster_hierarchy(x, _CountingCosineModel(), **kw)
    absorbed, _ = cluster_hierarchy(x, _CountingCosineModel(), **kw, min_cluster_fraction=0.5)
    cut = fragment_size(plain, 0.5)
    assert (np.bincount(plain) < cut).sum() > 0 and absorbed.max() < plain.max()
    big = np.bincount(plain)[plain] >= cut  # points of large clusters keep their cluster-mates
    assert len(np.unique(plain[big])) == len(np.unique(absorbed[big]))
    with pytest.raises(ValueError, match="min_cluster_fraction"):
        cluster_hierarchy(x, _CountingCosineModel(), **kw, min_cluster_fraction=1.0)


def test_cohesion_rule_keeps_a_fragment_that_points_into_itself():
    # two fragments of 3 beside two large clusters (0: points 0-4, 1: points 5-9)
    labels = np.array([0] * 5 + [1] * 5 + [2] * 3 + [3] * 3)
    nbrs = np.full((16, 3), -1)
    sims = np.zeros((16, 3), dtype=np.float32)
    for i in (10, 11, 12):  # fragment 2: a small class found whole, each point's neighbours are itself and a mate
        mate = 10 + (i - 9) % 3
        nbrs[i], sims[i] = [i, mate, 0], [1.0, 0.9, 0.2]  # counts: inside 2 of 3, attachment to 0: 1 of 3
    for i in (13, 14, 15):  # fragment 3: a stray piece of cluster 1, its neighbours are mostly in cluster 1
        nbrs[i], sims[i] = [i, 5 + i - 13, 6 + i - 13], [1.0, 0.8, 0.7]  # inside 1 of 3, attachment 2 of 3
    vote = absorb_fragments(labels, nbrs, sims, min_size=4)
    assert vote[10] == vote[0] and vote[13] == vote[5]  # the vote joins both
    kept = absorb_fragments(labels, nbrs, sims, min_size=4, rule="cohesion")
    assert len({*kept[10:13]}) == 1 and kept[10] not in (kept[0], kept[5])  # the cohesive one stays whole
    assert kept[13] == kept[14] == kept[15] == kept[5]  # the attached one still joins
    assert kept.max() == 2
    with pytest.raises(ValueError, match="rule"):
        absorb_fragments(labels, nbrs, sims, min_size=4, rule="centroid")


def test_hierarchy_passes_the_fragment_rule():
    x, _ = blobs(40, 5, 16, spread=0.6)
    kw = {"k": 5, "tau": 0.97, "max_levels": 3, "singletons": "attach", "min_cluster_fraction": 0.5}
    vote, _ = cluster_hierarchy(x, _CountingCosineModel(), **kw)
    guarded, _ = cluster_hierarchy(x, _CountingCosineModel(), **kw, fragment_rule="cohesion")
    assert guarded.max() >= vote.max()  # the guard can only keep fragments the vote would have moved
    with pytest.raises(ValueError, match="fragment_rule"):
        cluster_hierarchy(x, _CountingCosineModel(), **kw, fragment_rule="centroid")
