"""Each bad input named in the issue: exit code 2, one-line error, no output directory."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from toolkit.cli import app
from toolkit.compat.checkpoints import save_model
from toolkit.models.zoo import build_model


class NotAllowed:  # unpickling this needs arbitrary code: weights_only=True must refuse it
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.fixture
def ckpts(tmp_path):
    torch.manual_seed(0)
    mlp = build_model("mlp", (1, 8, 8), 10, hidden=32, embed_dim=32)
    save_model(tmp_path / "old.pt", mlp, "mlp", {"hidden": 32, "embed_dim": 32}, [1, 8, 8], 10)
    torch.save(build_model("resnet", (1, 8, 8), 10).state_dict(), tmp_path / "resnet_state.pt")
    torch.save(mlp.state_dict(), tmp_path / "mlp_state.pt")
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"state_dict": NotAllowed()}, fh)
    return tmp_path


def _fails(runner, tmp_path, *args, match: str):
    out = tmp_path / "out"
    res = runner.invoke(app, ["train-compatible", "-q", f"output_dir={out}", "train.epochs=1",
                              "trainer.progress=false", *args])
    assert res.exit_code == 2, (res.exit_code, res.stderr, res.stdout)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert match in lines[0], lines[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".out.partial-*"))
    return lines[0]


def test_old_checkpoint_missing(runner, tmp_path):
    _fails(runner, tmp_path, f"old.checkpoint={tmp_path / 'nope.pt'}", match="checkpoint file not found")


def test_old_checkpoint_for_another_architecture(runner, ckpts):
    _fails(runner, ckpts, f"old.checkpoint={ckpts / 'resnet_state.pt'}", "old.model=mlp",
           match="weights do not match architecture 'mlp'")


def test_plain_state_dict_with_named_arch_loads(runner, ckpts):
    out = ckpts / "ok"
    res = runner.invoke(app, ["train-compatible", "-q", f"output_dir={out}", "train.epochs=1", "method=fd-lm",
                              "data.max_train=200", "data.max_test=100", "bootstrap.n=20",
                              f"old.checkpoint={ckpts / 'mlp_state.pt'}", "old.model=mlp"])
    assert res.exit_code == 0, res.stderr
    assert (out / "model.pt").is_file()


def test_old_head_size_not_matching_old_classes(runner, ckpts):
    _fails(runner, ckpts, f"old.checkpoint={ckpts / 'old.pt'}", "old.num_classes=5",
           match="old head has 10 classes but old.num_classes=5")


def test_old_head_file_rows_not_matching_logits(runner, tmp_path):
    from sklearn.datasets import load_digits  # noqa: F401  (digits split sizes: 1078 train / 719 test)

    np.save(tmp_path / "lg.npy", np.zeros((1078, 10), np.float32))
    np.save(tmp_path / "head.npy", np.ones((7, 4), np.float32))
    np.save(tmp_path / "emb.npy", np.ones((1078, 4), np.float32))
    _fails(runner, tmp_path, f"old.train_logits={tmp_path / 'lg.npy'}", f"old.head={tmp_path / 'head.npy'}",
           f"old.train_embeddings={tmp_path / 'emb.npy'}", match="head has 7 rows but the old logits have 10")


def test_label_map_naming_missing_classes(runner, ckpts):
    _fails(runner, ckpts, f"old.checkpoint={ckpts / 'old.pt'}", "old.label_map={12: 0}",
           match="new class 12 does not exist")
    _fails(runner, ckpts, f"old.checkpoint={ckpts / 'old.pt'}", "old.label_map={3: 10}",
           match="old class 10 does not exist")


def test_old_logits_row_count_differs(runner, tmp_path):
    np.save(tmp_path / "lg.npy", np.zeros((50, 10), np.float32))
    msg = _fails(runner, tmp_path, f"old.train_logits={tmp_path / 'lg.npy'}", match="has 50 rows")
    assert "old.train_logits" in msg


def test_nan_in_features(runner, tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    x[4, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(20) % 2)
    _fails(runner, tmp_path, "data=features", f"data.train_features={tmp_path / 'x.npy'}",
           f"data.train_labels={tmp_path / 'y.npy'}", match="NaN")


def test_untrusted_pickle_checkpoint_refused(runner, ckpts, capfd):
    msg = _fails(runner, ckpts, f"old.checkpoint={ckpts / 'evil.pt'}", match="refusing to load")
    assert "weights_only=True" in msg
    assert "pwned" not in capfd.readouterr().out


def test_compare_models_length_mismatch(runner, tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(10, np.int64))
    np.save(tmp_path / "b.npy", np.zeros(12, np.int64))
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare-models", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-q",
                              f"output_dir={out}"])
    assert res.exit_code == 2 and "has 12 predictions" in res.stderr
    assert not out.exists()


def test_unknown_method(runner, tmp_path):
    _fails(runner, tmp_path, "method=magic", match="method: got 'magic'; expected one of none, bct")


def test_old_head_file_rows_not_matching_checkpoint(runner, ckpts):
    np.save(ckpts / "head7.npy", np.ones((7, 32), np.float32))
    _fails(runner, ckpts, f"old.checkpoint={ckpts / 'old.pt'}", f"old.head={ckpts / 'head7.npy'}",
           match="head has 7 rows but the old model gives 10 logits")


def test_crafted_torchscript_refused_by_both_commands(runner, tmp_path):
    from tests.compat.test_checkpoints import crafted_torchscript

    model, victim = crafted_torchscript(tmp_path)
    msg = _fails(runner, tmp_path, "data.max_train=40", f"old.checkpoint={model}", match="TorchScript archive")
    assert "old.trust_code=true" in msg
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare-models", str(model), str(model), "data=compat_digits", "-q",
                              f"output_dir={out}"])
    assert res.exit_code == 2 and "--trust-code" in res.stderr, res.stderr
    assert victim.read_bytes() == b"hello" and not out.exists()


def test_torchscript_for_other_inputs(runner, tmp_path):
    m = build_model("mlp", (1, 8, 8), 3, hidden=8, embed_dim=4).eval()
    torch.jit.trace(m, torch.rand(2, 1, 8, 8)).save(str(tmp_path / "ts.pt"))
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(30) % 3)
    _fails(runner, tmp_path, "data=features", f"data.train_features={tmp_path / 'x.npy'}",
           f"data.train_labels={tmp_path / 'y.npy'}", f"old.checkpoint={tmp_path / 'ts.pt'}",
           "old.trust_code=true", match="cannot run the model on inputs of shape [5]")


def test_negative_labels(runner, tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(20) % 3 - 1)
    _fails(runner, tmp_path, "data=features", f"data.train_features={tmp_path / 'x.npy'}",
           f"data.train_labels={tmp_path / 'y.npy'}", match="negative label")


def test_negative_loss_weight(runner, tmp_path):
    _fails(runner, tmp_path, "fd.beta=-1", match="fd.beta: got -1; expected a number >= 0")


def test_compare_models_label_or_id_mismatch(runner, tmp_path):
    p = np.zeros(4, np.int64)
    np.savez(tmp_path / "a.npz", predictions=p, labels=np.array([0, 1, 0, 1]), ids=np.arange(4))
    np.savez(tmp_path / "b.npz", predictions=p, labels=np.array([1, 1, 0, 1]), ids=np.arange(4))
    np.savez(tmp_path / "c.npz", predictions=p, labels=np.array([0, 1, 0, 1]), ids=np.arange(1, 5))
    for other, key in (("b.npz", "labels"), ("c.npz", "ids")):
        out = tmp_path / f"cmp_{key}"
        res = runner.invoke(app, ["compare-models", str(tmp_path / "a.npz"), str(tmp_path / other), "-q",
                                  f"output_dir={out}"])
        assert res.exit_code == 2 and f"{key}: differ from the {key}" in res.stderr, res.stderr
        assert not out.exists()


def test_augmentation_with_precomputed_old_logits(runner, tmp_path):
    """Shifted images need old logits of the shifted images: precomputed ones cannot give them."""
    np.save(tmp_path / "tr.npy", np.zeros((1078, 10), np.float32))  # digits split: 1078 train / 719 test
    np.save(tmp_path / "te.npy", np.zeros((719, 10), np.float32))
    msg = _fails(runner, tmp_path, f"old.train_logits={tmp_path / 'tr.npy'}", f"old.test_logits={tmp_path / 'te.npy'}",
                 "train.shift_pixels=1", "method=fd-lm", match="train.shift_pixels")
    assert "old.train_logits" in msg and "old.checkpoint" in msg
