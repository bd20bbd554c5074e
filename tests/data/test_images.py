"""Image folders, zips and IDX files."""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared_data
from toolkit.data.images import load_idx, load_image_folder
from toolkit.errors import InputError


def _write_pngs(root, layout):
    for cls, n in layout.items():
        d = root / cls
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((10, 10), 40 * i, np.uint8)).save(d / f"{i}.png")


def test_folder_and_zip_layouts(tmp_path):
    _write_pngs(tmp_path / "ds", {"alpha/c1": 2, "alpha/c2": 3, "beta/c1": 1})
    x, y, names = load_image_folder(tmp_path / "ds", image_size=8)
    assert x.shape == (6, 1, 8, 8) and x.dtype == np.float32
    assert names == ["alpha/c1", "alpha/c2", "beta/c1"]
    np.testing.assert_array_equal(np.bincount(y), [2, 3, 1])
    with zipfile.ZipFile(tmp_path / "ds.zip", "w") as z:
        for f in sorted((tmp_path / "ds").rglob("*.png")):
            z.write(f, "root/" + str(f.relative_to(tmp_path / "ds")))
    xz, yz, namesz = load_image_folder(tmp_path / "ds.zip", image_size=8)
    assert namesz == names
    np.testing.assert_allclose(xz, x)


def test_idx_roundtrip_and_errors(tmp_path):
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = np.array([2051, 2, 3, 4], dtype=">i4").tobytes()
    (tmp_path / "im.gz").write_bytes(gzip.compress(header + imgs.tobytes()))
    (tmp_path / "lab").write_bytes(np.array([2049, 2], ">i4").tobytes() + bytes([7, 3]))
    x, y = load_idx(tmp_path / "im.gz", tmp_path / "lab")
    assert x.shape == (2, 1, 3, 4)
    np.testing.assert_allclose(x[1, 0] * 255, imgs[1])
    np.testing.assert_array_equal(y, [7, 3])
    (tmp_path / "short").write_bytes(np.array([2049, 5], ">i4").tobytes() + bytes(5))
    with pytest.raises(InputError, match="5 labels"):
        load_idx(tmp_path / "im.gz", tmp_path / "short")
    with pytest.raises(InputError, match="magic 2051"):
        load_idx(tmp_path / "lab")


def test_real_omniglot_and_mnist():
    x, y, names = load_image_folder(shared_data("omniglot", "images_background_small1.zip"), 28, invert=True)
    assert x.shape == (2720, 1, 28, 28) and len(names) == 136
    assert np.all(np.bincount(y) == 20)
    mx, my = load_idx(shared_data("mnist", "t10k-images-idx3-ubyte.gz"),
                      shared_data("mnist", "t10k-labels-idx1-ubyte.gz"))
    assert mx.shape == (10000, 1, 28, 28) and np.bincount(my).sum() == 10000


def test_folder_inside_a_zip_reads_only_that_folder_in_rgb(tmp_path):
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        for split, n in (("train", 3), ("test", 2)):
            for cls in ("cat", "dog"):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(np.full((6, 6, 3), (10 * i, 0, 200), np.uint8)).save(buf, "PNG")
                    z.writestr(f"set/{split}/{cls}/{i}.png", buf.getvalue())
    x, y, names = load_image_folder(tmp_path / "set.zip" / "set" / "train", image_size=0, channels=3)
    assert x.shape == (6, 3, 6, 6) and names == ["cat", "dog"]
    np.testing.assert_array_equal(np.bincount(y), [3, 3])
    assert abs(float(x[0, 2, 0, 0]) - 200 / 255) < 1e-6
    xt, _, _ = load_image_folder(tmp_path / "set.zip" / "set" / "test", image_size=0, channels=3)
    assert len(xt) == 4
    with pytest.raises(InputError, match="no class folders"):
        load_image_folder(tmp_path / "set.zip" / "set" / "val", image_size=0)


def test_real_cifar10_subset_splits():
    zp = shared_data("cifar10", "cifar10_subset.zip")
    x, y, names = load_image_folder(zp / "cifar10_subset" / "test", image_size=32, channels=3)
    assert x.shape == (3000, 3, 32, 32) and len(names) == 10 and "airplane" in names
    assert np.all(np.bincount(y) == 300)
