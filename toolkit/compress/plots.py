"""Figures for ``toolkit compress``: the learning-rate schedule used, the validation curve and the accuracy/size
trade-off."""

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
                  title: str, xlabel: str = "embedding size reduction (fraction of float32 bytes removed)") -> None:
    """Accuracy (y) vs compression in bytes (x, fraction removed) for every method.

    Args:
        points: method -> list of (compression fraction, accuracy).
        reference: the uncompressed model's accuracy (horizontal line), or None.
        xlabel: what the x fraction measures (the embedding's or the whole model's bytes).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, pts in points.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1, label="uncompressed")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training(path: Path, pretrain: Sequence[Mapping], finetune: Sequence[Mapping], title: str,
                  pre_best: int | None = None, ft_best: int | None = None) -> None:
    """Validation accuracy (left) and validation/training loss (right) per epoch, pretraining then fine-tuning.

    Fine-tuning epochs continue the pretraining's epoch axis; a dotted line marks the factorization and a ring
    each restored best epoch.

    Args:
        pretrain / finetune: rows ``{"epoch", "train_loss", "val_loss", "val_acc"}`` (see
            :attr:`toolkit.compress.models.TextClassifierModule.history`); either may be empty.
        title: figure title.
        pre_best / ft_best: 1-based restored epoch of each stage, or None.
    """
    plt = _plt()
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    offset = len(pretrain)
    stages = ((pretrain, 0, "pretraining", pre_best, "C0"), (finetune, offset, "fine-tuning", ft_best, "C1"))
    for rows, shift, name, best, color in stages:
        if not rows:
            continue
        x = [r["epoch"] + shift for r in rows]
        acc_ax.plot(x, [r["val_acc"] for r in rows], marker="o", color=color, label=name)
        loss_ax.plot(x, [float("nan") if r["val_loss"] is None else r["val_loss"] for r in rows], marker="o",
                     color=color, label=f"{name} (valid)")
        loss_ax.plot(x, [float("nan") if r["train_loss"] is None else r["train_loss"] for r in rows], ls="--",
                     color=color, label=f"{name} (train)")
        if best:
            acc_ax.plot([best + shift], [rows[best - 1]["val_acc"]], marker="o", ms=12, mfc="none", color="black")
    for ax in (acc_ax, loss_ax):
        if pretrain and finetune:
            ax.axvline(offset + 0.5, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    acc_ax.set_ylabel("validation accuracy")
    loss_ax.set_ylabel("cross-entropy")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
