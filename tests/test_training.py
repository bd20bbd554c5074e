"""toolkit.training.fit: Lightning's Ctrl-C exit becomes a KeyboardInterrupt again."""

from __future__ import annotations

import signal
import sys

import pytest

from toolkit.training import fit


class _Trainer:
    """Stands in for a Trainer whose ``fit`` ends the way Lightning 2.x ends an interrupted one."""

    def __init__(self, interrupted: bool, code: int = 1):
        self.interrupted = interrupted
        self.code = code

    def fit(self, *args, **kwargs):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # what Lightning does before sys.exit(1)
        sys.exit(self.code)


def test_interrupted_fit_raises_keyboard_interrupt_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fit(_Trainer(interrupted=True))
    assert signal.getsignal(signal.SIGINT) == before


def test_other_system_exit_passes_through():
    with pytest.raises(SystemExit) as info:
        fit(_Trainer(interrupted=False, code=3))
    assert info.value.code == 3
