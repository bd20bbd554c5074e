"""Gradient-descent circuits for logistic regression on column-packed CKKS data, written once.

Encoding (column packing, HIT's ``EncryptedColVector`` idea applied per feature): for a minibatch of
``b`` samples, feature ``j`` of ``z_i = y_i * (1, x_i)`` (``y_i`` in {-1, +1}, Han et al. 2018) is one
slot vector split into ``ceil(b / slots)`` blocks; each weight ``w_j`` is a ciphertext with ``w_j``
replicated in every slot.  Then ``u = Z w`` is ``sum_j Z_j * w_j`` (no rotations) and the gradient
component ``g_j = sum_i s(u_i) Z_ij`` is a rotate-and-add over the slots, which leaves ``g_j`` replicated
in every slot: the encoding of ``w_j`` again, so no re-encoding is needed between iterations.

Update (gradient ascent on the log-likelihood with a polynomial sigmoid, Han et al. 2018, eq. for
``grad``): ``w <- w + (alpha / b) sum_i s(z_i . w) z_i`` with ``s(u) = c0 + c1 u + c3 u^3 ~ sigmoid(-u)``.

Circuits (levels = rescales on the critical path from ``w_k`` to ``w_{k+1}``):

* ``baseline`` (depth 5): ``u = Z w`` (1) -> ``c3 u * u^2 + c1 u + c0`` (2) -> ``Z * s`` (1) -> multiply by
  ``gamma = alpha/b`` (1) -> rotate-sum (0).  This is the Han et al. depth-5 iteration (3 ct-ct + 2
  plaintext rescales per iteration, ``logQ`` formula in their ``Params.h``).
* ``low-depth`` (depth 3), in the spirit of Crockett (WAHC 2020): (a) the learning rate and ``1/b`` are
  folded into the polynomial coefficients; (b) the coefficient multiplications are moved onto *data-only*
  copies ``gamma c1 Z`` and ``beta gamma c0 Z`` (computed once per minibatch, off the critical path:
  duplicated work that removes a dependency); (c) the weights are kept in rescaled coordinates
  ``w' = beta w`` with ``beta = sqrt(-c3/c1)`` so the cubic factors as ``u'(1 - u'^2)`` and needs no
  plaintext multiplication: ``u' = Z w'`` (1) -> ``T_j = (gamma c1 Z_j) * u'`` and ``v = 1 - u'^2``
  (1, in parallel) -> ``T_j * v`` (1) -> rotate-sum + data-only ``c0`` term (0).  Three levels per
  iteration, every iteration (the issue's target is at most 3 on average).

Nesterov momentum (optional, :class:`Momentum`), in the form Kim, Song, Kim, Lee, Cheon use for HE
logistic regression (BMC Med Genomics 11:83, 2018, their Nesterov accelerated gradient update), written
for ascent: ``v_{k+1} = w_k + alpha g_k``; ``w_{k+1} = (1 - gamma_k) v_{k+1} + gamma_k v_k``.  The gradient
is taken at ``w`` (the look-ahead point); ``v`` is the plain-step sequence and is the model the owner
decrypts (HELR likewise decrypts its plain-step sequence).  Here ``gamma_k = -mu_k`` with the momentum
``mu_k`` in [0, 1) (Nesterov's lambda schedule, used in HELR's code, gives ``gamma_k <= 0`` from the
second iteration on; a ``gamma`` in (0, 1) would only average the iterates, not accelerate).

No extra depth: the server keeps ``v' = (1 + mu_{k-1}) v`` (``v'_0 = v_0 = w_0``) and computes, with
``H_k = (1 + mu_k) G_k`` (``G_k`` the step ``alpha g_k``; the factor ``1 + mu_k`` is folded into the
plaintext constants the gradient is already multiplied by), ``v'_{k+1} = (1 + mu_k) w_k + H_k`` and
``w_{k+1} = v'_{k+1} - (mu_k / (1 + mu_{k-1})) v'_k``.  The two new plaintext multiplications act on ``w_k``
and ``v'_k`` at the weights' level ``L`` (result ``L + 1``), off the critical path that ends at
``L + depth``, so the levels per iteration stay 5 (baseline) and 3 (low-depth).

The same circuit code runs on a :class:`PlainBackend` (numpy, with level, value-range and op-count
tracking: the dry run) and on the SEAL backend in :mod:`toolkit.encrypted.he`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.encrypted.params import CKKSParams

#: Han et al. (HELR ``degree3``, least-squares fit on [-16, 16]): sigmoid(-u) ~ c0 + c1 u + c3 u^3.
SIGMOID_COEFFS: dict[str, tuple[float, float, float]] = {
    "han16": (0.5, -0.0843, 0.0002),
    # Kim et al. iDASH 2017 degree 3 on [-8, 8] (also in HELR as the commented alternative).
    "kim8": (0.5, -0.15012, 0.001593),
}
#: valid input range of each approximation.
SIGMOID_RANGE: dict[str, float] = {"han16": 16.0, "kim8": 8.0}

#: levels consumed per iteration on the critical path (checked by the simulator and the tests).
DEPTH_PER_ITERATION: dict[str, int] = {"baseline": 5, "low-depth": 3}
CIRCUITS = tuple(DEPTH_PER_ITERATION)
#: momentum schedules: ``fixed`` (``mu_k = mu``) or ``nesterov`` (Nesterov's lambda sequence capped at mu).
MOMENTUM_SCHEDULES = ("fixed", "nesterov")


@dataclass(frozen=True)
class Momentum:
    """Nesterov momentum settings (Kim et al. 2018 NAG form, see the module docstring).

    Attributes:
        mu: momentum in [0, 1); 0 switches momentum off (plain minibatch gradient ascent, no ``v`` state).
            Kim et al.'s ``gamma_k`` is ``-mu_k``.
        schedule: ``fixed`` (``mu_k = mu`` for every iteration ``k``) or ``nesterov``: ``mu_k = min(mu,
            (lambda_{k+1} - 1) / lambda_{k+2})`` with ``lambda_1 = 1``, ``lambda_{s+1} = (1 + sqrt(1 + 4
            lambda_s^2)) / 2`` (Nesterov 1983, the schedule Kim et al. and HELR use; ``mu_0 = 0``, then
            0.28, 0.43, 0.53, ... towards 1), so ``mu`` is the cap.

    Raises:
        ValueError: ``mu`` not a finite number in [0, 1) or an unknown ``schedule``.
    """

    mu: float = 0.0
    schedule: str = "fixed"

    def __post_init__(self) -> None:
        if isinstance(self.mu, bool) or not isinstance(self.mu, (int, float)) or not 0.0 <= self.mu < 1.0:
            raise ValueError(f"momentum must be a number in [0, 1), got {self.mu!r}")
        if self.schedule not in MOMENTUM_SCHEDULES:
            raise ValueError(f"unknown momentum schedule {self.schedule!r}; "
                             f"expected one of {MOMENTUM_SCHEDULES}")

    @property
    def enabled(self) -> bool:
        """True when the server keeps the ``v`` state (``mu > 0``)."""
        return self.mu > 0.0

    def mu_at(self, k: int) -> float:
        """Momentum ``mu_k`` of iteration ``k`` (0-based, counted over the whole run); 0 for ``k < 0``."""
        if k < 0 or not self.enabled:
            return 0.0
        if self.schedule == "fixed":
            return float(self.mu)
        lam = 1.0  # lambda_1
        for _ in range(k):
            lam = (1.0 + math.sqrt(1.0 + 4.0 * lam * lam)) / 2.0
        nxt = (1.0 + math.sqrt(1.0 + 4.0 * lam * lam)) / 2.0
        return min(float(self.mu), (lam - 1.0) / nxt)

    def grad_factor(self, k: int) -> float:
        """``1 + mu_k`` (= ``1 - gamma_k``), folded into the gradient's plaintext constants."""
        return 1.0 + self.mu_at(k)

    def v_scale(self, k: int) -> float:
        """``v'_k / v_k`` before iteration ``k``: ``1 + mu_{k-1}`` (1 at ``k = 0``)."""
        return 1.0 + self.mu_at(k - 1)

    def to_dict(self) -> dict:
        """JSON form for ``job.json``."""
        return {"mu": float(self.mu), "schedule": self.schedule}

    @classmethod
    def from_dict(cls, d: dict | None) -> Momentum:
        """Inverse of :meth:`to_dict`; ``None`` or ``{}`` -> momentum off.

        Raises:
            ValueError: invalid values (see the class).
        """
        d = d or {}
        mu = d.get("mu", 0.0)
        return cls(float(mu) if isinstance(mu, (int, float)) and not isinstance(mu, bool) else mu,
                   str(d.get("schedule", "fixed")))


