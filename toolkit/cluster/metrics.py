"""Clustering metrics: pairwise F, BCubed F, NMI, ARI, cluster counts.

Pairwise and BCubed follow learn-to-cluster's ``evaluation/metrics.py`` (the
definitions Hi-LANDER reports; notes section 2), computed from one sparse
contingency table so BCubed is vectorised (no per-class loop):

* pairwise: ``tk = sum n_ij^2 - N``, ``pk = sum_j |P_j|^2 - N``, ``qk = sum_i |G_i|^2 - N``;
  precision ``tk / pk``, recall ``tk / qk`` (ordered pairs; the factor 2 cancels);
* BCubed: precision ``sum n_ij^2 / |P_j| / N``, recall ``sum n_ij^2 / |G_i| / N``.

Degenerate cases are defined instead of dividing by zero (the reference
returns NaN): with no predicted pair (all singletons) pairwise precision is 1,
with no true pair recall is 1, and F is 0 when precision + recall is 0.
"""

from __future__ import annotations

import numpy as np


def _contingency(labels_true: np.ndarray, labels_pred: np.ndarray):
    from sklearn.metrics.cluster import contingency_matrix

    return contingency_matrix(labels_true, labels_pred, sparse=True).tocsr()


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _check(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"labels_true and labels_pred must be non-empty and equal length, got {t.shape}, {p.shape}")
    return t, p


