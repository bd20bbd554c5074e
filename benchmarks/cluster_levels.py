"""Diagnose Hi-LANDER's upper levels: per level, how many edges are same-class and how many pass tau.

Usage::

    .venv/bin/python benchmarks/cluster_levels.py OUTPUT_DIR [hydra overrides of toolkit cluster...]
    .venv/bin/python benchmarks/cluster_levels.py /tmp/omf data=omniglot-full

``OUTPUT_DIR`` is the output directory of an earlier ``toolkit cluster`` run with test labels (its cached
features and ``model.ckpt`` are reused; give that run's ``data=...`` overrides). For the test set it replays
the hierarchy exactly as ``cluster_hierarchy`` does with the run's tau and prints, per level, the node and edge
counts, the share of edges joining two nodes of the same class (a super-node's class is the majority label of
its cluster), the edge ROC-AUC of P(same) and of the cosine, P(same) quantiles, how many edges pass tau and how
precise those are, the edges added and pairwise F after the level. Then it reruns the hierarchy with two
per-level thresholds (the level's own P(same) quantile at level 0's pass rate, and tau shifted by the drop of
the median P(same)) on the meta-training and test sets, to show whether a per-level threshold helps.
Numbers quoted in docs/cluster.md come from this script; it prints the machine it ran on.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
from finished_run import load_finished_run
from sklearn.metrics import roc_auc_score

from toolkit.cluster.command import knn_kwargs
from toolkit.cluster.graph import build_graph
from toolkit.cluster.hierarchy import components, segment_mean, select_parents
from toolkit.cluster.knn import knn_search, l2_normalize
from toolkit.cluster.metrics import pairwise_f


def replay(model, x: np.ndarray, y: np.ndarray, tau: float, k: int, kw: dict, rule: str = "fixed",
           max_levels: int = 10, verbose: bool = False) -> tuple[float, int]:
    """Run the hierarchy (knn_on=cluster) with a per-level threshold rule; return (pairwise F, clusters).

    ``rule``: ``fixed`` (one tau, the CLI's behaviour without early stop), ``quantile`` (each level keeps
    edges above its own P(same) quantile at level 0's pass rate), ``median`` (tau minus the drop of the
    level's median P(same) from level 0's).
    """
    x = l2_normalize(x)
    n = len(x)
    ids, feats, cf = np.arange(n), x, x
    es: list[np.ndarray] = []
    ed: list[np.ndarray] = []
    glabels = np.arange(n)
    q0 = med0 = None
    for level in range(max_levels):
        if len(ids) <= k:
            break
        nbrs, sims = knn_search(cf, k, **kw)
        g = build_graph(feats, cf, nbrs, sims, knn_vectors=cf)
        p_t, den_t = model.predict(g)
        p, den = p_t.numpy(), den_t.numpy()
        src, dst = (t.numpy() for t in g.edges())
        if level == 0:
            q0, med0, t = float(np.mean(p <= tau)), float(np.median(p)), tau
        elif rule == "quantile":
            t = float(np.quantile(p, q0))
        elif rule == "median":
            t = tau - (med0 - float(np.median(p)))
        else:
            t = tau
        if verbose:
            if level:
                major = np.array([np.bincount(y[glabels == c]).argmax() for c in range(glabels.max() + 1)])
                node_y = major[glabels[ids]]
            else:
                node_y = y
            same = node_y[src] == node_y[dst]
            passed = p > t
            row = {"level": level, "nodes": len(ids), "edges": len(src), "same_share": round(float(same.mean()), 3),
                   "auc_p_same": round(float(roc_auc_score(same, p)), 3),
                   "auc_cosine": round(float(roc_auc_score(same, g.edata["raw_affine"].numpy())), 3),
                   "p_same_q10_50_90": [round(float(v), 3) for v in np.quantile(p, [0.1, 0.5, 0.9])],
                   "tau": round(t, 3), "pass_share": round(float(passed.mean()), 4),
                   "pass_same_share": round(float(same[passed].mean()), 3) if passed.any() else None}
        parent = select_parents(src, dst, 1.0 - p, den, t, len(ids))
        child = np.flatnonzero(parent >= 0)
        if len(child):
            es.append(ids[parent[child]])
            ed.append(ids[child])
            glabels = components(np.concatenate(es), np.concatenate(ed), n)
        if verbose:
            row.update(added=int(len(child)), clusters=int(glabels.max() + 1),
                       pairwise_f=round(float(pairwise_f(y, glabels)[2]), 3))
            print(json.dumps(row), flush=True)
        if len(child) == 0:
            break
        peaks = np.flatnonzero(parent < 0)
        ids, feats = ids[peaks], feats[peaks]
        cf = l2_normalize(segment_mean(x, glabels, int(glabels.max()) + 1))[glabels[ids]]
    return float(pairwise_f(y, glabels)[2]), int(glabels.max() + 1)


def main(argv: list[str]) -> None:
    """Print the per-level table for the run in ``argv[0]`` and the per-level threshold variants."""
    out = Path(argv[0])
    cfg, data, model = load_finished_run(out, argv[1:])
    if getattr(model, "knn_on", "cluster") != "cluster":
        raise SystemExit("this diagnostic replays model.knn_on=cluster runs")
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    tau, k, kw = float(metrics["tau"]), int(cfg.model.infer.knn_k), knn_kwargs(cfg.model)
    print(f"machine: {platform.machine()} {platform.node()}; run {out}; tau {tau}")
    replay(model, data.test_x, data.test_y, tau, k, kw, verbose=True)
    for rule in ("quantile", "median"):
        for name, xs, ys in (("meta-training", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
            f, c = replay(model, xs, ys, tau, k, kw, rule=rule)
            print(f"rule={rule} {name}: pairwise F {f:.3f}, {c} clusters", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