NO_MOMENTUM = Momentum()


def beta_for(coeffs: tuple[float, float, float]) -> float:
    """Weight rescaling ``beta = sqrt(-c3/c1)`` used by the low-depth circuit (requires c3/c1 < 0)."""
    c0, c1, c3 = coeffs
    if not c3 / c1 < 0:
        raise ValueError("the low-depth factorisation needs c3/c1 < 0")
    return math.sqrt(-c3 / c1)


class OverflowFound(ArithmeticError):
    """A simulated value exceeded the CKKS headroom at its level (would wrap silently)."""


@dataclass
class PlainCt:
    """Plaintext stand-in for a ciphertext: slot values float64 ``[slots]``, level, pending rescale."""

    values: np.ndarray
    level: int
    pending: bool = False


@dataclass
class PlainBackend:
    """numpy backend with the semantics of the SEAL backend plus depth, range and op-count tracking.

    Attributes:
        params: the CKKS parameters whose chain and headroom are checked.
        ranges: level -> max |value| seen in any ciphertext stored at that level.
        product_ranges: level -> max |value| of a ct-ct product before its rescale.
        ops: Counter of ``(op, level)`` for the time estimate.
        overflow: list of human-readable overflow findings (empty when safe).
        strict: raise :class:`OverflowFound` on the first overflow instead of recording it.
    """

    params: CKKSParams
    ranges: dict[int, float] = field(default_factory=dict)
    product_ranges: dict[int, float] = field(default_factory=dict)
    ops: Counter = field(default_factory=Counter)
    overflow: list[str] = field(default_factory=list)
    strict: bool = False

    # --- bookkeeping ------------------------------------------------------------------------------
    def _record(self, ct: PlainCt) -> PlainCt:
        m = float(np.max(np.abs(ct.values))) if ct.values.size else 0.0
        table = self.product_ranges if ct.pending else self.ranges
        table[ct.level] = max(table.get(ct.level, 0.0), m)
        limit = self.params.product_headroom(ct.level) if ct.pending else self.params.headroom(ct.level)
        if ct.level > self.params.levels:
            msg = f"level {ct.level} exceeds the chain's {self.params.levels} levels"
            self.overflow.append(msg)
            if self.strict:
                raise OverflowFound(msg)
        elif m >= limit:
            msg = (f"|value| {m:.4g} >= headroom {limit:.4g} at level {ct.level}"
                   f"{' (ct-ct product before rescale)' if ct.pending else ''}")
            self.overflow.append(msg)
            if self.strict:
                raise OverflowFound(msg)
        return ct

    def level(self, a: PlainCt) -> int:
        """Levels consumed by ``a``."""
        return a.level

    # --- owner-side operations --------------------------------------------------------------------
    def encrypt(self, values: np.ndarray) -> PlainCt:
        """'Encrypt' a slot vector (float64 ``[<= slots]``, zero-padded) at level 0."""
        v = np.zeros(self.params.slots)
        v[: len(values)] = values
        return self._record(PlainCt(v, 0))

    def encrypt_replicated(self, value: float) -> PlainCt:
        """A scalar replicated in every slot, at level 0."""
        return self._record(PlainCt(np.full(self.params.slots, float(value)), 0))

    def decrypt(self, a: PlainCt) -> np.ndarray:
        """Slot values (float64 ``[slots]``)."""
        return a.values.copy()

    # --- server-side operations -------------------------------------------------------------------
    def mul_lazy(self, a: PlainCt, b: PlainCt) -> PlainCt:
        """ct-ct product without relinearisation/rescale (pending; add several, then :meth:`finish`)."""
        lv = max(a.level, b.level)
        self.ops[("mul", lv)] += 1
        return self._record(PlainCt(a.values * b.values, lv, pending=True))

    def finish(self, a: PlainCt) -> PlainCt:
        """Relinearise and rescale a pending product (one level)."""
        self.ops[("relin_rescale", a.level)] += 1
        return self._record(PlainCt(a.values, a.level + 1))

    def mul(self, a: PlainCt, b: PlainCt) -> PlainCt:
        """ct-ct product, relinearised and rescaled (one level)."""
        return self.finish(self.mul_lazy(a, b))

    def square(self, a: PlainCt) -> PlainCt:
        """a * a (one level)."""
        return self.mul(a, a)

    def mul_const(self, a: PlainCt, c: float) -> PlainCt:
        """Multiply by a plaintext scalar and rescale (one level)."""
        self.ops[("mul_plain", a.level)] += 1
        return self._record(PlainCt(a.values * c, a.level + 1))

    def add(self, a: PlainCt, b: PlainCt) -> PlainCt:
        """Sum at the deeper of the two levels (mod-switching the other)."""
        if a.pending != b.pending:
            raise ValueError("cannot add a pending product to a rescaled ciphertext")
        lv = max(a.level, b.level)
        self.ops[("add", lv)] += 1
        return self._record(PlainCt(a.values + b.values, lv, a.pending))

    def add_const(self, a: PlainCt, c: float) -> PlainCt:
        """Add a plaintext scalar to every slot (no level)."""
        return self._record(PlainCt(a.values + c, a.level, a.pending))

    def neg(self, a: PlainCt) -> PlainCt:
        """-a (no level)."""
        return PlainCt(-a.values, a.level, a.pending)

    def sum_slots(self, a: PlainCt) -> PlainCt:
        """Rotate-and-add over all slots: the total, replicated in every slot (no level)."""
        self.ops[("rotate", a.level)] += int(math.log2(self.params.slots))
        return self._record(PlainCt(np.full_like(a.values, a.values.sum()), a.level))


