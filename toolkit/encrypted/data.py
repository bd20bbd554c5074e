"""Binary datasets for encrypted logistic regression: loading, scaling, label-signed features, minibatches.

Datasets: scikit-learn's bundled breast-cancer data (default), MNIST 3 vs 8 at 14x14 (2x2 mean pooling,
196 features, as Han et al. 2018 / HELR), and a CSV file with a label column.  Features are scaled
column-wise into [-1, 1] (divided by the training max |value| after centring at the training
mid-range), the range in which ``|z . w|`` stays inside the sigmoid approximation's interval for
moderate weights; the scaling is saved with the model.  Samples are turned into Han et al.'s
``z_i = y_i (1, x_i)`` with ``y_i`` in {-1, +1}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import InputError


@dataclass
class BinaryData:
    """A train/test split with 0/1 labels.

    Attributes:
        x_train: float64 ``[n, d]``; y_train: int64 ``[n]`` in {0, 1}; likewise for test.
        feature_names: length ``d``.
        source: description for reports.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    source: str


@dataclass
class Scaling:
    """Per-feature scaling ``(clip(x, lo, hi) - center) / scale`` (saved with the model).

    Every method but ``standard`` maps the training values into [-1, 1]; ``standard`` gives unit variance.
    ``lo``/``hi`` are None except for ``robust`` and ``standard`` scaling (winsorising bounds in the raw
    feature units).
    """

    center: np.ndarray
    scale: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None

    @classmethod
    def fit(cls, x: np.ndarray, method: str = "maxabs", clip_quantile: float = 0.99) -> Scaling:
        """Fit on training features float ``[n, d]``.

        ``maxabs`` (Han et al.'s ``normalizeZData``): divide by the column's max |x|, no centring, so
        zeros (e.g. MNIST background) stay 0.  ``minmax``: mid-range centre and half-range scale.  ``mean``:
        centre at the training mean, divide by the largest |x - mean|.  ``robust``: first winsorise each column
        to its ``[1 - clip_quantile, clip_quantile]`` training quantiles, then ``mean`` on the clipped values.
        ``standard``: winsorise as ``robust``, centre at the clipped mean and divide by the clipped standard
        deviation (a winsorised z-score; values are bounded by the clip range, a few units).
        Constant columns get scale 1.

        Centring matters for tables of positive, skewed columns (amounts, counts): uncentred, every feature
        shares a large common component with the bias, the first gradient steps move along it, and a
        10-iteration model ranks worse than chance (measured in docs/encrypted.md); ``mean`` removes it.
        Winsorising matters for heavy tails: dividing by the largest deviation leaves the bulk of a column
        near 0, a direction the few iterations of the circuit barely move along (measured in docs/encrypted.md,
        ``benchmarks/encrypted_plain_sweep.py``).  Unit variance matters for conditioning: gradient steps on a
        column grow with its variance while the bias column is constant 1, so after ``robust`` scaling (column
        standard deviations about 0.2 on a credit-style table) ten iterations move the bias to the class
        prior and leave the slopes at a few percent of exact LR's, and every test point falls on the majority
        side; ``standard`` equalises the curvature of bias and slopes (docs/encrypted.md).

        Raises:
            InputError: unknown method, or ``clip_quantile`` outside (0.5, 1].
        """
        lo = hi = None
        if method == "maxabs":
            center = np.zeros(x.shape[1])
            half = np.abs(x).max(axis=0)
        elif method == "minmax":
            lo_, hi_ = x.min(axis=0), x.max(axis=0)
            center = (hi_ + lo_) / 2.0
            half = (hi_ - lo_) / 2.0
        elif method in ("mean", "robust", "standard"):
            if method in ("robust", "standard"):
                if not 0.5 < float(clip_quantile) <= 1.0:
                    raise InputError("config", "data.clip_quantile", f"got {clip_quantile}; expected a number in "
                                     "(0.5, 1] (0.99 clips each column to its 1st..99th percentile)")
                lo, hi = np.quantile(x, [1.0 - clip_quantile, clip_quantile], axis=0)
                x = np.clip(x, lo, hi)
            center = x.mean(axis=0)
            half = x.std(axis=0) if method == "standard" else np.abs(x - center).max(axis=0)
        else:
            raise InputError("config", "data.scaling",
                             f"unknown {method!r}; expected maxabs, minmax, mean, robust or standard")
        return cls(center.astype(np.float64), np.where(half > 0, half, 1.0).astype(np.float64),
                   None if lo is None else lo.astype(np.float64), None if hi is None else hi.astype(np.float64))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Scale ``[n, d]`` features (test values may fall slightly outside [-1, 1] unless clipped)."""
        x = np.asarray(x, dtype=np.float64)
        if self.lo is not None and self.hi is not None:
            x = np.clip(x, self.lo, self.hi)
        return (x - self.center) / self.scale

    def to_dict(self) -> dict:
        """JSON-ready dict (``clip_lo``/``clip_hi`` only for robust and standard scaling)."""
        out = {"center": self.center.tolist(), "scale": self.scale.tolist()}
        if self.lo is not None and self.hi is not None:
            out.update({"clip_lo": self.lo.tolist(), "clip_hi": self.hi.tolist()})
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Scaling:
        """Inverse of :meth:`to_dict`."""
        lo, hi = d.get("clip_lo"), d.get("clip_hi")
        return cls(np.asarray(d["center"], dtype=np.float64), np.asarray(d["scale"], dtype=np.float64),
                   None if lo is None else np.asarray(lo, dtype=np.float64),
                   None if hi is None else np.asarray(hi, dtype=np.float64))


def _check_binary(y: np.ndarray, source: object, field: str) -> np.ndarray:
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)):
        raise InputError(source, field, "labels contain NaN or inf; expected 0/1")
    bad = ~np.isin(y, [0, 1])
    if bad.any():
        raise InputError(source, field, f"labels must be 0 or 1; found {np.unique(y[bad])[:5].tolist()}")
    return y.astype(np.int64)


def _check_x(x: np.ndarray, source: object, field: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(source, field, f"expected a non-empty [samples, features] table, got {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise InputError(source, field, f"contains NaN or inf ({int(bad.sum())} values; first at row {r}, "
                         f"column {c}); expected finite numbers")
    return x


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple:
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)


def _cell_error(p: Path, line: int, col: int, name: str, value: str) -> InputError:
    shown = value if len(value) <= 20 else value[:17] + "..."
    what = "an empty cell" if not value.strip() else f"{shown!r}"
    return InputError(p, name, f"line {line}, column {col} ({name!r}) holds {what}; expected a finite number")


def read_csv(path: str | Path, label_column: str, field: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a numeric CSV with a header row and a label column.

    Parsed with the standard library's ``csv`` module (quoted names such as ``"default payment"`` work);
    a UTF-8 byte-order mark is stripped.  Errors give the file's own 1-based line and column numbers
    (the header is line 1, the label column counts) and the column name.

    Returns:
        ``(x float64 [n, d], y int64 [n] in {0, 1}, feature names)``.

    Raises:
        InputError: missing file, no header/label column, no data rows, a row with the wrong number of
            fields, a non-numeric, empty, NaN or infinite cell, labels not 0/1.
    """
    import csv

    if path is None or not str(path).strip():
        raise InputError("config", field, "required: the path of a CSV file with a header row and a 0/1 label column")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise InputError(p, field, "file not found")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows, lines = [], []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank lines
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise InputError(p, field, f"not UTF-8 text (byte {exc.start}); expected a CSV file") from None
    except csv.Error as exc:
        raise InputError(p, field, f"line {reader.line_num}: {exc}") from None
    if not header:
        raise InputError(p, field, "empty file; expected a header row, then one row per sample")
    if label_column not in header:
        raise InputError(p, field, f"no column named {label_column!r} in the header {header[:8]} "
                         "(set data.label_column)")
    if not rows:
        raise InputError(p, field, "no data rows (only a header); expected one row per sample")
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise InputError(p, field, f"line {line} has {len(row)} fields, the header has {len(header)}")
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:
        for row, line in zip(rows, lines, strict=True):
            for c, value in enumerate(row):
                try:
                    float(value)
                except ValueError:
                    raise _cell_error(p, line, c + 1, header[c], value) from None
        raise  # unreachable: np.array failed on a table whose cells all parse
    bad = ~np.isfinite(table)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise _cell_error(p, lines[r], c + 1, header[c], rows[r][c])
    li = header.index(label_column)
    y = _check_binary(table[:, li], p, label_column)
    names = [h for i, h in enumerate(header) if i != li]
    x = _check_x(np.delete(table, li, axis=1), p, "features")
    return x, y, names


