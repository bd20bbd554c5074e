"""How well do single edge features rank same-class edges of a kNN graph?  (issue 9; docs/cluster.md)

Usage::

    .venv/bin/python benchmarks/cluster_edge_features.py [hydra overrides of toolkit cluster...]
    .venv/bin/python benchmarks/cluster_edge_features.py data=omniglot-full output_dir=DIR   # DIR: cached features

Loads the data as ``toolkit cluster`` does with the same overrides (an ``output_dir`` of an earlier run reuses its
encoder features), builds the level-0 kNN graph (``model.infer.knn_k``) of the meta-training and of the test
features exactly as the clustering does, and prints for each the ROC-AUC, for same-class edges, of the cosine and
of the relational edge features the linkage head can take (``nbr_cosine``, ``snn_jaccard``;
:func:`toolkit.cluster.graph.relational_edge_features`), plus a logistic regression (scikit-learn) fitted on the
meta-training edges and scored on the test edges: what a head that only weighs these features can reach.  No GNN
is trained; the numbers say which inputs carry signal that transfers to unseen classes.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from toolkit.cluster.command import knn_kwargs
from toolkit.cluster.features import load_cluster_data
from toolkit.cluster.graph import build_graph
from toolkit.cluster.knn import knn_search, l2_normalize
from toolkit.cluster.model import EDGE_FEATURES, edge_inputs
from toolkit.config import compose_config
from toolkit.runtime import Run


def edge_table(x: np.ndarray, y: np.ndarray, k: int, kw: dict) -> tuple[np.ndarray, np.ndarray]:
    """Edge features ``[E, F]`` (order of ``EDGE_FEATURES``) and same-class flags ``[E]`` of the kNN graph of ``x``."""
    xn = l2_normalize(x)
    nbrs, sims = knn_search(xn, k, **kw)
    g = build_graph(xn, xn, nbrs, sims, y)
    return edge_inputs(g, tuple(EDGE_FEATURES)).numpy(), g.edata["labels_conn"].numpy()


def main(overrides: list[str]) -> dict:
    """Print and return the per-feature AUCs on meta-training and test edges."""
    cfg = compose_config("cluster", [*overrides, "trainer.progress=false"])
    run = Run(Path(cfg.output_dir or tempfile.mkdtemp(prefix="edge_features_")))
    data = load_cluster_data(cfg, run)
    run.commit()  # keeps newly trained encoder features in output_dir for the next run
    if data.test_y is None:
        raise SystemExit("the test set has no labels: nothing to measure")
    k, kw = int(cfg.model.infer.knn_k), knn_kwargs(cfg.model)
    f_tr, y_tr = edge_table(data.train_x, data.train_y, k, kw)
    f_te, y_te = edge_table(data.test_x, data.test_y, k, kw)
    names = list(EDGE_FEATURES)
    report = {"overrides": overrides, "machine": f"{platform.machine()} {platform.node()}", "knn_k": k,
              "train_points": int(len(data.train_x)), "test_points": int(len(data.test_x)),
              "same_class_share": {"train": float(y_tr.mean()), "test": float(y_te.mean())}, "auc": {}}
    for i, name in enumerate(names):
        report["auc"][name] = {"train": float(roc_auc_score(y_tr, f_tr[:, i])),
                               "test": float(roc_auc_score(y_te, f_te[:, i]))}
    lr = LogisticRegression(max_iter=1000).fit(f_tr, y_tr)
    report["auc"]["logistic(all)"] = {"train": float(roc_auc_score(y_tr, lr.decision_function(f_tr))),
                                      "test": float(roc_auc_score(y_te, lr.decision_function(f_te)))}
    print(f"same-class share of kNN edges: meta-training {y_tr.mean():.3f}, test {y_te.mean():.3f}")
    for name, row in report["auc"].items():
        print(f"  {name:16s} edge ROC-AUC  meta-training {row['train']:.3f}  test {row['test']:.3f}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
