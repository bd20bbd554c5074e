"""Model-update metrics: error rates, negative/positive flip rates, bootstrap CIs, retrieval compatibility.

Definitions (Yan et al., CVPR 2021, eqs. 2 and 11; Shen et al., CVPR 2020 §3):

* ER = (1/N) Σ 1(ŷ ≠ y)
* NFR = (1/N) Σ 1(ŷ_new ≠ y ∧ ŷ_old = y);  PFR = (1/N) Σ 1(ŷ_old ≠ y ∧ ŷ_new = y)
* relative NFR = NFR / ((1 − ER_old) · ER_new), the NFR expected if the two models erred independently
* cross-model retrieval: queries embedded by one model, gallery by another; CMC top-k and mAP, the test
  set serving as both query and gallery with each query's own sample removed from the gallery.
* BCT empirical compatibility criterion: M(new query, old gallery) > M(old query, old gallery); not
  applicable when the spaces differ or M(old, old) is already at its maximum.

All rates are fractions in [0, 1] (docs show percent).
"""

from __future__ import annotations

import numpy as np

RATE_KEYS = ("er_old", "er_new", "nfr", "pfr", "rel_nfr")


def _as_int(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr.astype(np.int64)


def flip_rates(labels: np.ndarray, pred_old: np.ndarray, pred_new: np.ndarray) -> dict[str, float]:
    """Error rates and flip rates of an update from ``pred_old`` to ``pred_new``.

    Args:
        labels, pred_old, pred_new: ``[N]`` integer arrays (N ≥ 1).

    Returns:
        ``{"er_old", "er_new", "nfr", "pfr", "rel_nfr", "n"}``; rates are fractions, ``rel_nfr`` is NaN
        when its denominator is 0.

    Raises:
        ValueError: on shape mismatch or N = 0.
    """
    y, po, pn = _as_int(labels, "labels"), _as_int(pred_old, "pred_old"), _as_int(pred_new, "pred_new")
    if not (len(y) == len(po) == len(pn)) or len(y) == 0:
        raise ValueError(f"need equal non-zero lengths, got {len(y)}, {len(po)}, {len(pn)}")
    rates = _rates(y[None] == po[None], y[None] == pn[None])
    return {k: float(v[0]) for k, v in rates.items()} | {"n": int(len(y))}


def _rates(old_ok: np.ndarray, new_ok: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised rates over rows of boolean ``[R, N]`` correctness matrices."""
    er_old = 1.0 - old_ok.mean(1)
    er_new = 1.0 - new_ok.mean(1)
    nfr = (old_ok & ~new_ok).mean(1)
    pfr = (~old_ok & new_ok).mean(1)
    denom = (1.0 - er_old) * er_new
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(denom > 0, nfr / np.where(denom > 0, denom, 1.0), np.nan)
    return {"er_old": er_old, "er_new": er_new, "nfr": nfr, "pfr": pfr, "rel_nfr": rel}


def bootstrap_ci(labels: np.ndarray, pred_old: np.ndarray, pred_new: np.ndarray, n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> dict[str, list[float]]:
    """Paired percentile-bootstrap confidence intervals of every rate in :func:`flip_rates`.

    Samples are resampled with replacement (the same resample for old and new predictions, so the
    intervals reflect the paired design).

    Args:
        labels, pred_old, pred_new: ``[N]`` integer arrays.
        n_boot: bootstrap replicates.
        level: confidence level (0.95 gives the 2.5th and 97.5th percentiles).
        seed: RNG seed.

    Returns:
        ``{rate: [low, high]}`` for each key of :data:`RATE_KEYS` (NaN replicates of ``rel_nfr`` ignored).
    """
    y, po, pn = _as_int(labels, "labels"), _as_int(pred_old, "pred_old"), _as_int(pred_new, "pred_new")
    rng = np.random.default_rng(seed)
    old_ok, new_ok = y == po, y == pn
    out: dict[str, list[float]] = {k: [] for k in RATE_KEYS}
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    chunks = []
    for start in range(0, n_boot, 200):  # bounded memory: 200 x N indices at a time
        idx = rng.integers(0, len(y), size=(min(200, n_boot - start), len(y)))
        chunks.append(_rates(old_ok[idx], new_ok[idx]))
    for k in RATE_KEYS:
        vals = np.concatenate([c[k] for c in chunks])
        vals = vals[np.isfinite(vals)]
        out[k] = [float(v) for v in np.percentile(vals, q)] if len(vals) else [float("nan")] * 2
    return out


def flipped_samples(ids: np.ndarray, labels: np.ndarray, pred_old: np.ndarray,
                    pred_new: np.ndarray) -> list[dict]:
    """List every sample whose correctness changed between the models.

    Returns:
        ``[{"id", "label", "old", "new", "flip": "negative"|"positive"}]`` in id order, JSON-ready.
    """
    y, po, pn = _as_int(labels, "labels"), _as_int(pred_old, "pred_old"), _as_int(pred_new, "pred_new")
    ids = np.asarray(ids)
    neg = (po == y) & (pn != y)
    pos = (po != y) & (pn == y)
    rows = []
    for i in np.flatnonzero(neg | pos):
        rows.append({"id": ids[i].item(), "label": int(y[i]), "old": int(po[i]), "new": int(pn[i]),
                     "flip": "negative" if neg[i] else "positive"})
    return rows


def per_class_flips(labels: np.ndarray, pred_old: np.ndarray, pred_new: np.ndarray) -> dict[int, dict]:
    """:func:`flip_rates` restricted to each class (rates relative to that class's sample count)."""
    y = _as_int(labels, "labels")
    return {int(c): flip_rates(y[y == c], np.asarray(pred_old)[y == c], np.asarray(pred_new)[y == c])
            for c in np.unique(y)}


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_metrics(query: np.ndarray, gallery: np.ndarray, labels: np.ndarray,
                      topk: tuple[int, ...] = (1, 5), chunk: int = 512) -> dict[str, float]:
    """Cosine-similarity retrieval with the same samples as queries and gallery, self-matches removed.

    Query ``i`` is ``query[i]``; its gallery is every ``gallery[j]`` with ``j ≠ i``.  A gallery item is
    relevant when its label equals the query's.  CMC top-k is the fraction of queries with a relevant
    item among the k nearest; AP is the mean precision at each relevant item's rank (the definition of
    scikit-learn's ``average_precision_score`` without ties); queries with no relevant item are skipped.

    Args:
        query: ``[N, E]`` float query embeddings.
        gallery: ``[N, E]`` float gallery embeddings (same samples, possibly another model).
        labels: ``[N]`` int.
        topk: CMC ranks to report.
        chunk: queries per block (memory ``chunk × N``).

    Returns:
        ``{"top1", "top5", ..., "map"}`` as fractions.

    Raises:
        ValueError: when shapes disagree.
    """
    q, g = _l2n(query), _l2n(gallery)
    y = _as_int(labels, "labels")
    if q.shape != g.shape or len(y) != len(q):
        raise ValueError(f"query {q.shape}, gallery {g.shape} and labels {y.shape} must agree")
    n = len(y)
    hits = {k: 0 for k in topk}
    ap_sum, n_valid = 0.0, 0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sim = q[start:stop] @ g.T
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # drop self-match
        order = np.argsort(-sim, axis=1, kind="stable")[:, : n - 1]
        rel = y[order] == y[start:stop, None]
        n_rel = rel.sum(1)
        for k in topk:
            hits[k] += int(rel[:, :k].any(1).sum())
        prec = np.cumsum(rel, axis=1) / np.arange(1, n, dtype=np.float64)[None]
        ok = n_rel > 0
        ap_sum += float(((prec * rel).sum(1)[ok] / n_rel[ok]).sum())
        n_valid += int(ok.sum())
    out = {f"top{k}": hits[k] / n for k in topk}
    out["map"] = ap_sum / n_valid if n_valid else float("nan")
    return out


def cross_model_retrieval(old_emb: np.ndarray, new_emb: np.ndarray, labels: np.ndarray,
                          topk: tuple[int, ...] = (1, 5)) -> dict[str, dict[str, float] | None]:
    """The 2 x 2 retrieval matrix ``{query}_{gallery}`` for ``old``/``new`` embeddings.

    Args:
        old_emb: ``[N, E_old]``; new_emb: ``[N, E_new]`` (cross entries need ``E_old == E_new``, else None).
        labels: ``[N]``.

    Returns:
        ``{"old_old", "new_old", "old_new", "new_new"}`` -> :func:`retrieval_metrics` dict or None.
    """
    same = old_emb.shape[1] == new_emb.shape[1]
    embs = {"old": old_emb, "new": new_emb}
    out: dict[str, dict[str, float] | None] = {}
    for qn in ("old", "new"):
        for gn in ("old", "new"):
            if qn != gn and not same:
                out[f"{qn}_{gn}"] = None
            else:
                out[f"{qn}_{gn}"] = retrieval_metrics(embs[qn], embs[gn], labels, topk)
    return out


def bct_criterion(matrix: dict[str, dict[str, float] | None], metric: str = "top1") -> dict[str, object]:
    """BCT's empirical compatibility criterion ``M(new, old) > M(old, old)`` on one retrieval metric.

    The criterion is reported as not applicable (``"applicable": False``, ``"pass": None`` and a
    ``"reason"``) rather than failed when it cannot be decided:

    * the cross entry is missing: the old and new embeddings have different sizes, so a new query
      cannot be compared with an old gallery (no projection was learned);
    * ``M(old, old)`` is already the metric's maximum (1.0, e.g. old top-1 of 100%) or undefined,
      so no new model can exceed it.

    Returns:
        ``{"metric", "new_old", "old_old", "applicable", "pass"}`` plus ``"reason"`` when not
        applicable.
    """
    cross, base = matrix.get("new_old"), matrix.get("old_old")
    old_old = None if base is None else base[metric]
    new_old = None if cross is None else cross[metric]
    reason = None
    if cross is None:
        reason = ("old and new embeddings have different sizes, so new queries cannot search the old "
                  "gallery (method=bct learns a projection)")
    elif old_old is None or not np.isfinite(old_old):
        reason = f"M(old, old) on {metric} is undefined"
    elif old_old >= 1.0:
        reason = f"M(old, old) on {metric} is already 1.0, so M(new, old) cannot exceed it"
    if reason is not None:
        return {"metric": metric, "new_old": new_old, "old_old": old_old, "applicable": False, "pass": None,
                "reason": reason}
    return {"metric": metric, "new_old": new_old, "old_old": old_old, "applicable": True,
            "pass": bool(new_old > old_old)}


def rel_nfr_reason(rates: dict) -> str | None:
    """Why ``rates["rel_nfr"]`` is undefined (reported as null), or None when it is a number.

    Relative NFR divides by ``(1 − ER_old) · ER_new``: it is undefined when the new model makes no
    error (ER_new = 0, hence NFR = 0 too) or the old model gets nothing right (ER_old = 1).
    """
    rel = rates.get("rel_nfr")
    if rel is not None and np.isfinite(rel):
        return None
    if rates.get("er_new") == 0:
        return "undefined: ER_new = 0 (the new model makes no error, so NFR = 0 and the denominator " \
               "(1 - ER_old) * ER_new is 0)"
    return "undefined: ER_old = 1 (the old model is never right, so NFR = 0 and the denominator " \
           "(1 - ER_old) * ER_new is 0)"
