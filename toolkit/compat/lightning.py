"""The LightningModule that trains a new model with a compatibility loss.

Without augmentation, old-model outputs are computed once before training and fed in with each batch
(the dataset holds them as tensors), so the old model never runs during training (the fast path).
With augmentation (``shift_pixels > 0`` on image inputs) the cached outputs would describe the
un-shifted images, so the old model, attached with :meth:`CompatModule.set_old_model`, is run in eval
mode under ``no_grad`` on the same shifted batch the new model sees, and its logits and focal weights
replace the cached columns.  Batches are ``(x, y, y_old, old_correct, old_logits)``:

* ``x`` ``[B, ...]`` float32 inputs, ``y`` ``[B]`` int64 labels in the new label space;
* ``y_old`` ``[B]`` int64 labels in the extended old head space (real old classes first, then
  synthesized rows for new classes; ``-1`` when the class has neither);
* ``old_correct`` ``[B]`` bool, ``argmax old_logits == y_old``;
* ``old_logits`` ``[B, K']`` float32 cached old logits restricted to the old classes that have a new
  counterpart (the new logits are gathered at ``fd_columns`` to match).

The old-logit term is focal distillation (``fd-kl``, ``fd-lm``, ``bct+fd``) or logit difference inhibition
(``ldi``, ``bct+ldi``); both read the same columns, masks and (online) old outputs.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.compat.losses import (
    bct_influence_loss,
    focal_distillation_loss,
    logit_difference_inhibition_loss,
    naive_congruent_loss,
)
from toolkit.models.classifier import random_shift
from toolkit.models.zoo import EmbeddingClassifier

METHODS = ("none", "bct", "naive", "fd-kl", "fd-lm", "bct+fd", "ldi", "bct+ldi")


def method_parts(method: str, fd_kind_for_bct: str = "lm") -> tuple[bool, str | None, bool]:
    """Split a method name into ``(uses_bct, distillation kind or None, uses_naive)``.

    The distillation kind names the term on the old logits: ``"kl"`` / ``"lm"`` (focal distillation;
    ``bct+fd`` uses ``fd_kind_for_bct``) or ``"ldi"`` (logit difference inhibition, ``ldi`` and
    ``bct+ldi``).  Any kind needs the old-logit columns and, with augmentation, the online old model.

    Raises:
        ValueError: unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")
    bct = method in ("bct", "bct+fd", "bct+ldi")
    fd = {"fd-kl": "kl", "fd-lm": "lm", "bct+fd": fd_kind_for_bct, "ldi": "ldi", "bct+ldi": "ldi"}.get(method)
    return bct, fd, method == "naive"


