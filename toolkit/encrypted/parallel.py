"""Both cores for the server: feature groups in forked worker processes.

SEAL evaluates one operation on one thread and ``tenseal.sealapi`` holds the GIL, so threads do not help.
The circuit's heavy work is independent per feature (the ``Z_j`` products, the rotate-and-add sums and
the weight updates), so the features are split into ``workers`` groups, each owned by a forked process
that holds its share of the data and weight ciphertexts.  Per iteration the workers send their pending
partial sums of ``u = Z w`` (one ciphertext per block), the main process finishes ``u`` and the
activation, sends it back, and each worker updates its own weights (and, with Nesterov momentum, its
own momentum state ``v'``).  Ciphertexts travel as SEAL serialisations through pipes.  Fork start method
only (Linux); with ``workers=1`` nothing is forked.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tenseal.sealapi as sealapi

from toolkit.encrypted import circuit as C

_TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None


def to_bytes(ct: Any) -> bytes:
    """SEAL ciphertext -> bytes."""
    with tempfile.NamedTemporaryFile(dir=_TMP) as fh:
        ct.save(fh.name)
        return Path(fh.name).read_bytes()


def from_bytes(ctx: Any, data: bytes) -> Any:
    """bytes -> SEAL ciphertext (validated by SEAL against ``ctx``)."""
    ct = sealapi.Ciphertext()
    with tempfile.NamedTemporaryFile(dir=_TMP) as fh:
        Path(fh.name).write_bytes(data)
        ct.load(ctx, fh.name)
    return ct


def _act_to_bytes(act: list) -> list:
    return [tuple(to_bytes(c) for c in a) if isinstance(a, tuple) else to_bytes(a) for a in act]


def _act_from_bytes(ctx: Any, act: list) -> list:
    return [tuple(from_bytes(ctx, c) for c in a) if isinstance(a, tuple) else from_bytes(ctx, a) for a in act]


def _worker(conn: Any, be: Any, circuit: str, batches: list[C.Minibatch], w: list[Any],
            coeffs: tuple[float, float, float], lr: float, momentum: C.Momentum = C.NO_MOMENTUM,
            start: int = 0) -> None:
    """Worker loop; ``w`` is this group's state (weights, then ``v'`` with momentum)."""
    ctx = be.ctx
    batches = [C.prepare(be, circuit, mb, coeffs, lr, momentum.grad_factor(start)) for mb in batches]
    conn.send("ready")
    nw = len(w) // 2 if momentum.enabled else len(w)
    while True:
        cmd, arg = conn.recv()
        if cmd == "inner":
            conn.send([to_bytes(c) for c in C.inner_partial(be, batches[arg % len(batches)], w[:nw])])
        elif cmd == "update":
            k, act = arg
            w = C.update(be, circuit, batches[k % len(batches)], w, _act_from_bytes(ctx, act), lr, coeffs,
                         momentum, k)
            conn.send(be.level(w[0]))
        elif cmd == "get":
            conn.send([to_bytes(c) for c in w])
        elif cmd == "set":
            w = [from_bytes(ctx, b) for b in arg]
            conn.send(be.level(w[0]))
        elif cmd == "stop":
            conn.close()
            return


class FeatureWorkers:
    """Server-side training split over ``workers`` processes by feature (see module docstring).

    Args:
        be: the server's :class:`toolkit.encrypted.he.SealBackend` (inherited by the forked workers).
        circuit, coeffs, lr: as in :func:`toolkit.encrypted.circuit.iterate`.
        batches: minibatches with all features (``z[j][block]``), not yet prepared.
        w: server state: ``[d]`` weight ciphertexts, or ``[2d]`` (weights then ``v'``) with momentum.
        workers: number of processes (>= 2).
        momentum: Nesterov momentum; start: first iteration (for the initial momentum factor).
    """

    def __init__(self, be: Any, circuit: str, batches: list[C.Minibatch], w: list[Any],
                 coeffs: tuple[float, float, float], lr: float, workers: int,
                 momentum: C.Momentum = C.NO_MOMENTUM, start: int = 0) -> None:
        self.be, self.circuit, self.coeffs, self.lr = be, circuit, coeffs, lr
        self.momentum = momentum
        d = len(w) // 2 if momentum.enabled else len(w)
        self.d = d
        self.groups = [g for g in np.array_split(np.arange(d), min(workers, d)) if len(g)]
        ctx = mp.get_context("fork")
        self.conns, self.procs = [], []
        for g in self.groups:
            parent, child = ctx.Pipe()
            sub = [C.Minibatch([mb.z[j] for j in g], mb.n,
                               colsum=[mb.colsum[j] for j in g] if mb.colsum is not None else None)
                   for mb in batches]
            args = (child, be, circuit, sub, self._group_state(w, g), coeffs, lr, momentum, start)
            p = ctx.Process(target=_worker, args=args, daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            if c.recv() != "ready":
                raise RuntimeError("worker failed to start")
        self._level = be.level(w[0])

    def _group_state(self, state: list[Any], g: Any) -> list[Any]:
        """The part of ``state`` for feature group ``g``: its weights, then its ``v'`` (momentum)."""
        out = [state[j] for j in g]
        if self.momentum.enabled:
            out += [state[self.d + j] for j in g]
        return out

    def level(self) -> int:
        """Level of the weight ciphertexts."""
        return self._level

    def iterate(self, k: int) -> None:
        """One iteration on minibatch ``k mod M`` across the workers."""
        for c in self.conns:
            c.send(("inner", k))
        partials = [[from_bytes(self.be.ctx, b) for b in c.recv()] for c in self.conns]
        act = _act_to_bytes(C.activation(self.be, self.circuit, partials, self.coeffs))
        for c in self.conns:
            c.send(("update", (k, act)))
        self._level = [c.recv() for c in self.conns][0]

    def get_weights(self) -> list[Any]:
        """The whole state in feature order: ``[d]`` weights, then ``[d]`` ``v'`` with momentum."""
        ws, vs = [], []
        for c, g in zip(self.conns, self.groups, strict=True):
            c.send(("get", None))
            part = [from_bytes(self.be.ctx, b) for b in c.recv()]
            ws.extend(part[:len(g)])
            vs.extend(part[len(g):])
        return ws + vs

    def set_weights(self, w: list[Any]) -> None:
        """Replace the state (after a refresh), layout as :meth:`get_weights`."""
        for c, g in zip(self.conns, self.groups, strict=True):
            c.send(("set", [to_bytes(x) for x in self._group_state(w, g)]))
        self._level = [c.recv() for c in self.conns][0]

    def close(self) -> None:
        """Stop the workers."""
        for c in self.conns:
            try:
                c.send(("stop", None))
                c.close()
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


def run_schedule_parallel(be: Any, circuit: str, batches: list[C.Minibatch], w: list[Any], iterations: int,
                          coeffs: tuple[float, float, float], lr: float, refresh: Any, workers: int,
                          start_iteration: int = 0, stop_when_exhausted: bool = False,
                          momentum: C.Momentum = C.NO_MOMENTUM) -> tuple:
    """:func:`toolkit.encrypted.circuit.run_schedule` with the features split over worker processes.

    ``w`` is the server state (``[d]`` weights, or ``[2d]`` weights then ``v'`` with ``momentum``).

    Returns:
        ``(weights, trace, next_iteration, prepare_seconds)``.
    """
    depth = C.DEPTH_PER_ITERATION[circuit]
    if depth > be.params.levels:
        raise ValueError(f"{circuit} needs {depth} levels per iteration; the chain has {be.params.levels}")
    trace = C.TrainTrace()
    t0 = time.perf_counter()
    pool = FeatureWorkers(be, circuit, batches, w, coeffs, lr, workers, momentum, start_iteration)
    prepare_s = time.perf_counter() - t0
    try:
        k = start_iteration
        while k < iterations:
            if pool.level() + depth > be.params.levels:
                if stop_when_exhausted:
                    break
                t0 = time.perf_counter()
                pool.set_weights(refresh(pool.get_weights(), k))
                trace.refresh_seconds.append(time.perf_counter() - t0)
                trace.refreshes += 1
                trace.refresh_iterations.append(k)
            t0 = time.perf_counter()
            before = pool.level()
            pool.iterate(k)
            trace.levels.append((before, pool.level()))
            trace.seconds.append(time.perf_counter() - t0)
            k += 1
        return pool.get_weights(), trace, k, prepare_s
    finally:
        pool.close()
