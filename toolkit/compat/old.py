"""The old model's outputs for ``toolkit train-compatible``: from a checkpoint, precomputed files, or trained here.

:func:`prepare_old` gives logits, embeddings and the classifier head of the old model on the data's train and
test rows (:class:`OldOutputs`); :func:`class_map_from_config` maps new classes to old ones.  See
``docs/compat.md`` ("Where the old model comes from").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.console import log
from toolkit.errors import InputError


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


def load_matrix(path: str, field_name: str, rows: int, what: str) -> np.ndarray:
    """A precomputed ``[rows, D]`` float32 matrix (old logits or embeddings; ``.npy``/``.npz``/``.csv``).

    Raises:
        InputError: unreadable file, or a row count other than ``rows`` (the ``what`` split's size).
    """
    from toolkit.data import load_features

    x = load_features(path, field_name)
    if x.shape[0] != rows:
        raise InputError(path, field_name, f"has {x.shape[0]} rows but the {what} has {rows} samples")
    return x


def load_head(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """An old classifier head: ``weight [K, E]`` float32 and ``bias [K]`` float32 or None.

    ``.npz`` files hold ``weight`` and optional ``bias``; other feature files hold the weight alone.

    Raises:
        InputError: missing file, an ``.npz`` without ``weight``, or a bias of the wrong shape.
    """
    from toolkit.data.files import open_npz, require_file

    p = require_file(path, "old.head", "old/head.npz")
    if p.suffix.lower() == ".npz":
        with open_npz(p, "old.head", "an .npz head (weight [K, E], optional bias [K])") as z:
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
        net, _, info = load_model(ck, "old.checkpoint", split.in_shape, oc.get("model"), kw,
                                  trust_code=bool(oc.get("trust_code")), opt_in="old.trust_code=true")
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
            hw, hb = load_head(oc.head)
            if hw.shape[0] != tr_l.shape[1]:
                raise InputError(oc.head, "old.head", f"head has {hw.shape[0]} rows but the old model gives "
                                 f"{tr_l.shape[1]} logits")
            if tr_e is not None and hw.shape[1] != tr_e.shape[1]:
                raise InputError(oc.head, "old.head", f"head has {hw.shape[1]} columns but old embeddings have "
                                 f"{tr_e.shape[1]} dimensions")
        out = OldOutputs(tr_l, te_l, tr_e, te_e, hw, hb, int(tr_l.shape[1]), source=f"checkpoint ({info['format']})",
                         net=net)
    elif oc.get("train_logits") or oc.get("train_embeddings"):
        tr_e = load_matrix(oc.train_embeddings, "old.train_embeddings", n_tr, "training set") \
            if oc.get("train_embeddings") else None
        te_e = load_matrix(oc.test_embeddings, "old.test_embeddings", n_te, "test set") \
            if oc.get("test_embeddings") else None
        hw, hb = load_head(oc.head) if oc.get("head") else (None, None)
        if hw is None and tr_e is not None:  # synthesize the whole head from per-class mean old embeddings
            hw = np.stack([tr_e[split.y_train == c].mean(0) for c in range(split.num_classes)]).astype(np.float32)
            hb = np.zeros(len(hw), np.float32)
            log("old head synthesized from per-class mean old embeddings (no old.head given)")
        if hw is not None and tr_e is not None and hw.shape[1] != tr_e.shape[1]:
            raise InputError(oc.head, "old.head", f"head has {hw.shape[1]} columns but old embeddings have "
                             f"{tr_e.shape[1]} dimensions")
        if oc.get("train_logits"):
            tr_l = load_matrix(oc.train_logits, "old.train_logits", n_tr, "training set")
        elif hw is not None and tr_e is not None:
            tr_l = tr_e @ hw.T + (hb if hb is not None else 0.0)
        else:
            raise InputError("old.train_logits", None, "need old logits, or old embeddings to derive them")
        te_l = load_matrix(oc.test_logits, "old.test_logits", n_te, "test set") if oc.get("test_logits") else (
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
        from omegaconf import OmegaConf

        from toolkit.models.classifier import train_classifier
        from toolkit.models.zoo import model_from_config, network_config

        node = network_config(str(oc.get("model") or "mlp"), "old.model")  # configs/network/<old.model>
        node.update(OmegaConf.to_container(oc.kwargs, resolve=True) if oc.get("kwargs") else {})
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
            net = train_classifier(split.x_train[idx], class_map[y[idx]],
                                   lambda shape, k: model_from_config(node, shape, k, "old.model"),
                                   epochs=int(oc.get("epochs") or tc.epochs), batch_size=int(tc.batch_size),
                                   lr=float(tc.lr), trainer_cfg=dict(cfg.trainer), root_dir=run.path("old_logs"),
                                   weight_decay=float(tc.weight_decay), shift_pixels=0, seed=seed + 1).net
        with run.timer("old_inference"):
            tr_l, tr_e = infer(net, split.x_train)
            te_l, te_e = infer(net, split.x_test)
        save_model(run.path("old_model.pt"), net, net.arch, net.arch_kwargs, list(split.in_shape), len(classes),
                   extra={"classes": classes})
        out = OldOutputs(tr_l, te_l, tr_e, te_e, net.head.weight.detach().numpy().copy(),
                         net.head.bias.detach().numpy().copy(), len(classes), class_map=class_map,
                         source=f"trained here ({net.arch}, {len(idx)} samples, classes {classes[0]}..{classes[-1]})",
                         net=net)
    if oc.get("num_classes") is not None and int(oc.num_classes) != out.num_classes:
        raise InputError(ck or "old", "old.num_classes", f"the old head has {out.num_classes} classes but "
                         f"old.num_classes={int(oc.num_classes)}")
    return out


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
        from toolkit.data.files import read_text, reading

        with reading(p, "old.label_map", "a JSON object {new_class: old_class}"):
            label_map = json.loads(read_text(p, "old.label_map", expected="a JSON file"))
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
