"""Model zoo shapes and a short supervised fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.models.zoo import build_model


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (64,)])
def test_shapes_and_gradients(arch, shape):
    model = build_model(arch, shape, num_classes=5, embed_dim=16)
    x = torch.randn(4, *shape)
    logits = model(x)
    assert logits.shape == (4, 5) and model.embed(x).shape == (4, 16)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_unknown_arch_and_bad_shape():
    with pytest.raises(ValueError, match="unknown model arch"):
        build_model("vit", (64,), 2)
    with pytest.raises(ValueError, match="square"):
        build_model("cnn", (10,), 2)


def test_classifier_learns_digits(tmp_path):
    from sklearn.datasets import load_digits

    from toolkit.models.classifier import predict, train_classifier
    from toolkit.models.zoo import model_from_config, network_config

    d = load_digits()
    x = (d.images[:, None] / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    node = {**network_config("cnn"), "embed_dim": 32, "width": 16}
    module = train_classifier(x[:1200], y[:1200], lambda shape, k: model_from_config(node, shape, k),
                              epochs=6, batch_size=64, lr=5e-3, trainer_cfg={"progress": False},
                              root_dir=tmp_path)
    acc = (predict(module.net, x[1200:], embed=False).argmax(1) == y[1200:]).mean()
    assert acc > 0.8
    assert module.hparams.arch == "cnn" and module.hparams.arch_kwargs == {"embed_dim": 32, "width": 16, "blocks": 4}
