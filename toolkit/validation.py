"""Declared value constraints of every command's config, checked before any work (issue 11).

Hydra's struct mode already rejects unknown keys and group options at composition. What it cannot know is the
form a value must have: ``model.train.lr=-1`` or ``compression=1.5`` compose fine and used to fail (or silently
misbehave) minutes later. Each command declares its constraints as a list of :class:`Check` (``CHECKS`` in
``toolkit/<technique>/schema.py``); :func:`validate` runs them on the composed config and raises one
:class:`~toolkit.errors.InputError` naming the key, the value and the expected form, which the CLI turns into exit
code 2 before anything is loaded or written.

A check whose key is absent from the composed config (a key that only some data presets have) is skipped.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from toolkit.errors import InputError

SCHEMAS = {"cluster": "toolkit.cluster.schema", "train_compatible": "toolkit.compat.schema",
           "compare_models": "toolkit.compat.schema:COMPARE_CHECKS", "compress": "toolkit.compress.schema",
           "train_encrypted": "toolkit.encrypted.schema"}
"""Primary config name -> module (``:NAME`` of its check list, default ``CHECKS``)."""

_MISSING = object()


@dataclass(frozen=True)
class Check:
    """One constraint: ``ok(value)`` must hold for the value at dotted ``key``.

    Args:
        key: dotted config key, e.g. ``"model.train.lr"``.
        expected: the expected form in words, shown in the error (``"a number > 0"``).
        ok: predicate on the (resolved, plain Python) value.
        null: ``None`` is also accepted.
    """

    key: str
    expected: str
    ok: Callable[[Any], bool]
    null: bool = False

    def problem(self, value: Any) -> str | None:
        """``None`` when ``value`` passes, else the error text (without the key)."""
        if value is None:
            return None if self.null else f"got null; expected {self.expected}"
        try:
            good = bool(self.ok(value))
        except (TypeError, ValueError):
            good = False
        if good:
            return None
        suffix = " or null" if self.null else ""
        return f"got {value!r}; expected {self.expected}{suffix}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def integer(key: str, lo: int | None = None, hi: int | None = None, null: bool = False) -> Check:
    """An int in ``[lo, hi]`` (either bound optional)."""
    if lo is not None and hi is not None:
        words = f"an integer in [{lo}, {hi}]"
    elif lo is not None:
        words = f"an integer >= {lo}"
    else:
        words = "an integer" if hi is None else f"an integer <= {hi}"
    return Check(key, words, lambda v: _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi), null)


def number(key: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, null: bool = False) -> Check:
    """A finite number within the given bounds (open or closed)."""
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    words = "a number" + (" " + " and ".join(parts) if parts else "")

    def ok(v: Any) -> bool:
        if not _is_num(v):
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if hi_open else v > hi))

    return Check(key, words, ok, null)


def fraction(key: str, lo_open: bool = True, hi_open: bool = True, null: bool = False) -> Check:
    """A number in (0, 1) (bounds open by default)."""
    return number(key, 0.0, 1.0, lo_open, hi_open, null)


def boolean(key: str) -> Check:
    """``true`` or ``false``."""
    return Check(key, "true or false", lambda v: isinstance(v, bool))


def choice(key: str, options: Sequence[Any], null: bool = False) -> Check:
    """One of ``options``."""
    return Check(key, "one of " + ", ".join(str(o) for o in options), lambda v: v in options, null)


def int_list(key: str, lo: int = 1, nonempty: bool = True) -> Check:
    """A list of integers >= ``lo``."""
    return Check(key, f"a {'non-empty ' if nonempty else ''}list of integers >= {lo}",
                 lambda v: isinstance(v, list) and (bool(v) or not nonempty)
                 and all(_is_int(x) and x >= lo for x in v))


def either(first: Check, second: Check) -> Check:
    """Accept what ``first`` or ``second`` accepts (same key), e.g. ``auto`` or a number."""
    return Check(first.key, f"{first.expected} or {second.expected}",
                 lambda v: first.problem(v) is None or second.problem(v) is None, first.null or second.null)


def list_of(check: Check, nonempty: bool = True) -> Check:
    """A value ``check`` accepts, or a list of such values (a sweep)."""
    return Check(check.key, f"{check.expected}, or a list of them",
                 lambda v: (isinstance(v, list) and (bool(v) or not nonempty)
                            and all(check.problem(x) is None for x in v)) or check.problem(v) is None,
                 check.null)


def _lookup(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def checks_for(name: str) -> list[Check]:
    """The declared checks of primary config ``name`` (see :data:`SCHEMAS`); empty for unknown names."""
    target = SCHEMAS.get(name)
    if target is None:
        return []
    module, _, attr = target.partition(":")
    return list(getattr(importlib.import_module(module), attr or "CHECKS"))


def validate(name: str, cfg: Any) -> None:
    """Check the composed config of command ``name`` against its declared constraints.

    Args:
        name: primary config name (``"cluster"``, ``"train_compatible"``, ...).
        cfg: the composed ``DictConfig`` (interpolations are resolved here) or a plain dict.

    Raises:
        InputError: the first violated check: ``config: <key>: got <value>; expected <form>``; or an interpolation
            that cannot be resolved.
    """
    from omegaconf import DictConfig

    from toolkit.config import to_container

    plain = to_container(cfg) if isinstance(cfg, DictConfig) else cfg
    for check in checks_for(name):
        value = _lookup(plain, check.key)
        if value is _MISSING:
            continue
        problem = check.problem(value)
        if problem:
            raise InputError("config", check.key, problem)
