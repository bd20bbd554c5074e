"""The four roles as file-to-file steps: owner keygen/encrypt/refresh/decrypt, server train.

Every step reads and writes files only, so the server step can run on another machine with nothing but
the server's files (``public_context.zip``, ``encrypted_data.zip``, ``encrypted_weights.zip``,
``job.json``).  The owner keeps ``secret_context.zip``.  Refresh protocol (no bootstrapping in SEAL):
when the weights' modulus chain is used up, the server hands the weight ciphertexts to the owner, who
decrypts them, re-encrypts them fresh and hands them back (TenSEAL Tutorial 1 does the same every epoch);
each refresh is counted.  Decrypted values go only to the key holder (Li-Micciancio, eprint 2020/1533).

Weight files (kind ``weights``) hold ``w0 .. w{d-1}`` and, with Nesterov momentum on, the server's
momentum state ``v0 .. v{d-1}`` (``v'`` of :mod:`toolkit.encrypted.circuit`, server coordinates); the
manifest meta carries ``iteration`` (iterations done).  A refresh decrypts and re-encrypts every member, so
the momentum state travels with the weights.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.encrypted import circuit as C
from toolkit.encrypted import he
from toolkit.encrypted.params import CKKSParams
from toolkit.errors import InputError

DATA_KIND = "training-data"
WEIGHTS_KIND = "weights"


def owner_keygen(params: CKKSParams, secret_path: Path, public_path: Path) -> he.Keys:
    """Generate keys; write the owner's secret context and the server's public context (no secret key)."""
    keys = he.keygen(params)
    he.save_secret_context(keys, secret_path)
    he.save_public_context(keys, public_path)
    return keys


def _ct_name(batch: int, feature: int, block: int) -> str:
    return f"b{batch}_f{feature}_k{block}"


def owner_encrypt(owner: he.Keys, z: np.ndarray, batches: list[np.ndarray], job: dict,
                  data_path: Path, weights_path: Path, job_path: Path) -> dict:
    """Encrypt the label-signed features per minibatch, feature and slot block, the column sums
    ``sum_i z_ij`` per minibatch (a data-only aggregate the low-depth circuit needs; replicated), and the
    initial weights.

    Args:
        owner: the owner's keys; the owner encrypts symmetrically with the secret key
            (:meth:`toolkit.encrypted.he.SealBackend.encrypt_bytes`: seeded, half-size ciphertexts).
            The secret key itself is never written to the server's files.
        z: float64 ``[n, d]`` label-signed features ``y'(1, x)``.
        batches: index arrays of the minibatches.
        job: training settings for the server (circuit, coeffs, learning_rate, iterations, optional
            ``momentum`` dict (:meth:`toolkit.encrypted.circuit.Momentum.to_dict`); optional
            ``initial_weights`` float ``[d]``, model coordinates, not written to ``job.json``).  With
            momentum on, ``v0..v{d-1}`` = the initial weights are written too (``v_0 = w_0``).
        data_path, weights_path, job_path: the server's files to write.

    Returns:
        Counts for the report: ``{"ciphertexts", "blocks_per_batch"}``.
    """
    be = he.SealBackend(owner)
    slots = owner.params.slots
    cts: dict[str, Any] = {}
    meta_batches = []
    for bi, idx in enumerate(batches):
        zb = z[idx]
        blocks = int(np.ceil(len(idx) / slots))
        for j in range(z.shape[1]):
            for k in range(blocks):
                cts[_ct_name(bi, j, k)] = be.encrypt_bytes(zb[k * slots:(k + 1) * slots, j])
            cts[f"b{bi}_f{j}_sum"] = be.encrypt_bytes(float(zb[:, j].sum()))  # data-only aggregate
        meta_batches.append({"n": int(len(idx)), "blocks": blocks})
    he.save_ciphertexts(data_path, owner, DATA_KIND, cts, {"d": int(z.shape[1]), "batches": meta_batches})
    ws = C.weight_scale(job["circuit"], tuple(job["coeffs"]))
    w0 = np.asarray(job.get("initial_weights") or np.zeros(z.shape[1]), dtype=np.float64)
    weights = {f"w{j}": be.encrypt_bytes(float(ws * w0[j])) for j in range(z.shape[1])}
    if C.Momentum.from_dict(job.get("momentum")).enabled:
        weights.update({f"v{j}": be.encrypt_bytes(float(ws * w0[j])) for j in range(z.shape[1])})
    he.save_ciphertexts(weights_path, owner, WEIGHTS_KIND, weights, {"iteration": 0})
    job = {k: v for k, v in job.items() if k != "initial_weights"}
    Path(job_path).write_text(json.dumps(job, indent=2))
    return {"ciphertexts": len(cts) + len(weights), "blocks_per_batch": [b["blocks"] for b in meta_batches]}


def state_names(d: int, momentum: bool) -> list[str]:
    """Member names of a weight file in state order: ``w0..w{d-1}`` then (momentum) ``v0..v{d-1}``."""
    return [f"w{j}" for j in range(d)] + ([f"v{j}" for j in range(d)] if momentum else [])


def _weights_list(cts: dict[str, Any], path: Path | str = "weights",
                  field: str = "encrypted_weights") -> list[Any]:
    """The server state (list in :func:`state_names` order) from a loaded weight file.

    Raises:
        InputError: the members are not ``w0..w{d-1}`` (and ``v0..v{d-1}``).
    """
    d = sum(1 for name in cts if name.startswith("w"))
    momentum = any(name.startswith("v") for name in cts)
    names = state_names(d, momentum)
    if sorted(names) != sorted(cts):
        raise InputError(path, field, f"unexpected members {sorted(cts)[:4]}...; expected w0..w{d - 1}"
                         f"{' and v0..v' + str(d - 1) if momentum else ''}")
    return [cts[n] for n in names]


def _state_dict(state: list[Any], momentum: bool) -> dict[str, Any]:
    d = len(state) // 2 if momentum else len(state)
    return dict(zip(state_names(d, momentum), state, strict=True))


def owner_refresh(owner: he.Keys, weights_path: Path, out_path: Path) -> dict:
    """File step: refresh the server's weight file (decrypt, average the replicated slots, re-encrypt
    fresh with the secret key), momentum state ``v`` included.

    Returns:
        ``{"iteration", "weights"}``: iterations done and the decrypted state, float64 ``[d]`` or
        ``[2d]`` (weights then ``v'``), server coordinates
        (:func:`toolkit.encrypted.circuit.model_coordinates` turns it into the model).
    """
    cts, meta = he.load_ciphertexts(weights_path, owner, WEIGHTS_KIND, "encrypted_weights")
    be = he.SealBackend(owner)
    state = _weights_list(cts, weights_path)
    momentum = any(name.startswith("v") for name in cts)
    values = np.array([float(np.mean(be.decrypt(c))) for c in state])
    fresh = [be.encrypt_bytes(float(v)) for v in values]
    he.save_ciphertexts(out_path, owner, WEIGHTS_KIND, _state_dict(fresh, momentum), meta)
    return {"iteration": int(meta.get("iteration", 0)), "weights": values}


def read_job(path: Path) -> dict:
    """Load and check the server's ``job.json``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "job", "file not found (run step=encrypt first)")
    try:
        job = json.loads(p.read_text())
    except ValueError:
        raise InputError(p, "job", "not valid JSON") from None
    for key in ("circuit", "coeffs", "learning_rate", "iterations"):
        if key not in job:
            raise InputError(p, key, "missing")
    if job["circuit"] not in C.CIRCUITS:
        raise InputError(p, "circuit", f"unknown {job['circuit']!r}; expected one of {C.CIRCUITS}")
    try:
        C.Momentum.from_dict(job.get("momentum"))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(p, "momentum", str(exc)) from None
    return job


def job_momentum(job: dict) -> C.Momentum:
    """The job's :class:`~toolkit.encrypted.circuit.Momentum` (off when the key is absent)."""
    return C.Momentum.from_dict(job.get("momentum"))


def server_train(public_path: Path, data_path: Path, weights_path: Path, job: dict, out_path: Path,
                 refresh: Any | None = None, workers: int = 1) -> dict:
    """The server's step: public context + encrypted data + encrypted weights -> encrypted weights.

    Args:
        refresh: ``callable(ciphertexts, iteration) -> ciphertexts`` run by the owner
            when the chain is used up.  ``None`` (separate steps): stop there and report
            ``needs_refresh`` so the owner runs ``step=refresh`` and then ``step=train`` again.
        workers: server processes splitting the features (:mod:`toolkit.encrypted.parallel`).
        job: as written by :func:`owner_encrypt`; its ``momentum`` decides whether the weight file must
            also hold the momentum state ``v``.

    Returns:
        State dict: ``iteration``, ``needs_refresh``, ``levels`` per iteration, ``seconds`` per
        iteration, ``refresh_seconds``, ``refreshes``, ``refresh_iterations``, ``prepare_seconds``.

    Raises:
        InputError: files missing/invalid or from another context, or a weight file whose ciphertext
            count does not match the features and the momentum setting.
    """
    keys = he.load_context(public_path, "server")
    be = he.SealBackend(keys)
    data, meta = he.load_ciphertexts(data_path, keys, DATA_KIND, "encrypted_data")
    wcts, wmeta = he.load_ciphertexts(weights_path, keys, WEIGHTS_KIND, "encrypted_weights")
    d = int(meta["d"])
    momentum = job_momentum(job)
    if len(wcts) != (2 * d if momentum.enabled else d):
        what = f"{d} weights and {d} momentum states (v)" if momentum.enabled else f"{d} weights"
        raise InputError(weights_path, "encrypted_weights", f"holds {len(wcts)} ciphertexts, expected {what} "
                         "(momentum setting differs from the encrypt step?)")
    coeffs = tuple(float(c) for c in job["coeffs"])
    lr = float(job["learning_rate"])
    start = int(wmeta.get("iteration", 0))
    raw = [C.Minibatch([[data[_ct_name(bi, j, k)] for k in range(info["blocks"])] for j in range(d)], int(info["n"]),
                       colsum=[data[f"b{bi}_f{j}_sum"] for j in range(d)] if f"b{bi}_f0_sum" in data else None)
           for bi, info in enumerate(meta["batches"])]
    w0 = _weights_list(wcts, weights_path)
    if int(workers) > 1:
        from toolkit.encrypted.parallel import run_schedule_parallel

        # final state as the workers' serialisations: written to the file as they are
        w, trace, k, prepare_s = run_schedule_parallel(be, job["circuit"], raw, w0, int(job["iterations"]), coeffs,
                                                       lr, refresh, int(workers), start_iteration=start,
                                                       stop_when_exhausted=refresh is None, momentum=momentum,
                                                       serialized=True)
    else:
        t0 = time.perf_counter()
        batches = [C.prepare(be, job["circuit"], mb, coeffs, lr, momentum.grad_factor(start)) for mb in raw]
        prepare_s = time.perf_counter() - t0
        w, trace, k = C.run_schedule(be, job["circuit"], batches, w0, int(job["iterations"]), coeffs, lr,
                                     refresh, start_iteration=start, stop_when_exhausted=refresh is None,
                                     momentum=momentum)
    he.save_ciphertexts(out_path, keys, WEIGHTS_KIND, _state_dict(w, momentum.enabled), {"iteration": k})
    return {"iteration": k, "needs_refresh": k < int(job["iterations"]), "levels": trace.levels,
            "seconds": trace.seconds, "refresh_seconds": trace.refresh_seconds, "refreshes": trace.refreshes,
            "refresh_iterations": trace.refresh_iterations, "prepare_seconds": prepare_s}


class LocalRefresher:
    """Refresh callback for a local run, going through files exactly as a remote owner would.

    The server's state is written to a weight file (:func:`toolkit.encrypted.he.save_ciphertexts`), the
    owner loads it with the secret context, decrypts, re-encrypts and writes a response file
    (:func:`owner_refresh`), and the server loads the response with its public context
    (:func:`toolkit.encrypted.he.load_ciphertexts`: kind, key_id, parameters, members checked).  With
    ``momentum`` the state is ``[w] + [v']`` and both travel.

    Two entry points with the same files: calling it with ``Ciphertext`` objects (one server process), or
    :meth:`serialized` with SEAL serialisations (worker processes, :mod:`toolkit.encrypted.parallel`), which
    writes the workers' bytes into the request unchanged and returns the response's members as bytes for
    the workers to deserialise (with the same SEAL checks), so no ciphertext is deserialised and
    serialised again in between.

    Args:
        owner: the owner's keys (secret context).
        public: the server's keys (public context) the request is written and the response read with.
        log: collects ``(iteration, values)``: the decrypted state, float64 ``[d]`` or ``[2d]``, server
            coordinates.
        momentum: the state holds ``v'`` after the weights.
    """

    def __init__(self, owner: he.Keys, public: he.Keys, log: list, momentum: bool = False) -> None:
        self.owner, self.public, self.log, self.momentum = owner, public, log, momentum

    def _exchange(self, state: list[Any], iteration: int, raw: bool) -> list[Any]:
        with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
            req, resp = Path(tmp) / "request.zip", Path(tmp) / "response.zip"
            he.save_ciphertexts(req, self.public, WEIGHTS_KIND, _state_dict(state, self.momentum),
                                {"iteration": iteration})
            out = owner_refresh(self.owner, req, resp)
            self.log.append((iteration, out["weights"]))
            cts, _ = he.load_ciphertexts(resp, self.public, WEIGHTS_KIND, "refresh_response", raw=raw)
            fresh = _weights_list(cts, resp, "refresh_response")
        if len(fresh) != len(state):
            raise InputError(resp, "refresh_response", f"holds {len(fresh)} ciphertexts, expected {len(state)}")
        return fresh

    def __call__(self, w: list[Any], iteration: int) -> list[Any]:
        """Refresh the state ``w`` (``Ciphertext`` list, :func:`state_names` order) before ``iteration``.

        Returns:
            The fresh state, ``Ciphertext`` objects in the same order.

        Raises:
            InputError: the response file fails validation.
        """
        return self._exchange(w, iteration, raw=False)

    def serialized(self, blobs: list[bytes], iteration: int) -> list[bytes]:
        """As calling it, with the state as SEAL serialisations (bytes) in and out.

        The response's members come back as bytes after the file-level checks (kind, key_id, parameters,
        members); the caller must deserialise them with :func:`toolkit.encrypted.he.ciphertext_from_bytes`
        (:meth:`toolkit.encrypted.parallel.FeatureWorkers.set_weight_bytes` does, in the workers).

        Raises:
            InputError: the response file fails validation.
        """
        return self._exchange(blobs, iteration, raw=True)


def local_refresher(owner: he.Keys, public: he.Keys, log: list, momentum: bool = False) -> LocalRefresher:
    """The refresh callback for a local run (:class:`LocalRefresher`)."""
    return LocalRefresher(owner, public, log, momentum)


def owner_decrypt(owner: he.Keys, weights_path: Path, job: dict) -> tuple[np.ndarray, int]:
    """Decrypt the final state into model coordinates: float64 ``[d]`` and the iteration reached.

    With momentum the model is the plain-step sequence ``v`` (decoded from ``v'``), see
    :func:`toolkit.encrypted.circuit.model_coordinates`.
    """
    cts, meta = he.load_ciphertexts(weights_path, owner, WEIGHTS_KIND, "encrypted_model")
    be = he.SealBackend(owner)
    values = np.array([float(np.mean(be.decrypt(c))) for c in _weights_list(cts, weights_path, "encrypted_model")])
    reached = int(meta.get("iteration", 0))
    momentum = job_momentum(job)
    if momentum.enabled != any(name.startswith("v") for name in cts):
        raise InputError(weights_path, "encrypted_model", "momentum state does not match job.json")
    return C.model_coordinates(values, job["circuit"], tuple(job["coeffs"]), momentum, reached), reached
