"""Image datasets: class folders (plain or zipped, e.g. Omniglot) and MNIST IDX files.

Class-folder layout: every directory that directly contains image files is a
class, named by its path relative to the root, so both ``class/x.png`` and the
Omniglot layout ``Alphabet/characterNN/x.png`` work.  A ``.zip`` archive with
the same layout is read without extracting it; a path that continues inside an
archive (``cifar10_subset.zip/cifar10_subset/train``) reads only that folder of it.

IDX layout (LeCun et al., MNIST page): big-endian header with magic 2051
(images: count, rows, cols) or 2049 (labels: count), then uint8 data;
``.gz`` files are decompressed on the fly.
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from toolkit.data.files import reading, reason
from toolkit.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff")


def _decode(data: bytes, name: str, size: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img = img.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(name, "image", f"cannot decode ({reason(exc)})") from None
    if size and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def load_image_folder(path: str | Path, image_size: int = 28, channels: int = 1,
                      invert: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a class-folder image dataset from a directory or a ``.zip``.

    Args:
        path: directory, zip archive, or a folder inside a zip archive written as
            ``archive.zip/folder/inside`` (only images under that folder are read; the folder's
            sub-folders are the classes).
        image_size: images are resized to ``image_size x image_size`` pixels (0 keeps the size,
            which must then be equal for all images).
        channels: 1 (greyscale) or 3 (RGB).
        invert: use ``1 - pixel`` (Omniglot draws black strokes on white).

    Returns:
        ``(images, labels, class_names)``: float32 ``[N, C, H, W]`` in [0, 1], int64 ``[N]``
        indexing ``class_names`` (sorted relative class paths).

    Raises:
        InputError: missing path, no images found, fewer than 1 class, undecodable image.
    """
    p = Path(path).expanduser()
    p, member = _split_archive_path(p)
    if not p.exists():
        raise InputError(p, "images", "file or directory not found")
    groups: dict[str, list[tuple[str, object]]] = defaultdict(list)
    archive = None
    if p.is_file():
        if not zipfile.is_zipfile(p):
            raise InputError(p, "images", "expected a directory or a .zip of class folders")
        with reading(p, "images", "a zip of class folders of images"):
            archive = zipfile.ZipFile(p)
        for info in archive.infolist():
            name = info.filename
            if info.is_dir() or "__MACOSX" in name or not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            if member and not name.startswith(member):
                continue
            parent = str(Path(name[len(member):]).parent)
            if parent == ".":
                continue
            groups[parent].append((name, info))
        if member and not groups:
            archive.close()
            raise InputError(p, member.rstrip("/"), "no class folders of images under this folder of the archive")
    else:
        for f in sorted(p.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                rel = f.relative_to(p).parent
                if str(rel) == ".":
                    continue
                groups[str(rel)].append((str(f), f))
    if not groups:
        raise InputError(p, "images", "no images in class folders (expected class/x.png or a/b/x.png)")
    # strip a common top folder (zip archives usually hold one root directory)
    names = sorted(groups)
    images, labels = [], []
    for label, cls in enumerate(names):
        for name, handle in sorted(groups[cls], key=lambda t: t[0]):
            with reading(p, "images", f"a zip of class folders of images (member {name})"):
                data = archive.read(handle) if archive is not None else Path(handle).read_bytes()
            images.append(_decode(data, name, image_size, channels))
            labels.append(label)
    if archive is not None:
        archive.close()
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise InputError(p, "images", f"images differ in size {sorted(shapes)[:3]}; set data.image_size")
    x = np.stack(images).astype(np.float32)
    if invert:
        x = 1.0 - x
    common = _common_prefix(names)
    class_names = [n[len(common):] if common else n for n in names]
    return x, np.asarray(labels, dtype=np.int64), class_names


def _split_archive_path(p: Path) -> tuple[Path, str]:
    """Split a path that continues inside an archive.

    Returns:
        ``(archive, "x/y/")`` for ``archive/x/y`` when ``archive`` is an existing file (a member
        prefix ending in ``/``); ``(p, "")`` when ``p`` exists or no parent is a file.
    """
    if p.exists():
        return p, ""
    for parent in p.parents:
        if parent.is_file():
            return parent, p.relative_to(parent).as_posix().strip("/") + "/"
    return p, ""


def _common_prefix(names: list[str]) -> str:
    parts = [n.split("/") for n in names]
    prefix: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) == 1 and all(len(p) > len(prefix) + 1 for p in parts):
            prefix.append(level[0])
        else:
            break
    return "/".join(prefix) + "/" if prefix else ""


def _read_maybe_gz(p: Path) -> bytes:
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(p, "idx", f"corrupt gzip ({reason(exc)})") from None
    return raw


def load_idx(images_path: str | Path, labels_path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Load MNIST-style IDX image (and optional label) files, gzipped or not.

    Returns:
        ``(images, labels)``: float32 ``[N, 1, rows, cols]`` in [0, 1] and int64 ``[N]`` (or None).

    Raises:
        InputError: missing file, wrong magic number, truncated data, or count mismatch.
    """
    ip = Path(images_path).expanduser()
    if not ip.is_file():
        raise InputError(ip, "images", "file not found")
    raw = _read_maybe_gz(ip)
    header = np.frombuffer(raw[:16], dtype=">i4") if len(raw) >= 16 else np.array([])
    if header.size < 4 or header[0] != 2051:
        raise InputError(ip, "images", "not an IDX image file (expected magic 2051)")
    n, rows, cols = (int(v) for v in header[1:4])
    if len(raw) < 16 + n * rows * cols:
        raise InputError(ip, "images", f"truncated: header says {n} images of {rows}x{cols}")
    x = np.frombuffer(raw, dtype=np.uint8, count=n * rows * cols, offset=16).reshape(n, 1, rows, cols)
    x = x.astype(np.float32) / 255.0
    if labels_path is None:
        return x, None
    lp = Path(labels_path).expanduser()
    if not lp.is_file():
        raise InputError(lp, "labels", "file not found")
    raw = _read_maybe_gz(lp)
    header = np.frombuffer(raw[:8], dtype=">i4") if len(raw) >= 8 else np.array([])
    if header.size < 2 or header[0] != 2049:
        raise InputError(lp, "labels", "not an IDX label file (expected magic 2049)")
    m = int(header[1])
    if m != n or len(raw) < 8 + m:
        raise InputError(lp, "labels", f"has {m} labels but {ip.name} has {n} images")
    y = np.frombuffer(raw, dtype=np.uint8, count=m, offset=8).astype(np.int64)
    return x, y
