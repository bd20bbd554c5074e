"""k-nearest-neighbour lists with faiss on L2-normalised features (cosine similarity = inner product).

Follows the reference's ``utils/knn.py`` (exact ``IndexFlatIP``, self included)
and adds an HNSW index (Malkov & Yashunin, TPAMI 2018) above a size threshold,
where exact search would be quadratic.  Unlike the reference, the node itself
is removed by id rather than assumed to be in column 0, which is wrong for
duplicate vectors and approximate search (hilander.md, section 1.9).
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of ``x`` ``[N, D]``; returns float32 ``[N, D]`` (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def knn_search(x: np.ndarray, k: int, exact_max_points: int = 100_000, hnsw_m: int = 32,
               ef_search: int = 128, ef_construction: int = 100, threads: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Find each point's ``k - 1`` nearest other points by inner product.

    Args:
        x: L2-normalised features ``[N, D]`` float32.
        k: neighbourhood size *including the point itself*, as in the reference (k=10 gives 9 neighbours).
        exact_max_points: use exact ``IndexFlatIP`` when ``N <= exact_max_points``, HNSW otherwise.
        hnsw_m, ef_search, ef_construction: HNSW graph degree and search/construction beam widths.
        threads: faiss OpenMP threads (default: all cores).

    Returns:
        ``(nbrs, sims)``: int64 ``[N, k-1]`` neighbour ids and float32 ``[N, k-1]`` cosine similarities,
        sorted by decreasing similarity, the point itself excluded.  Missing neighbours (HNSW can
        return fewer) are ``-1`` with similarity ``-inf``.

    Raises:
        ValueError: if ``k < 2`` or ``N < k``.
    """
    import faiss

    n, d = x.shape
    if k < 2 or n < k:
        raise ValueError(f"kNN needs 2 <= k <= number of points, got k={k}, N={n}")
    if threads:
        faiss.omp_set_num_threads(int(threads))
    x = np.ascontiguousarray(x, dtype=np.float32)
    if n <= exact_max_points:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(ef_construction)
        index.hnsw.efSearch = max(int(ef_search), k + 1)
    index.add(x)
    sims, nbrs = index.search(x, k + 1)  # one extra so k-1 remain after removing self (and a duplicate)
    nbrs = nbrs.astype(np.int64)
    is_self = nbrs == np.arange(n)[:, None]
    invalid = nbrs < 0
    sims = np.where(is_self | invalid, -np.inf, sims).astype(np.float32)
    order = np.argsort(-sims, axis=1, kind="stable")[:, : k - 1]
    sims = np.take_along_axis(sims, order, axis=1)
    nbrs = np.take_along_axis(nbrs, order, axis=1)
    nbrs[~np.isfinite(sims)] = -1
    return nbrs, sims
