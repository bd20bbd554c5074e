"""Text classification data: readers, tokenization, vocabulary and pretrained word vectors.

Formats (every reader raises :class:`toolkit.errors.InputError` naming file, line and expected form):

* ``lines``: one example per line, ``LABEL<space>sentence`` (SST-2 ``stsa.binary.*``, TREC ``*.all``).
* ``snips``: a folder with line-aligned ``seq.in`` (utterances) and ``label`` (intent names).
* ``csv`` / ``tsv`` (with a header row) and ``jsonl`` (one object per line) with named text and label
  columns.

Tokenization uses scikit-learn's ``CountVectorizer`` analyzer (regex word tokenizer, lower-casing);
the vocabulary keeps words seen at least ``min_freq`` times in the training split, at most
``max_size`` of them by frequency, after the padding (index 0) and OOV (index 1) tokens.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import InputError

PAD, UNK = "<pad>", "<unk>"
TOKEN_PATTERN = r"(?u)\b\w[\w']*\b|[^\w\s]"


@dataclass
class TextSplit:
    """One split: raw texts (list[str]) and string labels (list[str]), from ``source``."""

    texts: list[str]
    labels: list[str]
    source: str


def _check_nonempty(split: TextSplit) -> TextSplit:
    if not split.texts:
        raise InputError(split.source, None, "empty dataset: no examples found")
    return split


def read_label_lines(path: str | Path, int_labels: bool = True) -> TextSplit:
    """Read ``LABEL sentence`` lines (blank lines skipped).

    Args:
        path: text file, UTF-8 (undecodable bytes replaced).
        int_labels: require integer labels (SST-2, TREC), which catches lines missing their label.

    Raises:
        InputError: missing file, empty file, a line with no label or no text.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found (expected 'LABEL sentence' lines)")
    texts, labels = [], []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(None, 1)
            if len(parts) < 2:
                raise InputError(path, f"line {lineno}", f"expected 'LABEL sentence', got {line[:40]!r}")
            label, text = parts
            if int_labels:
                try:
                    int(label)
                except ValueError:
                    raise InputError(path, f"line {lineno}",
                                     f"no label: expected 'LABEL sentence' with an integer LABEL, "
                                     f"got {line[:40]!r}") from None
            labels.append(label)
            texts.append(text)
    return _check_nonempty(TextSplit(texts, labels, str(path)))


def read_snips(folder: str | Path) -> TextSplit:
    """Read a SNIPS split folder with line-aligned ``seq.in`` and ``label`` files.

    Raises:
        InputError: missing files, different line counts, empty text or label lines, no examples.
    """
    folder = Path(folder)
    seq, lab = folder / "seq.in", folder / "label"
    for p in (seq, lab):
        if not p.is_file():
            raise InputError(p, None, "file not found (a SNIPS split folder holds seq.in and label)")
    texts = seq.read_text(encoding="utf-8", errors="replace").splitlines()
    labels = lab.read_text(encoding="utf-8", errors="replace").splitlines()
    while texts and not texts[-1].strip():
        texts.pop()
    while labels and not labels[-1].strip():
        labels.pop()
    if len(texts) != len(labels):
        raise InputError(lab, None, f"{len(labels)} labels for {len(texts)} lines of seq.in (must be line-aligned)")
    for i, (t, y) in enumerate(zip(texts, labels, strict=True), 1):
        if not y.strip():
            raise InputError(lab, f"line {i}", "no label (expected an intent name)")
        if not t.strip():
            raise InputError(seq, f"line {i}", "empty utterance")
    return _check_nonempty(TextSplit([t.strip() for t in texts], [y.strip() for y in labels], str(folder)))


