"""Plaintext references: the same polynomial-sigmoid LR as a LightningModule, and exact LR (scikit-learn).

The LightningModule minimises ``-(1/b) sum_i P(z_i . w)`` with ``P(u) = c0 u + c1 u^2/2 + c3 u^4/4`` so
that plain SGD with learning rate ``alpha`` performs exactly the encrypted circuits' update
``w <- w + (alpha/b) sum_i s(z_i . w) z_i`` (``P' = s``), on the same minibatches in the same order.
With Nesterov momentum the optimiser is :class:`KimNesterov`, the update of Kim et al. (BMC Med Genomics
2018) that the encrypted circuits evaluate (see :mod:`toolkit.encrypted.circuit`), with the same
``mu_k`` schedule.  PyTorch's ``SGD(nesterov=True)`` equals it for a fixed ``mu`` but not for a schedule
(its buffer recursion uses ``mu_k`` where Kim et al.'s uses ``mu_{k-1}``), so it is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from toolkit.encrypted.circuit import NO_MOMENTUM, Momentum


class _Schedule(Dataset):
    """Item k = the label-signed features of minibatch ``k mod m``, float64 ``[b, d]``."""

    def __init__(self, z: np.ndarray, batches: list[np.ndarray], iterations: int) -> None:
        self.parts = [torch.as_tensor(z[idx], dtype=torch.float64) for idx in batches]
        self.iterations = iterations

    def __len__(self) -> int:
        return self.iterations

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.parts[k % len(self.parts)]


class KimNesterov(torch.optim.Optimizer):
    """Nesterov accelerated gradient in Kim et al.'s form (descent on the loss, ``gamma_k = -mu_k``).

    ``v_{k+1} = w_k - lr * grad(w_k)``; ``w_{k+1} = (1 + mu_k) v_{k+1} - mu_k v_k`` with ``v_0 = w_0``.
    The parameter holds the look-ahead point ``w``; the optimiser state ``"v"`` (same shape and dtype as
    the parameter) holds the plain-step sequence, which is the model.

    Args:
        params: parameters (float tensors of any shape).
        lr: learning rate ``alpha`` (> 0).
        momentum: :class:`~toolkit.encrypted.circuit.Momentum` giving ``mu_k`` for step ``k`` (0-based).
    """

    def __init__(self, params: Any, lr: float, momentum: Momentum) -> None:
        super().__init__(params, {"lr": float(lr)})
        self.momentum = momentum
        self.k = 0

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One step with ``mu_k``; returns the closure's loss when given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        mu = self.momentum.mu_at(self.k)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "v" not in state:
                    state["v"] = p.detach().clone()
                v_new = p - group["lr"] * p.grad
                p.copy_((1.0 + mu) * v_new - mu * state["v"])
                state["v"] = v_new
        self.k += 1
        return loss


class PolySigmoidLR(pl.LightningModule):
    """Logistic regression trained with a cubic sigmoid approximation (Han et al. 2018), in plaintext.

    Args:
        dim: number of weights ``d`` (bias included).
        coeffs: ``(c0, c1, c3)`` with ``sigmoid(-u) ~ c0 + c1 u + c3 u^3``.
        learning_rate: ``alpha``.
        momentum: Nesterov momentum (:class:`~toolkit.encrypted.circuit.Momentum`); off by default.

    Attributes:
        w: float64 parameter ``[d]`` (with momentum: the look-ahead point where the gradient is taken).
        trajectory: model weights after each step, list of float64 ``[d]`` arrays (with momentum: the
            plain-step sequence ``v``, as the encrypted run decrypts).
    """

    def __init__(self, dim: int, coeffs: tuple[float, float, float], learning_rate: float,
                 momentum: Momentum = NO_MOMENTUM) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["momentum"])
        self.w = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        self.coeffs = tuple(float(c) for c in coeffs)
        self.learning_rate = float(learning_rate)
        self.momentum = momentum
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
        """Record the model weights after each optimiser step."""
        if self.momentum.enabled:
            opt = self.optimizers().optimizer
            self.trajectory.append(opt.state[self.w]["v"].detach().cpu().numpy().copy())
        else:
            self.trajectory.append(self.w.detach().cpu().numpy().copy())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Plain SGD with learning rate ``alpha``, or :class:`KimNesterov` when momentum is on."""
        if self.momentum.enabled:
            return KimNesterov(self.parameters(), self.learning_rate, self.momentum)
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate)


def train_poly_reference(z: np.ndarray, batches: list[np.ndarray], iterations: int,
                         coeffs: tuple[float, float, float], learning_rate: float, trainer_cfg: Any,
                         root_dir: Path, momentum: Momentum = NO_MOMENTUM) -> np.ndarray:
    """Train :class:`PolySigmoidLR` with the shared Lightning Trainer.

    Returns:
        float64 ``[iterations, d]`` model weights after each iteration (with momentum: ``v``).
    """
    from toolkit.training import fit, make_trainer

    model = PolySigmoidLR(z.shape[1], coeffs, learning_rate, momentum)
    loader = DataLoader(_Schedule(z, batches, iterations), batch_size=None, shuffle=False)
    trainer = make_trainer(trainer_cfg, root_dir, max_epochs=1, log_every_n_steps=1)
    fit(trainer, model, loader)
    return np.array(model.trajectory)


def exact_logistic_regression(x_scaled: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Unregularised logistic regression (scikit-learn, lbfgs): weights float64 ``[d + 1]``, bias first."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=np.inf, max_iter=5000, random_state=seed)
    clf.fit(x_scaled, y)
    return np.concatenate([clf.intercept_, clf.coef_[0]]).astype(np.float64)
