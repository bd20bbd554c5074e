"""Evaluation of a compressed classifier: accuracy, per-class F1, size and CPU latency."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from toolkit.compress.factorize import FLOAT32_BYTES, FactorizedEmbedding, embedding_footprint
from toolkit.compress.quantize import QuantizedEmbedding


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro F1 and per-class F1 (scikit-learn) for int label arrays [N].

    Returns:
        ``{"accuracy": float, "macro_f1": float, "per_class_f1": {name: float}}``.
    """
    from sklearn.metrics import accuracy_score, f1_score

    labels = np.arange(len(class_names))
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(np.mean(f1)),
            "per_class_f1": {name: float(v) for name, v in zip(class_names, f1, strict=True)}}


@torch.no_grad()
def predict(net: nn.Module, tokens: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Predicted class ids int64 [N] for token ids long [N, T] (eval mode)."""
    net.eval()
    out = [net(tokens[i: i + batch_size]).argmax(1) for i in range(0, len(tokens), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def latency_ms(net: nn.Module, batch: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median CPU wall time of one forward pass on ``batch`` (long [B, T]), in milliseconds."""
    net.eval()
    for _ in range(warmup):
        net(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def embedding_size(module: nn.Module) -> dict[str, int]:
    """Parameters and bytes of an embedding module (dense, factorized or quantized)."""
    if isinstance(module, QuantizedEmbedding):
        return module.footprint()
    if isinstance(module, FactorizedEmbedding):
        return embedding_footprint(module.num_embeddings, module.embedding_dim, rank=module.rank,
                                   head=module.head)
    if isinstance(module, nn.Embedding):
        return embedding_footprint(module.num_embeddings, module.embedding_dim)
    params = sum(p.numel() for p in module.parameters())
    return {"params": int(params), "bytes": int(params * FLOAT32_BYTES)}


def dense_size(net: nn.Module) -> dict[str, int]:
    """Parameters and float32 bytes of a classifier's first dense layer after the embedding.

    Counts the parameters of ``net.first_dense_parameters()`` (see
    :meth:`~toolkit.compress.models.TextClassifier.first_dense_parameters`): weight and bias of a dense layer
    (m n + m), both factors and the bias of a factorized one (k (m + n) + m).

    Returns:
        ``{"params": int, "bytes": int}``.
    """
    params = sum(p.numel() for p in net.first_dense_parameters())
    return {"params": int(params), "bytes": int(params) * FLOAT32_BYTES}


def model_size(net: nn.Module, dense: bool = False) -> dict[str, int]:
    """Parameters and bytes of a whole classifier: its embedding (see :func:`embedding_size`) plus
    every other parameter as float32.

    Args:
        net: a :class:`~toolkit.compress.models.TextClassifier`.
        dense: also report the first dense layer's size (:func:`dense_size`); it is already part of the
            totals either way.

    Returns:
        ``{"params", "bytes", "model_params", "model_bytes", "embedding_params", "embedding_bytes"}`` (ints;
        ``model_params``/``model_bytes`` are the whole model, the same values as the older names ``params``/
        ``bytes``), plus ``dense_params`` and ``dense_bytes`` when ``dense``.
    """
    emb = embedding_size(net.embedding)
    emb_ids = {id(p) for p in net.embedding.parameters()}
    rest = sum(p.numel() for p in net.parameters() if id(p) not in emb_ids)
    params, nbytes = emb["params"] + int(rest), emb["bytes"] + int(rest) * FLOAT32_BYTES
    out = {"params": params, "bytes": nbytes, "model_params": params, "model_bytes": nbytes,
           "embedding_params": emb["params"], "embedding_bytes": emb["bytes"]}
    if dense:
        size = dense_size(net)
        out.update(dense_params=size["params"], dense_bytes=size["bytes"])
    return out
