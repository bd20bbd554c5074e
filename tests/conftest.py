"""Shared test fixtures: paths to ../shared/data (skip when absent) and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DGLBACKEND", "pytorch")
os.environ.setdefault("CI", "1")  # plain stderr output in tests

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, skipping the calling test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared real datasets are not beside this checkout)")
    return path


def bad_input_line(result, out: Path, *needles: str) -> str:
    """Assert a CLI result is the bad-input contract: exit 2, stderr exactly one ``error:`` line holding every
    needle, and ``out`` (the run's output directory) never created.  Returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


@pytest.fixture
def runner():
    """Typer test runner with stdout and stderr kept apart."""
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture(autouse=True)
def _console_not_quiet():
    """A CLI call with ``--quiet`` sets the console's module-level flag; reset it so later tests see notes."""
    yield
    from toolkit import console

    console.set_quiet(False)