# --- the circuits -----------------------------------------------------------------------------------

@dataclass
class Minibatch:
    """Server-side view of one minibatch.

    Attributes:
        z: ``[d][blocks]`` ciphertexts (or :class:`PlainCt`) of the features ``z_ij`` in slots.
        n: number of real samples (padding slots hold 0 and add nothing).
        zc1: low-depth only: ``F gamma c1 z`` copies, ``[d][blocks]`` (level 1; ``F = factor``).
        c0: low-depth only: ``[d]`` data-only terms ``F beta gamma c0 sum_i z_ij`` (level 1, replicated).
        colsum: optional ``[d]`` encrypted column sums ``sum_i z_ij`` (replicated) supplied by the owner;
            without them :func:`prepare` computes them by rotate-and-add.
        factor: low-depth only: the momentum factor ``1 + mu_k`` folded into ``zc1`` and ``c0``.
    """

    z: list[list[Any]]
    n: int
    zc1: list[list[Any]] | None = None
    c0: list[Any] | None = None
    colsum: list[Any] | None = None
    factor: float = 1.0


def prepare(be: Any, circuit: str, batch: Minibatch, coeffs: tuple[float, float, float],
            learning_rate: float, factor: float = 1.0) -> Minibatch:
    """Precompute the data-only terms of ``circuit`` for one minibatch (off the critical path).

    For ``low-depth``: ``zc1 = F (alpha/b) c1 z`` and ``c0 = F beta (alpha/b) c0 sum_i z_i`` (from the
    owner's encrypted column sums when present, else by rotate-and-add), with ``F = factor`` the momentum
    factor ``1 + mu_k`` (1 without momentum).  Nothing for ``baseline`` (its factor is applied per
    iteration).  Returns the same :class:`Minibatch`, filled in (again, when called with another factor).
    """
    if circuit == "baseline":
        return batch
    c0, c1, _ = coeffs
    gamma = factor * learning_rate / batch.n
    batch.factor = float(factor)
    beta = beta_for(coeffs)
    batch.zc1 = [[be.mul_const(zb, gamma * c1) for zb in zj] for zj in batch.z]
    if batch.colsum is not None:  # owner-supplied column sums: one plaintext multiplication each
        batch.c0 = [be.mul_const(cs, beta * gamma * c0) for cs in batch.colsum]
        return batch
    batch.c0 = []
    for zj in batch.z:
        acc = be.mul_const(zj[0], beta * gamma * c0)
        for zb in zj[1:]:
            acc = be.add(acc, be.mul_const(zb, beta * gamma * c0))
        batch.c0.append(be.sum_slots(acc))
    return batch


