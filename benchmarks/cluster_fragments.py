"""Fragments of a finished Hi-LANDER run: test scores and cluster counts per ``model.infer.min_cluster_fraction``.

Usage::

    .venv/bin/python benchmarks/cluster_fragments.py OUTPUT_DIR [hydra overrides of toolkit cluster...]
    .venv/bin/python benchmarks/cluster_fragments.py benchmarks/results/runs/faces/seed0/cache \\
        data=faces encoder=dlib-face seed=0

``OUTPUT_DIR`` is an earlier Hi-LANDER ``toolkit cluster`` run with test labels (its ``model.ckpt`` and cached
features; ``bench_cluster.py`` keeps them in ``benchmarks/results/runs/<dataset>/seed<k>/cache``); pass that run's
overrides, including ``seed``. With the run's GNN and thresholds fixed, it clusters the meta-training classes the
thresholds were tuned on (``model.train.tau_on``) and the test set once per value of
:data:`toolkit.cluster.command.FRAGMENT_GRID`, and prints pairwise F, BCubed F, the number of clusters and its ratio
to the number of classes for each, which value ``min_cluster_fraction=auto`` chooses (the largest within one
class-bootstrap standard error of the best meta-training pairwise F) and which the plain argmax would have chosen.
``--grid=0,0.05,...`` (before the run directory) tries other candidate fractions with the same rule. Prints the
machine it ran on.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
from finished_run import load_finished_run

from toolkit.cluster.baselines import split_classes
from toolkit.cluster.command import FRAGMENT_GRID, knn_kwargs, run_hierarchy, tune_fragments
from toolkit.cluster.metrics import bcubed_f, pairwise_f


def main(argv: list[str]) -> None:
    """Print the fragment table of the run in ``argv[0]`` (``--grid F,F,...`` first: other candidate fractions)."""
    grid = FRAGMENT_GRID
    if argv and argv[0].startswith("--grid"):
        spec = argv[0].split("=", 1)[1] if "=" in argv[0] else argv.pop(1)
        grid = tuple(sorted(float(v) for v in spec.split(",")))
        argv = argv[1:]
    out = Path(argv[0])
    cfg, data, model = load_finished_run(out, argv[1:])
    inf, kw = cfg.model.infer, knn_kwargs(cfg.model)
    idx = np.arange(len(data.train_y))
    if str(cfg.model.train.tau_on) == "heldout":
        idx = split_classes(data.train_y, float(cfg.model.train.val_fraction), int(cfg.seed or 0))[1]
    tau, upper = float(model.tau), model.tau_upper
    chosen, meta, se = tune_fragments(model, data.train_x[idx], data.train_y[idx], inf, kw, tau, upper, grid)
    argmax = max(grid, key=lambda f: (meta[str(f)], f))
    k = len(np.unique(data.test_y))
    print(f"machine: {platform.machine()} {platform.node()}; run {out}; tau {tau}, tau_upper {upper}; "
          f"{len(np.unique(data.train_y[idx]))} meta-training classes scored, {k} test classes; "
          f"standard error of the best meta-training F {se:.3f}")
    print("fraction  meta-train F  test pairwise F  test BCubed F  clusters  x classes")
    memo: dict = {}
    for frac in grid:
        labels, _ = run_hierarchy(model, data.test_x, inf, kw, tau, upper, memo=memo, min_cluster_fraction=frac)
        c = len(np.unique(labels))
        mark = ("  <- auto" if frac == chosen else "") + ("  <- argmax" if frac == argmax else "")
        print(f"{frac:8.2f}  {meta[str(frac)]:12.3f}  {pairwise_f(data.test_y, labels)[2]:15.3f}  "
              f"{bcubed_f(data.test_y, labels)[2]:13.3f}  {c:8d}  {c / k:9.2f}{mark}")


if __name__ == "__main__":
    main(sys.argv[1:])
