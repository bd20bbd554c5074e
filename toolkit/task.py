"""One shape for every command: ``validate -> setup -> fit -> evaluate -> save``.

A command is a :class:`Task` subclass; :func:`run_task` calls its stages in that order and returns the
``{"metrics": ...}`` document that :func:`toolkit.runtime.execute` writes to ``metrics.json``.  A reader who
knows one command knows where every other command reads its inputs (``setup``), trains (``fit``), measures
(``evaluate``) and writes its artifacts (``save``).

* ``validate``: every check that needs no data: the command's declared constraints
  (:func:`toolkit.validation.validate`, the same the CLI runs before it creates an output directory, so a
  benchmark or test that calls the task directly gets the same exit-2 errors) and cross-key rules.
* ``setup``: read data and models, build what ``fit`` trains; input files are checked here.
* ``fit``: train; a task with nothing to train leaves it empty.
* ``evaluate``: measure, return the metrics dict (JSON-able).
* ``save``: write the artifacts (models, predictions) through ``self.run`` (staged, so a failure leaves
  nothing half-written).

Stage timers (``run.timer``) stay inside the stages under the names the benchmarks read (``load_data``,
``train``, ``evaluate``, ...).
"""

from __future__ import annotations

from typing import Any


class Task:
    """Base class of a command run.

    Args:
        cfg: the composed config (``DictConfig``) of the command.
        run: the :class:`toolkit.runtime.Run` giving the output paths and stage timers.

    Attributes:
        config_name: primary config name whose declared constraints ``validate`` checks
            (a key of :data:`toolkit.validation.SCHEMAS`); subclasses set it.
    """

    config_name: str = ""

    def __init__(self, cfg: Any, run: Any) -> None:
        self.cfg = cfg
        self.run = run

    def validate(self) -> None:
        """Check the config before any work.

        Raises:
            toolkit.errors.InputError: a declared constraint is violated (exit 2).
        """
        if self.config_name:
            from toolkit.validation import validate

            validate(self.config_name, self.cfg)

    def setup(self) -> None:
        """Read data and models; build what :meth:`fit` trains."""

    def fit(self) -> None:
        """Train (nothing by default)."""

    def evaluate(self) -> dict:
        """Measure and return the metrics (a JSON-able dict)."""
        return {}

    def save(self, metrics: dict) -> None:
        """Write artifacts through ``self.run`` (``metrics`` may be extended in place)."""


def run_task(task: Task) -> dict:
    """Run ``task``'s stages in order and return ``{"metrics": metrics}``.

    Raises:
        toolkit.errors.InputError: from any stage (bad config or input: exit 2).
    """
    task.validate()
    task.setup()
    task.fit()
    metrics = task.evaluate()
    task.save(metrics)
    return {"metrics": metrics}
