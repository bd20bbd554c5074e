"""Shared by the compress diagnostics that run ``toolkit compress ... --json`` as a user would (not a benchmark)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

TOOLKIT = [sys.executable, "-m", "toolkit"]


def run_compress(dataset: str, model: str, seed: int, overrides: list[str]) -> tuple[dict, float]:
    """One ``toolkit compress`` run without baselines or plots, in a throw-away output directory.

    Args:
        dataset / model: the ``data=`` and ``model=`` presets; seed: ``seed=``; overrides: more Hydra overrides.

    Returns:
        ``(document, wall seconds)``: the command's ``--json`` document (``metrics``, ``cpu_timings_s``, ...).

    Raises:
        RuntimeError: the command failed (its arguments, exit code and the tail of its stderr in the message).
    """
    with tempfile.TemporaryDirectory() as tmp:
        argv = [*TOOLKIT, "compress", f"data={dataset}", f"model={model}", f"seed={seed}",
                "baselines.enabled=false", "plot=false", *overrides, f"output_dir={tmp}/out", "--json", "--quiet"]
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "CI": "1"})
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:])}: exit {proc.returncode}: {proc.stderr[-400:]}")
    return json.loads(proc.stdout), wall
