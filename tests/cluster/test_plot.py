"""``clusters_gallery.png``: row choice (largest first, purity, foreign thumbnails), the drawn sheet, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from toolkit.cli import app
from toolkit.cluster.plot import FRAME_FOREIGN, FRAME_MAJORITY, GalleryGeometry, gallery_rows, plot_gallery

COLOURS = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.9]], np.float32)


def _squares(true: np.ndarray, channels: int, size: int = 12) -> np.ndarray:
    """float32 ``[M, C, size, size]``: a centred square coloured by class (grey level by class when C = 1)."""
    imgs = np.zeros((len(true), channels, size, size), np.float32)
    colour = COLOURS[true] if channels == 3 else (0.3 + 0.3 * true[:, None]).astype(np.float32)
    imgs[:, :, 2:-2, 2:-2] = colour[:, :, None, None]
    return imgs


def _labels():
    """Clusters 7 (10 images: 8 of class 0, 2 of class 1), 3 and 5 (6 pure images each), 9 (a singleton)."""
    pred = np.array([7] * 10 + [5] * 6 + [3] * 6 + [9])
    true = np.array([0] * 8 + [1] * 2 + [2] * 6 + [1] * 6 + [0])
    return np.random.default_rng(1).permutation(len(pred)), pred, true


def test_rows_are_largest_first_with_purity_and_foreign_thumbnails():
    perm, pred, true = _labels()
    pred, true = pred[perm], true[perm]
    layout = gallery_rows(pred, true, max_clusters=20, per_row=20, seed=0)
    assert [r.cluster for r in layout.rows] == [7, 3, 5]  # ties in size: smaller id first
    assert [r.size for r in layout.rows] == [10, 6, 6]
    assert (layout.num_points, layout.num_clusters, layout.num_singletons, layout.omitted) == (23, 4, 1, 0)
    mixed = layout.rows[0]
    assert mixed.majority == 0 and mixed.purity == pytest.approx(0.8) and mixed.num_classes == 2
    assert sorted(mixed.indices.tolist()) == sorted(np.flatnonzero(pred == 7).tolist())  # all 10 shown
    np.testing.assert_array_equal(mixed.foreign, true[mixed.indices] != 0)
    assert mixed.foreign.tolist() == [False] * 8 + [True] * 2  # majority class first
    for row in layout.rows[1:]:
        assert row.purity == 1.0 and row.num_classes == 1 and not row.foreign.any()
    limited = gallery_rows(pred, true, max_clusters=2, per_row=4, seed=0)
    assert [r.cluster for r in limited.rows] == [7, 3] and limited.omitted == 1
    assert all(len(r.indices) == 4 and len(set(r.indices.tolist())) == 4 for r in limited.rows)
    assert all((pred[r.indices] == r.cluster).all() for r in limited.rows)


def test_sampling_is_seeded_and_a_mixed_row_always_shows_a_foreign_thumbnail():
    pred = np.zeros(50, np.int64)
    true = np.zeros(50, np.int64)
    true[17] = 4  # 49 of class 0, one of class 4
    for seed in range(10):
        row = gallery_rows(pred, true, per_row=3, seed=seed).rows[0]
        assert row.purity == pytest.approx(0.98) and row.num_classes == 2
        assert row.foreign.tolist() == [False, False, True] and row.indices[-1] == 17
        np.testing.assert_array_equal(row.indices, gallery_rows(pred, true, per_row=3, seed=seed).rows[0].indices)
    draws = {tuple(gallery_rows(pred, None, per_row=3, seed=s).rows[0].indices) for s in range(10)}
    assert len(draws) > 1
    unlabelled = gallery_rows(pred, None, per_row=3, seed=0).rows[0]
    assert unlabelled.purity is None and unlabelled.majority is None and not unlabelled.foreign.any()


def test_row_choice_edge_cases_and_errors():
    empty = gallery_rows(np.zeros(0, np.int64), None)
    assert empty.rows == [] and empty.num_clusters == 0
    only_singletons = gallery_rows(np.arange(5), np.arange(5))
    assert only_singletons.rows == [] and only_singletons.num_singletons == 5 and only_singletons.omitted == 0
    with pytest.raises(ValueError, match="shape"):
        gallery_rows(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="per_row"):
        gallery_rows(np.zeros(3), None, per_row=0)


def _pixel(png, x, y):
    with Image.open(png) as im:
        return im.convert("RGB").getpixel((x, y))


@pytest.mark.parametrize("channels", [1, 3])
def test_gallery_png_has_one_band_per_row_and_red_frames_on_foreign_thumbnails(tmp_path, channels):
    perm, pred, true = _labels()
    pred, true = pred[perm], true[perm]
    images = _squares(true, channels)
    g = GalleryGeometry()
    path = tmp_path / "g.png"
    layout = plot_gallery(images, pred, true, path, max_clusters=20, per_row=12, seed=0)
    with Image.open(path) as im:
        width, height = im.size
    min_w, expected_h = g.size(3, 12)
    assert height == expected_h and width >= min_w
    for r, row in enumerate(layout.rows):
        for c, foreign in enumerate(row.foreign):
            x0, y0, x1, y1 = g.frame_box(r, c)
            assert _pixel(path, x0, y0) == (FRAME_FOREIGN if foreign else FRAME_MAJORITY)
            # thumbnail centre: the square's colour, i.e. the true class of the image shown there
            cls = true[row.indices[c]]
            expected = COLOURS[cls] if channels == 3 else np.full(3, 0.3 + 0.3 * cls, np.float32)
            assert _pixel(path, (x0 + x1) // 2, (y0 + y1) // 2) == tuple(int(v) for v in np.round(expected * 255))
        x0, y0, _, _ = g.frame_box(r, len(row.indices))  # past the last thumbnail: background
        assert _pixel(path, x0 + 5, y0 + 5) == (255, 255, 255)
    assert int(layout.rows[0].foreign.sum()) == 2  # cluster 7's two class-1 images are framed red
    # fewer rows allowed: exactly one band shorter
    plot_gallery(images, pred, true, path, max_clusters=2, per_row=12, seed=0)
    with Image.open(path) as im:
        assert im.size[1] == expected_h - g.row_h


def test_gallery_png_edge_cases(tmp_path):
    g = GalleryGeometry()
    for name, pred in (("empty", np.zeros(0, np.int64)), ("one", np.zeros(6, np.int64)),
                       ("singletons", np.arange(6))):
        images = _squares(np.zeros(len(pred), np.int64), 1)
        layout = plot_gallery(images, pred, None, tmp_path / f"{name}.png", per_row=4)
        with Image.open(tmp_path / f"{name}.png") as im:
            assert im.size[1] == g.size(len(layout.rows), 4)[1] == g.size(1, 4)[1]  # one band: a row or a message
        assert len(layout.rows) == (1 if name == "one" else 0)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        plot_gallery(np.zeros((3, 2, 4, 4), np.float32), np.zeros(3), None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="predicted labels"):
        plot_gallery(np.zeros((3, 1, 4, 4), np.float32), np.zeros(2), None, tmp_path / "x.png")


def _write_folder(root, classes: int, per_class: int, rng) -> None:
    for c in range(classes):
        d = root / f"group{c % 2}" / f"class{c:02d}"
        d.mkdir(parents=True)
        pattern = rng.integers(0, 255, (8, 8))
        for i in range(per_class):
            Image.fromarray(np.clip(pattern + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)).save(d / f"{i}.png")


def test_cli_writes_the_gallery_for_images_and_not_for_digits(runner, tmp_path):
    rng = np.random.default_rng(0)
    _write_folder(tmp_path / "train", 10, 6, rng)
    _write_folder(tmp_path / "test", 4, 6, rng)
    out = tmp_path / "img"
    result = runner.invoke(app, ["cluster", "data=images", f"data.train_images={tmp_path / 'train'}",
                                 f"data.test_images={tmp_path / 'test'}", "data.image_size=8", "encoder.epochs=1",
                                 "encoder.network.width=8", "encoder.network.embed_dim=16", "method=kmeans", "plot_max_points=50",
                                 "gallery_per_row=5", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    assert (out / "clusters.png").exists()
    labels = np.load(out / "labels.npy")
    rows = int((np.unique(labels, return_counts=True)[1] >= 2).sum())
    with Image.open(out / "clusters_gallery.png") as im:
        assert im.size[1] == GalleryGeometry().size(rows, 5)[1]
    assert "plot_gallery" in json.loads(result.stdout)["timings_s"]
    out2 = tmp_path / "digits"
    result = runner.invoke(app, ["cluster", "method=kmeans", "plot_max_points=50", f"output_dir={out2}"])
    assert result.exit_code == 0, result.stderr
    assert (out2 / "clusters.png").exists() and not (out2 / "clusters_gallery.png").exists()
