"""`toolkit cluster` through the CLI: JSON output, artifacts, checkpoint reuse, baselines, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cluster.test_graph_hierarchy import blobs
from tests.conftest import shared_data
from toolkit.cli import app

FAST = ["model.hidden=16", "model.train.epochs=2", "model.train.min_steps=0", "model.train.knn_k=[5]", "model.train.levels=[2]", "plot=false"]


@pytest.fixture
def feature_files(tmp_path):
    x, y = blobs(15, 8, 8, spread=0.2, seed=0)
    train = y < 5
    np.save(tmp_path / "tr.npy", x[train])
    np.save(tmp_path / "tr_y.npy", y[train])
    np.save(tmp_path / "te.npy", x[~train])
    np.save(tmp_path / "te_y.npy", y[~train])
    return tmp_path


def _fourteen_class_files(d):
    """14 blob classes: 0-9 as meta-training and 10-13 as test, saved as ``_data_args`` files in ``d``;
    returns ``(x, y, train mask)``."""
    x, y = blobs(15, 14, 8, spread=0.2, seed=1)
    train = y < 10
    for name, arr in (("tr", x[train]), ("tr_y", y[train]), ("te", x[~train]), ("te_y", y[~train])):
        np.save(d / f"{name}.npy", arr)
    return x, y, train


def _data_args(d, test_labels=True):
    args = ["data=features", f"data.train_features={d}/tr.npy", f"data.train_labels={d}/tr_y.npy",
            f"data.test_features={d}/te.npy"]
    return args + ([f"data.test_labels={d}/te_y.npy"] if test_labels else [])


def test_hilander_json_artifacts_and_checkpoint_reuse(runner, feature_files):
    out = feature_files / "run"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["metrics"]["method"] == "hilander"
    assert 0.0 <= doc["metrics"]["pairwise_f"] <= 1.0 and "bcubed_f" in doc["metrics"]
    labels = np.load(out / "labels.npy")
    assert labels.shape == (45,)
    assert json.loads((out / "metrics.json").read_text())["metrics"]["num_points"] == 45
    assert (out / "config.yaml").exists() and (out / "model.ckpt").exists()
    # reuse the checkpoint on unlabelled data: no training, no metrics needing labels
    out2 = feature_files / "run2"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files, test_labels=False), "plot=false",
                                 f"model.checkpoint={out}/model.ckpt", f"output_dir={out2}", "--json"])
    assert result.exit_code == 0, result.stderr
    doc2 = json.loads(result.stdout)
    assert "pairwise_f" not in doc2["metrics"] and doc2["metrics"]["checkpoint"].endswith("model.ckpt")
    assert not (out2 / "model.ckpt").exists()
    np.testing.assert_array_equal(np.load(out2 / "labels.npy"), labels)


def test_tau_upper_auto_is_tuned_stored_and_reused(runner, feature_files):
    out = feature_files / "up"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, "model.infer.tau_upper=auto",
                                 "model.infer.oracle_tau=true", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    # both tuned together on a grid (tune_joint): the chosen pair is the grid's best, and no worse than one threshold
    joint = m["joint_scores"]
    best = max(v for row in joint.values() for v in row.values())
    upper = m["tau"] if m["tau_upper"] is None else m["tau_upper"]
    assert joint[str(m["tau"])][str(upper)] == best
    assert best >= max(m["tau_scores"].values())
    assert all(m["tau_scores"][t] == joint[t][t] for t in joint)
    d = m["diagnostics"]  # the joint grid's best pair on the test labels: a diagnostic beside the choice
    assert 0.0 <= d["oracle_joint_pairwise_f"] <= 1.0
    assert d["oracle_joint_tau_upper"] is None or isinstance(d["oracle_joint_tau_upper"], float)
    # the checkpoint keeps it; a number given with the checkpoint wins over it; same = tau at every level
    ck = f"model.checkpoint={out}/model.ckpt"
    for value, expected in (("auto", m["tau_upper"]), ("0.3", 0.3), ("same", None)):
        result = runner.invoke(app, ["cluster", *_data_args(feature_files), "plot=false", ck,
                                     f"model.infer.tau_upper={value}", f"output_dir={out}_{value}", "--json"])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["metrics"]["tau_upper"] == expected


def test_defaults_tune_tau_upper_and_attach_singletons_and_same_restores_the_reference(runner, feature_files):
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, f"output_dir={feature_files}/d",
                                 "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["singletons"] == "attach" and "joint_scores" in m
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, f"output_dir={feature_files}/r",
                                 "model.infer.tau_upper=same", "model.infer.singletons=keep", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["tau_upper"] is None and m["singletons"] == "keep"
    assert "tau_upper_scores" not in m and "joint_scores" not in m and m["tau_scores"]


def test_singletons_attach_leaves_no_cluster_of_one(runner, feature_files):
    out = feature_files / "attach"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, "model.infer.tau=0.999999",
                                 "model.infer.singletons=attach", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["singletons"] == "attach"
    assert np.bincount(np.load(out / "labels.npy")).min() >= 2


def test_min_cluster_fraction_is_tuned_stored_in_the_checkpoint_and_can_be_fixed(runner, feature_files):
    out = feature_files / "frag"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    scores = m["min_cluster_fraction_scores"]
    assert set(scores) == {"0.0", "0.05", "0.1", "0.15", "0.2"}
    best, se = max(scores.values()), m["min_cluster_fraction_se"]
    assert 0.0 <= se < 1.0
    # the one-standard-error rule: the largest fraction within one bootstrap SE of the best score
    assert m["min_cluster_fraction"] == max(float(f) for f, v in scores.items() if v >= best - se)
    ck = f"model.checkpoint={out / 'model.ckpt'}"
    for value, expected in (("auto", m["min_cluster_fraction"]), ("0", 0.0), ("0.3", 0.3)):
        result = runner.invoke(app, ["cluster", *_data_args(feature_files), "plot=false", ck, "--json",
                                     f"model.infer.min_cluster_fraction={value}", f"output_dir={out}_{value}"])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["metrics"]["min_cluster_fraction"] == expected
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, f"output_dir={out}_fixed", "--json",
                                 "model.infer.min_cluster_fraction=0"])
    m = json.loads(result.stdout)["metrics"]
    assert m["min_cluster_fraction"] == 0.0 and "min_cluster_fraction_scores" not in m


def test_one_standard_error_choice_takes_the_largest_candidate_the_data_cannot_tell_from_the_best():
    from toolkit.cluster.command import one_standard_error_choice

    # faces seed 0's meta-training scores (docs/cluster.md, "Fragments"): argmax 0.05, one SE 0.021 reaches 0.1
    faces = {"0.0": 0.757, "0.05": 0.762, "0.1": 0.748, "0.15": 0.737, "0.2": 0.706}
    assert one_standard_error_choice(faces, 0.021) == 0.1
    assert one_standard_error_choice(faces, 0.0) == 0.05  # no sampling error: the argmax
    assert one_standard_error_choice(faces, 1.0) == 0.2
    assert one_standard_error_choice({"0.0": 0.9, "0.2": 0.9}, 0.0) == 0.2  # ties: the larger
    with pytest.raises(ValueError, match="standard_error"):
        one_standard_error_choice(faces, -0.1)
    with pytest.raises(ValueError, match="no candidates"):
        one_standard_error_choice({}, 0.1)


@pytest.mark.parametrize("method", ["kmeans", "hac", "dbscan", "hdbscan"])
def test_baselines_run_and_beat_chance_on_blobs(runner, feature_files, method):
    out = feature_files / method
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), f"method={method}", "plot=false",
                                 f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["pairwise_f"] > 0.8, m
    if method == "kmeans":
        assert m["k_source"].startswith("oracle K") and m["k"] == 3
    else:
        assert m["param_source"].startswith("tuned on meta-training")


def test_plot_written(runner, feature_files):
    out = feature_files / "plot"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), "method=kmeans", f"output_dir={out}"])
    assert result.exit_code == 0, result.stderr
    assert (out / "clusters.png").stat().st_size > 1000
    assert "pairwise_f" in result.stdout


def _bad(runner, tmp_path, args):
    out = tmp_path / "bad_out"
    result = runner.invoke(app, ["cluster", *args, *FAST, f"output_dir={out}"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    return errors[0]


def test_bad_missing_file(runner, feature_files):
    args = _data_args(feature_files)
    args[1] = f"data.train_features={feature_files}/missing.npy"
    assert "missing.npy" in _bad(runner, feature_files, args)


def test_bad_nan_features(runner, feature_files):
    x = np.load(feature_files / "te.npy")
    x[3, 1] = np.nan
    np.save(feature_files / "te.npy", x)
    assert "NaN" in _bad(runner, feature_files, _data_args(feature_files))


def test_bad_length_mismatch(runner, feature_files):
    np.save(feature_files / "tr_y.npy", np.load(feature_files / "tr_y.npy")[:-1])
    assert "labels but the features have" in _bad(runner, feature_files, _data_args(feature_files))


def test_bad_one_dimensional_features(runner, feature_files):
    np.save(feature_files / "te.npy", np.arange(45.0))
    assert "2-D" in _bad(runner, feature_files, _data_args(feature_files))


def test_bad_dimension_mismatch(runner, feature_files):
    np.save(feature_files / "te.npy", np.zeros((45, 5), np.float32))
    assert "dimension 5" in _bad(runner, feature_files, _data_args(feature_files))


def test_bad_fewer_points_than_k(runner, feature_files):
    np.save(feature_files / "te.npy", np.load(feature_files / "te.npy")[:6])
    np.save(feature_files / "te_y.npy", np.load(feature_files / "te_y.npy")[:6])
    assert "knn_k" in _bad(runner, feature_files, _data_args(feature_files))


def test_bad_single_meta_training_class(runner, feature_files):
    np.save(feature_files / "tr_y.npy", np.zeros(75, np.int64))
    assert "at least 2 classes" in _bad(runner, feature_files, _data_args(feature_files))


def test_bad_unknown_override_key(runner, feature_files):
    assert "nope" in _bad(runner, feature_files, [*_data_args(feature_files), "model.nope=3"])


def test_bad_corrupt_checkpoint(runner, feature_files):
    (feature_files / "bad.ckpt").write_bytes(b"not a checkpoint")
    err = _bad(runner, feature_files, [*_data_args(feature_files), f"model.checkpoint={feature_files}/bad.ckpt"])
    assert "bad.ckpt" in err


def test_bad_checkpoint_for_other_dimension(runner, feature_files):
    import torch

    from toolkit.cluster.command import save_checkpoint
    from toolkit.cluster.model import Lander
    from toolkit.config import compose_config

    cfg = compose_config("cluster", ["model.hidden=16"])
    save_checkpoint(Lander(12, hidden=16, edge_features=("cosine",)), 12, cfg.model, feature_files / "m12.ckpt", 0.5)
    assert torch.load(feature_files / "m12.ckpt", weights_only=True)["hparams"]["feature_dim"] == 12
    err = _bad(runner, feature_files, [*_data_args(feature_files), f"model.checkpoint={feature_files}/m12.ckpt"])
    assert "12-d" in err


@pytest.mark.slow
def test_default_digits_run(runner, tmp_path):
    result = runner.invoke(app, ["cluster", f"output_dir={tmp_path / 'out'}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["num_points"] == 896 and m["num_classes"] == 5
    assert (tmp_path / "out" / "clusters.png").exists()


@pytest.mark.slow
def test_omniglot_end_to_end(runner, tmp_path):
    root = shared_data("omniglot")
    result = runner.invoke(app, ["cluster", "data=omniglot", f"data.root={root}", "encoder.epochs=5",
                                 "plot=false", f"output_dir={tmp_path / 'om'}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["num_classes"] == 106 and m["num_points"] == 2120
    assert m["pairwise_f"] > 0.05
    assert (tmp_path / "om" / "encoder.ckpt").exists()


def test_auto_scores_every_candidate_on_heldout_classes_and_runs_the_best(runner, feature_files):
    out = feature_files / "auto"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, "method=auto", f"output_dir={out}",
                                 "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    held = m["auto_heldout_pairwise_f"]
    assert set(held) == {"hilander", "hac", "dbscan", "hdbscan"}  # k-means needs K: not a candidate
    assert m["chosen_method"] == max(held, key=held.get)
    assert m["auto_heldout_classes"] == 2 and all(0.0 <= v <= 1.0 for v in held.values())
    assert m["auto_protocol"] == "fit-only"  # two held-out classes: no halves
    wins = m["auto_choice_bootstrap_wins"]  # class resamples in which each candidate is best
    assert set(wins) == set(held) and abs(sum(wins.values()) - 1.0) < 1e-9
    # two held-out classes: a warning whatever the bootstrap says (3 distinct class resamples)
    assert "too few to tell the candidates apart" in m["auto_warning"]
    assert "too few to tell the candidates apart" in result.stderr
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    assert saved["chosen_method"] == m["chosen_method"]


def test_auto_without_heldout_classes_exits_2(runner, feature_files):
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, "method=auto",
                                 "model.train.val_fraction=0", f"output_dir={feature_files}/a0"])
    assert result.exit_code == 2
    assert "val_fraction" in result.stderr


def test_hilander_reports_edge_diagnostics_and_oracle_tau(runner, feature_files):
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, "model.infer.oracle_tau=true",
                                 f"output_dir={feature_files}/diag", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    d = m["diagnostics"]
    assert 0.0 <= d["edge_same_class_share"] <= 1.0
    for key in ("edge_auc_gnn", "edge_auc_cosine"):
        assert d[key] is None or 0.0 <= d[key] <= 1.0
    # the oracle searches a superset of the candidates, including the chosen tau: never worse than the run
    assert d["oracle_pairwise_f"] >= m["pairwise_f"] - 1e-9


def test_checkpoint_keeps_the_level_graph_it_was_trained_on(runner, feature_files):
    out, out2 = feature_files / "cl", feature_files / "cl2"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, "model.knn_on=cluster",
                                 "model.train.rotate=true", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["knn_on"] == "cluster"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), "plot=false", "model.knn_on=peak",
                                 f"model.checkpoint={out}/model.ckpt", f"output_dir={out2}", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["knn_on"] == "cluster"
    np.testing.assert_array_equal(np.load(out2 / "labels.npy"), np.load(out / "labels.npy"))


def test_bad_knn_on(runner, feature_files):
    err = _bad(runner, feature_files, [*_data_args(feature_files), "model.knn_on=centroid"])
    assert "model.knn_on" in err and "peak" in err


@pytest.mark.parametrize("tuned", ["model.infer.tau=auto", "model.infer.tau_upper=auto"])
def test_heldout_tuning_without_heldout_classes_exits_2(runner, feature_files, tuned):
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, "method=hilander", tuned,
                                 "model.infer.tau=0.5" if "upper" in tuned else "model.infer.tau_upper=same",
                                 "model.train.val_fraction=0", "model.train.tau_on=heldout",
                                 f"output_dir={feature_files}/h"])
    assert result.exit_code == 2, result.stderr
    assert "model.train.tau_on" in result.stderr and not (feature_files / "h").exists()


def test_heldout_halves_split_classes_in_two_disjoint_halves():
    from toolkit.cluster.command import heldout_halves

    y = np.repeat(np.array([3, 5, 8, 9, 12]), 4)
    a, b = heldout_halves(y, seed=1)
    ca, cb = set(y[a].tolist()), set(y[b].tolist())
    assert not ca & cb and ca | cb == {3, 5, 8, 9, 12}
    assert sorted((len(ca), len(cb))) == [2, 3]  # whole classes, at least two per half
    assert sorted(np.concatenate([a, b]).tolist()) == list(range(len(y)))
    assert heldout_halves(np.repeat(np.arange(3), 5)) is None  # a one-class half cannot score merges


def test_auto_cross_fits_with_four_or_more_heldout_classes(runner, tmp_path):
    x, y, train = _fourteen_class_files(tmp_path)
    result = runner.invoke(app, ["cluster", *_data_args(tmp_path), *FAST, "method=auto",
                                 f"output_dir={tmp_path}/auto", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["auto_protocol"] == "cross-fit" and m["auto_heldout_classes"] == 5
    wins = m["auto_choice_bootstrap_wins"]
    assert (m["auto_warning"] is None) == (wins[m["chosen_method"]] >= 0.9)  # 5 classes: the bootstrap decides
    held = m["auto_heldout_pairwise_f"]
    assert m["chosen_method"] == max(held, key=held.get)
    assert all(0.0 <= v <= 1.0 for v in held.values())


def test_auto_with_select_best_scores_each_fold_with_an_epoch_chosen_without_it(runner, tmp_path):
    x, y, train = _fourteen_class_files(tmp_path)
    out = tmp_path / "auto"
    result = runner.invoke(app, ["cluster", *_data_args(tmp_path), *FAST, "model.train.epochs=4",
                                 "model.train.select_best=true", "method=auto", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["auto_protocol"] == "cross-fit"
    ckpts = {p.name for p in (out / "checkpoints").iterdir()}
    assert {"best.ckpt", "last.ckpt", "best_fold0.ckpt", "best_fold1.ckpt"} <= ckpts
    header = (out / "train" / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/loss", "val/loss_fold0", "val/loss_fold1"} <= set(header)


def test_select_best_validates_on_the_heldout_classes_whole_training_hierarchy(runner, tmp_path):
    """select_on=hierarchy: model selection sees every level training builds for the held-out classes; level0: the
    level-0 graph alone."""
    from omegaconf import OmegaConf

    from toolkit.cluster.baselines import split_classes
    from toolkit.cluster.hierarchy import training_graphs

    x, y, train = _fourteen_class_files(tmp_path)
    out = tmp_path / "sel"
    result = runner.invoke(app, ["cluster", *_data_args(tmp_path), *FAST, "model.train.epochs=3",
                                 "model.train.select_on=hierarchy", "method=hilander", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    cfg = OmegaConf.load(out / "config.yaml")
    _, val_idx = split_classes(y[train], float(cfg.model.train.val_fraction), int(cfg.seed or 0))
    want = training_graphs(x[train][val_idx], y[train][val_idx], list(cfg.model.train.knn_k),
                           list(cfg.model.train.levels), {}, knn_on=str(cfg.model.knn_on),
                           decode_keep=float(cfg.model.train.decode_keep))
    assert m["validation_graphs"] == len(want) > 1
    assert 0 <= m["selected_epoch"] <= 2  # an epoch of this 3-epoch run
    level0 = runner.invoke(app, ["cluster", *_data_args(tmp_path), *FAST, "model.train.epochs=3",
                                 "model.train.select_on=level0", "method=hilander", f"output_dir={tmp_path}/l0",
                                 "--json"])
    assert level0.exit_code == 0, level0.stderr
    assert json.loads(level0.stdout)["metrics"]["validation_graphs"] == 1


def test_fold_model_loads_the_folds_weights_and_leaves_the_model_alone(tmp_path):
    import torch

    from toolkit.cluster.command import fold_model
    from toolkit.cluster.model import Lander

    model = Lander(8, hidden=16).eval()
    assert fold_model(model, "fold0") is model  # no selected checkpoints (select_best off): the model itself
    saved = {}
    for name, shift in (("fold0", 1.0), ("last", 2.0)):
        saved[name] = {f"model.{k}": v + shift for k, v in model.state_dict().items()}
        torch.save({"state_dict": saved[name]}, tmp_path / f"{name}.ckpt")
    model.selected_checkpoints = {"fold0": str(tmp_path / "fold0.ckpt"), "last": str(tmp_path / "last.ckpt")}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.knn_on = "cluster"
    for name, want in (("fold0", "fold0"), ("fold1", "last")):  # fold1 has no selection: the last epoch
        other = fold_model(model, name)
        assert other is not model and other.knn_on == "cluster"
        for k, v in other.state_dict().items():
            torch.testing.assert_close(v, saved[want][f"model.{k}"])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_auto_folds_never_score_a_class_they_tuned_on():
    from toolkit.cluster.command import auto_folds

    y = np.repeat(np.arange(12), 6)
    fit_idx, val_idx = np.flatnonzero(y < 6), np.flatnonzero(y >= 6)
    folds = auto_folds(y, fit_idx, val_idx, seed=0, k=5)
    assert len(folds) == 2
    for tune, score in folds:
        assert not set(y[tune].tolist()) & set(y[score].tolist())
        assert set(y[fit_idx].tolist()) <= set(y[tune].tolist())  # the GNN's classes always tune
    assert sorted(np.concatenate([s for _, s in folds]).tolist()) == val_idx.tolist()
    (tune, score), = auto_folds(y, fit_idx, val_idx, seed=0, k=5, protocol="fit-only")
    assert tune.tolist() == fit_idx.tolist() and score.tolist() == val_idx.tolist()
    assert len(auto_folds(y, fit_idx, val_idx, seed=0, k=20)) == 1  # halves of 18 points: not more than k
    with pytest.raises(ValueError, match="cross-fit"):
        auto_folds(y, fit_idx, val_idx[:12], seed=0, k=5, protocol="cross-fit")


def test_fragment_rule_cohesion_keeps_at_least_the_votes_clusters(runner, feature_files):
    out = feature_files / "rule"
    result = runner.invoke(app, ["cluster", *_data_args(feature_files), *FAST, f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["fragment_rule"] == "vote"
    counts = {}
    for rule in ("vote", "cohesion"):
        args = ["cluster", *_data_args(feature_files), "plot=false", f"model.checkpoint={out / 'model.ckpt'}",
                "model.infer.min_cluster_fraction=0.3", f"model.infer.fragment_rule={rule}",
                f"output_dir={out}_{rule}", "--json"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["metrics"]["fragment_rule"] == rule
        counts[rule] = len(np.unique(np.load(out.parent / f"rule_{rule}" / "labels.npy")))
    assert counts["cohesion"] >= counts["vote"]


def test_bad_fragment_rule(runner, feature_files):
    err = _bad(runner, feature_files, [*_data_args(feature_files), "model.infer.fragment_rule=centroid"])
    assert "model.infer.fragment_rule" in err and "cohesion" in err


def test_refit_trains_again_on_every_meta_training_class_for_the_chosen_epochs(runner, tmp_path):
    """model.train.refit: after select_best, a second run on all meta-training classes (GNN-trained and held-out)
    lasting selected_epoch + 1 epochs; its model is the one stored and used."""
    from omegaconf import OmegaConf

    from toolkit.cluster.hierarchy import training_graphs

    x, y, train = _fourteen_class_files(tmp_path)
    out = tmp_path / "refit"
    result = runner.invoke(app, ["cluster", *_data_args(tmp_path), *FAST, "model.train.epochs=4",
                                 "model.train.refit=true", "method=hilander", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    cfg = OmegaConf.load(out / "config.yaml")
    want = training_graphs(x[train], y[train], list(cfg.model.train.knn_k), list(cfg.model.train.levels), {},
                           knn_on=str(cfg.model.knn_on), decode_keep=float(cfg.model.train.decode_keep))
    assert m["refit_graphs"] == len(want)
    assert m["refit_classes"] == len(np.unique(y[train])) > m["validation_classes"] > 0  # every class
    assert m["refit_epochs"] == m["selected_epoch"] + 1
    assert "refit" in json.loads(result.stdout)["timings_s"]
    # without refit there is no second run
    plain = runner.invoke(app, ["cluster", *_data_args(tmp_path), *FAST, "model.train.epochs=4", "method=hilander",
                                f"output_dir={tmp_path}/plain", "--json"])
    assert plain.exit_code == 0, plain.stderr
    assert "refit_epochs" not in json.loads(plain.stdout)["metrics"]
