"""Plaintext references: the polynomial-sigmoid LightningModule, exact LR, and the metrics."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from toolkit.encrypted import circuit as C
from toolkit.encrypted.data import minibatch_indices, signed_features
from toolkit.encrypted.metrics import evaluate, predict_proba
from toolkit.encrypted.reference import exact_logistic_regression, train_poly_reference

TRAINER = OmegaConf.create({"accelerator": "cpu", "devices": 1, "deterministic": False, "progress": False,
                            "log_every_n_steps": 1})


def _toy(n=240, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, d))
    y = (x[:, 0] - 0.7 * x[:, 1] + 0.2 * rng.normal(size=n) > 0).astype(int)
    return x, y


def test_lightning_module_performs_the_circuit_update(tmp_path):
    x, y = _toy()
    z = signed_features(x, y)
    batches = minibatch_indices(len(z), 80, 0)
    coeffs = C.SIGMOID_COEFFS["han16"]
    traj = train_poly_reference(z, batches, 5, coeffs, 2.0, TRAINER, tmp_path)
    assert traj.shape == (5, 4)
    w = np.zeros(4)
    for k in range(5):
        w = C.poly_sigmoid_step(w, z[batches[k % len(batches)]], coeffs, 2.0)
        np.testing.assert_allclose(traj[k], w, rtol=0, atol=1e-12)


def test_exact_logistic_regression_and_metrics():
    from sklearn.linear_model import LogisticRegression

    x, y = _toy(n=400)
    w = exact_logistic_regression(x, y, seed=0)
    clf = LogisticRegression(C=np.inf, max_iter=5000).fit(x, y)
    np.testing.assert_allclose(predict_proba(w, x), clf.predict_proba(x)[:, 1], atol=1e-6)
    m = evaluate(w, x, y)
    assert set(m) == {"accuracy", "auc", "log_loss"}
    assert m["accuracy"] > 0.85 and m["auc"] > 0.9 and m["log_loss"] > 0
    zero = evaluate(np.zeros(4), x, y)
    assert np.isclose(zero["log_loss"], np.log(2)) and np.isclose(zero["auc"], 0.5)


def test_lightning_module_with_nesterov_momentum_performs_the_circuit_update(tmp_path):
    x, y = _toy()
    z = signed_features(x, y)
    batches = minibatch_indices(len(z), 80, 0)
    coeffs = C.SIGMOID_COEFFS["han16"]
    plain = train_poly_reference(z, batches, 6, coeffs, 2.0, TRAINER, tmp_path / "plain")
    for momentum in (C.Momentum(0.6), C.Momentum(0.9, "nesterov")):
        traj = train_poly_reference(z, batches, 6, coeffs, 2.0, TRAINER, tmp_path / momentum.schedule, momentum)
        w = np.zeros(4)
        v = w.copy()
        for k in range(6):
            w, v = C.nesterov_step(w, v, z[batches[k % len(batches)]], coeffs, 2.0, momentum.mu_at(k))
            np.testing.assert_allclose(traj[k], v, rtol=0, atol=1e-12)
        assert np.abs(traj[-1] - plain[-1]).max() > 1e-3
    with pytest.raises(ValueError):
        C.Momentum(1.0)
