"""Both cores for the server: feature groups in forked worker processes.

SEAL evaluates one operation on one thread and ``tenseal.sealapi`` holds the GIL, so threads do not help.
The circuit's heavy work is independent per feature (the ``Z_j`` products, the rotate-and-add sums and
the weight updates), so the features are split into ``workers`` groups, each owned by a forked process
that holds its share of the data and weight ciphertexts.  Per iteration the workers send their pending
partial sums of ``u = Z w`` (one ciphertext per block), the main process finishes ``u`` and the
activation, sends it back, and each worker updates its own weights (and, with Nesterov momentum, its
own momentum state ``v'``).  Ciphertexts travel as SEAL serialisations through pipes.  Fork start method
only (Linux); with ``workers=1`` nothing is forked.

Refreshes stay serialised end to end: the workers serialise their weights (in parallel), the main process
writes those bytes into the request file unchanged, reads the owner's response as validated raw bytes
(:func:`toolkit.encrypted.he.load_ciphertexts` with ``raw=True``) and hands them to the workers, which
deserialise them with the same SEAL checks as a file load.  Each ciphertext is serialised and deserialised
once per direction, as with one process.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import numpy as np

from toolkit.encrypted import circuit as C
from toolkit.encrypted import he
from toolkit.errors import InputError


def to_bytes(ct: Any) -> bytes:
    """SEAL ciphertext -> bytes (:func:`toolkit.encrypted.he.ciphertext_to_bytes`)."""
    return he.ciphertext_to_bytes(ct)


def from_bytes(ctx: Any, data: bytes) -> Any:
    """bytes -> SEAL ciphertext of any size, validated by SEAL against ``ctx``
    (:func:`toolkit.encrypted.he.ciphertext_from_bytes`).

    Raises:
        InputError: SEAL finds the bytes invalid for ``ctx``.
    """
    return he.ciphertext_from_bytes(ctx, data, "worker pipe", size=None)


def _act_to_bytes(act: list) -> list:
    return [tuple(to_bytes(c) for c in a) if isinstance(a, tuple) else to_bytes(a) for a in act]


def _act_from_bytes(ctx: Any, act: list) -> list:
    return [tuple(from_bytes(ctx, c) for c in a) if isinstance(a, tuple) else from_bytes(ctx, a) for a in act]


def _worker(conn: Any, be: Any, circuit: str, batches: list[C.Minibatch], w: list[Any],
            coeffs: tuple[float, float, float], lr: float, momentum: C.Momentum = C.NO_MOMENTUM,
            start: int = 0) -> None:
    """Worker loop; ``w`` is this group's state (weights, then ``v'`` with momentum)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole process group: the parent handles
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # it and kills its workers; no inherited CLI handler here
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
            source, named = arg
            try:  # same checks as a file load; the old state stays if any member is refused
                w = [he.ciphertext_from_bytes(ctx, b, source, f"ciphertext {name}") for name, b in named]
            except InputError as exc:
                conn.send(("error", (exc.source, exc.field, exc.problem)))
            else:
                conn.send(("ok", be.level(w[0])))
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

    def state_names(self) -> list[str]:
        """Names of the state in :meth:`get_weights` order: ``w0..w{d-1}`` then (momentum) ``v0..v{d-1}``,
        as in the weight files (:func:`toolkit.encrypted.protocol.state_names`)."""
        return [f"w{j}" for j in range(self.d)] + ([f"v{j}" for j in range(self.d)] if self.momentum.enabled else [])

    def get_weight_bytes(self) -> list[bytes]:
        """The whole state as SEAL serialisations (the workers serialise their parts concurrently).

        Returns:
            ``[d]`` (``[2d]`` with momentum: weights then ``v'``) bytes in feature order, each a member
            :func:`toolkit.encrypted.he.save_ciphertexts` writes as it is.
        """
        for c in self.conns:
            c.send(("get", None))
        ws: list[bytes] = []
        vs: list[bytes] = []
        for c, g in zip(self.conns, self.groups, strict=True):
            part = c.recv()
            ws.extend(part[:len(g)])
            vs.extend(part[len(g):])
        return ws + vs

    def get_weights(self) -> list[Any]:
        """The whole state as ``Ciphertext`` objects, layout as :meth:`get_weight_bytes`."""
        return [from_bytes(self.be.ctx, b) for b in self.get_weight_bytes()]

    def set_weight_bytes(self, blobs: list[bytes], source: object = "refresh_response") -> None:
        """Replace the state with SEAL serialisations (e.g. the members of a refresh response read with
        ``load_ciphertexts(..., raw=True)``), layout as :meth:`get_weight_bytes`.

        Each worker deserialises its part with :func:`toolkit.encrypted.he.ciphertext_from_bytes`, the
        checks a file load applies, so unvalidated bytes never become server state.

        Args:
            blobs: ``[d]`` or ``[2d]`` (momentum) bytes.
            source: named in errors (the response file).

        Raises:
            ValueError: ``len(blobs)`` does not match the state.
            InputError: a worker refused a ciphertext (invalid for the context or not 2 polynomials);
                the message names the member (``w3``, ``v3``).
        """
        names = self.state_names()
        if len(blobs) != len(names):
            raise ValueError(f"expected {len(names)} state ciphertexts, got {len(blobs)}")
        named = list(zip(names, blobs, strict=True))
        for c, g in zip(self.conns, self.groups, strict=True):
            c.send(("set", (str(source), self._group_state(named, g))))
        replies = [c.recv() for c in self.conns]  # read every reply so the pipes stay in step
        for status, value in replies:
            if status == "error":
                raise InputError(*value)
        self._level = replies[0][1]

    def set_weights(self, w: list[Any]) -> None:
        """Replace the state with ``Ciphertext`` objects (after a refresh), layout as :meth:`get_weights`."""
        self.set_weight_bytes([to_bytes(x) for x in w], "state")

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
                          momentum: C.Momentum = C.NO_MOMENTUM, serialized: bool = False) -> tuple:
    """:func:`toolkit.encrypted.circuit.run_schedule` with the features split over worker processes.

    ``w`` is the server state (``[d]`` weights, or ``[2d]`` weights then ``v'`` with ``momentum``).
    ``refresh(state, k) -> state`` works on ``Ciphertext`` lists; if it also has a ``serialized(blobs, k)
    -> blobs`` method (:class:`toolkit.encrypted.protocol.LocalRefresher`), that is used instead, with the
    state as SEAL serialisations in the same order, so the ciphertexts are not deserialised and
    re-serialised in the main process on their way to and from the owner's files.

    Args:
        serialized: return the final state as bytes (for :func:`toolkit.encrypted.he.save_ciphertexts`).

    Returns:
        ``(state, trace, next_iteration, prepare_seconds)``; ``state`` is ``Ciphertext`` objects, or bytes
        with ``serialized``.
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
                refresh_serialized = getattr(refresh, "serialized", None)
                if refresh_serialized is not None:
                    pool.set_weight_bytes(refresh_serialized(pool.get_weight_bytes(), k))
                else:
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
        return (pool.get_weight_bytes() if serialized else pool.get_weights()), trace, k, prepare_s
    finally:
        pool.close()
