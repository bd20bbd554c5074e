"""Classifiers share one embedding interface; a factorized table drops in without changing the function."""

from __future__ import annotations

import pytest
import torch

from toolkit.compress.factorize import FactorizedEmbedding
from toolkit.compress.metrics import model_size
from toolkit.compress.models import TextClassifier
from toolkit.compress.pipeline import factorized_copy


@pytest.mark.parametrize("arch", ["lstm", "dan", "textcnn"])
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


def test_text_classifier_rejects_unknown_arch():
    with pytest.raises(ValueError, match="unknown arch"):
        TextClassifier("gru", vocab_size=10, embedding_dim=4, num_classes=2)


@pytest.mark.parametrize("arch", ["lstm", "dan", "textcnn"])
def test_padding_does_not_change_the_prediction(arch):
    # padding (index 0) is masked out of pooling, so extra trailing padding leaves the logits unchanged
    torch.manual_seed(0)
    net = TextClassifier(arch, vocab_size=20, embedding_dim=6, num_classes=2, hidden=5, cnn_filters=3).eval()
    tokens = torch.tensor([[3, 4, 5, 6, 0, 0]])
    longer = torch.cat([tokens, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    assert torch.allclose(net(tokens), net(longer), atol=1e-6)


@pytest.mark.parametrize("arch", ["lstm", "dan", "textcnn"])
def test_config_builds_the_same_network_as_before(arch):
    """configs/compress/model/<arch>.yaml through hydra instantiate = the former string-dispatched build with the
    same arguments: same class of network, same parameters under the same seed, same short name."""
    from omegaconf import OmegaConf

    from toolkit.compress.models import build_classifier, model_config
    from toolkit.config import compose_config

    cfg = compose_config("compress", ["data=sst2", f"model={arch}"]).model
    assert OmegaConf.to_container(cfg, resolve=True) == model_config(arch)
    torch.manual_seed(0)
    net = build_classifier(cfg, 40, 8, 3)
    kwargs = {k: v for k, v in model_config(arch).items() if not k.startswith("_") and k != "embedding_dim"}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    torch.manual_seed(0)
    ref = TextClassifier(arch, 40, 8, 3, **kwargs)
    assert net.arch == arch and isinstance(net, TextClassifier)
    assert net.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True))


def test_build_classifier_refuses_other_targets_and_unknown_arguments():
    from toolkit.compress.models import build_classifier, model_config
    from toolkit.errors import InputError

    with pytest.raises(InputError, match="_target_"):
        build_classifier({"_target_": "os.system", "_partial_": True}, 10, 4, 2)
    with pytest.raises(InputError, match="cnn_filters"):
        build_classifier({**model_config("lstm"), "cnn_filters": 3}, 10, 4, 2)
    with pytest.raises(InputError, match="unknown compress model"):
        model_config("cnn")
