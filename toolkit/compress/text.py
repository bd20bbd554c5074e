"""Text classification data: readers, tokenization, vocabulary and pretrained word vectors.

Formats (every reader raises :class:`toolkit.errors.InputError` naming file, line and expected form):

* ``lines``: one example per line, ``LABEL<space>sentence`` (SST-2 ``stsa.binary.*``, TREC ``*.all``).
* ``snips``: a folder with line-aligned ``seq.in`` (utterances) and ``label`` (intent names).
* ``csv`` / ``tsv`` (a header row, or ``header=False`` with 0-based column indices) and ``jsonl`` (one object
  per line) with named text and label columns.

Every file is decoded strictly in the configured encoding (UTF-8 by default, byte-order mark skipped) and split
into lines at ``\\n`` only; paths may use ``~`` and ``$VAR`` (:mod:`toolkit.compress.files`).  Word vectors
may be plain text, ``.gz`` or a zip archive of text members.

Tokenization uses scikit-learn's ``CountVectorizer`` analyzer (regex word tokenizer, lower-casing);
the vocabulary keeps words seen at least ``min_freq`` times in the training split, at most
``max_size`` of them by frequency, after the padding (index 0) and OOV (index 1) tokens.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.compress.files import compressed_errors, decode_lines, expand_path, open_vectors, read_lines
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


def _existing(path: str | Path, key: str, expected: str) -> Path:
    p = expand_path(path, key)
    if not p.exists():
        raise InputError(p, None, f"file not found ({key}; expected {expected})")
    return p


def read_label_lines(path: str | Path, int_labels: bool = True, encoding: str = "utf-8",
                     key: str = "data.train") -> TextSplit:
    """Read ``LABEL sentence`` lines (blank lines skipped).

    Args:
        path: text file in ``encoding`` (decoded strictly; a UTF-8 byte-order mark is skipped; lines end at
            ``\\n`` only, see :mod:`toolkit.compress.files`); ``~`` and ``$VAR`` are expanded.
        int_labels: require integer labels (SST-2, TREC), which catches lines missing their label.
        encoding: the file's text encoding (``data.encoding``).
        key: the config key of ``path``, named when the file is missing.

    Returns:
        :class:`TextSplit` with the texts and string labels in file order.

    Raises:
        InputError: missing file, undecodable bytes, empty file, a line with no label or no text.
    """
    path = _existing(path, key, "'LABEL sentence' lines")
    if not path.is_file():
        raise InputError(path, None, f"is a folder ({key}; expected a file of 'LABEL sentence' lines)")
    texts, labels = [], []
    for lineno, line in read_lines(path, encoding):
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


def read_snips(folder: str | Path, encoding: str = "utf-8", key: str = "data.train") -> TextSplit:
    """Read a SNIPS split folder with line-aligned ``seq.in`` and ``label`` files.

    Lines end at ``\\n`` only, so a U+2028 inside an utterance does not shift the alignment (Python's
    :meth:`str.splitlines` would split there).

    Args:
        folder: the split folder (``~`` and ``$VAR`` are expanded).
        encoding: text encoding of both files (``data.encoding``).
        key: the config key of ``folder``, named when it is missing.

    Returns:
        :class:`TextSplit` (utterances and intent names, stripped).

    Raises:
        InputError: missing files, undecodable bytes, different line counts, empty text or label lines,
            no examples.
    """
    folder = expand_path(folder, key)
    seq, lab = folder / "seq.in", folder / "label"
    for p in (seq, lab):
        if not p.is_file():
            raise InputError(p, None, f"file not found ({key}; a SNIPS split folder holds seq.in and label)")
    texts = [t for _, t in read_lines(seq, encoding)]
    labels = [y for _, y in read_lines(lab, encoding)]
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


def column_spec(value: object, key: str, header: bool, fmt: str) -> str | int:
    """A configured text/label column: a header name (str) or a 0-based index (int, CSV/TSV only).

    Hydra reads ``data.text_column=0`` as the int 0; a string of digits (``'0'``) is taken as an index too
    when there is no header row.

    Raises:
        InputError: naming ``key``: a negative index, an index for JSONL, or a name without a header row.
    """
    if isinstance(value, bool):
        raise InputError(key, None, f"got {value!r}; expected a column name or a 0-based column index")
    if isinstance(value, str) and not header and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if fmt == "jsonl":
            raise InputError(key, None, f"got the index {value}; JSONL rows are objects: give a field name")
        if value < 0:
            raise InputError(key, None, f"got {value}; expected a 0-based column index >= 0")
        return value
    if not header and fmt != "jsonl":
        raise InputError(key, None, f"{value!r} names a column but data.header=false (no header row): give a "
                         f"0-based index, e.g. {key}=0")
    return str(value)


def _table_rows(path: Path, fmt: str, header: bool, encoding: str, cols: list[str | int], keys: list[str]
                ) -> tuple[list[tuple[int, list[str]]], list[int]]:
    """CSV/TSV rows as ``(line number, fields)`` and the index of each configured column."""
    lines = read_lines(path, encoding, keepends=True)
    reader = csv.reader((t for _, t in lines), delimiter="\t" if fmt == "tsv" else ",")
    rows: list[tuple[int, list[str]]] = []
    consumed = 0
    try:
        for fields in reader:
            start, consumed = consumed + 1, reader.line_num  # a quoted field may span lines
            if fields:
                rows.append((start, fields))
    except csv.Error as exc:
        raise InputError(path, f"line {reader.line_num}", f"not valid {fmt.upper()} ({exc})") from None
    index = []
    names: list[str] = []
    if header:
        if not rows:
            raise InputError(path, None, "empty dataset: no header row (data.header=true expects column names)")
        names = [f.strip() for f in rows[0][1]]
        rows = rows[1:]
    for col, key in zip(cols, keys, strict=True):
        if isinstance(col, int):
            index.append(col)
        elif col in names:
            index.append(names.index(col))
        else:
            raise InputError(path, col, f"column not found; header has {names} (set {key}=NAME, or "
                             "data.header=false with 0-based indices if the file has no header row)")
    return rows, index


def read_table(path: str | Path, fmt: str, text_column: str | int, label_column: str | int, header: bool = True,
               encoding: str = "utf-8", key: str = "data.train") -> TextSplit:
    """Read CSV/TSV or JSONL with named (or, for CSV/TSV, 0-based indexed) text and label columns.

    Args:
        path: the file (``~`` and ``$VAR`` are expanded); decoded strictly in ``encoding``, UTF-8 byte-order
            mark skipped, records end at ``\\n`` only (quoted CSV fields may span lines).
        fmt: ``csv`` | ``tsv`` | ``jsonl``.
        text_column / label_column: a header name (JSONL: field name) or a 0-based index (CSV/TSV).
        header: CSV/TSV: the first row names the columns (``data.header``); false: every row is data and the
            columns must be indices.
        encoding: text encoding (``data.encoding``).
        key: the config key of ``path``, named when the file is missing.

    Returns:
        :class:`TextSplit`; the line of a CSV record is the line it starts on.

    Raises:
        InputError: missing file or column, undecodable bytes, bad CSV or JSON, a row too short for a column
            index, empty label, no examples.
    """
    path = _existing(path, key, f"{fmt.upper()} with columns {text_column!r} and {label_column!r}")
    keys = ["data.text_column", "data.label_column"]
    cols = [column_spec(text_column, keys[0], header, fmt), column_spec(label_column, keys[1], header, fmt)]
    texts, labels = [], []
    if fmt == "jsonl":
        for lineno, line in read_lines(path, encoding):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"line {lineno}", f"invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(path, f"line {lineno}", "expected a JSON object per line")
            for col in cols:
                if col not in row:
                    raise InputError(path, f"line {lineno}", f"no {col!r} field")
            label = row[cols[1]]
            if label is None or str(label).strip() == "":
                raise InputError(path, f"line {lineno}", f"no label in column {cols[1]!r}")
            texts.append(str(row[cols[0]] or ""))
            labels.append(str(label).strip())
        return _check_nonempty(TextSplit(texts, labels, str(path)))
    rows, (ti, li) = _table_rows(path, fmt, header, encoding, cols, keys)
    for lineno, fields in rows:
        for idx, col, k in ((ti, cols[0], keys[0]), (li, cols[1], keys[1])):
            if idx >= len(fields):
                what = f"column {col!r}" if isinstance(col, str) else f"column index {col}"
                raise InputError(path, f"line {lineno}", f"{len(fields)} fields, no {what} ({k})")
        label = fields[li].strip()
        if not label:
            raise InputError(path, f"line {lineno}", f"no label in column {cols[1]!r}")
        texts.append(fields[ti])
        labels.append(label)
    return _check_nonempty(TextSplit(texts, labels, str(path)))


def infer_format(path: str | Path, key: str = "data.train") -> str:
    """Guess the format from the path: folder -> snips, .csv/.tsv/.jsonl/.json -> table, else lines.

    Raises:
        InputError: naming ``key`` when the path uses an unset environment variable.
    """
    p = expand_path(path, key)
    if p.is_dir():
        return "snips"
    suffix = p.suffix.lower()
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(suffix, "lines")


def read_split(path: str | Path, fmt: str = "auto", text_column: str | int = "text", label_column: str | int = "label",
               int_labels: bool = False, header: bool = True, encoding: str = "utf-8",
               key: str = "data.train") -> TextSplit:
    """Read one split in format ``fmt`` (``auto`` | ``lines`` | ``snips`` | ``csv`` | ``tsv`` | ``jsonl``).

    Args:
        path: file or SNIPS folder; ``~`` and ``$VAR`` are expanded.
        fmt: the format, or ``auto`` (:func:`infer_format`).
        text_column / label_column / header: see :func:`read_table`.
        int_labels: see :func:`read_label_lines`.
        encoding: text encoding of the file(s) (``data.encoding``).
        key: the config key of ``path`` (``data.train``, ``data.valid``, ``data.test``), named in errors.

    Raises:
        InputError: unknown format or any reader error.
    """
    fmt = infer_format(path, key) if fmt == "auto" else fmt
    if fmt == "lines":
        return read_label_lines(path, int_labels=int_labels, encoding=encoding, key=key)
    if fmt == "snips":
        return read_snips(path, encoding=encoding, key=key)
    if fmt in ("csv", "tsv", "jsonl"):
        return read_table(path, fmt, text_column, label_column, header=header, encoding=encoding, key=key)
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


def _probe_dim(head: list[tuple[int, str]]) -> int | None:
    """The most common number of values per row among the first rows (ties: the earliest row's count).

    Tokens that contain spaces (glove.840B has a few) only add fields to their own row, so the mode over the
    first rows is the dimension.
    """
    counts = Counter(len(line.rstrip(" ").split(" ")) - 1 for _, line in head if line.strip())
    return counts.most_common(1)[0][0] if counts else None


def load_word_vectors(path: str | Path, vocab: Vocabulary, expected_dim: int | None = None,
                      seed: int = 0, token_counts: np.ndarray | None = None, member: str | None = None,
                      encoding: str = "utf-8") -> tuple[np.ndarray, dict[str, float]]:
    """Build an embedding table from a GloVe/word2vec/fastText text file (``word v1 ... vd`` per line).

    The file may be plain, gzip-compressed (``.txt.gz``) or a zip archive of text members (Stanford's
    ``glove.6B.zip``: the member is ``member``, else the only text member, else the one named
    ``<expected_dim>d``; see :func:`toolkit.compress.files.pick_member`), detected from its first bytes.
    The dimension d comes from a word2vec header line (``count dim``, skipped) or else from the most common
    row length of the first 100 rows; each row is then split from the right into d values and the word, so
    tokens containing spaces (glove.840B) are read whole (they never match a vocabulary word, and are counted
    in ``tokens_with_spaces``).  Rows of vocabulary words found in the file get their vector (lower-cased
    lookup as fallback); the others are drawn from N(0, s^2) with s the std of the file's vectors found; the
    padding row is 0.  Rows whose bytes are not valid in ``encoding`` (``data.vectors_encoding``) are skipped and
    counted in ``undecodable_rows`` (Stanford's GloVe 6B files hold a few raw cp1252 bytes, e.g. 0x96, among
    UTF-8); more than 1% of such rows is an error naming the first one.

    Args:
        path: vectors file (``~`` and ``$VAR`` are expanded).
        vocab: the vocabulary.
        expected_dim: the model's embedding dimension, if fixed by the config.
        seed: for the random rows.
        token_counts: optional int [V] occurrences of each vocabulary index in the training split,
            to report the fraction of (non-pad) training tokens that have a vector.
        member: zip member to read (``data.vectors_member``).
        encoding: the file's text encoding.

    Returns:
        ``(table float32 [V, d], coverage)`` where coverage has ``found`` (words), ``vocab_coverage``
        (fraction of non-special vocabulary words found), ``dim``, ``tokens_with_spaces``, ``undecodable_rows``,
        ``source``
        (``archive.zip:member`` for a zip member) and, with ``token_counts``, ``train_token_coverage``.

    Raises:
        InputError: missing/empty file, an archive member that cannot be chosen, corrupt compressed data,
            more than 1% undecodable rows, rows with fewer than d values, non-numeric values, dimension != ``expected_dim``,
            no vocabulary word in the file.
    """
    path = expand_path(path, "data.vectors")
    if not path.is_file():
        raise InputError(path, None, "file not found (data.vectors; expected GloVe/word2vec text: 'word v1 ... vd' "
                         "per line, plain, .gz or .zip)")
    dim = None
    found: dict[int, np.ndarray] = {}
    lower_found: dict[int, np.ndarray] = {}
    lower_index: dict[str, list[int]] = {}
    for i, w in enumerate(vocab.itos[2:], 2):
        lower_index.setdefault(w.lower(), []).append(i)
    sums, sq, count, spaced, rows = 0.0, 0.0, 0, 0, 0
    skipped: list[int] = []
    with open_vectors(path, member, expected_dim) as (fh, source), compressed_errors(source):
        lines = decode_lines(fh, source, encoding, "data.vectors_encoding", skipped=skipped)
        head = list(itertools.islice(lines, 100))
        if head:
            first = head[0][1].split()
            if len(first) == 2 and first[0].isdigit() and first[1].isdigit():
                dim = int(first[1])  # word2vec header
                head = head[1:]
        dim = dim or _probe_dim(head)
        if dim is not None and dim < 1:
            raise InputError(source, f"line {head[0][0]}", "expected 'word v1 ... vd'")
        if dim is not None and expected_dim is not None and dim != int(expected_dim):
            raise InputError(source, "dimension", f"vectors have {dim} values per word but the model's "
                             f"embedding_dim is {expected_dim} (set model.embedding_dim={dim} or null)")
        for lineno, line in itertools.chain(head, lines):
            line = line.rstrip(" \r")
            if not line.strip():
                continue
            rows += 1
            parts = line.rsplit(" ", dim)
            if len(parts) != dim + 1:
                raise InputError(source, f"line {lineno}", f"ragged row: {len(parts) - 1} values, expected {dim}")
            word = parts[0]
            if " " in word:
                spaced += 1
            idx = vocab.stoi.get(word)
            lower = lower_index.get(word.lower()) if idx is None else None
            if idx is None and not lower:
                continue
            try:
                vec = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise InputError(source, f"line {lineno}", "non-numeric vector value") from None
            sums += float(vec.sum())
            sq += float((vec.astype(np.float64) ** 2).sum())
            count += vec.size
            if idx is not None:
                found[idx] = vec
            else:
                for j in lower:
                    lower_found.setdefault(j, vec)
    if skipped and len(skipped) > 0.01 * (rows + len(skipped)):
        raise InputError(source, f"line {skipped[0]}", f"{len(skipped)} of {rows + len(skipped)} rows are not valid "
                         f"{encoding}: set data.vectors_encoding to the file's encoding (e.g. latin-1)")
    if dim is None:
        raise InputError(path, None, "empty vectors file (expected 'word v1 ... vd' per line)")
    for j, vec in lower_found.items():
        found.setdefault(j, vec)
    if not found and len(vocab) > 2:
        raise InputError(source, None, f"none of the {len(vocab) - 2} vocabulary words has a vector among its "
                         f"{rows} rows (expected 'word v1 ... vd' per line in the training text's language and "
                         "case; is it the right file?)")
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
    cov = {"found": n_found, "vocab_words": len(vocab) - 2, "vocab_coverage": n_found / n_words, "dim": dim,
           "tokens_with_spaces": spaced, "undecodable_rows": len(skipped), "source": source}
    if token_counts is not None:
        has = np.zeros(len(vocab), dtype=bool)
        has[[i for i in found if i >= 2]] = True
        counts = np.asarray(token_counts, dtype=np.float64)[: len(vocab)]
        cov["train_token_coverage"] = float(counts[has].sum() / max(counts[1:].sum(), 1.0))
    return table, cov
