"""Baselines users reach for instead of Hi-LANDER, all from scikit-learn, on the same L2-normalised features.

Thresholds are chosen on the *meta-training* data (the labelled information
Hi-LANDER learns from), by a grid search maximising pairwise (or BCubed) F on
a class-stratified subsample, so the comparison is fair:

* ``kmeans``: K given, or the true number of test classes ("oracle K", which no other method knows);
* ``hac``: average-linkage agglomerative clustering on cosine distance, cut at a tuned distance;
* ``dbscan``: cosine DBSCAN with a tuned ``eps`` (noise points become singletons);
* ``hdbscan``: HDBSCAN with a tuned ``min_cluster_size`` (noise points become singletons).
"""

from __future__ import annotations

import numpy as np

from toolkit.cluster.knn import l2_normalize
from toolkit.cluster.metrics import bcubed_f, pairwise_f
from toolkit.errors import InputError

HAC_MAX_POINTS = 40_000  # O(N^2) memory: 40k points need ~6.4 GB of distances


def _noise_to_singletons(labels: np.ndarray) -> np.ndarray:
    labels = labels.astype(np.int64).copy()
    noise = labels < 0
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(noise.sum())
    return labels


def run_method(method: str, x: np.ndarray, param: float | int) -> np.ndarray:
    """Cluster ``x`` ``[N, D]`` (L2-normalised float32) with one baseline and its parameter.

    Args:
        method: ``kmeans`` (param = K), ``hac`` (cosine distance cut), ``dbscan`` (eps, cosine),
            ``hdbscan`` (min cluster size).
        param: the method's parameter.

    Returns:
        int64 ``[N]`` cluster ids (noise as singletons).

    Raises:
        ValueError: unknown method.
    """
    from sklearn import cluster

    if method == "kmeans":
        k = int(min(param, len(x)))
        if len(x) > 50_000:
            model = cluster.MiniBatchKMeans(n_clusters=k, n_init=3, random_state=0, batch_size=4096)
        else:
            model = cluster.KMeans(n_clusters=k, n_init=3, random_state=0)
        return model.fit_predict(x).astype(np.int64)
    if method == "hac":
        model = cluster.AgglomerativeClustering(n_clusters=None, distance_threshold=float(param),
                                                metric="cosine", linkage="average")
        return model.fit_predict(x).astype(np.int64)
    if method == "dbscan":
        return _noise_to_singletons(cluster.DBSCAN(eps=float(param), min_samples=2, metric="cosine",
                                                   n_jobs=-1).fit_predict(x))
    if method == "hdbscan":
        return _noise_to_singletons(cluster.HDBSCAN(min_cluster_size=int(param), min_samples=1,
                                                    copy=True).fit_predict(x))
    raise ValueError(f"unknown method {method!r}")


GRIDS = {
    "hac": list(np.round(np.arange(0.05, 1.0, 0.05), 3)),
    "dbscan": list(np.round(np.arange(0.02, 0.6, 0.02), 3)),
    "hdbscan": [2, 3, 4, 5, 7, 10, 15, 20, 30, 50],
}


def stratified_subsample(y: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_points`` samples keeping whole classes (random classes until full)."""
    if len(y) <= max_points:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = []
    total = 0
    for c in rng.permutation(np.unique(y)):
        idx = np.flatnonzero(y == c)
        if total + len(idx) > max_points and keep:
            break
        keep.append(idx)
        total += len(idx)
    return np.sort(np.concatenate(keep))


def split_classes(y: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices by class: ``(fit_idx, val_idx)`` with about ``val_fraction`` of the classes held out.

    With ``val_fraction > 0`` and at least four classes, at least two classes are held out (a clustering
    score needs two) and at least two are kept for fitting; otherwise none is held out.
    """
    classes = np.unique(y)
    n_val = 0
    if val_fraction > 0 and len(classes) >= 4:
        n_val = min(max(int(round(val_fraction * len(classes))), 2), len(classes) - 2)
    val_classes = np.random.default_rng(seed).permutation(classes)[:n_val]
    is_val = np.isin(y, val_classes)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def tune(method: str, x: np.ndarray, y: np.ndarray, metric: str = "pairwise_f", max_points: int = 3000,
         seed: int = 0) -> tuple[float, dict[str, float]]:
    """Pick the baseline parameter maximising ``metric`` on labelled meta-training data.

    Args:
        method: ``hac``, ``dbscan`` or ``hdbscan``.
        x: float32 ``[N, D]`` meta-training features; y: int64 ``[N]`` labels.
        metric: ``pairwise_f`` or ``bcubed_f``.
        max_points: class-stratified subsample size.

    Returns:
        ``(best_param, scores)`` with ``scores`` mapping each tried parameter (as str) to its F-score.
    """
    idx = stratified_subsample(y, max_points, seed)
    xs, ys = l2_normalize(x[idx]), y[idx]
    score_fn = pairwise_f if metric == "pairwise_f" else bcubed_f
    scores = {}
    for p in GRIDS[method]:
        scores[str(p)] = score_fn(ys, run_method(method, xs, p))[2]
    best = max(scores, key=scores.get)
    return float(best), scores


def cluster_baseline(method: str, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                     test_y: np.ndarray | None, cfg) -> tuple[np.ndarray, dict]:
    """Run a baseline end to end (tune on meta-training data, then cluster the test features).

    Args:
        cfg: the ``baselines`` config node.

    Returns:
        ``(labels [M] int64, info)`` where ``info`` records the parameter and how it was chosen.

    Raises:
        InputError: ``kmeans`` without K or test labels; HAC on more than ``HAC_MAX_POINTS`` points.
    """
    x = l2_normalize(test_x)
    if method == "kmeans":
        if cfg.kmeans_k:
            return run_method("kmeans", x, int(cfg.kmeans_k)), {"k": int(cfg.kmeans_k), "k_source": "given"}
        if test_y is None:
            raise InputError("config", "baselines.kmeans_k", "k-means needs K when the test set has no labels")
        k = len(np.unique(test_y))
        return run_method("kmeans", x, k), {"k": k, "k_source": "oracle K (true number of test classes)"}
    if method == "hac" and len(x) > HAC_MAX_POINTS:
        raise InputError("config", "method", f"hac needs O(N^2) memory; {len(x)} points exceed {HAC_MAX_POINTS}")
    fixed = {"hac": cfg.hac_distance, "dbscan": cfg.dbscan_eps, "hdbscan": cfg.hdbscan_min_cluster_size}[method]
    if fixed is not None:
        param, info = float(fixed), {"param": float(fixed), "param_source": "given"}
    else:
        param, scores = tune(method, train_x, train_y, cfg.tune_metric, int(cfg.tune_max_points))
        info = {"param": param, "param_source": f"tuned on meta-training data ({cfg.tune_metric})",
                "tuning_scores": scores}
    return run_method(method, x, param), info
