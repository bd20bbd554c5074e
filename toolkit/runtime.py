"""Running a command: output directory staging, timings, metrics.json, exit codes.

Every command is a function ``fn(cfg, run) -> dict`` that reads its config,
writes artifacts through ``run`` and returns ``{"metrics": {...},
"artifacts": {...}}`` (either key optional).  :func:`execute` does the rest:

* outputs are written into a hidden staging directory next to ``output_dir``
  and moved into place file by file (``os.replace``) only when the command
  succeeds, so a failed run leaves nothing half-written;
* ``metrics.json`` and ``config.yaml`` (the resolved config) are always written;
* the result document (config, metrics, timings, output paths) is returned for
  ``--json``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from toolkit import __version__
from toolkit.console import log
from toolkit.errors import InputError


def default_output_dir(command: str) -> Path:
    """``outputs/<command>/<UTC timestamp with microseconds>`` under the working directory."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S-%f")
    return Path("outputs") / command / stamp


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ``ru_maxrss`` is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_rss_children_mb() -> float:
    """Peak RSS of the largest finished child process (workers, data loaders) so far, in MiB.

    Linux reports the maximum over waited-for children, not their sum: with ``w`` workers running at once the
    run's peak is at most ``peak_rss_mb() + w * peak_rss_children_mb()`` (forked pages are shared, so less).
    """
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished, waited-for children.

    Child processes (server workers, data-loader workers) count once they have exited, so a stage that
    joins its workers before it ends has their CPU time in its figure.
    """
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


class Run:
    """Handle on one command execution: where to write, and what was measured.

    Attributes:
        output_dir: final output directory (exists after a successful run).
        staging: directory files are written to while the command runs.
        timings: stage name -> wall seconds (float), filled by :meth:`timer`.
        cpu_timings: stage name -> CPU seconds of this process (all its threads) and of the child processes
            that finished during the stage (:func:`cpu_seconds`), which, unlike wall time, does not grow when
            other jobs share the cores.
        peak_rss: stage name -> process peak RSS in MiB at the stage's end.
        peak_rss_children: stage name -> the largest finished child's peak RSS in MiB at the stage's end.
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        parent = self.output_dir.parent
        blocker = next((a for a in [self.output_dir, *self.output_dir.parents] if a.exists() and not a.is_dir()),
                       None)
        if blocker is not None:
            raise InputError(self.output_dir, "output_dir", f"{blocker} is a file, not a directory")
        try:  # checked here, before any work: a run that cannot write its outputs must not start
            parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.output_dir.name}.partial-", dir=parent))
        except OSError as exc:
            raise InputError(self.output_dir, "output_dir", f"cannot write into {parent} "
                             f"({exc.strerror or type(exc).__name__})") from None
        self.timings: dict[str, float] = {}
        self.cpu_timings: dict[str, float] = {}
        self.peak_rss: dict[str, float] = {}
        self.peak_rss_children: dict[str, float] = {}

    def path(self, name: str) -> Path:
        """Staging path for artifact ``name`` (a relative path; parents are created)."""
        p = self.staging / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def existing(self, name: str) -> Path | None:
        """Path of ``name`` in the final output directory from an earlier run, if present (caches)."""
        p = self.output_dir / name
        return p if p.exists() else None

    def final_path(self, name: str) -> Path:
        """Where artifact ``name`` will live once the run succeeds."""
        return self.output_dir / name

    @contextlib.contextmanager
    def timer(self, stage: str) -> Iterator[None]:
        """Time a stage (wall seconds) and record peak RSS after it."""
        start, cpu_start = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
            self.cpu_timings[stage] = self.cpu_timings.get(stage, 0.0) + cpu_seconds() - cpu_start
            self.peak_rss[stage] = peak_rss_mb()
            self.peak_rss_children[stage] = peak_rss_children_mb()

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as indented, strict JSON to staging artifact ``name`` (NaN and infinities as ``null``)."""
        p = self.path(name)
        p.write_text(json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")
        return p

    def commit(self) -> list[str]:
        """Move every staged file into ``output_dir`` (atomic per file) and drop the staging dir.

        Returns:
            The moved files' paths relative to ``output_dir``.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        moved = []
        for src in sorted(self.staging.rglob("*")):
            if src.is_file():
                rel = src.relative_to(self.staging)
                dst = self.output_dir / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                moved.append(str(rel))
        shutil.rmtree(self.staging, ignore_errors=True)
        return moved

    def abort(self) -> None:
        """Delete the staging directory (nothing reaches ``output_dir``)."""
        shutil.rmtree(self.staging, ignore_errors=True)


