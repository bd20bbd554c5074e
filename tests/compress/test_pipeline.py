"""Pipeline pieces: data loading, rank resolution, equal-size baselines, batching, and the lr actually used."""

from __future__ import annotations

import pytest
import torch

from toolkit.compress import metrics as M
from toolkit.compress.models import model_config
from toolkit.compress.pipeline import (
    BucketBatchSampler,
    build_net,
    choose_split,
    equal_params_dim,
    factorized_copy,
    load_text_data,
    resolve_rank,
    small_table,
    split_candidates,
    train_classifier,
    validation_accuracy,
)
from toolkit.compress.schedulers import schedule_values
from toolkit.errors import InputError


def _data(paths, **extra):
    return load_text_data({"train": str(paths["train"]), "test": str(paths["test"]), "int_labels": True,
                           "vectors": str(paths["vectors"]), **extra}, None, 0)


def test_load_text_data_holds_out_validation_and_reports_coverage(tiny_text):
    data = _data(tiny_text)
    assert data.info["train"] + data.info["valid"] == 120 and data.info["valid"] == 12
    assert data.x_train.dtype == torch.long and data.x_train.shape[1] == 40
    assert data.classes == ["0", "1"] and data.vectors.shape == (len(data.vocab), 4)
    assert 0 < data.info["vectors"]["vocab_coverage"] < 1
    assert torch.all(torch.from_numpy(data.vectors[0]) == 0)  # padding row


def test_load_text_data_without_data_or_test(tiny_text):
    with pytest.raises(InputError, match="data=sst2"):
        load_text_data(None)
    with pytest.raises(InputError, match="data.test"):
        load_text_data({"train": str(tiny_text["train"])})


def test_validation_labels_absent_from_train(tiny_text):
    valid = tiny_text["dir"] / "valid.txt"
    valid.write_text("1 good film\n5 unknown class\n")
    with pytest.raises(InputError, match="valid.txt: labels: labels \\['5'\\]"):
        _data(tiny_text, valid=str(valid))


def test_resolve_rank():
    assert resolve_rank(10000, 300, 0.9, None) == 29
    assert resolve_rank(10000, 300, 0.9, 7) == 7  # rank overrides compression
    with pytest.raises(InputError, match="leaves rank 0"):
        resolve_rank(100, 4, 0.95, None)  # 0.05 * 400 / 104 = 0.19
    for bad in (0, 5, True, 2.5):
        with pytest.raises(InputError, match="rank"):
            resolve_rank(100, 4, None, bad)
    for bad in (0, 1, 1.5, "x", None):
        with pytest.raises(InputError, match="compression"):
            resolve_rank(100, 4, bad, None)


def test_equal_params_dim():
    assert equal_params_dim(1000, 50, 5) == 5  # 5 * 1050 // 1000
    assert equal_params_dim(100, 100, 5) == 10
    # an explicit rank near d on a small vocabulary: k (V + d) / V = 52.5 > d, capped at d
    assert equal_params_dim(1000, 50, 50) == 50


def test_small_table_is_the_leading_svd_coordinates(tiny_text):
    data = _data(tiny_text)
    table = small_table(data, 4, 2, from_svd=True, seed=0)
    e = torch.from_numpy(data.vectors).double()
    u, s, vh = torch.linalg.svd(e, full_matrices=False)
    assert table.shape == (len(data.vocab), 2)
    assert torch.allclose(table.double() @ vh[:2], u[:, :2] * s[:2] @ vh[:2], atol=1e-5)
    assert torch.allclose(table.double().T @ table.double(), torch.diag(s[:2] ** 2), atol=1e-4)
    assert small_table(data, 4, 2, from_svd=False, seed=0) is None


def test_bucket_batch_sampler_covers_every_example_once():
    lengths = torch.tensor([5, 1, 3, 3, 2, 8, 1, 4, 6, 2, 7])
    sampler = BucketBatchSampler(lengths, batch_size=3, seed=0, pool=2)
    for _ in range(2):
        batches = list(sampler)
        assert len(batches) == len(sampler) == 4
        assert sorted(i for b in batches for i in b) == list(range(11))


@pytest.mark.parametrize("name", ["calr", "triangular2"])
def test_lr_trace_is_the_schedule_actually_used(tiny_text, name):
    # what lr_schedule.png plots (the lr of every fine-tuning update) equals the scheduler's values
    data = _data(tiny_text)
    net = build_net(model_config("dan"), data, 4, data.vectors, seed=0)
    cfg = {"max_lr": 0.01, "min_lr": 1e-4, "cycle_epochs": 0.5, "decay": 0.1, "anneal_cycles": 1}
    fnet = factorized_copy(net, 2)
    lrs = train_classifier(fnet, data, 2, name, cfg, trainer_cfg={"progress": "false"}, batch_size=16,
                           validate=False)
    spe = -(-data.info["train"] // 16)
    assert len(lrs) == 2 * spe
    assert lrs == pytest.approx(schedule_values(name, cfg, spe, 2 * spe))
    assert max(lrs) <= 0.01 + 1e-12 and min(lrs) >= 1e-4 - 1e-12


def test_split_candidates_share_the_rank_budget():
    assert split_candidates(7932, 50, 4) == [(4, 0), (3, 169), (2, 332), (1, 488), (0, 638)]
    assert split_candidates(7932, 50, 1) == [(1, 0), (0, 159)]  # round(0.75) = 1, round(0.5) = round(0.25) = 0
    cands = split_candidates(10000, 300, 29)
    assert [r for r, _ in cands] == [29, 22, 14, 7, 0] and cands[0] == (29, 0)
    from toolkit.compress.factorize import embedding_footprint

    for r, h in cands:
        assert embedding_footprint(10000, 300, rank=r, head=h)["params"] <= 29 * 10300


def test_choose_split_takes_the_best_validation_accuracy_before_fine_tuning(tiny_text):
    data = _data(tiny_text, valid_fraction=0.3)
    net = build_net(model_config("dan"), data, 4, data.vectors, seed=0)
    train_classifier(net, data, 3, "constant", {"max_lr": 0.05}, batch_size=16)
    r, h, rows = choose_split(net, data, 2)
    assert [(c["tail_rank"], c["head_rows"]) for c in rows] == split_candidates(len(data.vocab), 4, 2)
    for c in rows:  # each score is the candidate model's validation accuracy, recomputed independently
        acc = float((M.predict(factorized_copy(net, c["tail_rank"], head=c["head_rows"]), data.x_valid)
                     == data.y_valid.numpy()).mean())
        assert c["val_acc"] == pytest.approx(acc)
    counts = torch.bincount(data.x_train.reshape(-1), minlength=len(data.vocab)).double()
    counts[0] = 0  # padding is not a word
    for c in rows:  # the head's share of the training tokens, counted here from the encoded split
        assert c["head_token_share"] == pytest.approx(float(counts[: c["head_rows"]].sum() / counts.sum()))
    assert rows[0]["head_token_share"] == 0.0 and all(0 <= c["head_token_share"] <= 1 for c in rows)
    best = max(c["val_acc"] for c in rows)
    first_best = next(c for c in rows if c["val_acc"] == best)  # ties: the larger tail rank (listed first)
    assert (r, h) == (first_best["tail_rank"], first_best["head_rows"])
    assert validation_accuracy(factorized_copy(net, r, head=h), data) == pytest.approx(best)
