"""load_split: bundled digits, feature files (.npz, split without test files), image folders, bad labels."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from toolkit.compat.data import load_split
from toolkit.errors import InputError


def test_digits_default_split():
    s = load_split(OmegaConf.create({"kind": "digits", "test_fraction": 0.4}), seed=0)
    assert (len(s.y_train), len(s.y_test), s.num_classes, s.in_shape) == (1078, 719, 10, (1, 8, 8))
    assert s.x_train.dtype == np.float32 and s.x_train.min() >= 0.0 and s.x_train.max() <= 1.0
    assert len(np.unique(s.ids_test)) == 719
    sub = load_split(OmegaConf.create({"kind": "digits", "test_fraction": 0.4, "max_train": 100, "max_test": 50}))
    assert (len(sub.y_train), len(sub.y_test)) == (100, 50)
    assert set(sub.ids_test.tolist()) <= set(s.ids_test.tolist())


def test_npz_features_split_when_no_test_files(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", features=rng.normal(size=(40, 5)))
    np.save(tmp_path / "y.npy", np.arange(40) % 4)
    cfg = OmegaConf.create({"kind": "features", "train_features": str(tmp_path / "x.npz"),
                            "train_labels": str(tmp_path / "y.npy"), "test_fraction": 0.25})
    s = load_split(cfg)
    assert (len(s.y_train), len(s.y_test), s.num_classes, s.in_shape) == (30, 10, 4, (5,))


def _folder(root, classes, n=4, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).save(root / c / f"{i}.png")
    return str(root)


def test_image_folder(tmp_path):
    cfg = OmegaConf.create({"kind": "images", "train_images": _folder(tmp_path / "imgs", "ab"), "image_size": 8,
                            "test_fraction": 0.5})
    s = load_split(cfg)
    assert s.in_shape == (1, 8, 8) and s.num_classes == 2 and (len(s.y_train), len(s.y_test)) == (4, 4)


def test_image_folder_test_classes_matched_by_name(tmp_path):
    cfg = {"kind": "images", "train_images": _folder(tmp_path / "tr", "abc"), "image_size": 8,
           "test_images": _folder(tmp_path / "te", "bc", n=2)}
    s = load_split(OmegaConf.create(cfg))
    assert s.num_classes == 3 and s.y_test.tolist() == [1, 1, 2, 2]
    cfg["test_images"] = _folder(tmp_path / "te2", "bz", n=1)
    with pytest.raises(InputError, match=r"class folders \['z'\] do not occur"):
        load_split(OmegaConf.create(cfg))


def test_negative_labels_and_unknown_kind_rejected(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((8, 2), np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, -1, 0, 1, 0, 1, 0]))
    cfg = {"kind": "features", "train_features": str(tmp_path / "x.npy"), "train_labels": str(tmp_path / "y.npy"),
           "test_features": str(tmp_path / "x.npy"), "test_labels": str(tmp_path / "y.npy")}
    with pytest.raises(InputError, match="negative label"):
        load_split(OmegaConf.create(cfg))
    with pytest.raises(InputError, match="unknown kind"):
        load_split(OmegaConf.create({"kind": "audio"}))


def _rgb_zip(path, classes=("cat", "dog", "frog"), n_train=12, n_test=4):
    import io
    import zipfile

    from PIL import Image

    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for split, n in (("train", n_train), ("test", n_test)):
            for ci, c in enumerate(classes):
                for i in range(n):
                    img = (rng.random((16, 16, 3)) * 60).astype(np.uint8)
                    img[..., ci % 3] += 150  # each class has its own dominant colour
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, "JPEG")
                    z.writestr(f"set/{split}/{c}/{i:04d}.jpg", buf.getvalue())
    return path


def test_rgb_train_and_test_folders_inside_one_zip(tmp_path):
    zp = _rgb_zip(tmp_path / "set.zip")
    cfg = {"kind": "images", "train_images": str(zp / "set" / "train"), "test_images": str(zp / "set" / "test"),
           "channels": 3, "image_size": 16}
    s = load_split(OmegaConf.create(cfg))
    assert s.in_shape == (3, 16, 16) and s.num_classes == 3 and (len(s.y_train), len(s.y_test)) == (36, 12)
    assert s.x_train[s.y_train == 1][:, 1].mean() > s.x_train[s.y_train == 1][:, 0].mean() + 0.3
    with pytest.raises(InputError, match="data.channels.*1 .greyscale. or 3"):
        load_split(OmegaConf.create({**cfg, "channels": 2}))


def test_experiment_compat_cifar10_runs_on_a_small_rgb_set(tmp_path, runner):
    import json

    from toolkit.cli import app

    zp = _rgb_zip(tmp_path / "set.zip")
    res = runner.invoke(app, ["train-compatible", "--json", "-q", "experiment=compat_cifar10", "method=fd-kl",
                              f"data.train_images={zp / 'set' / 'train'}", f"data.test_images={zp / 'set' / 'test'}",
                              "data.image_size=16", "train.epochs=2", "bootstrap.n=50", "trainer.progress=false",
                              f"output_dir={tmp_path / 'out'}"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["metrics"]["old_source"].startswith("trained here (cnn")
    assert doc["config"]["model"]["_target_"] == "toolkit.models.zoo.ResNet" and doc["metrics"]["n"] == 12
