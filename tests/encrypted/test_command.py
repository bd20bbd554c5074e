"""CLI: dry run, end-to-end roles (all and separate steps), key separation on disk, bad inputs (exit 2)."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.conftest import bad_input_line
from toolkit.cli import app
from toolkit.encrypted.command import resolve_params

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
    return bad_input_line(runner.invoke(app, ["train-encrypted", *args, f"output_dir={out}", *FAST]), out, needle)


def _secret_key_fingerprints(secret_context):
    """Byte strings that identify the owner's secret key: windows of its SEAL serialisation (as stored in
    ``secret_context.zip``) and of its raw polynomial coefficients (uint64, little-endian), so that a copy in
    any form -- SEAL file, TenSEAL context, raw array dump -- would be found."""
    from toolkit.encrypted import he

    with zipfile.ZipFile(secret_context) as zf:
        serialised = zf.read("secret_key")
    step = max(1, len(serialised) // 16)
    prints = [serialised[i:i + 48] for i in range(16, len(serialised) - 48, step)]
    owner = he.load_context(secret_context, "owner")  # keep alive: data() is a view into the key
    pt = owner.secret_key.data()
    n = pt.coeff_count()
    assert n >= 8 * 4
    for start in (0, n // 3, n // 2, n - 8):
        prints.append(np.array([pt[i] for i in range(start, start + 8)], dtype="<u8").tobytes())
    return prints


def _assert_no_secret_key(root, prints):
    """Every file under ``root`` (and every member of every zip there) is free of the secret key."""
    checked = 0
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        blobs = [f.read_bytes()]
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as zf:
                assert not any("secret" in name for name in zf.namelist()), (f, zf.namelist())
                blobs += [zf.read(name) for name in zf.namelist()]
        for blob in blobs:
            for fp in prints:
                assert fp not in blob, f"secret key material found in {f}"
        checked += 1
    return checked


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
                                 *FAST, "plot=true", *_csv_args(_csv(tmp_path / "d.csv"))])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    m = doc["metrics"]
    assert m["refreshes"] == 2 and m["depth_per_iteration"] == 3
    assert m["max_abs_weight_diff"] < 5e-3
    assert abs(m["plaintext_gap_accuracy_points"]) <= 5.0
    for name in ("model.json", "history.json", "plan.json", "training.png", "server/encrypted_weights.zip",
                 "server/train_state.json", "owner/secret_context.zip", "owner/scaling.json"):
        assert (out / name).exists(), name
    # accuracy and AUC of all three models; timings per step and per iteration
    for key in ("encrypted", "plain_poly", "exact_sklearn"):
        assert 0.5 <= m[key]["accuracy"] <= 1.0 and 0.5 <= m[key]["auc"] <= 1.0
    assert {"keygen", "encrypt", "train", "decrypt"} <= set(doc["timings_s"])
    state = json.loads((out / "server" / "train_state.json").read_text())
    assert len(state["seconds"]) == 3 and state["levels"] == [[0, 3], [0, 3], [0, 3]]
    assert state["refresh_iterations"] == [1, 2]
    # the decrypted model carries the feature scaling
    model = json.loads((out / "model.json").read_text())
    assert len(model["weights"]) == 4 and len(model["scaling"]["scale"]) == 3 == len(model["scaling"]["center"])
    # the plan's size estimate is the file's size (within 20%), not the in-memory size
    assert abs(m["plan"]["data_mib"] / m["encrypted_data_mib"] - 1) < 0.2
    assert m["plan"]["data_mib_in_memory"] > 1.5 * m["encrypted_data_mib"]
    # the loss per iteration is in metrics.json
    assert len(m["plan"]["train_loss_curve"]) == 3


def test_plan_warns_when_encrypted_data_exceeds_the_budget(runner, tmp_path):
    out = tmp_path / "plan_budget"
    r = runner.invoke(app, ["train-encrypted", "--plan", f"output_dir={out}", "ckks.max_data_gib=0.0001", *FAST,
                            *_csv_args(_csv(tmp_path / "d.csv"))])
    assert r.exit_code == 0, r.stderr
    assert "above ckks.max_data_gib=0.0001" in r.stderr
    r = runner.invoke(app, ["train-encrypted", "--plan", f"output_dir={out}_2", *FAST,
                            *_csv_args(_csv(tmp_path / "d.csv"))])
    assert r.exit_code == 0 and "max_data_gib" not in r.stderr


def test_all_steps_with_nesterov_momentum_match_plaintext(runner, tmp_path):
    out = tmp_path / "run_momentum"
    args = ["train-encrypted", "--json", f"output_dir={out}", "train.iterations=3", "train.momentum=0.8",
            "train.momentum_schedule=nesterov", *FAST, *_csv_args(_csv(tmp_path / "d.csv"))]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["refreshes"] == 2 and m["depth_per_iteration"] == 3  # momentum adds no depth
    assert m["plan"]["depth_per_iteration"] == 3 and m["plan"]["momentum"] == 0.8
    assert m["max_abs_weight_diff"] < 5e-3  # vs the LightningModule with the same Nesterov update
    job = json.loads((out / "server" / "job.json").read_text())
    assert job["momentum"] == {"mu": 0.8, "schedule": "nesterov"}
    with zipfile.ZipFile(out / "server" / "encrypted_weights.zip") as zf:
        assert sum(n.startswith("ct/v") for n in zf.namelist()) == 4  # v kept encrypted on the server
    assert len(json.loads((out / "owner" / "refresh_log.json").read_text())) == 2
    assert json.loads((out / "model.json").read_text())["momentum"]["mu"] == 0.8


def test_separate_roles_server_sees_only_its_files(runner, tmp_path):
    data = _csv(tmp_path / "d.csv")
    owner_dir, server_dir = tmp_path / "owner_side", tmp_path / "server_side"
    common = [*FAST, *_csv_args(data), "train.iterations=2"]
    for step in ("keygen", "encrypt"):
        r = runner.invoke(app, ["train-encrypted", step, f"output_dir={owner_dir}", *common])  # subcommand form
        assert r.exit_code == 0, r.stderr
    shutil.copytree(owner_dir / "server", server_dir / "server")  # only the server's files travel
    prints = _secret_key_fingerprints(owner_dir / "owner" / "secret_context.zip")
    # the serialisation windows do occur in the owner's file (guards against a vacuous check)
    owner_blob = (owner_dir / "owner" / "secret_context.zip").read_bytes()
    assert sum(fp in owner_blob for fp in prints) >= 14
    for _ in range(2):  # train until the chain is used up, owner refreshes, train again
        r = runner.invoke(app, ["train-encrypted", "train", f"output_dir={server_dir}", *common])
        assert r.exit_code == 0, r.stderr
        shutil.copy(server_dir / "server" / "encrypted_weights.zip", owner_dir / "server" / "encrypted_weights.zip")
        shutil.copy(server_dir / "server" / "train_state.json", owner_dir / "server" / "train_state.json")
        state = json.loads((server_dir / "server" / "train_state.json").read_text())
        if not state["needs_refresh"]:
            break
        r = runner.invoke(app, ["train-encrypted", "step=refresh", f"output_dir={owner_dir}", *common])  # old form
        assert r.exit_code == 0, r.stderr
        shutil.copy(owner_dir / "server" / "encrypted_weights.zip", server_dir / "server" / "encrypted_weights.zip")
    assert state["iteration"] == 2 and not state["needs_refresh"]
    # the secret key never appears in any file the server step read or wrote
    assert _assert_no_secret_key(server_dir, prints) >= 6
    r = runner.invoke(app, ["train-encrypted", "decrypt", "--json", f"output_dir={owner_dir}", *common])
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
    (["train.lr=5000"], "learning"),
    (["train.batch_size=40000", "ckks.max_blocks=1"], "batch_size"),
    (["circuit=fast"], "circuit"),
    (["train.iterations=abc"], "train.iterations: got 'abc'; expected an integer >= 1"),
    (["train.iterations=0"], "train.iterations: got 0; expected an integer >= 1"),
    (["train.lr=-1"], "train.lr: got -1; expected one of auto or a number > 0"),
    (["workers=two"], "workers"),
    (["train.batch_size=0"], "train.batch_size"),
    (["ckks.poly_modulus_degree=8192", "ckks.coeff_mod_bit_sizes=[60,forty,60]"], "ckks"),
    (["train.momentum=1.0"], "train.momentum: got"),
    (["train.momentum=-0.1"], "train.momentum: got"),
    (["train.momentum=1.5"], "train.momentum: got"),
    (["train.momentum=fast"], "train.momentum: got"),
    (["train.momentum=0.5", "train.momentum_schedule=adam"], "train.momentum_schedule"),
])
def test_bad_parameters_refused(runner, tmp_path, args, needle):
    n = 6000 if "train.batch_size=40000" in args else 400
    data = _csv(tmp_path / "d.csv", n=n)
    _bad(runner, tmp_path, [*args, *_csv_args(data)], needle)


def test_csv_without_path_refused(runner, tmp_path):
    _bad(runner, tmp_path, ["data=csv_binary"], "data.path: required")


def test_plan_that_overflows_is_refused():
    from toolkit.encrypted.command import _refuse_bad_plan
    from toolkit.errors import InputError

    report = {"circuit": "low-depth", "fits_chain": True, "depth_per_iteration_nominal": 3, "levels": 3,
              "u_max": 1.0, "sigmoid_range": 16.0, "overflow": ["|value| 600 >= headroom 512 at level 3"]}
    with pytest.raises(InputError, match="overflows CKKS"):
        _refuse_bad_plan(report)
    with pytest.raises(InputError, match="exhausted"):
        _refuse_bad_plan({**report, "fits_chain": False, "overflow": []})
    _refuse_bad_plan({**report, "overflow": []})  # a safe plan passes


def test_labels_other_than_0_1_refused(runner, tmp_path):
    labels = np.array([0, 1, 2] * 30)[:80]
    _bad(runner, tmp_path, _csv_args(_csv(tmp_path / "d.csv", labels=labels)), "labels must be 0 or 1")


def test_nan_features_refused(runner, tmp_path):
    _bad(runner, tmp_path, _csv_args(_csv(tmp_path / "d.csv", nan=True)), "holds 'nan'; expected a finite number")


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


def test_workers_auto_uses_the_available_cores():
    import os

    from omegaconf import OmegaConf

    from toolkit.encrypted.command import server_workers

    cores = len(os.sched_getaffinity(0))
    assert server_workers(OmegaConf.create({"workers": "auto"})) == cores
    assert server_workers(OmegaConf.create({"workers": 3})) == 3


def _credit_like_csv(path, n=3000, d=8, seed=0):
    """Positive, heavy-tailed features and ~10% positives (the shape of a credit-default table), a BOM and a
    quoted label name with spaces: at the old fixed rate 2.0 the simulated loss climbs back from its minimum."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(mean=0.0, sigma=1.0, size=(n, d))
    logit = -2.6 + 0.8 * np.log(x[:, 0]) - 0.5 * np.log(x[:, 1])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    rows = ["\ufeff" + ",".join([f"f{j}" for j in range(d)] + ['"default payment next month"'])]
    rows += [",".join([f"{v:.4f}" for v in x[i]] + [str(y[i])]) for i in range(n)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path, x, y


CREDIT_LABEL = 'data.label_column="default payment next month"'


def test_rising_simulated_loss_refused_before_any_key_is_made(runner, tmp_path):
    path, _, _ = _credit_like_csv(tmp_path / "credit.csv")
    line = _bad(runner, tmp_path, ["data=csv_binary", f"data.path={path}", CREDIT_LABEL,
                                   "train.lr=2.0"], "train.lr: the simulated training loss")
    assert "train.allow_rising_loss=true" in line


def test_auto_learning_rate_converges_and_beats_the_majority_class(runner, tmp_path):
    from toolkit.encrypted.data import Scaling
    from toolkit.encrypted.metrics import evaluate

    path, x, y = _credit_like_csv(tmp_path / "credit.csv")
    plans = {}
    for lr in ("auto", "2.0"):
        out = tmp_path / f"plan_{lr}"
        r = runner.invoke(app, ["train-encrypted", "--plan", "--json", "data=csv_binary", f"data.path={path}",
                                CREDIT_LABEL, f"train.lr={lr}", f"output_dir={out}", *FAST])
        assert r.exit_code == 0, r.stderr
        plans[lr] = (json.loads(r.stdout)["metrics"]["plan"], json.loads((out / "plan.json").read_text()))
    auto, fixed = plans["auto"][0], plans["2.0"][0]
    assert fixed["loss_rises"] and not auto["loss_rises"]
    assert auto["learning_rate"] in [c["learning_rate"] for c in auto["learning_rate_search"]["candidates"]]
    assert auto["train_loss_curve"][-1] < fixed["train_loss_curve"][-1]
    assert len(auto["train_loss_curve"]) == 10
    # the simulated model (== the encrypted one, docs/encrypted.md) ranks as well as exact logistic regression
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    w = np.asarray(plans["auto"][1]["weights"])
    scaled = Scaling.fit(x, "mean").apply(x)
    exact = roc_auc_score(y, LogisticRegression(max_iter=1000).fit(scaled, y).decision_function(scaled))
    assert evaluate(w, scaled, y)["auc"] > exact - 0.02


def test_uncentred_positive_features_rank_worse_than_centred(tmp_path):
    """The measured cause behind `data.scaling: mean` for CSV data: with maxabs scaling of positive, skewed
    columns the 10-iteration simulated model ranks below chance; centred, it matches exact LR."""
    from toolkit.encrypted.data import Scaling, minibatch_indices, signed_features
    from toolkit.encrypted.metrics import evaluate
    from toolkit.encrypted.plan import simulate

    _, x, y = _credit_like_csv(tmp_path / "c.csv")
    params = resolve_params(OmegaConf.create({"poly_modulus_degree": None, "coeff_mod_bit_sizes": None,
                                              "scale_bits": None, "max_poly_modulus_degree": 16384,
                                              "test_only_insecure": False}), "low-depth")
    auc = {}
    for method in ("maxabs", "mean", "robust"):
        xs = Scaling.fit(x, method).apply(x)
        rep = simulate(params, "low-depth", signed_features(xs, y), minibatch_indices(len(y), 8192, 0), 10,
                       (0.5, -0.0843, 0.0002), 1.0)
        auc[method] = evaluate(rep["weights"], xs, y)["auc"]
    assert auc["maxabs"] < 0.5 < 0.7 < auc["mean"], auc
    assert auc["robust"] >= auc["mean"] - 0.01, auc  # winsorising does not cost ranking on this table


@pytest.mark.parametrize("curve, rises", [
    ([0.6, 0.5, 0.45, 0.44], False),          # converging
    ([0.45, 0.33, 0.36, 0.43], True),         # climbs back 30% from its minimum
    ([0.52, 0.6, 0.7, 0.75], True),           # ends above the all-zero model's log 2
    ([0.5, 0.45, 0.46], False),               # minibatch noise within 5%
    ([0.5, float("nan")], True),
    ([], False),
])
def test_loss_rises(curve, rises):
    from toolkit.encrypted.command import loss_rises

    assert loss_rises(curve) is rises


@pytest.mark.parametrize("args, needle", [
    (["train.allow_rising_loss=maybe"], "train.allow_rising_loss: got 'maybe'; expected true or false"),
    (["train.lr_grid=[]"], "train.lr_grid: got []; expected a non-empty list"),
    (["train.lr_grid=[1,-2]"], "train.lr_grid: got [1, -2]; expected a non-empty list of numbers > 0"),
])
def test_bad_learning_rate_search_keys(runner, tmp_path, args, needle):
    _bad(runner, tmp_path, args, needle)


@pytest.mark.parametrize(("args", "needle"), [
    (["predict"], "unknown step 'predict'"),
    (["train", "step=keygen"], "step given twice"),
])
def test_step_subcommand_errors(runner, tmp_path, args, needle):
    _bad(runner, tmp_path, args, needle)


def test_step_subcommand_is_the_step_key(runner):
    result = runner.invoke(app, ["train-encrypted", "keygen", "--cfg"])
    assert result.exit_code == 0 and "step: keygen" in result.stdout


def test_plan_refuses_a_run_larger_than_free_memory(runner, tmp_path, monkeypatch):
    monkeypatch.setattr("toolkit.resources.available_bytes", lambda: 1024)
    out = tmp_path / "plan_mem"
    r = runner.invoke(app, ["train-encrypted", "--plan", f"output_dir={out}", *FAST,
                            *_csv_args(_csv(tmp_path / "d.csv"))])
    assert r.exit_code == 2 and "GiB of memory, more than the" in r.stderr and not out.exists(), r.stderr
    monkeypatch.undo()
    r = runner.invoke(app, ["train-encrypted", "--json", "--plan", f"output_dir={out}", *FAST,
                            *_csv_args(_csv(tmp_path / "d.csv"))])
    plan = json.loads(r.stdout)["metrics"]["plan"]
    assert plan["estimated_peak_memory_mib"] > plan["data_mib"] > 0


def test_momentum_auto_chooses_the_lowest_simulated_loss(runner, tmp_path):
    out = tmp_path / "plan_mu"
    r = runner.invoke(app, ["train-encrypted", "--json", "--plan", f"output_dir={out}", "train.momentum=auto",
                            "train.momentum_grid=[0.0,0.9]", *FAST, *_csv_args(_csv(tmp_path / "d.csv"))])
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)["metrics"]["plan"]
    search = plan["momentum_search"]
    assert [c["momentum"] for c in search["candidates"]] == [0.0, 0.9]
    ok = [c for c in search["candidates"] if c["ok"]]
    best = min(ok, key=lambda c: c["final_train_loss"])
    assert (plan.get("momentum") or 0.0) == best["momentum"]
    assert plan["learning_rate"] == best["learning_rate"]
    bad = runner.invoke(app, ["train-encrypted", "--plan", f"output_dir={out}_2", "train.momentum=auto",
                              "train.momentum_grid=[1.5]", *FAST, *_csv_args(_csv(tmp_path / "d.csv"))])
    assert bad.exit_code == 2 and "train.momentum_grid" in bad.stderr


