"""``toolkit train-compatible`` and ``toolkit compare-models`` as tasks (:mod:`toolkit.task`).

:class:`TrainCompatible` trains a new model against an old one with a compatibility method (BCT, Shen et al.,
CVPR 2020; PCT naive / focal distillation, Yan et al., CVPR 2021) and measures the update;
:class:`CompareModels` measures the update between two existing checkpoints or prediction files.  Stages:

* ``validate``: the declared constraints (:mod:`toolkit.compat.schema`);
* ``setup``: data split, the old model's outputs (:mod:`toolkit.compat.old`), class maps, the extended old
  head (BCT), FD columns, the new network (``hydra.utils.instantiate`` of ``model``) and the LightningModule;
* ``fit``: Lightning training of the new model;
* ``evaluate``: error, NFR/PFR with bootstrap CIs, flips, retrieval (:mod:`toolkit.compat.report`);
* ``save``: ``model.pt``, ``predictions.npz``, ``old_predictions.npz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolkit.compat.old import class_map_from_config, prepare_old
from toolkit.compat.report import evaluate_update
from toolkit.console import log
from toolkit.errors import InputError
from toolkit.task import Task


class TrainCompatible(Task):
    """``toolkit train-compatible``: see the module docstring and ``docs/compat.md``.

    Args:
        cfg, run: as :class:`toolkit.task.Task`.
        split: an already loaded split of ``cfg.data`` (:func:`toolkit.compat.data.load_split` with the same
            seed) to reuse, e.g. by a benchmark running many methods on one dataset; None loads it.

    Raises (from its stages):
        InputError: bad config or inputs, always before training starts.
    """

    config_name = "train_compatible"

    def __init__(self, cfg: Any, run: Any, split: Any = None) -> None:
        super().__init__(cfg, run)
        self.split = split

    def validate(self) -> None:
        """Declared constraints, ``model`` naming a zoo network and ``old.model`` a ``configs/network/`` file
        (before any data is read)."""
        from toolkit.models.zoo import network_config, spec_from_config

        super().validate()
        spec_from_config(self.cfg.model, "model")
        if self.cfg.old.get("model"):
            network_config(str(self.cfg.old.model), "old.model")

    def setup(self) -> None:
        """Data, old outputs, label maps, extended old head, FD columns, new network and module."""
        from toolkit.compat.data import load_split

        cfg, run = self.cfg, self.run
        seed = int(cfg.seed or 0)
        with run.timer("load_data"):  # before torch/Lightning are imported: bad data fails in about a second
            split = self.split = self.split if self.split is not None else load_split(cfg.data, seed)
        import pytorch_lightning as pl
        import torch

        from toolkit.compat.lightning import compat_module_from_config, method_parts
        from toolkit.models.zoo import model_from_config

        old = self.old = prepare_old(cfg, split, run, seed)
        class_map = self.class_map = class_map_from_config(cfg.old.get("label_map"), split.num_classes,
                                                           old.num_classes, old.class_map)
        uses_bct, fd_kind, _ = method_parts(cfg.method, cfg.fd.kind_for_bct)
        if old.test_logits is None:  # checked before training, not after
            raise InputError("old.test_logits", None, "needed to measure flips (or old.test_embeddings with a head)")
        head_w, head_b, ext_map = self._old_head(uses_bct)
        k = old.num_classes
        y_old = ext_map[split.y_train]  # labels in the extended old head space
        self.old_correct = (old.train_logits.argmax(1) == y_old) & (y_old >= 0) & (y_old < k)
        old_to_new = self.old_to_new = np.full(k, -1, np.int64)
        for c_new, c_old in enumerate(class_map):
            if c_old >= 0:
                old_to_new[c_old] = c_new
        fd_old_cols = np.flatnonzero(old_to_new >= 0)
        if fd_kind is not None and len(fd_old_cols) == 0:
            raise InputError("old.label_map", None, "no new class maps to an old class; nothing to distil")
        # augmentation shifts images in each batch: the old logits and focal weights must then come from
        # the old model on the same shifted batch (online); cached outputs only serve un-augmented training
        tc = cfg.train
        self.online_old = int(tc.shift_pixels) > 0 and len(split.in_shape) == 3 and (
            fd_kind is not None or cfg.method == "naive")
        if self.online_old and old.net is None:
            raise InputError("train.shift_pixels", None, f"augmentation with method={cfg.method} needs the old "
                             "model's logits on the shifted images, but the old outputs are precomputed "
                             "(old.train_logits / old.train_embeddings); give old.checkpoint instead, or set "
                             "train.shift_pixels=0")
        pl.seed_everything(seed, verbose=False)
        net = model_from_config(cfg.model, tuple(split.in_shape), split.num_classes)
        module = self.module = compat_module_from_config(
            cfg, net, list(split.in_shape), old_head_rows=int(head_w.shape[0]) if uses_bct else 0,
            old_embed_dim=int(head_w.shape[1]) if uses_bct else 0, fd_columns=len(fd_old_cols) if fd_kind else 0,
            old_classes=k)
        if uses_bct:
            module.set_old_head(torch.from_numpy(head_w), None if head_b is None else torch.from_numpy(head_b))
        if fd_kind is not None:
            module.set_fd_index(torch.from_numpy(old_to_new[fd_old_cols]))
        if self.online_old:
            module.set_old_model(old.net, torch.from_numpy(fd_old_cols if len(fd_old_cols) else np.arange(k)))
            log("augmentation on: the old model runs on every shifted training batch (online old logits)")
        self.train_columns = (y_old, old.train_logits[:, fd_old_cols] if len(fd_old_cols) else old.train_logits)

    def _old_head(self, uses_bct: bool) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
        """BCT's frozen old head ``[K', E_old]`` (synthesized rows for missing heads and new classes) and the
        new-class -> extended-old-head map ``[C_new]`` (``-1`` = no row)."""
        import torch

        from toolkit.compat.losses import synthesize_head_rows

        old, split, class_map, cfg = self.old, self.split, self.class_map, self.cfg
        k = old.num_classes
        ext_map = class_map.copy()
        head_w, head_b = old.head_w, old.head_b
        if not uses_bct:
            return head_w, head_b, ext_map
        if head_w is None and old.train_emb is not None:  # e.g. TorchScript with embed(): class-mean head
            mapped = split.y_train[class_map[split.y_train] >= 0]
            missing = sorted(set(range(k)) - set(class_map[mapped].tolist()))
            if missing:
                raise InputError("old", "head", f"cannot synthesize the old head: old classes {missing[:10]} have "
                                 "no training sample (give old.head or old.label_map)")
            tr_map = torch.from_numpy(class_map[split.y_train])
            head_w = synthesize_head_rows(torch.from_numpy(old.train_emb), tr_map, k, torch.arange(k)).numpy()
            head_b = np.zeros(k, np.float32)
            log("old head synthesized from per-class mean old embeddings (the checkpoint has no head)")
        if head_w is None:
            raise InputError("old", "head", "BCT needs the old classifier head (a zoo checkpoint, old.head, or "
                             "old embeddings to synthesize it)")
        if head_w.shape[0] != k:
            raise InputError("old", "head", f"old head has {head_w.shape[0]} rows but the old model has {k} classes")
        new_classes = np.flatnonzero(class_map < 0)
        if len(new_classes) and cfg.bct.synthesize_new and old.train_emb is not None:
            ext_map[new_classes] = k + np.arange(len(new_classes))
            tr_old_lab = torch.from_numpy(ext_map[split.y_train])
            synth = synthesize_head_rows(torch.from_numpy(old.train_emb), tr_old_lab, k + len(new_classes),
                                         torch.arange(k, k + len(new_classes))).numpy()[k:]
            head_w = np.concatenate([head_w, synth]).astype(np.float32)
            head_b = np.concatenate([head_b if head_b is not None else np.zeros(k, np.float32),
                                     np.zeros(len(new_classes), np.float32)])
            log(f"BCT: synthesized {len(new_classes)} head rows for new classes from mean old embeddings")
        return head_w, head_b, ext_map

    def fit(self) -> None:
        """Train the new model (batches ``(x, y, y_old, old_correct, old_logits)``, see :mod:`.lightning`)."""
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        from toolkit.training import fit, make_trainer

        split, tc = self.split, self.cfg.train
        y_old, old_logits = self.train_columns
        ds = TensorDataset(torch.from_numpy(split.x_train), torch.from_numpy(split.y_train),
                           torch.from_numpy(y_old), torch.from_numpy(self.old_correct),
                           torch.from_numpy(np.ascontiguousarray(old_logits)))
        loader = DataLoader(ds, batch_size=int(tc.batch_size), shuffle=True, drop_last=len(ds) > int(tc.batch_size))
        trainer = make_trainer({**dict(self.cfg.trainer), "max_epochs": int(tc.epochs)}, self.run.staging)
        with self.run.timer("train"):
            fit(trainer, self.module, loader)
        self.module.eval()

    def evaluate(self) -> dict:
        """Both models on the test split: error, NFR/PFR, flips, retrieval, BCT criterion."""
        from toolkit.compat.checkpoints import infer

        split, old, module = self.split, self.old, self.module
        with self.run.timer("evaluate"):
            self.new_logits, self.new_emb = infer(module.net, split.x_test, module.projection)
            self.pred_new = self.new_logits.argmax(1)
            self.pred_old = self.old_to_new[old.test_logits.argmax(1)]  # old classes without a new class: -1
            old_mask = self.class_map[split.y_test] >= 0
            metrics = evaluate_update(split.y_test, self.pred_old, self.pred_new, split.ids_test, old.test_emb,
                                      self.new_emb, self.cfg, self.run, old_mask)
        metrics.update({
            "method": str(self.cfg.method), "old_source": old.source,
            "old_correct_train_fraction": float(self.old_correct.mean()),
            "old_logits": "online (old model on each shifted batch)" if self.online_old else "cached",
            "new_classes": int((self.class_map < 0).sum()), "train_time_s": self.run.timings.get("train", 0.0),
        })
        seen = module.online_old_correct
        if self.online_old and seen[1]:
            metrics["old_correct_train_fraction_augmented"] = seen[0] / seen[1]
        return metrics

    def save(self, metrics: dict) -> None:
        """``model.pt`` (weights-only), ``predictions.npz`` (new) and ``old_predictions.npz`` on the test split."""
        from toolkit.compat.checkpoints import save_model

        split, old, net, run = self.split, self.old, self.module.net, self.run
        save_model(run.path("model.pt"), net, net.arch, net.arch_kwargs, list(split.in_shape), split.num_classes,
                   projection=self.module.projection, extra={"method": str(self.cfg.method)})
        np.savez(run.path("predictions.npz"), ids=split.ids_test, labels=split.y_test, predictions=self.pred_new,
                 logits=self.new_logits, embeddings=self.new_emb)
        np.savez(run.path("old_predictions.npz"), ids=split.ids_test, labels=split.y_test,
                 predictions=self.pred_old, logits=old.test_logits,
                 **({"embeddings": old.test_emb} if old.test_emb is not None else {}))


# --------------------------------------------------------------------------------------------------
# compare-models


MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def load_predictions(path: str, which: str) -> dict:
    """Predictions of one side of ``compare-models`` from ``.npz`` (``predictions``/``logits``, optional
    ``labels``, ``ids``, ``embeddings``), ``.npy``, ``.csv`` or whitespace text (``[N]`` labels or ``[N, C]`` logits).

    Returns:
        Dict with ``predictions`` ``[N]`` int64 and whichever of the optional arrays the file holds.

    Raises:
        InputError: missing/unreadable file, non-finite logits, or predictions that are not 1-D integers.
    """
    from toolkit.data.files import load_npy, open_npz, read_text, reading, require_file

    p = require_file(path, which, "run/predictions.npz")
    out: dict[str, Any] = {}
    suffix = p.suffix.lower()
    with reading(p, which, "predictions (labels [N] or logits [N, C])"):
        if suffix == ".npz":
            with open_npz(p, which, "an .npz of predictions/logits [+ labels, ids, embeddings]") as z:
                for key in ("predictions", "logits", "labels", "ids", "embeddings"):
                    if key in z:
                        out[key] = z[key]
        elif suffix == ".npy":
            arr = load_npy(p, which, "predictions (labels [N] or logits [N, C])")
            out["logits" if arr.ndim == 2 else "predictions"] = arr
        else:
            lines = [ln for ln in read_text(p, which, expected="a predictions text file").split("\n") if ln.strip()]
            if not lines:
                raise InputError(p, which, "no predictions (only blank lines); expected labels [N] or logits [N, C]")
            arr = np.loadtxt(lines, delimiter="," if suffix == ".csv" else None, ndmin=1)
            out["logits" if arr.ndim == 2 else "predictions"] = arr
    for key in ("predictions", "logits", "labels"):
        if key in out and (not np.issubdtype(np.asarray(out[key]).dtype, np.number)
                           or np.issubdtype(np.asarray(out[key]).dtype, np.complexfloating)):
            raise InputError(p, which, f"{key} must be real numbers (integer labels or float logits), "
                             f"got dtype {np.asarray(out[key]).dtype}")
    if "predictions" not in out:
        if "logits" not in out:
            raise InputError(p, which, "expected predicted labels [N], logits [N, C], or an .npz with "
                             "'predictions' or 'logits'")
        lg = np.asarray(out["logits"], dtype=np.float64)
        if not np.all(np.isfinite(lg)):
            raise InputError(p, which, "logits contain NaN or inf")
        out["predictions"] = lg.argmax(1)
    pred = np.asarray(out["predictions"])
    if pred.ndim != 1 or (np.issubdtype(pred.dtype, np.floating) and not np.all(pred == np.round(pred))):
        raise InputError(p, which, f"predictions must be 1-D integer labels, got shape {pred.shape}")
    out["predictions"] = pred.astype(np.int64)
    return out


def check_max_nfr(value: Any, source: str = "max_nfr") -> float | None:
    """Validate the CI gate threshold: a fraction in ``[0, 1)``; None passes through.

    ``1`` (meant as 1%) and negative values are refused, with a hint at the fraction to pass.

    Raises:
        InputError: not a number, NaN, negative, or >= 1.
    """
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(source, None, f"expected a fraction in [0, 1), got {value!r} (e.g. 0.01 for 1%)") from None
    if not 0.0 <= v < 1.0:  # NaN fails too
        hint = f"use {v / 100:g} for {v:g}%" if 1.0 <= v <= 100.0 else "e.g. 0.01 for 1%"
        raise InputError(source, None, f"must be a fraction of samples in [0, 1), got {value} ({hint})")
    return v


def _test_split(cfg: Any, why: str, alternative: str = "") -> Any:
    """The labelled test split of ``cfg.data``; refuses when no ``data=`` was given (no silent default)."""
    from toolkit.compat.data import load_split

    if not cfg.get("data"):
        raise InputError("compare-models", "data", f"{why}; pass {alternative}data=<preset> naming the labelled "
                         "test split (e.g. data=compat_mnist or data=compat_digits)")
    return load_split(cfg.data, int(cfg.seed or 0))


class CompareModels(Task):
    """``toolkit compare-models``: two models (checkpoints or prediction files) on the same labelled samples.

    ``data=`` is needed only when OLD or NEW is a checkpoint (it is run on the data's test split) or when
    neither prediction file nor ``labels=`` gives the labels; it has no default.  The metrics hold ``gate``
    when ``max_nfr`` is set (the CLI exits 3 when the gate fails).

    Raises (from its stages):
        InputError: missing/unsafe files, length mismatches, missing labels, no ``data=`` where one is
            needed, ``max_nfr`` outside ``[0, 1)``.
    """

    config_name = "compare_models"

    def validate(self) -> None:
        """Declared constraints, both sides given, ``arch.*`` naming ``configs/network/`` files, and the gate
        threshold (:func:`check_max_nfr`)."""
        from toolkit.models.zoo import network_config

        super().validate()
        for which, name in (self.cfg.get("arch") or {}).items():
            if name:
                network_config(str(name), f"arch.{which}")
        if not self.cfg.get("old") or not self.cfg.get("new"):
            raise InputError("compare-models", "OLD/NEW", "two checkpoints or prediction files are required")
        self.max_nfr = check_max_nfr(self.cfg.get("max_nfr"))

    def setup(self) -> None:
        """Predictions (and embeddings) of both sides, checked to describe the same samples, and the labels."""
        from toolkit.compat.checkpoints import infer, load_model

        cfg, run = self.cfg, self.run
        split = None
        sides: dict[str, dict] = {}
        for which in ("old", "new"):
            path = str(cfg[which])
            if Path(path).suffix.lower() in MODEL_SUFFIXES:
                if split is None:
                    split = _test_split(cfg, f"{which.upper()} {path} is a checkpoint, run on a test split")
                net, proj, _ = load_model(path, which, split.in_shape, (cfg.get("arch") or {}).get(which),
                                          trust_code=bool(cfg.get("trust_code")), opt_in="--trust-code")
                with run.timer(f"{which}_inference"):
                    lg, emb = infer(net, split.x_test, proj)
                sides[which] = {"predictions": lg.argmax(1), "embeddings": emb, "labels": split.y_test,
                                "ids": split.ids_test}
            else:
                sides[which] = load_predictions(path, which)
        n_old, n_new = len(sides["old"]["predictions"]), len(sides["new"]["predictions"])
        if n_old != n_new:
            raise InputError(cfg.new, "new", f"has {n_new} predictions but {cfg.old} has {n_old}")
        for key in ("ids",) + (() if cfg.get("labels") else ("labels",)):
            a, b = sides["old"].get(key), sides["new"].get(key)
            if a is not None and b is not None and (len(a) != len(b) or not np.array_equal(a, b)):
                raise InputError(cfg.new, key, f"differ from the {key} in {cfg.old}; both must list the same "
                                 "samples in the same order")
        if cfg.get("labels"):
            from toolkit.data import check_labels, load_labels

            labels = check_labels(load_labels(cfg.labels, "labels", allow_names=False), cfg.labels, "labels", n=n_old)
        else:
            labels = sides["old"].get("labels", sides["new"].get("labels"))
            if labels is None:
                split = split or _test_split(cfg, "the prediction files hold no labels", "labels=FILE or ")
                labels = split.y_test
            if len(labels) != n_old:
                raise InputError("labels", None, f"{len(labels)} labels for {n_old} predictions (set labels=FILE)")
        self.sides, self.labels = sides, np.asarray(labels, np.int64)

    def evaluate(self) -> dict:
        """Error, NFR/PFR with CIs, flips, retrieval; ``gate`` against ``max_nfr``."""
        old, new = self.sides["old"], self.sides["new"]
        ids = old.get("ids", np.arange(len(self.labels)))
        m = evaluate_update(self.labels, old["predictions"], new["predictions"], ids, old.get("embeddings"),
                            new.get("embeddings"), self.cfg, self.run)
        if self.max_nfr is not None:
            m["gate"] = {"max_nfr": self.max_nfr, "pass": bool(m["nfr"] <= self.max_nfr)}
        return m
