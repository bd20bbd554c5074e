"""Evaluation of logistic-regression weights: accuracy, ROC AUC, log loss (scikit-learn metrics)."""

from __future__ import annotations

import numpy as np


def predict_proba(w: np.ndarray, x_scaled: np.ndarray) -> np.ndarray:
    """P(y=1 | x) = sigmoid(w0 + w[1:] . x) for weights float64 ``[d + 1]`` and scaled ``[n, d]``."""
    logits = w[0] + np.asarray(x_scaled, dtype=np.float64) @ w[1:]
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -500, 500)))


def evaluate(w: np.ndarray, x_scaled: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy (fraction), ROC AUC and mean log loss of weights ``w`` on ``(x_scaled [n, d], y [n] in {0,1})``.

    Uses the exact sigmoid for prediction (the polynomial is only a training device, as in Han et al.).
    """
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    p = predict_proba(w, x_scaled)
    return {"accuracy": float(accuracy_score(y, p >= 0.5)),
            "auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan"),
            "log_loss": float(log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1]))}
