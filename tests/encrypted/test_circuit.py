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


# --- Nesterov momentum (Kim et al. 2018 form, gamma = -mu) -------------------------------------------

def _nesterov_reference(z, batches, iterations, lr, momentum):
    w = np.zeros(z.shape[1])
    v = w.copy()
    out = []
    for k in range(iterations):
        w, v = C.nesterov_step(w, v, z[batches[k % len(batches)]], COEFFS, lr, momentum.mu_at(k))
        out.append(v)
    return np.array(out)


@pytest.mark.parametrize("circuit", C.CIRCUITS)
def test_momentum_two_steps_by_hand(circuit):
    # z = [(1, 1), (1, -0.5)], b = 2, alpha = 1, mu = 0.5, w_0 = v_0 = 0, s(u) = 0.5 - 0.0843 u + 0.0002 u^3
    # k=0: s = 0.5 for both -> G = (1/2)(0.5 + 0.5, 0.5 - 0.25) = (0.5, 0.125) = v_1; w_1 = 1.5 v_1 = (0.75, 0.1875)
    # k=1: u = (0.9375, 0.65625) -> s = (0.421133544921875, 0.4447346496582031)
    #      G = (1/2)(s_1 + s_2, s_1 - 0.5 s_2) = (0.432934097290039, 0.0993831100463867)
    #      v_2 = w_1 + G = (1.182934097290039, 0.2868831100463867); w_2 = 1.5 v_2 - 0.5 v_1
    z = np.array([[1.0, 1.0], [1.0, -0.5]])
    momentum = C.Momentum(0.5)
    v1, v2 = np.array([0.5, 0.125]), np.array([1.182934097290039, 0.2868831100463867])
    w2 = np.array([1.5244011459350586, 0.3678246650695801])
    params = validate_params(16384, [60] + [40] * 7 + [60], 40)
    report = simulate(params, circuit, z, [np.arange(2)], 2, COEFFS, 1.0, momentum=momentum)
    np.testing.assert_allclose(report["trajectory"], [v1, v2], atol=1e-12)
    # the server state itself: w_2 and v'_2 = (1 + mu_1) v_2 (low-depth: times beta)
    be = C.PlainBackend(params)
    from toolkit.encrypted.plan import plain_batches

    mbs = [C.prepare(be, circuit, mb, COEFFS, 1.0, momentum.grad_factor(0))
           for mb in plain_batches(be, z, [np.arange(2)])]
    state = [be.encrypt_replicated(0.0) for _ in range(4)]

    def refresh(st, k):  # the owner's decrypt/re-encrypt carries v' too
        return C.refresh_weights(be, st)[0]

    state, trace, k = C.run_schedule(be, circuit, mbs, state, 2, COEFFS, 1.0, refresh, momentum=momentum)
    values = np.array([c.values[0] for c in state]) / C.weight_scale(circuit, COEFFS)
    np.testing.assert_allclose(values, np.concatenate([w2, 1.5 * v2]), atol=1e-12)
    assert k == 2 and trace.refreshes == (1 if circuit == "baseline" else 0)  # 7 levels: baseline 1 it/refresh
    assert [b - a for a, b in trace.levels] == [C.DEPTH_PER_ITERATION[circuit]] * 2


def test_nesterov_schedule_values():
    m = C.Momentum(0.9, "nesterov")
    golden = (1 + 5 ** 0.5) / 2  # lambda_2; lambda_3 = (1 + sqrt(1 + 4 golden^2)) / 2
    lam3 = (1 + (1 + 4 * golden ** 2) ** 0.5) / 2
    assert m.mu_at(0) == 0.0 and m.mu_at(-1) == 0.0
    assert m.mu_at(1) == pytest.approx((golden - 1) / lam3)
    mus = [m.mu_at(k) for k in range(60)]
    assert all(a <= b for a, b in zip(mus, mus[1:], strict=False)) and max(mus) == 0.9  # rising, capped at mu
    assert C.Momentum(0.3, "nesterov").mu_at(5) == 0.3
    fixed = C.Momentum(0.4)
    assert fixed.mu_at(0) == fixed.mu_at(7) == 0.4 and fixed.grad_factor(3) == 1.4
    assert fixed.v_scale(0) == 1.0 and fixed.v_scale(1) == 1.4
    assert not C.Momentum().enabled and C.Momentum(0.0, "nesterov").mu_at(4) == 0.0


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_momentum_outside_unit_interval_refused(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        C.Momentum(bad)
    with pytest.raises(ValueError, match="schedule"):
        C.Momentum(0.5, "adam")


@pytest.mark.parametrize("schedule", C.MOMENTUM_SCHEDULES)
@pytest.mark.parametrize("circuit", C.CIRCUITS)
def test_momentum_keeps_depth_and_matches_reference(circuit, schedule):
    z = _toy()
    batches = minibatch_indices(len(z), 250, 1)
    momentum = C.Momentum(0.7, schedule)
    params = validate_params(16384, [60] + [40] * 7 + [60], 40)
    plain = simulate(params, circuit, z, batches, 6, COEFFS, 1.5)
    report = simulate(params, circuit, z, batches, 6, COEFFS, 1.5, momentum=momentum)
    depth = C.DEPTH_PER_ITERATION[circuit]
    assert report["depth_per_iteration"] == plain["depth_per_iteration"] == depth
    assert all(b - a == depth for a, b in report["levels_used"])
    assert report["refreshes"] == plain["refreshes"]
    assert report["ciphertexts"]["weights"] == 2 * z.shape[1]  # w and v
    assert not report["overflow"]
    np.testing.assert_allclose(report["trajectory"], _nesterov_reference(z, batches, 6, 1.5, momentum), atol=1e-9)
    assert np.abs(report["trajectory"][-1] - plain["trajectory"][-1]).max() > 1e-3  # momentum changes the run
