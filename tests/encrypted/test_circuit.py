"""Depth accounting, refreshes, value ranges and exactness of the plaintext simulator of both circuits."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.encrypted import circuit as C
from toolkit.encrypted.data import minibatch_indices, signed_features
from toolkit.encrypted.params import choose_params, validate_params
from toolkit.encrypted.plan import simulate

COEFFS = C.SIGMOID_COEFFS["han16"]


def _toy(n=600, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, d))
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.1 * rng.normal(size=n) > 0).astype(int)
    return signed_features(x, y)


def _reference(z, batches, iterations, lr):
    w = np.zeros(z.shape[1])
    out = []
    for k in range(iterations):
        w = C.poly_sigmoid_step(w, z[batches[k % len(batches)]], COEFFS, lr)
        out.append(w)
    return np.array(out)


@pytest.mark.parametrize(("circuit", "depth"), [("baseline", 5), ("low-depth", 3)])
def test_depth_per_iteration(circuit, depth):
    z = _toy()
    params = validate_params(16384, [60] + [40] * 7 + [60], 40)
    report = simulate(params, circuit, z, minibatch_indices(len(z), 300, 0), 6, COEFFS, 1.0)
    assert report["depth_per_iteration"] == depth
    assert all(b - a == depth for a, b in report["levels_used"])
    # 7 levels: baseline fits 1 iteration per refresh, low-depth 2
    per_refresh = 7 // depth
    assert report["iterations_per_refresh"] == per_refresh
    assert report["refreshes"] == int(np.ceil(6 / per_refresh)) - 1
    assert max(b for _, b in report["levels_used"]) <= params.levels


def test_low_depth_at_most_three_levels_and_fewer_refreshes_than_baseline():
    z = _toy()
    b = minibatch_indices(len(z), 300, 0)
    params = choose_params(3, 16384)
    reports = {c: simulate(params, c, z, b, 8, COEFFS, 1.0) for c in C.CIRCUITS}
    assert reports["low-depth"]["depth_per_iteration"] <= 3
    assert reports["low-depth"]["refreshes"] < reports["baseline"]["refreshes"] or \
        not reports["baseline"]["fits_chain"]


@pytest.mark.parametrize("circuit", C.CIRCUITS)
def test_simulator_matches_exact_update(circuit):
    z = _toy()
    batches = minibatch_indices(len(z), 250, 1)
    params = choose_params(C.DEPTH_PER_ITERATION[circuit])
    report = simulate(params, circuit, z, batches, 5, COEFFS, 1.5)
    np.testing.assert_allclose(report["trajectory"], _reference(z, batches, 5, 1.5), atol=1e-9)
    assert not report["overflow"]


def test_plan_reports_ranges_per_level_and_sizes():
    z = _toy()
    params = choose_params(3)
    report = simulate(params, "low-depth", z, minibatch_indices(len(z), None, 0), 2, COEFFS, 1.0)
    assert set(report["ranges"]) == {str(lv) for lv in range(params.levels + 1)}
    for entry in report["ranges"].values():
        assert 0 <= entry["max_abs"] < entry["headroom"]
    assert report["ciphertexts"]["data"] == 2 * z.shape[1]  # one block + the column sum per feature
    assert report["ciphertexts"]["fresh_bytes"] == 2 * 8192 * 4 * 8


def test_overflow_is_detected():
    z = _toy()
    params = choose_params(3)
    report = simulate(params, "low-depth", z, minibatch_indices(len(z), None, 0), 3, COEFFS, 5000.0)
    assert report["overflow"]


def test_circuit_deeper_than_chain_does_not_fit():
    z = _toy()
    params = validate_params(8192, [49, 39, 39, 39, 49], 39)
    report = simulate(params, "baseline", z, minibatch_indices(len(z), None, 0), 2, COEFFS, 1.0)
    assert not report["fits_chain"]


def test_prepare_with_owner_column_sums_equals_rotation_sums():
    from toolkit.encrypted.plan import plain_batches

    z = _toy(n=300)
    be = C.PlainBackend(choose_params(3))
    with_sums = plain_batches(be, z, [np.arange(300)])[0]
    without = C.Minibatch(with_sums.z, with_sums.n)
    a = C.prepare(be, "low-depth", with_sums, COEFFS, 1.0)
    b = C.prepare(be, "low-depth", without, COEFFS, 1.0)
    for ca, cb in zip(a.c0, b.c0, strict=True):
        np.testing.assert_allclose(ca.values, cb.values, atol=1e-12)
        assert ca.level == cb.level == 1
