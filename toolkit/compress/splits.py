"""Held-out splits of ``toolkit compress``: carving valid/test from one file, and labels unseen in training.

* :func:`carve` holds fractions of one labelled file out as the test and/or validation split
  (``data.test_fraction``, ``data.valid_fraction``; ``data.split.stratify``, ``data.split.seed``).
* :func:`apply_unseen_policy` handles validation/test labels that no training example has
  (``data.unseen_labels=error|drop|other``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from toolkit.compress.schema import UNSEEN_POLICIES
from toolkit.compress.text import TextSplit
from toolkit.errors import InputError

UNSEEN_CLASS = "unseen"
"""Name of the extra class of ``data.unseen_labels=other``: its index is the number of training classes, which
the classifier (one output per training class) can never predict."""


def _subset(split: TextSplit, idx: np.ndarray | list[int]) -> TextSplit:
    return TextSplit([split.texts[i] for i in idx], [split.labels[i] for i in idx], split.source)


def _allocate(sizes: np.ndarray, frac: float, caps: np.ndarray) -> np.ndarray:
    """Per-class counts summing to round(frac * total) where the caps allow (largest remainder)."""
    exact = frac * sizes
    counts = np.minimum(np.floor(exact).astype(np.int64), caps)
    missing = int(round(frac * int(sizes.sum()))) - int(counts.sum())
    for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if missing <= 0:
            break
        if counts[i] < caps[i]:
            counts[i] += 1
            missing -= 1
    return counts


def carve(split: TextSplit, test_fraction: float | None, valid_fraction: float | None, stratify: bool = False,
          seed: int = 0) -> tuple[TextSplit, TextSplit | None, TextSplit | None]:
    """Split one labelled file into train / valid / test with a seed.

    Unstratified (the default): a seeded permutation of the rows (``numpy.random.default_rng(seed)``); the first
    ``round(test_fraction * N)`` rows are the test split, the next ``round(valid_fraction * N)`` the validation
    split, the rest train (with no test fraction this is exactly the earlier ``valid_fraction`` split).
    Stratified: every class is permuted on its own and gives each held-out split its share (largest-remainder
    rounding, so the totals match the unstratified ones where possible), and always keeps at least one training
    example; held-out rows keep their file order.

    Args:
        split: the file's rows.
        test_fraction: share of the rows for the test split, or None (no test split carved).
        valid_fraction: share of the rows for the validation split, or None.
        stratify: keep each class's proportion in every split.
        seed: permutation seed.

    Returns:
        ``(train, valid or None, test or None)``.

    Raises:
        InputError: naming ``data.test_fraction`` / ``data.valid_fraction`` when the fractions leave no training
            row, or a requested split would be empty.
    """
    n = len(split.labels)
    ft, fv = float(test_fraction or 0.0), float(valid_fraction or 0.0)
    if ft + fv >= 1.0:
        raise InputError("data.valid_fraction", None, f"{fv:g} + data.test_fraction {ft:g} >= 1 leaves no training "
                         f"examples of {split.source}")
    rng = np.random.default_rng(seed)
    if not stratify:
        order = rng.permutation(n)
        n_test, n_valid = int(round(ft * n)), int(round(fv * n))
        if n_test + n_valid >= n:
            raise InputError("data.valid_fraction", None, f"leaves no training examples of the {n} in "
                             f"{split.source}")
        test_idx, valid_idx = order[:n_test], order[n_test: n_test + n_valid]
        train_idx = order[n_test + n_valid:]
    else:
        classes = sorted(set(split.labels))
        members = {c: [] for c in classes}
        for i, y in enumerate(split.labels):
            members[y].append(i)
        perms = [rng.permutation(np.asarray(members[c])) for c in classes]
        sizes = np.array([len(p) for p in perms], dtype=np.int64)
        nt = _allocate(sizes, ft, sizes - 1)
        nv = _allocate(sizes, fv, sizes - 1 - nt)
        test_idx = np.sort(np.concatenate([p[:a] for p, a in zip(perms, nt, strict=True)]))
        valid_idx = np.sort(np.concatenate([p[a: a + b] for p, a, b in zip(perms, nt, nv, strict=True)]))
        train_idx = np.sort(np.concatenate([p[a + b:] for p, a, b in zip(perms, nt, nv, strict=True)]))
    for frac, idx, key in ((test_fraction, test_idx, "data.test_fraction"),
                           (valid_fraction, valid_idx, "data.valid_fraction")):
        if frac is not None and len(idx) == 0:
            raise InputError(key, None, f"{float(frac):g} of the {n} examples of {split.source} holds out no "
                             "example; use a larger fraction or give the split as a file")
    return (_subset(split, train_idx), _subset(split, valid_idx) if valid_fraction is not None else None,
            _subset(split, test_idx) if test_fraction is not None else None)


def apply_unseen_policy(split: TextSplit, name: str, classes: list[str], policy: str, train_source: str
                        ) -> tuple[TextSplit, dict]:
    """Handle rows of a validation/test split whose label no training example has.

    Args:
        split: the held-out split.
        name: ``valid`` or ``test`` (for the report).
        classes: the training classes.
        policy: ``error`` (refuse), ``drop`` (remove the rows) or ``other`` (keep them; the caller encodes
            them as the extra :data:`UNSEEN_CLASS`, index ``len(classes)``, which the model cannot predict, so
            they count as errors).
        train_source: the training file, named in the error.

    Returns:
        ``(split, report)``: the split to encode and ``{"rows": int, "labels": {label: count}}`` of the unseen
        rows.

    Raises:
        InputError: with ``error``, naming the split's file, the unseen labels and their row count, and the
            option that accepts them; with ``drop``, a split left empty.
    """
    known = set(classes)
    unseen = Counter(y for y in split.labels if y not in known)
    report = {"rows": int(sum(unseen.values())), "labels": dict(sorted(unseen.items()))}
    if not unseen:
        return split, report
    if policy == "error":
        labels = sorted(unseen)
        raise InputError(split.source, "labels", f"labels {labels[:5]}{' ...' if len(labels) > 5 else ''} "
                         f"({report['rows']} rows) do not occur in the training split {train_source} "
                         f"(known: {classes[:10]}); set data.unseen_labels=drop to remove these rows or "
                         "data.unseen_labels=other to score them as errors")
    keep = [i for i, y in enumerate(split.labels) if y in known]
    if policy == "drop":
        if not keep:
            raise InputError(split.source, "labels", f"every label of the {name} split is unseen in training "
                             f"{train_source}; data.unseen_labels=drop leaves it empty")
        return _subset(split, keep), report
    if policy == "other":
        return split, report  # encoded as class index len(classes) by the caller
    raise InputError("data.unseen_labels", None, f"got {policy!r}; expected one of {', '.join(UNSEEN_POLICIES)}")
