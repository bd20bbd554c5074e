"""Hi-LANDER's hierarchy: per-level decoding, super-nodes, training hierarchies and inference.

Decoding one level (reference ``utils/deduce.py::decode``, notes section 1.5):

1. keep edge ``j -> i`` iff ``density[j] > density[i]`` and ``edge_dist < 1 - tau``, where
   ``edge_dist = P_diff`` (``threshold="prob"``) or ``1 - cosine`` (``threshold="sim"``);
2. every node keeps only its kept in-edge of smallest ``edge_dist`` (its *parent*) -- a per-node
   arg-min done here with one sort instead of the reference's topological traversal;
3. nodes without a parent are *peaks*; clusters are the connected components of the forest.

Edges from all levels are accumulated in original node ids; the next level's
nodes are the peaks, with their own features and the (re-normalised) mean
feature of their cluster as cluster features.  Inference stops at the level
limit, when a level adds no edge, or (``early_stop``) when the number of added
edges did not fall by at least a factor ``k - 1`` (reference ``stop_iterating``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from toolkit.cluster.graph import build_graph
from toolkit.cluster.knn import knn_search, l2_normalize


def select_parents(src: np.ndarray, dst: np.ndarray, edge_dist: np.ndarray, density: np.ndarray,
                   tau: float, num_nodes: int) -> np.ndarray:
    """Each node's best higher-density neighbour (steps 1-2 above).

    Args:
        src, dst: int64 ``[E]`` edge endpoints (``src -> dst``).
        edge_dist: float ``[E]`` edge distances (``P_diff`` or ``1 - cosine``).
        density: float ``[N]`` node densities (predicted, or ground truth during training).
        tau: keep edges with ``edge_dist < 1 - tau``.
        num_nodes: N.

    Returns:
        int64 ``[N]`` parent id per node, ``-1`` for peaks.  Ties in ``edge_dist`` go to the edge listed first.
    """
    keep = (density[src] > density[dst]) & (edge_dist < 1.0 - tau)
    s, d, w = src[keep], dst[keep], edge_dist[keep]
    parent = np.full(num_nodes, -1, dtype=np.int64)
    if len(d):
        order = np.lexsort((w, d))
        d_sorted = d[order]
        first = np.ones(len(d_sorted), dtype=bool)
        first[1:] = d_sorted[1:] != d_sorted[:-1]
        parent[d_sorted[first]] = s[order][first]
    return parent


def components(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> np.ndarray:
    """Connected-component label per node of the undirected graph ``src - dst``: int64 ``[N]``, ids 0..C-1."""
    adj = sp.coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(num_nodes, num_nodes))
    _, labels = connected_components(adj, directed=False)
    return labels.astype(np.int64)


def segment_mean(x: np.ndarray, labels: np.ndarray, num_segments: int) -> np.ndarray:
    """Mean of the rows of ``x`` ``[N, D]`` per label (int64 ``[N]`` in 0..C-1): float32 ``[C, D]``."""
    n = len(labels)
    member = sp.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(num_segments, n))
    sums = np.asarray(member @ x, dtype=np.float32)
    counts = np.bincount(labels, minlength=num_segments).astype(np.float32)
    return sums / np.maximum(counts, 1.0)[:, None]


@dataclass
class LevelStats:
    """What one inference level did: node count, edges added, clusters after it, seconds per stage."""

    level: int
    nodes: int
    edges_added: int
    clusters: int
    seconds: dict[str, float] = field(default_factory=dict)


KNN_ON = ("peak", "cluster")


def _check_knn_on(knn_on: str) -> None:
    if knn_on not in KNN_ON:
        raise ValueError(f"knn_on must be one of {KNN_ON}, got {knn_on!r}")


def training_graphs(x: np.ndarray, y: np.ndarray, knn_k: list[int], levels: list[int], knn_kwargs: dict,
                    log: Callable[[str], None] = lambda _m: None, knn_on: str = "peak",
                    decode_keep: float = 1.0) -> list:
    """Build the multi-level training graphs from labelled meta-training data (notes section 1.7).

    For each ``(k, L)`` pair: level 0 is the kNN graph of all points; each next level decodes the
    previous one with the ground-truth density and ``tau = 0`` on raw similarity, then builds a
    kNN graph on the peaks (labels = the peaks' labels), for up to ``L`` levels or until the level
    has at most ``k`` nodes or adds no edge.

    Args:
        x: float32 ``[N, D]`` features (L2-normalised here); y: int64 ``[N]`` labels.
        knn_k, levels: equal-length lists (reference ``10,5,3`` and ``2,3,4``).
        knn_kwargs: keyword arguments of :func:`knn_search`.
        knn_on: which vectors of a level's nodes give its kNN graph and edge similarities, as in
            :func:`cluster_hierarchy`.
        decode_keep: share of the would-be children that keep their parent when a level is decoded, those with
            the most similar parent (1: every node with a higher-density neighbour, the reference). Below 1 the
            next level holds several fragments of a class, as inference's levels do.

    Returns:
        List of DGL graphs with ground truth (see :func:`toolkit.cluster.graph.build_graph`).

    Raises:
        ValueError: lists of different lengths, or ``knn_on`` unknown.
    """
    _check_knn_on(knn_on)
    if len(knn_k) != len(levels):
        raise ValueError(f"model.train.knn_k {list(knn_k)} and model.train.levels {list(levels)} differ in length")
    x = l2_normalize(x)
    graphs = []
    for k, num_levels in zip(knn_k, levels, strict=True):
        n_total = len(x)
        ids = np.arange(n_total)
        feats, cluster_feats, labels = x, x, y
        edges_src, edges_dst = [], []
        for _level in range(num_levels):
            if len(ids) <= k:
                break
            vecs = cluster_feats if knn_on == "cluster" else feats
            nbrs, sims = knn_search(vecs, k, **knn_kwargs)
            g = build_graph(feats, cluster_feats, nbrs, sims, labels, knn_vectors=vecs)
            graphs.append(g)
            src, dst = (t.numpy() for t in g.edges())
            parent = select_parents(src, dst, 1.0 - g.edata["raw_affine"].numpy(), g.ndata["density"].numpy(),
                                    0.0, len(ids))
            child = np.flatnonzero(parent >= 0)
            if len(child) > 0 and decode_keep < 1.0:
                psim = np.einsum("nd,nd->n", vecs[parent[child]], vecs[child])  # cosine of each parent edge
                keep = psim >= np.quantile(psim, 1.0 - decode_keep)
                parent[child[~keep]] = -1
                child = child[keep]
            if len(child) == 0:
                break
            edges_src.append(ids[parent[child]])
            edges_dst.append(ids[child])
            glabels = components(np.concatenate(edges_src), np.concatenate(edges_dst), n_total)
            peaks = np.flatnonzero(parent < 0)
            ids, feats, labels = ids[peaks], feats[peaks], labels[peaks]
            means = l2_normalize(segment_mean(x, glabels, int(glabels.max()) + 1))
            cluster_feats = means[glabels[ids]]
        log(f"training hierarchy k={k}: {len(graphs)} graphs so far")
    return graphs


def cluster_hierarchy(x: np.ndarray, predict: Callable, k: int = 10, tau: float = 0.8, threshold: str = "prob",
                      max_levels: int = 10, early_stop: bool = True, knn_kwargs: dict | None = None,
                      log: Callable[[str], None] = lambda _m: None,
                      knn_on: str = "peak", tau_upper: float | None = None,
                      memo: dict | None = None, singletons: str = "keep",
                      min_cluster_fraction: float = 0.0,
                      fragment_rule: str = "vote") -> tuple[np.ndarray, list[LevelStats]]:
    """Hierarchical inference: cluster ``x`` level by level with one trained model (notes section 1.8).

    Args:
        x: float32 ``[N, D]`` features (L2-normalised here).
        predict: ``predict(graph) -> (P_same [E], density [N])`` torch tensors (``Lander.predict``).
        k: kNN size including self (reference 10).
        tau: edge threshold (``P_same > tau`` or ``cosine > tau``).
        threshold: ``"prob"`` or ``"sim"``.
        max_levels: level limit (reference 10).
        early_stop: the ``k - 1`` edge-drop rule.
        knn_kwargs: keyword arguments of :func:`knn_search`.
        knn_on: ``"peak"`` (reference): a level's kNN graph and edge cosines come from its nodes' own
            (peak) features; ``"cluster"``: from the re-normalised mean feature of each node's cluster, so
            whole clusters are compared, as average-linkage HAC does (identical at level 0).
        tau_upper: threshold of levels 1 and above (``None``: ``tau`` at every level, as the reference). Upper
            levels link fragments by their mean features, whose P(same) lies on another scale than level 0's
            (issue 9). Set by ``model.infer.tau_upper`` (``auto``: tuned on meta-training classes).
        memo: a dict shared by calls on the same ``x``, ``predict``, ``k``, ``knn_on`` and ``threshold`` to reuse
            each level's kNN graph and GNN predictions: they depend only on the thresholds of the levels below
            (level 0's on none), so a grid over ``(tau, tau_upper)`` computes level 0 once and level 1 once per
            tau. Reused levels report 0 seconds for ``knn``, ``graph`` and ``gnn``.
        singletons: ``"keep"`` (the reference) or ``"attach"``: after the last level, every point still alone
            joins its nearest neighbour's cluster (cosine, level 0's kNN graph; :func:`attach_singletons`).
        min_cluster_fraction: after ``singletons``, clusters smaller than this fraction of the point-weighted mean
            cluster size join the cluster their members' level-0 neighbours vote for
            (:func:`absorb_fragments`); 0 keeps every cluster (the reference).
        fragment_rule: ``"vote"`` (every fragment joins the winner of its vote) or ``"cohesion"`` (only a fragment
            more attached to the winner than to itself joins; :func:`absorb_fragments`).

    Returns:
        ``(labels, stats)``: int64 ``[N]`` cluster ids 0..C-1 and one :class:`LevelStats` per level.

    Raises:
        ValueError: ``threshold`` not ``prob``/``sim``, ``knn_on``, ``singletons`` or ``fragment_rule`` unknown,
            ``N <= k``, or ``min_cluster_fraction`` outside ``[0, 1)``.
    """
    import time

    _check_knn_on(knn_on)
    if fragment_rule not in FRAGMENT_RULES:
        raise ValueError(f"fragment_rule must be one of {FRAGMENT_RULES}, got {fragment_rule!r}")
    if singletons not in SINGLETONS:
        raise ValueError(f"singletons must be one of {SINGLETONS}, got {singletons!r}")
    if threshold not in ("prob", "sim"):
        raise ValueError(f"threshold must be 'prob' or 'sim', got {threshold!r}")
    if not 0.0 <= min_cluster_fraction < 1.0:
        raise ValueError(f"min_cluster_fraction must be in [0, 1), got {min_cluster_fraction}")
    x = l2_normalize(x)
    n_total = len(x)
    if n_total <= k:
        raise ValueError(f"need more than k={k} points to cluster, got {n_total}")
    ids = np.arange(n_total)
    feats, cluster_feats = x, x
    edges_src: list[np.ndarray] = []
    edges_dst: list[np.ndarray] = []
    glabels = np.arange(n_total)
    stats: list[LevelStats] = []
    prev_added = np.inf
    applied: list[float] = []  # thresholds of the levels done so far: the memo key of the next level
    for level in range(max_levels):
        if len(ids) <= k:
            break
        t0 = time.perf_counter()
        key = tuple(applied)
        if memo is not None and key in memo:
            src, dst, dist, den, nbrs, sims = memo[key]
            t1 = t2 = t3 = t0
        else:
            vecs = cluster_feats if knn_on == "cluster" else feats
            nbrs, sims = knn_search(vecs, k, **(knn_kwargs or {}))
            t1 = time.perf_counter()
            g = build_graph(feats, cluster_feats, nbrs, sims, knn_vectors=vecs)
            t2 = time.perf_counter()
            p_same, den_t = predict(g)
            t3 = time.perf_counter()
            src, dst = (t.numpy() for t in g.edges())
            dist = (1.0 - p_same.numpy()) if threshold == "prob" else (1.0 - g.edata["raw_affine"].numpy())
            den = den_t.numpy()
            if memo is not None:
                memo[key] = (src, dst, dist, den, nbrs, sims)
        if level == 0:
            nbrs0, sims0 = nbrs, sims  # level 0's neighbours: what singletons=attach and absorption join
            nearest = nbrs[:, 0]  # each point's most similar other point
        level_tau = tau if level == 0 or tau_upper is None else tau_upper
        applied.append(float(level_tau))
        parent = select_parents(src, dst, dist, den, level_tau, len(ids))
        child = np.flatnonzero(parent >= 0)
        added = len(child)
        if added:
            edges_src.append(ids[parent[child]])
            edges_dst.append(ids[child])
            glabels = components(np.concatenate(edges_src), np.concatenate(edges_dst), n_total)
        t4 = time.perf_counter()
        n_clusters = int(glabels.max()) + 1
        stats.append(LevelStats(level, len(ids), added, n_clusters,
                                {"knn": t1 - t0, "graph": t2 - t1, "gnn": t3 - t2, "decode": t4 - t3}))
        log(f"level {level}: {len(ids)} nodes, {added} edges added, {n_clusters} clusters")
        if added == 0 or (early_stop and prev_added / added < k - 1) or level == max_levels - 1:
            break
        prev_added = added
        peaks = np.flatnonzero(parent < 0)
        ids, feats = ids[peaks], feats[peaks]
        means = l2_normalize(segment_mean(x, glabels, n_clusters))
        cluster_feats = means[glabels[ids]]
    if singletons == "attach" and stats:
        glabels = attach_singletons(glabels, nearest)
    if min_cluster_fraction > 0.0 and stats:
        min_size = fragment_size(glabels, min_cluster_fraction)
        before = len(np.unique(glabels))
        glabels = absorb_fragments(glabels, nbrs0, sims0, min_size, rule=fragment_rule)
        log(f"fragments: clusters under {min_size} points joined their neighbours' clusters "
            f"({before} -> {len(np.unique(glabels))} clusters)")
    _, labels = np.unique(glabels, return_inverse=True)
    return labels.astype(np.int64), stats


SINGLETONS = ("keep", "attach")
FRAGMENT_RULES = ("vote", "cohesion")
"""Values of ``fragment_rule`` / ``model.infer.fragment_rule`` (see :func:`absorb_fragments`)."""


def attach_singletons(labels: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """Join every point alone in its cluster to its nearest neighbour's cluster (a 1-NN assignment).

    The hierarchy leaves points whose every edge failed the threshold as clusters of one (on Omniglot full
    about 12% of the images, 60% of the clusters; docs/cluster.md, "Points left alone"). Two singletons that are
    each other's nearest neighbour form a pair; a point in a larger cluster never moves.

    Args:
        labels: int64 ``[N]`` cluster ids; nearest: int64 ``[N]`` each point's nearest other point (``-1``: none).

    Returns:
        int64 ``[N]`` cluster ids 0..C-1 (components of the clusters plus the singletons' links).
    """
    n = len(labels)
    alone = np.flatnonzero((np.bincount(labels, minlength=n)[labels] == 1) & (nearest >= 0))
    if not len(alone):
        return labels
    # a spanning chain per cluster plus one link per singleton; components() relabels 0..C-1
    order = np.argsort(labels, kind="stable")
    same = labels[order[1:]] == labels[order[:-1]]
    src = np.concatenate([order[:-1][same], alone])
    dst = np.concatenate([order[1:][same], nearest[alone]])
    return components(src, dst, n)


def fragment_size(labels: np.ndarray, fraction: float) -> int:
    """Smallest cluster size that is not a fragment: ``ceil(fraction * sum(s^2) / N)`` for cluster sizes ``s``.

    ``sum(s^2) / N`` is the point-weighted mean cluster size (the size of the cluster a random point is in), so
    the cut follows the clusters the data actually forms (20 images per Omniglot character, ~1,000 per MNIST
    digit) instead of an absolute count. Args: labels int64 ``[N]``; fraction in ``[0, 1)``. Returns an int >= 1.
    """
    sizes = np.bincount(labels).astype(np.float64)
    return max(1, int(np.ceil(fraction * float((sizes ** 2).sum()) / max(len(labels), 1))))


def absorb_fragments(labels: np.ndarray, nbrs: np.ndarray, sims: np.ndarray, min_size: int,
                     rule: str = "vote") -> np.ndarray:
    """Join every cluster of fewer than ``min_size`` points to the large cluster its members' neighbours vote for.

    The hierarchy's top level leaves small fragments of classes whose cluster-level edges all failed
    ``tau_upper`` (faces: 57 clusters for 19 people, 25 of them holding 90% of the images; docs/cluster.md,
    "Fragments"). Each member of a fragment votes for the clusters of its kNN neighbours that have at least
    ``min_size`` points, weighted by the cosine (floored at 0, plus a tiny tie-breaker); the fragment moves to the
    cluster with the most weight. A fragment with no neighbour in a large cluster stays; large clusters never
    move, so no chain forms. The same rule as HDBSCAN's ``min_cluster_size``, but fragments join a cluster
    instead of becoming noise.

    ``rule="cohesion"`` protects small classes: a fragment joins the winner only when more of its members' kNN
    neighbours lie in the winner than in the fragment itself (attachment > cohesion, neighbour counts, self
    included). A small class found whole is a cohesive fragment weakly attached to any large cluster (faces, 5
    people cut to 8 photos: cohesion 0.33-0.62, attachment 0.06-0.22; docs/cluster.md, "Fragments"), while a
    stray piece of a large class mostly points into it.

    Args:
        labels: int64 ``[N]`` cluster ids 0..C-1.
        nbrs: int64 ``[N, k']`` level-0 neighbours (``-1``: none), sims: float ``[N, k']`` their cosines.
        min_size: clusters with fewer points are fragments (``<= 1``: nothing changes).
        rule: ``"vote"`` or ``"cohesion"`` (:data:`FRAGMENT_RULES`).

    Returns:
        int64 ``[N]`` cluster ids 0..C'-1.

    Raises:
        ValueError: an unknown ``rule``.
    """
    if rule not in FRAGMENT_RULES:
        raise ValueError(f"rule must be one of {FRAGMENT_RULES}, got {rule!r}")
    labels = np.asarray(labels, dtype=np.int64)
    if min_size <= 1 or not len(labels):
        return labels
    sizes = np.bincount(labels)
    rows = np.flatnonzero(sizes[labels] < min_size)
    if not len(rows):
        return labels
    nb = nbrs[rows]
    valid = nb >= 0
    nlab = labels[np.where(valid, nb, 0)]
    r, c = np.nonzero(valid & (sizes[nlab] >= min_size))
    if not len(r):
        return labels
    frag, target = labels[rows[r]], nlab[r, c]
    weight = np.maximum(np.nan_to_num(sims[rows[r], c], neginf=0.0), 0.0) + 1e-6
    n_clusters = len(sizes)
    votes = sp.coo_matrix((weight, (frag, target)), shape=(n_clusters, n_clusters)).tocsr()
    moved = np.unique(frag)
    mapping = np.arange(n_clusters)
    mapping[moved] = np.asarray(votes[moved].argmax(axis=1)).ravel()
    if rule == "cohesion":  # neighbour counts of each fragment's members: inside it vs in its winner
        fr, fc = np.nonzero(valid)
        counts = sp.coo_matrix((np.ones(len(fr)), (labels[rows[fr]], nlab[fr, fc])),
                               shape=(n_clusters, n_clusters)).tocsr()
        inside = np.asarray(counts[moved, moved]).ravel()
        attached = np.asarray(counts[moved, mapping[moved]]).ravel()
        mapping[moved[attached <= inside]] = moved[attached <= inside]
    _, out = np.unique(mapping[labels], return_inverse=True)
    return out.astype(np.int64)
