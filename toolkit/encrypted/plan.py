"""Dry run: simulate a circuit in plaintext with depth, value-range, size and time accounting.

Nothing is encrypted: the circuit code of :mod:`toolkit.encrypted.circuit` runs on
:class:`~toolkit.encrypted.circuit.PlainBackend`, which tracks the level of every value, the largest
|value| stored at each level against the CKKS headroom ``2^(log Q_l - s - 1)`` (values beyond it wrap
silently in CKKS), and counts operations per level.  The time estimate multiplies those counts by
per-operation costs measured with a small key set (:func:`measure_op_costs`).  In the spirit of HIT's
DepthFinder / ScaleEstimator / Plaintext evaluators.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from toolkit.encrypted import circuit as C
from toolkit.encrypted.params import CKKSParams


def plain_batches(be: C.PlainBackend, z: np.ndarray, batches: list[np.ndarray]) -> list[C.Minibatch]:
    """Pack ``z`` float64 ``[n, d]`` into per-feature, per-block slot vectors for each minibatch, plus the
    owner's replicated column sums (as :func:`toolkit.encrypted.protocol.owner_encrypt` does)."""
    slots = be.params.slots
    out = []
    for idx in batches:
        zb = z[idx]
        blocks = int(np.ceil(len(idx) / slots))
        cts = [[be.encrypt(zb[k * slots:(k + 1) * slots, j]) for k in range(blocks)] for j in range(z.shape[1])]
        sums = [be.encrypt_replicated(float(zb[:, j].sum())) for j in range(z.shape[1])]
        out.append(C.Minibatch(cts, len(idx), colsum=sums))
    return out


def simulate(params: CKKSParams, circuit: str, z: np.ndarray, batches: list[np.ndarray], iterations: int,
             coeffs: tuple[float, float, float], learning_rate: float,
             op_costs: dict | None = None, momentum: C.Momentum = C.NO_MOMENTUM) -> dict:
    """Simulate training and return the plan report.

    Args:
        params: CKKS parameters.
        circuit: ``baseline`` | ``low-depth``.
        z: float64 ``[n, d]`` label-signed features; batches: minibatch index arrays.
        iterations: minibatch iterations.
        op_costs: optional ``{(op, level): seconds}`` from :func:`measure_op_costs`.
        momentum: Nesterov momentum (:class:`~toolkit.encrypted.circuit.Momentum`); when on, the server
            state also holds ``v'`` (``2d`` weight ciphertexts) and is refreshed with the weights.

    Returns:
        dict with ``depth_per_iteration``, ``levels`` (chain levels), ``levels_used`` per iteration,
        ``refreshes``, ``ranges`` (per level: max |value|, headroom), ``overflow`` (list of findings),
        ``fits_chain``, ``u_max`` (largest |z.w| seen vs the sigmoid range), ``ciphertexts``
        (counts and bytes), ``estimated_seconds`` (when ``op_costs`` given), ``weights`` (final, model
        coordinates, float64 ``[d]``) and ``trajectory`` (``[iterations, d]`` weights after each step;
        with momentum the plain-step sequence ``v_k``, the model the owner decrypts), ``momentum``.
    """
    be = C.PlainBackend(params)
    depth = C.DEPTH_PER_ITERATION[circuit]
    fits = depth <= params.levels
    report: dict[str, Any] = {"circuit": circuit, "depth_per_iteration_nominal": depth,
                              "levels": params.levels, "fits_chain": fits, "params": params.to_dict(),
                              "momentum": momentum.to_dict()}
    ws = C.weight_scale(circuit, coeffs)
    d = z.shape[1]
    mbs = [C.prepare(be, circuit, mb, coeffs, learning_rate, momentum.grad_factor(0))
           for mb in plain_batches(be, z, batches)]
    trajectory = []
    u_max = 0.0
    n_state = 2 * d if momentum.enabled else d  # weights, then v' = w at the start
    w = [be.encrypt_replicated(0.0) for _ in range(n_state)]
    trace = C.TrainTrace()
    if fits:
        def refresh(ws_: list, k: int) -> list:
            return C.refresh_weights(be, ws_)[0]

        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported, not warned
            for k in range(iterations):
                current = np.array([c.values[0] for c in w[:d]]) / ws  # the point the sigmoid sees
                u_max = max(u_max, float(np.nan_to_num(np.max(np.abs(z[batches[k % len(batches)]] @ current)),
                                                       nan=np.inf)))
                w, trace, _ = C.run_schedule(be, circuit, mbs, w, k + 1, coeffs, learning_rate, refresh,
                                             start_iteration=k, trace=trace, momentum=momentum)
                trajectory.append(C.model_coordinates(np.array([c.values[0] for c in w]), circuit, coeffs,
                                                      momentum, k + 1))
    report.update({
        "depth_per_iteration": trace.depth_per_iteration,
        "levels_used": [list(t) for t in trace.levels],
        "refreshes": trace.refreshes,
        "iterations_per_refresh": params.levels // depth if fits else 0,
        "ranges": {str(lv): {"max_abs": be.ranges[lv], "headroom": params.headroom(lv)}
                   for lv in sorted(be.ranges)},
        "product_ranges": {str(lv): {"max_abs": be.product_ranges[lv], "headroom": params.product_headroom(lv)}
                           for lv in sorted(be.product_ranges)},
        "overflow": sorted(set(be.overflow)),
        "u_max": u_max,
    })
    n_data = sum(len(mb.z) * (len(mb.z[0]) + 1) for mb in mbs)
    report["ciphertexts"] = {
        "data": n_data, "weights": n_state,
        "fresh_bytes": params.ciphertext_bytes(0),
        "data_bytes": n_data * params.ciphertext_bytes(0),
        "weights_bytes": n_state * params.ciphertext_bytes(0),
    }
    report["op_counts"] = {f"{op}@{lv}": c for (op, lv), c in sorted(be.ops.items())}
    if op_costs is not None:
        est = 0.0
        for (op, lv), count in be.ops.items():
            est += count * op_costs.get((op, lv), op_costs.get((op, 0), 0.0))
        est += (n_data + n_state * (1 + trace.refreshes)) * op_costs.get(("encrypt", 0), 0.0)
        report["estimated_seconds"] = est
    report["weights"] = trajectory[-1] if trajectory else np.zeros(z.shape[1])
    report["trajectory"] = np.array(trajectory)
    return report


