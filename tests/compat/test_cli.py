"""End-to-end CLI runs on tiny digits splits (train-compatible, compare-models, --json, --max-nfr)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolkit.cli import app

TINY = ["data.max_train=300", "data.max_test=150", "train.epochs=2", "old.epochs=2", "bootstrap.n=200",
        "trainer.progress=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny bct+fd run shared by the tests below."""
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("tc") / "run"
    result = CliRunner().invoke(app, ["train-compatible", "--json", "-q", f"output_dir={out}", *TINY])
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout)


def test_train_compatible_outputs_and_json(trained):
    out, doc = trained
    for name in ("model.pt", "old_model.pt", "metrics.json", "config.yaml", "flips.png", "flips.json",
                 "predictions.npz", "old_predictions.npz"):
        assert (out / name).is_file(), name
    m = doc["metrics"]
    assert m["method"] == "bct+fd" and m["n"] == 150
    for k in ("er_old", "er_new", "nfr", "pfr"):
        lo, hi = m["ci95"][k]
        assert 0.0 <= lo <= m[k] <= hi <= 1.0
    flips = json.loads((out / "flips.json").read_text())["flips"]
    assert sum(f["flip"] == "negative" for f in flips) == m["negative_flips"]
    assert m["negative_flips"] == round(m["nfr"] * m["n"])
    assert set(m["retrieval"]) == {"old_old", "old_new", "new_old", "new_new"}
    assert m["retrieval"]["new_old"] is not None  # learned projection 64 -> 32 makes the spaces comparable
    assert m["bct_criterion"]["applicable"] is True and isinstance(m["bct_criterion"]["pass"], bool)
    ck = torch.load(out / "model.pt", weights_only=True)
    assert ck["arch"] == "mlp" and "projection" in ck


def test_compare_models_prediction_files_match_training_metrics(trained, runner, tmp_path):
    out, doc = trained
    res = runner.invoke(app, ["compare-models", str(out / "old_predictions.npz"), str(out / "predictions.npz"),
                              "--json", "-q", f"output_dir={tmp_path / 'cmp'}", "bootstrap.n=200"])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    for k in ("er_old", "er_new", "nfr", "pfr"):
        assert m[k] == pytest.approx(doc["metrics"][k])


def test_compare_models_checkpoints_gives_retrieval(trained, runner, tmp_path):
    out, _ = trained
    res = runner.invoke(app, ["compare-models", str(out / "old_model.pt"), str(out / "model.pt"), "--json", "-q",
                              f"output_dir={tmp_path / 'cmp'}", "data=compat_digits", "data.max_train=300",
                              "data.max_test=150", "bootstrap.n=100"])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["n"] == 150 and m["retrieval"]["new_old"] is not None


def test_max_nfr_gate_exit_code(runner, tmp_path):
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    np.savez(tmp_path / "old.npz", predictions=np.array([0, 0, 0, 1, 1, 1, 0, 0, 2, 1]), labels=y)
    np.savez(tmp_path / "new.npz", predictions=np.array([0, 0, 1, 1, 1, 0, 1, 1, 2, 2]), labels=y)
    args = ["compare-models", str(tmp_path / "old.npz"), str(tmp_path / "new.npz"), "-q", "bootstrap.n=50"]
    bad = runner.invoke(app, [*args, "--max-nfr", "0.1", f"output_dir={tmp_path / 'a'}"])
    assert bad.exit_code == 3
    assert "NFR 0.2000 exceeds --max-nfr 0.1" in bad.stderr
    ok = runner.invoke(app, [*args, "--max-nfr", "0.25", f"output_dir={tmp_path / 'b'}", "--json"])
    assert ok.exit_code == 0
    doc = json.loads(ok.stdout)
    assert doc["metrics"]["gate"] == {"max_nfr": 0.25, "pass": True}
    assert doc["metrics"]["nfr"] == pytest.approx(0.2)