def load_dataset(cfg: Any, seed: int) -> BinaryData:
    """Load the dataset described by ``cfg`` (the ``data`` config group).

    ``kind``: ``breast_cancer`` (sklearn, ``test_fraction``), ``mnist38`` (IDX files ``train_images``,
    ``train_labels``, ``test_images``, ``test_labels``; digits ``positive``/``negative``; ``pool``),
    ``csv`` (``path``, ``label_column``, optional ``test_path`` else ``test_fraction``).  ``max_train``
    (optional) keeps the first that many training samples (after a seeded shuffle).

    Raises:
        InputError: unknown kind, unreadable files, NaN features, labels other than 0/1.
    """
    kind = str(cfg.get("kind"))
    frac = float(cfg.get("test_fraction", 0.3) or 0.3)
    if kind == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        ds = load_breast_cancer()
        xtr, xte, ytr, yte = _split(ds.data.astype(np.float64), ds.target.astype(np.int64), frac, seed)
        data = BinaryData(xtr, ytr, xte, yte, list(ds.feature_names), "sklearn breast cancer (569 x 30)")
    elif kind == "mnist38":
        from toolkit.data import load_idx

        pos, neg = int(cfg.get("positive", 8)), int(cfg.get("negative", 3))
        pool = int(cfg.get("pool", 2))
        parts = []
        for split in ("train", "test"):
            x, y = load_idx(cfg.get(f"{split}_images"), cfg.get(f"{split}_labels"))
            keep = np.isin(y, [pos, neg])
            x = x[keep, 0]
            n, h, w = x.shape
            x = x[:, : h - h % pool, : w - w % pool].reshape(n, h // pool, pool, w // pool, pool).mean(axis=(2, 4))
            parts.append((x.reshape(n, -1).astype(np.float64), (y[keep] == pos).astype(np.int64)))
        (xtr, ytr), (xte, yte) = parts
        side = int(np.sqrt(xtr.shape[1]))
        data = BinaryData(xtr, ytr, xte, yte, [f"px{i}" for i in range(xtr.shape[1])],
                          f"MNIST {neg} vs {pos} ({side}x{side})")
    elif kind == "csv":
        label = str(cfg.get("label_column", "label"))
        x, y, names = read_csv(cfg.get("path"), label, "data.path")
        if cfg.get("test_path"):
            xte, yte, names_te = read_csv(cfg.get("test_path"), label, "data.test_path")
            if names_te != names:
                raise InputError(cfg.get("test_path"), "header", f"columns {names_te[:6]} differ from the "
                                 f"training file's {names[:6]}")
            xtr, ytr = x, y
        else:
            if len(np.unique(y)) < 2 or np.bincount(y).min() < 2:
                raise InputError(cfg.get("path"), label, "needs at least two samples of each class")
            xtr, xte, ytr, yte = _split(x, y, frac, seed)
        data = BinaryData(xtr, ytr, xte, yte, names, f"CSV {cfg.get('path')}")
    else:
        raise InputError("config", "data.kind", f"unknown {kind!r}; expected breast_cancer, mnist38 or csv")
    if len(np.unique(data.y_train)) < 2:
        raise InputError("config", "data", "the training labels hold a single class; need both 0 and 1")
    max_train = cfg.get("max_train")
    if max_train:
        order = np.random.default_rng(seed).permutation(len(data.y_train))[: int(max_train)]
        data.x_train, data.y_train = data.x_train[order], data.y_train[order]
    return data


def signed_features(x_scaled: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Han et al.'s ``z_i = y'_i (1, x_i)`` with ``y' = 2y - 1``: float64 ``[n, d + 1]`` (bias first)."""
    ones = np.ones((x_scaled.shape[0], 1))
    return (2.0 * y - 1.0)[:, None] * np.hstack([ones, x_scaled])


def minibatch_indices(n: int, batch_size: int | None, seed: int) -> list[np.ndarray]:
    """Seeded shuffle of ``n`` samples split into ``ceil(n / batch_size)`` near-equal minibatches."""
    order = np.random.default_rng(seed).permutation(n)
    m = 1 if not batch_size or batch_size >= n else int(np.ceil(n / int(batch_size)))
    return [np.sort(part) for part in np.array_split(order, m)]
