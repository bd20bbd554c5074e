"""Classifiers share one embedding interface; factorized / quantized tables drop in."""

from __future__ import annotations

import pytest
import torch

from toolkit.compress.factorize import FactorizedEmbedding
from toolkit.compress.metrics import classification_metrics, model_size
from toolkit.compress.models import TextClassifier
from toolkit.compress.pipeline import equal_params_dim, factorized_copy, quantized_copy


@pytest.mark.parametrize("arch", ["lstm", "dan", "cnn"])
def test_full_rank_factorization_is_function_preserving(arch):
    torch.manual_seed(0)
    net = TextClassifier(arch, vocab_size=30, embedding_dim=8, num_classes=3, hidden=6, cnn_filters=4).eval()
    tokens = torch.randint(0, 30, (5, 7))
    tokens[:, -2:] = 0
    ref = net(tokens)
    assert ref.shape == (5, 3)
    full = factorized_copy(net, 8).eval()
    assert isinstance(full.embedding, FactorizedEmbedding)
    assert torch.allclose(full(tokens), ref, atol=1e-4)
    low = factorized_copy(net, 2)
    size = model_size(low)
    assert size["embedding_params"] == 2 * (30 + 8)
    assert size["params"] - size["embedding_params"] == model_size(net)["params"] - 30 * 8


def test_quantized_embedding_close_and_smaller():
    torch.manual_seed(0)
    net = TextClassifier("dan", vocab_size=40, embedding_dim=8, num_classes=2).eval()
    tokens = torch.randint(1, 40, (4, 6))
    for bits, tol in ((16, 1e-2), (8, 0.05), (4, 0.5)):
        q = quantized_copy(net, bits)
        assert torch.allclose(q.embedding(tokens), net.embedding(tokens), atol=tol)
        assert model_size(q)["embedding_bytes"] == 40 * ((8 * bits // 8) + (0 if bits == 16 else 8))


def test_equal_params_dim():
    assert equal_params_dim(1000, 50, 5) == 5  # 5 * 1050 // 1000
    assert equal_params_dim(100, 100, 5) == 10


def test_classification_metrics_hand():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["neg", "pos"])
    assert m["accuracy"] == 0.75
    assert m["per_class_f1"]["neg"] == pytest.approx(2 / 3)
    assert m["per_class_f1"]["pos"] == pytest.approx(0.8)


def test_bucket_batch_sampler_covers_every_example_once():
    from toolkit.compress.pipeline import BucketBatchSampler

    lengths = torch.tensor([5, 1, 3, 3, 2, 8, 1, 4, 6, 2, 7])
    sampler = BucketBatchSampler(lengths, batch_size=3, seed=0, pool=2)
    for _ in range(2):
        batches = list(sampler)
        assert len(batches) == len(sampler) == 4
        assert sorted(i for b in batches for i in b) == list(range(11))