def inner_partial(be: Any, batch: Minibatch, w: list[Any]) -> list[Any]:
    """Pending (not yet rescaled) ``sum_j Z_j * w_j`` per block over the features held in ``batch``/``w``.

    Partial sums from feature groups (e.g. worker processes) add up to the full ``u = Z w``.
    """
    out = []
    for b in range(len(batch.z[0])):
        acc = be.mul_lazy(batch.z[0][b], w[0])
        for j in range(1, len(w)):
            acc = be.add(acc, be.mul_lazy(batch.z[j][b], w[j]))
        out.append(acc)
    return out


def activation(be: Any, circuit: str, partials: list[list[Any]], coeffs: tuple[float, float, float]) -> list:
    """Finish ``u = Z w`` from feature-group partials and evaluate the per-sample factors (per block).

    ``baseline``: ``[s_b]`` with ``s = c3 u * u^2 + c1 u + c0`` (levels +3).  ``low-depth``:
    ``[(u'_b, v_b)]`` with ``v = 1 - u'^2`` (levels +1 and +2).
    """
    c0, c1, c3 = coeffs
    u = []
    for b in range(len(partials[0])):
        acc = partials[0][b]
        for part in partials[1:]:
            acc = be.add(acc, part[b])
        u.append(be.finish(acc))
    if circuit == "baseline":
        out = []
        for ub in u:
            cubic = be.mul(be.mul_const(ub, c3), be.square(ub))
            out.append(be.add_const(be.add(cubic, be.mul_const(ub, c1)), c0))
        return out
    return [(ub, be.add_const(be.neg(be.square(ub)), 1.0)) for ub in u]


