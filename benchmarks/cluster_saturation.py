"""Is the GNN's float32 P(same) too saturated to rank and threshold edges?  (issue 9, diagnostic)

Usage::

    .venv/bin/python benchmarks/cluster_saturation.py OUTPUT_DIR [hydra overrides of that toolkit cluster run...]

``OUTPUT_DIR`` is a finished Hi-LANDER ``toolkit cluster`` run with test labels (``model.ckpt``; features are
rebuilt as ``finished_run.load_finished_run`` does).  On the level-0 test kNN graph it prints the share of edges
whose float32 P(same) is exactly 1.0 or above 0.9999, and the ROC-AUC for same-class edges of the float32
P(same), of the float64 logit margin ``z_same - z_diff`` (which never saturates) and of the raw cosine.  Then it
tunes the inference settings on the meta-training classes and clusters the test set twice: as the command does
(float32 P(same), candidate thresholds rounded to 6 decimals) and with P(same) = sigmoid(margin) in float64 and
unrounded candidates, printing tau and the test pairwise / BCubed F of each.  Prints the machine it ran on.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import torch
from finished_run import load_finished_run
from sklearn.metrics import roc_auc_score

import toolkit.cluster.command as C
import toolkit.cluster.model as M
from toolkit.cluster.metrics import bcubed_f, pairwise_f


def _margins(model, g) -> np.ndarray:
    """float64 ``[E]`` logit margin ``z_same - z_diff`` of every edge of ``g``."""
    src, dst = g.edges()
    logits = model.edge_logits(model.node_embeddings(g), src, dst, M.edge_inputs(g, model.edge_features)).double()
    return (logits[:, 1] - logits[:, 0]).numpy()


def _predict_float64(self, g, edge_chunk: int = 1 << 20):
    """``Lander.predict`` with P(same) = sigmoid(margin) in float64 (the density stays float32)."""
    p = torch.sigmoid(torch.from_numpy(_margins(self, g)))
    src, dst = g.edges()
    return p, M.edge_density((2 * p - 1).float(), g.edata["raw_affine"], dst, g.num_nodes())


def _candidates_unrounded(p_same: np.ndarray) -> list[float]:
    qs = np.quantile(p_same, C.TAU_QUANTILES) if len(p_same) else np.array([])
    return sorted({float(v) for v in (*C.TAU_GRID, *qs) if 0.0 < v < 1.0})


def _cluster(cfg, data, model) -> tuple[float, float, float, int]:
    kw, inf = C.knn_kwargs(cfg.model), cfg.model.infer
    tau, upper, frac, _ = C.tune_inference(model, data.train_x, data.train_y, inf, kw)
    labels, _ = C.run_hierarchy(model, data.test_x, inf, kw, tau, upper, min_cluster_fraction=frac)
    return tau, pairwise_f(data.test_y, labels)[2], bcubed_f(data.test_y, labels)[2], len(np.unique(labels))


def main(argv: list[str]) -> None:
    """Print the saturation diagnostic of the run in ``argv[0]``."""
    out = Path(argv[0])
    cfg, data, model = load_finished_run(out, argv[1:])
    with torch.no_grad():
        p, cos, g = C._level0_p_same(model, data.test_x, int(cfg.model.infer.knn_k), C.knn_kwargs(cfg.model))
        margin = _margins(model, g)
    src, dst = (t.numpy() for t in g.edges())
    same = data.test_y[src] == data.test_y[dst]
    print(f"machine: {platform.machine()} {platform.node()}; run {out}; {len(p)} level-0 test edges, same-class "
          f"share {same.mean():.3f}")
    print(f"float32 P(same) == 1.0: {(p == 1.0).mean():.3f} of the edges; >= 0.9999: {(p >= 0.9999).mean():.3f}; "
          f"margin quantiles 1/10/50/90%: {np.round(np.quantile(margin, (0.01, 0.1, 0.5, 0.9)), 2).tolist()}")
    print(f"edge ROC-AUC: float32 P(same) {roc_auc_score(same, p):.4f}, float64 margin "
          f"{roc_auc_score(same, margin):.4f}, cosine {roc_auc_score(same, cos):.4f}")
    with torch.no_grad():
        rows = [("float32, rounded candidates (the command)", _cluster(cfg, data, model))]
        M.Lander.predict, C.tau_candidates = _predict_float64, _candidates_unrounded
        rows.append(("float64 margin, unrounded candidates", _cluster(cfg, data, model)))
    for name, (tau, pf, bf, n) in rows:
        print(f"{name}: tau {tau!r}, test pairwise F {pf:.4f}, BCubed F {bf:.4f}, {n} clusters")


if __name__ == "__main__":
    main(sys.argv[1:])
