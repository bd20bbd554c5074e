"""Does tau chosen on meta-training classes transfer to unseen classes?  Pairwise F against tau per class subset.

Usage::

    .venv/bin/python benchmarks/cluster_tau_transfer.py OUTPUT_DIR [hydra overrides of toolkit cluster...]
    .venv/bin/python benchmarks/cluster_tau_transfer.py benchmarks/results/runs/digits/seed1/hilander seed=1

``OUTPUT_DIR`` is an earlier Hi-LANDER ``toolkit cluster`` run with test labels (its cached features and
``model.ckpt`` are reused; pass that run's overrides, including ``seed``). The meta-training classes are split
exactly as training split them (``model.train.val_fraction``, same seed) into the classes the GNN was trained on
and the held-out ones. For every tau of one grid (the fixed grid plus P(same) quantiles of the three sets) it
clusters each set with the run's model and prints the pairwise F; then the tau each set would choose and the
test pairwise F at that tau. A gap between the ``gnn-trained`` and ``test`` choices is the threshold bias of
tuning on classes the GNN has fitted. Numbers quoted in docs/cluster.md come from this script; it prints the
machine it ran on.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
from finished_run import load_finished_run

from toolkit.cluster.baselines import split_classes
from toolkit.cluster.command import _level0_p_same, knn_kwargs, tau_candidates
from toolkit.cluster.hierarchy import cluster_hierarchy
from toolkit.cluster.metrics import pairwise_f


def f_curve(model, x: np.ndarray, y: np.ndarray, taus: list[float], cfg) -> dict[float, tuple[float, int]]:
    """Pairwise F and cluster count of the run's hierarchy on ``(x, y)`` at every tau."""
    inf, kw = cfg.model.infer, knn_kwargs(cfg.model)
    out = {}
    for tau in taus:
        labels, _ = cluster_hierarchy(x, model.predict, int(inf.knn_k), tau, str(inf.threshold), int(inf.max_levels),
                                      bool(inf.early_stop), kw, knn_on=model.knn_on)
        out[tau] = (float(pairwise_f(y, labels)[2]), int(labels.max() + 1))
    return out


def main(argv: list[str]) -> None:
    """Print F(tau) on the GNN-trained, held-out, all meta-training and test classes of the run in ``argv[0]``."""
    out = Path(argv[0])
    cfg, data, model = load_finished_run(out, argv[1:])
    fit_idx, val_idx = split_classes(data.train_y, float(cfg.model.train.val_fraction), int(cfg.seed or 0))
    sets = {"gnn-trained": (data.train_x[fit_idx], data.train_y[fit_idx]),
            "held-out": (data.train_x[val_idx], data.train_y[val_idx]),
            "all meta": (data.train_x, data.train_y), "test": (data.test_x, data.test_y)}
    k, kw = int(cfg.model.infer.knn_k), knn_kwargs(cfg.model)
    taus = sorted({t for name, (x, _) in sets.items() if len(x) > k
                   for t in tau_candidates(_level0_p_same(model, x, k, kw)[0])})
    print(f"machine: {platform.machine()} {platform.node()}; run {out}; "
          f"classes: {', '.join(f'{n} {len(np.unique(y))}' for n, (_, y) in sets.items())}")
    curves = {n: f_curve(model, x, y, taus, cfg) for n, (x, y) in sets.items() if len(x) > k}
    print("tau       " + "  ".join(f"{n:>12s}" for n in curves))
    for t in taus:
        print(f"{t:<9.6g} " + "  ".join(f"{curves[n][t][0]:12.3f}" for n in curves))
    summary = {}
    for n, c in curves.items():
        best = max(taus, key=lambda t, c=c: c[t][0])
        summary[n] = {"tau": best, "own_pairwise_f": round(c[best][0], 3),
                      "test_pairwise_f": round(curves["test"][best][0], 3), "test_clusters": curves["test"][best][1]}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
