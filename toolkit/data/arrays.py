"""Feature and label files: ``.npy``, ``.npz``, ``.csv``/``.txt`` and learn-to-cluster ``.bin``/``.meta``.

learn-to-cluster (yl-1993/learn-to-cluster, ``DATASET.md``) stores features as
raw little-endian float32 rows (``.bin``, the dimension given separately) and
labels as one integer per line (``.meta``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.data.files import load_npy, load_npz_member, read_text, reading, require_file
from toolkit.errors import InputError


def _npz_array(p: Path, field: str, preferred: tuple[str, ...]) -> np.ndarray:
    return load_npz_member(p, field, preferred, f"an .npz archive holding {'/'.join(preferred)}", required=True)


def load_features(path: str | Path, field: str = "features", feature_dim: int | None = None) -> np.ndarray:
    """Read a feature matrix from ``.npy``, ``.npz``, ``.csv``/``.txt`` or float32 ``.bin``.

    Args:
        path: the file.  For ``.npz`` the array named ``features`` (or the only array) is used.
            ``.csv`` has one row per sample, comma separated, an optional header row.
            ``.bin`` is learn-to-cluster's raw float32 rows and needs ``feature_dim``.
        field: name used in error messages (usually the config key).
        feature_dim: row length for ``.bin`` files.

    Returns:
        float32 array of shape ``[N, D]``.

    Raises:
        InputError: missing or unreadable file, wrong shape (not 2-D, empty), NaN or inf values,
            ``.bin`` without ``feature_dim`` or with a size not divisible by it.
    """
    p = require_file(path, field)
    suffix = p.suffix.lower()
    with reading(p, field, f"a {suffix or 'feature'} matrix [samples, dims]"):
        if suffix == ".npy":
            x = load_npy(p, field, "a .npy matrix [samples, dims]")
        elif suffix == ".npz":
            x = _npz_array(p, field, ("features", "x", "X", "embeddings"))
        elif suffix in (".csv", ".txt", ".tsv"):
            x = _read_text_matrix(p, field)
        elif suffix in (".bin", ".fvecs32", ".f32"):
            if not feature_dim:
                raise InputError(p, field, "a .bin feature file needs data.feature_dim (floats per row)")
            raw = np.fromfile(p, dtype="<f4")
            if raw.size % int(feature_dim):
                raise InputError(p, field, f"file holds {raw.size} float32 values, not a multiple of "
                                 f"feature_dim={feature_dim}")
            x = raw.reshape(-1, int(feature_dim))
        else:
            raise InputError(p, field, f"unknown feature format '{suffix}' (expected .npy, .npz, .csv or .bin)")
    return check_features(x, p, field)


def _read_text_matrix(p: Path, field: str) -> np.ndarray:
    lines = read_text(p, field, expected="a numeric text matrix").split("\n")
    first = lines[0]
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    if delimiter not in first and p.suffix.lower() == ".txt":
        delimiter = None  # whitespace separated
    skip = 0
    try:
        [float(v) for v in first.replace(",", " ").split()]
    except ValueError:
        skip = 1  # header row
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if i >= skip and ln.strip()]
    if not numbered:
        raise InputError(p, field, "no data rows (only a header, or blank lines)")
    try:
        return np.loadtxt([ln for _, ln in numbered], delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError:
        pass  # find the first bad line on this slow path only, to name it as the user sees the file
    width = len(numbered[0][1].split(delimiter))
    for number, line in numbered:
        cells = line.split(delimiter)
        if len(cells) != width:
            raise InputError(p, field, f"line {number} has {len(cells)} fields, expected {width} like the "
                             "first data row") from None
        for col, cell in enumerate(cells, 1):
            try:
                float(cell)
            except ValueError:
                raise InputError(p, field, f"line {number}, column {col}: {cell.strip()[:40]!r} is not a "
                                 "number") from None
    raise InputError(p, field, "cannot parse as a numeric matrix")


def check_features(x: np.ndarray, source: object, field: str = "features") -> np.ndarray:
    """Validate a feature matrix and return it as C-contiguous float32 ``[N, D]``.

    Raises:
        InputError: not numeric, not 2-D, no rows or columns, or NaN/inf values.
    """
    x = np.asarray(x)
    if x.dtype == object or not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InputError(source, field, f"expected a real-valued numeric array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise InputError(source, field, f"expected a 2-D array [samples, dims], got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(source, field, f"expected a non-empty [samples, dims] array, got shape {x.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf, reported below
        x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise InputError(source, field, f"contains NaN or inf, or values beyond float32's range (+-3.4e38) "
                         f"({int(bad.sum())} values; first in row {row})")
    return x


def load_labels(path: str | Path, field: str = "labels", allow_names: bool = True) -> np.ndarray:
    """Read integer labels from ``.npy``, ``.npz``, or text (``.meta``/``.txt``/``.csv``, one per line).

    Non-integer text labels (class names) are mapped to integers in sorted order when ``allow_names``; otherwise
    (labels compared with a model's integer predictions) they are refused.

    Returns:
        int64 array of shape ``[N]``.

    Raises:
        InputError: missing/unreadable file, not 1-D, empty.
    """
    p = require_file(path, field)
    suffix = p.suffix.lower()
    with reading(p, field, f"a {suffix or 'label'} file of labels [N]"):
        if suffix == ".npy":
            y = load_npy(p, field, "a .npy label array [N]")
        elif suffix == ".npz":
            y = _npz_array(p, field, ("labels", "y", "targets"))
        else:  # split on "\n" only: str.splitlines would also split inside a line at U+2028 etc.
            text = read_text(p, field, expected="a label file, one label per line")
            tokens = [line.strip().split(",")[-1].strip() for line in text.split("\n")]
            tokens = [t for t in tokens if t]
            try:
                y = np.array([int(t) for t in tokens], dtype=np.int64)
            except ValueError:
                if tokens and not _is_int(tokens[0]) and all(_is_int(t) for t in tokens[1:]):
                    y = np.array([int(t) for t in tokens[1:]], dtype=np.int64)  # header row
                else:
                    y = np.array(tokens)
    y = np.asarray(y)
    if not allow_names and not (np.issubdtype(y.dtype, np.number) and not np.issubdtype(y.dtype, np.complexfloating)):
        example = str(y.reshape(-1)[0]) if y.size else ""
        raise InputError(p, field, f"expected integer class ids like the predictions, got names (e.g. {example!r})")
    return check_labels(y, p, field)


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def check_labels(y: np.ndarray, source: object, field: str = "labels", n: int | None = None,
                 nonnegative: bool = False) -> np.ndarray:
    """Validate labels and return them as int64 ``[N]``.

    Args:
        y: candidate labels; a ``[N, 1]`` column is accepted and flattened.
        n: expected length (the number of feature rows), if known.
        nonnegative: refuse negative ids (a ``-1`` "unlabelled" marker would otherwise count as a class).

    Raises:
        InputError: not 1-D, empty, non-integer values, negative ids with ``nonnegative``, or length
            different from ``n``.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.size == 0:
        raise InputError(source, field, f"expected a non-empty 1-D label array, got shape {tuple(y.shape)}")
    if np.issubdtype(y.dtype, np.complexfloating):
        raise InputError(source, field, f"expected integer labels, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise InputError(source, field, "expected integer labels, got non-integer values")
        if np.abs(y).max() > 2.0**53:
            raise InputError(source, field, f"label {np.abs(y).max():.3g} is beyond the exact integer range of "
                             "floats (2^53); store labels as integers 0..C-1")
    elif not np.issubdtype(y.dtype, np.integer):
        _, y = np.unique(y, return_inverse=True)
    y = y.astype(np.int64)
    if n is not None and y.shape[0] != n:
        raise InputError(source, field, f"has {y.shape[0]} labels but the features have {n} rows")
    if nonnegative and y.min() < 0:
        row = int(np.argmax(y < 0))
        raise InputError(source, field, f"labels must be ids >= 0; found {int(y[row])} at row {row} (a -1 "
                         "'unlabelled' marker would be scored as one class: drop those rows)")
    return y
