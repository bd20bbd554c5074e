"""Plaintext references: the same polynomial-sigmoid LR as a LightningModule, and exact LR (scikit-learn).

The LightningModule minimises ``-(1/b) sum_i P(z_i . w)`` with ``P(u) = c0 u + c1 u^2/2 + c3 u^4/4`` so
that plain SGD with learning rate ``alpha`` performs exactly the encrypted circuits' update
``w <- w + (alpha/b) sum_i s(z_i . w) z_i`` (``P' = s``), on the same minibatches in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset


class _Schedule(Dataset):
    """Item k = the label-signed features of minibatch ``k mod m``, float64 ``[b, d]``."""

    def __init__(self, z: np.ndarray, batches: list[np.ndarray], iterations: int) -> None:
        self.parts = [torch.as_tensor(z[idx], dtype=torch.float64) for idx in batches]
        self.iterations = iterations

    def __len__(self) -> int:
        return self.iterations

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.parts[k % len(self.parts)]


class PolySigmoidLR(pl.LightningModule):
    """Logistic regression trained with a cubic sigmoid approximation (Han et al. 2018), in plaintext.

    Args:
        dim: number of weights ``d`` (bias included).
        coeffs: ``(c0, c1, c3)`` with ``sigmoid(-u) ~ c0 + c1 u + c3 u^3``.
        learning_rate: ``alpha``.

    Attributes:
        w: float64 parameter ``[d]``.
        trajectory: weights after each step, list of float64 ``[d]`` arrays.
    """

    def __init__(self, dim: int, coeffs: tuple[float, float, float], learning_rate: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.w = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        self.coeffs = tuple(float(c) for c in coeffs)
        self.learning_rate = float(learning_rate)
        self.trajectory: list[np.ndarray] = []

    def potential(self, u: torch.Tensor) -> torch.Tensor:
        """P(u) = c0 u + c1 u^2 / 2 + c3 u^4 / 4 (the antiderivative of the polynomial)."""
        c0, c1, c3 = self.coeffs
        return c0 * u + c1 * u ** 2 / 2 + c3 * u ** 4 / 4

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """Loss of one minibatch ``batch`` float64 ``[b, d]``."""
        loss = -self.potential(batch @ self.w).mean()
        self.log("train/poly_loss", loss, on_step=True, prog_bar=False)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Record the weights after each optimiser step."""
        self.trajectory.append(self.w.detach().cpu().numpy().copy())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Plain SGD (no momentum), learning rate ``alpha``."""
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate)


def train_poly_reference(z: np.ndarray, batches: list[np.ndarray], iterations: int,
                         coeffs: tuple[float, float, float], learning_rate: float, trainer_cfg: Any,
                         root_dir: Path) -> np.ndarray:
    """Train :class:`PolySigmoidLR` with the shared Lightning Trainer.

    Returns:
        float64 ``[iterations, d]`` weights after each iteration.
    """
    from toolkit.training import make_trainer

    model = PolySigmoidLR(z.shape[1], coeffs, learning_rate)
    loader = DataLoader(_Schedule(z, batches, iterations), batch_size=None, shuffle=False)
    trainer = make_trainer(trainer_cfg, root_dir, max_epochs=1, log_every_n_steps=1)
    trainer.fit(model, loader)
    return np.array(model.trajectory)


def exact_logistic_regression(x_scaled: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Unregularised logistic regression (scikit-learn, lbfgs): weights float64 ``[d + 1]``, bias first."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=np.inf, max_iter=5000, random_state=seed)
    clf.fit(x_scaled, y)
    return np.concatenate([clf.intercept_, clf.coef_[0]]).astype(np.float64)