def _one_error_line(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (res.exit_code, res.stderr)
    return lines[0]


def test_compare_models_checkpoints_without_data_is_refused(trained, runner, tmp_path):
    """No silent fall-back to the digits preset: checkpoints need data= to say which test split."""
    out, _ = trained
    res = runner.invoke(app, ["compare-models", str(out / "old_model.pt"), str(out / "model.pt"), "-q",
                              f"output_dir={tmp_path / 'cmp'}"])
    msg = _one_error_line(res)
    assert "is a checkpoint" in msg and "pass data=<preset>" in msg
    assert not (tmp_path / "cmp").exists()
    keys_only = runner.invoke(app, ["compare-models", str(out / "old_model.pt"), str(out / "model.pt"), "-q",
                                    "data.max_test=150", f"output_dir={tmp_path / 'cmp'}"])
    assert "data.max_test: compare-models has no default data" in _one_error_line(keys_only)


def test_compare_models_prediction_files_without_labels_need_labels_or_data(runner, tmp_path):
    np.save(tmp_path / "a.npy", np.array([0, 1, 2, 1]))
    np.save(tmp_path / "b.npy", np.array([0, 1, 1, 1]))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 2]))
    args = ["compare-models", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-q", "bootstrap.n=20"]
    msg = _one_error_line(runner.invoke(app, [*args, f"output_dir={tmp_path / 'x'}"]))
    assert "hold no labels" in msg and "labels=FILE or data=<preset>" in msg
    ok = runner.invoke(app, [*args, f"labels={tmp_path / 'y.npy'}", f"output_dir={tmp_path / 'y'}", "--json"])
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["metrics"]["nfr"] == pytest.approx(0.25)


@pytest.mark.parametrize("value, hint", [("1", "use 0.01 for 1%"), ("5", "use 0.05 for 5%"),
                                         ("-0.01", "e.g. 0.01 for 1%"), ("150", "e.g. 0.01 for 1%")])
def test_max_nfr_must_be_a_fraction(runner, tmp_path, value, hint):
    y = np.array([0, 1, 2, 0])
    np.savez(tmp_path / "p.npz", predictions=y, labels=y)
    out = tmp_path / "o"
    res = runner.invoke(app, ["compare-models", str(tmp_path / "p.npz"), str(tmp_path / "p.npz"), "-q",
                              f"--max-nfr={value}", f"output_dir={out}"])
    msg = _one_error_line(res)
    assert "--max-nfr" in msg and "[0, 1)" in msg and hint in msg
    assert not out.exists()
    via_config = runner.invoke(app, ["compare-models", str(tmp_path / "p.npz"), str(tmp_path / "p.npz"), "-q",
                                     f"max_nfr={value}", f"output_dir={out}"])
    assert "max_nfr" in _one_error_line(via_config)


def test_max_nfr_zero_fails_on_any_negative_flip(runner, tmp_path):
    y = np.array([0, 1, 2, 0])
    np.savez(tmp_path / "old.npz", predictions=y, labels=y)
    np.savez(tmp_path / "new.npz", predictions=np.array([0, 1, 2, 1]), labels=y)
    res = runner.invoke(app, ["compare-models", str(tmp_path / "old.npz"), str(tmp_path / "new.npz"), "-q",
                              "--max-nfr", "0", "bootstrap.n=20", f"output_dir={tmp_path / 'o'}"])
    assert res.exit_code == 3, res.stderr


def test_rel_nfr_null_with_reason_when_new_model_is_perfect(runner, tmp_path):
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "old.npz", predictions=np.array([0, 1, 1, 0, 2, 2]), labels=y)
    np.savez(tmp_path / "new.npz", predictions=y, labels=y)
    out = tmp_path / "o"
    res = runner.invoke(app, ["compare-models", str(tmp_path / "old.npz"), str(tmp_path / "new.npz"), "-q",
                              "--json", "bootstrap.n=20", f"output_dir={out}"])
    assert res.exit_code == 0, res.stderr
    m = json.loads((out / "metrics.json").read_text())
    m = m.get("metrics", m)
    assert m["er_new"] == 0.0 and m["rel_nfr"] is None
    assert "ER_new = 0" in m["rel_nfr_reason"]
    assert json.loads(res.stdout)["metrics"]["rel_nfr_reason"] == m["rel_nfr_reason"]


def test_augmentation_runs_the_old_model_online(runner, tmp_path):
    """shift_pixels > 0 with FD: old logits come from the old model on the shifted batches."""
    res = runner.invoke(app, ["train-compatible", "--json", "-q", "method=fd-kl", "train.shift_pixels=1",
                              f"output_dir={tmp_path / 'o'}", *TINY])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["old_logits"].startswith("online")
    assert 0.0 < m["old_correct_train_fraction_augmented"] <= 1.0
    # the old MLP is 32-d, the new one 64-d and fd-kl learns no projection: criterion not applicable
    assert m["retrieval"]["new_old"] is None
    assert m["bct_criterion"]["applicable"] is False and m["bct_criterion"]["pass"] is None
    plain = runner.invoke(app, ["train-compatible", "--json", "-q", "method=fd-kl", f"output_dir={tmp_path / 'p'}",
                                *TINY])
    assert json.loads(plain.stdout)["metrics"]["old_logits"] == "cached"


