"""From ``cfg.data`` to meta-training and test feature matrices.

* ``digits``: scikit-learn's bundled 8x8 digits, pixel values as features, split by class.
* ``features``: user files (``.npy``, ``.npz``, ``.csv``, learn-to-cluster ``.bin`` + ``.meta``).
* ``images``: class folders / zips or MNIST IDX files.  As in Hi-LANDER's pipeline, a supervised encoder
  (``configs/cluster/encoder/cnn.yaml``: its training settings, and ``encoder.network``, a shared zoo network
  definition of ``configs/network/`` built with ``hydra.utils.instantiate``) is trained on the meta-training
  classes and its embeddings are the features.  The encoder and the features are cached in the output directory (``encoder.ckpt``,
  ``features/*.npy``) and reused when a later run with the same data and encoder config points
  ``output_dir`` at it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.console import log
from toolkit.data.arrays import check_labels, load_features, load_labels
from toolkit.errors import InputError
from toolkit.runtime import Run


@dataclass
class ClusterData:
    """Meta-training and test data for clustering.

    Attributes:
        train_x: float32 ``[N, D]`` meta-training features; train_y: int64 ``[N]`` labels.
        test_x: float32 ``[M, D]`` features to cluster; test_y: int64 ``[M]`` labels or None.
        source: short description for logs and metrics.
        test_images: float32 ``[M, C, H, W]`` in [0, 1], the images behind ``test_x`` (image data only, else None);
            drawn in ``clusters_gallery.png``.
        info: details of how the features were made, copied into ``metrics.json`` (``encoder=dlib-face``:
            ``face_box`` and ``no_face_detected``).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray | None
    source: str
    test_images: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def _select(x: np.ndarray, y: np.ndarray, classes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if classes is None:
        return x, y
    wanted = np.asarray(list(classes), dtype=np.int64)
    keep = np.isin(y, wanted)
    if not keep.any():
        raise InputError("config", where, f"no samples of classes {wanted.tolist()}")
    return x[keep], y[keep]


@dataclass
class ImageInputs:
    """Images read from ``cfg.data`` (``data.kind=images``), before the encoder turns them into features.

    Attributes:
        train_images: float32 ``[N, C, H, W]`` in [0, 1]; train_y: int64 ``[N]`` labels 0..K-1.
        test_images: float32 ``[M, C, H, W]``; test_y: int64 ``[M]`` or None.
        groups: ``[N]`` group name (e.g. alphabet) of each meta-training image, or None.
        source: the test images' path.
    """

    train_images: np.ndarray
    train_y: np.ndarray
    test_images: np.ndarray
    test_y: np.ndarray | None
    groups: np.ndarray | None
    source: str


def read_cluster_inputs(cfg) -> ClusterData | ImageInputs:
    """Read ``cfg.data``: features ready to cluster (``digits``, ``features``), or images still to embed.

    Nothing is trained here; :func:`embed_cluster_inputs` turns :class:`ImageInputs` into features.

    Raises:
        InputError: unknown ``data.kind``, missing/malformed files, length or dimension mismatches,
            fewer than two meta-training classes.
    """
    data = cfg.data
    kind = data.kind
    if kind == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.data.astype(np.float32), d.target.astype(np.int64)
        tx, ty = _select(x, y, data.train_classes, "data.train_classes")
        sx, sy = _select(x, y, data.test_classes, "data.test_classes")
        out = ClusterData(tx, ty, sx, sy, "sklearn digits")
    elif kind == "features":
        tx = load_features(data.train_features, "data.train_features", data.feature_dim)
        ty = check_labels(load_labels(data.train_labels, "data.train_labels"), data.train_labels,
                          "data.train_labels", n=len(tx), nonnegative=True)
        sx = load_features(data.test_features, "data.test_features", data.feature_dim)
        sy = None
        if data.test_labels:
            sy = check_labels(load_labels(data.test_labels, "data.test_labels"), data.test_labels,
                              "data.test_labels", n=len(sx), nonnegative=True)
        out = ClusterData(tx, ty, sx, sy, str(data.test_features))
    elif kind == "images":
        return _read_images(cfg)
    else:
        raise InputError("config", "data.kind", f"unknown kind '{kind}' (expected digits, features or images)")
    validate(out)
    return out


def embed_cluster_inputs(inputs: ClusterData | ImageInputs, cfg, run: Run) -> ClusterData:
    """Features of ``inputs``: image inputs go through the encoder (trained on meta-training classes, or
    reused from the feature cache, or the pretrained ``encoder=dlib-face``); features pass through.

    Raises:
        InputError: as :func:`encode_images`, or dimensions/classes as :func:`validate`.
    """
    if isinstance(inputs, ClusterData):
        return inputs
    info: dict = {}
    train_f, train_y, test_f = encode_images(inputs.train_images, inputs.train_y, inputs.test_images, cfg, run,
                                             inputs.groups, info=info)
    out = ClusterData(train_f, train_y, test_f, inputs.test_y, inputs.source, test_images=inputs.test_images,
                      info=info)
    validate(out)
    return out


def load_cluster_data(cfg, run: Run) -> ClusterData:
    """:func:`read_cluster_inputs` then :func:`embed_cluster_inputs` (what the diagnostic scripts use).

    Raises:
        InputError: as those two.
    """
    return embed_cluster_inputs(read_cluster_inputs(cfg), cfg, run)


def validate(d: ClusterData) -> None:
    """Check dimensions and class counts of :class:`ClusterData`.

    Raises:
        InputError: train/test dimensions differ, or fewer than two meta-training classes.
    """
    if d.train_x.shape[1] != d.test_x.shape[1]:
        raise InputError("data.test_features", "features",
                         f"dimension {d.test_x.shape[1]} differs from the meta-training features' "
                         f"{d.train_x.shape[1]}")
    if len(np.unique(d.train_y)) < 2:
        raise InputError("data.train_labels", "labels",
                         "meta-training needs at least 2 classes (Hi-LANDER learns same/different-class links)")


def _load_image_split(path, labels_path, classes, cfg_data, where: str):
    from toolkit.data.images import load_idx, load_image_folder

    if not path:
        raise InputError("config", f"data.{where}_images", "no path given (a class folder, .zip or IDX file)")
    p = Path(str(path)).expanduser()
    if p.is_file() and p.suffix.lower() != ".zip":
        x, y = load_idx(p, labels_path)
        if y is None:
            y = np.full(len(x), -1, dtype=np.int64)
        names = None
        size = int(cfg_data.image_size or 0)
        if size and x.shape[-1] != size:
            import torch

            x = torch.nn.functional.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear",
                                                align_corners=False).numpy()
    else:
        x, y, names = load_image_folder(p, int(cfg_data.image_size or 0), 1, bool(cfg_data.invert))
    if classes is not None:
        x, y = _select(x, y, classes, f"data.{where}_classes")
    return x, y, names


