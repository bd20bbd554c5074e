"""CALR against hand-computed points and the reference table; the other schedules' shapes."""

from __future__ import annotations

import pytest
import torch

from toolkit.compress.schedulers import CyclicallyAnnealedLR, build_scheduler, cycle_steps, schedule_values


def _opt(lr=1.0, kind="adam"):
    p = torch.nn.Parameter(torch.zeros(2))
    return torch.optim.Adam([p], lr=lr) if kind == "adam" else torch.optim.SGD([p], lr=lr, momentum=0.9)


def _trace(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_calr_hand_computed_points():
    # max 1.0, floor 0.0, half-cycle 4 updates, decay 0.5 per cycle (8 updates):
    # peaks 1, .5, .25, ..., never reaching 0 -> no restart.
    opt = _opt()
    s = CyclicallyAnnealedLR(opt, max_lr=1.0, min_lr=0.0, step_size=4, decay=0.5)
    lrs = _trace(s, opt, 16)
    # update n: triangle c = n mod 8; first cycle n = 1..8 (peak 1), second n = 9..16 (peak .5)
    expected = [0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0.0,
                0.125, 0.25, 0.375, 0.5, 0.375, 0.25, 0.125, 0.0]
    assert lrs == pytest.approx(expected)


def test_calr_restarts_when_peak_reaches_floor():
    # max 1, floor 0.01, decay 0.1: peaks 1, 0.1, then 0.01 <= floor -> restart at 1.
    opt = _opt()
    s = CyclicallyAnnealedLR(opt, max_lr=1.0, min_lr=0.01, step_size=2, decay=0.1)
    assert [s.bounds(n)[1] for n in (1, 4, 5, 8, 9, 12, 13)] == pytest.approx([1, 1, 0.1, 0.1, 1, 1, 0.1])
    lrs = _trace(s, opt, 9)
    # n=2 (top of first triangle) = 1; n=6 = 0.1; n=9: c=1 -> 0.01 + 0.99/2
    assert lrs[1] == pytest.approx(1.0)
    assert lrs[5] == pytest.approx(0.1)
    assert lrs[8] == pytest.approx(0.01 + 0.99 * 0.5)


def test_calr_matches_reference_fine_tune_table():
    # Reference note table: eta0 = 1e-3, decay 0.1, floor 1e-6 (restart floor 1e-8), step 1000 updates,
    # annealed every epoch of 138 updates.
    opt = _opt()
    s = CyclicallyAnnealedLR(opt, max_lr=1e-3, min_lr=1e-6, step_size=1000, decay=0.1, anneal_every=138,
                             restart_min_lr=1e-8)
    lrs = _trace(s, opt, 4 * 138)
    epochs = [lrs[i * 138:(i + 1) * 138] for i in range(4)]
    table = [(2e-6, 1.39e-4), (1.5e-5, 2.8e-5), (3.5e-6, 4.7e-6), (4.2e-4, 5.5e-4)]
    for got, (lo, hi) in zip(epochs, table, strict=True):
        assert min(got) == pytest.approx(lo, rel=0.06)
        assert max(got) == pytest.approx(hi, rel=0.06)


def test_calr_works_with_sgd_and_leaves_momentum_alone():
    opt = _opt(kind="sgd")
    s = CyclicallyAnnealedLR(opt, max_lr=0.1, min_lr=0.0, step_size=3)
    _trace(s, opt, 10)
    assert opt.param_groups[0]["momentum"] == 0.9
    opt = _opt()
    s = CyclicallyAnnealedLR(opt, max_lr=0.1, min_lr=0.0, step_size=3)
    _trace(s, opt, 10)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_calr_state_dict_resume_is_exact():
    opt = _opt()
    s = CyclicallyAnnealedLR(opt, max_lr=1.0, min_lr=0.0, step_size=5, decay=0.5)
    _trace(s, opt, 7)
    state = s.state_dict()
    opt2 = _opt()
    s2 = CyclicallyAnnealedLR(opt2, max_lr=1.0, min_lr=0.0, step_size=5, decay=0.5)
    s2.load_state_dict(state)
    s2.step()
    s.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


@pytest.mark.parametrize("kwargs", [dict(max_lr=1.0, min_lr=1.0, step_size=2), dict(max_lr=1.0, min_lr=0.0,
                                    step_size=0), dict(max_lr=1.0, min_lr=0.0, step_size=2, decay=0.0)])
def test_calr_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        CyclicallyAnnealedLR(_opt(), **kwargs)


def test_build_scheduler_variants_hand_points():
    cfg = {"max_lr": 1.0, "min_lr": 0.0, "cycle_epochs": 1.0, "decay": 0.5}
    # 8 updates per epoch -> half-cycle 4
    clr = schedule_values("clr", cfg, 8, 16)
    assert clr[:9] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0])
    assert max(clr[8:]) == pytest.approx(1.0)  # no decay
    tri2 = schedule_values("triangular2", cfg, 8, 16)
    assert max(tri2[8:]) == pytest.approx(0.5)  # amplitude halves per cycle
    cos = schedule_values("cosine-restarts", cfg, 8, 17)
    assert cos[0] == pytest.approx(1.0) and cos[4] == pytest.approx(0.5) and cos[8] == pytest.approx(1.0)
    assert schedule_values("constant", cfg, 8, 5) == pytest.approx([1.0] * 5)
    calr = schedule_values("calr", cfg, 8, 16)
    assert calr[3] == pytest.approx(1.0) and calr[11] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        build_scheduler("nope", _opt(), cfg, 8)


