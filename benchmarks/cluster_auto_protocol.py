"""Which held-out protocol lets `method=auto` pick the method that is best on the test classes?

Usage::

    .venv/bin/python benchmarks/cluster_auto_protocol.py OUTPUT_DIR [hydra overrides of toolkit cluster...]
    .venv/bin/python benchmarks/cluster_auto_protocol.py /tmp/faces0 data=faces encoder=dlib-face seed=0

``OUTPUT_DIR`` is an earlier Hi-LANDER (or ``method=auto``) ``toolkit cluster`` run with test labels whose
``model.ckpt`` was trained here (its GNN saw only the non-held-out meta-training classes, as auto's does); pass
that run's overrides, including ``seed``. For each candidate it prints the held-out pairwise F under the two
protocols of :func:`toolkit.cluster.command.auto_folds` -- ``fit-only`` (tune on the GNN's classes, score every
held-out class; auto's rule before 2026-12-07) and ``cross-fit`` (tune on the GNN's classes plus half of the
held-out ones, score the other half, swap; auto's rule when there are at least four held-out classes) -- and
the test pairwise F of the method as it runs alone (baselines tuned on all meta-training classes, Hi-LANDER with
the thresholds and fragment cut stored in the checkpoint), and its test pairwise F when tuned on the GNN's
classes only (what the ``fit-only`` score measures: on few meta-training classes it differs from the method run
alone). Then which candidate each protocol chooses and its test F against the best. Prints the machine it ran on.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
from finished_run import load_finished_run

from toolkit.cluster.baselines import HAC_MAX_POINTS, cluster_baseline, split_classes
from toolkit.cluster.command import (
    AUTO_CANDIDATES,
    auto_folds,
    heldout_scores,
    knn_kwargs,
    run_hierarchy,
    tune_inference,
)
from toolkit.cluster.metrics import pairwise_f


def main(argv: list[str]) -> None:
    """Print held-out F per protocol and test F per candidate for the run in ``argv[0]``."""
    out = Path(argv[0])
    cfg, data, model = load_finished_run(out, argv[1:])
    inf, seed = cfg.model.infer, int(cfg.seed or 0)
    fit_idx, val_idx = split_classes(data.train_y, float(cfg.model.train.val_fraction), seed)
    candidates = [m for m in AUTO_CANDIDATES if not (m == "hac" and len(data.test_x) > HAC_MAX_POINTS)]
    stored = (float(model.tau), model.tau_upper, model.min_cluster_fraction)
    print(f"machine: {platform.machine()} {platform.node()}; run {out}; meta-training classes "
          f"{len(np.unique(data.train_y))} ({len(np.unique(data.train_y[val_idx]))} held out), test classes "
          f"{len(np.unique(data.test_y))}")
    held = {}
    for protocol in ("fit-only", "cross-fit"):
        try:
            folds = auto_folds(data.train_y, fit_idx, val_idx, seed, int(inf.knn_k), protocol)
        except ValueError as exc:
            print(f"{protocol}: not applicable ({exc})")
            continue
        held[protocol], _, _ = heldout_scores(cfg, data, candidates, folds, lambda _fold: (model, None))
    test, test_fit = {}, {}
    fx, fy = data.train_x[fit_idx], data.train_y[fit_idx]
    for m in candidates:
        for tx, ty, into in ((data.train_x, data.train_y, test), (fx, fy, test_fit)):
            if m == "hilander":
                tau, upper, frac = stored if into is test else \
                    tune_inference(model, fx, fy, inf, knn_kwargs(cfg.model))[:3]
                lab, _ = run_hierarchy(model, data.test_x, inf, knn_kwargs(cfg.model), tau, upper,
                                       min_cluster_fraction=frac)
            else:
                lab, _ = cluster_baseline(m, tx, ty, data.test_x, data.test_y, cfg.baselines)
            into[m] = float(pairwise_f(data.test_y, np.asarray(lab))[2])
    print("candidate  " + "  ".join(f"held-out {p:>9s}" for p in held) + "  test (run alone)  test (tuned on the "
          "GNN's classes only)")
    for m in candidates:
        print(f"{m:10s} " + "  ".join(f"{held[p][m]:18.3f}" for p in held) + f"  {test[m]:16.3f}  {test_fit[m]:.3f}")
    best = max(test.values())
    for p, scores in held.items():
        chosen = max(candidates, key=lambda m, s=scores: s[m])
        print(f"{p}: chooses {chosen}, test F {test[chosen]:.3f} ({test[chosen] - best:+.3f} vs the best)")


if __name__ == "__main__":
    main(sys.argv[1:])
