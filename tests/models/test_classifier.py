"""The classifier's cosine-margin head (CosFace) and its training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.models.classifier import ClassifierModule, cosface_logits, cosine_logits
from toolkit.models.zoo import build_model


def test_cosine_logits_are_scaled_cosines_and_the_margin_hits_only_the_true_class():
    emb = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    w = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]])
    cos = cosine_logits(emb, w, 10.0)
    expect = 10.0 * torch.tensor([[1.0, 0.0, -1.0], [2 ** -0.5, 2 ** -0.5, -(2 ** -0.5)]])
    assert torch.allclose(cos, expect, atol=1e-6)
    y = torch.tensor([0, 1])
    out = cosface_logits(cos, y, 10.0, 0.35)
    diff = cos - out
    assert torch.allclose(diff[[0, 1], [0, 1]], torch.full((2,), 3.5))
    diff[[0, 1], [0, 1]] = 0
    assert torch.count_nonzero(diff) == 0
    assert cosface_logits(cos, y, 10.0, 0.0) is cos


@pytest.mark.parametrize("kw", [{"head": "arc"}, {"head": "cosine", "margin": 1.0}, {"head": "cosine", "scale": 0.0}])
def test_bad_head_settings_raise(kw):
    net = build_model("mlp", (8,), num_classes=3, embed_dim=4)
    with pytest.raises(ValueError):
        ClassifierModule(net, [8], **kw)


def test_cosine_head_embeddings_separate_digit_classes_by_cosine(tmp_path):
    from sklearn.datasets import load_digits
    from sklearn.neighbors import KNeighborsClassifier

    from toolkit.models.classifier import predict, train_classifier
    from toolkit.models.zoo import model_from_config, network_config

    d = load_digits()
    x = (d.images[:, None] / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    node = {**network_config("cnn"), "embed_dim": 32, "width": 16}
    module = train_classifier(x[:1200], y[:1200], lambda shape, k: model_from_config(node, shape, k),
                              epochs=6, batch_size=64, lr=5e-3, trainer_cfg={"progress": False},
                              root_dir=tmp_path, head="cosine", scale=16.0, margin=0.2)
    assert module.hparams.head == "cosine" and module.hparams.margin == 0.2
    with torch.no_grad():
        logits = module(torch.from_numpy(x[1200:]))
    assert float(logits.abs().max()) <= 16.0 + 1e-4          # scale * cos, no margin at inference
    assert (logits.argmax(1).numpy() == y[1200:]).mean() > 0.8
    f = predict(module.net, x)
    knn = KNeighborsClassifier(5, metric="cosine").fit(f[:1200], y[:1200])
    assert knn.score(f[1200:], y[1200:]) > 0.8
