"""SIGINT / SIGTERM mid-run (issue 14): exit 130 / 143, nothing half-written, and a rerun works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _toolkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "toolkit", *args]


@pytest.mark.parametrize("sig,code,phase", [(signal.SIGINT, 130, "setup"), (signal.SIGINT, 130, "fit"),
                                            (signal.SIGTERM, 143, "fit")])
def test_signal_mid_run_leaves_nothing(tmp_path, sig, code, phase):
    """phase "setup": 1 s after the staging directory appears (data preparation); "fit": once a Lightning
    ``fit`` is under way (its CSV logger wrote ``hparams.yaml`` in the staging directory), where Lightning's own
    KeyboardInterrupt handler would otherwise turn Ctrl-C into a silent exit 1."""
    out = tmp_path / "run"
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_toolkit("train-compatible", "-q", "train.epochs=200", "method=fd-kl",
                                     f"output_dir={out}"), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pattern = ".run.partial-*" if phase == "setup" else ".run.partial-*/**/hparams.yaml"
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob(pattern)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0 if phase == "setup" else 0.5)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "nothing was written" in lines[-1] and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".run.partial-*"))
    rerun = subprocess.run(_toolkit("train-compatible", "-q", "train.epochs=1", "data.max_train=200",
                                    f"output_dir={out}"), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (out / "metrics.json").is_file()
