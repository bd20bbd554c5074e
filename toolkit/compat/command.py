"""``toolkit train-compatible`` and ``toolkit compare-models``: config -> core -> artifacts.

``run(cfg, run)`` trains a new model against an old one with a compatibility method and measures the
update (error, NFR, PFR, relative NFR with bootstrap CIs, flipped samples, cross-model retrieval and
the BCT criterion).  ``compare(cfg, run)`` measures the same for two existing checkpoints or
prediction files.  See ``docs/compat.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.console import log
from toolkit.errors import InputError

# --------------------------------------------------------------------------------------------------
# old-model outputs


@dataclass
class OldOutputs:
    """Everything used from the old model, computed once.

    Attributes:
        train_logits: ``[N, K]`` float32 old logits on the training set.
        test_logits: ``[M, K]`` float32 or None.
        train_emb, test_emb: ``[N|M, E_old]`` float32 or None.
        head_w, head_b: old head ``[K, E_old]`` / ``[K]`` or None.
        num_classes: K.
        class_map: ``[C_new]`` int64, old class of each new class (-1 = new class), or None (identity).
        source: how the outputs were obtained.
        net: the old model itself (inputs -> old logits), None for precomputed outputs; needed to
            compute old logits on augmented batches during training.
    """

    train_logits: np.ndarray
    test_logits: np.ndarray | None
    train_emb: np.ndarray | None
    test_emb: np.ndarray | None
    head_w: np.ndarray | None
    head_b: np.ndarray | None
    num_classes: int
    class_map: np.ndarray | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
    net: Any = None


def _arch(cfg_model: Any, overrides: Any = None) -> tuple[str, dict]:
    from omegaconf import OmegaConf

    spec = OmegaConf.to_container(cfg_model, resolve=True) if not isinstance(cfg_model, dict) else cfg_model
    if not isinstance(spec, dict) or "arch" not in spec:
        raise InputError("model", "arch", "expected a zoo model config (configs/compat/model/mlp|cnn|resnet)")
    kwargs = dict(spec.get("kwargs") or {})
    if overrides:
        kwargs.update(OmegaConf.to_container(overrides, resolve=True) if not isinstance(overrides, dict)
                      else overrides)
    return str(spec["arch"]), kwargs


def _load_matrix(path: str, field_name: str, rows: int, what: str) -> np.ndarray:
    from toolkit.data import load_features

    x = load_features(path, field_name)
    if x.shape[0] != rows:
        raise InputError(path, field_name, f"has {x.shape[0]} rows but the {what} has {rows} samples")
    return x


def _load_head(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(p, "old.head", "file not found")
    if p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if "weight" not in z:
                raise InputError(p, "old.head", "an .npz head needs arrays 'weight' [K, E] and optional 'bias' [K]")
            w, b = z["weight"], z.get("bias")
    else:
        from toolkit.data import load_features

        w, b = load_features(p, "old.head"), None
    from toolkit.data import check_features

    w = check_features(w, p, "old.head")
    if b is not None and b.shape != (w.shape[0],):
        raise InputError(p, "old.head.bias", f"expected shape ({w.shape[0]},), got {b.shape}")
    return w, (None if b is None else b.astype(np.float32))


def prepare_old(cfg: Any, split: Any, run: Any, seed: int) -> OldOutputs:
    """Obtain old logits/embeddings/head from a checkpoint, precomputed files, or by training one here.

    Raises:
        InputError: missing/unsafe/mismatched checkpoint, files whose row counts differ from the data,
            head rows not matching the old classes.
    """
    from toolkit.compat.checkpoints import infer, load_model, save_model

    oc = cfg.old
    ck = oc.get("checkpoint")
    n_tr, n_te = len(split.y_train), len(split.y_test)
    if ck:
        from omegaconf import OmegaConf

        kw = OmegaConf.to_container(oc.kwargs, resolve=True) if oc.get("kwargs") else None
        net, _, info = load_model(ck, "old.checkpoint", split.in_shape, oc.get("model"), kw)
        try:
            with run.timer("old_inference"):
                tr_l, tr_e = infer(net, split.x_train)
                te_l, te_e = infer(net, split.x_test)
        except RuntimeError as exc:  # e.g. a TorchScript model made for another input shape
            raise InputError(ck, "old.checkpoint", f"cannot run the model on inputs of shape "
                             f"{list(split.in_shape)} ({str(exc).strip().splitlines()[0][:160]})") from None
        if info["format"] == "torchscript" and not getattr(net, "has_embed", False):
            tr_e = te_e = None  # its logits are not an embedding: no retrieval matrix, no head synthesis
        head = getattr(net, "head", None)
        hw = head.weight.detach().numpy().copy() if head is not None else None
        hb = head.bias.detach().numpy().copy() if head is not None and head.bias is not None else None
        if oc.get("head"):  # an explicit head file (e.g. for a TorchScript model) replaces the module's
            hw, hb = _load_head(oc.head)
            if hw.shape[0] != tr_l.shape[1]:
                raise InputError(oc.head, "old.head", f"head has {hw.shape[0]} rows but the old model gives "
                                 f"{tr_l.shape[1]} logits")
            if tr_e is not None and hw.shape[1] != tr_e.shape[1]:
                raise InputError(oc.head, "old.head", f"head has {hw.shape[1]} columns but old embeddings have "
                                 f"{tr_e.shape[1]} dimensions")
        out = OldOutputs(tr_l, te_l, tr_e, te_e, hw, hb, int(tr_l.shape[1]), source=f"checkpoint ({info['format']})",
                         net=net)
    elif oc.get("train_logits") or oc.get("train_embeddings"):
        tr_e = _load_matrix(oc.train_embeddings, "old.train_embeddings", n_tr, "training set") \
            if oc.get("train_embeddings") else None
        te_e = _load_matrix(oc.test_embeddings, "old.test_embeddings", n_te, "test set") \
            if oc.get("test_embeddings") else None
        hw, hb = _load_head(oc.head) if oc.get("head") else (None, None)
        if hw is None and tr_e is not None:  # synthesize the whole head from per-class mean old embeddings
            hw = np.stack([tr_e[split.y_train == c].mean(0) for c in range(split.num_classes)]).astype(np.float32)
            hb = np.zeros(len(hw), np.float32)
            log("old head synthesized from per-class mean old embeddings (no old.head given)")
        if hw is not None and tr_e is not None and hw.shape[1] != tr_e.shape[1]:
            raise InputError(oc.head, "old.head", f"head has {hw.shape[1]} columns but old embeddings have "
                             f"{tr_e.shape[1]} dimensions")
        if oc.get("train_logits"):
            tr_l = _load_matrix(oc.train_logits, "old.train_logits", n_tr, "training set")
        elif hw is not None and tr_e is not None:
            tr_l = tr_e @ hw.T + (hb if hb is not None else 0.0)
        else:
            raise InputError("old.train_logits", None, "need old logits, or old embeddings to derive them")
        te_l = _load_matrix(oc.test_logits, "old.test_logits", n_te, "test set") if oc.get("test_logits") else (
            te_e @ hw.T + (hb if hb is not None else 0.0) if (te_e is not None and hw is not None) else None)
        if hw is not None and hw.shape[0] != tr_l.shape[1]:
            raise InputError(oc.get("head") or "old.head", "old.head", f"head has {hw.shape[0]} rows but the "
                             f"old logits have {tr_l.shape[1]} classes")
        if te_l is not None and te_l.shape[1] != tr_l.shape[1]:
            raise InputError(oc.test_logits, "old.test_logits", f"has {te_l.shape[1]} columns, "
                             f"old.train_logits has {tr_l.shape[1]}")
        out = OldOutputs(tr_l.astype(np.float32), None if te_l is None else te_l.astype(np.float32), tr_e, te_e,
                         hw, hb, int(tr_l.shape[1]), source="precomputed files")
    else:  # train a (weaker) old model here on part of the data
        from toolkit.models.classifier import train_classifier

        arch, kwargs = _arch(_model_spec(oc.get("model") or "mlp"), oc.get("kwargs"))
        y = split.y_train
        classes = sorted(int(c) for c in (oc.get("classes") or range(split.num_classes)))
        bad = [c for c in classes if c < 0 or c >= split.num_classes]
        if bad:
            raise InputError("old.classes", None, f"classes {bad} do not exist (data has 0..{split.num_classes - 1})")
        class_map = np.full(split.num_classes, -1, np.int64)
        class_map[classes] = np.arange(len(classes))
        rng = np.random.default_rng(seed + 7)
        frac = float(oc.get("train_fraction") or 1.0)
        idx = []
        for c in classes:  # stratified fraction of each old class
            members = np.flatnonzero(y == c)
            k = max(1, int(round(frac * len(members))))
            idx.append(rng.choice(members, size=k, replace=False))
        idx = np.sort(np.concatenate(idx))
        tc = cfg.train
        with run.timer("old_train"):
            net = train_classifier(split.x_train[idx], class_map[y[idx]], arch=arch, arch_kwargs=kwargs,
                                   epochs=int(oc.get("epochs") or tc.epochs), batch_size=int(tc.batch_size),
                                   lr=float(tc.lr), trainer_cfg=dict(cfg.trainer), root_dir=run.path("old_logs"),
                                   weight_decay=float(tc.weight_decay), shift_pixels=0, seed=seed + 1).net
        with run.timer("old_inference"):
            tr_l, tr_e = infer(net, split.x_train)
            te_l, te_e = infer(net, split.x_test)
        save_model(run.path("old_model.pt"), net, arch, kwargs, list(split.in_shape), len(classes),
                   extra={"classes": classes})
        out = OldOutputs(tr_l, te_l, tr_e, te_e, net.head.weight.detach().numpy().copy(),
                         net.head.bias.detach().numpy().copy(), len(classes), class_map=class_map,
                         source=f"trained here ({arch}, {len(idx)} samples, classes {classes[0]}..{classes[-1]})",
                         net=net)
    if oc.get("num_classes") is not None and int(oc.num_classes) != out.num_classes:
        raise InputError(ck or "old", "old.num_classes", f"the old head has {out.num_classes} classes but "
                         f"old.num_classes={int(oc.num_classes)}")
    return out


def _model_spec(name: str) -> dict:
    from toolkit.compat.checkpoints import model_config

    arch, kwargs = model_config(str(name), "old.model")
    return {"arch": arch, "kwargs": kwargs}


def class_map_from_config(label_map: Any, num_new: int, num_old: int, default: np.ndarray | None) -> np.ndarray:
    """Old class of each new class (``[C_new]`` int64, -1 = new class).

    ``label_map`` is null (the default map, or identity for labels < K_old), a ``{new: old}`` mapping,
    or a ``.json`` file holding one.

    Raises:
        InputError: a key or value naming a class that does not exist.
    """
    if label_map is None:
        if default is not None:
            return default
        m = np.full(num_new, -1, np.int64)
        m[: min(num_new, num_old)] = np.arange(min(num_new, num_old))
        return m
    source = "old.label_map"
    if isinstance(label_map, str):
        p = Path(label_map).expanduser()
        if not p.is_file():
            raise InputError(p, "old.label_map", "file not found (expected a JSON object {new: old})")
        try:
            label_map = json.loads(p.read_text())
        except ValueError as exc:
            raise InputError(p, "old.label_map", f"not valid JSON ({exc})") from None
        source = str(p)
    from omegaconf import DictConfig, OmegaConf

    if isinstance(label_map, DictConfig):
        label_map = OmegaConf.to_container(label_map)
    if not isinstance(label_map, dict):
        raise InputError(source, "old.label_map", "expected a mapping {new_class: old_class}")
    m = np.full(num_new, -1, np.int64)
    for k, v in label_map.items():
        try:
            kn, vo = int(k), int(v)
        except (TypeError, ValueError):
            raise InputError(source, "old.label_map", f"entry {k!r}: {v!r} is not an integer pair") from None
        if not 0 <= kn < num_new:
            raise InputError(source, "old.label_map", f"new class {kn} does not exist (data has 0..{num_new - 1})")
        if not 0 <= vo < num_old:
            raise InputError(source, "old.label_map", f"old class {vo} does not exist (old head has 0..{num_old - 1})")
        m[kn] = vo
    return m


# --------------------------------------------------------------------------------------------------
# evaluation shared by both commands


def evaluate_update(labels: np.ndarray, pred_old: np.ndarray, pred_new: np.ndarray, ids: np.ndarray,
                    old_emb: np.ndarray | None, new_emb: np.ndarray | None, cfg: Any,
                    run: Any, old_classes_mask: np.ndarray | None = None) -> dict:
    """Flip metrics, bootstrap CIs, flipped-sample list (``flips.json``), retrieval matrix, ``flips.png``."""
    from toolkit.compat.metrics import (
        bct_criterion,
        bootstrap_ci,
        cross_model_retrieval,
        flip_rates,
        flipped_samples,
        rel_nfr_reason,
    )

    bs = cfg.get("bootstrap") or {}
    m: dict[str, Any] = flip_rates(labels, pred_old, pred_new)
    if (why := rel_nfr_reason(m)) is not None:
        m["rel_nfr_reason"] = why
    m["ci95"] = bootstrap_ci(labels, pred_old, pred_new, n_boot=int(bs.get("n", 1000)),
                             level=float(bs.get("level", 0.95)), seed=int(cfg.get("seed") or 0))
    flips = flipped_samples(ids, labels, pred_old, pred_new)
    m["negative_flips"] = sum(f["flip"] == "negative" for f in flips)
    m["positive_flips"] = len(flips) - m["negative_flips"]
    run.write_json("flips.json", {"ids_are": "test-set row index unless the data names samples",
                                  "flips": flips})
    if old_classes_mask is not None and 0 < old_classes_mask.sum() < len(labels):
        m["old_classes"] = flip_rates(labels[old_classes_mask], pred_old[old_classes_mask],
                                      pred_new[old_classes_mask])
        if (why := rel_nfr_reason(m["old_classes"])) is not None:
            m["old_classes"]["rel_nfr_reason"] = why
    if old_emb is not None and new_emb is not None:
        rc = cfg.get("retrieval") or {}
        n_max = rc.get("max_samples")
        sel = np.arange(len(labels))
        if n_max and len(sel) > int(n_max):
            sel = np.sort(np.random.default_rng(0).choice(sel, int(n_max), replace=False))
        matrix = cross_model_retrieval(old_emb[sel], new_emb[sel], labels[sel])
        m["retrieval"] = matrix
        m["bct_criterion"] = bct_criterion(matrix, str(rc.get("criterion_metric", "top1")))
    plot_flips(labels, pred_old, pred_new, run.path("flips.png"), title=str(cfg.get("method", "update")))
    return m


def plot_flips(labels: np.ndarray, pred_old: np.ndarray, pred_new: np.ndarray, path: Path, title: str) -> None:
    """Bar chart of ER_old, ER_new, NFR and PFR (percent) overall and per class, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.compat.metrics import flip_rates, per_class_flips

    groups = {"all": flip_rates(labels, pred_old, pred_new)}
    classes = per_class_flips(labels, pred_old, pred_new)
    if len(classes) <= 40:
        groups.update({str(c): v for c, v in classes.items()})
    keys = ["er_old", "er_new", "nfr", "pfr"]
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(groups) + 2), 3.5))
    for j, k in enumerate(keys):
        ax.bar(x + (j - 1.5) * 0.2, [100 * g[k] for g in groups.values()], width=0.2, label=k.upper().replace("_", " "))
    ax.set_xticks(x, list(groups))
    ax.set_xlabel("class")
    ax.set_ylabel("%")
    ax.set_title(f"{title}: error and flip rates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# train-compatible


def _validate(cfg: Any) -> None:
    from toolkit.compat.lightning import METHODS

    if cfg.method not in METHODS:
        raise InputError("method", None, f"unknown method {cfg.method!r} (expected one of {', '.join(METHODS)})")
    fd = cfg.fd
    if fd.kind_for_bct not in ("kl", "lm"):
        raise InputError("fd.kind_for_bct", None, "expected kl or lm")
    if fd.lm_reduction not in ("sum", "mean"):
        raise InputError("fd.lm_reduction", None, "expected mean or sum")
    if float(fd.temperature) <= 0:
        raise InputError("fd.temperature", None, "must be > 0")
    for key, value in (("fd.alpha", fd.alpha), ("fd.beta", fd.beta), ("fd.weight", fd.weight),
                       ("bct.weight", cfg.bct.weight), ("naive.weight", cfg.naive.weight)):
        if float(value) < 0:
            raise InputError(key, None, f"must be >= 0, got {value}")
    frac = cfg.old.get("train_fraction")
    if frac is not None and not 0 < float(frac) <= 1:
        raise InputError("old.train_fraction", None, "must be in (0, 1]")


def run(cfg: Any, run: Any) -> dict:
    """Train the new model with ``cfg.method`` and measure the update.  See ``docs/compat.md``.

    Raises:
        InputError: bad config or inputs (before training starts).
    """
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from toolkit.compat.checkpoints import infer, save_model
    from toolkit.compat.data import load_split
    from toolkit.compat.lightning import CompatModule, method_parts
    from toolkit.training import make_trainer

    _validate(cfg)
    seed = int(cfg.seed or 0)
    with run.timer("load_data"):
        split = load_split(cfg.data, seed)
    new_arch, new_kwargs = _arch(cfg.model)
    old = prepare_old(cfg, split, run, seed)
    class_map = class_map_from_config(cfg.old.get("label_map"), split.num_classes, old.num_classes, old.class_map)
    uses_bct, fd_kind, _ = method_parts(cfg.method, cfg.fd.kind_for_bct)

    # labels in the extended old head space; synthesized rows for new classes (BCT)
    k = old.num_classes
    ext_map = class_map.copy()
    new_classes = np.flatnonzero(class_map < 0)
    head_w, head_b = old.head_w, old.head_b
    if old.test_logits is None:  # checked before training, not after
        raise InputError("old.test_logits", None, "needed to measure flips (or old.test_embeddings with a head)")
    if uses_bct:
        if head_w is None and old.train_emb is not None:  # e.g. TorchScript with embed(): class-mean head
            mapped = split.y_train[class_map[split.y_train] >= 0]
            missing = sorted(set(range(k)) - set(class_map[mapped].tolist()))
            if missing:
                raise InputError("old", "head", f"cannot synthesize the old head: old classes {missing[:10]} have "
                                 "no training sample (give old.head or old.label_map)")
            from toolkit.compat.losses import synthesize_head_rows

            tr_map = torch.from_numpy(class_map[split.y_train])
            head_w = synthesize_head_rows(torch.from_numpy(old.train_emb), tr_map, k, torch.arange(k)).numpy()
            head_b = np.zeros(k, np.float32)
            log("old head synthesized from per-class mean old embeddings (the checkpoint has no head)")
        if head_w is None:
            raise InputError("old", "head", "BCT needs the old classifier head (a zoo checkpoint, old.head, or "
                             "old embeddings to synthesize it)")
        if head_w.shape[0] != k:
            raise InputError("old", "head", f"old head has {head_w.shape[0]} rows but the old model has {k} classes")
        if len(new_classes) and cfg.bct.synthesize_new and old.train_emb is not None:
            ext_map[new_classes] = k + np.arange(len(new_classes))
            tr_old_lab = torch.from_numpy(ext_map[split.y_train])
            from toolkit.compat.losses import synthesize_head_rows

            synth = synthesize_head_rows(torch.from_numpy(old.train_emb), tr_old_lab, k + len(new_classes),
                                         torch.arange(k, k + len(new_classes))).numpy()[k:]
            head_w = np.concatenate([head_w, synth]).astype(np.float32)
            head_b = np.concatenate([head_b if head_b is not None else np.zeros(k, np.float32),
                                     np.zeros(len(new_classes), np.float32)])
            log(f"BCT: synthesized {len(new_classes)} head rows for new classes from mean old embeddings")
    y_old = ext_map[split.y_train]
    old_correct = (old.train_logits.argmax(1) == y_old) & (y_old >= 0) & (y_old < k)
    old_to_new = np.full(k, -1, np.int64)
    for c_new, c_old in enumerate(class_map):
        if c_old >= 0:
            old_to_new[c_old] = c_new
    fd_old_cols = np.flatnonzero(old_to_new >= 0)
    fd_new_cols = old_to_new[fd_old_cols]
    if fd_kind is not None and len(fd_old_cols) == 0:
        raise InputError("old.label_map", None, "no new class maps to an old class; nothing to distil")

    tc = cfg.train
    # augmentation shifts images in each batch: the old logits and focal weights must then come from
    # the old model on the same shifted batch (online); cached outputs only serve un-augmented training
    online_old = int(tc.shift_pixels) > 0 and len(split.in_shape) == 3 and (fd_kind is not None
                                                                            or cfg.method == "naive")
    if online_old and old.net is None:
        raise InputError("train.shift_pixels", None, f"augmentation with method={cfg.method} needs the old "
                         "model's logits on the shifted images, but the old outputs are precomputed "
                         "(old.train_logits / old.train_embeddings); give old.checkpoint instead, or set "
                         "train.shift_pixels=0")
    pl.seed_everything(seed, verbose=False)
    module = CompatModule(
        new_arch, list(split.in_shape), split.num_classes, new_kwargs, method=str(cfg.method),
        old_head_rows=int(head_w.shape[0]) if uses_bct else 0,
        old_embed_dim=int(head_w.shape[1]) if uses_bct else 0, fd_columns=len(fd_old_cols) if fd_kind else 0,
        old_classes=k, lr=float(tc.lr), weight_decay=float(tc.weight_decay), bct_weight=float(cfg.bct.weight),
        naive_weight=float(cfg.naive.weight), fd_weight=float(cfg.fd.weight), fd_kind_bct=str(cfg.fd.kind_for_bct),
        alpha=float(cfg.fd.alpha), beta=float(cfg.fd.beta), temperature=float(cfg.fd.temperature),
        lm_reduction=str(cfg.fd.lm_reduction), shift_pixels=int(tc.shift_pixels),
        projection=bool(cfg.bct.projection))
    if uses_bct:
        module.set_old_head(torch.from_numpy(head_w), None if head_b is None else torch.from_numpy(head_b))
    if fd_kind is not None:
        module.set_fd_index(torch.from_numpy(fd_new_cols))
    if online_old:
        module.set_old_model(old.net, torch.from_numpy(fd_old_cols if len(fd_old_cols) else np.arange(k)))
        log("augmentation on: the old model runs on every shifted training batch (online old logits)")
    ds = TensorDataset(torch.from_numpy(split.x_train), torch.from_numpy(split.y_train), torch.from_numpy(y_old),
                       torch.from_numpy(old_correct), torch.from_numpy(np.ascontiguousarray(
                           old.train_logits[:, fd_old_cols] if len(fd_old_cols) else old.train_logits)))
    loader = DataLoader(ds, batch_size=int(tc.batch_size), shuffle=True, drop_last=len(ds) > int(tc.batch_size))
    trainer = make_trainer({**dict(cfg.trainer), "max_epochs": int(tc.epochs)}, run.staging)
    with run.timer("train"):
        trainer.fit(module, loader)
    module.eval()

    with run.timer("evaluate"):
        new_logits, new_emb = infer(module.net, split.x_test, module.projection)
        pred_new = new_logits.argmax(1)
        pred_old = old_to_new[old.test_logits.argmax(1)]  # old classes without a new counterpart: -1 (wrong)
        old_mask = class_map[split.y_test] >= 0
        metrics = evaluate_update(split.y_test, pred_old, pred_new, split.ids_test, old.test_emb, new_emb,
                                  cfg, run, old_mask)
    save_model(run.path("model.pt"), module.net, new_arch, new_kwargs, list(split.in_shape), split.num_classes,
               projection=module.projection, extra={"method": str(cfg.method)})
    np.savez(run.path("predictions.npz"), ids=split.ids_test, labels=split.y_test, predictions=pred_new,
             logits=new_logits, embeddings=new_emb)
    np.savez(run.path("old_predictions.npz"), ids=split.ids_test, labels=split.y_test, predictions=pred_old,
             logits=old.test_logits, **({"embeddings": old.test_emb} if old.test_emb is not None else {}))
    metrics.update({
        "method": str(cfg.method), "old_source": old.source,
        "old_correct_train_fraction": float(old_correct.mean()),
        "old_logits": "online (old model on each shifted batch)" if online_old else "cached",
        "new_classes": int(len(new_classes)), "train_time_s": run.timings.get("train", 0.0),
    })
    if online_old and module.online_old_correct[1]:
        metrics["old_correct_train_fraction_augmented"] = module.online_old_correct[0] / module.online_old_correct[1]
    return {"metrics": metrics}


# --------------------------------------------------------------------------------------------------
# compare-models


MODEL_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def _load_predictions(path: str, which: str) -> dict:
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(p, which, "file not found")
    out: dict[str, Any] = {}
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                for key in ("predictions", "logits", "labels", "ids", "embeddings"):
                    if key in z:
                        out[key] = z[key]
        elif p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
            out["logits" if arr.ndim == 2 else "predictions"] = arr
        else:
            arr = np.loadtxt(p, delimiter="," if p.suffix.lower() == ".csv" else None, ndmin=1)
            out["logits" if arr.ndim == 2 else "predictions"] = arr
    except (OSError, ValueError) as exc:
        raise InputError(p, which, f"cannot read predictions ({str(exc).splitlines()[0]})") from None
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


def compare(cfg: Any, run: Any) -> dict:
    """Compare two models (checkpoints or prediction files) on the same labelled samples.

    ``data=`` is needed only when OLD or NEW is a checkpoint (it is run on the data's test split) or
    when neither prediction file nor ``labels=`` gives the labels; it has no default.

    Returns ``{"metrics": ...}`` including ``gate`` when ``max_nfr`` is set (the CLI exits 3 when the
    gate fails).

    Raises:
        InputError: missing/unsafe files, length mismatches, missing labels, no ``data=`` where one is
            needed, ``max_nfr`` outside ``[0, 1)``.
    """
    from toolkit.compat.checkpoints import infer, load_model

    if not cfg.get("old") or not cfg.get("new"):
        raise InputError("compare-models", "OLD/NEW", "two checkpoints or prediction files are required")
    max_nfr = check_max_nfr(cfg.get("max_nfr"))
    split = None
    sides: dict[str, dict] = {}
    for which in ("old", "new"):
        path = str(cfg[which])
        if Path(path).suffix.lower() in MODEL_SUFFIXES:
            if split is None:
                split = _test_split(cfg, f"{which.upper()} {path} is a checkpoint, run on a test split")
            net, proj, _ = load_model(path, which, split.in_shape, (cfg.get("arch") or {}).get(which))
            with run.timer(f"{which}_inference"):
                lg, emb = infer(net, split.x_test, proj)
            sides[which] = {"predictions": lg.argmax(1), "embeddings": emb, "labels": split.y_test,
                            "ids": split.ids_test}
        else:
            sides[which] = _load_predictions(path, which)
    n_old, n_new = len(sides["old"]["predictions"]), len(sides["new"]["predictions"])
    if n_old != n_new:
        raise InputError(cfg.new, "new", f"has {n_new} predictions but {cfg.old} has {n_old}")
    for key in ("ids",) + (() if cfg.get("labels") else ("labels",)):
        a, b = sides["old"].get(key), sides["new"].get(key)
        if a is not None and b is not None and (len(a) != len(b) or not np.array_equal(a, b)):
            raise InputError(cfg.new, key, f"differ from the {key} in {cfg.old}; both must list the same samples "
                             "in the same order")
    if cfg.get("labels"):
        from toolkit.data import check_labels, load_labels

        labels = check_labels(load_labels(cfg.labels, "labels"), cfg.labels, "labels", n=n_old)
    else:
        labels = sides["old"].get("labels", sides["new"].get("labels"))
        if labels is None:
            split = split or _test_split(cfg, "the prediction files hold no labels", "labels=FILE or ")
            labels = split.y_test
        if len(labels) != n_old:
            raise InputError("labels", None, f"{len(labels)} labels for {n_old} predictions (set labels=FILE)")
    ids = sides["old"].get("ids", np.arange(n_old))
    m = evaluate_update(np.asarray(labels, np.int64), sides["old"]["predictions"], sides["new"]["predictions"],
                        ids, sides["old"].get("embeddings"), sides["new"].get("embeddings"), cfg, run)
    if max_nfr is not None:
        m["gate"] = {"max_nfr": max_nfr, "pass": bool(m["nfr"] <= max_nfr)}
    return {"metrics": m}
