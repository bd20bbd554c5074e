"""Rank formula, truncated SVD, factorized embedding at step 0, and size accounting."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.compress.factorize import (
    FactorizedEmbedding,
    compression_of_rank,
    embedding_footprint,
    head_rows_for,
    rank_for_compression,
    retained_energy,
    truncated_svd,
    weighted_truncated_svd,
)


@pytest.mark.parametrize(("v", "d", "p", "k"), [
    (10000, 300, 0.9, 29),   # 0.1 * 3e6 / 10300 = 29.126
    (10000, 300, 0.5, 145),  # 0.5 * 3e6 / 10300 = 145.63
    (5403, 50, 0.5, 24),     # the reference note's GloVe check
    (5403, 50, 0.9, 4),      # 0.1 * 270150 / 5453 = 4.954
    (100, 100, 0.5, 25),     # 0.5 * 1e4 / 200
    (100, 100, 0.9, 5),      # exactly 5.0: floating error must not floor it to 4
])
def test_rank_formula_hand_computed(v, d, p, k):
    assert rank_for_compression(v, d, p) == k
    # the rank never exceeds the parameter budget, and k + 1 would
    assert k * (v + d) <= (1 - p) * v * d + 1e-6
    assert (k + 1) * (v + d) > (1 - p) * v * d


@pytest.mark.parametrize("p", [0.0, 1.0, -0.1, 1.5])
def test_rank_formula_rejects_out_of_range(p):
    with pytest.raises(ValueError):
        rank_for_compression(100, 10, p)


def test_compression_of_rank():
    assert compression_of_rank(100, 100, 25) == pytest.approx(0.5)
    assert compression_of_rank(10000, 300, 29) == pytest.approx(1 - 29 * 10300 / 3e6)


def test_truncated_svd_is_best_rank_k_eckart_young():
    torch.manual_seed(0)
    e = torch.randn(60, 12, dtype=torch.float64)
    s = torch.linalg.svdvals(e)
    for k in (1, 4, 12):
        left, right = truncated_svd(e, k)
        assert left.shape == (60, k) and right.shape == (k, 12)
        assert torch.allclose(left.T @ left, torch.eye(k, dtype=e.dtype), atol=1e-10)
        err = torch.linalg.norm(e - left @ right) ** 2
        assert float(err) == pytest.approx(float((s[k:] ** 2).sum()), abs=1e-9)
    left, right = truncated_svd(e, 12)
    assert torch.allclose(left @ right, e, atol=1e-10)


def test_truncated_svd_hand_example():
    # E = diag(3, 2) padded: the rank-1 truncation keeps only the 3.
    e = torch.tensor([[3.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    left, right = truncated_svd(e, 1)
    assert torch.allclose(left @ right, torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), atol=1e-6)


@pytest.mark.parametrize("k", [0, 7])
def test_truncated_svd_rejects_bad_rank(k):
    with pytest.raises(ValueError):
        truncated_svd(torch.randn(10, 6), k)


def test_factorized_embedding_reproduces_uk_sk_vkt_at_step_0():
    torch.manual_seed(1)
    e = torch.randn(50, 16)
    k = 5
    u, s, vh = torch.linalg.svd(e.double(), full_matrices=False)
    expected = (u[:, :k] @ torch.diag(s[:k]) @ vh[:k]).float()
    module = FactorizedEmbedding.from_weight(e, k)
    assert module.table.weight.shape == (50, k) and module.proj.weight.shape == (16, k)
    tokens = torch.tensor([[0, 3, 49], [7, 7, 1]])
    assert torch.allclose(module(tokens), expected[tokens], atol=1e-5)
    assert torch.allclose(module.weight, expected, atol=1e-5)
    assert all(p.requires_grad for p in module.parameters())
    assert sum(p.numel() for p in module.parameters()) == k * (50 + 16)


def test_footprint_hand_computed():
    assert embedding_footprint(1000, 50) == {"params": 50000, "bytes": 200000}
    assert embedding_footprint(1000, 50, rank=5) == {"params": 5250, "bytes": 21000}
    assert embedding_footprint(1000, 50, bits=16) == {"params": 50000, "bytes": 100000}
    # 8-bit: 50 bytes of codes + 8 bytes of scale/zero point per row
    assert embedding_footprint(1000, 50, bits=8, row_param_bytes=8) == {"params": 50000, "bytes": 58000}
    # 4-bit: ceil(50 * 4 / 8) = 25 bytes per row + 8
    assert embedding_footprint(1000, 50, bits=4, row_param_bytes=8)["bytes"] == 33000
    assert math.isclose(1 - 21000 / 200000, 0.895)


def test_rank_formula_is_exact_near_integers():
    # (1 - 0.900000000001) * 100 * 100 / 200 = 4.99999999995: floor 4 (5 would exceed the budget)
    assert rank_for_compression(100, 100, 0.900000000001) == 4
    # (1 - 0.8) * 1000 * 1000 / 2000 = 100 exactly, although 1 - 0.8 = 0.19999999999999996 in floats
    assert rank_for_compression(1000, 1000, 0.8) == 100


def test_retained_energy_is_one_minus_relative_squared_error_of_the_truncation():
    torch.manual_seed(0)
    e = torch.randn(40, 12)
    ks = [1, 3, 12]
    got = retained_energy(e, ks)
    for k, share in zip(ks, got, strict=True):
        left, right = truncated_svd(e, k)
        rel_err = float(((e - left @ right) ** 2).sum() / (e ** 2).sum())
        assert share == pytest.approx(1.0 - rel_err, abs=1e-5)
    assert got[0] < got[1] < got[2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rank must be in"):
        retained_energy(e, [13])


def _weighted_error(e, approx, r, m):
    diff = (e - approx).double()
    return float((r.double()[:, None] * (diff @ m.double() * diff).sum(1, keepdim=True)).sum())


def test_weighted_svd_without_weights_is_the_plain_svd():
    e = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    a, b = weighted_truncated_svd(e, 3)
    pa, pb = truncated_svd(e, 3)
    assert torch.equal(a, pa) and torch.equal(b, pb)


def test_weighted_svd_is_optimal_in_its_norm():
    g = torch.Generator().manual_seed(1)
    e = torch.randn(30, 5, generator=g, dtype=torch.float64)
    r = torch.rand(30, generator=g, dtype=torch.float64) * 10 + 0.1
    w = torch.randn(7, 5, generator=g, dtype=torch.float64)
    m = w.T @ w  # full rank: the ridge is negligible against it
    a, b = weighted_truncated_svd(e, 2, r, m)
    assert a.shape == (30, 2) and b.shape == (2, 5) and a.dtype == torch.float64
    best = _weighted_error(e, a @ b, r, m)
    pa, pb = truncated_svd(e, 2)
    assert best < _weighted_error(e, pa @ pb, r, m)  # the plain SVD is worse in this norm
    for _ in range(20):  # and no nearby rank-2 product is better (local optimality)
        da = a + 1e-3 * torch.randn(a.shape, generator=g, dtype=torch.float64)
        db = b + 1e-3 * torch.randn(b.shape, generator=g, dtype=torch.float64)
        assert _weighted_error(e, da @ db, r, m) >= best - 1e-9
    full_a, full_b = weighted_truncated_svd(e, 5, r, m)  # full rank reproduces E
    assert torch.allclose(full_a @ full_b, e, atol=1e-9)


def test_weighted_svd_keeps_heavy_rows_and_read_directions():
    g = torch.Generator().manual_seed(2)
    e = torch.randn(50, 8, generator=g)
    r = torch.ones(50)
    r[7] = 1e6  # one very frequent word: rank 1 spends itself on that row
    a, b = weighted_truncated_svd(e, 1, row_weights=r)
    assert torch.allclose((a @ b)[7], e[7], atol=1e-3)
    m = torch.zeros(8, 8)
    m[3, 3] = 1.0  # the next layer reads column 3 only: rank 1 reproduces it
    a, b = weighted_truncated_svd(e, 1, metric=m)
    assert torch.allclose((a @ b)[:, 3], e[:, 3], atol=1e-2)
    pa, pb = truncated_svd(e, 1)
    assert float(((pa @ pb)[:, 3] - e[:, 3]).abs().max()) > 0.1


@pytest.mark.parametrize(("kw", "match"), [({"row_weights": -torch.ones(10)}, "row_weights"),
                                           ({"row_weights": torch.ones(9)}, "row_weights"),
                                           ({"row_weights": torch.zeros(10)}, "row_weights"),
                                           ({"metric": torch.ones(3, 3)}, "metric"),
                                           ({"metric": torch.zeros(4, 4)}, "metric"),
                                           ({"metric": torch.full((4, 4), float("nan"))}, "metric")])
def test_weighted_svd_rejects_bad_weights(kw, match):
    with pytest.raises(ValueError, match=match):
        weighted_truncated_svd(torch.randn(10, 4), 2, **kw)


@pytest.mark.parametrize(("v", "d", "k", "r", "h"), [
    (7932, 50, 4, 4, 0),     # the whole budget at rank 4: no head (the plain factorization)
    (7932, 50, 4, 3, 169),   # (4 - 3) * 7982 // 47 = 169.8
    (7932, 50, 4, 2, 332),   # 2 * 7982 // 48 = 332.6
    (7932, 50, 4, 0, 638),   # 4 * 7982 // 50 = 638.6: vocabulary truncation at equal size
    (3, 4, 2, 0, 3),         # 2 * 7 // 4 = 3: capped at V
])
def test_head_rows_hand_computed_and_within_budget(v, d, k, r, h):
    assert head_rows_for(v, d, k, r) == h
    params = embedding_footprint(v, d, rank=r, head=h)["params"]
    assert params <= k * (v + d)
    if h < v:  # one more head row would break the budget
        assert embedding_footprint(v, d, rank=r, head=h + 1)["params"] > k * (v + d)


@pytest.mark.parametrize(("args", "match"), [((10, 4, 2, 3), "tail rank"), ((10, 4, 4, 4), "tail rank"),
                                             ((10, 4, 5, 1), "rank must be"), ((0, 4, 1, 0), "positive")])
def test_head_rows_rejects_bad_ranks(args, match):
    with pytest.raises(ValueError, match=match):
        head_rows_for(*args)


def test_frequency_split_keeps_head_rows_and_factorizes_the_tail():
    torch.manual_seed(2)
    e = torch.randn(60, 8)
    head, k = 10, 3
    module = FactorizedEmbedding.from_weight(e, k, head=head)
    left, right = truncated_svd(e[head:], k)
    tail = left @ right
    tokens = torch.tensor([[0, 9, 10, 59], [5, 33, 33, 1]])
    out = module(tokens)
    assert out.shape == (2, 4, 8)
    assert torch.equal(out[0, :2], e[[0, 9]]) and torch.equal(out[1, 0], e[5])  # head rows exactly
    assert torch.allclose(out[0, 2:], tail[[0, 49]], atol=1e-5)  # tail rows: the tail's own rank-k SVD
    assert torch.allclose(module.weight, torch.cat([e[:head], tail]), atol=1e-5)
    n = sum(p.numel() for p in module.parameters())
    assert n == head * 8 + 50 * k + k * 8 == embedding_footprint(60, 8, rank=k, head=head)["params"]
    out.sum().backward()  # every factor gets a gradient from a batch with head and tail words
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    # head = 0 is the plain module, with the same state-dict keys as before the split existed
    assert set(FactorizedEmbedding.from_weight(e, k).state_dict()) == {"table.weight", "proj.weight"}


def test_frequency_split_rank_zero_tail_is_zero_and_bad_heads_refused():
    e = torch.randn(20, 6)
    module = FactorizedEmbedding.from_weight(e, 0, head=5)
    out = module(torch.tensor([3, 4, 5, 19]))
    assert torch.equal(out[:2], e[[3, 4]]) and torch.equal(out[2:], torch.zeros(2, 6))
    assert sum(p.numel() for p in module.parameters()) == 30 == embedding_footprint(20, 6, rank=0, head=5)["params"]
    full = FactorizedEmbedding.from_weight(e, 2, head=20)  # every row in the head: no tail factors at all
    assert not full.has_tail and torch.equal(full.weight, e)
    with pytest.raises(ValueError, match="head rows"):
        FactorizedEmbedding(20, 6, 2, head=21)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        FactorizedEmbedding(20, 6, 0)