def _strip_common_root(names: list[str] | None) -> list[str] | None:
    """Drop a top folder every class name shares (``images_background/Greek/character01`` -> ``Greek/character01``).

    The full Omniglot zips wrap the alphabets in one folder; without this every class would have the same
    group and the group split / ``drop_seen_groups`` would see one alphabet.  Single-level names are kept.
    """
    if not names:
        return names
    parts = [n.split("/") for n in names]
    while all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    return ["/".join(p) for p in parts]


def _read_images(cfg) -> ImageInputs:
    data = cfg.data
    tx, ty, tnames = _load_image_split(data.train_images, data.train_labels, data.train_classes, data, "train")
    sx, sy, snames = _load_image_split(data.test_images, data.test_labels, data.test_classes, data, "test")
    tnames, snames = _strip_common_root(tnames), _strip_common_root(snames)
    if data.drop_seen_groups and tnames is not None and snames is not None:
        seen = {n.split("/")[0] for n in tnames}
        keep_classes = [i for i, n in enumerate(snames) if n.split("/")[0] not in seen]
        if not keep_classes:
            raise InputError(str(data.test_images), "classes", "every test class's group also occurs in training")
        keep = np.isin(sy, keep_classes)
        sx, sy = sx[keep], sy[keep]
        log(f"kept {len(keep_classes)} test classes whose groups are unseen in meta-training")
    if data.test_unlabelled or (sy is not None and (sy < 0).all()):
        sy = None
    groups = None
    if tnames is not None and all("/" in n for n in tnames):
        groups = np.asarray([n.split("/")[0] for n in tnames])[ty]  # alphabet of each sample (Omniglot layout)
    _, ty = np.unique(ty, return_inverse=True)
    if len(np.unique(ty)) < 2:
        raise InputError(str(data.train_images), "labels", "meta-training needs at least 2 classes")
    return ImageInputs(tx, ty.astype(np.int64), sx, sy, groups, str(data.test_images))