def read_table(path: str | Path, fmt: str, text_column: str, label_column: str) -> TextSplit:
    """Read CSV/TSV (header row) or JSONL with named text and label columns.

    Raises:
        InputError: missing file or column, bad JSON, empty label, no examples.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, f"file not found (expected {fmt.upper()} with columns "
                                     f"{text_column!r} and {label_column!r})")
    texts, labels = [], []
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        if fmt == "jsonl":
            rows = []
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InputError(path, f"line {lineno}", f"invalid JSON ({exc.msg})") from None
        else:
            reader = csv.DictReader(fh, delimiter="\t" if fmt == "tsv" else ",")
            rows = [(i + 2, row) for i, row in enumerate(reader)]
            fields = reader.fieldnames or []
            for col in (text_column, label_column):
                if col not in fields:
                    raise InputError(path, col, f"column not found; header has {fields}")
    for lineno, row in rows:
        if not isinstance(row, dict):
            raise InputError(path, f"line {lineno}", "expected a JSON object per line")
        for col in (text_column, label_column):
            if col not in row:
                raise InputError(path, f"line {lineno}", f"no {col!r} field")
        label = row[label_column]
        if label is None or str(label).strip() == "":
            raise InputError(path, f"line {lineno}", f"no label in column {label_column!r}")
        texts.append(str(row[text_column] or ""))
        labels.append(str(label).strip())
    return _check_nonempty(TextSplit(texts, labels, str(path)))


def infer_format(path: str | Path) -> str:
    """Guess the format from the path: folder -> snips, .csv/.tsv/.jsonl/.json -> table, else lines."""
    p = Path(path)
    if p.is_dir():
        return "snips"
    suffix = p.suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "lines")


def read_split(path: str | Path, fmt: str = "auto", text_column: str = "text", label_column: str = "label",
               int_labels: bool = False) -> TextSplit:
    """Read one split in format ``fmt`` (``auto`` | ``lines`` | ``snips`` | ``csv`` | ``tsv`` | ``jsonl``).

    Raises:
        InputError: unknown format or any reader error.
    """
    fmt = infer_format(path) if fmt == "auto" else fmt
    if fmt == "lines":
        return read_label_lines(path, int_labels=int_labels)
    if fmt == "snips":
        return read_snips(path)
    if fmt in ("csv", "tsv", "jsonl"):
        return read_table(path, fmt, text_column, label_column)
    raise InputError("data.format", None, f"unknown format {fmt!r}; expected auto, lines, snips, csv, tsv or jsonl")


def make_tokenizer(lowercase: bool = True):
    """Word tokenizer: scikit-learn ``CountVectorizer(...).build_analyzer()``; str -> list[str]."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(lowercase=lowercase, token_pattern=TOKEN_PATTERN).build_analyzer()


@dataclass
class Vocabulary:
    """Token <-> index map; index 0 is padding, 1 is the OOV token."""

    itos: list[str]

    def __post_init__(self) -> None:
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, token_lists: list[list[str]], min_freq: int = 1, max_size: int | None = None) -> Vocabulary:
        """Words with count >= ``min_freq``, the ``max_size`` most frequent (ties: first seen), plus PAD/UNK."""
        counts = Counter(w for toks in token_lists for w in toks)
        words = [w for w, c in counts.most_common() if c >= min_freq]
        if max_size:
            words = words[: int(max_size)]
        return cls([PAD, UNK, *words])

    def encode(self, token_lists: list[list[str]], max_len: int) -> np.ndarray:
        """Index matrix int64 [N, max_len], truncated and right-padded with 0; OOV -> 1.

        Empty texts get a single OOV token so that every row has at least one real position.
        """
        out = np.zeros((len(token_lists), max_len), dtype=np.int64)
        unk = self.stoi[UNK]
        for i, toks in enumerate(token_lists):
            ids = [self.stoi.get(w, unk) for w in toks[:max_len]] or [unk]
            out[i, : len(ids)] = ids
        return out


