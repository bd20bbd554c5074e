"""The optional factorized first dense layer: step-0 equivalence, training of both factors, size accounting,
and the CLI option with its bad inputs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from tests.compress.conftest import fast_overrides
from toolkit.cli import app
from toolkit.compress.factorize import FactorizedLinear, LowRankInputLSTM, dense_footprint
from toolkit.compress.metrics import dense_size, model_size
from toolkit.compress.models import TextClassifier
from toolkit.compress.pipeline import factorized_copy, resolve_dense_rank
from toolkit.errors import InputError


def _rank_k(weight: torch.Tensor, k: int) -> torch.Tensor:
    """U_k S_k V_k^T of ``weight`` computed independently in float64."""
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    return (u[:, :k] @ torch.diag(s[:k]) @ vh[:k]).float()


def test_factorized_linear_full_rank_and_rank_k_at_step_0():
    torch.manual_seed(0)
    layer = nn.Linear(7, 5)
    x = torch.randn(11, 7)
    full = FactorizedLinear.from_linear(layer, 5)
    assert torch.allclose(full(x), layer(x), atol=1e-5)
    for k in (1, 3):
        low = FactorizedLinear.from_linear(layer, k)
        assert low.down.weight.shape == (k, 7) and low.down.bias is None
        assert low.up.weight.shape == (5, k) and torch.equal(low.up.bias, layer.bias)
        expected = x @ _rank_k(layer.weight, k).T + layer.bias
        assert torch.allclose(low(x), expected, atol=1e-5)
        assert torch.allclose(low.weight, _rank_k(layer.weight, k), atol=1e-5)
    # the original layer is untouched, and the rank is checked
    with pytest.raises(ValueError, match="rank"):
        FactorizedLinear.from_linear(layer, 6)


def test_low_rank_input_lstm_full_rank_and_rank_k_at_step_0():
    torch.manual_seed(0)
    lstm = nn.LSTM(6, 4, batch_first=True)  # W_ih is 16 x 6
    x = torch.randn(3, 5, 6)
    ref, _ = lstm(x)
    full, _ = LowRankInputLSTM.from_lstm(lstm, 6)(x)
    assert torch.allclose(full, ref, atol=1e-5)
    k = 2
    low = LowRankInputLSTM.from_lstm(lstm, k)
    twin = copy.deepcopy(lstm)  # the same LSTM with W_ih replaced by U_k S_k V_k^T
    with torch.no_grad():
        twin.weight_ih_l0.copy_(_rank_k(lstm.weight_ih_l0, k))
    assert torch.allclose(low(x)[0], twin(x)[0], atol=1e-5)
    assert torch.allclose(low.weight_ih, twin.weight_ih_l0, atol=1e-5)
    with pytest.raises(ValueError):
        LowRankInputLSTM.from_lstm(nn.LSTM(6, 4, num_layers=2, batch_first=True), 2)


@pytest.mark.parametrize("arch", ["lstm", "dan", "textcnn"])
def test_classifier_full_rank_dense_factorization_is_function_preserving(arch):
    torch.manual_seed(0)
    net = TextClassifier(arch, vocab_size=30, embedding_dim=8, num_classes=3, hidden=6, cnn_filters=4).eval()
    tokens = torch.randint(0, 30, (5, 7))
    m, n = net.first_dense_shape()
    both = factorized_copy(net, 8, dense_rank=min(m, n)).eval()
    assert both.first_dense_rank() == min(m, n) and net.first_dense_rank() is None
    assert torch.allclose(both(tokens), net(tokens), atol=1e-4)


def test_dan_rank_k_dense_layer_equals_truncated_svd_at_step_0():
    torch.manual_seed(1)
    net = TextClassifier("dan", vocab_size=30, embedding_dim=8, num_classes=3).eval()
    tokens = torch.randint(1, 30, (4, 6))
    low = factorized_copy(net, 8, dense_rank=2).eval()
    first = net.encoder[0]
    pooled = low.embedding(tokens).mean(1)  # no padding in ``tokens``: masked mean = mean
    expected = pooled @ _rank_k(first.weight, 2).T + first.bias
    assert torch.allclose(low.encoder[0](pooled), expected, atol=1e-5)
    # and the whole net equals the original net with W replaced by its rank-2 approximation
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin.encoder[0].weight.copy_(_rank_k(first.weight, 2))
    assert torch.allclose(low(tokens), twin(tokens), atol=1e-5)


def test_fine_tuning_updates_both_dense_factors():
    torch.manual_seed(0)
    net = TextClassifier("dan", vocab_size=20, embedding_dim=6, num_classes=2)
    low = factorized_copy(net, 3, dense_rank=2)
    layer = low.encoder[0]
    before = (layer.down.weight.clone(), layer.up.weight.clone())
    opt = torch.optim.SGD(low.parameters(), lr=0.5)
    loss = nn.functional.cross_entropy(low(torch.randint(1, 20, (8, 5))), torch.randint(0, 2, (8,)))
    loss.backward()
    opt.step()
    assert not torch.equal(layer.down.weight, before[0]) and not torch.equal(layer.up.weight, before[1])


def test_dense_footprint_and_rank_hand_computed():
    assert dense_footprint(30, 10) == {"params": 330, "bytes": 1320}
    assert dense_footprint(30, 10, rank=3) == {"params": 3 * 40 + 30, "bytes": 600}
    assert dense_footprint(30, 10, rank=3, bias=False)["params"] == 120
    assert resolve_dense_rank((30, 10), 0.5, None) == 3      # floor(0.5 * 300 / 40) = 3.75 -> 3
    assert resolve_dense_rank((600, 50), 0.9, None) == 4     # LSTM W_ih, H = 150, d = 50: 3000 / 650 = 4.6
    assert resolve_dense_rank((30, 10), 0.5, 7) == 7         # dense.rank overrides dense.compression
    with pytest.raises(InputError, match="^dense.rank: "):
        resolve_dense_rank((30, 10), None, 11)
    with pytest.raises(InputError, match="^dense.compression: .*leaves rank 0"):
        resolve_dense_rank((2, 300), 0.5, None)                # CNN head with 2 classes: 0.5 * 600 / 302 < 1
    for bad in (0, 1, 1.5, "x"):
        with pytest.raises(InputError, match="^dense.compression: "):
            resolve_dense_rank((30, 10), bad, None)


def test_model_size_with_dense_layer_hand_computed():
    # DAN over a 100 x 10 table, dense 30 and 25, 2 classes: 1157 non-embedding parameters, of which the
    # first dense layer is 10*30 + 30 = 330
    net = TextClassifier("dan", vocab_size=100, embedding_dim=10, num_classes=2)
    assert model_size(net, dense=True) == {"params": 2157, "bytes": 4 * 2157, "model_params": 2157,
                                           "model_bytes": 4 * 2157, "embedding_params": 1000,
                                           "embedding_bytes": 4000, "dense_params": 330, "dense_bytes": 1320}
    low = factorized_copy(net, 3, dense_rank=3)
    # embedding 3 * 110 = 330; dense 3 * (30 + 10) + 30 = 150; the rest 1157 - 330 = 827
    size = model_size(low, dense=True)
    assert size["dense_params"] == 150 and size["dense_bytes"] == 600
    assert size["params"] == 330 + 150 + 827 and size["bytes"] == 4 * (330 + 150 + 827)
    assert "dense_params" not in model_size(low)  # the default keys are unchanged


def test_lstm_and_cnn_dense_accounting_hand_computed():
    # LSTM d = 8, H = 6: W_ih 24 x 8 + b_ih 24 = 216; rank 2: 2 * (24 + 8) + 24 = 88
    lstm = TextClassifier("lstm", vocab_size=30, embedding_dim=8, num_classes=3, hidden=6)
    assert lstm.first_dense_shape() == (24, 8) and dense_size(lstm)["params"] == 216
    low = factorized_copy(lstm, 8, dense_rank=2)
    assert dense_size(low) == {"params": 88, "bytes": 352}
    # the whole model shrinks by exactly the dense layer's saving (W_hh, b_hh and the head are unchanged)
    rest = model_size(lstm)["params"] - 30 * 8, model_size(low)["params"] - 8 * (30 + 8)
    assert rest[0] - rest[1] == 216 - 88
    # CNN, 3 widths x 4 filters -> 3 classes: head 12 x 3 + 3 = 39; rank 2: 2 * 15 + 3 = 33
    cnn = TextClassifier("textcnn", vocab_size=30, embedding_dim=8, num_classes=3, cnn_filters=4)
    assert cnn.first_dense_shape() == (3, 12) and dense_size(cnn)["params"] == 39
    assert dense_size(factorized_copy(cnn, 8, dense_rank=2))["params"] == 33


def test_cli_dense_option_writes_dense_compression(runner, tiny_text):
    out = tiny_text["dir"] / "dense"
    args = [*fast_overrides(tiny_text, out), "compression=0.5", "dense.factorize=true", "--json"]
    result = runner.invoke(app, ["compress", *args])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    v, d = m["embedding_shape"]
    assert m["dense_shape"] == [30, d] == [30, 4] and "Linear" in m["dense_layer"]
    kd = int(0.5 * 30 * 4 / 34)  # the dense compression defaults to the embedding's: floor(1.76) = 1
    assert m["dense_rank"] == kd == 1 and m["requested_dense_compression"] == 0.5
    before, after = m["uncompressed"], m["svd_finetune"]
    assert before["dense_params"] == 30 * 4 + 30 and before["dense_bytes"] == 4 * 150
    assert after["dense_params"] == kd * (30 + 4) + 30 and after["dense_bytes"] == 4 * 64
    assert after["dense_param_compression"] == pytest.approx(1 - 64 / 150)
    assert m["svd_no_finetune"]["dense_params"] == 64
    saved = (v * d - m["rank"] * (v + d)) + (150 - 64)
    assert before["params"] - after["params"] == saved and before["bytes"] - after["bytes"] == 4 * saved
    ckpt = torch.load(out / "compressed.pt", weights_only=True)
    assert ckpt["dense_rank"] == 1
    assert ckpt["state_dict"]["encoder.0.down.weight"].shape == (1, 4)
    assert ckpt["state_dict"]["encoder.0.up.weight"].shape == (30, 1)


def test_cli_dense_option_lstm_input_weights_and_embedding_rank(runner, tiny_text):
    # LSTM: the layer is W_ih (4H x d = 600 x 4); with an explicit embedding rank=2 the dense compression
    # defaults to what that rank removes from the 22 x 4 table: 1 - 2 * 26 / 88
    out = tiny_text["dir"] / "lstm"
    args = [*fast_overrides(tiny_text, out), "model=lstm", "rank=2", "dense.factorize=true",
            "baselines.enabled=false", "pretrain.epochs=1", "--json"]
    result = runner.invoke(app, ["compress", *args])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["embedding_shape"] == [22, 4] and m["dense_shape"] == [600, 4] and "W_ih" in m["dense_layer"]
    p = 1 - 2 * 26 / 88
    assert m["requested_dense_compression"] == pytest.approx(p)
    assert m["dense_rank"] == int((1 - p) * 2400 / 604) == 2  # floor(2.35)
    assert m["uncompressed"]["dense_params"] == 2400 + 600
    assert m["svd_finetune"]["dense_params"] == 2 * 604 + 600
    state = torch.load(out / "compressed.pt", weights_only=True)["state_dict"]
    assert state["encoder.down.weight"].shape == (2, 4) and state["encoder.lstm.weight_ih_l0"].shape == (600, 2)


def test_cli_dense_option_off_by_default(runner, tiny_text):
    out = tiny_text["dir"] / "plain"
    args = [*fast_overrides(tiny_text, out), "compression=0.5", "baselines.enabled=false", "--json"]
    result = runner.invoke(app, ["compress", *args])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert "dense_rank" not in m and "dense_params" not in m["svd_finetune"]
    assert "dense_rank" not in torch.load(out / "compressed.pt", weights_only=True)


@pytest.mark.parametrize(("args", "needle"), [
    (["dense.rank=9"], "error: dense.rank: must be an integer in [1, min(m, n)] = [1, 4]"),
    (["dense.rank=0"], "error: config: dense.rank: got 0"),
    (["dense.compression=1.5"], "error: config: dense.compression: got 1.5; expected a number > 0 and < 1"),
    (["dense.compression=0"], "error: config: dense.compression: got 0"),
    (["model=textcnn"], "error: dense.compression: 0.5 leaves rank 0 for the 2 x 300 first dense layer"),
    (["dense.factorize=yes"], "error: config: dense.factorize: got 'yes'; expected true or false"),
])
def test_cli_bad_dense_settings_exit_2(runner, tiny_text, args, needle):
    out = tiny_text["dir"] / "out"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), "compression=0.5",
                                 "dense.factorize=true", *args])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(needle), result.stderr
    assert not out.exists()
