"""Diagnose Hi-LANDER: edge ROC-AUC of P(same) vs cosine, and how well tau chosen on meta-training transfers.

Usage::

    .venv/bin/python benchmarks/cluster_edge_scores.py [hydra overrides of toolkit cluster...]
    .venv/bin/python benchmarks/cluster_edge_scores.py data=omniglot-full output_dir=DIR model.train.rotate=true

Loads the data exactly as ``toolkit cluster`` does with the same overrides (so ``output_dir`` of an earlier run
reuses its cached encoder features), trains LANDER (or loads ``model.checkpoint``; each training is saved to
``output_dir`` for inference-only reruns) with the CLI's split, graphs and trainer, then for the GNN's
training classes ("fit"), the held-out meta-training classes ("val"), both ("all") and the test classes prints

* the same-class share of the level-0 kNN edges, the edge ROC-AUC of P(same) and of the cosine, P(same) quantiles;
* the tau that maximises pairwise F on that set over the CLI's candidates (``tau_candidates``), its F and cluster
  count there, and the test pairwise F / cluster count at that tau -- so one reads off whether the threshold chosen
  on meta-training classes transfers to unseen ones (the test row's own best tau is the oracle).

Numbers quoted in docs/cluster.md come from this script; it prints the machine it ran on.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from toolkit.cluster.baselines import split_classes
from toolkit.cluster.command import knn_kwargs, load_checkpoint, save_checkpoint, tau_candidates
from toolkit.cluster.features import load_cluster_data
from toolkit.cluster.graph import build_graph
from toolkit.cluster.hierarchy import cluster_hierarchy, training_graphs
from toolkit.cluster.knn import knn_search, l2_normalize
from toolkit.cluster.lightning import fit_lander
from toolkit.cluster.metrics import pairwise_f
from toolkit.config import compose_config
from toolkit.runtime import Run


def _edges(model, xs: np.ndarray, ys: np.ndarray, k: int, kw: dict) -> dict:
    xn = l2_normalize(xs)
    nbrs, sims = knn_search(xn, k, **kw)
    g = build_graph(xn, xn, nbrs, sims, ys)
    p_same = model.predict(g)[0].numpy()
    same = g.edata["labels_conn"].numpy()
    ok = 0 < same.sum() < len(same)
    return {"p_same": p_same, "same_share": float(same.mean()),
            "auc_gnn": float(roc_auc_score(same, p_same)) if ok else None,
            "auc_cosine": float(roc_auc_score(same, g.edata["raw_affine"].numpy())) if ok else None}


def main(overrides: list[str]) -> dict:
    """Train once with ``overrides``, print and return the diagnostics per class set."""
    cfg = compose_config("cluster", [*overrides, "trainer.progress=false"])
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(tempfile.mkdtemp(prefix="edge_scores_"))
    run = Run(out_dir)
    data = load_cluster_data(cfg, run)
    mc, inf, kw = cfg.model, cfg.model.infer, knn_kwargs(cfg.model)
    k, thr, knn_on = int(inf.knn_k), str(inf.threshold), str(mc.knn_on)
    seed = int(cfg.seed or 0)
    tx, ty = data.train_x, data.train_y
    fit_idx, val_idx = split_classes(ty, float(mc.train.val_fraction), seed)
    if mc.checkpoint:  # inference-only variants (tau, early_stop, max_levels) of an earlier training
        model = load_checkpoint(str(mc.checkpoint), tx.shape[1])
        knn_on = model.knn_on
    else:
        graphs = training_graphs(tx[fit_idx], ty[fit_idx], list(mc.train.knn_k), list(mc.train.levels), kw,
                                 knn_on=knn_on)
        with tempfile.TemporaryDirectory() as tmp:
            model = fit_lander(graphs, mc, cfg.trainer, f"{tmp}/train", f"{tmp}/ckpt", seed).model
        model.knn_on = knn_on
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = out_dir / (f"edge_scores_{knn_on}_rotate{int(bool(mc.train.get('rotate', False)))}_seed{seed}.ckpt")
        save_checkpoint(model, tx.shape[1], mc, ckpt, 0.0)
        print(f"model saved to {ckpt} (rerun with model.checkpoint={ckpt} to vary inference only)", flush=True)

    def cluster(xs, tau):
        return cluster_hierarchy(xs, model.predict, k, tau, thr, int(inf.max_levels), bool(inf.early_stop), kw,
                                 knn_on=knn_on)[0]

    sets = {"fit": fit_idx, "val": val_idx, "all": np.arange(len(ty))}
    test_cache: dict[float, tuple[float, int]] = {}

    def test_f(tau):
        if tau not in test_cache:
            lab = cluster(data.test_x, tau)
            test_cache[tau] = (float(pairwise_f(data.test_y, lab)[2]), int(lab.max() + 1))
        return test_cache[tau]

    report = {"overrides": overrides, "machine": f"{platform.machine()} {platform.node()}",
              "test_points": int(len(data.test_x)), "test_classes": int(len(np.unique(data.test_y)))}
    for name, idx in [*sets.items(), ("test", None)]:
        xs, ys = (data.test_x, data.test_y) if idx is None else (tx[idx], ty[idx])
        if len(xs) <= k:
            continue
        e = _edges(model, xs, ys, k, kw)
        cands = tau_candidates(e.pop("p_same")) if thr == "prob" else [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
        scores = {}
        for tau in cands:
            lab = cluster(xs, tau)
            scores[tau] = (float(pairwise_f(ys, lab)[2]), int(lab.max() + 1))
        best = max(scores, key=lambda t: scores[t][0])
        row = {**e, "classes": int(len(np.unique(ys))), "best_tau": best, "best_f": scores[best][0],
               "best_clusters": scores[best][1], "test_f_at_best_tau": test_f(best)[0],
               "test_clusters_at_best_tau": test_f(best)[1]}
        report[name] = row
        print(f"{name}: {row['classes']} classes, same-class edges {e['same_share']:.3f}, AUC P(same) "
              f"{e['auc_gnn']} vs cosine {e['auc_cosine']}; best tau {best:.4g}: F {row['best_f']:.3f} "
              f"({row['best_clusters']} clusters) -> test F {row['test_f_at_best_tau']:.3f} "
              f"({row['test_clusters_at_best_tau']} clusters)", flush=True)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
