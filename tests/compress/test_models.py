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


def test_distillation_loss_hand_computed():
    from toolkit.compress.models import distillation_loss

    s = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    y = torch.tensor([0, 1])
    ce = float(torch.nn.functional.cross_entropy(s, y))
    assert float(distillation_loss(s, t, y, 0.0, 2.0)) == pytest.approx(ce)
    # T = 2: p_s = softmax(s / 2), p_t = softmax(t / 2); KL(p_t || p_s) per row, batch mean, times T^2 = 4
    kl = 0.0
    for srow, trow in zip(s, t, strict=True):
        ps, pt = torch.softmax(srow / 2, 0), torch.softmax(trow / 2, 0)
        kl += float((pt * (pt.log() - ps.log())).sum())
    kd = 4 * kl / 2
    assert float(distillation_loss(s, t, y, 1.0, 2.0)) == pytest.approx(kd, rel=1e-6)
    assert float(distillation_loss(s, t, y, 0.25, 2.0)) == pytest.approx(0.75 * ce + 0.25 * kd, rel=1e-6)
    assert float(distillation_loss(t, t, y, 1.0, 3.0)) == pytest.approx(0.0, abs=1e-7)  # student = teacher
    with pytest.raises(ValueError, match="do not match"):
        distillation_loss(s, t[:, :1], y, 0.5, 2.0)
    with pytest.raises(ValueError):
        distillation_loss(s, t, y, 1.5, 2.0)
    with pytest.raises(ValueError):
        distillation_loss(s, t, y, 0.5, 0.0)


def test_distillation_gradient_reaches_only_the_student():
    from toolkit.compress.models import distillation_loss

    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    distillation_loss(s, t, torch.tensor([0, 1, 2, 0]), 0.7, 2.0).backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0 and t.grad is None


@pytest.mark.parametrize("arch", ["lstm", "dan", "textcnn"])
def test_input_metric_measures_what_the_reading_layers_see(arch):
    torch.manual_seed(0)
    net = TextClassifier(arch, vocab_size=30, embedding_dim=6, num_classes=3, hidden=5, dan_hidden=(4, 3),
                         cnn_filters=2, cnn_widths=(2, 3))
    m = net.input_metric()
    assert m.shape == (6, 6) and m.dtype == torch.float64 and torch.allclose(m, m.T)
    x = torch.randn(6, dtype=torch.float64)
    if arch == "lstm":
        seen = [net.encoder.weight_ih_l0.detach().double() @ x]
    elif arch == "dan":
        seen = [net.encoder[0].weight.detach().double() @ x]
    else:  # one word vector x at one position: every tap of every filter reads it once
        seen = [conv.weight[:, :, o].detach().double() @ x for conv in net.encoder for o in range(conv.weight.shape[2])]
    assert float(x @ m @ x) == pytest.approx(sum(float(v @ v) for v in seen), rel=1e-9)
    if arch != "textcnn":
        net.factorize_first_dense(2)
        with pytest.raises(ValueError, match="factorized"):
            net.input_metric()


def test_weighted_factorized_copy_starts_closer_in_the_models_eyes():
    """Output-aware factorization: at equal rank the copy's first-layer input error is smaller than the plain SVD's."""
    torch.manual_seed(1)
    net = TextClassifier("dan", vocab_size=40, embedding_dim=8, num_classes=2, dan_hidden=(3,))
    m = net.input_metric()
    plain = factorized_copy(net, 2)
    aware = factorized_copy(net, 2, metric=m)
    e = net.embedding.weight.detach().double()

    def seen_error(copy):
        diff = e - copy.embedding.weight.detach().double()
        return float((diff @ m * diff).sum())

    assert seen_error(aware) < 0.5 * seen_error(plain)
