"""Post-training embedding quantization baselines: fp16 cast, 8-bit and 4-bit row-wise affine.

8/4-bit use torch's quantized embedding kernels (``torch.ao.nn.quantized``) with per-row float scale
and zero point (``float_qparams_weight_only_qconfig``); torch provides 4-bit (``quint4x2``) lookups
only for ``EmbeddingBag``, so both use an ``EmbeddingBag`` with one index per bag (a plain lookup).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from toolkit.compress.factorize import FLOAT32_BYTES, embedding_footprint


class QuantizedEmbedding(nn.Module):
    """Frozen quantized copy of a table; long [...] -> float32 [..., d].

    Args:
        weight: float table [V, d].
        bits: 16 (float16 storage), 8 (quint8) or 4 (quint4x2); 4-bit needs even d.

    Raises:
        ValueError: on other bit widths or odd d with 4 bits.
    """

    def __init__(self, weight: torch.Tensor, bits: int) -> None:
        super().__init__()
        v, d = weight.shape
        self.num_embeddings, self.embedding_dim, self.bits = int(v), int(d), int(bits)
        if bits == 16:
            self.register_buffer("half_weight", weight.detach().to(torch.float16).clone())
            self.qbag = None
            return
        if bits not in (8, 4):
            raise ValueError(f"bits must be 16, 8 or 4, got {bits}")
        if bits == 4 and d % 2:
            raise ValueError(f"4-bit quantization needs an even dimension, got {d}")
        from torch.ao.nn.quantized import EmbeddingBag as QEmbeddingBag
        from torch.ao.quantization import (
            float_qparams_weight_only_qconfig,
            float_qparams_weight_only_qconfig_4bit,
        )

        bag = nn.EmbeddingBag(v, d, mode="sum")
        with torch.no_grad():
            bag.weight.copy_(weight.detach().float())
        bag.qconfig = float_qparams_weight_only_qconfig if bits == 8 else float_qparams_weight_only_qconfig_4bit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.qbag = QEmbeddingBag.from_float(bag)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Dequantized rows float32 [..., d] for token ids long [...]."""
        if self.qbag is None:
            return self.half_weight[tokens].float()
        flat = tokens.reshape(-1)
        offsets = torch.arange(flat.numel(), dtype=torch.long)
        return self.qbag(flat, offsets).reshape(*tokens.shape, self.embedding_dim)

    def dequantized(self) -> torch.Tensor:
        """The table as float32 [V, d]."""
        if self.qbag is None:
            return self.half_weight.float()
        return self.qbag.weight().dequantize()

    def footprint(self) -> dict[str, int]:
        """Parameters and bytes: codes plus per-row float32 scale and zero point (8 bytes/row) for 8/4 bits."""
        row = 0 if self.bits == 16 else 2 * FLOAT32_BYTES
        return embedding_footprint(self.num_embeddings, self.embedding_dim, bits=self.bits, row_param_bytes=row)
