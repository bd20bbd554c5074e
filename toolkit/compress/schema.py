"""Declared value constraints of ``toolkit compress`` (``configs/compress/``), checked by :func:`toolkit.validation.validate`."""

from __future__ import annotations

from toolkit.compress.files import is_codec
from toolkit.compress.models import MODEL_TARGETS
from toolkit.validation import Check, boolean, choice, fraction, int_list, integer, list_of, number

UNSEEN_POLICIES = ("error", "drop", "other")
"""Values of ``data.unseen_labels`` (see :func:`toolkit.compress.splits.apply_unseen_policy`)."""

SVD_METRICS = ("auto", "none", "input_layers")
"""Values of ``svd.metric`` (see :func:`toolkit.compress.command.svd_metric`)."""


def _column(value: object) -> bool:
    """A header name (non-empty str) or a 0-based index (int >= 0, not bool)."""
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and value >= 0) or (isinstance(value, str) and bool(value))


def is_tail_rank(value) -> bool:
    """Whether ``value`` is a valid ``svd.tail_rank``: ``none``, ``auto``, ``validation``, ``finetuned`` or an int >= 0
    (not a bool)."""
    return value in ("none", "auto", "validation", "finetuned") or (isinstance(value, int) and not isinstance(value, bool)
                                                       and value >= 0)


CHECKS: list[Check] = [
    integer("seed", 0),
    list_of(fraction("compression", null=True)),
    list_of(integer("rank", 1, null=True)),
    choice("svd.row_weights", ("none", "frequency")), choice("svd.metric", SVD_METRICS),
    Check("svd.tail_rank", "none, auto, validation, finetuned or an integer >= 0", is_tail_rank),
    boolean("dense.factorize"), fraction("dense.compression", null=True), integer("dense.rank", 1, null=True),
    integer("batch_size", 1), integer("threads", 1, null=True),
    choice("optimizer.name", ("adam", "sgd")), number("optimizer.adam_eps", 0.0, lo_open=True),
    number("optimizer.momentum", 0.0, 1.0, hi_open=True), number("optimizer.weight_decay", 0.0),
    choice("compression_of", ("embedding", "model")),
    integer("pretrain.epochs", 1), number("pretrain.lr", 0.0, lo_open=True), integer("finetune.epochs", 1),
    boolean("pretrain.restore_best"), integer("pretrain.early_stopping_patience", 1, null=True),
    boolean("finetune.restore_best"), integer("finetune.early_stopping_patience", 1, null=True),
    number("finetune.distill.weight", 0.0, 1.0), number("finetune.distill.temperature", 0.0, lo_open=True),
    boolean("baselines.enabled"),
    Check("baselines.quantize_bits", "a list of bit widths from 16, 8, 4",
          lambda v: isinstance(v, list) and all(b in (16, 8, 4) for b in v)),
    boolean("baselines.from_scratch"),
    integer("eval.latency_batch", 1), integer("eval.latency_repeats", 1), boolean("plot"),
    choice("model._target_", tuple(MODEL_TARGETS)), integer("model.embedding_dim", 1, null=True),
    integer("model.hidden", 1), number("model.dropout", 0.0, 1.0, hi_open=True),
    int_list("model.dan_hidden", 1), integer("model.cnn_filters", 1), int_list("model.cnn_widths", 1),
    choice("scheduler.name", ("calr", "clr", "triangular2", "cosine-restarts", "constant")),
    number("scheduler.max_lr", 0.0, lo_open=True), number("scheduler.min_lr", 0.0),
    number("scheduler.cycle_epochs", 0.0, lo_open=True), number("scheduler.decay", 0.0, 1.0, lo_open=True),
    integer("scheduler.anneal_cycles", 0), number("scheduler.restart_min_lr", 0.0, null=True),
    choice("data.format", ("auto", "lines", "snips", "csv", "tsv", "jsonl")),
    fraction("data.valid_fraction"), boolean("data.int_labels"), boolean("data.lowercase"),
    integer("data.max_len", 1), integer("data.min_freq", 1), integer("data.max_vocab", 1, null=True),
    fraction("data.test_fraction", null=True), boolean("data.split.stratify"), integer("data.split.seed", 0, null=True),
    choice("data.unseen_labels", UNSEEN_POLICIES), boolean("data.header"),
    Check("data.text_column", "a column name or a 0-based column index", _column),
    Check("data.label_column", "a column name or a 0-based column index", _column),
    Check("data.encoding", "a Python codec name such as utf-8, latin-1 or cp1252", is_codec),
    Check("data.vectors_encoding", "a Python codec name such as utf-8, latin-1 or cp1252", is_codec),
    Check("data.vectors_member", "the name of a member of the vectors zip archive",
          lambda v: isinstance(v, str) and bool(v), null=True),
]
