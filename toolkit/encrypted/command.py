"""``toolkit train-encrypted``: config -> data -> plan -> keygen/encrypt/train/refresh/decrypt -> artifacts.

Layout of the output directory (each step reads what earlier steps wrote there):

* ``owner/secret_context.zip`` (secret key; never read by the server step), ``owner/scaling.json``,
  ``owner/refresh_log.json``;
* ``server/public_context.zip``, ``server/encrypted_data.zip``, ``server/encrypted_weights.zip``,
  ``server/job.json``, ``server/train_state.json`` -- everything the server needs and writes;
* ``model.json`` (decrypted weights + scaling), ``plan.json``, ``training.png``, ``history.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.console import log
from toolkit.encrypted import circuit as C
from toolkit.encrypted.params import CKKSParams, ParamError, choose_params, validate_params
from toolkit.errors import InputError
from toolkit.task import Task, run_task

SECRET = "owner/secret_context.zip"
SCALING = "owner/scaling.json"
REFRESH_LOG = "owner/refresh_log.json"
PUBLIC = "server/public_context.zip"
DATA = "server/encrypted_data.zip"
WEIGHTS = "server/encrypted_weights.zip"
JOB = "server/job.json"
STATE = "server/train_state.json"
SERVER_MEMORY_PER_DATA_BYTE = 4.4
"""Peak memory of a run per byte of serialised data ciphertexts: 8.8 GiB peak for 2 GiB of ciphertexts measured
on a 5,000-feature CSV (issue 12's report); the ciphertexts are held deserialised, and each iteration's products
and rotations add temporaries of the same size."""


def resolve_params(ckks: Any, circuit: str) -> CKKSParams:
    """CKKS parameters from ``cfg.ckks`` (explicit, validated) or chosen from the circuit's depth.

    Raises:
        InputError: insecure or inconsistent parameters (exit 2).
    """
    try:
        if ckks.get("coeff_mod_bit_sizes") is None and ckks.get("poly_modulus_degree") is None:
            if ckks.get("scale_bits") is not None:
                raise ParamError("ckks.scale_bits", "set together with ckks.coeff_mod_bit_sizes and "
                                 "ckks.poly_modulus_degree (or leave all three null)")
            return choose_params(C.DEPTH_PER_ITERATION[circuit], int(ckks.get("max_poly_modulus_degree", 16384)))
        if ckks.get("coeff_mod_bit_sizes") is None or ckks.get("poly_modulus_degree") is None:
            raise ParamError("ckks", "set both poly_modulus_degree and coeff_mod_bit_sizes (or neither)")
        bits = list(ckks.get("coeff_mod_bit_sizes"))
        scale = ckks.get("scale_bits")
        if scale is None:
            scale = bits[1] if len(bits) > 2 else 0
        params = validate_params(int(ckks.get("poly_modulus_degree")), bits, int(scale),
                                 allow_insecure=bool(ckks.get("test_only_insecure", False)))
    except ParamError as exc:
        raise InputError("config", exc.field, exc.problem) from None
    except (TypeError, ValueError) as exc:
        raise InputError("config", "ckks", f"expected integers ({exc})") from None
    if params.test_only:
        log("WARNING: CKKS parameters below 128-bit security (ckks.test_only_insecure=true): TEST ONLY")
    return params


def _number(value: Any, key: str, kind: type, minimum: float, strict: bool = False) -> int | float:
    """``value`` as ``kind`` (int or float) >= ``minimum`` (> with ``strict``), else a one-line InputError."""
    bound = f"{'>' if strict else '>='} {minimum:g}"
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError
        out = kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise InputError("config", key, f"expected {what} {bound}, got {value!r}") from None
    if not (out > minimum if strict else out >= minimum):  # also rejects NaN
        raise InputError("config", key, f"must be {bound}, got {value!r}")
    return out


def server_workers(cfg: Any) -> int:
    """Server processes for training: ``workers`` from the config, ``auto`` = the cores this process may use.

    Raises:
        InputError: ``workers`` neither ``auto`` nor an integer >= 1.
    """
    value = cfg.get("workers", "auto")
    if str(value) == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return int(_number(value, "workers", int, 1))


def _momentum(cfg: Any) -> C.Momentum:
    """``train.momentum`` (mu in [0, 1), 0 = off) and ``train.momentum_schedule`` as a Momentum.

    Raises:
        InputError: momentum not a number in [0, 1), or an unknown schedule (one line, exit 2).
    """
    t = cfg.train
    raw = t.get("momentum", 0.0)
    try:
        mu = _number(raw, "train.momentum", float, 0)
    except InputError:
        mu = float("nan")
    if not 0.0 <= mu < 1.0:  # also NaN
        raise InputError("config", "train.momentum", f"must be a number in [0, 1) (0 = off), got {raw!r}")
    schedule = str(t.get("momentum_schedule", "fixed"))
    if schedule not in C.MOMENTUM_SCHEDULES:
        raise InputError("config", "train.momentum_schedule",
                         f"unknown {schedule!r}; expected one of {', '.join(C.MOMENTUM_SCHEDULES)}")
    return C.Momentum(float(mu), schedule)


class _Files:
    """Where a step reads a file: this run's staging dir first, then the output dir of earlier steps."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def read(self, name: str) -> Path:
        """Path of ``name`` (e.g. ``server/job.json``) written by this run or an earlier step.

        Raises:
            InputError: the file does not exist (earlier steps not run into this output_dir).
        """
        staged = self.run.staging / name
        if staged.exists():
            return staged
        found = self.run.existing(name)
        if found is None:
            raise InputError(self.run.output_dir / name, name.split("/")[-1].split(".")[0],
                             "not found (run the earlier steps into this output_dir first)")
        return found

    def write(self, name: str) -> Path:
        """Path to write ``name`` to (in the run's staging dir; published only if the step succeeds)."""
        return self.run.path(name)


def _prepare_data(cfg: Any, params: CKKSParams) -> dict:
    from toolkit.encrypted.data import Scaling, load_dataset, minibatch_indices, signed_features

    seed = int(cfg.seed or 0)
    data = load_dataset(cfg.data, seed)
    scaling = Scaling.fit(data.x_train, str(cfg.data.get("scaling", "maxabs")),
                          float(cfg.data.get("clip_quantile") or 0.99))
    xtr, xte = scaling.apply(data.x_train), scaling.apply(data.x_test)
    z = signed_features(xtr, data.y_train)
    batch_size = cfg.train.batch_size
    batches = minibatch_indices(len(z), batch_size, seed)
    max_blocks = int(cfg.ckks.get("max_blocks", 4))
    largest = max(len(b) for b in batches)
    if largest > max_blocks * params.slots:
        raise InputError("config", "train.batch_size", f"a minibatch of {largest} samples needs "
                         f"{int(np.ceil(largest / params.slots))} ciphertexts per feature at N="
                         f"{params.poly_modulus_degree} ({params.slots} slots each); at most ckks.max_blocks="
                         f"{max_blocks} fit: lower train.batch_size or raise the ring")
    return {"data": data, "scaling": scaling, "x_train": xtr, "x_test": xte, "z": z, "batches": batches}


def _loss_curve(report: dict, prep: dict) -> list[float]:
    """Training log loss (exact sigmoid) of the simulated model after each iteration."""
    from toolkit.encrypted.metrics import evaluate

    y = prep["data"].y_train
    with np.errstate(all="ignore"):
        return [evaluate(np.nan_to_num(w, nan=0.0, posinf=1e6, neginf=-1e6), prep["x_train"], y)["log_loss"]
                for w in np.asarray(report["trajectory"])]


def _plan_ok(report: dict, sigmoid_range: float) -> bool:
    return bool(report["fits_chain"] and not report["overflow"] and report.get("u_max", 0.0) <= sigmoid_range)


def _choose_learning_rate(cfg: Any, params: CKKSParams, prep: dict, rates: list[float] | None = None) -> dict:
    """``train.lr=auto``: simulate every rate of ``train.lr_grid`` in plaintext (the owner's
    side, before anything is encrypted) and keep the one with the lowest training log loss over the last two
    iterations (the worse of the two) among those whose plan neither overflows nor leaves the sigmoid
    approximation's range, and whose loss converges (:func:`loss_rises` false, the same check that refuses a
    plan).  ``rates`` replaces the grid (e.g. ``[train.lr]`` to score one fixed rate the same way).

    Returns:
        ``{"chosen": rate, "candidates": [{"learning_rate", "final_train_loss" | None, "ok"}...]}``.

    Raises:
        InputError: no rate of the grid gives a valid plan, or the grid is not a list of numbers > 0.
    """
    from toolkit.encrypted.plan import simulate

    if rates is None:
        rates = [_number(r, "train.lr_grid", float, 0, strict=True) for r in cfg.train.get("lr_grid") or []]
    if not rates:
        raise InputError("config", "train.lr_grid", "expected a non-empty list of numbers > 0 "
                         "for train.lr=auto")
    coeffs = C.SIGMOID_COEFFS[str(cfg.train.sigmoid)]
    rng_ = C.SIGMOID_RANGE[str(cfg.train.sigmoid)]
    rows, best = [], None
    for lr in rates:
        rep = simulate(params, str(cfg.circuit), prep["z"], prep["batches"], int(cfg.train.iterations), coeffs,
                       lr, None, momentum=_momentum(cfg))
        if not rep["fits_chain"]:  # no rate can help: the plan's own check reports the exhausted chain
            return {"chosen": lr, "candidates": [], "skipped": "the circuit does not fit the CKKS chain"}
        ok = _plan_ok(rep, rng_)
        curve = _loss_curve(rep, prep) if ok and len(rep["trajectory"]) else []
        # the worse of the last two iterations: a rate that oscillates must not win on the parity of the last step
        final = max(curve[-2:]) if curve else None
        ok = ok and bool(curve) and not loss_rises(curve)  # auto never picks a rate the plan check would refuse
        rows.append({"learning_rate": lr, "final_train_loss": final, "ok": ok})
        if ok and final is not None and np.isfinite(final) and (best is None or final < best[1]):
            best = (lr, final)
    if best is None:
        raise InputError("config", "train.lr", f"auto: no rate in {rates} gives a plan that fits the "
                         "CKKS chain and the sigmoid range; give smaller rates in train.lr_grid")
    return {"chosen": best[0], "candidates": rows}


def _choose_momentum(cfg: Any, params: CKKSParams, prep: dict) -> dict:
    """``train.momentum=auto``: for every mu of ``train.momentum_grid`` choose the learning rate as
    :func:`_choose_learning_rate` does (or keep a fixed ``train.lr``), simulate in plaintext on the owner's side,
    and keep the (mu, rate) with the lowest training log loss over the last two iterations among plans that fit,
    stay in the sigmoid's range and converge.  Momentum adds no level (Kim et al. 2018's NAG costs additions
    only), so every candidate has the circuit's depth and cost.

    Returns:
        ``{"chosen": mu, "learning_rate": rate, "lr_search": the chosen mu's rate search or None,
        "candidates": [{"momentum", "learning_rate", "final_train_loss" | None, "ok"}...]}``.

    Raises:
        InputError: the grid is not a list of numbers in [0, 1), or no candidate gives a valid plan.
    """
    from omegaconf import open_dict

    grid = cfg.train.get("momentum_grid") or []
    mus = [_number(m, "train.momentum_grid", float, 0) for m in grid]
    if not mus or not all(0.0 <= m < 1.0 for m in mus):
        raise InputError("config", "train.momentum_grid", f"got {list(grid)}; expected a non-empty list of numbers "
                         "in [0, 1) for train.momentum=auto")
    fixed = None if str(cfg.train.lr) == "auto" else [float(cfg.train.lr)]
    rows, best = [], None
    for mu in mus:
        with open_dict(cfg):
            cfg.train.momentum = mu
        try:
            search = _choose_learning_rate(cfg, params, prep, fixed)
        except InputError:  # no rate converges with this mu: a candidate that is not ok
            search = None
        if search is not None and search.get("skipped"):
            return {"chosen": mu, "learning_rate": search["chosen"], "lr_search": search, "candidates": [],
                    "skipped": search["skipped"]}
        lr = search["chosen"] if search else (fixed[0] if fixed else None)
        final = next((c["final_train_loss"] for c in search["candidates"] if c["learning_rate"] == lr), None) \
            if search else None
        ok = search is not None
        rows.append({"momentum": mu, "learning_rate": lr, "final_train_loss": final, "ok": ok})
        if ok and final is not None and np.isfinite(final) and (best is None or final < best[2]):
            best = (mu, lr, final, search if fixed is None else None)
    if best is None:
        raise InputError("config", "train.momentum", f"auto: no momentum in {mus} gives a plan that fits the CKKS "
                         "chain, stays in the sigmoid's range and converges; lower train.lr or widen the grids")
    return {"chosen": best[0], "learning_rate": best[1], "lr_search": best[3], "candidates": rows}


def _plan(cfg: Any, params: CKKSParams, prep: dict) -> dict:
    from omegaconf import open_dict

    from toolkit.encrypted.plan import measure_op_costs, simulate

    search = momentum_search = None
    if str(cfg.train.get("momentum", 0.0)) == "auto":
        momentum_search = _choose_momentum(cfg, params, prep)
        with open_dict(cfg):  # the job, the reference and metrics use the chosen pair
            cfg.train.momentum = momentum_search["chosen"]
            cfg.train.lr = momentum_search["learning_rate"]
        search = momentum_search.pop("lr_search")
        log(f"train.momentum=auto: chose {momentum_search['chosen']:g} with learning rate "
            f"{momentum_search['learning_rate']:g} (lowest simulated training loss)")
    elif str(cfg.train.lr) == "auto":
        search = _choose_learning_rate(cfg, params, prep)
        with open_dict(cfg):
            cfg.train.lr = search["chosen"]  # the job, the reference and metrics use the chosen rate
        if not search.get("skipped"):
            log(f"train.lr=auto: chose {search['chosen']:g} (lowest simulated training loss)")
    coeffs = C.SIGMOID_COEFFS[str(cfg.train.sigmoid)]
    costs = measure_op_costs(params) if cfg.get("estimate_time", True) else None
    report = simulate(params, str(cfg.circuit), prep["z"], prep["batches"], int(cfg.train.iterations), coeffs,
                      float(cfg.train.lr), costs, momentum=_momentum(cfg))
    report["sigmoid_range"] = C.SIGMOID_RANGE[str(cfg.train.sigmoid)]
    report["minibatches"] = [int(len(b)) for b in prep["batches"]]
    if report["fits_chain"]:
        from toolkit.encrypted.plan import measure_ciphertext_bytes

        sizes = measure_ciphertext_bytes(params)
        cts = report["ciphertexts"]
        cts["file_bytes_per_data_ciphertext"] = sizes["data"]
        cts["data_file_bytes"] = cts["data"] * sizes["data"]  # what encrypted_data.zip will hold
        cts["weights_file_bytes"] = cts["weights"] * sizes["weight"]
        budget = float(cfg.ckks.get("max_data_gib") or 0)
        cts["budget_gib"] = budget or None
        cts["estimated_peak_memory_bytes"] = SERVER_MEMORY_PER_DATA_BYTE * cts["data_file_bytes"]
        if budget and cts["data_file_bytes"] > budget * 2 ** 30:
            log(f"warning: the encrypted data will take {cts['data_file_bytes'] / 2 ** 30:.3g} GiB on disk "
                f"({cts['data']} ciphertexts), above ckks.max_data_gib={budget:g}; the server needs about as "
                "much memory: subsample (data.max_train), lower train.batch_size, or raise the budget")
        from toolkit.resources import check_memory

        check_memory(cts["estimated_peak_memory_bytes"], f"the {cts['data']} encrypted data ciphertexts", "config",
                     "data", "subsample (data.max_train), select fewer feature columns, or run where more is free")
    report["learning_rate"] = float(cfg.train.lr)
    report["learning_rate_search"] = search
    report["momentum_search"] = momentum_search
    report["train_loss_curve"] = _loss_curve(report, prep) if len(report["trajectory"]) else []
    return report


def loss_rises(curve: list[float], initial: float = float(np.log(2.0)), tolerance: float = 0.05) -> bool:
    """True when a simulated training-loss curve did not converge: it ends above the all-zero model's loss
    (``initial``, ``log 2``) or more than ``tolerance`` (relative) above its own minimum.

    Minibatch noise moves the loss by a few percent; a curve that climbs back from its minimum by more had a
    learning rate too large for the polynomial sigmoid on this data's scaling.  ``curve``: log loss per iteration.
    """
    if not curve:
        return False
    last = curve[-1]
    return bool(not np.isfinite(last) or last > initial or last > (1.0 + tolerance) * min(curve))


def _refuse_bad_plan(report: dict, allow_rising_loss: bool = False) -> None:
    if not report["fits_chain"]:
        raise InputError("config", "ckks.coeff_mod_bit_sizes",
                         f"the {report['circuit']} circuit needs {report['depth_per_iteration_nominal']} levels per "
                         f"iteration but the chain has {report['levels']}: the chain would be exhausted")
    if report.get("u_max", 0.0) > report.get("sigmoid_range", float("inf")):
        raise InputError("config", "train.lr",
                         f"the plan leaves the sigmoid approximation's range: |z.w| reaches {report['u_max']:.3g} > "
                         f"{report['sigmoid_range']:g} (training would diverge); lower the learning rate")
    if report["overflow"]:
        raise InputError("config", "train", f"the plan overflows CKKS: {report['overflow'][0]} (lower "
                         "train.lr, or use a larger q0)")
    curve = report.get("train_loss_curve") or []
    if loss_rises(curve):
        message = (f"the simulated training loss does not converge (lowest {min(curve):.3f}, {curve[-1]:.3f} after "
                   f"iteration {len(curve)}; the all-zero model has {np.log(2.0):.3f}): lower train.lr "
                   "or use train.lr=auto")
        if not allow_rising_loss:
            raise InputError("config", "train.lr", message + " (train.allow_rising_loss=true to run anyway)")
        log("warning: " + message)


def _plan_summary(report: dict) -> dict:
    keys = ("circuit", "depth_per_iteration", "levels", "refreshes", "iterations_per_refresh", "u_max",
            "sigmoid_range", "estimated_seconds")
    out = {k: report.get(k) for k in keys if report.get(k) is not None}
    if report.get("momentum"):
        out["momentum"] = report["momentum"]["mu"]
        out["momentum_schedule"] = report["momentum"]["schedule"]
    out["overflow"] = bool(report["overflow"])
    out["learning_rate"] = report.get("learning_rate")
    if report.get("learning_rate_search"):
        out["learning_rate_search"] = report["learning_rate_search"]
    if report.get("momentum_search"):
        out["momentum_search"] = report["momentum_search"]
    out["train_loss_curve"] = report.get("train_loss_curve", [])
    out["loss_rises"] = loss_rises(out["train_loss_curve"])
    out["data_ciphertexts"] = report["ciphertexts"]["data"]
    cts = report["ciphertexts"]
    out["data_mib"] = cts.get("data_file_bytes", cts["data_bytes"]) / 2 ** 20  # on disk (measured size per ciphertext)
    out["data_mib_in_memory"] = cts["data_bytes"] / 2 ** 20
    if cts.get("estimated_peak_memory_bytes"):
        out["estimated_peak_memory_mib"] = cts["estimated_peak_memory_bytes"] / 2 ** 20
    out["poly_modulus_degree"] = report["params"]["poly_modulus_degree"]
    out["coeff_mod_bit_sizes"] = "[" + ",".join(str(b) for b in report["params"]["coeff_mod_bit_sizes"]) + "]"
    return out


def _jsonable_plan(report: dict) -> dict:
    out = dict(report)
    out["weights"] = np.asarray(report["weights"]).tolist()
    out["trajectory"] = np.asarray(report["trajectory"]).tolist()
    return out


class TrainEncrypted(Task):
    """``toolkit train-encrypted``: the protocol's step(s) as stages of :mod:`toolkit.task`.

    ``step`` selects which parties act (``all`` runs them in one process; see ``docs/encrypted.md``):

    * ``validate``: declared constraints (:mod:`toolkit.encrypted.schema`);
    * ``setup``: the owner's plan (plaintext simulation that refuses a plan overflowing the chain or the
      sigmoid range) and key generation (``all``, ``keygen``; ``plan=true`` stops after the plan);
    * ``fit``: the owner encrypts (``all``, ``encrypt``), the server refreshes (``refresh``) or trains on the
      ciphertexts (``all``, ``train``);
    * ``evaluate``: the owner decrypts the weights and measures them (``all``, ``decrypt``);
    * ``save``: nothing left: each party's messages (keys, ciphertexts, job, weights) are written by the step
      that makes them, since they are what the next party reads.

    Raises (from its stages):
        InputError: bad config, parameters, data, files or a plan that would overflow/exhaust the chain.
    """

    config_name = "train_encrypted"

    def setup(self) -> None:
        """Plan (``plan=true``, ``all``) and key generation (``all``, ``keygen``)."""
        from toolkit.runtime import seed_everything

        cfg, run = self.cfg, self.run
        seed_everything(cfg.seed)
        self.step = step = str(cfg.step)
        self.files = files = _Files(run)
        self.metrics: dict[str, Any] = {"step": step}
        self.plan_only = bool(cfg.get("plan"))
        if self.plan_only:
            params = resolve_params(cfg.ckks, str(cfg.circuit))
            prep = _prepare_data(cfg, params)
            with run.timer("plan"):
                report = _plan(cfg, params, prep)
            run.write_json("plan.json", _jsonable_plan(report))
            self.metrics.update(plan=_plan_summary(report), step="plan")
            return
        if step in ("all", "keygen"):
            from toolkit.encrypted.protocol import owner_keygen

            params = resolve_params(cfg.ckks, str(cfg.circuit))
            if step == "all":
                prep = _prepare_data(cfg, params)
                with run.timer("plan"):
                    report = _plan(cfg, params, prep)
                _refuse_bad_plan(report, bool(cfg.train.get("allow_rising_loss", False)))
                run.write_json("plan.json", _jsonable_plan(report))
                self.metrics["plan"] = _plan_summary(report)
            with run.timer("keygen"):
                owner_keygen(params, files.write(SECRET), files.write(PUBLIC))
            self.metrics["params"] = {
                "poly_modulus_degree": params.poly_modulus_degree, "levels": params.levels,
                "scale_bits": params.scale_bits,
                "coeff_mod_bit_sizes": "[" + ",".join(map(str, params.coeff_mod_bit_sizes)) + "]"}
            self.metrics["public_context_mib"] = files.read(PUBLIC).stat().st_size / 2 ** 20

    def fit(self) -> None:
        """Encryption (owner) and encrypted training or refreshing (server)."""
        if self.plan_only:
            return
        step, cfg, run = self.step, self.cfg, self.run
        if step in ("all", "encrypt"):
            self.metrics.update(_encrypt(cfg, run, self.files))
        if step == "refresh":
            self.metrics.update(_refresh_step(run, self.files))
        if step in ("all", "train"):
            self.metrics.update(_train(run, self.files, local=step == "all", workers=server_workers(cfg)))

    def evaluate(self) -> dict:
        """Decryption and the trained model's metrics (``all``, ``decrypt``); every step's metrics."""
        if not self.plan_only and self.step in ("all", "decrypt"):
            self.metrics.update(_decrypt(self.cfg, self.run, self.files))
        return self.metrics


def run(cfg: Any, run: Any) -> dict:
    """Run the configured step(s) (:class:`TrainEncrypted` through :func:`toolkit.task.run_task`).

    See ``docs/encrypted.md`` for the keys and outputs.

    Raises:
        InputError: bad config, parameters, data, files or a plan that would overflow/exhaust the chain.
    """
    return run_task(TrainEncrypted(cfg, run))


def _encrypt(cfg: Any, run: Any, files: _Files) -> dict:
    from toolkit.encrypted import he
    from toolkit.encrypted.protocol import owner_encrypt

    owner = he.load_context(files.read(SECRET), "owner")
    if str(cfg.get("step")) == "encrypt":
        params = owner.params
        prep = _prepare_data(cfg, params)
        with run.timer("plan"):
            report = _plan(cfg, params, prep)
        _refuse_bad_plan(report, bool(cfg.train.get("allow_rising_loss", False)))
        run.write_json("plan.json", _jsonable_plan(report))
    else:
        prep = _prepare_data(cfg, owner.params)
    coeffs = C.SIGMOID_COEFFS[str(cfg.train.sigmoid)]
    job = {"circuit": str(cfg.circuit), "coeffs": list(coeffs), "learning_rate": float(cfg.train.lr),
           "iterations": int(cfg.train.iterations), "sigmoid": str(cfg.train.sigmoid),
           "momentum": _momentum(cfg).to_dict()}
    with run.timer("encrypt"):
        info = owner_encrypt(owner, prep["z"], prep["batches"], job, files.write(DATA), files.write(WEIGHTS),
                             files.write(JOB))
    run.write_json(SCALING, {**prep["scaling"].to_dict(), "feature_names": prep["data"].feature_names,
                             "source": prep["data"].source})
    return {"encrypted_ciphertexts": info["ciphertexts"],
            "encrypted_data_mib": files.read(DATA).stat().st_size / 2 ** 20,
            "train_samples": int(len(prep["z"])), "features": int(prep["z"].shape[1] - 1),
            "minibatches": len(prep["batches"])}


def _train(run: Any, files: _Files, local: bool, workers: int = 1) -> dict:
    from toolkit.encrypted import he
    from toolkit.encrypted.protocol import job_momentum, local_refresher, read_job, server_train

    job = read_job(files.read(JOB))
    momentum = job_momentum(job)
    refresh = None
    refresh_log: list = []
    if local:
        owner = he.load_context(files.read(SECRET), "owner")
        public = he.load_context(files.read(PUBLIC), "server")
        refresh = local_refresher(owner, public, refresh_log, momentum.enabled)
    prev_state = json.loads(files.read(STATE).read_text()) if (run.staging / STATE).exists() or \
        run.existing(STATE) else None
    out_tmp = run.path("server/.encrypted_weights.next.zip")
    with run.timer("train"):
        state = server_train(files.read(PUBLIC), files.read(DATA), files.read(WEIGHTS), job, out_tmp, refresh,
                             workers=workers)
    shutil.move(str(out_tmp), str(run.path(WEIGHTS)))
    if prev_state and not local:  # accumulate across separate train calls
        for key in ("levels", "seconds", "refresh_seconds", "refresh_iterations"):
            state[key] = prev_state.get(key, []) + state[key]
        state["refreshes"] = prev_state.get("refreshes", 0) + state["refreshes"]
        state["prepare_seconds"] = prev_state.get("prepare_seconds", 0.0) + state["prepare_seconds"]
    run.write_json(STATE, state)
    if local:
        coeffs = tuple(job["coeffs"])
        run.write_json(REFRESH_LOG, [{"iteration": k, "weights": C.model_coordinates(
            v, job["circuit"], coeffs, momentum, k).tolist()} for k, v in refresh_log])
    if state["needs_refresh"]:
        log(f"chain used up after iteration {state['iteration']}: run step=refresh (owner), then step=train again")
    sec = state["seconds"]
    depth = [b - a for a, b in state["levels"]]
    return {"iterations_done": state["iteration"], "needs_refresh": state["needs_refresh"],
            "refreshes": state["refreshes"],
            "depth_per_iteration": float(np.mean(depth)) if depth else 0.0,
            "seconds_per_iteration": float(np.mean(sec)) if sec else 0.0,
            "seconds_per_iteration_incl_refresh": (float(np.sum(sec) + np.sum(state["refresh_seconds"])) / len(sec))
            if sec else 0.0}


def _refresh_step(run: Any, files: _Files) -> dict:
    from toolkit.encrypted import he
    from toolkit.encrypted.protocol import job_momentum, owner_refresh, read_job

    owner = he.load_context(files.read(SECRET), "owner")
    job = read_job(files.read(JOB))
    out_tmp = run.path("server/.encrypted_weights.next.zip")
    with run.timer("refresh"):
        out = owner_refresh(owner, files.read(WEIGHTS), out_tmp)
    shutil.move(str(out_tmp), str(run.path(WEIGHTS)))
    logged = json.loads(files.read(REFRESH_LOG).read_text()) if run.existing(REFRESH_LOG) else []
    model = C.model_coordinates(out["weights"], job["circuit"], tuple(job["coeffs"]), job_momentum(job),
                                out["iteration"])
    logged.append({"iteration": out["iteration"], "weights": model.tolist()})
    run.write_json(REFRESH_LOG, logged)
    state_path = run.existing(STATE)
    if state_path is not None:
        state = json.loads(state_path.read_text())
        state["refreshes"] = state.get("refreshes", 0) + 1
        state["refresh_iterations"] = state.get("refresh_iterations", []) + [out["iteration"]]
        state["needs_refresh"] = False
        run.write_json(STATE, state)
    return {"refreshed_at_iteration": out["iteration"], "refreshes": len(logged)}


def _decrypt(cfg: Any, run: Any, files: _Files) -> dict:
    from toolkit.encrypted import he
    from toolkit.encrypted.data import Scaling
    from toolkit.encrypted.metrics import evaluate
    from toolkit.encrypted.protocol import job_momentum, owner_decrypt, read_job
    from toolkit.encrypted.reference import exact_logistic_regression, train_poly_reference

    owner = he.load_context(files.read(SECRET), "owner")
    job = read_job(files.read(JOB))
    momentum = job_momentum(job)
    with run.timer("decrypt"):
        w_enc, reached = owner_decrypt(owner, files.read(WEIGHTS), job)
    if reached < int(job["iterations"]):
        log(f"warning: the encrypted model reached iteration {reached} of {job['iterations']} (refresh pending)")
    prep = _prepare_data(cfg, owner.params)
    saved = Scaling.from_dict(json.loads(files.read(SCALING).read_text()))
    if saved.center.shape != prep["scaling"].center.shape or not np.allclose(saved.center, prep["scaling"].center) \
            or not np.allclose(saved.scale, prep["scaling"].scale):
        raise InputError(files.read(SCALING), "scaling", "does not match the configured data (same data.* and "
                         "seed as the encrypt step expected)")
    coeffs = tuple(job["coeffs"])
    iterations = min(reached, int(job["iterations"])) or 1
    with run.timer("reference_poly"):
        traj = train_poly_reference(prep["z"], prep["batches"], iterations, coeffs, float(job["learning_rate"]),
                                    cfg.trainer, run.staging / "reference", momentum)
    shutil.rmtree(run.staging / "reference", ignore_errors=True)
    with run.timer("reference_exact"):
        w_exact = exact_logistic_regression(prep["x_train"], prep["data"].y_train, int(cfg.seed or 0))
    y_te, y_tr = prep["data"].y_test, prep["data"].y_train
    m_enc = evaluate(w_enc, prep["x_test"], y_te)
    m_poly = evaluate(traj[-1], prep["x_test"], y_te)
    m_exact = evaluate(w_exact, prep["x_test"], y_te)
    model = {"weights": w_enc.tolist(), "bias_first": True, "scaling": saved.to_dict(),
             "circuit": job["circuit"], "sigmoid": job.get("sigmoid"), "coeffs": list(coeffs),
             "momentum": momentum.to_dict(),
             "iterations": reached, "feature_names": prep["data"].feature_names}
    run.write_json("model.json", model)
    history = {"iteration": list(range(1, len(traj) + 1)),
               "plain_poly": [evaluate(w, prep["x_test"], y_te)["accuracy"] for w in traj],
               "plain_poly_train_loss": [evaluate(w, prep["x_train"], y_tr)["log_loss"] for w in traj]}
    refreshes = json.loads(files.read(REFRESH_LOG).read_text()) if (run.staging / REFRESH_LOG).exists() or \
        run.existing(REFRESH_LOG) else []
    enc_points = [(r["iteration"], np.asarray(r["weights"])) for r in refreshes if r["iteration"] > 0]
    enc_points.append((reached, w_enc))
    history["encrypted"] = [{"iteration": k, **evaluate(w, prep["x_test"], y_te),
                             "train_loss": evaluate(w, prep["x_train"], y_tr)["log_loss"]} for k, w in enc_points]
    run.write_json("history.json", history)
    if cfg.get("plot", True):
        _plot(run.path("training.png"), history, m_exact, prep["data"].source)
    return {"encrypted": m_enc, "plain_poly": m_poly, "exact_sklearn": m_exact,
            "plaintext_gap_accuracy_points": 100.0 * (m_poly["accuracy"] - m_enc["accuracy"]),
            "max_abs_weight_diff": float(np.max(np.abs(w_enc - traj[-1]))),
            "test_samples": int(len(y_te))}


def _plot(path: Path, history: dict, exact: dict, source: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    it = history["iteration"]
    enc = history["encrypted"]
    axes[0].plot(it, history["plain_poly_train_loss"], label="plaintext (poly sigmoid)")
    axes[0].plot([e["iteration"] for e in enc], [e["train_loss"] for e in enc], "o", label="encrypted (decrypted)")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("train log loss")
    axes[1].plot(it, history["plain_poly"], label="plaintext (poly sigmoid)")
    axes[1].plot([e["iteration"] for e in enc], [e["accuracy"] for e in enc], "o", label="encrypted (decrypted)")
    axes[1].axhline(exact["accuracy"], color="gray", ls="--", label="exact LR (sklearn)")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("test accuracy")
    for ax in axes:
        ax.legend()
    fig.suptitle(f"encrypted logistic regression: {source}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
