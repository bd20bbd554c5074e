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
    * triangle: c = n mod (2 step_size); lr = floor + (peak - floor) * c / step_size if c < step_size
      else peak - (peak - floor) * (c - step_size) / step_size.

    The value depends only on n (closed form), so resuming from a ``state_dict`` is exact.
    Works with any optimizer (Adam, SGD): only ``lr`` of each param group is set, momentum is left alone.

    Args:
        optimizer: wrapped optimizer.
        max_lr: initial peak learning rate (> 0).
        min_lr: floor (0 <= min_lr < max_lr).
        step_size: half-cycle length in updates (>= 1).
        decay: peak multiplier per anneal, in (0, 1]; 1 disables annealing (plain triangular CLR).
        anneal_every: updates between two anneals (default 2 * step_size: "anneal per cycle"; the
            authors' code anneals once per epoch).
        restart_min_lr: floor used after the first warm restart (default ``min_lr``).
        last_epoch: index of the last update (-1 to start).

    Raises:
        ValueError: on out-of-range arguments.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float, min_lr: float, step_size: int,
                 decay: float = 0.1, anneal_every: int | None = None, restart_min_lr: float | None = None,
                 last_epoch: int = -1) -> None:
        if not max_lr > 0 or not 0 <= min_lr < max_lr:
            raise ValueError(f"need 0 <= min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
        if int(step_size) < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.max_lr, self.min_lr, self.step_size = float(max_lr), float(min_lr), int(step_size)
        self.decay = float(decay)
        self.anneal_every = int(anneal_every) if anneal_every else 2 * self.step_size
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
        c = n % (2 * self.step_size)
        frac = c / self.step_size if c < self.step_size else 2.0 - c / self.step_size
        return floor + (peak - floor) * frac

    def get_lr(self) -> list[float]:
        """Learning rate of every param group for the next update (``last_epoch`` updates done)."""
        lr = self.lr_at(self.last_epoch + 1)
        return [lr for _ in self.optimizer.param_groups]


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any],
                    steps_per_epoch: int) -> LRScheduler:
    """Build a per-step scheduler by name from config values.

    Config keys (all learning rates absolute): ``max_lr``, ``min_lr``, ``cycle_epochs`` (full cycle
    length in epochs; the half-cycle ``step_size`` = round(cycle_epochs * steps_per_epoch / 2)),
    ``decay`` and ``anneal_cycles`` (CALR: anneal the peak every that many cycles),
    ``restart_min_lr`` (CALR).

    * ``calr``: :class:`CyclicallyAnnealedLR`.
    * ``clr``: ``CyclicLR(mode="triangular", cycle_momentum=False)``, Smith's triangular CLR.
    * ``triangular2``: ``CyclicLR(mode="triangular2", cycle_momentum=False)``, amplitude halves per cycle.
    * ``cosine-restarts``: ``CosineAnnealingWarmRestarts(T_0=2*step_size, eta_min=min_lr)`` (SGDR),
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
    step_size = max(1, round(cycle_epochs * steps_per_epoch / 2))
    for group in optimizer.param_groups:
        group["lr"] = max_lr
        group.pop("initial_lr", None)
    if name == "calr":
        every = cfg.get("anneal_cycles", 1) or 1
        return CyclicallyAnnealedLR(optimizer, max_lr, min_lr, step_size, decay=float(cfg.get("decay", 0.1)),
                                    anneal_every=max(1, round(float(every) * 2 * step_size)),
                                    restart_min_lr=cfg.get("restart_min_lr"))
    if name in ("clr", "triangular2"):
        mode = "triangular" if name == "clr" else "triangular2"
        return CyclicLR(optimizer, base_lr=min_lr, max_lr=max_lr, step_size_up=step_size, mode=mode,
                        cycle_momentum=False)
    if name == "cosine-restarts":
        return CosineAnnealingWarmRestarts(optimizer, T_0=2 * step_size, eta_min=min_lr)
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
