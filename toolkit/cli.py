"""The ``toolkit`` command line (Typer).  Thin by design.

Each command parses its options, composes its Hydra config, calls one
function through :func:`toolkit.runtime.execute` and prints the result.  Heavy
libraries are imported inside the command bodies so ``toolkit --help`` and
``toolkit --version`` stay fast.

Exit codes: 0 success, 1 runtime failure, 2 bad input or config, 3 CI gate failed (compare-models),
130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Annotated

import typer

from toolkit import __version__
from toolkit.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    EXIT_TERMINATED,
    InputError,
    Terminated,
)

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
    typer.Argument(help="Hydra overrides key=value, e.g. seed=1 output_dir=run1 (--cfg prints every key)",
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


def entrypoint() -> None:
    """The ``toolkit`` console script and ``python -m toolkit``: run the Typer app, then exit.

    A run stopped by SIGINT or SIGTERM has already cleaned up and printed its one-line error when it gets here
    (:func:`run_command`); the process then ends with ``os._exit(130 | 143)`` after flushing stdout and stderr.
    The plain ``sys.exit`` is not always enough: one CI run of ``tests/test_signals.py`` got returncode -2 (a
    signal death) after our handler had printed its message, i.e. the interpreter re-raised SIGINT at exit.
    CPython does that when its "unhandled KeyboardInterrupt" flag is set at the end of ``Py_RunMain``, and that
    flag can be left set by an interrupt that a caller handled later (CPython gh-128130). ``os._exit`` ends the
    process with our code whatever the flag says; atexit handlers are skipped, which is safe here because the
    staging directory has already been removed.
    """
    try:
        app()
    except SystemExit as exc:
        if exc.code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(exc.code))
        raise


def fail(message: str, code: int, command: str = "", json_out: bool = False) -> typer.Exit:
    """Print ``error: message`` (one line) on stderr and return the Exit to raise.

    With ``json_out`` (the command ran with ``--json``) stdout also gets the error document
    ``{"command", "version", "error": {"message", "exit_code"}}``, so a script reading stdout always gets one JSON
    document.
    """
    typer.echo(f"error: {message}", err=True)
    if json_out:
        doc = {"command": command, "version": __version__, "error": {"message": message, "exit_code": code}}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return typer.Exit(code)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _terminate_on_sigterm() -> object:
    """Make SIGTERM raise :class:`Terminated` in the main thread (so staged outputs are removed); returns the
    previous handler (None when not in the main thread, where handlers cannot be set)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _restore_sigterm(previous: object) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


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
    previous = _terminate_on_sigterm()
    try:
        from toolkit.config import compose_config, to_yaml

        cfg = compose_config(config_name, list(overrides or []) + list(extra or []))
        if print_cfg:
            typer.echo(to_yaml(cfg, resolve=False), nl=False)
            return None
        from toolkit.validation import validate

        validate(config_name, cfg)  # every declared value constraint, before any work (exit 2)
        module_name, func_name = target.split(":")
        fn = getattr(importlib.import_module(module_name), func_name)
        from toolkit.runtime import execute

        doc = execute(command, cfg, fn)
    except InputError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT, command, json_out) from None
    except KeyboardInterrupt:
        raise fail("interrupted (SIGINT); nothing was written", EXIT_INTERRUPTED, command, json_out) from None
    except Terminated:
        raise fail("terminated (SIGTERM); nothing was written", EXIT_TERMINATED, command, json_out) from None
    except typer.Exit:
        raise
    except Exception as exc:  # runtime failure: one line, traceback on demand
        if os.environ.get("TOOLKIT_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise fail(f"{type(exc).__name__}: {msg} (set TOOLKIT_DEBUG=1 for the traceback)",
                   EXIT_RUNTIME, command, json_out) from None
    finally:
        _restore_sigterm(previous)
    if json_out:
        from toolkit.runtime import to_jsonable

        sys.stdout.write(json.dumps(to_jsonable(doc), indent=2, allow_nan=False) + "\n")
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
    """Train a new model compatible with an old one (BCT) and with few negative flips (focal distillation).

    Writes model.pt, metrics.json (error, NFR, PFR, relative NFR with 95% CIs, retrieval matrix, BCT
    criterion), flips.json, flips.png, predictions.npz and the resolved config.yaml.

    Examples:

      toolkit train-compatible                          # digits: old small MLP on 50%, new MLP on all, bct+fd

      toolkit train-compatible method=fd-lm old.checkpoint=old/model.pt model=cnn data=compat_mnist

      toolkit train-compatible method=bct old.classes=[0,1,2,3,4]      # new classes added

      toolkit train-compatible data=features data.train_features=tr.npy data.train_labels=trl.npy \\
        data.test_features=te.npy data.test_labels=tel.npy old.train_logits=old_tr.npy old.test_logits=old_te.npy
    """
    run_command("train-compatible", "train_compatible", "toolkit.compat.command:run", overrides, cfg,
                json_out, quiet)


