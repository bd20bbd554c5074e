"""fp16 / 8-bit / 4-bit embedding baselines: closeness to the float table and their byte accounting."""

from __future__ import annotations

import pytest
import torch

from toolkit.compress.metrics import model_size
from toolkit.compress.models import TextClassifier
from toolkit.compress.pipeline import quantized_copy
from toolkit.compress.quantize import QuantizedEmbedding


def test_quantized_embedding_close_and_smaller():
    torch.manual_seed(0)
    net = TextClassifier("dan", vocab_size=40, embedding_dim=8, num_classes=2).eval()
    tokens = torch.randint(1, 40, (4, 6))
    for bits, tol in ((16, 1e-2), (8, 0.05), (4, 0.5)):
        q = quantized_copy(net, bits)
        assert torch.allclose(q.embedding(tokens), net.embedding(tokens), atol=tol)
        # codes (d * bits / 8 bytes per row) plus a float32 scale and zero point per row for 8/4 bits
        assert model_size(q)["embedding_bytes"] == 40 * ((8 * bits // 8) + (0 if bits == 16 else 8))
        assert model_size(q)["embedding_params"] == 40 * 8
        assert not any(p is net.embedding.weight for p in q.parameters())  # a copy: net is untouched


def test_dequantized_table_error_bounded_by_row_step():
    # row-wise affine quantization: each value is within half a quantization step (range / (2^bits - 1))
    torch.manual_seed(1)
    w = torch.randn(30, 6)
    for bits in (8, 4):
        table = QuantizedEmbedding(w, bits).dequantized()
        step = (w.amax(1) - w.amin(1)) / (2**bits - 1)
        assert torch.all((table - w).abs() <= step[:, None] * 0.5 + 1e-3)
    assert torch.allclose(QuantizedEmbedding(w, 16).dequantized(), w, atol=1e-2)


@pytest.mark.parametrize(("bits", "dim"), [(3, 4), (32, 4), (4, 5)])
def test_quantized_embedding_rejects_bad_bits_or_odd_dim_for_4_bits(bits, dim):
    with pytest.raises(ValueError):
        QuantizedEmbedding(torch.randn(5, dim), bits)
