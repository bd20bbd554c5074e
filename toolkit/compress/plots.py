"""Figures for ``toolkit compress``: the learning-rate schedule used and the accuracy/size trade-off."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lr_schedule(path: Path, lrs: Sequence[float], steps_per_epoch: int, title: str) -> None:
    """Line plot of the learning rate of every update (log y axis), epoch boundaries dotted."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(range(1, len(lrs) + 1), lrs, lw=1.2)
    if steps_per_epoch > 0:
        for e in range(steps_per_epoch, len(lrs), steps_per_epoch):
            ax.axvline(e, color="grey", ls=":", lw=0.8)
    if lrs and min(lrs) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tradeoff(path: Path, points: Mapping[str, Sequence[tuple[float, float]]], reference: float | None,
                  title: str) -> None:
    """Accuracy (y) vs embedding compression in bytes (x, fraction removed) for every method.

    Args:
        points: method -> list of (compression fraction, accuracy).
        reference: the uncompressed model's accuracy (horizontal line), or None.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, pts in points.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1, label="uncompressed")
    ax.set_xlabel("embedding size reduction (fraction of float32 bytes removed)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
