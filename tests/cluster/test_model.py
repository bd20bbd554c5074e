"""LANDER shapes, gradients, loss and a short training run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.cluster.test_graph_hierarchy import blobs
from toolkit.cluster.graph import build_graph
from toolkit.cluster.knn import knn_search, l2_normalize
from toolkit.cluster.model import Lander, edge_density, lander_loss, lander_loss_se
from toolkit.config import config_dir


@pytest.fixture
def graph():
    x, y = blobs(20, 3, 8)
    x = l2_normalize(x)
    return build_graph(x, x, *knn_search(x, 5), y)


@pytest.mark.parametrize("use_gat", [False, True])
@pytest.mark.parametrize("num_conv", [1, 2, 4])
def test_shapes_and_gradients(graph, use_gat, num_conv):
    model = Lander(8, hidden=16, num_conv=num_conv, use_gat=use_gat, gat_heads=2)
    logits, den = model(graph)
    assert logits.shape == (graph.num_edges(), 2) and den.shape == (graph.num_nodes(),)
    loss, parts = lander_loss(logits, den, graph)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert parts["conn_edges"] % 2 == 0


def test_predict_matches_forward_in_chunks(graph):
    model = Lander(8, hidden=16, edge_features=("cosine",)).eval()
    logits, den = model(graph)
    p_same, den2 = model.predict(graph, edge_chunk=7)
    np.testing.assert_allclose(p_same.numpy(), torch.softmax(logits, 1)[:, 1].detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(den2.numpy(), den.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_edge_density_is_mean_over_in_edges():
    den = edge_density(torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.8, 0.6, 1.0]), torch.tensor([0, 0, 2]), 3)
    np.testing.assert_allclose(den.numpy(), [(0.8 - 0.6) / 2, 0.0, 0.5])


def test_loss_without_eligible_edges_is_density_only(graph):
    model = Lander(8, hidden=16)
    logits, den = model(graph)
    graph.edata["mask_conn"] = torch.zeros(graph.num_edges(), dtype=torch.bool)
    loss, parts = lander_loss(logits, den, graph)
    assert parts["conn_edges"] == 0
    assert float(loss) == pytest.approx(parts["density_mse"], rel=1e-5)


def test_training_reduces_loss(tmp_path):
    from toolkit.cluster.hierarchy import training_graphs
    from toolkit.cluster.lightning import fit_lander

    x, y = blobs(25, 6, 8, spread=0.3)
    graphs = training_graphs(x, y, [10], [2], {})
    cfg = OmegaConf.load(config_dir() / "cluster" / "model" / "hilander.yaml")
    cfg.hidden, cfg.train.epochs, cfg.train.min_steps = 32, 15, 60  # one step per epoch: 60 steps, not 300
    before = [lander_loss(*Lander(8, 32, edge_features=("cosine",))(g), g, balance=False)[0].item() for g in graphs]
    module = fit_lander(graphs, cfg, {"progress": False}, tmp_path, tmp_path / "ckpt")
    after = [lander_loss(*module.model(g), g, balance=False)[0].item() for g in graphs]
    assert np.mean(after) < np.mean(before)
    assert (tmp_path / "ckpt" / "last.ckpt").exists()


@pytest.mark.parametrize("se_multiple", [0.0, 1.0, 50.0])
def test_select_best_returns_the_earliest_epoch_within_k_standard_errors_of_the_lowest(tmp_path, se_multiple):
    """model.train.select_best: the returned weights are those of the earliest logged epoch whose held-out loss is
    within the margin min over running minima r of (L_r + k SE_r) (0: the minimum itself), recomputed from the log."""
    import csv

    from toolkit.cluster.hierarchy import training_graphs
    from toolkit.cluster.lightning import fit_lander

    x, y = blobs(25, 6, 8, spread=0.3)
    graphs = training_graphs(x[y < 3], y[y < 3], [10], [2], {})
    vx = l2_normalize(x[y >= 3])
    val = build_graph(vx, vx, *knn_search(vx, 10), y[y >= 3])
    cfg = OmegaConf.load(config_dir() / "cluster" / "model" / "hilander.yaml")
    cfg.hidden, cfg.train.epochs, cfg.train.min_steps, cfg.train.lr = 32, 12, 0, 0.5  # large steps: a noisy curve
    cfg.train.select_se = se_multiple
    module = fit_lander(graphs, cfg, {"progress": False}, tmp_path, tmp_path / "ckpt", val_graphs=[val])
    with open(tmp_path / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/loss")]
    logged = [float(r["val/loss"]) for r in rows]
    ses = [float(r["val/loss_se"]) for r in rows]
    best = int(np.argmin(logged))
    assert len(logged) == 12 and 0 < best < 11  # the best epoch is neither the first nor the last
    assert 0 < ses[best] < logged[best]
    records = [e for e in range(12) if logged[e] < min(logged[:e], default=np.inf)]
    margin = min(logged[r] + se_multiple * ses[r] for r in records)
    expected = min(e for e, v in enumerate(logged) if v <= margin)
    assert module.selected_epoch == expected
    if se_multiple == 0:
        assert expected == best
    if se_multiple == 50:
        assert expected == 0  # every epoch is within a wide margin: the first one
    with torch.no_grad():
        got = lander_loss(*module.model(val), val, balance=False)[0].item()
    assert got == pytest.approx(logged[expected], rel=1e-4)
    assert torch.load(tmp_path / "ckpt" / "best.ckpt", weights_only=True)["epoch"] == expected
    # "last" is the final epoch, whatever was selected (method=auto's fit-only protocol scores with it)
    assert module.selected_checkpoints["last"] == str(tmp_path / "ckpt" / "last.ckpt")
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["epoch"] == 11


def test_select_patience_stops_training_once_the_heldout_loss_stops_reaching_new_minima(tmp_path):
    import csv

    from toolkit.cluster.hierarchy import training_graphs
    from toolkit.cluster.lightning import fit_lander

    x, y = blobs(25, 6, 8, spread=0.3)
    graphs = training_graphs(x[y < 3], y[y < 3], [10], [2], {})
    vx = l2_normalize(x[y >= 3])
    val = build_graph(vx, vx, *knn_search(vx, 10), y[y >= 3])
    cfg = OmegaConf.load(config_dir() / "cluster" / "model" / "hilander.yaml")
    cfg.hidden, cfg.train.epochs, cfg.train.min_steps, cfg.train.lr = 32, 40, 0, 0.5
    cfg.train.select_patience = 3
    fit_lander(graphs, cfg, {"progress": False}, tmp_path, tmp_path / "ckpt", val_graphs=[val])
    with open(tmp_path / "logs" / "metrics.csv") as f:
        logged = [float(r["val/loss"]) for r in csv.DictReader(f) if r.get("val/loss")]
    last_record = int(np.argmin(logged))
    assert len(logged) < 40  # stopped before the planned 40 epochs
    assert len(logged) - 1 - last_record == 3  # exactly `patience` epochs without a new minimum


def test_loss_standard_error_matches_the_per_item_variances(graph):
    """lander_loss_se = sqrt(var(node squared errors)/N + var(edge cross-entropies)/E) of the unbalanced loss."""
    torch.manual_seed(0)
    model = Lander(8, hidden=16, edge_features=("cosine",))
    with torch.no_grad():
        logits, den = model(graph)
    se = lander_loss_se(logits, den, graph)
    sq = ((den - graph.ndata["density"]) ** 2).numpy()
    mask = graph.edata["mask_conn"].bool().numpy()
    logp = torch.log_softmax(logits, 1).numpy()[mask]
    ce = -logp[np.arange(len(logp)), graph.edata["labels_conn"].numpy()[mask]]
    want = np.sqrt(sq.var(ddof=1) / len(sq) + ce.var(ddof=1) / len(ce))
    assert se == pytest.approx(want, rel=1e-4) and se > 0
    # the loss it is the error of: the two means
    assert lander_loss(logits, den, graph, balance=False)[0].item() == pytest.approx(sq.mean() + ce.mean(), rel=1e-4)


def test_seed_edge_subset_gives_the_same_seed_loss_as_the_full_graph(graph):
    """Training scores only the seeds' in-edges; seeds' densities and their edges' logits must not change."""
    torch.manual_seed(0)
    model = Lander(8, hidden=16, edge_features=("cosine",))
    seeds = torch.zeros(graph.num_nodes(), dtype=torch.bool)
    seeds[::3] = True
    dst = graph.edges()[1]
    edge_ids = torch.nonzero(seeds[dst]).flatten()
    logits_all, den_all = model(graph)
    logits_sub, den_sub = model(graph, edge_ids)
    np.testing.assert_allclose(logits_sub.detach().numpy(), logits_all[edge_ids].detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(den_sub[seeds].detach().numpy(), den_all[seeds].detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    full, parts_full = lander_loss(logits_all, den_all, graph, seeds, seeds[dst], balance=False)
    sub, parts_sub = lander_loss(logits_sub, den_sub, graph, seeds, None, balance=False, edge_ids=edge_ids)
    assert parts_sub["conn_edges"] == parts_full["conn_edges"] > 0
    assert float(sub) == pytest.approx(float(full), rel=1e-5)


def test_random_rotation_is_orthogonal_and_keeps_cosines():
    from toolkit.cluster.lightning import random_rotation

    gen = torch.Generator().manual_seed(0)
    q = random_rotation(16, gen)
    assert q.dtype == torch.float32 and q.shape == (16, 16)
    np.testing.assert_allclose((q @ q.T).numpy(), np.eye(16), atol=1e-5)
    x = torch.from_numpy(l2_normalize(blobs(5, 2, 16)[0]))
    np.testing.assert_allclose(((x @ q) @ (x @ q).T).numpy(), (x @ x.T).numpy(), atol=1e-5)
    assert not torch.allclose(q, random_rotation(16, gen))  # a fresh draw per call
    # Haar: the mean of the matrix entries over many draws is ~0 (a biased QR would give a positive diagonal)
    mean_diag = torch.stack([torch.diagonal(random_rotation(4, gen)) for _ in range(400)]).mean()
    assert abs(float(mean_diag)) < 0.1


def test_rotated_training_step_leaves_the_training_graph_unchanged(graph):
    from toolkit.cluster.lightning import LanderModule

    before = graph.ndata["features"].clone()
    rotated = LanderModule(8, hidden=16, edge_features=("cosine",), rotate=True)
    plain = LanderModule(8, hidden=16, edge_features=("cosine",), rotate=False)
    plain.model.load_state_dict(rotated.model.state_dict())
    rotated.log = plain.log = lambda *a, **k: None
    loss_r = rotated.training_step([(graph, None)], 0)
    loss_p = plain.training_step([(graph, None)], 0)
    torch.testing.assert_close(graph.ndata["features"], before)  # rotation happens in a local scope
    assert torch.isfinite(loss_r) and not torch.isclose(loss_r, loss_p)  # the network saw rotated inputs


def test_edge_feature_names_are_declared_once_for_config_checks():
    from toolkit.cluster.model import EDGE_FEATURES
    from toolkit.cluster.schema import EDGE_FEATURE_NAMES

    assert tuple(EDGE_FEATURES) == EDGE_FEATURE_NAMES


def test_old_checkpoint_with_use_edge_sim_loads(tmp_path):
    import torch

    from toolkit.cluster.command import CHECKPOINT_FORMAT, load_checkpoint

    model = Lander(8, hidden=16, edge_features=("cosine",))
    hp = {"feature_dim": 8, "hidden": 16, "num_conv": 1, "dropout": 0.0, "use_gat": False, "gat_heads": 1,
          "use_cluster_feat": True, "use_edge_sim": True}
    torch.save({"format": CHECKPOINT_FORMAT, "hparams": hp, "state_dict": model.state_dict(), "tau": 0.7,
                "knn_on": "peak"}, tmp_path / "old.ckpt")
    loaded = load_checkpoint(str(tmp_path / "old.ckpt"), 8)
    assert loaded.edge_features == ("cosine",) and loaded.tau == 0.7


def test_diverged_training_is_a_clear_runtime_error(tmp_path):
    from toolkit.cluster.hierarchy import training_graphs
    from toolkit.cluster.lightning import fit_lander

    x, y = blobs(25, 6, 8, spread=0.3)
    graphs = training_graphs(x, y, [10], [2], {})
    cfg = OmegaConf.load(config_dir() / "cluster" / "model" / "hilander.yaml")
    cfg.hidden, cfg.train.epochs, cfg.train.min_steps, cfg.train.lr = 16, 3, 0, 1e30  # blows up at once
    with pytest.raises(RuntimeError, match=r"diverged.*model\.train\.lr \(now 1e\+30\)"):
        fit_lander(graphs, cfg, {"progress": False}, tmp_path, tmp_path / "ckpt")


def test_stop_after_epochs_keeps_the_whole_runs_learning_rate_schedule(tmp_path):
    """fit_lander(stop_after_epochs=E): E epochs are run, and the cosine schedule is that of the full run (so the
    weights are what the full run has at epoch E, the point model.train.refit retrains to)."""
    import csv
    import math

    from toolkit.cluster.hierarchy import training_graphs
    from toolkit.cluster.lightning import fit_lander

    x, y = blobs(25, 6, 8, spread=0.3)
    graphs = training_graphs(x, y, [10], [2], {})
    cfg = OmegaConf.load(config_dir() / "cluster" / "model" / "hilander.yaml")
    cfg.hidden, cfg.train.epochs, cfg.train.min_steps = 16, 12, 0
    module = fit_lander(graphs, cfg, {"progress": False}, tmp_path, tmp_path / "ckpt", stop_after_epochs=5)
    steps_per_epoch = math.ceil(module.hparams.total_steps / 12)
    assert module.trainer.current_epoch == 5 and module.trainer.global_step == 5 * steps_per_epoch
    lr0, done, total = float(cfg.train.lr), 5 * steps_per_epoch, module.hparams.total_steps
    assert total == 12 * steps_per_epoch  # the schedule's length is the whole run's, not 5 epochs'
    expected = 1e-5 + (lr0 - 1e-5) * (1 + math.cos(math.pi * done / total)) / 2
    assert module.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(expected, rel=1e-3)
    with open(tmp_path / "logs" / "metrics.csv") as f:
        assert max(int(r["epoch"]) for r in csv.DictReader(f) if r.get("epoch")) == 4