@pytest.mark.parametrize(("name", "cfg"), [
    ("clr", {"max_lr": -1.0, "min_lr": 0.0}),
    ("triangular2", {"max_lr": 0.1, "min_lr": 0.2}),
    ("cosine-restarts", {"max_lr": 0.1, "min_lr": 0.0, "cycle_epochs": 0}),
    ("calr", {"max_lr": 0.1, "min_lr": 0.0, "decay": 1.5}),
    ("constant", {"max_lr": 0.0}),
])
def test_build_scheduler_rejects_bad_values(name, cfg):
    with pytest.raises(ValueError):
        build_scheduler(name, _opt(), cfg, 8)


def test_calr_anneals_every_k_cycles_and_keeps_restart_floor():
    # anneal every 2 cycles (8 updates at half-cycle 2): peak 1 for 8 updates, .1 for 8, then .01 reaches
    # the floor .01 -> restart at 1 with the restart floor .001
    opt = _opt()
    s = CyclicallyAnnealedLR(opt, max_lr=1.0, min_lr=0.01, step_size=2, decay=0.1, anneal_every=8,
                             restart_min_lr=0.001)
    got = [v for n in (1, 5, 9, 13, 17) for v in s.bounds(n)]
    assert got == pytest.approx([0.01, 1.0, 0.01, 1.0, 0.01, 0.1, 0.01, 0.1, 0.001, 1.0])
    # after the restart the floor is 0.001: peaks 1, .1, .01, then restart again (3 anneals later)
    assert [s.bounds(n)[1] for n in (17, 25, 33, 41)] == pytest.approx([1.0, 0.1, 0.01, 1.0])
    assert s.lr_at(20) == pytest.approx(0.001)  # c = 20 mod 4 = 0: the floor


def test_cycle_is_one_epoch_of_real_updates_when_odd():
    # 5 updates per epoch: the cycle is 5 updates (the old half-cycle round(2.5) = 2 gave 4-update cycles,
    # so the peaks drifted one update per epoch against the epochs)
    assert [cycle_steps(1.0, n) for n in (5, 137, 1)] == [5, 137, 2]
    cfg = {"max_lr": 1.0, "min_lr": 0.0, "cycle_epochs": 1.0, "decay": 0.5}
    calr = schedule_values("calr", cfg, 5, 20)
    for epoch in range(4):  # the peak of epoch e is 0.5^e, inside that epoch's 5 updates
        lrs = calr[5 * epoch: 5 * epoch + 5]
        assert max(lrs) == pytest.approx(0.5 ** epoch * 0.8)  # 2c / L at c = 2: 4/5 of the peak
        assert lrs[-1] == pytest.approx(0.0)  # every epoch ends at the floor (c = 0 at its last update)
    for name in ("clr", "triangular2", "cosine-restarts"):
        lrs = schedule_values(name, cfg, 5, 15)
        assert lrs[0] == pytest.approx(lrs[5]) == pytest.approx(lrs[10]), name  # period exactly 5 updates
    with pytest.raises(ValueError):
        cycle_steps(0.0, 5)


def test_odd_cycle_triangle_hand_points():
    # L = 5: c = n mod 5; lr = 2c/5 while 2c < 5, else 2 - 2c/5
    s = CyclicallyAnnealedLR(_opt(), max_lr=1.0, min_lr=0.0, step_size=1, decay=1.0, cycle_steps=5)
    assert [s.lr_at(n) for n in range(1, 6)] == pytest.approx([0.4, 0.8, 0.8, 0.4, 0.0])
    with pytest.raises(ValueError):
        CyclicallyAnnealedLR(_opt(), max_lr=1.0, min_lr=0.0, step_size=1, cycle_steps=1)


def test_calr_restarts_at_the_defaults_within_five_epochs():
    # configs/compress/scheduler/calr.yaml: max 1e-3, floor 1e-6, decay 0.1 per 1-epoch cycle: peaks 1e-3, 1e-4,
    # 1e-5, then 1e-6 reaches the floor -> restart at epoch 4; 3 epochs never restart
    cfg = {"max_lr": 1e-3, "min_lr": 1e-6, "cycle_epochs": 1.0, "decay": 0.1, "anneal_cycles": 1}
    sched = build_scheduler("calr", _opt(), cfg, 7)
    assert [sched.restarts_within(e * 7) for e in (3, 4, 5, 6, 7)] == [0, 1, 1, 1, 2]
    lrs = schedule_values("calr", cfg, 7, 35)
    peaks = [max(lrs[7 * e: 7 * e + 7]) for e in range(5)]
    assert peaks == pytest.approx([x * 6 / 7 + 1e-6 / 7 for x in (1e-3, 1e-4, 1e-5, 1e-3, 1e-4)], rel=1e-6)
    assert build_scheduler("calr", _opt(), {**cfg, "decay": 1.0}, 7).restarts_within(100) == 0
