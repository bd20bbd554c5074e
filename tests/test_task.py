"""toolkit.task: the stage order every command shares, and validation before any work."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from toolkit.errors import InputError
from toolkit.task import Task, run_task


class Recorder(Task):
    config_name = "train_compatible"

    def __init__(self, cfg, run):
        super().__init__(cfg, run)
        self.calls: list[str] = []

    def validate(self):
        self.calls.append("validate")
        super().validate()

    def setup(self):
        self.calls.append("setup")

    def fit(self):
        self.calls.append("fit")

    def evaluate(self):
        self.calls.append("evaluate")
        return {"n": 1}

    def save(self, metrics):
        self.calls.append("save")
        metrics["saved"] = True


def _cfg(**over):
    from toolkit.config import compose_config

    return compose_config("train_compatible", [f"{k}={v}" for k, v in over.items()])


def test_stages_run_in_order_and_save_sees_the_metrics():
    task = Recorder(_cfg(), run=None)
    assert run_task(task) == {"metrics": {"n": 1, "saved": True}}
    assert task.calls == ["validate", "setup", "fit", "evaluate", "save"]


def test_a_declared_constraint_stops_the_task_before_setup():
    task = Recorder(_cfg(**{"train.epochs": 0}), run=None)
    with pytest.raises(InputError, match="train.epochs"):
        run_task(task)
    assert task.calls == ["validate"]


def test_base_task_without_schema_validates_nothing():
    task = Task(OmegaConf.create({}), run=None)
    assert run_task(task) == {"metrics": {}}
