"""tau=auto candidates follow the model's own P(same) scale (issue 9: a fixed grid capped at 0.99)."""

from __future__ import annotations

import numpy as np

from toolkit.cluster.command import TAU_GRID, tau_candidates


def test_candidates_reach_above_the_fixed_grid_for_a_confident_model():
    p = 1.0 - np.geomspace(1e-6, 1e-2, 1000)  # every edge above 0.99, as an over-confident GNN predicts
    cands = tau_candidates(p)
    assert max(cands) > max(TAU_GRID)
    assert sum(c > 0.99 for c in cands) >= 5
    assert cands == sorted(cands) and all(0.0 < c < 1.0 for c in cands)


def test_candidates_keep_the_fixed_grid_and_drop_degenerate_values():
    cands = tau_candidates(np.ones(50))  # saturated at exactly 1: no quantile can be a threshold
    assert set(TAU_GRID) <= set(cands) and max(cands) < 1.0
    assert tau_candidates(np.array([])) == sorted(TAU_GRID)
