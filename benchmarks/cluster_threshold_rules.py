"""Which rule for reading the tuned (tau, tau_upper) grid transfers best to the test classes?

Usage::

    .venv/bin/python benchmarks/cluster_threshold_rules.py RUN_DIR [RUN_DIR ...] [-- hydra overrides]
    .venv/bin/python benchmarks/cluster_threshold_rules.py benchmarks/results/runs/digits-select-level0/seed*/hilander

Each ``RUN_DIR`` is a finished Hi-LANDER ``toolkit cluster`` run with test labels whose thresholds were tuned
jointly (``model.infer.tau_upper=auto``): its ``metrics.json`` holds the meta-training grid ``joint_scores``
(pairwise F of every candidate pair, computed with ``min_cluster_fraction`` 0). The run's model clusters the test
set at every pair of the same grid (also with ``min_cluster_fraction`` 0), and each rule's choice on the
meta-training grid is scored on the test grid:

* ``argmax``: the best meta-training pair (the command's rule; ties to equal thresholds, then the smaller tau);
* ``smooth3`` / ``smooth5``: the best mean over the pair's 3x3 / 5x5 neighbourhood of the grid (candidate ranks,
  clipped at the edges): a plateau rather than a sharp peak;
* ``oracle``: the best test pair (uses test labels; the ceiling).

The seed is read from each run's ``config.yaml`` (pass a run's other overrides after ``--``, e.g. ``data=...``).
Numbers quoted in docs/cluster.md come from this script; it prints the machine it ran on.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import yaml
from finished_run import load_finished_run

from toolkit.cluster.command import knn_kwargs, score_thresholds


def smoothed(grid: np.ndarray, radius: int) -> np.ndarray:
    """Mean of ``grid`` over each cell's ``(2 radius + 1)^2`` neighbourhood, clipped at the edges."""
    n, m = grid.shape
    out = np.empty_like(grid)
    for i in range(n):
        for j in range(m):
            out[i, j] = grid[max(0, i - radius): i + radius + 1, max(0, j - radius): j + radius + 1].mean()
    return out


def choose(grid: np.ndarray, taus: list[float]) -> tuple[int, int]:
    """Index of the best cell; ties to equal thresholds (the diagonal), then the smaller tau (the command's rule)."""
    best = max(((i, j) for i in range(len(taus)) for j in range(len(taus))),
               key=lambda ij: (grid[ij], ij[0] == ij[1], -ij[0]))
    return best


def main(argv: list[str]) -> None:
    """Print, per run and on average, the test pairwise F of each rule's choice."""
    runs, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    print(f"machine: {platform.machine()} {platform.node()}")
    results: dict[str, list[float]] = {}
    for run_dir in map(Path, runs):
        seed = yaml.safe_load((run_dir / "config.yaml").read_text()).get("seed", 0)
        cfg, data, model = load_finished_run(run_dir, [f"seed={seed}", *extra])
        joint = json.loads((run_dir / "metrics.json").read_text())["metrics"]["joint_scores"]
        taus = sorted(float(t) for t in joint)
        meta = np.array([[joint[str(t)][str(u)] for u in taus] for t in taus])
        model.min_cluster_fraction = 0.0
        pairs = [(t, u) for t in taus for u in taus]
        test = np.array(score_thresholds(model, data.test_x, data.test_y, cfg.model.infer, knn_kwargs(cfg.model),
                                         pairs)).reshape(len(taus), len(taus))
        picks = {"argmax": choose(meta, taus), "smooth3": choose(smoothed(meta, 1), taus),
                 "smooth5": choose(smoothed(meta, 2), taus), "oracle": choose(test, taus)}
        row = {name: float(test[ij]) for name, ij in picks.items()}
        for name, v in row.items():
            results.setdefault(name, []).append(v)
        print(f"{run_dir} (seed {seed}): " + ", ".join(
            f"{n} tau={taus[i]:.6g}/{taus[j]:.6g} test F {row[n]:.3f}" for n, (i, j) in picks.items()))
    print("\n| rule | mean test pairwise F | std | per run |\n|---|---|---|---|")
    for name, vals in results.items():
        print(f"| {name} | {np.mean(vals):.3f} | {np.std(vals):.3f} | {' / '.join(f'{v:.3f}' for v in vals)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