def test_unit_variance_scaling_trains_the_slopes_not_only_the_bias(tmp_path):
    """The measured cause behind `data.scaling: standard` for CSV data: after robust scaling (columns in
    [-1, 1], standard deviations well below 1) ten iterations move the bias to the class prior while the
    slopes reach a few percent of exact LR's, so every point falls on the majority side; with unit variance
    the slopes reach most of exact LR's and the training loss is lower (docs/encrypted.md)."""
    from toolkit.encrypted.data import Scaling, minibatch_indices, signed_features
    from toolkit.encrypted.metrics import evaluate
    from toolkit.encrypted.plan import simulate
    from toolkit.encrypted.reference import exact_logistic_regression

    _, x, y = _credit_like_csv(tmp_path / "c.csv")
    params = resolve_params(OmegaConf.create({"poly_modulus_degree": None, "coeff_mod_bit_sizes": None,
                                              "scale_bits": None, "max_poly_modulus_degree": 16384,
                                              "test_only_insecure": False}), "low-depth")
    out = {}
    for method in ("robust", "standard"):
        xs = Scaling.fit(x, method).apply(x)
        exact_slopes = np.linalg.norm(exact_logistic_regression(xs, y, 0)[1:])
        best = None
        for lr in (0.125, 0.25, 0.5, 1.0, 2.0):  # the best rate of each scaling by training log loss
            rep = simulate(params, "low-depth", signed_features(xs, y), minibatch_indices(len(y), 8192, 0), 10,
                           (0.5, -0.0843, 0.0002), lr)
            loss = evaluate(rep["weights"], xs, y)["log_loss"]
            if rep["fits_chain"] and not rep["overflow"] and (best is None or loss < best[0]):
                best = (loss, np.linalg.norm(np.asarray(rep["weights"])[1:]) / exact_slopes)
        out[method] = best
    assert out["robust"][1] < 0.1 < 0.5 < out["standard"][1], out  # share of exact LR's slope norm reached
    assert out["standard"][0] < out["robust"][0] - 0.02, out
    xs = Scaling.fit(x, "standard").apply(x)
    np.testing.assert_allclose(xs.std(0), 1.0, atol=1e-9)  # unit variance of the clipped training columns