@app.command("compare-models")
def compare_models(old: Annotated[str, typer.Argument(help="Old checkpoint or predictions file.")],
                   new: Annotated[str, typer.Argument(help="New checkpoint or predictions file.")],
                   overrides: Overrides = None, cfg: CfgFlag = False, json_out: JsonFlag = False,
                   quiet: QuietFlag = False,
                   max_nfr: Annotated[float | None, typer.Option(
                       "--max-nfr", help="CI gate: exit with code 3 when the negative flip rate exceeds this "
                       "fraction in [0, 1) (0.01 = 1%).")] = None,
                   trust_code: Annotated[bool, typer.Option(
                       "--trust-code", help="Load TorchScript checkpoints: they carry code that runs with "
                       "your rights (refused by default).")] = False) -> None:
    """Compare two models: error, NFR, PFR (and retrieval compatibility) for CI gates.

    OLD and NEW are toolkit checkpoints (model.pt; run on the data's test split) or prediction files
    (.npz with predictions/logits [+ labels, ids, embeddings], or .npy/.csv labels or logits).
    Exit codes: 0 ok, 2 bad input, 3 NFR above --max-nfr.

    Examples:

      toolkit compare-models run/old_predictions.npz run/predictions.npz --max-nfr 0.01

      toolkit compare-models old/model.pt new/model.pt data=compat_mnist --json
    """
    given = [o.split("=", 1)[0].lstrip("+~") for o in overrides or []]
    if "data" not in given and (keys := [k for k in given if k.startswith("data.")]):
        raise fail(f"{keys[0]}: compare-models has no default data; pass data=<preset> (e.g. data=compat_mnist) "
                   "with the data.* keys", EXIT_BAD_INPUT, "compare-models", json_out)
    if max_nfr is not None:  # a fraction: `--max-nfr 1` meant as 1% would make the gate never fail
        from toolkit.compat.command import check_max_nfr

        try:
            check_max_nfr(max_nfr, "--max-nfr")
        except InputError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT, "compare-models", json_out) from None
    extra = [f"old={old}", f"new={new}"] + ([f"max_nfr={max_nfr}"] if max_nfr is not None else []) \
        + (["trust_code=true"] if trust_code else [])
    doc = run_command("compare-models", "compare_models", "toolkit.compat.command:compare", overrides, cfg,
                      json_out, quiet, extra=extra)
    gate = (doc or {}).get("metrics", {}).get("gate")
    if gate and not gate.get("pass", True):
        raise fail(f"NFR {doc['metrics']['nfr']:.4f} exceeds --max-nfr {gate['max_nfr']}", 3)


# --- compress (issue: SVD-factorised embedding compression) -----------------------------------

@app.command()
def compress(overrides: Overrides = None, cfg: CfgFlag = False, json_out: JsonFlag = False,
             quiet: QuietFlag = False) -> None:
    """Compress a text classifier's embedding table by truncated SVD and fine-tune it (Acharya et al. 2019).

    Examples:

      toolkit compress data=sst2 compression=0.9

      toolkit compress data=trec model=dan scheduler=clr rank=5

      toolkit compress data=snips compression=0.5,0.8,0.9,0.95     # sweep: one subfolder per value + tradeoff.png

      toolkit compress data=text data.train=train.csv data.test=test.csv data.text_column=sentence
    """
    swept = []
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if sep and "," in value and not value.lstrip().startswith(("[", "'", '"')):
            if key.lstrip("+") not in ("compression", "rank"):
                raise fail(f"command line: {item}: comma sweeps are supported for compression= and rank= "
                           "only; run one command per value of other keys", 2, "compress", json_out)
            item = f"{key}=[{value}]"  # one run per value, in subfolders of output_dir
        swept.append(item)
    run_command("compress", "compress", "toolkit.compress.command:run", swept, cfg, json_out, quiet)


# --- train-encrypted (issue: CKKS logistic regression) ----------------------------------------

@app.command("train-encrypted")
def train_encrypted(overrides: Overrides = None, cfg: CfgFlag = False, json_out: JsonFlag = False,
                    quiet: QuietFlag = False,
                    plan: Annotated[bool, typer.Option("--plan", help="Dry run: simulate the circuit in plaintext "
                                                       "and report depth, value ranges, refreshes, sizes and "
                                                       "estimated time; encrypt nothing.")] = False) -> None:
    """Train logistic regression on CKKS-encrypted data (keygen, encrypt, train, decrypt).

    The first word may name one role's step: keygen | encrypt | train | refresh | decrypt | all
    (the same as step=<name>, which keeps working).

    Examples:

      toolkit train-encrypted                       # breast cancer, low-depth circuit, all roles

      toolkit train-encrypted --plan data=mnist38 circuit=baseline

      toolkit train-encrypted keygen output_dir=run1     # owner (then: encrypt)

      toolkit train-encrypted train output_dir=run1      # server (refresh: owner)

      toolkit train-encrypted decrypt output_dir=run1    # owner: model + evaluation

      toolkit train-encrypted data=csv_binary data.path=d.csv data.label_column=y --json
    """
    overrides, extra = _step_subcommand(list(overrides or []), json_out)
    run_command("train-encrypted", "train_encrypted", "toolkit.encrypted.command:run", overrides, cfg,
                json_out, quiet, extra=[*extra, *(["plan=true"] if plan else [])])


def _step_subcommand(args: list[str], json_out: bool = False) -> tuple[list[str], list[str]]:
    """``train-encrypted <step> key=value ...`` -> the overrides and ``["step=<step>"]``.

    Raises:
        typer.Exit: code 2 when the step is also given as ``step=`` with another value, or the first word is
            neither a step nor an override.
    """
    from toolkit.encrypted.schema import STEPS

    if not args or "=" in args[0] or args[0].startswith("-"):
        return args, []
    word, rest = args[0], args[1:]
    if word not in STEPS:
        raise fail(f"train-encrypted: unknown step '{word}' (expected one of {', '.join(STEPS)}, "
                   "or key=value overrides)", EXIT_BAD_INPUT, "train-encrypted", json_out)
    clash = [a for a in rest if a.startswith("step=") and a != f"step={word}"]
    if clash:
        raise fail(f"train-encrypted: step given twice ('{word}' and '{clash[0]}')", EXIT_BAD_INPUT,
                   "train-encrypted", json_out)
    return rest, [f"step={word}"]


if __name__ == "__main__":  # pragma: no cover
    app()
