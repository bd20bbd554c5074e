"""Shared by the cluster diagnostics that re-examine a finished ``toolkit cluster`` run (not a benchmark itself)."""

from __future__ import annotations

from pathlib import Path

from toolkit.cluster.command import load_checkpoint
from toolkit.cluster.features import ClusterData, load_cluster_data
from toolkit.config import compose_config
from toolkit.runtime import Run


def load_finished_run(out: Path, overrides: list[str]) -> tuple:
    """Config, labelled data and model of the Hi-LANDER run in ``out`` (its cached features and ``model.ckpt``).

    Args:
        out: the run's ``output_dir``; overrides: that run's ``toolkit cluster`` overrides (``data=...``, ``seed``).

    Returns:
        ``(cfg, data: ClusterData, model)``; nothing is written into ``out``.

    Raises:
        SystemExit: the test set has no labels.
    """
    cfg = compose_config("cluster", [*overrides, f"output_dir={out}", "trainer.progress=false"])
    run = Run(out)  # the run's own output_dir, so its cached encoder features are found
    data: ClusterData = load_cluster_data(cfg, run)
    run.abort()  # writes nothing into the run being diagnosed
    if data.test_y is None:
        raise SystemExit("the test set has no labels")
    return cfg, data, load_checkpoint(str(out / "model.ckpt"), data.test_x.shape[1])
