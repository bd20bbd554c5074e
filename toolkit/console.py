"""Terminal output on stderr: rich when stderr is a TTY, plain lines otherwise.

stdout is reserved for results (``--json`` documents, ``--cfg`` YAML), so every
progress message and log line of every command goes through :func:`log` or
:func:`progress` here.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")

_console: Console | None = None
_quiet = False


def interactive() -> bool:
    """True when stderr is a terminal and neither ``CI`` nor ``NO_COLOR`` asks for plain output."""
    return sys.stderr.isatty() and not os.environ.get("CI") and not os.environ.get("NO_COLOR")


def console() -> Console:
    """The shared stderr console (created on first use so tests can redirect stderr)."""
    global _console
    if _console is None or _console.file is not sys.stderr:
        _console = Console(stderr=True, force_terminal=None if interactive() else False,
                           no_color=not interactive(), highlight=False)
    return _console


def set_quiet(value: bool) -> None:
    """Silence :func:`log` and :func:`progress` (``--quiet``)."""
    global _quiet
    _quiet = value


def log(message: str) -> None:
    """Print one progress/log line to stderr (markup allowed when interactive)."""
    if _quiet:
        return
    if interactive():
        console().print(message)
    else:
        print(message, file=sys.stderr, flush=True)


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` showing a rich progress bar on a TTY, or start/end lines when not.

    Args:
        items: the iterable to walk.
        description: short label shown beside the bar.
        total: number of items when ``items`` has no ``len``.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if _quiet:
        yield from items
        return
    if not interactive():
        start = time.perf_counter()
        log(f"{description} ...")
        yield from items
        log(f"{description}: done in {time.perf_counter() - start:.1f} s")
        return
    from rich.progress import Progress

    with Progress(console=console(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
