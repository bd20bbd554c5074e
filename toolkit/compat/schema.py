"""Declared value constraints of ``toolkit train-compatible`` and ``toolkit compare-models`` (``configs/compat/``).

Checked by :func:`toolkit.validation.validate` before any data is read.
"""

from __future__ import annotations

from toolkit.models.zoo import ZOO_TARGETS
from toolkit.validation import Check, boolean, choice, fraction, integer, number

METHODS = ("none", "bct", "naive", "fd-kl", "fd-lm", "bct+fd", "ldi", "bct+ldi")
_MODEL_KWARGS = [*(integer(f"model.{k}", 1) for k in ("embed_dim", "hidden", "width", "depth", "blocks",
                                                      "blocks_per_stage")),
                 *(integer(f"old.kwargs.{k}", 1) for k in ("embed_dim", "hidden"))]

_EVAL = [
    integer("seed", 0),
    integer("bootstrap.n", 0), fraction("bootstrap.level"),
    integer("retrieval.max_samples", 2), choice("retrieval.criterion_metric", ("top1", "top5", "map")),
]
_DATA = [
    choice("data.kind", ("digits", "images", "features")),
    fraction("data.test_fraction"), integer("data.max_train", 1, null=True), integer("data.max_test", 1, null=True),
    integer("data.image_size", 1), choice("data.channels", (1, 3)), boolean("data.invert"),
    integer("data.feature_dim", 1, null=True),
]

CHECKS: list[Check] = [
    choice("method", METHODS), *_EVAL, *_DATA, *_MODEL_KWARGS,
    choice("model._target_", tuple(ZOO_TARGETS)),
    number("model.dropout", 0.0, 1.0, hi_open=True),
    integer("train.epochs", 1), integer("train.batch_size", 1), number("train.lr", 0.0, lo_open=True),
    number("train.weight_decay", 0.0), integer("train.shift_pixels", 0),
    integer("old.num_classes", 1, null=True), fraction("old.train_fraction", hi_open=False),
    integer("old.epochs", 1, null=True), boolean("old.trust_code"),
    number("bct.weight", 0.0), boolean("bct.projection"), boolean("bct.synthesize_new"),
    number("naive.weight", 0.0),
    number("fd.weight", 0.0), number("fd.alpha", 0.0), number("fd.beta", 0.0),
    number("fd.temperature", 0.0, lo_open=True), choice("fd.lm_reduction", ("mean", "sum")),
    choice("fd.kind_for_bct", ("kl", "lm")),
    number("ldi.weight", 0.0), number("ldi.margin", 0.0), number("ldi.p", 1.0), integer("ldi.top_k", 1, null=True),
    number("ldi.alpha", 0.0), number("ldi.beta", 0.0),
]

COMPARE_CHECKS: list[Check] = [
    *_EVAL, *_DATA,
    number("max_nfr", 0.0, 1.0, hi_open=True, null=True), boolean("trust_code"),
]
