"""The ``toolkit`` command line (Typer).  Thin by design.

Each command parses its options, composes its Hydra config, calls one
function through :func:`toolkit.runtime.execute` and prints the result.  Heavy
libraries are imported inside the command bodies so ``toolkit --help`` and
``toolkit --version`` stay fast.

Exit codes: 0 success, 1 runtime failure, 2 bad input or config, 130 interrupted.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Annotated

import typer

from toolkit import __version__
from toolkit.errors import EXIT_BAD_INPUT, EXIT_RUNTIME, InputError

app = typer.Typer(
    name="toolkit",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="ML research tools for the shell and CI: Hi-LANDER clustering, compatible model updates, "
    "embedding compression, encrypted logistic regression.",
)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Hydra overrides key=value, e.g. data=features method=kmeans model.tau=0.8",
                   show_default=False),
]
CfgFlag = Annotated[bool, typer.Option("--cfg", help="Print the composed config (YAML) and exit.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (config, metrics, "
                                        "timings, output paths) on stdout.")]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or log lines on stderr.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="Show the version and exit.")] = None,
) -> None:
    """ML research tools for the shell and CI."""


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` (one line) on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def run_command(command: str, config_name: str, target: str, overrides: list[str] | None,
                print_cfg: bool, json_out: bool, quiet: bool, extra: list[str] | None = None) -> dict | None:
    """Compose config ``config_name`` with ``overrides``, then run ``target`` (``module:function``).

    ``extra`` overrides are appended after the user's (used for positional
    arguments a command maps onto config keys).  Prints YAML for ``--cfg``,
    the JSON document for ``--json``, otherwise a metrics table.

    Raises:
        typer.Exit: with code 2 on bad input/config, 1 on runtime failure.
    """
    from toolkit import console

    console.set_quiet(quiet)
    try:
        from toolkit.config import compose_config, to_yaml

        cfg = compose_config(config_name, list(overrides or []) + list(extra or []))
        if print_cfg:
            typer.echo(to_yaml(cfg, resolve=False), nl=False)
            return None
        module_name, func_name = target.split(":")
        fn = getattr(importlib.import_module(module_name), func_name)
        from toolkit.runtime import execute

        doc = execute(command, cfg, fn)
    except InputError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # runtime failure: one line, traceback on demand
        if os.environ.get("TOOLKIT_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise fail(f"{type(exc).__name__}: {msg} (set TOOLKIT_DEBUG=1 for the traceback)",
                   EXIT_RUNTIME) from None
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=True) + "\n")
    else:
        print_metrics(doc)
    return doc


def print_metrics(doc: dict) -> None:
    """Print a metrics table and the output directory to stdout with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"toolkit {doc['command']}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")

    def add(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, float):
            table.add_row(prefix, f"{value:.4f}")
        elif isinstance(value, (int, str, bool)) or value is None:
            table.add_row(prefix, str(value))

    add("", doc.get("metrics", {}))
    table.add_row("time (s)", f"{doc['timings_s'].get('total', 0.0):.1f}")
    out = Console(highlight=False)
    out.print(table)
    out.print(f"output_dir: {doc['output_dir']}")


@app.command()
def cluster(overrides: Overrides = None, cfg: CfgFlag = False, json_out: JsonFlag = False,
            quiet: QuietFlag = False) -> None:
    """Cluster unseen classes with Hi-LANDER (or a baseline), learned from labelled meta-training data.

    Examples:

      toolkit cluster                                   # bundled digits: meta-train 0-4, cluster 5-9

      toolkit cluster data=features data.train_features=tr.npy data.train_labels=tr_lab.npy data.test_features=te.npy

      toolkit cluster method=hdbscan --json

      toolkit cluster model.checkpoint=outputs/cluster/RUN/model.ckpt data=features ...
    """
    run_command("cluster", "cluster", "toolkit.cluster.command:run", overrides, cfg, json_out, quiet)


# --- train-compatible / compare-models (issue: BCT and PCT) -------------------------------------

@app.command("train-compatible")
def train_compatible(overrides: Overrides = None, cfg: CfgFlag = False, json_out: JsonFlag = False,
                     quiet: QuietFlag = False) -> None:
    """Train a new model compatible with an old one (BCT) and with few negative flips (focal distillation)."""
    run_command("train-compatible", "train_compatible", "toolkit.compat.command:run", overrides, cfg,
                json_out, quiet)


@app.command("compare-models")
def compare_models(old: Annotated[str, typer.Argument(help="Old checkpoint or predictions file.")],
                   new: Annotated[str, typer.Argument(help="New checkpoint or predictions file.")],
                   overrides: Overrides = None, cfg: CfgFlag = False, json_out: JsonFlag = False,
                   quiet: QuietFlag = False) -> None:
    """Compare two models: error, NFR, PFR (and retrieval compatibility) for CI gates."""
    run_command("compare-models", "compare_models", "toolkit.compat.command:compare", overrides, cfg,
                json_out, quiet, extra=[f"old={old}", f"new={new}"])


# --- compress (issue: SVD-factorised embedding compression) -----------------------------------

@app.command()
def compress(overrides: Overrides = None, cfg: CfgFlag = False, json_out: JsonFlag = False,
             quiet: QuietFlag = False) -> None:
    """Compress a text classifier's embedding table by truncated SVD and fine-tune it."""
    run_command("compress", "compress", "toolkit.compress.command:run", overrides, cfg, json_out, quiet)


# --- train-encrypted (issue: CKKS logistic regression) ----------------------------------------

@app.command("train-encrypted")
def train_encrypted(overrides: Overrides = None, cfg: CfgFlag = False, json_out: JsonFlag = False,
                    quiet: QuietFlag = False) -> None:
    """Train logistic regression on CKKS-encrypted data (keygen, encrypt, train, decrypt)."""
    run_command("train-encrypted", "train_encrypted", "toolkit.encrypted.command:run", overrides, cfg,
                json_out, quiet)


if __name__ == "__main__":  # pragma: no cover
    app()