def _split(state: list[Any], momentum: Momentum) -> tuple[list[Any], list[Any] | None]:
    """``state`` = ``w`` (``[d]``) or ``w + v'`` (``[2d]``, momentum on) -> ``(w, v' or None)``."""
    if not momentum.enabled:
        return state, None
    if len(state) % 2:
        raise ValueError(f"momentum state must hold w and v (2d ciphertexts), got {len(state)}")
    d = len(state) // 2
    return state[:d], state[d:]


def step_terms(be: Any, circuit: str, batch: Minibatch, act: list, learning_rate: float,
               factor: float = 1.0) -> list[Any]:
    """``H_j = factor * G_j``: the gradient step of each feature held in ``batch``, level ``L + depth``.

    ``baseline``: ``rotsum(factor * gamma * sum_b Z_jb * s_b)`` (levels +2 after ``s``; the factor rides on
    the ``gamma`` multiplication).  ``low-depth``: ``rotsum(sum_b (F gamma c1 Z_jb * u'_b) * v_b) + c0_j``
    (level +1 after ``v``; ``F`` is folded into the prepared copies, see :func:`prepare`).

    Raises:
        ValueError: low-depth minibatch not prepared with this ``factor``.
    """
    out = []
    if circuit == "baseline":
        gamma = factor * learning_rate / batch.n
        for zj in batch.z:
            acc = be.mul_lazy(zj[0], act[0])
            for b in range(1, len(zj)):
                acc = be.add(acc, be.mul_lazy(zj[b], act[b]))
            # gamma before the rotations: same depth, rotations at the cheaper last level
            out.append(be.sum_slots(be.mul_const(be.finish(acc), gamma)))
        return out
    if batch.zc1 is None or batch.c0 is None:
        raise ValueError("call prepare() on the minibatch first")
    if batch.factor != factor:
        raise ValueError(f"minibatch prepared with factor {batch.factor}, iteration needs {factor}")
    for j, zj in enumerate(batch.zc1):
        acc = be.mul_lazy(be.mul(zj[0], act[0][0]), act[0][1])
        for b in range(1, len(zj)):
            acc = be.add(acc, be.mul_lazy(be.mul(zj[b], act[b][0]), act[b][1]))
        out.append(be.add(be.sum_slots(be.finish(acc)), batch.c0[j]))
    return out


