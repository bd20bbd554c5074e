"""`toolkit compress` end to end on tiny files, sweeps, --json, and every bad input of the issue."""

from __future__ import annotations

import json

import pytest
import torch

from tests.compress.conftest import fast_overrides
from tests.conftest import bad_input_line
from toolkit.cli import app


def _bad(runner, args, out, needle):
    return bad_input_line(runner.invoke(app, ["compress", *args]), out, needle)


def test_compress_run_json_and_artifacts(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), "compression=0.5", "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    m = doc["metrics"]
    v, d = m["embedding_shape"]
    assert d == 4 and m["rank"] == int(0.5 * v * d / (v + d))
    assert m["svd_finetune"]["embedding_params"] == m["rank"] * (v + d)
    assert m["uncompressed"]["embedding_bytes"] == v * d * 4
    for key in ("svd_no_finetune", "svd_finetune", "svd_before_training", "small_embedding",
                "quantize_fp16", "quantize_int8", "quantize_int4"):
        assert 0.0 <= m[key]["accuracy"] <= 1.0
        assert m[key]["embedding_bytes"] < m["uncompressed"]["embedding_bytes"]
    assert set(m["svd_finetune"]["per_class_f1"]) == {"0", "1"}
    assert m["svd_finetune"]["latency_ms_per_batch"] > 0
    assert 0 < m["data"]["vectors"]["vocab_coverage"] < 1
    for name in ("compressed.pt", "lr_schedule.png", "tradeoff.png", "metrics.json", "config.yaml"):
        assert (out / name).is_file(), name
    ckpt = torch.load(out / "compressed.pt", weights_only=True)
    assert ckpt["rank"] == m["rank"] and ckpt["state_dict"]["embedding.table.weight"].shape == (v, m["rank"])


def test_compress_sweep_makes_one_subfolder_per_value(runner, tiny_text):
    out = tiny_text["dir"] / "sweep"
    args = [*fast_overrides(tiny_text, out), "compression=0.3,0.6", "baselines.from_scratch=false",
            "scheduler=clr", "--json"]
    result = runner.invoke(app, ["compress", *args])
    assert result.exit_code == 0, result.stderr
    runs = json.loads(result.stdout)["metrics"]["runs"]
    assert set(runs) == {"compression_0.3", "compression_0.6"}
    assert runs["compression_0.3"]["rank"] > runs["compression_0.6"]["rank"]
    for sub in runs:
        assert (out / sub / "compressed.pt").is_file() and (out / sub / "metrics.json").is_file()
    assert (out / "tradeoff.png").is_file()


