"""CLI: dry run, end-to-end roles (all and separate steps), key separation on disk, bad inputs (exit 2)."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from toolkit.cli import app

FAST = ["estimate_time=false", "plot=false", "trainer.progress=false"]


def _csv(path, n=80, d=3, seed=0, labels=None, nan=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) if labels is None else labels
    if nan:
        x[3, 1] = np.nan
    rows = [",".join([f"f{j}" for j in range(d)] + ["label"])]
    rows += [",".join([f"{v:.5f}" for v in x[i]] + [str(y[i])]) for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _csv_args(path):
    return ["data=csv_binary", f"data.path={path}"]


def _bad(runner, tmp_path, args, needle):
    out = tmp_path / "out_bad"
    result = runner.invoke(app, ["train-encrypted", *args, f"output_dir={out}", *FAST])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert needle in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


def test_plan_prints_one_json_document(runner, tmp_path):
    out = tmp_path / "plan"
    result = runner.invoke(app, ["train-encrypted", "--plan", "--json", "circuit=low-depth", f"output_dir={out}",
                                 "train.iterations=3", *_csv_args(_csv(tmp_path / "d.csv"))])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    plan = doc["metrics"]["plan"]
    assert plan["depth_per_iteration"] == 3 and plan["refreshes"] == 2 and plan["estimated_seconds"] > 0
    report = json.loads((out / "plan.json").read_text())
    assert report["ranges"] and not report["overflow"]
    assert not (out / "server").exists()  # nothing encrypted


def test_all_steps_locally_match_plaintext(runner, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train-encrypted", "--json", f"output_dir={out}", "train.iterations=3",
                                 *FAST, *_csv_args(_csv(tmp_path / "d.csv"))])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["refreshes"] == 2 and m["depth_per_iteration"] == 3
    assert m["max_abs_weight_diff"] < 5e-3
    assert abs(m["plaintext_gap_accuracy_points"]) <= 5.0
    for name in ("model.json", "history.json", "server/encrypted_weights.zip", "owner/secret_context.zip"):
        assert (out / name).exists()


def test_separate_roles_server_sees_only_its_files(runner, tmp_path):
    data = _csv(tmp_path / "d.csv")
    owner_dir, server_dir = tmp_path / "owner_side", tmp_path / "server_side"
    common = [*FAST, *_csv_args(data), "train.iterations=2"]
    for step in ("keygen", "encrypt"):
        r = runner.invoke(app, ["train-encrypted", f"step={step}", f"output_dir={owner_dir}", *common])
        assert r.exit_code == 0, r.stderr
    shutil.copytree(owner_dir / "server", server_dir / "server")  # only the server's files travel
    with zipfile.ZipFile(owner_dir / "owner" / "secret_context.zip") as zf:
        sk = zf.read("secret_key")
    for _ in range(2):  # train until the chain is used up, owner refreshes, train again
        r = runner.invoke(app, ["train-encrypted", "step=train", f"output_dir={server_dir}", *common])
        assert r.exit_code == 0, r.stderr
        shutil.copy(server_dir / "server" / "encrypted_weights.zip", owner_dir / "server" / "encrypted_weights.zip")
        shutil.copy(server_dir / "server" / "train_state.json", owner_dir / "server" / "train_state.json")
        state = json.loads((server_dir / "server" / "train_state.json").read_text())
        if not state["needs_refresh"]:
            break
        r = runner.invoke(app, ["train-encrypted", "step=refresh", f"output_dir={owner_dir}", *common])
        assert r.exit_code == 0, r.stderr
        shutil.copy(owner_dir / "server" / "encrypted_weights.zip", server_dir / "server" / "encrypted_weights.zip")
    assert state["iteration"] == 2 and not state["needs_refresh"]
    # the secret key never appears in any file the server step read or wrote
    for f in (server_dir).rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert b"secret_key" not in blob or f.suffix == ".yaml"
            assert sk[100:164] not in blob and sk[-64:] not in blob
    r = runner.invoke(app, ["train-encrypted", "step=decrypt", "--json", f"output_dir={owner_dir}", *common])
    assert r.exit_code == 0, r.stderr
    m = json.loads(r.stdout)["metrics"]
    assert m["max_abs_weight_diff"] < 5e-3


def test_ciphertext_file_from_another_context_refused(runner, tmp_path):
    data = _csv(tmp_path / "d.csv")
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        for step in ("keygen", "encrypt"):
            r = runner.invoke(app, ["train-encrypted", f"step={step}", f"output_dir={d}", *FAST, *_csv_args(data)])
            assert r.exit_code == 0, r.stderr
    shutil.copy(b / "server" / "encrypted_data.zip", a / "server" / "encrypted_data.zip")
    before = sorted(p.name for p in a.rglob("*"))
    r = runner.invoke(app, ["train-encrypted", "step=train", f"output_dir={a}", *FAST, *_csv_args(data)])
    assert r.exit_code == 2
    assert "another context" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in a.rglob("*")) == before  # nothing written


def test_train_step_without_earlier_steps(runner, tmp_path):
    _bad(runner, tmp_path, ["step=train"], "not found")


@pytest.mark.parametrize(("args", "needle"), [
    (["ckks.poly_modulus_degree=8192", "ckks.coeff_mod_bit_sizes=[60,40,40,40,60]"], "128-bit security"),
    (["ckks.poly_modulus_degree=8192", "ckks.coeff_mod_bit_sizes=[60,40,40,60]", "ckks.scale_bits=50"],
     "does not match"),
    (["ckks.poly_modulus_degree=8192", "ckks.coeff_mod_bit_sizes=[40,25,25,25,25,40]"], "under 30 bits"),
    (["ckks.poly_modulus_degree=8192", "ckks.coeff_mod_bit_sizes=[60,40,40,60]"], "exhausted"),
    (["train.learning_rate=5000"], "learning"),
    (["train.batch_size=40000", "ckks.max_blocks=1"], "batch_size"),
    (["circuit=fast"], "circuit"),
])
def test_bad_parameters_refused(runner, tmp_path, args, needle):
    n = 6000 if "train.batch_size=40000" in args else 400
    data = _csv(tmp_path / "d.csv", n=n)
    _bad(runner, tmp_path, [*args, *_csv_args(data)], needle)


def test_labels_other_than_0_1_refused(runner, tmp_path):
    labels = np.array([0, 1, 2] * 30)[:80]
    _bad(runner, tmp_path, _csv_args(_csv(tmp_path / "d.csv", labels=labels)), "labels must be 0 or 1")


def test_nan_features_refused(runner, tmp_path):
    _bad(runner, tmp_path, _csv_args(_csv(tmp_path / "d.csv", nan=True)), "NaN")


def test_mnist38_plan_on_real_data(runner, tmp_path):
    from tests.conftest import shared_data

    shared_data("mnist", "train-images-idx3-ubyte.gz")
    out = tmp_path / "mnist_plan"
    r = runner.invoke(app, ["train-encrypted", "--plan", "--json", "data=mnist38", "data.root=../shared/data/mnist",
                            "train.iterations=4", "estimate_time=false", f"output_dir={out}"])
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)["metrics"]["plan"]
    assert plan["depth_per_iteration"] == 3 and plan["data_ciphertexts"] == 197 * 2 * 3  # 2 batches x (2 blocks + sum)
    assert not plan["overflow"] and plan["u_max"] < plan["sigmoid_range"]


@pytest.mark.slow
def test_mnist38_encrypted_training_end_to_end(runner, tmp_path):
    from tests.conftest import shared_data

    shared_data("mnist", "train-images-idx3-ubyte.gz")
    out = tmp_path / "mnist_run"
    r = runner.invoke(app, ["train-encrypted", "--json", "data=mnist38", "data.root=../shared/data/mnist",
                            "data.max_train=1500", "train.iterations=2", *FAST, f"output_dir={out}"])
    assert r.exit_code == 0, r.stderr
    m = json.loads(r.stdout)["metrics"]
    assert m["features"] == 196 and m["refreshes"] == 1
    assert abs(m["plaintext_gap_accuracy_points"]) <= 0.5
    assert m["encrypted"]["accuracy"] > 0.8
