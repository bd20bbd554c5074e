"""Per-step learning-rate schedules: the cyclically annealed learning rate (CALR) and its ablations.

CALR (Acharya et al., AAAI 2019, Sec. "Cyclically annealed learning rate"; as coded in the authors'
``utils.get_triangular_lr`` and training loop): a triangular cyclical learning rate (Smith, WACV 2017)
whose peak is multiplied by ``decay`` every ``anneal_every`` steps, with a warm restart of the peak
once it has decayed to the floor.  The other schedules are torch's own classes configured per step
and without cycling the optimizer's momentum (the paper's code does not cycle Adam's beta1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingWarmRestarts,
    CyclicLR,
    LambdaLR,
    LRScheduler,
)

SCHEDULERS = ("calr", "clr", "triangular2", "cosine-restarts", "constant")


class CyclicallyAnnealedLR(LRScheduler):
    """Cyclically annealed learning rate (CALR), stepped once per optimizer update.

    For the n-th update (n = 1, 2, ...; the authors' code counts iterations from 1):

    * anneal count a = floor((n - 1) / anneal_every);
    * the peak follows max_lr, max_lr*decay, max_lr*decay^2, ... and, as soon as it would fall to
      or below the floor, restarts at max_lr; after the first restart the floor becomes
      ``restart_min_lr`` (the code uses max_lr * decay^5; default: keep ``min_lr``);
    * triangle of L = ``cycle_steps`` updates (default 2 step_size; L may be odd): c = n mod L;
      lr = floor + (peak - floor) * 2c / L if 2c < L else floor + (peak - floor) * (2 - 2c / L).
      For L = 2 step_size this is the authors' c / step_size, 2 - c / step_size.

    The value depends only on n (closed form), so resuming from a ``state_dict`` is exact.
    Works with any optimizer (Adam, SGD): only ``lr`` of each param group is set, momentum is left alone.

    Args:
        optimizer: wrapped optimizer.
        max_lr: initial peak learning rate (> 0).
        min_lr: floor (0 <= min_lr < max_lr).
        step_size: half-cycle length in updates (>= 1); ignored when ``cycle_steps`` is given.
        decay: peak multiplier per anneal, in (0, 1]; 1 disables annealing (plain triangular CLR).
        anneal_every: updates between two anneals (default: the cycle length, "anneal per cycle"; the
            authors' code anneals once per epoch).
        restart_min_lr: floor used after the first warm restart (default ``min_lr``).
        last_epoch: index of the last update (-1 to start).
        cycle_steps: full cycle length L in updates (>= 2, may be odd), e.g. exactly one epoch's updates;
            default ``2 * step_size``.

    Raises:
        ValueError: on out-of-range arguments.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float, min_lr: float, step_size: int,
                 decay: float = 0.1, anneal_every: int | None = None, restart_min_lr: float | None = None,
                 last_epoch: int = -1, cycle_steps: int | None = None) -> None:
        if not max_lr > 0 or not 0 <= min_lr < max_lr:
            raise ValueError(f"need 0 <= min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
        if cycle_steps is None and int(step_size) < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        if cycle_steps is not None and int(cycle_steps) < 2:
            raise ValueError(f"cycle_steps must be >= 2, got {cycle_steps}")
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.max_lr, self.min_lr = float(max_lr), float(min_lr)
        self.cycle_steps = int(cycle_steps) if cycle_steps is not None else 2 * int(step_size)
        self.step_size = self.cycle_steps / 2
        self.decay = float(decay)
        self.anneal_every = int(anneal_every) if anneal_every else self.cycle_steps
        self.restart_min_lr = float(min_lr if restart_min_lr is None else restart_min_lr)
        if not 0 <= self.restart_min_lr < self.max_lr:
            raise ValueError(f"restart_min_lr must be in [0, max_lr), got {restart_min_lr}")
        self._first_period = self._peaks_before_restart(self.min_lr)
        self._period = self._peaks_before_restart(self.restart_min_lr)
        super().__init__(optimizer, last_epoch)

    def _peaks_before_restart(self, floor: float) -> int:
        """Number of distinct peaks max_lr * decay^j (j = 0, 1, ...) that stay above ``floor``."""
        if self.decay >= 1.0:
            return 0  # never restarts
        j = 1
        while self.max_lr * self.decay ** j > floor * (1 + 1e-9):
            j += 1
        return j

    def bounds(self, n: int) -> tuple[float, float]:
        """(floor, peak) of the triangle used by update ``n`` (1-based)."""
        a = (max(n, 1) - 1) // self.anneal_every
        if self._first_period == 0:
            return self.min_lr, self.max_lr
        if a < self._first_period:
            return self.min_lr, self.max_lr * self.decay ** a
        j = (a - self._first_period) % self._period
        return self.restart_min_lr, self.max_lr * self.decay ** j

    def lr_at(self, n: int) -> float:
        """Learning rate of update ``n`` (1-based), float."""
        floor, peak = self.bounds(n)
        twice = 2 * (n % self.cycle_steps)
        frac = twice / self.cycle_steps if twice < self.cycle_steps else 2.0 - twice / self.cycle_steps
        return floor + (peak - floor) * frac

    def restarts_within(self, updates: int) -> int:
        """Number of warm restarts (the peak jumping back to ``max_lr``) in updates 1..``updates``.

        Args:
            updates: number of optimizer updates of the run (>= 0).

        Returns:
            int >= 0; 0 when ``decay == 1`` (no annealing) or the run ends before the peak reaches the floor.
        """
        if self._first_period == 0 or updates < 1:
            return 0
        anneals = (int(updates) - 1) // self.anneal_every  # anneal index of the last update
        if anneals < self._first_period:
            return 0
        return 1 + (anneals - self._first_period) // self._period

    def get_lr(self) -> list[float]:
        """Learning rate of every param group for the next update (``last_epoch`` updates done)."""
        lr = self.lr_at(self.last_epoch + 1)
        return [lr for _ in self.optimizer.param_groups]


def cycle_steps(cycle_epochs: float, steps_per_epoch: int) -> int:
    """Full cycle length L in optimizer updates for a cycle of ``cycle_epochs`` epochs.

    L = max(2, round(cycle_epochs * steps_per_epoch)).  The cycle is rounded as a whole, not as two
    half-cycles: with 137 updates per epoch and ``cycle_epochs=1``, L = 137.  Rounding the half-cycle
    (68.5 -> 68) gave 136-update cycles, so cycles and CALR's anneals slipped one update per epoch
    against the epochs (with 5 updates per epoch: 4-update cycles, a whole cycle off after 4 epochs).

    Args:
        cycle_epochs: cycle length in epochs (> 0).
        steps_per_epoch: optimizer updates per epoch (>= 1), as the trainer actually takes them.

    Returns:
        L (int >= 2).

    Raises:
        ValueError: ``cycle_epochs <= 0`` or ``steps_per_epoch < 1``.
    """
    if not float(cycle_epochs) > 0:
        raise ValueError(f"cycle_epochs must be > 0, got {cycle_epochs}")
    if int(steps_per_epoch) < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    return max(2, round(float(cycle_epochs) * int(steps_per_epoch)))


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any],
                    steps_per_epoch: int) -> LRScheduler:
    """Build a per-step scheduler by name from config values.

    Config keys (all learning rates absolute): ``max_lr``, ``min_lr``, ``cycle_epochs`` (full cycle
    length in epochs; the cycle is L = :func:`cycle_steps` (cycle_epochs, steps_per_epoch) updates, so with
    ``cycle_epochs=1`` every cycle is exactly one epoch even when an epoch has an odd number of updates),
    ``decay`` and ``anneal_cycles`` (CALR: anneal the peak every round(anneal_cycles * L) updates),
    ``restart_min_lr`` (CALR).

    * ``calr``: :class:`CyclicallyAnnealedLR` with ``cycle_steps=L``.
    * ``clr``: ``CyclicLR(mode="triangular", cycle_momentum=False)``, Smith's triangular CLR, rising for
      floor(L / 2) updates and falling for the rest of the L.
    * ``triangular2``: ``CyclicLR(mode="triangular2", cycle_momentum=False)``, amplitude halves per cycle.
    * ``cosine-restarts``: ``CosineAnnealingWarmRestarts(T_0=L, eta_min=min_lr)`` (SGDR),
      stepped per update; each restart returns to the optimizer's lr, which is set to ``max_lr``.
    * ``constant``: ``max_lr`` throughout.

    Args:
        name: one of :data:`SCHEDULERS`.
        optimizer: the optimizer (its lr is overwritten with ``max_lr``).
        cfg: mapping with the keys above.
        steps_per_epoch: optimizer updates per epoch (>= 1).

    Returns:
        A ``torch.optim.lr_scheduler.LRScheduler`` to step after every update.

    Raises:
        ValueError: on an unknown name or bad values (``max_lr <= 0``; for the cyclical schedules
            ``min_lr`` outside [0, max_lr) or ``cycle_epochs <= 0``; CALR's ``decay`` outside (0, 1]).
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")
    max_lr, min_lr = float(cfg["max_lr"]), float(cfg.get("min_lr", 0.0) or 0.0)
    if not max_lr > 0:
        raise ValueError(f"max_lr must be > 0, got {max_lr}")
    cycle_epochs = float(cfg.get("cycle_epochs", 1.0))
    if name != "constant":
        if not 0 <= min_lr < max_lr:
            raise ValueError(f"need 0 <= min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
        if not cycle_epochs > 0:
            raise ValueError(f"cycle_epochs must be > 0, got {cycle_epochs}")
    length = cycle_steps(cycle_epochs, steps_per_epoch) if name != "constant" else 2
    for group in optimizer.param_groups:
        group["lr"] = max_lr
        group.pop("initial_lr", None)
    if name == "calr":
        every = cfg.get("anneal_cycles", 1) or 1
        return CyclicallyAnnealedLR(optimizer, max_lr, min_lr, length // 2, decay=float(cfg.get("decay", 0.1)),
                                    anneal_every=max(1, round(float(every) * length)),
                                    restart_min_lr=cfg.get("restart_min_lr"), cycle_steps=length)
    if name in ("clr", "triangular2"):
        mode = "triangular" if name == "clr" else "triangular2"
        return CyclicLR(optimizer, base_lr=min_lr, max_lr=max_lr, step_size_up=length // 2,
                        step_size_down=length - length // 2, mode=mode, cycle_momentum=False)
    if name == "cosine-restarts":
        return CosineAnnealingWarmRestarts(optimizer, T_0=length, eta_min=min_lr)
    if name == "constant":
        return LambdaLR(optimizer, lambda _step: 1.0)
    raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")


def schedule_values(name: str, cfg: Mapping[str, Any], steps_per_epoch: int, total_steps: int) -> list[float]:
    """Learning rates of updates 1..``total_steps`` under a schedule (for plots and tests), floats."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=float(cfg["max_lr"]))
    sched = build_scheduler(name, opt, cfg, steps_per_epoch)
    out = []
    for _ in range(total_steps):
        out.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return [v for v in out if math.isfinite(v)]
