"""Fine-tuning schedule at work: validation curve, best-epoch restore, early stopping, real updates per epoch,
the under-training warning, and the whole-model target (``compression_of=model``)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.compress.conftest import fast_overrides
from toolkit.cli import app
from toolkit.compress import metrics as M
from toolkit.compress.command import warn_if_rising
from toolkit.compress.factorize import max_model_compression, ranks_for_model_compression
from toolkit.compress.models import model_config
from toolkit.compress.pipeline import TrainResult, build_net, fit_classifier, load_text_data, still_rising


def _data(paths):
    return load_text_data({"train": str(paths["train"]), "test": str(paths["test"]), "int_labels": True,
                           "vectors": str(paths["vectors"]), "valid_fraction": 0.3}, None, 0)


def _fit(data, epochs, lr, **kw):
    net = build_net(model_config("dan"), data, 4, data.vectors, seed=0)
    res = fit_classifier(net, data, epochs, "constant", {"max_lr": lr}, trainer_cfg={"progress": "false"},
                         batch_size=16, **kw)
    return net, res


def _run_json(runner, args: list[str]) -> dict:
    """``toolkit compress ARGS --json``, which must succeed; its JSON document."""
    result = runner.invoke(app, ["compress", *args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_curve_and_restore_best_epoch(tiny_text):
    data = _data(tiny_text)
    net, res = _fit(data, 3, 0.3, restore_best=True)  # a high lr: the curve is not monotone
    assert [row["epoch"] for row in res.history] == [1, 2, 3]
    for row in res.history:
        assert 0 <= row["val_acc"] <= 1 and row["val_loss"] > 0 and row["train_loss"] > 0
    accs = [row["val_acc"] for row in res.history]
    assert res.best_epoch == accs.index(max(accs)) + 1 == res.restored_epoch
    # the weights at the end are the best epoch's: the valid split scores what that epoch scored
    pred = M.predict(net, data.x_valid)
    assert (pred == data.y_valid.numpy()).mean() == pytest.approx(max(accs))
    assert res.restored_epoch < 3  # ties keep the earliest epoch, so here the weights were loaded back ...
    with torch.no_grad():  # ... and they are that epoch's: its validation loss, not the last epoch's
        loss = float(torch.nn.functional.cross_entropy(net(data.x_valid), data.y_valid))
    assert loss == pytest.approx(res.history[res.best_epoch - 1]["val_loss"], rel=1e-5)
    assert loss != pytest.approx(res.history[-1]["val_loss"], rel=1e-5)
    summary = res.summary()
    assert summary["epochs_run"] == 3 and summary["best_val_acc"] == max(accs) and len(summary["curve"]) == 3


def test_early_stopping_after_patience_epochs_without_gain(tiny_text):
    data = _data(tiny_text)
    _, res = _fit(data, 6, 1e-9, early_stopping_patience=1)  # lr ~ 0: accuracy never improves after epoch 1
    assert len(res.history) == 2 and res.stopped_early and res.best_epoch == 1
    assert len(res.lrs) == 2 * res.updates_per_epoch
    with pytest.raises(ValueError, match="validate"):
        _fit(data, 1, 1e-3, restore_best=True, validate=False)


def test_schedule_uses_the_real_updates_per_epoch(tiny_text):
    # limit_train_batches=2 makes every epoch 2 updates: the schedule's cycle follows, not ceil(N / batch)
    data = _data(tiny_text)
    net = build_net(model_config("dan"), data, 4, data.vectors, seed=0)
    res = fit_classifier(net, data, 2, "clr", {"max_lr": 0.01, "min_lr": 0.0, "cycle_epochs": 1.0},
                         trainer_cfg={"progress": "false", "limit_train_batches": 2}, batch_size=16)
    assert res.updates_per_epoch == 2 and len(res.lrs) == 4
    assert res.lrs == pytest.approx([0.0, 0.01, 0.0, 0.01])


def test_still_rising_and_warning(capsys):
    assert still_rising([0.5, 0.6, 0.7]) and not still_rising([0.5, 0.7, 0.7]) and not still_rising([0.9])
    rows = [{"epoch": i + 1, "train_loss": 1.0, "val_loss": 1.0, "val_acc": a} for i, a in enumerate((0.5, 0.6))]
    warn_if_rising(TrainResult([], rows, 3, best_epoch=2, still_rising=True), "pretraining", "pretrain.epochs")
    err = capsys.readouterr().err
    assert "warning: pretraining: validation accuracy still rising" in err and "raise pretrain.epochs" in err


def test_ranks_for_model_compression_hand_computed():
    # P = 2157 (DAN over 100 x 10, 1157 other parameters): p = 0.5 leaves floor(0.5 * 2157) = 1078, minus
    # the 1157 kept, is negative: unreachable; the largest reachable is 1 - (1157 + 110) / 2157
    assert ranks_for_model_compression(2157, (100, 10), 0.5)[0] < 1
    assert max_model_compression(2157, (100, 10)) == pytest.approx(1 - 1267 / 2157)
    # p = 0.4: floor(0.6 * 2157) = 1294 - 1157 = 137 -> k = floor(137 / 110) = 1
    assert ranks_for_model_compression(2157, (100, 10), 0.4) == (1, None)
    # with the 30 x 10 dense weight factorized too: fixed = 2157 - 1000 - 300 = 857; p = 0.5: budget
    # 1078 - 857 = 221, share 221 / 1300; k_d = floor(221/1300 * 300 / 40) = 1; k = floor((221 - 40) / 110) = 1;
    # the rest 221 - 40 - 110 = 71 raises k_d by floor(71 / 40) = 1
    assert ranks_for_model_compression(2157, (100, 10), 0.5, (30, 10)) == (1, 2)
    # p = 0.3, dense rank fixed at 2: floor(0.7 * 2157) = 1509 - 857 = 652 - 2 * 40 = 572 -> k = 572 // 110 = 5
    assert ranks_for_model_compression(2157, (100, 10), 0.3, (30, 10), dense_rank=2) == (5, 2)
    with pytest.raises(ValueError):
        ranks_for_model_compression(2157, (100, 10), 1.0)


def test_cli_reports_curves_model_sizes_and_training_png(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), "compression=0.5",
                                 "baselines.quantize_bits=[8]", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["compression_of"] == "embedding" and isinstance(m["under_trained"], list)
    assert len(m["pretrain"]["curve"]) == 2 and m["pretrain"]["restored_epoch"] == m["pretrain"]["best_epoch"]
    assert len(m["finetune"]["curve"]) == 1 and m["finetune"]["restored_epoch"] == 1
    assert m["finetune"]["calr_restarts"] == 0
    assert set(m["baseline_training"]) == {"svd_before_training", "small_embedding"}
    for key in ("uncompressed", "svd_finetune", "quantize_int8", "small_embedding"):
        row = m[key]
        assert row["model_params"] == row["params"] and row["model_bytes"] == row["bytes"]
        assert "model_param_compression" in row and "model_byte_compression" in row
    assert m["model_compression"] == m["svd_finetune"]["model_param_compression"] < m["embedding_compression"]
    assert "model params" in result.stderr
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_whole_model_target(runner, tiny_text):
    # a DAN with one hidden layer of 2: its embedding (V x 4) is most of the model, so 30% of it is reachable
    out = tiny_text["dir"] / "model"
    args = [*fast_overrides(tiny_text, out), "compression=0.3", "compression_of=model", "baselines.enabled=false",
            "model.dan_hidden=[2]"]
    m = _run_json(runner, args)["metrics"]
    assert m["compression_of"] == "model" and m["svd_finetune"]["model_param_compression"] >= 0.3
    # one more rank would miss the target: the rank is the largest that reaches it
    v, d = m["embedding_shape"]
    assert m["uncompressed"]["model_params"] - m["svd_finetune"]["model_params"] - (v + d) < 0.3 * m[
        "uncompressed"]["model_params"]
    md = _run_json(runner, [*args, f"output_dir={out}_dense", "dense.factorize=true", "compression=0.4"])["metrics"]
    assert md["svd_finetune"]["model_param_compression"] >= 0.4 and md["dense_rank"] >= 1


def test_cli_unreachable_whole_model_target_exits_2(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), "compression=0.9",
                                 "compression_of=model"])
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: compression: 0.9 of the whole model") and "is reachable" in line
    assert not out.exists()


@pytest.mark.parametrize(("arg", "key"), [("compression_of=layers", "compression_of"),
                                          ("finetune.restore_best=maybe", "finetune.restore_best"),
                                          ("finetune.early_stopping_patience=0", "finetune.early_stopping_patience"),
                                          ("pretrain.early_stopping_patience=-1", "pretrain.early_stopping_patience"),
                                          ("finetune.distill.weight=1.5", "finetune.distill.weight"),
                                          ("finetune.distill.temperature=0", "finetune.distill.temperature"),
                                          ("svd.metric=l2", "svd.metric"),
                                          ("svd.row_weights=tfidf", "svd.row_weights"),
                                          ("svd.tail_rank=-1", "svd.tail_rank"),
                                          ("svd.tail_rank=some", "svd.tail_rank")])
def test_bad_training_keys_exit_2(runner, tiny_text, arg, key):
    out = tiny_text["dir"] / "out"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), arg])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: config: {key}: "), result.stderr
    assert not out.exists()  # nothing half-written


def test_cli_notes_when_calr_never_restarts(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), "compression=0.5",
                                 "baselines.enabled=false", "scheduler.min_lr=1e-6", "scheduler.decay=0.1"])
    assert result.exit_code == 0, result.stderr
    assert "makes no warm restart in finetune.epochs=1" in result.stderr


def test_fine_tuning_with_a_teacher_leaves_it_untouched_and_pulls_toward_it(tiny_text):
    import copy

    from toolkit.compress.pipeline import factorized_copy

    data = _data(tiny_text)
    teacher, _ = _fit(data, 3, 0.05)
    before = copy.deepcopy(teacher.state_dict())
    student = factorized_copy(teacher, 1)
    with torch.no_grad():  # start far from the teacher: the soft term has work to do
        for p in student.parameters():
            p.mul_(0.1)
    plain = copy.deepcopy(student)
    kw = dict(trainer_cfg={"progress": "false"}, batch_size=16)
    fit_classifier(plain, data, 2, "constant", {"max_lr": 0.05}, **kw)
    fit_classifier(student, data, 2, "constant", {"max_lr": 0.05}, teacher=teacher, distill_weight=1.0,
                   temperature=2.0, **kw)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and not teacher.training
    with torch.no_grad():
        target = torch.softmax(teacher(data.x_train), 1)

        def gap(net):
            return float((torch.softmax(net(data.x_train), 1) - target).abs().sum(1).mean())

        assert gap(student) < gap(plain)  # weight 1: trained on the teacher's outputs only
    with pytest.raises(ValueError, match="distill_weight"):
        fit_classifier(student, data, 1, "constant", {"max_lr": 0.05}, teacher=teacher, distill_weight=2.0, **kw)


def test_cli_distillation_runs(runner, tiny_text):
    out = tiny_text["dir"] / "kd"
    args = [*fast_overrides(tiny_text, out), "compression=0.5", "baselines.enabled=false"]
    doc = _run_json(runner, [*args, "finetune.distill.weight=0.5"])
    assert doc["config"]["finetune"]["distill"] == {"weight": 0.5, "temperature": 2.0}


def test_cli_weighted_svd_keys(runner, tiny_text):
    out = tiny_text["dir"] / "w"
    args = [*fast_overrides(tiny_text, out), "rank=1", "baselines.enabled=false", "svd.row_weights=frequency",
            "svd.metric=input_layers"]
    doc = _run_json(runner, args)
    assert doc["config"]["svd"] == {"row_weights": "frequency", "metric": "input_layers", "tail_rank": "auto"}
    assert doc["metrics"]["rank"] == 1 and doc["metrics"]["svd_metric"] == "input_layers"


def test_cli_frequency_split_auto_and_fixed(runner, tiny_text):
    from toolkit.compress.factorize import embedding_footprint, head_rows_for

    out = tiny_text["dir"] / "split"
    args = [*fast_overrides(tiny_text, out), "rank=1", "baselines.enabled=false"]
    m = _run_json(runner, [*args, "svd.tail_rank=validation"])["metrics"]
    v, d = m["embedding_shape"]
    assert [(c["tail_rank"], c["head_rows"]) for c in m["split_candidates"]] == [(1, 0), (0, head_rows_for(v, d, 1, 0))]
    best = max(c["val_acc"] for c in m["split_candidates"])
    chosen = next(c for c in m["split_candidates"] if c["val_acc"] == best)
    assert (m["tail_rank"], m["head_rows"]) == (chosen["tail_rank"], chosen["head_rows"])
    size = embedding_footprint(v, d, rank=m["tail_rank"], head=m["head_rows"])
    assert m["svd_finetune"]["embedding_params"] == size["params"] <= 1 * (v + d)  # the rank-1 budget
    mf = _run_json(runner, [*args, "svd.tail_rank=0", f"output_dir={out}_0"])["metrics"]
    assert (mf["tail_rank"], mf["head_rows"]) == (0, head_rows_for(v, d, 1, 0)) and "split_candidates" not in mf
    ckpt = torch.load(out.parent / "split_0" / "compressed.pt", weights_only=True)  # rebuilds from what it says
    assert (ckpt["tail_rank"], ckpt["head_rows"]) == (0, mf["head_rows"])
    from toolkit.compress.factorize import FactorizedEmbedding
    from toolkit.compress.models import build_classifier

    net = build_classifier({**model_config(ckpt["arch"]), **ckpt["model"]}, v, d, len(ckpt["classes"]))
    net.replace_embedding(FactorizedEmbedding(v, d, ckpt["tail_rank"], ckpt["head_rows"]))
    net.load_state_dict(ckpt["state_dict"])  # strict: every tensor has its place
    mp = _run_json(runner, [*args, "svd.tail_rank=none", f"output_dir={out}_none"])["metrics"]  # the paper's
    assert (mp["tail_rank"], mp["head_rows"]) == (1, 0) and mp["svd_finetune"]["embedding_params"] == v + d


def test_cli_tail_rank_finetuned_keeps_the_start_with_the_better_validation_after_fine_tuning(runner, tiny_text):
    """svd.tail_rank=finetuned (auto for the DAN): the plain factorization and the best split by validation before
    fine-tuning (tail rank < k) are both fine-tuned; the one whose fine-tuning reached the higher validation
    accuracy is the compressed model (the plain one on ties)."""
    out = tiny_text["dir"] / "ft"
    args = [*fast_overrides(tiny_text, out), "rank=2", "baselines.enabled=false", "svd.tail_rank=auto"]
    m = _run_json(runner, args)["metrics"]
    splits = [c for c in m["split_candidates"] if c["tail_rank"] < 2]
    best_split = max(splits, key=lambda c: c["val_acc"])  # the larger tail rank on ties
    tried = m["finetuned_candidates"]
    assert [(t["tail_rank"], t["head_rows"]) for t in tried] == [(2, 0), (best_split["tail_rank"],
                                                                      best_split["head_rows"])]
    best = max(t["best_val_acc"] for t in tried)
    kept = next(t for t in tried if t["best_val_acc"] == best)  # the plain one on ties
    assert (m["tail_rank"], m["head_rows"]) == (kept["tail_rank"], kept["head_rows"])
    assert m["finetune"]["best_val_acc"] == best  # the kept model's own fine-tuning curve is reported


def test_cli_tail_rank_above_the_rank_exits_2_before_training(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), "rank=1", "svd.tail_rank=2"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: svd.tail_rank: must be at most the rank 1"), result.stderr
    assert "training" not in result.stderr and not out.exists()


def test_tail_rank_auto_splits_the_cnn_and_chooses_after_fine_tuning_for_the_others():
    from toolkit.compress.command import tail_rank_setting

    assert tail_rank_setting("auto", "textcnn") == "validation"
    assert tail_rank_setting("auto", "lstm") == tail_rank_setting("auto", "dan") == "finetuned"
    assert tail_rank_setting("finetuned", "textcnn") == "finetuned"
    assert tail_rank_setting(2, "dan") == 2 and tail_rank_setting("validation", "lstm") == "validation"
    with pytest.raises(ValueError, match="svd.tail_rank"):
        tail_rank_setting("some", "dan")


def test_svd_metric_auto_is_output_aware_for_the_cnn_only():
    from toolkit.compress.command import svd_metric

    assert svd_metric("auto", "textcnn") == "input_layers"
    assert svd_metric("auto", "lstm") == svd_metric("auto", "dan") == "none"
    assert svd_metric("none", "textcnn") == "none" and svd_metric("input_layers", "dan") == "input_layers"
    with pytest.raises(ValueError, match="svd.metric"):
        svd_metric("l2", "dan")


def test_start_validation_accuracy_is_recorded_before_training(tiny_text):
    data = _data(tiny_text)
    net = build_net(model_config("dan"), data, 4, data.vectors, seed=0)
    before = float((M.predict(net, data.x_valid) == data.y_valid.numpy()).mean())
    res = fit_classifier(net, data, 1, "constant", {"max_lr": 0.3}, trainer_cfg={"progress": "false"}, batch_size=16)
    assert res.start_val_acc == pytest.approx(before) and res.summary()["start_val_acc"] == res.start_val_acc
    after = fit_classifier(net, data, 1, "constant", {"max_lr": 0.3}, trainer_cfg={"progress": "false"},
                           batch_size=16)
    assert after.start_val_acc == pytest.approx(res.history[-1]["val_acc"])  # where the first run ended
    blind = fit_classifier(net, data, 1, "constant", {"max_lr": 0.3}, trainer_cfg={"progress": "false"},
                           batch_size=16, validate=False)
    assert blind.start_val_acc is None
