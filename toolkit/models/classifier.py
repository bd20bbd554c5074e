"""Supervised training of a zoo model (cross-entropy) as a LightningModule, plus batched inference.

Used by ``toolkit cluster`` to learn an image encoder on the meta-training
classes (the first step of Hi-LANDER's pipeline: features come from a
supervised embedding network), and as the base of model training elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from toolkit.models.zoo import EmbeddingClassifier


def random_shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate each image of ``x`` ``[B, C, H, W]`` by up to ``pixels`` in each axis (zero padding)."""
    if pixels <= 0 or x.ndim != 4:
        return x
    b, _, h, w = x.shape
    padded = nn.functional.pad(x, (pixels, pixels, pixels, pixels))
    dx = torch.randint(0, 2 * pixels + 1, (b,))
    dy = torch.randint(0, 2 * pixels + 1, (b,))
    rows = (dy[:, None] + torch.arange(h)[None]).clamp_max(h + 2 * pixels - 1)
    cols = (dx[:, None] + torch.arange(w)[None]).clamp_max(w + 2 * pixels - 1)
    idx_b = torch.arange(b)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


HEADS = ("linear", "cosine")


def cosine_logits(emb: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * cos(emb_i, w_c)``: float ``[B, C]`` logits of L2-normalised embeddings ``[B, E]`` and class
    weights ``[C, E]`` (NormFace, Wang et al. 2017, eq. 3; the bias of the linear head is not used)."""
    return scale * nn.functional.normalize(emb, dim=1) @ nn.functional.normalize(weight, dim=1).t()


def cosface_logits(cos_logits: torch.Tensor, y: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """Large-margin cosine logits for training: ``scale * (cos - margin)`` at the true class ``y`` ``[B]``,
    ``scale * cos`` elsewhere (CosFace, Wang et al., CVPR 2018, eq. 4); ``cos_logits`` is
    :func:`cosine_logits` ``[B, C]``. ``margin`` is in cosine units (0 = NormFace)."""
    if margin == 0.0:
        return cos_logits
    return cos_logits - (scale * margin) * nn.functional.one_hot(y, cos_logits.shape[1]).to(cos_logits.dtype)


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of a zoo model with AdamW and cosine learning-rate decay.

    Two heads: ``linear`` (the zoo network's ``head``: softmax over ``W e + b``) or ``cosine`` (softmax over
    ``scale * cos(e, w_c)`` with an additive cosine margin during training, CosFace; the embedding
    ``e`` is then trained for the cosine comparisons that kNN graphs and clustering make, as face-recognition
    encoders are).

    Only primitives are stored as hyper-parameters (the network's short ``arch`` name, its ``arch_kwargs``,
    ``in_shape`` and ``num_classes``, besides the optimisation settings), so checkpoints load with
    ``weights_only=True`` and are rebuilt by :func:`toolkit.models.zoo.build_model`, never by importing code.

    Args:
        net: the zoo network to train (:func:`toolkit.models.zoo.model_from_config`), with ``num_classes``
            outputs.
        in_shape: input shape without batch dimension (recorded for reloading).
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
        shift_pixels: random translation augmentation for images (0 disables).
        head: ``linear`` or ``cosine`` (:data:`HEADS`).
        scale: ``cosine`` head: the logit scale s (CosFace uses 64 for faces; 30 is common for fewer classes).
        margin: ``cosine`` head: the additive cosine margin m in ``[0, 1)`` (CosFace: 0.35).

    Raises:
        ValueError: unknown ``head``, ``scale <= 0`` or ``margin`` outside ``[0, 1)``.
    """

    def __init__(self, net: EmbeddingClassifier, in_shape: list[int], lr: float = 1e-3, weight_decay: float = 1e-4,
                 label_smoothing: float = 0.0, shift_pixels: int = 0, head: str = "linear", scale: float = 30.0,
                 margin: float = 0.0) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        if not scale > 0 or not 0.0 <= margin < 1.0:
            raise ValueError(f"need scale > 0 and 0 <= margin < 1, got scale={scale}, margin={margin}")
        self.save_hyperparameters({"arch": net.arch, "arch_kwargs": dict(net.arch_kwargs),
                                   "in_shape": [int(s) for s in in_shape], "num_classes": int(net.num_classes),
                                   "lr": float(lr), "weight_decay": float(weight_decay),
                                   "label_smoothing": float(label_smoothing), "shift_pixels": int(shift_pixels),
                                   "head": str(head), "scale": float(scale), "margin": float(margin)})
        self.net = net
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` (``cosine`` head: ``scale * cos``, no margin)."""
        if self.hparams.head == "cosine":
            return cosine_logits(self.net.embed(x), self.net.head.weight, float(self.hparams.scale))
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        x = random_shift(x, int(self.hparams.shift_pixels))
        logits = self(x)
        train_logits = logits
        if self.hparams.head == "cosine":
            train_logits = cosface_logits(logits, y, float(self.hparams.scale), float(self.hparams.margin))
        loss = self.loss(train_logits, y)
        self.log("train/loss", loss, prog_bar=True, on_epoch=True, on_step=False)
        self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", self.loss(logits, y), prog_bar=True)
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=steps,
                                                    pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


NetworkFactory = Callable[[tuple[int, ...], int], EmbeddingClassifier]
"""``(in_shape, num_classes) -> network``: a network config not yet given its data, e.g.
``lambda shape, k: model_from_config(cfg.encoder.network, shape, k, "encoder.network")``."""


def train_classifier(x: np.ndarray, y: np.ndarray, network: NetworkFactory, *, epochs: int,
                     batch_size: int, lr: float, trainer_cfg: Any, root_dir: Path,
                     checkpoint_dir: Path | None = None, weight_decay: float = 1e-4,
                     shift_pixels: int = 0, seed: int = 0, head: str = "linear", scale: float = 30.0,
                     margin: float = 0.0) -> ClassifierModule:
    """Train a zoo classifier on ``x`` ``[N, ...]`` float32 and labels ``y`` ``[N]`` int64 (0..C-1).

    The network is built by ``network(x.shape[1:], C)`` after the RNGs are seeded with ``seed`` (so its
    initial weights depend on ``seed`` only). ``head``, ``scale``, ``margin``: see :class:`ClassifierModule`.

    Returns:
        The trained module (in eval mode).

    Raises:
        toolkit.errors.InputError: whatever ``network`` raises for a bad network config.
        ValueError: the built network does not have C outputs, or a bad ``head`` / ``scale`` / ``margin``.
    """
    pl.seed_everything(seed, verbose=False)
    num_classes = int(y.max()) + 1
    net = network(tuple(int(s) for s in x.shape[1:]), num_classes)
    if int(net.num_classes) != num_classes:
        raise ValueError(f"the network has {net.num_classes} outputs for {num_classes} classes")
    module = ClassifierModule(net, list(x.shape[1:]), lr=lr, weight_decay=weight_decay, shift_pixels=shift_pixels,
                              head=head, scale=scale, margin=margin)
    ds = TensorDataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=len(ds) > batch_size)
    from toolkit.training import fit, make_trainer

    trainer = make_trainer({**dict(trainer_cfg or {}), "max_epochs": epochs}, root_dir, checkpoint_dir)
    fit(trainer, module, loader)
    return module.eval()


@torch.no_grad()
def predict(net: nn.Module, x: np.ndarray, batch_size: int = 512, embed: bool = True) -> np.ndarray:
    """Run ``net.embed`` (``embed=True``) or ``net`` on ``x`` in batches; returns float32 ``[N, E or C]``."""
    net.eval()
    outs = []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32))
        outs.append((net.embed(xb) if embed else net(xb)).numpy())
    return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 0), np.float32)
