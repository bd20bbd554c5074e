"""Does level 0's threshold transfer better as a rank (a quantile of P(same)) than as a probability?

Usage::

    .venv/bin/python benchmarks/cluster_tau_scale.py OUTPUT_DIR [hydra overrides of toolkit cluster...]

``OUTPUT_DIR`` is a finished Hi-LANDER ``toolkit cluster`` run with test labels (its cached features, ``model.ckpt``
and ``metrics.json`` are reused; pass that run's overrides, including ``seed``). The run chose ``tau`` on the
meta-training classes. Read as a rank, that choice keeps the share ``1 - q`` of the meta-training level-0 edges,
``q`` = share of those edges with P(same) <= tau. This script clusters the test set with the run's own
``tau_upper`` and fragment setting at (a) the run's tau (probability scale, what the command does) and (b) the
test graph's own ``q``-quantile of P(same) (rank scale), and prints test pairwise F, clusters, and the test F of
the best tau over the same candidate list (oracle, uses the test labels). Prints the machine it ran on.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
from finished_run import load_finished_run

from toolkit.cluster.command import _level0_p_same, knn_kwargs, run_hierarchy, tau_candidates
from toolkit.cluster.metrics import pairwise_f


def main(argv: list[str]) -> None:
    """Print test pairwise F at the run's tau on the probability scale and on the rank scale."""
    out = Path(argv[0])
    cfg, data, model = load_finished_run(out, argv[1:])
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    tau = float(m["tau"])
    upper = None if m.get("tau_upper") is None else float(m["tau_upper"])
    model.min_cluster_fraction = float(m.get("min_cluster_fraction") or 0.0)
    inf, kw, k = cfg.model.infer, knn_kwargs(cfg.model), int(cfg.model.infer.knn_k)
    p_meta = _level0_p_same(model, data.train_x, k, kw)[0]
    p_test = _level0_p_same(model, data.test_x, k, kw)[0]
    q = float(np.mean(p_meta <= tau))
    tau_rank = float(np.quantile(p_test, q))

    memo: dict = {}  # one level-0 graph for every tau

    def score(t: float) -> tuple[float, int]:
        labels, _ = run_hierarchy(model, data.test_x, inf, kw, t, upper, memo=memo)
        return float(pairwise_f(data.test_y, labels)[2]), int(labels.max() + 1)

    cands = sorted({*tau_candidates(p_test), *tau_candidates(p_meta), tau, tau_rank})
    curve = {t: score(t) for t in cands}
    best = max(curve, key=lambda t: curve[t][0])
    print(f"machine: {platform.machine()} {platform.node()}; run {out}; tau_upper {upper}; "
          f"min_cluster_fraction {model.min_cluster_fraction}")
    print(f"meta-training edges with P(same) <= tau: q = {q:.4f}; test edges with P(same) <= tau: "
          f"{np.mean(p_test <= tau):.4f}")
    for name, t in (("probability scale (command)", tau), ("rank scale", tau_rank), ("oracle", best)):
        f, c = curve[t]
        print(f"{name:28s} tau {t:.6f}  test pairwise F {f:.4f}  clusters {c}")


if __name__ == "__main__":
    main(sys.argv[1:])
