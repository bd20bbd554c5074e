"""File access of the ``toolkit compress`` readers: paths, text encodings, line splitting and vector archives.

* Paths: ``~``, ``~user``, ``$VAR`` and ``${VAR}`` are expanded in every path key (:func:`expand_path`); an
  unset variable is an input error, not a literal ``$HOME`` directory.
* Encodings: files are decoded strictly in the configured encoding (``data.encoding``, default UTF-8); a byte
  that does not decode is an input error naming the file, the line and the option to set, never a silent
  replacement character.  A UTF-8 byte-order mark at the start of a file is skipped.
* Lines end at ``\\n`` only (``\\r\\n`` too): U+2028, U+0085, form feeds and the other separators that
  :meth:`str.splitlines` breaks on stay inside the line, so line-aligned files (SNIPS ``seq.in`` / ``label``)
  stay aligned.
* Vector files may be plain text, gzip (``.txt.gz``) or a zip archive of several text members (Stanford's
  ``glove.6B.zip``); the format is detected from the file's first bytes, not its name.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from toolkit.errors import InputError

ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand_path(value: object, key: str) -> Path:
    """Expand ``~`` / ``~user`` and ``$VAR`` / ``${VAR}`` in a configured path.

    Args:
        value: the configured path (str or Path).
        key: the config key it came from (``data.train``, ...), named in errors.

    Returns:
        The expanded :class:`~pathlib.Path` (not resolved; may not exist).

    Raises:
        InputError: naming ``key`` when the path uses an environment variable that is not set.
    """
    text = str(value)
    for match in _VAR.finditer(text):
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise InputError(key, None, f"{text}: environment variable ${name} is not set (paths may use ~, "
                             "$VAR and ${VAR} of set variables)")
    return Path(os.path.expanduser(os.path.expandvars(text)))


def check_encoding(encoding: object, key: str = "data.encoding") -> str:
    """The canonical codec name of ``encoding`` (``"latin1"`` -> ``"iso8859-1"``).

    Raises:
        InputError: naming ``key`` when Python has no such codec.
    """
    try:
        return codecs.lookup(str(encoding)).name
    except LookupError:
        raise InputError(key, None, f"unknown encoding {encoding!r}; expected a Python codec name such as "
                         "utf-8, latin-1 or cp1252") from None


def is_codec(value: object) -> bool:
    """Whether ``value`` names a Python text codec (for the schema check)."""
    if not isinstance(value, str):
        return False
    try:
        codecs.lookup(value)
    except LookupError:
        return False
    return True


def _ascii_newlines(codec: str) -> bool:
    """Whether ``\\n`` is the single byte 0x0A in ``codec`` and so never occurs inside another character."""
    try:
        return "\n".encode(codec) == b"\n" and "a".encode(codec) == b"a"
    except (LookupError, UnicodeError):
        return False


def _suggest(codec: str) -> str:
    return "cp1252" if codec in ("iso8859-1", "latin-1") else "latin-1"


def _decode_error(source: str, lineno: int, raw: bytes, exc: UnicodeDecodeError, codec: str, key: str
                  ) -> InputError:
    column = len(raw[: exc.start].decode(codec, errors="replace")) + 1
    bad = raw[exc.start: exc.start + 1].hex()
    return InputError(source, f"line {lineno}", f"byte 0x{bad} at column {column} is not valid {codec}; the file "
                      f"is in another encoding: set {key}={_suggest(codec)} (or the file's encoding, e.g. cp1252)")


def _strip_end(line: str) -> str:
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


def decode_lines(raw_lines: Iterable[bytes], source: str, encoding: str = "utf-8", key: str = "data.encoding",
                 keepends: bool = False, skipped: list[int] | None = None) -> Iterator[tuple[int, str]]:
    """Decode a stream of byte lines (split at ``\\n`` only, as binary file iteration does).

    Args:
        raw_lines: byte lines, e.g. iterating a file opened in ``"rb"`` mode, a gzip or zip member.
        source: the file named in errors.
        encoding: a codec with single-byte ``\\n`` (UTF-8, Latin-1, cp1252, ...); see :func:`read_lines`
            for the others.
        key: the config key of the encoding, named in errors.
        keepends: keep each line's terminator (the csv module needs it for quoted newlines).
        skipped: if given, undecodable lines are not an error: their numbers are appended here and they are
            left out (word-vector files, where a row is one independent entry).

    Yields:
        ``(line number from 1, text)``; a UTF-8 byte-order mark on line 1 is dropped, and without
        ``keepends`` the ``\\n`` / ``\\r\\n`` terminator is removed.

    Raises:
        InputError: ``source: line N: byte 0x.. at column C is not valid <codec>; ... set <key>=...``.
    """
    codec = check_encoding(encoding, key)
    for lineno, raw in enumerate(raw_lines, 1):
        if lineno == 1 and codec == "utf-8" and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            if skipped is None:
                raise _decode_error(source, lineno, raw, exc, codec, key) from None
            skipped.append(lineno)
            continue
        yield lineno, (text if keepends else _strip_end(text))


def read_lines(path: str | Path, encoding: str = "utf-8", key: str = "data.encoding", keepends: bool = False
               ) -> list[tuple[int, str]]:
    """All lines of a text file as ``(line number, text)``, decoded strictly and split at ``\\n`` only.

    Codecs whose newline is not the single byte 0x0A (UTF-16/32) are decoded whole, then split; their
    byte-order mark is consumed by the codec.  ``path`` must exist (callers check it to word the error).

    Raises:
        InputError: undecodable bytes (file, line, column and the ``key=...`` to set); unreadable file.
    """
    path = Path(path)
    codec = check_encoding(encoding, key)
    try:
        if _ascii_newlines(codec):
            with path.open("rb") as fh:
                return list(decode_lines(fh, str(path), codec, key, keepends))
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, None, f"cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        head = raw[: exc.start].decode(codec, errors="replace")
        lineno = head.count("\n") + 1
        raise InputError(path, f"line {lineno}", f"bytes at offset {exc.start} are not valid {codec}; set {key} "
                         "to the file's encoding (e.g. utf-8, latin-1, cp1252)") from None
    text = text[1:] if text.startswith("\ufeff") else text
    pieces = text.split("\n")
    if pieces and pieces[-1] == "":
        pieces.pop()
    out = []
    for i, piece in enumerate(pieces, 1):
        out.append((i, piece + "\n" if keepends else _strip_end(piece)))
    return out


def pick_member(names: list[str], member: str | None, dim: int | None, source: str,
                key: str = "data.vectors_member") -> str:
    """The member of a vectors archive to read.

    ``member`` (full name or base name) wins; otherwise the only ``.txt``/``.vec`` member (or the only member),
    or, for several (``glove.6B.zip`` holds ``glove.6B.{50,100,200,300}d.txt``), the one whose name carries the
    model's dimension ``<dim>d``.

    Raises:
        InputError: no such member, or several candidates and nothing to choose by (lists them and names
            ``key`` and ``model.embedding_dim``).
    """
    if member:
        for name in names:
            if name == member or Path(name).name == member:
                return name
        raise InputError(source, key, f"no member {member!r} in the archive; it holds {names}")
    text = [n for n in names if n.lower().endswith((".txt", ".vec"))] or names
    if len(text) == 1:
        return text[0]
    if not text:
        raise InputError(source, None, "empty zip archive (expected GloVe/word2vec text members)")
    if dim is not None:
        pattern = re.compile(rf"(?<![0-9]){int(dim)}d(?![0-9a-z])")
        hits = [n for n in text if pattern.search(Path(n).name.lower())]
        if len(hits) == 1:
            return hits[0]
    raise InputError(source, key, f"the archive holds {len(text)} vector files {text}: choose one with "
                     f"{key}=NAME (or model.embedding_dim=D to read the member named '<D>d')")


@contextlib.contextmanager
def open_vectors(path: str | Path, member: str | None = None, dim: int | None = None,
                 key: str = "data.vectors_member") -> Iterator[tuple[IO[bytes], str]]:
    """Open a word-vectors file for binary line iteration: plain text, gzip, or one member of a zip archive.

    Args:
        path: the file (existence is checked by the caller).
        member: zip member to read (see :func:`pick_member`).
        dim: the model's embedding dimension if configured, to choose a zip member by name.
        key: config key of ``member``, named in errors.

    Yields:
        ``(binary file object, source name)``; the source is ``archive.zip:member`` for a zip member.

    Raises:
        InputError: a corrupt archive or a member that cannot be chosen (errors while reading a compressed
            stream are raised by the iteration itself: wrap it in :func:`compressed_errors`).
    """
    path = Path(path)
    with path.open("rb") as probe:
        magic = probe.read(4)
    if magic.startswith(ZIP_MAGIC):
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(path, None, f"not a readable zip archive ({exc})") from None
        with archive:
            names = [i.filename for i in archive.infolist() if not i.is_dir()]
            name = pick_member(names, member, dim, str(path), key)
            with archive.open(name) as fh:
                yield fh, f"{path}:{name}"
    elif magic.startswith(GZIP_MAGIC):
        with gzip.open(path, "rb") as fh:
            yield fh, str(path)
    else:
        if member:
            raise InputError(path, key, f"is set to {member!r} but the file is not a zip archive")
        with path.open("rb") as fh:
            yield fh, str(path)


@contextlib.contextmanager
def compressed_errors(source: str) -> Iterator[None]:
    """Turn errors of a truncated or corrupt gzip/zip stream into an :class:`InputError` naming ``source``."""
    try:
        yield
    except (EOFError, zlib.error, zipfile.BadZipFile, gzip.BadGzipFile) as exc:
        raise InputError(source, None, f"corrupt or truncated compressed data ({exc or type(exc).__name__})") \
            from None