def update(be: Any, circuit: str, batch: Minibatch, state: list[Any], act: list, learning_rate: float,
           coeffs: tuple[float, float, float] | None = None, momentum: Momentum = NO_MOMENTUM,
           k: int = 0) -> list[Any]:
    """Gradient and weight update for the features held in ``batch``/``state`` (independent per feature).

    Without momentum ``state`` is ``[w_j]`` and the result ``[w_j + G_j]``.  With momentum ``state`` is
    ``[w_j] + [v'_j]`` (same features, same order) and the result holds ``w_{k+1}`` and ``v'_{k+1}``
    (module docstring): ``v'_{k+1} = (1+mu_k) w_k + H_k`` and ``w_{k+1} = ((1+mu_k) w_k - c v'_k) + H_k``
    with ``c = mu_k / (1+mu_{k-1})``; the two plaintext products are taken at the weights' level, so the
    new weights end at ``L + depth`` exactly as without momentum.  A low-depth minibatch prepared with
    another factor than ``1 + mu_k`` is prepared again (``coeffs`` needed; data-only work, off the
    critical path).

    Returns:
        the new state, same layout as ``state``.
    """
    w, v = _split(state, momentum)
    factor = momentum.grad_factor(k)
    if circuit == "low-depth" and batch.zc1 is not None and batch.factor != factor:
        if coeffs is None:
            raise ValueError("coeffs needed to prepare the minibatch for a new momentum factor")
        prepare(be, circuit, batch, coeffs, learning_rate, factor)
    h = step_terms(be, circuit, batch, act, learning_rate, factor)
    if v is None:
        return [be.add(wj, hj) for wj, hj in zip(w, h, strict=True)]
    mu = momentum.mu_at(k)
    new_w, new_v = [], []
    for wj, vj, hj in zip(w, v, h, strict=True):
        if mu == 0.0:  # plain step: v_{k+1} = w_{k+1} (SEAL refuses a product with the constant 0)
            nv = be.add(wj, hj)
            new_w.append(nv)
            new_v.append(nv)
            continue
        a = be.mul_const(wj, 1.0 + mu)  # level L + 1, off the critical path
        b = be.mul_const(vj, -mu / momentum.v_scale(k))  # level <= L + 1
        new_v.append(be.add(a, hj))
        new_w.append(be.add(be.add(a, b), hj))
    return new_w + new_v


def iterate(be: Any, circuit: str, batch: Minibatch, state: list[Any], coeffs: tuple[float, float, float],
            learning_rate: float, momentum: Momentum = NO_MOMENTUM, k: int = 0) -> list[Any]:
    """One gradient step of ``circuit`` at iteration ``k`` (``baseline``: weights, depth 5; ``low-depth``:
    ``beta`` x weights, depth 3, needs :func:`prepare`).  ``state``: ``[d]`` weights, or ``[2d]`` weights
    and momentum state ``v'`` when ``momentum`` is on.  Returns the new state (same layout)."""
    if circuit not in CIRCUITS:
        raise ValueError(f"unknown circuit {circuit!r}; expected one of {CIRCUITS}")
    w, _ = _split(state, momentum)
    act = activation(be, circuit, [inner_partial(be, batch, w)], coeffs)
    return update(be, circuit, batch, state, act, learning_rate, coeffs, momentum, k)


def model_coordinates(values: np.ndarray, circuit: str, coeffs: tuple[float, float, float],
                      momentum: Momentum = NO_MOMENTUM, iteration: int = 0) -> np.ndarray:
    """Decrypted server state -> model weights.

    Args:
        values: float64 ``[d]`` (weights) or ``[2d]`` (weights then ``v'``, momentum on), server
            coordinates (low-depth: times ``beta``).
        iteration: iterations done (the next iteration's index ``k``); fixes ``v_scale(k)``.

    Returns:
        float64 ``[d]``: ``w`` without momentum; with momentum the plain-step sequence ``v_k = v'_k /
        (1 + mu_{k-1})``, the model Nesterov's guarantee is about.
    """
    values = np.asarray(values, dtype=np.float64)
    if momentum.enabled:
        d = len(values) // 2
        model = values[d:] / momentum.v_scale(iteration)
    else:
        model = values
    return model / weight_scale(circuit, coeffs)


def weight_scale(circuit: str, coeffs: tuple[float, float, float]) -> float:
    """Factor between the server's weight ciphertexts and the model weights (``beta`` or 1)."""
    return beta_for(coeffs) if circuit == "low-depth" else 1.0


def poly_sigmoid_step(w: np.ndarray, z: np.ndarray, coeffs: tuple[float, float, float],
                      learning_rate: float) -> np.ndarray:
    """Exact plaintext reference of one step: ``w + (alpha/b) z^T s(z w)``.

    Args:
        w: float64 ``[d]`` weights.
        z: float64 ``[b, d]`` label-signed features of the minibatch.

    Returns:
        float64 ``[d]`` new weights.
    """
    c0, c1, c3 = coeffs
    u = z @ w
    s = c0 + c1 * u + c3 * u ** 3
    return w + learning_rate / z.shape[0] * (z.T @ s)