def _json_default(obj: Any) -> Any:
    """JSON fallback for numpy scalars/arrays and paths."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def to_jsonable(obj: Any) -> Any:
    """Round-trip ``obj`` through JSON with numpy/path support; NaN and infinities become ``None``.

    The result always serialises as strict JSON (RFC 8259 has no NaN), so ``jq`` and other strict
    parsers read ``metrics.json`` and ``--json`` output.
    """
    return _finite(json.loads(json.dumps(obj, default=_json_default)))


def execute(command: str, cfg: Any, fn: Callable[[Any, Run], dict]) -> dict:
    """Run ``fn(cfg, run)`` with staged outputs and return the result document.

    Args:
        command: command name, used for the default output directory.
        cfg: composed DictConfig; ``cfg.output_dir`` (may be null) and
            ``cfg.seed`` (may be null) are read here.
        fn: the command body.

    Returns:
        ``{"command", "version", "config", "metrics", "timings_s", "cpu_timings_s", "peak_rss_mb",
        "output_dir", "artifacts"}``.

    Raises:
        InputError: propagated from ``fn`` (nothing is written).
        Exception: any runtime failure from ``fn`` (nothing is written).
    """
    from omegaconf import OmegaConf, open_dict

    from toolkit.config import to_container

    out = cfg.get("output_dir") or None
    output_dir = Path(os.path.expandvars(str(out))).expanduser() if out else default_output_dir(command)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(output_dir, "output_dir", "exists and is not a directory")
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
    resolved = to_container(cfg)
    run = Run(output_dir)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    try:
        result = fn(cfg, run) or {}
        run.timings["total"] = time.perf_counter() - start
        run.cpu_timings["total"] = cpu_seconds() - cpu_start
        run.peak_rss["total"] = peak_rss_mb()
        run.peak_rss_children["total"] = peak_rss_children_mb()
        metrics = to_jsonable(result.get("metrics", {}))
        run.write_json("metrics.json", {"metrics": metrics, "timings_s": run.timings,
                                        "cpu_timings_s": run.cpu_timings, "peak_rss_mb": run.peak_rss,
                                        "peak_rss_children_mb": run.peak_rss_children})
        run.path("config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
        moved = run.commit()
        artifacts = {name: str(run.final_path(name)) for name in moved}
        artifacts.update({k: str(v) for k, v in result.get("artifacts", {}).items()})
    except BaseException:
        run.abort()
        raise
    log(f"outputs written to {output_dir}")
    return {
        "command": command,
        "version": __version__,
        "config": resolved,
        "metrics": metrics,
        "timings_s": run.timings,
        "cpu_timings_s": run.cpu_timings,
        "peak_rss_mb": run.peak_rss,
        "peak_rss_children_mb": run.peak_rss_children,
        "output_dir": str(output_dir),
        "artifacts": artifacts,
    }


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU threads (config key ``threads``); ``None`` or 0 keeps torch's default (all cores).

    One thread makes a training run repeat bit for bit across processes: with several threads the order of
    floating-point reductions varies from run to run, and a GNN trained on a few thousand points amplifies
    the last-bit differences into different edge scores (issue 11: edge AUC 0.82193 vs 0.82235 on the
    same digits run).  faiss keeps its own OpenMP threads (its exact search does not depend on them).

    Args:
        threads: positive thread count, or ``None``/0 for the default.
    """
    if not threads:
        return
    import torch

    torch.set_num_threads(int(threads))


def seed_everything(seed: int | None) -> None:
    """Seed python, numpy and torch (if imported) for reproducible runs; ``None`` does nothing."""
    if seed is None:
        return
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
