"""Staged outputs: success moves everything into output_dir; failure leaves nothing."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from toolkit.errors import InputError
from toolkit.runtime import execute


def _cfg(tmp_path):
    return OmegaConf.create({"output_dir": str(tmp_path / "run"), "seed": 0})


def test_success_commits_metrics_config_and_artifacts(tmp_path):
    def body(cfg, run):
        run.path("labels.txt").write_text("1\n")
        return {"metrics": {"f": 0.5}}

    doc = execute("demo", _cfg(tmp_path), body)
    out = tmp_path / "run"
    assert json.loads((out / "metrics.json").read_text())["metrics"] == {"f": 0.5}
    assert (out / "labels.txt").read_text() == "1\n"
    assert (out / "config.yaml").exists()
    assert doc["artifacts"]["labels.txt"] == str(out / "labels.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("exc", [InputError("x.npy", "features", "bad"), RuntimeError("boom")])
def test_failure_leaves_nothing(tmp_path, exc):
    def body(cfg, run):
        run.path("labels.txt").write_text("partial")
        raise exc

    with pytest.raises(type(exc)):
        execute("demo", _cfg(tmp_path), body)
    assert list(tmp_path.iterdir()) == []


def test_json_outputs_are_strict_without_nan():
    import json
    import math

    from toolkit.runtime import to_jsonable

    doc = to_jsonable({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf"), "e": 2}})
    assert doc == {"a": None, "b": [1.0, None], "c": {"d": None, "e": 2}}
    text = json.dumps(doc, allow_nan=False)  # raises if anything non-finite survived
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in json.loads(text)["b"])


def _burn(seconds: float) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_stage_cpu_time_and_memory_include_finished_worker_processes(tmp_path):
    import multiprocessing as mp
    import time

    def body(cfg, run):
        with run.timer("work"):
            wall = time.perf_counter()
            p = mp.get_context("fork").Process(target=_burn, args=(0.6,))
            p.start()
            p.join()
            run.wall_of_work = time.perf_counter() - wall
        return {"metrics": {}}

    doc = execute("demo", _cfg(tmp_path), body)
    # the parent only waited: without the child's CPU the stage would show ~0 s
    assert doc["cpu_timings_s"]["work"] >= 0.5
    assert doc["peak_rss_children_mb"]["work"] > 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["peak_rss_children_mb"]["total"] > 0


def test_set_threads_sets_torch_threads_and_none_keeps_them():
    import torch

    from toolkit.runtime import set_threads

    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(None)  # keeps the current count
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