def nesterov_step(w: np.ndarray, v: np.ndarray, z: np.ndarray, coeffs: tuple[float, float, float],
                  learning_rate: float, mu: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact plaintext reference of one Nesterov step (Kim et al. 2018 form, ``gamma = -mu``).

    ``v_new = w + (alpha/b) z^T s(z w)`` (:func:`poly_sigmoid_step` at the look-ahead point ``w``), then
    ``w_new = (1 + mu) v_new - mu v``.

    Args:
        w: float64 ``[d]`` look-ahead weights ``w_k``; v: float64 ``[d]`` plain-step weights ``v_k``
            (``v_0 = w_0``); z: float64 ``[b, d]``; mu: ``mu_k`` in [0, 1).

    Returns:
        ``(w_{k+1}, v_{k+1})``, float64 ``[d]`` each; ``v_{k+1}`` is the model.
    """
    v_new = poly_sigmoid_step(w, z, coeffs, learning_rate)
    return (1.0 + mu) * v_new - mu * v, v_new


@dataclass
class TrainTrace:
    """What a training run did: per-iteration levels, refreshes and the weights seen at refreshes.

    Attributes:
        levels: ``[(level before, level after)]`` of the weight ciphertexts, one pair per iteration.
        refreshes: number of owner refreshes (decrypt + re-encrypt) performed.
        refresh_iterations: iteration indices (0-based) before which a refresh happened.
        seconds: wall seconds per iteration (excluding refreshes).
        refresh_seconds: wall seconds per refresh.
    """

    levels: list[tuple[int, int]] = field(default_factory=list)
    refreshes: int = 0
    refresh_iterations: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    refresh_seconds: list[float] = field(default_factory=list)

    @property
    def depth_per_iteration(self) -> float:
        """Mean levels consumed per iteration."""
        return float(np.mean([b - a for a, b in self.levels])) if self.levels else 0.0


def run_schedule(be: Any, circuit: str, batches: list[Minibatch], w: list[Any], iterations: int,
                 coeffs: tuple[float, float, float], learning_rate: float, refresh: Any,
                 start_iteration: int = 0, stop_when_exhausted: bool = False,
                 trace: TrainTrace | None = None,
                 momentum: Momentum = NO_MOMENTUM) -> tuple[list[Any], TrainTrace, int]:
    """Run ``iterations`` minibatch iterations, refreshing the weights when the chain runs out.

    Iteration ``k`` uses minibatch ``k mod len(batches)``.  ``w`` is the server state: ``[d]`` weights,
    or with ``momentum`` on ``[2d]`` weights then ``v'`` (:func:`update`).  Before an iteration whose depth
    would exceed the remaining levels, ``refresh(state, k) -> state`` (the owner's decrypt/re-encrypt of
    every ciphertext of the state, ``v'`` included) is called and counted; with ``stop_when_exhausted``
    the loop returns instead so a separate owner step can refresh.

    Returns:
        ``(state, trace, next_iteration)``.

    Raises:
        ValueError: the circuit's depth exceeds the whole chain (no iteration can ever run).
    """
    import time

    depth = DEPTH_PER_ITERATION[circuit]
    if depth > be.params.levels:
        raise ValueError(f"{circuit} needs {depth} levels per iteration; the chain has {be.params.levels}")
    trace = trace or TrainTrace()
    k = start_iteration
    while k < iterations:
        if be.level(w[0]) + depth > be.params.levels:
            if stop_when_exhausted:
                break
            t0 = time.perf_counter()
            w = refresh(w, k)
            trace.refresh_seconds.append(time.perf_counter() - t0)
            trace.refreshes += 1
            trace.refresh_iterations.append(k)
        t0 = time.perf_counter()
        before = be.level(w[0])
        w = iterate(be, circuit, batches[k % len(batches)], w, coeffs, learning_rate, momentum, k)
        trace.levels.append((before, be.level(w[0])))
        trace.seconds.append(time.perf_counter() - t0)
        k += 1
    return w, trace, k


def refresh_weights(owner_be: Any, w: list[Any]) -> tuple[list[Any], np.ndarray]:
    """Owner's refresh: decrypt each replicated value (mean over slots) and re-encrypt it fresh.

    ``w`` is the whole server state (weights, and ``v'`` when momentum is on), in server coordinates.

    Returns:
        ``(fresh ciphertexts, decrypted values float64 [len(w)])``.
    """
    values = np.array([float(np.mean(owner_be.decrypt(c))) for c in w])
    return [owner_be.encrypt_replicated(v) for v in values], values
