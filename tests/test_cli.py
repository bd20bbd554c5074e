"""CLI surface shared by all commands: help, version, --cfg, bad overrides."""

from __future__ import annotations

import json
import subprocess
import sys

from toolkit import __version__
from toolkit.cli import app


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


COMMANDS = {"cluster": "cluster", "train-compatible": "train_compatible", "compare-models": "compare_models",
            "compress": "compress", "train-encrypted": "train_encrypted"}


def test_help_lists_every_command_with_its_summary(runner):
    import typer.main

    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    group = typer.main.get_command(app)
    assert set(group.commands) == set(COMMANDS)  # a command added or dropped must update the config trees too
    for name, command in group.commands.items():
        summary = (command.help or "").strip().splitlines()[0][:30]
        assert summary and summary in " ".join(result.stdout.split()), name


def test_every_command_has_a_config_tree():
    from toolkit.config import TREES, primary_path

    assert set(COMMANDS.values()) == set(TREES)
    assert all(primary_path(name).is_file() for name in TREES)


def test_help_does_not_import_torch():
    code = "import sys; from toolkit.cli import app; assert 'torch' not in sys.modules and 'dgl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cfg_prints_composed_config(runner):
    result = runner.invoke(app, ["cluster", "--cfg", "method=kmeans", "model.infer.tau=0.7"])
    assert result.exit_code == 0, result.stderr
    assert "method: kmeans" in result.stdout
    assert "tau: 0.7" in result.stdout


def test_unknown_override_key_exits_2(runner):
    result = runner.invoke(app, ["cluster", "model.no_such_key=1"])
    assert result.exit_code == 2
    assert "no_such_key" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_group_option_exits_2(runner):
    result = runner.invoke(app, ["cluster", "data=nonexistent"])
    assert result.exit_code == 2
    assert "nonexistent" in result.stderr


def test_unknown_flag_exits_2(runner):
    result = runner.invoke(app, ["cluster", "--no-such-flag"])
    assert result.exit_code == 2


def test_json_error_document_on_bad_input(runner):
    result = runner.invoke(app, ["cluster", "model.train.lr=-1", "--json"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["command"] == "cluster" and doc["error"]["exit_code"] == 2
    assert doc["error"]["message"] == "config: model.train.lr: got -1; expected a number > 0"
    assert result.stderr.strip() == "error: " + doc["error"]["message"]


def test_no_json_on_stdout_without_the_flag(runner):
    result = runner.invoke(app, ["cluster", "model.train.lr=-1"])
    assert result.exit_code == 2 and result.stdout == ""
