"""Resource bounds checked before allocation: refuse (exit 2) a run whose estimated memory exceeds what is free.

Used where one number in the input or config decides a large allocation (the number of encrypted ciphertexts,
say), so the process fails in seconds with the estimate in the message instead of being killed by the kernel.
"""

from __future__ import annotations

from toolkit.errors import InputError


def available_bytes() -> int:
    """Memory the OS can give this process now without swapping (``psutil.virtual_memory().available``), bytes."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(estimate_bytes: float, what: str, source: str, field: str, hint: str) -> None:
    """Raise when ``estimate_bytes`` exceeds the available memory.

    Args:
        estimate_bytes: the run's estimated peak memory, bytes.
        what: what the estimate is of (named in the message), e.g. ``"the server's ciphertexts"``.
        source, field: where the size comes from (file or ``"config"``, and the key).
        hint: how to make the run smaller.

    Raises:
        InputError: ``estimate_bytes`` > :func:`available_bytes`; the message gives both in GiB.
    """
    free = available_bytes()
    if estimate_bytes > free:
        raise InputError(source, field, f"{what} need an estimated {estimate_bytes / 2 ** 30:.3g} GiB of memory, "
                         f"more than the {free / 2 ** 30:.3g} GiB available; {hint}")