def load_word_vectors(path: str | Path, vocab: Vocabulary, expected_dim: int | None = None,
                      seed: int = 0, token_counts: np.ndarray | None = None
                      ) -> tuple[np.ndarray, dict[str, float]]:
    """Build an embedding table from a GloVe/word2vec text file (``word v1 ... vd`` per line).

    Rows of vocabulary words found in the file get their vector (lower-cased lookup as fallback);
    the others are drawn from N(0, s^2) with s the std of the file's vectors; the padding row is 0.
    A word2vec header line (``count dim``) is skipped.  Undecodable bytes are replaced.

    Args:
        path: vectors file.
        vocab: the vocabulary.
        expected_dim: the model's embedding dimension, if fixed by the config.
        seed: for the random rows.
        token_counts: optional int [V] occurrences of each vocabulary index in the training split,
            to report the fraction of (non-pad) training tokens that have a vector.

    Returns:
        ``(table float32 [V, d], coverage)`` where coverage has ``found`` (words), ``vocab_coverage``
        (fraction of non-special vocabulary words found), ``dim`` and, with ``token_counts``,
        ``train_token_coverage``.

    Raises:
        InputError: missing/empty file, ragged rows, non-numeric values, dimension != ``expected_dim``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found (expected GloVe/word2vec text: 'word v1 ... vd' per line)")
    dim = None
    found: dict[int, np.ndarray] = {}
    lower_found: dict[int, np.ndarray] = {}
    lower_index: dict[str, list[int]] = {}
    for i, w in enumerate(vocab.itos[2:], 2):
        lower_index.setdefault(w.lower(), []).append(i)
    sums, sq, count = 0.0, 0.0, 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n\r ").split(" ")
            if lineno == 1 and len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                continue  # word2vec header
            if len(parts) < 2:
                if not line.strip():
                    continue
                raise InputError(path, f"line {lineno}", "expected 'word v1 ... vd'")
            if dim is None:
                dim = len(parts) - 1
                if expected_dim is not None and dim != int(expected_dim):
                    raise InputError(path, "dimension", f"vectors have {dim} values per word but the model's "
                                     f"embedding_dim is {expected_dim} (set model.embedding_dim={dim} or null)")
            elif len(parts) - 1 != dim:
                raise InputError(path, f"line {lineno}", f"ragged row: {len(parts) - 1} values, expected {dim}")
            word = parts[0]
            idx = vocab.stoi.get(word)
            lower = lower_index.get(word.lower()) if idx is None else None
            if idx is None and not lower:
                continue
            try:
                vec = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise InputError(path, f"line {lineno}", "non-numeric vector value") from None
            sums += float(vec.sum())
            sq += float((vec.astype(np.float64) ** 2).sum())
            count += vec.size
            if idx is not None:
                found[idx] = vec
            else:
                for j in lower:
                    lower_found.setdefault(j, vec)
    if dim is None:
        raise InputError(path, None, "empty vectors file")
    for j, vec in lower_found.items():
        found.setdefault(j, vec)
    mean = sums / count if count else 0.0
    std = float(np.sqrt(max(sq / count - mean**2, 1e-12))) if count else 0.1
    rng = np.random.default_rng(seed)
    table = rng.normal(0.0, std, size=(len(vocab), dim)).astype(np.float32)
    if found:
        idx = np.fromiter(found.keys(), dtype=np.int64)
        table[idx] = np.stack([found[i] for i in idx])
    table[0] = 0.0
    n_words = max(len(vocab) - 2, 1)
    n_found = sum(1 for i in found if i >= 2)
    cov = {"found": n_found, "vocab_words": len(vocab) - 2, "vocab_coverage": n_found / n_words, "dim": dim}
    if token_counts is not None:
        has = np.zeros(len(vocab), dtype=bool)
        has[[i for i in found if i >= 2]] = True
        counts = np.asarray(token_counts, dtype=np.float64)[: len(vocab)]
        cov["train_token_coverage"] = float(counts[has].sum() / max(counts[1:].sum(), 1.0))
    return table, cov