class CompatModule(pl.LightningModule):
    """New-model training: ``CE + λ_bct·L_influence + λ_fd·L_FD`` (or ``+ λ_ldi·L_LDI``, or the naive weighting).

    The loss settings have no defaults here: they come from the config (``configs/compat/train_compatible.yaml``
    through :func:`compat_module_from_config`), so a default lives in one place only.  Only primitives are
    saved as hyper-parameters (``arch`` and ``arch_kwargs`` of the network, for reloading); the frozen old head
    and the FD column map are buffers, so a checkpoint loads with ``torch.load(weights_only=True)``.

    Args:
        net: the new zoo network (:func:`toolkit.models.zoo.model_from_config`).
        in_shape: input shape without batch dimension (recorded for checkpoint checks).
        method: one of :data:`METHODS`.
        lr, weight_decay: AdamW with one-cycle cosine schedule.
        bct_weight: λ of the influence loss.
        naive_weight: λ of the naive loss.
        fd_weight: λ of focal distillation (paper eq. 4, λ = 1).
        fd_kind_bct: FD kind used by ``bct+fd``.
        alpha, beta, temperature, lm_reduction: focal distillation settings (paper eq. 7-9).
        shift_pixels: random-translation augmentation for image inputs; with FD or the naive loss it
            needs the old model (:meth:`set_old_model`), which then runs on every shifted batch.
        projection: force a learned projection even when embedding sizes agree.
        old_head_rows: K, rows of the extended old head (BCT), 0 when unused.
        old_embed_dim: E_old (BCT); a learned ``Linear(E_new, E_old, bias=False)`` projection is added
            when it differs from the new embedding size or when ``projection`` is True.
        fd_columns: number of old classes used by FD or LDI (length of the column map), 0 when unused.
        old_classes: number of real (not synthesized) old classes; FD and LDI ignore samples of other classes.
        ldi_weight, ldi_margin, ldi_p, ldi_top_k, ldi_alpha, ldi_beta: logit difference inhibition
            (:func:`~toolkit.compat.losses.logit_difference_inhibition_loss`: λ, ξ, p, top-K or None,
            sample weight α + β·1(old correct)); required by ``ldi`` / ``bct+ldi``, ignored otherwise.

    ``fd_kind`` is the distillation kind of :func:`method_parts` (``"kl"``, ``"lm"``, ``"ldi"`` or None).

    Raises:
        ValueError: unknown method, BCT/FD/LDI without the old head/column sizes they need, or LDI
            without its settings.
    """

    def __init__(self, net: EmbeddingClassifier, in_shape: list[int], *, method: str, lr: float,
                 weight_decay: float, bct_weight: float, naive_weight: float, fd_weight: float, fd_kind_bct: str,
                 alpha: float, beta: float, temperature: float, lm_reduction: str, shift_pixels: int,
                 projection: bool, old_head_rows: int = 0, old_embed_dim: int = 0, fd_columns: int = 0,
                 old_classes: int = 0, ldi_weight: float | None = None, ldi_margin: float | None = None,
                 ldi_p: float | None = None, ldi_top_k: int | None = None, ldi_alpha: float | None = None,
                 ldi_beta: float | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.hparams.update(arch=net.arch, arch_kwargs=dict(net.arch_kwargs), num_classes=int(net.num_classes))
        self.uses_bct, self.fd_kind, self.uses_naive = method_parts(method, fd_kind_bct)
        self.net = net
        self.projection: nn.Module | None = None
        if self.uses_bct:
            if old_head_rows <= 0 or old_embed_dim <= 0:
                raise ValueError("BCT needs old_head_rows > 0 and old_embed_dim > 0")
            self.register_buffer("old_weight", torch.zeros(old_head_rows, old_embed_dim))
            self.register_buffer("old_bias", torch.zeros(old_head_rows))
            if projection or old_embed_dim != self.net.embed_dim:
                self.projection = nn.Linear(self.net.embed_dim, old_embed_dim, bias=False)
        if self.fd_kind == "ldi" and None in (ldi_weight, ldi_margin, ldi_p, ldi_alpha, ldi_beta):
            raise ValueError(f"method={method} needs ldi_weight, ldi_margin, ldi_p, ldi_alpha and ldi_beta")
        if self.fd_kind is not None:
            if fd_columns <= 0:
                raise ValueError("focal distillation / LDI needs fd_columns > 0")
            self.register_buffer("fd_index", torch.zeros(fd_columns, dtype=torch.long))
        # the frozen old model for online old logits; a plain attribute, not a submodule, so it is
        # neither optimised, nor saved in checkpoints, nor switched to train mode by Lightning
        object.__setattr__(self, "_old_net", None)
        self._old_columns: torch.Tensor | None = None
        self.online_old_correct = [0, 0]  # old-correct count and sample count seen on shifted batches

    def set_old_head(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Copy the frozen extended old head ``weight [K, E_old]`` and ``bias [K]`` into the buffers."""
        self.old_weight.copy_(weight)
        self.old_bias.copy_(bias if bias is not None else torch.zeros(weight.shape[0]))

    def set_fd_index(self, index: torch.Tensor) -> None:
        """Set the new-logit column of each distilled old class (``[K']`` int64)."""
        self.fd_index.copy_(index)

    def set_old_model(self, net: nn.Module, columns: torch.Tensor) -> None:
        """Attach the frozen old model used on augmented batches.

        Args:
            net: maps inputs ``[B, ...]`` to old logits ``[B, K]`` (K = ``old_classes``); run in eval
                mode under ``no_grad``, never optimised.
            columns: ``[K']`` int64, the old-logit columns distilled (the columns of the cached
                ``old_logits`` batch entry, in the same order as ``fd_index``).
        """
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        object.__setattr__(self, "_old_net", net)
        self._old_columns = columns.long().clone()

    @property
    def uses_old_outputs(self) -> bool:
        """Whether the loss reads old logits or old-correct flags (FD, LDI or the naive loss)."""
        return self.fd_kind is not None or self.uses_naive

    @torch.no_grad()
    def old_outputs(self, x: torch.Tensor, y_old: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Old-correct flags ``[B]`` and distilled old logits ``[B, K']`` of the (augmented) batch ``x``.

        Same definitions as the cached columns: ``old_correct = argmax_c φ_old(x)_c == y_old`` for
        samples of old classes (``0 <= y_old < old_classes``), False otherwise.
        """
        net = self._old_net
        if net is None:
            raise RuntimeError("no old model attached (set_old_model)")
        net.eval()
        full = net(x).float()
        k = int(self.hparams.old_classes)
        if full.shape[1] != k:
            raise ValueError(f"the old model gives {full.shape[1]} logits, expected {k} old classes")
        correct = (full.argmax(1) == y_old) & (y_old >= 0) & (y_old < k)
        cols = full[:, self._old_columns] if self._old_columns is not None else full
        return correct, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """New-model logits ``[B, num_classes]``."""
        return self.net(x)

    def compatible_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding to compare with old-model embeddings: ``P(φ_new(x))`` or ``φ_new(x)``."""
        z = self.net.embed(x)
        return self.projection(z) if self.projection is not None else z

    def compute_loss(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its parts for one batch (see the module docstring for the batch layout).

        When the batch is augmented (``shift_pixels > 0`` and image inputs) and the loss uses old
        outputs, the old model runs on the shifted batch and its outputs replace the cached
        ``old_correct`` and ``old_logits``.

        Raises:
            RuntimeError: augmentation with FD, LDI or the naive loss but no old model attached.
        """
        x, y, y_old, old_correct, old_logits = batch
        shift = int(self.hparams.shift_pixels)
        augmented = shift > 0 and x.ndim == 4
        x = random_shift(x, shift)
        if augmented and self.uses_old_outputs:
            if self._old_net is None:
                raise RuntimeError("augmentation (shift_pixels > 0) with FD, LDI or the naive loss needs the old "
                                   "model on the shifted batch (set_old_model); cached old logits describe "
                                   "the un-shifted images")
            old_correct, old_logits = self.old_outputs(x, y_old)
            self.online_old_correct[0] += int(old_correct.sum())
            self.online_old_correct[1] += int(len(old_correct))
        emb = self.net.embed(x)
        logits = self.net.head(emb)
        parts: dict[str, torch.Tensor] = {}
        if self.uses_naive:
            parts["ce+naive"] = naive_congruent_loss(logits, y, old_correct, self.hparams.naive_weight)
        else:
            parts["ce"] = F.cross_entropy(logits, y)
        if self.uses_bct:
            parts["bct"] = self.hparams.bct_weight * bct_influence_loss(
                emb, y_old, self.old_weight, self.old_bias, self.projection)
        if self.fd_kind == "ldi":
            hp = self.hparams
            mask = (y_old >= 0) & (y_old < hp.old_classes)
            parts["ldi"] = hp.ldi_weight * logit_difference_inhibition_loss(
                logits[:, self.fd_index], old_logits, margin=hp.ldi_margin, p=hp.ldi_p, top_k=hp.ldi_top_k,
                old_correct=old_correct, alpha=hp.ldi_alpha, beta=hp.ldi_beta, mask=mask)
        elif self.fd_kind is not None:
            mask = (y_old >= 0) & (y_old < self.hparams.old_classes)
            parts["fd"] = self.hparams.fd_weight * focal_distillation_loss(
                logits[:, self.fd_index], old_logits, old_correct, kind=self.fd_kind,
                alpha=self.hparams.alpha, beta=self.hparams.beta, temperature=self.hparams.temperature,
                lm_reduction=self.hparams.lm_reduction, mask=mask)
        total = torch.stack(list(parts.values())).sum()
        return total, parts

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Scalar training loss of one batch; logs the total and each part (``train/ce``, ``train/fd`` ...)."""
        total, parts = self.compute_loss(batch)
        self.log("train/loss", total, prog_bar=True, on_epoch=True, on_step=False)
        for k, v in parts.items():
            self.log(f"train/{k}", v, on_epoch=True, on_step=False)
        return total

    def configure_optimizers(self) -> Any:
        """AdamW (``lr``, ``weight_decay``) with a per-step one-cycle cosine schedule (15% warm-up).

        The frozen old head and the FD column map are buffers, so they are never optimised.
        """
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.hparams.lr, total_steps=steps,
                                                    pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def compat_module_from_config(cfg: Any, net: EmbeddingClassifier, in_shape: list[int], **sizes: int) -> CompatModule:
    """The :class:`CompatModule` of a ``train_compatible`` config: the one place config keys meet its arguments.

    Args:
        cfg: composed ``train_compatible`` config (``method``, ``train.*``, ``bct.*``, ``naive.*``, ``fd.*``,
            ``ldi.*``).
        net: the new network; in_shape: its input shape.
        **sizes: ``old_head_rows``, ``old_embed_dim``, ``fd_columns``, ``old_classes`` (from the data and the
            old model, not from the config).

    Raises:
        ValueError: as :class:`CompatModule`.
    """
    tc, fd, ldi = cfg.train, cfg.fd, cfg.ldi
    top_k = ldi.get("top_k")
    return CompatModule(net, list(in_shape), method=str(cfg.method), lr=float(tc.lr),
                        weight_decay=float(tc.weight_decay), bct_weight=float(cfg.bct.weight),
                        naive_weight=float(cfg.naive.weight), fd_weight=float(fd.weight),
                        fd_kind_bct=str(fd.kind_for_bct), alpha=float(fd.alpha), beta=float(fd.beta),
                        temperature=float(fd.temperature), lm_reduction=str(fd.lm_reduction),
                        shift_pixels=int(tc.shift_pixels), projection=bool(cfg.bct.projection),
                        ldi_weight=float(ldi.weight), ldi_margin=float(ldi.margin), ldi_p=float(ldi.p),
                        ldi_top_k=None if top_k is None else int(top_k), ldi_alpha=float(ldi.alpha),
                        ldi_beta=float(ldi.beta), **sizes)
