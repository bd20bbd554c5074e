"""Feature and label file loaders (every format) and their one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.data.arrays import check_labels, load_features, load_labels
from toolkit.errors import InputError


@pytest.fixture
def feats():
    return np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)


def test_formats_roundtrip(tmp_path, feats):
    np.save(tmp_path / "f.npy", feats)
    np.savez(tmp_path / "f.npz", features=feats, labels=np.arange(7))
    np.savetxt(tmp_path / "f.csv", feats, delimiter=",", header="a,b,c", comments="")
    feats.astype("<f4").tofile(tmp_path / "f.bin")
    for name, kw in [("f.npy", {}), ("f.npz", {}), ("f.csv", {}), ("f.bin", {"feature_dim": 3})]:
        np.testing.assert_allclose(load_features(tmp_path / name, **kw), feats, rtol=1e-6, atol=1e-6)


def test_labels_formats(tmp_path):
    y = np.array([3, 1, 1, 0])
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "y.meta").write_text("3\n1\n1\n0\n")
    (tmp_path / "names.txt").write_text("cat\ndog\ndog\nant\n")
    np.testing.assert_array_equal(load_labels(tmp_path / "y.npy"), y)
    np.testing.assert_array_equal(load_labels(tmp_path / "y.meta"), y)
    np.testing.assert_array_equal(load_labels(tmp_path / "names.txt"), [1, 2, 2, 0])


@pytest.mark.parametrize(
    ("array", "message"),
    [(np.array([1.0, np.nan, 2.0]).reshape(3, 1), "NaN or inf"),
     (np.array([[1.0, np.inf]]), "NaN or inf"),
     (np.arange(5.0), "2-D"),
     (np.zeros((0, 4)), "non-empty")],
)
def test_bad_features(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(InputError, match=message) as info:
        load_features(tmp_path / "bad.npy", field="data.train_features")
    assert "bad.npy" in str(info.value) and "data.train_features" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_bin_without_dim(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_features(tmp_path / "nope.npy")
    (tmp_path / "x.bin").write_bytes(b"\0" * 12)
    with pytest.raises(InputError, match="feature_dim"):
        load_features(tmp_path / "x.bin")
    with pytest.raises(InputError, match="multiple"):
        load_features(tmp_path / "x.bin", feature_dim=5)


def test_label_length_mismatch():
    with pytest.raises(InputError, match="3 labels but the features have 4 rows"):
        check_labels(np.array([0, 1, 2]), "y.npy", "labels", n=4)