def test_rank_override(runner, tiny_text):
    out = tiny_text["dir"] / "rank"
    result = runner.invoke(app, ["compress", *fast_overrides(tiny_text, out), "rank=2", "baselines.enabled=false",
                                 "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["rank"] == 2


@pytest.mark.parametrize("model", ["lstm", "textcnn"])
def test_other_models_run_end_to_end(runner, tiny_text, model):
    out = tiny_text["dir"] / model
    args = [*fast_overrides(tiny_text, out), f"model={model}", "compression=0.5", "baselines.enabled=false",
            "pretrain.epochs=1", "--json"]
    result = runner.invoke(app, ["compress", *args])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["svd_finetune"]["embedding_params"] == m["rank"] * sum(m["embedding_shape"])
    ckpt = torch.load(out / "compressed.pt", weights_only=True)
    assert ckpt["arch"] == model  # the config name is the architecture name
    assert not any(k.startswith("_") for k in ckpt["model"])  # arguments only, never a class path to import


def test_no_data_says_how_to_point_at_one(runner, tmp_path):
    out = tmp_path / "out"
    line = _bad(runner, [f"output_dir={out}"], out, "data=")
    assert "data=sst2" in line and "data.train" in line


def test_sweep_of_other_keys_is_refused(runner, tmp_path):
    out = tmp_path / "out"
    _bad(runner, ["data=sst2", "seed=1,2", f"output_dir={out}"], out, "compression")


@pytest.mark.parametrize("value", ["1.5", "0", "1", "-0.2"])
def test_compression_outside_open_interval(runner, tiny_text, value):
    out = tiny_text["dir"] / "out"
    _bad(runner, [*fast_overrides(tiny_text, out), f"compression={value}"], out, "compression")


def test_rank_larger_than_min_v_d(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    _bad(runner, [*fast_overrides(tiny_text, out), "rank=5"], out, "rank")


def test_compression_leaving_rank_zero(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    line = _bad(runner, [*fast_overrides(tiny_text, out), "compression=0.95"], out, "leaves rank 0")
    assert line.startswith("error: compression:")


@pytest.mark.parametrize(("args", "needle"), [
    (["optimizer.name=rmsprop"], "optimizer.name: got 'rmsprop'; expected one of adam, sgd"),
    (["scheduler.min_lr=0.1", "scheduler.max_lr=0.01"], "scheduler: calr: need 0 <= min_lr < max_lr"),
    (["scheduler=triangular2", "scheduler.max_lr=-1"], "scheduler"),
    (["baselines.quantize_bits=[8,3]"], "baselines.quantize_bits: got [8, 3]; expected a list of bit widths"),
    (["data.vectors=null", "model.embedding_dim=5"], "4-bit quantization needs an even embedding dimension"),
    (["pretrain.lr=0"], "pretrain.lr: got 0; expected a number > 0"),
])
def test_bad_training_settings_fail_before_training(runner, tiny_text, args, needle):
    # caught up front (exit 2), not minutes into training as a runtime error (exit 1)
    out = tiny_text["dir"] / "out"
    _bad(runner, [*fast_overrides(tiny_text, out), "compression=0.5", *args], out, needle)


def test_empty_dataset(runner, tiny_text):
    tiny_text["train"].write_text("")
    out = tiny_text["dir"] / "out"
    _bad(runner, fast_overrides(tiny_text, out), out, "empty dataset")


def test_line_with_no_label(runner, tiny_text):
    tiny_text["train"].write_text("1 a good film\nan awful film without a label\n")
    out = tiny_text["dir"] / "out"
    line = _bad(runner, fast_overrides(tiny_text, out), out, "line 2")
    assert "train.txt" in line and "no label" in line


def test_test_labels_absent_from_train(runner, tiny_text):
    tiny_text["test"].write_text("0 bad film\n7 what is this\n")
    out = tiny_text["dir"] / "out"
    line = _bad(runner, fast_overrides(tiny_text, out), out, "do not occur in the training split")
    assert "test.txt" in line and "'7'" in line


def test_ragged_embedding_file(runner, tiny_text):
    tiny_text["vectors"].write_text("good 1 2 3 4\nbad 1 2 3\n")
    out = tiny_text["dir"] / "out"
    _bad(runner, fast_overrides(tiny_text, out), out, "ragged row")


def test_embedding_dimension_differs_from_model(runner, tiny_text):
    out = tiny_text["dir"] / "out"
    line = _bad(runner, [*fast_overrides(tiny_text, out), "model.embedding_dim=8"], out, "dimension")
    assert "vec.txt" in line


def test_cfg_composes_each_scheduler(runner):
    for name in ("calr", "clr", "triangular2", "cosine-restarts", "constant"):
        result = runner.invoke(app, ["compress", "--cfg", "data=sst2", f"scheduler={name}"])
        assert result.exit_code == 0 and f"name: {name}" in result.stdout


@pytest.mark.slow
def test_compress_trec_real_data_end_to_end(runner, tmp_path):
    from tests.conftest import shared_data

    shared_data("text", "trec")
    out = tmp_path / "trec"
    result = runner.invoke(app, ["compress", "data=trec", "model=dan", "pretrain.epochs=2", "finetune.epochs=1",
                                 "baselines.from_scratch=false", "compression=0.9", f"output_dir={out}", "--json"])
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["metrics"]
    assert m["data"]["test"] == 500 and m["data"]["classes"] == 6
    assert 0.2 < m["data"]["vectors"]["vocab_coverage"] < 0.3
    assert m["svd_finetune"]["embedding_param_compression"] >= 0.9
    assert m["accuracy_after"] > 0.4
