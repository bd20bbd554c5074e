"""The GitHub Actions gate in docs/compat.md: valid YAML whose compare-models step gates on NFR as documented."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import yaml

from toolkit.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "compat.md"


def _gate_command() -> list[str]:
    text = DOC.read_text()
    block = re.search(r"### `compare-models` as a pull-request gate.*?```yaml\n(.*?)```", text, re.S)
    assert block, "the CI gate YAML block is missing from docs/compat.md"
    workflow = yaml.safe_load(block.group(1))
    steps = workflow["jobs"]["negative-flips"]["steps"]
    runs = [s["run"] for s in steps if "run" in s and "toolkit compare-models" in s["run"]]
    assert len(runs) == 1
    install = " ".join(s.get("run", "") for s in steps)
    assert "torch==2.13.0" in install  # the CPU pin the README's install uses
    argv = shlex.split(runs[0])
    assert argv[:2] == ["toolkit", "compare-models"]
    return argv[2:]


def test_documented_gate_fails_on_too_many_flips_and_passes_otherwise(runner, tmp_path, monkeypatch):
    args = _gate_command()
    monkeypatch.chdir(tmp_path)
    y = np.arange(200) % 4
    np.savez("old_predictions.npz", predictions=y, labels=y)
    flipped = y.copy()
    flipped[:10] = (flipped[:10] + 1) % 4  # 5% negative flips, above the documented 1%
    np.savez("new_predictions.npz", predictions=flipped, labels=y)
    res = runner.invoke(app, ["compare-models", *args, "bootstrap.n=20"])
    assert res.exit_code == 3, res.stderr
    metrics = json.loads((tmp_path / "gate" / "metrics.json").read_text())["metrics"]
    assert abs(metrics["nfr"] - 0.05) < 1e-9
    np.savez("new_predictions.npz", predictions=y, labels=y)  # no flips: the gate passes
    res = runner.invoke(app, ["compare-models", *args, "bootstrap.n=20", "output_dir=gate2"])
    assert res.exit_code == 0, res.stderr
