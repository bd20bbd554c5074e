"""One reader layer for the files the commands take: every library error becomes an exit-2 :class:`InputError`.

numpy, zipfile, pickle, torch and the text codecs each raise their own exceptions for a damaged file
(``EOFError`` for an empty ``.npy``, ``BadZipFile`` for a truncated ``.npz`` or checkpoint,
``UnicodeDecodeError`` for a Latin-1 CSV, ``UnpicklingError`` for garbage). :func:`reading` maps all of them to
one line naming the file, the config key and the form that was expected, so no reader has to list them again.
"""

from __future__ import annotations

import contextlib
import pickle
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import InputError

READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, struct.error,
    KeyError, IndexError, RuntimeError, OverflowError, MemoryError)
"""Exceptions a damaged file can raise inside numpy / zipfile / pickle / torch / codecs readers."""


def reason(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when empty), at most 160 characters."""
    text = str(exc).strip()
    if isinstance(exc, UnicodeDecodeError):
        text = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not valid {exc.encoding}"
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:160]


@contextlib.contextmanager
def reading(path: str | Path, field: str, expected: str) -> Iterator[None]:
    """Turn any reader exception raised inside the block into ``InputError(path, field, ...)``.

    Args:
        path: the file being read (named in the message).
        field: the config key or argument that named it.
        expected: the form the file should have, e.g. ``"a .npy array [N, D]"``.

    Raises:
        InputError: ``"cannot read as <expected> (<reason>)"``; an :class:`InputError` raised inside the block
            passes through unchanged.
    """
    try:
        yield
    except InputError:
        raise
    except READ_ERRORS as exc:
        raise InputError(path, field, f"cannot read as {expected} ({reason(exc)})") from None


def require_file(path: str | Path | None, field: str, example: str = "path/to/file.npy") -> Path:
    """The existing, non-empty regular file ``path`` (``~`` expanded).

    Raises:
        InputError: no path given, not found, a directory, or an empty (0-byte) file.
    """
    if path is None or str(path) in ("", "None", "null"):
        raise InputError("config", field, f"no file given (set it as an override, e.g. {field}={example})")
    p = Path(str(path)).expanduser()
    if p.is_dir():
        raise InputError(p, field, "is a directory, expected a file")
    if not p.is_file():
        raise InputError(p, field, "file not found")
    if p.stat().st_size == 0:
        raise InputError(p, field, "is empty (0 bytes)")
    return p


def load_npy(path: Path, field: str, expected: str = "a .npy array") -> np.ndarray:
    """A ``.npy`` array read without pickles (``allow_pickle=False``).

    Raises:
        InputError: damaged, truncated or pickled (object) files.
    """
    with reading(path, field, expected), open(path, "rb") as fh:  # our handle: numpy leaks its own on bad files
        return np.load(fh, allow_pickle=False)


@contextlib.contextmanager
def open_npz(path: Path, field: str, expected: str = "an .npz archive") -> Iterator[Any]:
    """The ``.npz`` archive at ``path`` as numpy's lazy ``NpzFile`` (arrays read on access, no pickles).

    Errors while opening or while reading members inside the block become :class:`InputError`; the file is
    closed on every path (numpy leaves its own handle open when the archive is damaged).

    Raises:
        InputError: damaged or truncated archive, a pickled member.
    """
    with reading(path, field, expected), open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
        yield z


def load_npz_member(path: Path, field: str, preferred: tuple[str, ...], expected: str = "an .npz archive",
                    required: bool = False) -> np.ndarray | None:
    """The first of ``preferred`` arrays in an ``.npz`` (or its only array), read without pickles.

    Args:
        required: raise when none of ``preferred`` is present and the archive holds several arrays;
            otherwise return None in that case.

    Raises:
        InputError: damaged archive, or (``required``) no usable array.
    """
    with open_npz(path, field, expected) as z:
        keys = list(z.keys())
        for key in preferred:
            if key in keys:
                return z[key]
        if len(keys) == 1:
            return z[keys[0]]
    if required:
        raise InputError(path, field, f"expected one array or one named {'/'.join(preferred)}; found {keys}")
    return None


def read_text(path: Path, field: str, encoding: str = "utf-8", expected: str = "a text file") -> str:
    """The whole text of ``path`` decoded strictly (a UTF-8 byte-order mark is dropped).

    Raises:
        InputError: bytes that are not valid ``encoding`` (the message names the offset and the byte).
    """
    with reading(path, field, f"{expected} in {encoding}"):
        text = path.read_bytes().decode(encoding)
    return text[1:] if text.startswith("\ufeff") else text