def pairwise_f(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[float, float, float]:
    """Pairwise precision, recall and F-score.

    Args:
        labels_true, labels_pred: int ``[N]`` label arrays.

    Returns:
        ``(precision, recall, f)`` floats in [0, 1].

    Raises:
        ValueError: empty or unequal inputs.
    """
    t, p = _check(labels_true, labels_pred)
    c = _contingency(t, p)
    n = t.size
    tk = float(c.data.astype(np.float64) @ c.data) - n
    pk = float(np.square(np.asarray(c.sum(axis=0), dtype=np.float64)).sum()) - n
    qk = float(np.square(np.asarray(c.sum(axis=1), dtype=np.float64)).sum()) - n
    precision = tk / pk if pk > 0 else 1.0
    recall = tk / qk if qk > 0 else 1.0
    return precision, recall, _f(precision, recall)


def bcubed_f(labels_true: np.ndarray, labels_pred: np.ndarray) -> tuple[float, float, float]:
    """BCubed precision, recall and F-score (Bagga & Baldwin 1998), vectorised over the contingency table.

    Args:
        labels_true, labels_pred: int ``[N]`` label arrays.

    Returns:
        ``(precision, recall, f)`` floats in [0, 1].

    Raises:
        ValueError: empty or unequal inputs.
    """
    t, p = _check(labels_true, labels_pred)
    c = _contingency(t, p).tocoo()
    n = t.size
    nij = c.data.astype(np.float64)
    pred_size = np.bincount(c.col, weights=nij, minlength=c.shape[1])
    true_size = np.bincount(c.row, weights=nij, minlength=c.shape[0])
    precision = float((nij**2 / pred_size[c.col]).sum() / n)
    recall = float((nij**2 / true_size[c.row]).sum() / n)
    return precision, recall, _f(precision, recall)


def cluster_counts(labels_pred: np.ndarray) -> dict[str, int]:
    """Number of predicted clusters, of singleton clusters, and of the largest clusters that hold 90% of the points.

    ``num_clusters_90`` (the fewest clusters, largest first, whose sizes add up to at least 90% of the points)
    tells a partition into K real clusters plus many small fragments (``num_clusters`` far above K,
    ``num_clusters_90`` near it) from one cut into many mid-sized pieces (both far above K).

    Args:
        labels_pred: int ``[N]`` predicted cluster ids (``N >= 1``).

    Returns:
        ``{"num_clusters", "num_singletons", "num_clusters_90"}`` as ints.
    """
    sizes = np.unique(np.asarray(labels_pred), return_counts=True)[1]
    held = np.cumsum(np.sort(sizes)[::-1])
    return {"num_clusters": int(len(sizes)), "num_singletons": int((sizes == 1).sum()),
            "num_clusters_90": int(np.searchsorted(held, 0.9 * held[-1]) + 1)}


def evaluate(labels_true: np.ndarray | None, labels_pred: np.ndarray) -> dict[str, float | int]:
    """All clustering metrics as a flat dict.

    Keys: ``num_clusters``, ``num_singletons``, ``num_clusters_90`` always; with ``labels_true`` also ``num_classes``,
    ``pairwise_precision``, ``pairwise_recall``, ``pairwise_f``, ``bcubed_precision``, ``bcubed_recall``,
    ``bcubed_f``, ``nmi`` (scikit-learn, arithmetic normalisation as in the reference) and ``ari``.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    out: dict[str, float | int] = dict(cluster_counts(labels_pred))
    if labels_true is None:
        return out
    pp, pr, pf = pairwise_f(labels_true, labels_pred)
    bp, br, bf = bcubed_f(labels_true, labels_pred)
    out.update({
        "num_classes": int(len(np.unique(labels_true))),
        "pairwise_precision": pp, "pairwise_recall": pr, "pairwise_f": pf,
        "bcubed_precision": bp, "bcubed_recall": br, "bcubed_f": bf,
        "nmi": float(normalized_mutual_info_score(labels_true, labels_pred)),
        "ari": float(adjusted_rand_score(labels_true, labels_pred)),
    })
    return out


def class_bootstrap_scores(labels_true: np.ndarray, predictions: dict[str, np.ndarray], n_boot: int = 200,
                           seed: int = 0) -> dict[str, np.ndarray]:
    """Pairwise F of each clustering on ``n_boot`` resamples of the *classes* (with replacement), paired.

    Each replicate draws as many classes as there are, with replacement; a class drawn twice enters twice, as a
    separate class: the k-th copy of every class shares predicted-label offset k, so predicted merges between
    different classes still count as false pairs within a layer of copies, while two copies of one class never
    pair up.  Every clustering is scored on the same draws, so differences between them are paired.  The spread
    of a clustering's replicates is the sampling error of its score over classes (Efron & Tibshirani 1993, ch. 6),
    which is what matters when settings chosen on labelled classes must transfer to unseen ones.

    Args:
        labels_true: int ``[N]`` true labels.
        predictions: name -> int ``[N]`` predicted labels of each method on the same points.
        n_boot: replicates; seed: RNG seed.

    Returns:
        name -> float64 ``[n_boot]`` pairwise F per replicate.

    Raises:
        ValueError: empty ``predictions`` or arrays of unequal length.
    """
    if not predictions:
        raise ValueError("no predictions to compare")
    t = np.asarray(labels_true)
    classes, inverse = np.unique(t, return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(len(classes))]
    names = list(predictions)
    preds = [np.asarray(predictions[n]) for n in names]
    if any(len(p) != len(t) for p in preds):
        raise ValueError("predictions and labels differ in length")
    span = int(max(int(p.max()) for p in preds)) + 1
    rng = np.random.default_rng(seed)
    out = np.zeros((len(names), n_boot))
    for b in range(n_boot):
        draw = rng.integers(0, len(classes), len(classes))
        occurrence = np.zeros(len(draw), np.int64)  # k for the k-th draw of the same class
        seen: dict[int, int] = {}
        for j, c in enumerate(draw.tolist()):
            occurrence[j] = seen.get(c, 0)
            seen[c] = occurrence[j] + 1
        sizes = [len(members[c]) for c in draw]
        idx = np.concatenate([members[c] for c in draw])
        truth = np.repeat(np.arange(len(draw)), sizes)  # one true class per drawn copy
        layer = np.repeat(occurrence, sizes)
        for i, p in enumerate(preds):
            out[i, b] = pairwise_f(truth, p[idx] + layer * span)[2]
    return dict(zip(names, out, strict=True))


def class_bootstrap_wins(labels_true: np.ndarray, predictions: dict[str, np.ndarray], n_boot: int = 200,
                         seed: int = 0) -> dict[str, float]:
    """How often each clustering has the best pairwise F when the *classes* are resampled with replacement.

    The replicates of :func:`class_bootstrap_scores`. With few classes the replicates disagree, which says the
    observed ranking is not reliable.

    Args:
        labels_true: int ``[N]`` true labels.
        predictions: name -> int ``[N]`` predicted labels of each method on the same points.
        n_boot: replicates; seed: RNG seed.

    Returns:
        name -> share of replicates (in [0, 1]) in which it has the highest pairwise F (ties: the first name).

    Raises:
        ValueError: empty ``predictions`` or arrays of unequal length.
    """
    scores = class_bootstrap_scores(labels_true, predictions, n_boot, seed)
    names = list(scores)
    best = np.argmax(np.stack([scores[n] for n in names]), axis=0)
    return {n: float(np.mean(best == i)) for i, n in enumerate(names)}