def test_precomputed_old_outputs_and_features(runner, tmp_path):
    """Feature files + precomputed old logits/embeddings: the old model never runs here."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 6)) * 3
    ytr, yte = np.repeat(np.arange(3), 40), np.repeat(np.arange(3), 20)
    xtr = centers[ytr] + rng.normal(size=(120, 6))
    xte = centers[yte] + rng.normal(size=(60, 6))
    for name, arr in {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte, "etr": xtr[:, :4], "ete": xte[:, :4]}.items():
        np.save(tmp_path / f"{name}.npy", arr)
    np.savetxt(tmp_path / "xtr.csv", xtr, delimiter=",")
    res = runner.invoke(app, [
        "train-compatible", "--json", "-q", "data=features", f"data.train_features={tmp_path / 'xtr.csv'}",
        f"data.train_labels={tmp_path / 'ytr.npy'}", f"data.test_features={tmp_path / 'xte.npy'}",
        f"data.test_labels={tmp_path / 'yte.npy'}", f"old.train_embeddings={tmp_path / 'etr.npy'}",
        f"old.test_embeddings={tmp_path / 'ete.npy'}", "method=bct+fd", "train.epochs=3", "bootstrap.n=50",
        f"output_dir={tmp_path / 'out'}"])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["old_source"] == "precomputed files" and m["n"] == 60
    assert m["er_old"] < 0.2  # the class-mean head on separable features


def test_new_classes_get_synthesized_rows(runner, tmp_path):
    res = runner.invoke(app, ["train-compatible", "--json", "-q", "method=bct", "old.classes=[0,1,2,3,4]",
                              f"output_dir={tmp_path / 'o'}", *TINY])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["new_classes"] == 5
    assert "old_classes" in m and m["old_classes"]["n"] < m["n"]
    assert m["er_old"] > 0.45  # the old model cannot predict classes 5-9


def test_torchscript_old_model_with_label_map(trained, runner, tmp_path):
    """The fixture's old model as TorchScript with permuted head rows, undone by a label map (JSON file).

    The old model has no ``head`` attribute: BCT synthesizes its head from per-class mean old embeddings.
    Old error and old/old retrieval must equal the fixture's (same model, same data).
    """
    from toolkit.compat.checkpoints import load_model

    out, doc = trained
    net, _, _ = load_model(out / "old_model.pt", "old", (1, 8, 8))
    perm = [(r + 1) % 10 for r in range(10)]  # real class r is old-head row (r + 1) % 10
    with torch.no_grad():
        w, b = net.head.weight.clone(), net.head.bias.clone()
        net.head.weight[perm] = w
        net.head.bias[perm] = b
    example = torch.rand(2, 1, 8, 8)
    torch.jit.trace_module(net, {"forward": example, "embed": example}).save(str(tmp_path / "old_ts.pt"))
    (tmp_path / "map.json").write_text(json.dumps({str(r): perm[r] for r in range(10)}))
    res = runner.invoke(app, ["train-compatible", "--json", "-q", f"old.checkpoint={tmp_path / 'old_ts.pt'}",
                              "old.trust_code=true", f"old.label_map={tmp_path / 'map.json'}", f"output_dir={tmp_path / 'o'}", *TINY])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["old_source"] == "checkpoint (torchscript)" and m["new_classes"] == 0
    assert m["er_old"] == pytest.approx(doc["metrics"]["er_old"])
    assert m["retrieval"]["old_old"]["top1"] == pytest.approx(doc["metrics"]["retrieval"]["old_old"]["top1"])


def test_torchscript_without_embed_gives_no_retrieval(trained, runner, tmp_path):
    from toolkit.compat.checkpoints import load_model

    out, doc = trained
    net, _, _ = load_model(out / "old_model.pt", "old", (1, 8, 8))
    torch.jit.trace(net, torch.rand(2, 1, 8, 8)).save(str(tmp_path / "old_ts.pt"))
    base = ["train-compatible", "--json", "-q", f"old.checkpoint={tmp_path / 'old_ts.pt'}",
            "old.trust_code=true", *TINY]
    res = runner.invoke(app, [*base, "method=fd-kl", f"output_dir={tmp_path / 'o'}"])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["er_old"] == pytest.approx(doc["metrics"]["er_old"]) and "retrieval" not in m
    bad = runner.invoke(app, [*base, "method=bct", f"output_dir={tmp_path / 'b'}"])
    assert bad.exit_code == 2 and "BCT needs the old classifier head" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["compat_mnist", "compat_omniglot"])
def test_real_data_presets(runner, tmp_path, preset):
    from tests.conftest import shared_data

    shared_data("mnist" if preset == "compat_mnist" else "omniglot")
    res = runner.invoke(app, ["train-compatible", "--json", "-q", f"data={preset}", "data.max_train=1500",
                              "data.max_test=500", "train.epochs=2", "bootstrap.n=100", "method=fd-kl",
                              f"output_dir={tmp_path / 'o'}"])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["metrics"]
    assert m["n"] == 500 and 0.0 <= m["nfr"] <= m["er_new"]
