"""Image pipeline: encoder class split, caching of encoder features, end to end on a tiny image folder."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from toolkit.cli import app
from toolkit.cluster.features import encoder_split


def test_encoder_split_is_class_disjoint():
    y = np.repeat(np.arange(12), 3)
    enc, meta = encoder_split(y, 0.5, seed=0)
    assert set(y[enc]).isdisjoint(y[meta])
    assert len(set(y[enc])) == 6 and len(set(y[meta])) == 6
    enc_all, meta_all = encoder_split(np.repeat(np.arange(5), 3), 0.5, seed=0)
    np.testing.assert_array_equal(enc_all, meta_all)  # too few classes: every class for both
    enc1, meta1 = encoder_split(y, 1.0, seed=0)
    assert len(enc1) == len(meta1) == len(y)


def test_encoder_split_keeps_groups_whole_and_is_closest_to_the_fraction():
    # 4 groups with 2, 6, 4 and 8 classes (20 classes, 2 samples each)
    sizes = [2, 6, 4, 8]
    y = np.repeat(np.arange(sum(sizes)), 2)
    group_of_class = np.repeat(np.array(["a", "b", "c", "d"]), sizes)
    groups = group_of_class[y]
    for seed in range(5):
        enc, meta = encoder_split(y, 0.5, seed=seed, groups=groups)
        assert set(groups[enc]).isdisjoint(groups[meta])  # no group on both sides
        assert len(set(groups[enc])) >= 1 and len(set(groups[meta])) >= 1
        assert len(enc) + len(meta) == len(y)
        order = np.random.default_rng(seed).permutation(np.unique(groups))
        prefix = np.cumsum([sizes["abcd".index(g)] for g in order])[:-1]
        best = prefix[np.argmin(np.abs(prefix - 10))]
        assert len(set(y[enc])) == best  # the prefix closest to half of the 20 classes
    # one group only: falls back to a class split
    enc, meta = encoder_split(y, 0.5, seed=0, groups=np.full(len(y), "a"))
    assert set(y[enc]).isdisjoint(y[meta]) and len(set(y[enc])) == 10


def _write_folder(root, classes, per_class, rng):
    for c in range(classes):
        d = root / f"group{c % 2}" / f"class{c:02d}"
        d.mkdir(parents=True)
        pattern = rng.integers(0, 255, (8, 8))
        for i in range(per_class):
            noisy = np.clip(pattern + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(d / f"{i}.png")


def test_image_folder_end_to_end_and_feature_cache(runner, tmp_path):
    rng = np.random.default_rng(0)
    _write_folder(tmp_path / "train", 10, 12, rng)
    _write_folder(tmp_path / "test", 4, 12, rng)
    out = tmp_path / "out"
    args = ["cluster", "data=images", f"data.train_images={tmp_path / 'train'}",
            f"data.test_images={tmp_path / 'test'}", "data.image_size=8", "encoder.epochs=1", "encoder.network.width=8",
            "encoder.network.embed_dim=16", "model.hidden=16", "model.train.epochs=2", "model.train.min_steps=0",
            "model.train.knn_k=[5]", "model.train.levels=[1]", "model.infer.tau=0.5", "plot=false", f"output_dir={out}", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["metrics"]["num_points"] == 48 and doc["metrics"]["num_classes"] == 4
    assert (out / "encoder.ckpt").exists()
    cached = list((out / "features").glob("*.npz"))
    assert len(cached) == 1
    with np.load(cached[0]) as z:
        assert z["test"].shape == (48, 16) and len(np.unique(z["train_labels"])) == 5  # the classes the encoder did not see
    # a second run into the same output_dir reuses the cached features (no encoder timing)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "encoder" not in json.loads(result.stdout)["timings_s"]


def test_common_top_folder_is_stripped_so_alphabets_are_groups():
    from toolkit.cluster.features import _strip_common_root

    names = ["images_background/Greek/character01", "images_background/Latin/character02"]
    assert _strip_common_root(names) == ["Greek/character01", "Latin/character02"]
    assert _strip_common_root(["a/x", "a/y"]) == ["a/x", "a/y"]  # two levels: the group itself is kept
    assert _strip_common_root(["cat", "dog"]) == ["cat", "dog"] and _strip_common_root(None) is None


def test_feature_cache_key_covers_every_network_argument():
    """The encoder's cache key changes with any ``encoder.network`` key, including zoo defaults not overridden
    by the encoder (``blocks``) and the network itself (``encoder/network=resnet``)."""
    from toolkit.cluster.features import _cache_key
    from toolkit.config import compose_config

    tx, sx = np.zeros((4, 1, 8, 8), np.float32), np.zeros((2, 1, 8, 8), np.float32)
    base = _cache_key(compose_config("cluster", ["data=images"]), tx, sx)
    assert base == _cache_key(compose_config("cluster", ["data=images"]), tx, sx)
    for override in ("encoder.network.blocks=3", "encoder.network.width=32", "encoder.network.embed_dim=64",
                     "encoder/network=resnet", "encoder.epochs=3"):
        assert _cache_key(compose_config("cluster", ["data=images", override]), tx, sx) != base, override