def _cache_key(cfg, tx: np.ndarray, sx: np.ndarray) -> str:
    """16 hex digits of the SHA-256 of ``cfg.data``, the whole ``cfg.encoder`` (training settings and every
    ``encoder.network`` key: ``_target_`` and all its arguments, defaults included), the seed and the shapes."""
    from omegaconf import OmegaConf

    blob = json.dumps({"data": OmegaConf.to_container(cfg.data, resolve=True),
                       "encoder": OmegaConf.to_container(cfg.encoder, resolve=True), "seed": cfg.seed,
                       "shapes": [list(tx.shape), list(sx.shape)]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


MIN_SPLIT_CLASSES = 5


def encoder_split(ty: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Split meta-training sample indices by class into ``(encoder_idx, meta_idx)``.

    ``fraction`` of the classes train the encoder; the GNN and the baselines' thresholds are then fitted on the
    *other* classes, whose embeddings, like the test set's, come from an encoder that never saw them.
    ``fraction = 1``, or fewer than ``2 * MIN_SPLIT_CLASSES`` classes (an encoder of 2-3 classes embeds
    nothing useful, e.g. MNIST 0-4), uses every class for both (the reference's setting).

    With ``groups`` (str or int ``[N]``, e.g. the Omniglot alphabet of each sample) and at least two groups,
    whole groups go to one side, so the meta-training classes also come from groups the encoder never saw,
    as the test classes do (Omniglot: unseen alphabets).  Groups are shuffled and the encoder takes the
    prefix whose class count is closest to ``fraction`` of the classes; each side keeps at least one group.

    Args:
        ty: int64 ``[N]`` class labels.  fraction: share of classes for the encoder, in (0, 1].
        seed: RNG seed of the draw.  groups: optional ``[N]`` group of each sample.

    Returns:
        Two int64 index arrays into ``ty``; identical (all samples) when no split is made.
    """
    classes = np.unique(ty)
    if fraction >= 1 or len(classes) < 2 * MIN_SPLIT_CLASSES:
        idx = np.arange(len(ty))
        return idx, idx
    rng = np.random.default_rng(seed)
    if groups is not None and len(np.unique(groups)) >= 2:
        names = rng.permutation(np.unique(groups))
        per_group = np.array([len(np.unique(ty[groups == g])) for g in names])
        target = fraction * len(classes)
        # the prefix of the shuffled groups whose class count is closest to the target; one group at least
        # on each side
        n_groups = int(np.argmin(np.abs(np.cumsum(per_group)[:-1] - target))) + 1
        is_enc = np.isin(groups, names[:n_groups])
        return np.flatnonzero(is_enc), np.flatnonzero(~is_enc)
    n_enc = min(max(int(round(fraction * len(classes))), MIN_SPLIT_CLASSES), len(classes) - MIN_SPLIT_CLASSES)
    enc_classes = rng.permutation(classes)[:n_enc]
    is_enc = np.isin(ty, enc_classes)
    return np.flatnonzero(is_enc), np.flatnonzero(~is_enc)


def encode_images(tx: np.ndarray, ty: np.ndarray, sx: np.ndarray, cfg, run: Run,
                  groups: np.ndarray | None = None, info: dict | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train (or reuse from cache) the supervised image encoder and embed the meta-training and test images.

    Args:
        tx: float32 ``[N, 1, H, W]`` meta-training images; ty: int64 ``[N]`` labels 0..C-1.
        sx: float32 ``[M, 1, H, W]`` test images.
        groups: optional ``[N]`` group (e.g. alphabet) of each meta-training image; with
            ``encoder.split_by=group`` the encoder/meta-training split keeps groups whole.
        info: optional dict the encoder adds details to, for ``metrics.json`` (``encoder=dlib-face``:
            ``face_box`` and ``no_face_detected``, see :func:`toolkit.cluster.face_encoder.encode_faces`).

    Returns:
        ``(meta_features [N', E], meta_labels [N'], test_features [M, E])``: with
        ``encoder.class_fraction < 1`` only the meta-training classes the encoder did not see (N' < N).
        ``encoder=dlib-face`` (pretrained, C = 1 or 3): every meta-training image (N' = N), E = 128.
    """
    if str(cfg.encoder.get("arch", "")) == "dlib-face":  # pretrained: no encoder training, no class split
        from toolkit.cluster.face_encoder import encode_faces

        train_f, train_y, test_f, face_info = encode_faces(tx, ty, sx, cfg, run)
        if info is not None:
            info.update(face_info)
        return train_f, train_y, test_f
    key = _cache_key(cfg, tx, sx)
    cached = run.existing(f"features/{key}.npz")
    if cached is not None:
        with np.load(cached) as z:
            log(f"reusing cached encoder features {cached}")
            np.savez(run.path(f"features/{key}.npz"), **z)
            return z["train"], z["train_labels"], z["test"]
    from toolkit.models.classifier import predict, train_classifier
    from toolkit.models.zoo import model_from_config

    enc = cfg.encoder
    split_by = str(enc.split_by)  # group | class (schema)
    enc_idx, meta_idx = encoder_split(ty, float(enc.class_fraction), int(cfg.seed or 0),
                                      groups if split_by == "group" else None)
    _, enc_y = np.unique(ty[enc_idx], return_inverse=True)
    network = enc.network  # configs/network/<name> as mounted at encoder/network, with the encoder's sizes
    log(f"training the {str(network._target_).rsplit('.', 1)[-1]} image encoder on {len(enc_idx)} images of "
        f"{int(enc_y.max()) + 1} classes; {len(np.unique(ty[meta_idx]))} other classes ({len(meta_idx)} images) "
        "meta-train the clustering")
    with run.timer("encoder"):
        module = train_classifier(tx[enc_idx], enc_y,
                                  lambda shape, k: model_from_config(network, shape, k, "encoder.network"),
                                  epochs=int(enc.epochs), batch_size=int(enc.batch_size), lr=float(enc.lr),
                                  trainer_cfg=cfg.trainer, root_dir=run.staging / "encoder",
                                  weight_decay=float(enc.weight_decay), shift_pixels=int(enc.shift_pixels),
                                  seed=int(cfg.seed or 0), head=str(enc.head), scale=float(enc.scale),
                                  margin=float(enc.margin))
        import torch

        torch.save({"format": "toolkit.encoder/1", "hparams": dict(module.hparams),
                    "state_dict": module.state_dict()}, run.path("encoder.ckpt"))
        train_f, test_f = predict(module.net, tx[meta_idx]), predict(module.net, sx)
    train_y = ty[meta_idx].astype(np.int64)
    np.savez(run.path(f"features/{key}.npz"), train=train_f, train_labels=train_y, test=test_f)
    return train_f, train_y, test_f
