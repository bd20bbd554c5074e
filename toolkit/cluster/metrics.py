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
    """Number of predicted clusters and of singleton clusters."""
    sizes = np.unique(np.asarray(labels_pred), return_counts=True)[1]
    return {"num_clusters": int(len(sizes)), "num_singletons": int((sizes == 1).sum())}


def evaluate(labels_true: np.ndarray | None, labels_pred: np.ndarray) -> dict[str, float | int]:
    """All clustering metrics as a flat dict.

    Keys: ``num_clusters``, ``num_singletons`` always; with ``labels_true`` also ``num_classes``,
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
