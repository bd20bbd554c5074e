"""Measuring a model update: error, flip rates with bootstrap CIs, flipped samples, retrieval, ``flips.png``.

Shared by ``toolkit train-compatible`` and ``toolkit compare-models`` (:mod:`toolkit.compat.task`); the
metrics themselves are in :mod:`toolkit.compat.metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def evaluate_update(labels: np.ndarray, pred_old: np.ndarray, pred_new: np.ndarray, ids: np.ndarray,
                    old_emb: np.ndarray | None, new_emb: np.ndarray | None, cfg: Any,
                    run: Any, old_classes_mask: np.ndarray | None = None) -> dict:
    """Flip metrics, bootstrap CIs, flipped-sample list (``flips.json``), retrieval matrix, ``flips.png``.

    Args:
        labels: ``[N]`` int64 true labels; pred_old, pred_new: ``[N]`` int64 predictions (-1 = a class the
            model cannot predict, always wrong); ids: ``[N]`` sample ids written to ``flips.json``.
        old_emb, new_emb: ``[N, E]`` float32 embeddings (the retrieval matrix and BCT criterion need both).
        cfg: the command's config (``bootstrap``, ``retrieval``, ``seed``, ``method``).
        run: :class:`toolkit.runtime.Run` the artifacts are written through.
        old_classes_mask: ``[N]`` bool, samples of classes the old model knows (adds ``old_classes`` rates).

    Returns:
        The metrics dict (rates are fractions in [0, 1]; see :func:`toolkit.compat.metrics.flip_rates`).
    """
    from toolkit.compat.metrics import (
        bct_criterion,
        bootstrap_ci,
        cross_model_retrieval,
        flip_rates,
        flipped_samples,
        rel_nfr_reason,
    )

    bs = cfg.get("bootstrap") or {}
    m: dict[str, Any] = flip_rates(labels, pred_old, pred_new)
    if (why := rel_nfr_reason(m)) is not None:
        m["rel_nfr_reason"] = why
    m["ci95"] = bootstrap_ci(labels, pred_old, pred_new, n_boot=int(bs.get("n", 1000)),
                             level=float(bs.get("level", 0.95)), seed=int(cfg.get("seed") or 0))
    flips = flipped_samples(ids, labels, pred_old, pred_new)
    m["negative_flips"] = sum(f["flip"] == "negative" for f in flips)
    m["positive_flips"] = len(flips) - m["negative_flips"]
    run.write_json("flips.json", {"ids_are": "test-set row index unless the data names samples",
                                  "flips": flips})
    if old_classes_mask is not None and 0 < old_classes_mask.sum() < len(labels):
        m["old_classes"] = flip_rates(labels[old_classes_mask], pred_old[old_classes_mask],
                                      pred_new[old_classes_mask])
        if (why := rel_nfr_reason(m["old_classes"])) is not None:
            m["old_classes"]["rel_nfr_reason"] = why
    if old_emb is not None and new_emb is not None:
        rc = cfg.get("retrieval") or {}
        n_max = rc.get("max_samples")
        sel = np.arange(len(labels))
        if n_max and len(sel) > int(n_max):
            sel = np.sort(np.random.default_rng(0).choice(sel, int(n_max), replace=False))
        matrix = cross_model_retrieval(old_emb[sel], new_emb[sel], labels[sel])
        m["retrieval"] = matrix
        m["bct_criterion"] = bct_criterion(matrix, str(rc.get("criterion_metric", "top1")))
    plot_flips(labels, pred_old, pred_new, run.path("flips.png"), title=str(cfg.get("method", "update")))
    return m


def plot_flips(labels: np.ndarray, pred_old: np.ndarray, pred_new: np.ndarray, path: Path, title: str) -> None:
    """Bar chart of ER_old, ER_new, NFR and PFR (percent) overall and per class (up to 40), saved to ``path``.

    Args: labels, pred_old, pred_new as :func:`evaluate_update`; path: PNG file; title: plot title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.compat.metrics import flip_rates, per_class_flips

    groups = {"all": flip_rates(labels, pred_old, pred_new)}
    classes = per_class_flips(labels, pred_old, pred_new)
    if len(classes) <= 40:
        groups.update({str(c): v for c, v in classes.items()})
    keys = ["er_old", "er_new", "nfr", "pfr"]
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(groups) + 2), 3.5))
    for j, k in enumerate(keys):
        ax.bar(x + (j - 1.5) * 0.2, [100 * g[k] for g in groups.values()], width=0.2, label=k.upper().replace("_", " "))
    ax.set_xticks(x, list(groups))
    ax.set_xlabel("class")
    ax.set_ylabel("%")
    ax.set_title(f"{title}: error and flip rates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