def _throwaway_backend(params: CKKSParams) -> Any:
    """A SEAL backend with fresh throw-away keys (one rotation key only), for measurements."""
    from toolkit.encrypted import he

    keys = he.keygen(params, galois_elements=[pow(3, 1, 2 * params.poly_modulus_degree)], key_id="bench")
    return he.SealBackend(keys), keys.galois_keys


def measure_ciphertext_bytes(params: CKKSParams) -> dict:
    """Serialised sizes, in bytes, of one data ciphertext (the owner's seeded symmetric encryption, as
    :func:`toolkit.encrypted.protocol.owner_encrypt` writes it) and one fresh public-key weight ciphertext.

    SEAL compresses its serialisations and stores the seed of a symmetric ciphertext's random half, so the
    files are several times smaller than :meth:`CKKSParams.ciphertext_bytes` (the in-memory size); measuring
    one of each with throw-away keys is exact for these parameters (random values compress alike).

    Returns:
        ``{"data": bytes per data ciphertext (int), "weight": bytes per weight ciphertext (int)}``.

    Raises:
        ValueError: from SEAL when ``params`` do not form a valid context (validated parameters always do).
    """
    from toolkit.encrypted import he

    be, _ = _throwaway_backend(params)
    x = np.random.default_rng(0).uniform(-1, 1, params.slots)
    data = len(be.encrypt_bytes(x))
    weight = len(he.ciphertext_to_bytes(be.encrypt(x)))
    return {"data": data, "weight": weight}


def measure_op_costs(params: CKKSParams, repeats: int = 3) -> dict:
    """Time each backend operation at every level with throw-away keys (one rotation key only).

    Returns:
        ``{(op, level): seconds}`` for ``mul``, ``relin_rescale``, ``mul_plain``, ``add``, ``rotate``
        (per single rotation) and ``("encrypt", 0)``.
    """
    import tenseal.sealapi as sealapi

    be, gk = _throwaway_backend(params)
    costs: dict = {}

    def timed(fn: Any) -> float:
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) / repeats

    x = np.linspace(-1, 1, params.slots)
    costs[("encrypt", 0)] = timed(lambda: be.encrypt(x))
    a = be.encrypt(x)
    for lv in range(params.levels + 1):
        if lv:
            a = be._at(a, lv)
        costs[("add", lv)] = timed(lambda a=a: be.add(a, a))
        tmp = sealapi.Ciphertext()
        costs[("rotate", lv)] = timed(lambda a=a, tmp=tmp: be.evaluator.rotate_vector(a, 1, gk, tmp))
        if lv < params.levels:
            costs[("mul", lv)] = timed(lambda a=a: be.mul_lazy(a, a))
            costs[("relin_rescale", lv)] = timed(lambda a=a: be.finish(be.mul_lazy(a, a)))
            costs[("relin_rescale", lv)] -= costs[("mul", lv)]
            costs[("mul_plain", lv)] = timed(lambda a=a: be.mul_const(a, 0.5))
    return costs
