"""Accuracy / per-class F1, model size accounting (dense, factorized, other) and CPU latency."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from toolkit.compress.factorize import FactorizedEmbedding
from toolkit.compress.metrics import classification_metrics, embedding_size, latency_ms, model_size, predict
from toolkit.compress.models import TextClassifier


def test_classification_metrics_hand():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    assert m["accuracy"] == 0.75
    assert m["per_class_f1"]["neg"] == pytest.approx(2 / 3)
    assert m["per_class_f1"]["pos"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_classification_metrics_class_never_predicted_scores_zero():
    m = classification_metrics([0, 1, 2], [0, 1, 1], ["a", "b", "c"])
    assert m["per_class_f1"]["c"] == 0.0


def test_model_size_dense_and_factorized_hand_computed():
    # DAN over a 100 x 10 table: 10*30+30 + 30*25+25 + 25*2+2 = 1157 non-embedding parameters
    net = TextClassifier("dan", vocab_size=100, embedding_dim=10, num_classes=2)
    size = model_size(net)
    assert size == {"params": 1000 + 1157, "bytes": 4 * (1000 + 1157), "model_params": 1000 + 1157,
                    "model_bytes": 4 * (1000 + 1157), "embedding_params": 1000, "embedding_bytes": 4000}
    net.replace_embedding(FactorizedEmbedding(100, 10, 3))
    size = model_size(net)
    assert size["embedding_params"] == 3 * 110 and size["embedding_bytes"] == 4 * 330
    assert size["params"] == 330 + 1157 and size["bytes"] == 4 * (330 + 1157)


def test_embedding_size_of_other_modules_counts_parameters():
    assert embedding_size(nn.Sequential(nn.Embedding(10, 3), nn.Linear(3, 2))) == {"params": 38, "bytes": 152}


def test_predict_and_latency():
    torch.manual_seed(0)
    net = TextClassifier("dan", vocab_size=20, embedding_dim=4, num_classes=3)
    tokens = torch.randint(1, 20, (7, 5))
    pred = predict(net, tokens, batch_size=3)
    assert pred.shape == (7,) and set(pred.tolist()) <= {0, 1, 2}
    assert pred.tolist() == net(tokens).argmax(1).tolist()
    assert latency_ms(net, tokens, repeats=2, warmup=1) > 0
