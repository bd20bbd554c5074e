"""Declared value constraints of ``toolkit train-encrypted`` (``configs/encrypted/``), checked by
:func:`toolkit.validation.validate` before keys are made or data is read."""

from __future__ import annotations

from toolkit.validation import Check, boolean, choice, either, fraction, integer, number


def _power_of_two(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1024 and v & (v - 1) == 0


STEPS = ("all", "keygen", "encrypt", "train", "refresh", "decrypt")

CHECKS: list[Check] = [
    choice("step", STEPS), choice("circuit", ("low-depth", "baseline")), boolean("plan"), integer("seed", 0),
    boolean("plot"), either(choice("workers", ("auto",)), integer("workers", 1)), boolean("estimate_time"),
    integer("train.iterations", 1),
    either(choice("train.lr", ("auto",)), number("train.lr", 0.0, lo_open=True)),
    Check("train.lr_grid", "a non-empty list of numbers > 0",
          lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, (int, float)) and x > 0 for x in v)),
    boolean("train.allow_rising_loss"), integer("train.batch_size", 1), choice("train.sigmoid", ("han16", "kim8")),
    either(choice("train.momentum", ("auto",)), number("train.momentum", 0.0, 1.0, hi_open=True)),
    Check("train.momentum_grid", "a non-empty list of numbers in [0, 1)",
          lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(
              isinstance(m, (int, float)) and not isinstance(m, bool) and 0 <= m < 1 for m in v)),
    choice("train.momentum_schedule", ("fixed", "nesterov")),
    Check("ckks.poly_modulus_degree", "a power of two >= 1024", _power_of_two, null=True),
    Check("ckks.coeff_mod_bit_sizes", "a list of prime sizes in bits (integers >= 1)",
          lambda v: isinstance(v, list) and bool(v) and all(isinstance(b, int) and b >= 1 for b in v), null=True), integer("ckks.scale_bits", 1, null=True),
    Check("ckks.max_poly_modulus_degree", "a power of two >= 1024", _power_of_two), integer("ckks.max_blocks", 1),
    number("ckks.max_data_gib", 0.0, null=True), boolean("ckks.test_only_insecure"),
    choice("data.kind", ("breast_cancer", "mnist38", "csv")), fraction("data.test_fraction"),
    integer("data.max_train", 1, null=True), choice("data.scaling", ("minmax", "maxabs", "mean", "robust", "standard")),
    number("data.clip_quantile", 0.5, 1.0, lo_open=True, null=True),
]
