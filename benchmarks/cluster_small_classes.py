"""Do small classes survive fragment absorption? A finished Hi-LANDER run on a test set made imbalanced.

Usage::

    .venv/bin/python benchmarks/cluster_small_classes.py OUTPUT_DIR [hydra overrides of toolkit cluster...]
    .venv/bin/python benchmarks/cluster_small_classes.py benchmarks/results/runs/faces/seed1/cache \\
        data=faces encoder=dlib-face seed=1

``OUTPUT_DIR`` is an earlier Hi-LANDER ``toolkit cluster`` run with test labels (``bench_cluster.py`` keeps them in
``benchmarks/results/runs/<dataset>/seed<k>/cache``). ``--small N --keep M`` (defaults 5 and 8; the flags go
before the overrides) picks N test classes at random (seed 0) and keeps only their first M images, all other
classes whole, then clusters that set with the run's GNN and thresholds at every value of
:data:`toolkit.cluster.command.FRAGMENT_GRID`. For each it prints pairwise / BCubed F, the number of clusters and
the *survival* of the small classes: the share of their images that sit in a cluster whose majority is their own
class. Then, at the largest value, one line per fragment: its size, whether it is one of the small classes, the
share of its members' kNN neighbours inside it (cohesion) and in the cluster the command's vote
(:func:`toolkit.cluster.hierarchy.absorb_fragments`) joins it to (attachment), and whether that cluster's majority
is its own class, and whether the run's ``model.infer.fragment_rule`` (``vote`` unless overridden, e.g.
``model.infer.fragment_rule=cohesion``) joined it. Prints the machine it ran on.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
from finished_run import load_finished_run

from toolkit.cluster.command import FRAGMENT_GRID, fragment_rule, knn_kwargs, run_hierarchy
from toolkit.cluster.hierarchy import absorb_fragments, fragment_size
from toolkit.cluster.knn import knn_search, l2_normalize
from toolkit.cluster.metrics import bcubed_f, pairwise_f


def main() -> None:
    """Print the survival table and the fragment lines (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--small", type=int, default=5)
    ap.add_argument("--keep", type=int, default=8)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg, data, model = load_finished_run(Path(args.run), args.overrides)
    inf, kw = cfg.model.infer, knn_kwargs(cfg.model)
    tau, upper = float(model.tau), model.tau_upper
    y = data.test_y
    classes = np.unique(y)
    small = np.random.default_rng(0).choice(classes, args.small, replace=False)
    idx = np.concatenate([np.flatnonzero(y == c)[: args.keep] if c in small else np.flatnonzero(y == c)
                          for c in classes])
    x, yy = l2_normalize(np.asarray(data.test_x[idx], np.float32)), y[idx]
    print(f"machine: {platform.machine()} {platform.node()}; run {args.run}; {len(classes)} test classes, "
          f"{args.small} of them cut to {args.keep} images; {len(yy)} images")
    print("fraction  pairwise F  BCubed F  clusters  small-class survival")
    memo: dict = {}
    for frac in FRAGMENT_GRID:
        lab, _ = run_hierarchy(model, x, inf, kw, tau, upper, memo=memo, min_cluster_fraction=frac)
        survival = []
        for c in small:
            own = [k for k in np.unique(lab[yy == c]) if np.bincount(yy[lab == k]).argmax() == c]
            survival.append(float(np.isin(lab[yy == c], own).mean()))
        print(f"{frac:8.2f}  {pairwise_f(yy, lab)[2]:10.3f}  {bcubed_f(yy, lab)[2]:8.3f}  {len(np.unique(lab)):8d}  "
              f"{np.mean(survival):20.2f}")
    base, _ = run_hierarchy(model, x, inf, kw, tau, upper, memo=memo, min_cluster_fraction=0.0)
    nbrs, sims = knn_search(x, int(inf.knn_k), **kw)  # level 0's graph, as the hierarchy builds it
    cut = fragment_size(base, max(FRAGMENT_GRID))
    sizes = np.bincount(base)
    absorbed = absorb_fragments(base, nbrs, sims, cut)  # the command's own vote decides where each fragment goes
    rule = fragment_rule(inf)
    kept = absorb_fragments(base, nbrs, sims, cut, rule=rule)  # what the run's rule does with it
    print(f"fragments at fraction {max(FRAGMENT_GRID)} (clusters under {cut} images):")
    print(f"size  small class  cohesion  attachment  joins its own class  joined ({rule} rule)")
    for f in np.flatnonzero(sizes < cut):
        members = np.flatnonzero(base == f)
        joined = np.flatnonzero((absorbed == absorbed[members[0]]) & (sizes[base] >= cut))
        if not len(joined):  # stayed: no neighbour in a large cluster
            continue
        target = base[joined[0]]
        valid = nbrs[members] >= 0
        nlab = base[np.where(valid, nbrs[members], 0)]
        majority = np.bincount(yy[members]).argmax()
        print(f"{len(members):4d}  {'yes' if majority in small else 'no':>11s}  "
              f"{((nlab == f) & valid).sum() / valid.sum():8.2f}  "
              f"{((nlab == target) & valid).sum() / valid.sum():10.2f}  "
              f"{'yes' if np.bincount(yy[base == target]).argmax() == majority else 'no':>19s}  "
              f"{'yes' if (kept == kept[members[0]]).sum() > len(members) else 'no':>18s}")


if __name__ == "__main__":
    main()
