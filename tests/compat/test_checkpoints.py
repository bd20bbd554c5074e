"""Checkpoint formats: toolkit model.pt round trip, TorchScript, plain state_dict with a named architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.compat.checkpoints import infer, load_model, save_model
from toolkit.errors import InputError
from toolkit.models.zoo import build_model

X = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)


def _ref(m, x):
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy(), m.embed(torch.from_numpy(x)).numpy()


def test_toolkit_checkpoint_round_trip_with_projection(tmp_path):
    torch.manual_seed(0)
    m = build_model("cnn", (1, 8, 8), 4, embed_dim=16, width=8, blocks=2).eval()
    proj = nn.Linear(16, 5, bias=False)
    save_model(tmp_path / "m.pt", m, "cnn", {"embed_dim": 16, "width": 8, "blocks": 2}, [1, 8, 8], 4, proj)
    net, p, info = load_model(tmp_path / "m.pt", "new", (1, 8, 8))
    assert info == {"arch": "cnn", "num_classes": 4, "embed_dim": 16, "format": "toolkit-compat/1"}
    lg, emb = infer(net, X, p)
    ref_lg, ref_emb = _ref(m, X)
    np.testing.assert_allclose(lg, ref_lg, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(emb, proj(torch.from_numpy(ref_emb)).numpy(), atol=1e-5)
    with pytest.raises(InputError, match="expects inputs of shape"):
        load_model(tmp_path / "m.pt", "new", (1, 28, 28))


def test_torchscript_classifier(tmp_path):
    m = build_model("mlp", (1, 8, 8), 10, hidden=16, embed_dim=8).eval()
    example = torch.rand(2, 1, 8, 8)
    torch.jit.trace_module(m, {"forward": example, "embed": example}).save(str(tmp_path / "ts.pt"))
    with pytest.raises(InputError, match="TorchScript archive: it carries code"):
        load_model(tmp_path / "ts.pt", "old.checkpoint", (1, 8, 8))
    net, p, info = load_model(tmp_path / "ts.pt", "old.checkpoint", (1, 8, 8), trust_code=True)
    assert info["format"] == "torchscript" and p is None
    lg, emb = infer(net, X)
    ref_lg, ref_emb = _ref(m, X)
    np.testing.assert_allclose(lg, ref_lg, atol=1e-5)
    np.testing.assert_allclose(emb, ref_emb, atol=1e-5)


def test_plain_state_dict_needs_arch_name(tmp_path):
    m = build_model("mlp", (1, 8, 8), 10)  # configs/network/mlp.yaml sizes
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(InputError, match="needs a named architecture"):
        load_model(tmp_path / "sd.pt", "old.checkpoint", (1, 8, 8))
    net, _, info = load_model(tmp_path / "sd.pt", "old.checkpoint", (1, 8, 8), "mlp")
    assert info["format"] == "state_dict" and info["embed_dim"] == 64
    with pytest.raises(InputError, match="unknown network 'nosuch'"):
        load_model(tmp_path / "sd.pt", "old.checkpoint", (1, 8, 8), "nosuch")


def test_lightning_checkpoint_of_compat_module(tmp_path):
    """A Lightning .ckpt written while training CompatModule loads weights-only, with its projection."""
    from torch.utils.data import DataLoader, TensorDataset

    from toolkit.compat.lightning import CompatModule
    from toolkit.training import make_trainer

    torch.manual_seed(0)
    net = build_model("mlp", (1, 8, 8), 3, hidden=16, embed_dim=8)
    module = CompatModule(net, [1, 8, 8], method="bct", lr=1e-3, weight_decay=1e-4, bct_weight=1.0,
                          naive_weight=1.0, fd_weight=1.0, fd_kind_bct="lm", alpha=1.0, beta=5.0, temperature=100.0,
                          lm_reduction="mean", shift_pixels=0, projection=False, old_head_rows=3, old_embed_dim=4)
    y = torch.randint(0, 3, (32,))
    ds = TensorDataset(torch.rand(32, 1, 8, 8), y, y, torch.ones(32, dtype=torch.bool), torch.zeros(32, 3))
    trainer = make_trainer({"max_epochs": 1, "progress": "false"}, tmp_path / "r", checkpoint_dir=tmp_path / "ck")
    trainer.fit(module, DataLoader(ds, batch_size=16))
    net, proj, info = load_model(tmp_path / "ck" / "last.ckpt", "old.checkpoint", (1, 8, 8))
    assert info == {"arch": "mlp", "num_classes": 3, "embed_dim": 8, "format": "lightning"}
    assert proj is not None and proj.weight.shape == (4, 8)
    module.eval()
    lg, emb = infer(net, X, proj)
    with torch.no_grad():
        x = torch.from_numpy(X)
        np.testing.assert_allclose(lg, module(x).numpy(), atol=1e-5)
        np.testing.assert_allclose(emb, module.compatible_embedding(x).numpy(), atol=1e-5)


class FileWriter(nn.Module):
    """The issue's crafted model: its TorchScript ``forward`` overwrites a file through a shared mapping."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.target, True, 5, dtype=torch.uint8)
        t.fill_(66)  # the result feeds the output, so TorchScript does not drop the write as dead code
        return self.head(x.reshape(x.shape[0], -1)[:, :4]) + 0.0 * t.sum().float()


def crafted_torchscript(tmp_path):
    """(model path, victim file holding b'hello'); running the model turns the victim into b'BBBBB'."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"hello")
    torch.jit.script(FileWriter(str(victim))).save(str(tmp_path / "crafted.pt"))
    return tmp_path / "crafted.pt", victim


def test_crafted_torchscript_writes_nothing_without_opt_in(tmp_path):
    model, victim = crafted_torchscript(tmp_path)
    with pytest.raises(InputError, match="pass old.trust_code=true only for a file you trust"):
        load_model(model, "old.checkpoint", (1, 8, 8), opt_in="old.trust_code=true")
    assert victim.read_bytes() == b"hello"
    net, _, _ = load_model(model, "old.checkpoint", (1, 8, 8), trust_code=True)  # the opt-in runs its code
    infer(net, X, embeddings=False)
    assert victim.read_bytes() == b"BBBBB"
