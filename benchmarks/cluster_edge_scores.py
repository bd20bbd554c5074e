"""Diagnose Hi-LANDER's edge scores on digits: ROC-AUC of P(same) vs cosine on fit / held-out / test classes.

Usage: ``.venv/bin/python benchmarks/cluster_edge_scores.py [hydra overrides...]`` (e.g.
``model.train.val_fraction=0.3``).  Trains LANDER as ``toolkit cluster`` does (same split, graphs and trainer) on
the digits 0-4, then for the GNN's training classes ("fit"), the held-out meta-training classes ("val") and the
test digits 5-9 prints the same-class edge share, the edge ROC-AUC of P(same) and of the cosine, P(same)
quantiles, and pairwise F / number of clusters over a range of tau.  Numbers quoted in docs/cluster.md.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from toolkit.cluster.baselines import split_classes
from toolkit.cluster.command import knn_kwargs
from toolkit.cluster.graph import build_graph
from toolkit.cluster.hierarchy import cluster_hierarchy, training_graphs
from toolkit.cluster.knn import knn_search, l2_normalize
from toolkit.cluster.lightning import fit_lander
from toolkit.cluster.metrics import pairwise_f
from toolkit.config import compose_config

TAUS = (0.1, 0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999)


def main(overrides: list[str], seed: int = 0) -> None:
    """Train once with ``overrides`` and print the diagnostics per class set."""
    import tempfile

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    tx, ty, sx, sy = x[y < 5], y[y < 5], x[y >= 5], y[y >= 5]
    cfg = compose_config("cluster", [*overrides, "trainer.progress=false"])
    mc, kw = cfg.model, knn_kwargs(cfg.model)
    fit_idx, val_idx = split_classes(ty, float(mc.train.val_fraction), seed)
    graphs = training_graphs(tx[fit_idx], ty[fit_idx], list(mc.train.knn_k), list(mc.train.levels), kw)
    with tempfile.TemporaryDirectory() as tmp:
        model = fit_lander(graphs, mc, cfg.trainer, f"{tmp}/train", f"{tmp}/ckpt", seed).model
    sets = {"fit": (tx[fit_idx], ty[fit_idx]), "val": (tx[val_idx], ty[val_idx]), "test": (sx, sy)}
    for name, (xs, ys) in sets.items():
        if len(xs) <= 10:
            continue
        xn = l2_normalize(xs)
        nbrs, sims = knn_search(xn, 10, **kw)
        g = build_graph(xn, xn, nbrs, sims, ys)
        p_same = model.predict(g)[0].numpy()
        same = g.edata["labels_conn"].numpy()
        aucs = (roc_auc_score(same, p_same), roc_auc_score(same, g.edata["raw_affine"].numpy())) \
            if 0 < same.sum() < len(same) else (float("nan"), float("nan"))
        scores = {}
        for tau in TAUS:
            labels, _ = cluster_hierarchy(xs, model.predict, 10, tau, "prob", 10, True, kw)
            scores[tau] = (round(pairwise_f(ys, labels)[2], 3), int(labels.max() + 1))
        print(f"{name}: same-class edges {same.mean():.3f}  AUC P(same) {aucs[0]:.3f}  AUC cosine {aucs[1]:.3f}  "
              f"P(same) q10/50/90 {np.round(np.quantile(p_same, [0.1, 0.5, 0.9]), 4).tolist()}")
        print(f"  tau -> (pairwise F, clusters): {scores}")


if __name__ == "__main__":
    main(sys.argv[1:])
