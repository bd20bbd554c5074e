"""Error types shared by every command and the exit codes they map to.

Exit codes follow the convention in ``docs/cli.md``: 0 success, 1 runtime
failure, 2 bad input or bad configuration.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
EXIT_TERMINATED = 143   # 128 + SIGTERM


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (``kill``, a CI job's timeout, a scheduler).

    A BaseException like KeyboardInterrupt, so no ``except Exception`` swallows it: the run's staging directory is
    deleted on the way out (:func:`toolkit.runtime.execute`) and the CLI exits with :data:`EXIT_TERMINATED`.
    """


class InputError(ValueError):
    """Bad user input: a missing file, a malformed array, an invalid config value.

    The message is a single line that names the file (or config key), the
    field and the expected form, e.g.
    ``train_features.npy: features: expected a 2-D float array, got shape (10,)``.
    The CLI prints it and exits with code 2 without writing any output.

    Args:
        source: file path or config key the problem was found in.
        field: the field, column or array inside ``source``.
        problem: what is wrong and what was expected.
    """

    def __init__(self, source: object, field: str | None, problem: str) -> None:
        self.source = str(source)
        self.field = field
        self.problem = problem
        parts = [self.source]
        if field:
            parts.append(field)
        parts.append(problem)
        super().__init__(": ".join(parts))
