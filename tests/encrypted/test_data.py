"""Datasets for encrypted LR: breast cancer (default), MNIST 3 vs 8 (14x14), CSV; scaling; minibatches."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from toolkit.encrypted.data import Scaling, load_dataset, minibatch_indices, read_csv, signed_features
from toolkit.errors import InputError


def test_breast_cancer_default_split_and_scaling():
    cfg = OmegaConf.load("configs/encrypted/data/breast_cancer.yaml")
    data = load_dataset(cfg, seed=0)
    assert data.x_train.shape[1] == 30 == len(data.feature_names)
    assert len(data.y_train) + len(data.y_test) == 569
    assert set(np.unique(data.y_train)) == {0, 1} and data.y_train.dtype == np.int64
    s = Scaling.fit(data.x_train, str(cfg.scaling))
    xs = s.apply(data.x_train)
    assert np.abs(xs).max() <= 1.0 + 1e-12 and np.isclose(np.abs(xs).max(), 1.0)
    again = Scaling.from_dict(s.to_dict())
    np.testing.assert_array_equal(again.apply(data.x_test), s.apply(data.x_test))


def test_maxabs_keeps_zeros_and_constant_columns():
    x = np.array([[0.0, 2.0, 0.0], [0.0, -4.0, 0.0], [0.0, 1.0, 0.0]])
    s = Scaling.fit(x, "maxabs")
    np.testing.assert_array_equal(s.scale, [1.0, 4.0, 1.0])
    np.testing.assert_array_equal(s.apply(x)[:, 1], [0.5, -1.0, 0.25])
    with pytest.raises(InputError, match="data.scaling"):
        Scaling.fit(x, "zscore")


def test_robust_scaling_winsorises_then_centres_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0.0, 1.5, size=(2000, 3)) * [1.0, 100.0, 1e4]
    s = Scaling.fit(x, "robust", 0.99)
    np.testing.assert_allclose(s.hi, np.quantile(x, 0.99, axis=0))
    xs = s.apply(x)
    assert np.abs(xs).max() <= 1.0 + 1e-12 and np.allclose(xs.mean(0), 0.0, atol=1e-12)
    far = s.apply(x * 1000.0)  # test values beyond the training range stay in [-1, 1]
    assert np.abs(far).max() <= 1.0 + 1e-12
    # the bulk of each column uses the range: with mean scaling one outlier squeezes it towards 0
    assert np.all(np.std(xs, 0) > 2 * np.std(Scaling.fit(x, "mean").apply(x), 0))
    again = Scaling.from_dict(s.to_dict())
    np.testing.assert_array_equal(again.apply(x), xs)
    assert Scaling.from_dict(Scaling.fit(x, "mean").to_dict()).lo is None
    with pytest.raises(InputError, match="data.clip_quantile"):
        Scaling.fit(x, "robust", 0.4)


def test_signed_features_and_minibatches():
    x = np.array([[0.5, -0.5], [1.0, 0.0]])
    z = signed_features(x, np.array([1, 0]))
    np.testing.assert_array_equal(z, [[1.0, 0.5, -0.5], [-1.0, -1.0, -0.0]])
    parts = minibatch_indices(10, 4, seed=0)
    assert [len(p) for p in parts] == [4, 3, 3]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(10))
    assert len(minibatch_indices(10, None, 0)) == 1 and len(minibatch_indices(10, 50, 0)) == 1


def _write(path, text):
    path.write_text(text)
    return path


def test_read_csv_bad_inputs(tmp_path):
    ok = _write(tmp_path / "ok.csv", "a,b,label\n1,2,0\n3,4,1\n")
    x, y, names = read_csv(ok, "label", "data.path")
    assert x.shape == (2, 2) and names == ["a", "b"] and y.tolist() == [0, 1]
    with pytest.raises(InputError, match="no column named 'y'"):
        read_csv(ok, "y", "data.path")
    with pytest.raises(InputError, match="labels must be 0 or 1"):
        read_csv(_write(tmp_path / "l.csv", "a,label\n1,0\n2,2\n"), "label", "data.path")
    with pytest.raises(InputError, match=r"line 3, column 1 \('a'\) holds 'nan'; expected a finite number"):
        read_csv(_write(tmp_path / "n.csv", "a,label\n1,0\nnan,1\n"), "label", "data.path")
    with pytest.raises(InputError, match="file not found"):
        read_csv(tmp_path / "missing.csv", "label", "data.path")
    with pytest.raises(InputError, match="data.path: required"):
        read_csv(None, "label", "data.path")


@pytest.mark.parametrize("text, message", [
    # line and column numbers are the file's own (1-based, header = line 1, the label column counts)
    ("label,a,b\n0,1,2\n1,3,abc\n", r"s.csv: b: line 3, column 3 \('b'\) holds 'abc'; expected a finite number"),
    ("label,a,b\n0,1,2\n1,,4\n", r"line 3, column 2 \('a'\) holds an empty cell"),
    ("label,a,b\n0,1,2\n\n1,3\n", r"line 4 has 2 fields, the header has 3"),
    ("label,a,b\n", r"no data rows \(only a header\)"),
    ("", r"empty file"),
    ("label,a\n0,inf\n1,2\n", r"line 2, column 2 \('a'\) holds 'inf'"),
])
def test_read_csv_errors_name_line_column_and_name(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_csv(_write(tmp_path / "s.csv", text), "label", "data.path")


def test_read_csv_strips_bom_and_reads_quoted_names(tmp_path):
    path = tmp_path / "credit.csv"
    path.write_bytes('\ufeffLIMIT_BAL,AGE,"default payment next month"\n2000,30,1\n500,41,0\n'.encode())
    x, y, names = read_csv(path, "default payment next month", "data.path")
    assert names == ["LIMIT_BAL", "AGE"] and y.tolist() == [1, 0]
    np.testing.assert_array_equal(x, [[2000, 30], [500, 41]])
    x2, _, names2 = read_csv(_write(tmp_path / "c2.csv", "\ufeffLIMIT_BAL,y\n1,0\n2,1\n"), "y", "data.path")
    assert names2 == ["LIMIT_BAL"] and x2[:, 0].tolist() == [1, 2]


def test_read_csv_parses_without_library_warnings(tmp_path, recwarn):
    read_csv(_write(tmp_path / "w.csv", "a,label\n1,0\n2,1\n"), "label", "data.path")
    with pytest.raises(InputError):
        read_csv(_write(tmp_path / "h.csv", "a,label\n"), "label", "data.path")
    assert not [w for w in recwarn.list], [str(w.message) for w in recwarn.list]


def test_single_class_refused(tmp_path):
    path = _write(tmp_path / "one.csv", "a,label\n" + "".join(f"{i},1\n" for i in range(10)))
    with pytest.raises(InputError, match="class"):
        load_dataset(OmegaConf.create({"kind": "csv", "path": str(path), "label_column": "label"}), 0)


def test_unknown_kind_refused():
    with pytest.raises(InputError, match="data.kind"):
        load_dataset(OmegaConf.create({"kind": "iris"}), 0)


def test_mnist38_is_14x14_three_vs_eight():
    from tests.conftest import shared_data

    root = shared_data("mnist", "train-images-idx3-ubyte.gz").parent
    cfg = OmegaConf.load("configs/encrypted/data/mnist38.yaml")
    cfg.root = str(root)
    data = load_dataset(cfg, seed=0)
    assert data.x_train.shape == (11982, 196) and data.x_test.shape == (1984, 196)
    assert np.bincount(data.y_test).tolist() == [1010, 974]  # 3 -> 0, 8 -> 1 (HELR's MNIST_test.txt)
    assert data.x_train.min() >= 0 and 0.9 < data.x_train.max() <= 1.0  # 2x2 means of pixels in [0, 1]
