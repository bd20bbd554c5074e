"""Turning ``cfg.data`` into a labelled train/test split for model-update experiments.

Kinds (``data.kind``):

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), stratified split;
* ``images``: MNIST IDX files or a class-folder directory/zip (Omniglot); without test files the
  training set is split per class;
* ``features``: ``.npy``/``.npz``/``.csv`` feature and label files for models whose backbone is elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data import check_features, check_labels, load_features, load_idx, load_image_folder, load_labels
from toolkit.errors import InputError


@dataclass
class Split:
    """A labelled train/test split.

    Attributes:
        x_train: float32 ``[N, ...]``; y_train: int64 ``[N]`` in ``[0, C)``.
        x_test: float32 ``[M, ...]``; y_test: int64 ``[M]``.
        ids_test: ``[M]`` sample ids of the test set (row index unless the data names them).
        num_classes: C.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ids_test: np.ndarray
    num_classes: int

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Input shape without the batch dimension."""
        return tuple(int(s) for s in self.x_train.shape[1:])


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if hasattr(cfg, "get") else default


def _stratified_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:  # checked here, with the file's key, before scikit-learn's own ValueError
        few = classes[counts < 2][:10].tolist()
        raise InputError("data", "train_labels", f"splitting a test set per class (data.test_fraction) needs at "
                         f"least 2 samples per class; classes {few} have 1 (labels must be 0..C-1; give "
                         "data.test_features/test_labels or drop those rows)")
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    tr, te = np.sort(tr), np.sort(te)
    return x[tr], y[tr], x[te], y[te], te


def _subsample(x: np.ndarray, y: np.ndarray, n: int | None, seed: int, ids: np.ndarray | None = None):
    if not n or n >= len(y):
        return x, y, ids
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=int(n), stratify=y, random_state=seed)
    keep = np.sort(keep)
    return x[keep], y[keep], (ids[keep] if ids is not None else None)


def load_split(data_cfg: Any, seed: int = 0) -> Split:
    """Load ``cfg.data`` as a :class:`Split`.

    Config keys: ``kind``; ``test_fraction`` (split when there is no test set); ``max_train`` /
    ``max_test`` (stratified subsample, null = all); kind-specific file keys (see ``configs/compat/data``).

    Raises:
        InputError: unknown kind, missing files or labels, NaN features, mismatched row counts, negative
            labels, or a class with no training sample.
    """
    kind = _get(data_cfg, "kind")
    frac = float(_get(data_cfg, "test_fraction", 0.25) or 0.25)
    ids_test = None
    if kind == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images.astype(np.float32) / 16.0)[:, None]
        xtr, ytr, xte, yte, ids_test = _stratified_split(x, d.target.astype(np.int64), frac, seed)
    elif kind == "images":
        xtr, ytr, names_tr = _load_images(data_cfg, "train")
        if _get(data_cfg, "test_images"):
            xte, yte, names_te = _load_images(data_cfg, "test")
            if names_tr is not None and names_te is not None:  # folders: match test classes by name
                index = {n: i for i, n in enumerate(names_tr)}
                unknown = [n for n in names_te if n not in index]
                if unknown:
                    raise InputError(_get(data_cfg, "test_images"), "test_images", f"class folders {unknown[:5]} "
                                     "do not occur in the training images")
                yte = np.array([index[n] for n in names_te], np.int64)[yte]
        else:
            xtr, ytr, xte, yte, ids_test = _stratified_split(xtr, ytr, frac, seed)
    elif kind == "features":
        xtr = load_features(_req(data_cfg, "train_features"), "data.train_features",
                            _get(data_cfg, "feature_dim"))
        ytr = check_labels(load_labels(_req(data_cfg, "train_labels"), "data.train_labels"),
                           _get(data_cfg, "train_labels"), "data.train_labels", n=len(xtr))
        if _get(data_cfg, "test_features"):
            xte = load_features(data_cfg.test_features, "data.test_features", _get(data_cfg, "feature_dim"))
            yte = check_labels(load_labels(_req(data_cfg, "test_labels"), "data.test_labels"),
                               data_cfg.test_labels, "data.test_labels", n=len(xte))
        else:
            xtr, ytr, xte, yte, ids_test = _stratified_split(xtr, ytr, frac, seed)
    else:
        raise InputError("data.kind", None, f"unknown kind {kind!r} for train-compatible "
                         "(expected digits, images or features)")
    if ids_test is None:
        ids_test = np.arange(len(yte))
    xtr, ytr, _ = _subsample(xtr, ytr, _get(data_cfg, "max_train"), seed)
    xte, yte, ids_test = _subsample(xte, yte, _get(data_cfg, "max_test"), seed, ids_test)
    if xtr.shape[1:] != xte.shape[1:]:
        raise InputError("data", "test", f"test inputs have shape {xte.shape[1:]}, training inputs {xtr.shape[1:]}")
    if min(int(ytr.min()), int(yte.min())) < 0:
        which = "train_labels" if int(ytr.min()) < 0 else "test_labels"
        raise InputError("data", which, "labels must be integers 0..C-1; found a negative label")
    num_classes = int(max(ytr.max(), yte.max())) + 1
    present = np.unique(ytr)  # checked before anything is sized by the largest id (a label of 1e9 is not 1e9 classes)
    if len(present) != num_classes:
        missing = _first_missing(present, num_classes)
        raise InputError("data", "train_labels", f"labels must be 0..C-1 with every class in the training "
                         f"set; the largest label is {num_classes - 1} but only {len(present)} classes have "
                         f"training samples (missing: {missing}{' ...' if len(missing) == 10 else ''})")
    return Split(np.ascontiguousarray(xtr, np.float32), ytr.astype(np.int64),
                 np.ascontiguousarray(xte, np.float32), yte.astype(np.int64), np.asarray(ids_test), num_classes)


def _first_missing(present: np.ndarray, num_classes: int, limit: int = 10) -> list[int]:
    """The first ``limit`` ids of ``0..num_classes-1`` absent from the sorted unique ``present`` (no
    ``num_classes``-sized allocation)."""
    out: list[int] = []
    expected = 0
    for v in [*present.tolist(), num_classes]:
        while expected < min(int(v), num_classes) and len(out) < limit:
            out.append(expected)
            expected += 1
        if len(out) >= limit:
            break
        expected = int(v) + 1
    return out


def _req(cfg: Any, key: str) -> str:
    value = _get(cfg, key)
    if not value:
        raise InputError(f"data.{key}", None, "is required for this data kind")
    return str(value)


def _load_images(cfg: Any, which: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Images ``[N, C, H, W]`` (``data.channels``), labels ``[N]`` and the class folder names (None for IDX files)."""
    path = Path(_req(cfg, f"{which}_images")).expanduser()
    if not (path.is_file() and path.suffix.lower() != ".zip"):  # folder, zip, or a folder inside a zip
        x, y, names = load_image_folder(path, int(_get(cfg, "image_size", 28) or 0),
                                        _channels(cfg), bool(_get(cfg, "invert")))
        return x, y, list(names)
    x, y = load_idx(path, _req(cfg, f"{which}_labels"))
    if y is None:  # pragma: no cover - load_idx returns labels when a path is given
        raise InputError(path, "labels", "missing")
    return x, y, None


def _channels(cfg: Any) -> int:
    channels = _get(cfg, "channels", 1)
    if channels not in (1, 3):
        raise InputError("data.channels", None, f"must be 1 (greyscale) or 3 (RGB), got {channels!r}")
    return int(channels)


def check_finite(x: np.ndarray, source: str) -> None:
    """Raise :class:`InputError` when ``x`` has NaN/inf (delegates to ``check_features`` for 2-D data)."""
    flat = x.reshape(len(x), -1)
    check_features(flat, source)
