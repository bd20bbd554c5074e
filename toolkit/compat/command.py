"""``toolkit train-compatible`` and ``toolkit compare-models``: the functions the CLI runs.

Each runs its task (:mod:`toolkit.compat.task`) through the shared stages of :func:`toolkit.task.run_task`
(validate -> setup -> fit -> evaluate -> save).  See ``docs/compat.md``.
"""

from __future__ import annotations

from typing import Any

from toolkit.compat.task import CompareModels, TrainCompatible, check_max_nfr
from toolkit.task import run_task

__all__ = ["check_max_nfr", "compare", "run"]


def run(cfg: Any, run: Any) -> dict:
    """Train the new model with ``cfg.method`` and measure the update (``toolkit train-compatible``).

    Returns:
        ``{"metrics": ...}`` (see :class:`toolkit.compat.task.TrainCompatible`).

    Raises:
        InputError: bad config or inputs (before training starts).
    """
    return run_task(TrainCompatible(cfg, run))


def compare(cfg: Any, run: Any) -> dict:
    """Compare two models on the same labelled samples (``toolkit compare-models``).

    Returns:
        ``{"metrics": ...}``, with ``gate`` when ``max_nfr`` is set.

    Raises:
        InputError: see :class:`toolkit.compat.task.CompareModels`.
    """
    return run_task(CompareModels(cfg, run))
