"""``toolkit cluster``: load data, learn Hi-LANDER (or reuse a checkpoint) or run a baseline, evaluate, write outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.console import log
from toolkit.errors import InputError
from toolkit.runtime import Run, seed_everything

METHODS = ("hilander", "kmeans", "hac", "dbscan", "hdbscan")
CHECKPOINT_FORMAT = "toolkit.hilander/1"
MODEL_KEYS = ("hidden", "num_conv", "dropout", "use_gat", "gat_heads", "use_cluster_feat")


def knn_kwargs(model_cfg) -> dict:
    """faiss settings from ``model.knn`` as keyword arguments of ``knn_search``."""
    k = model_cfg.knn
    return {"exact_max_points": int(k.exact_max_points), "hnsw_m": int(k.hnsw_m),
            "ef_search": int(k.hnsw_ef_search), "ef_construction": int(k.hnsw_ef_construction)}


def save_checkpoint(model, feature_dim: int, model_cfg, path: Path) -> None:
    """Write a LANDER checkpoint: ``{"format", "hparams", "state_dict"}`` loadable with ``weights_only=True``."""
    import torch

    hparams = {"feature_dim": int(feature_dim), **{k: model_cfg[k] for k in MODEL_KEYS}}
    torch.save({"format": CHECKPOINT_FORMAT, "hparams": hparams, "state_dict": model.state_dict()}, path)


def load_checkpoint(path: str, feature_dim: int):
    """Load a LANDER model from our ``model.ckpt`` or a Lightning ``.ckpt`` of :class:`LanderModule`.

    Raises:
        InputError: missing, corrupt or foreign file, or trained for another feature dimension.
    """
    import torch

    from toolkit.cluster.model import Lander

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(p, "model.checkpoint", "file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise InputError(p, "model.checkpoint", f"not a readable checkpoint ({type(exc).__name__})") from None
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        hp, state = obj["hparams"], obj["state_dict"]
    elif isinstance(obj, dict) and "state_dict" in obj and "hyper_parameters" in obj:
        hp = {k: v for k, v in obj["hyper_parameters"].items() if k in ("feature_dim", *MODEL_KEYS)}
        state = {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
    else:
        raise InputError(p, "model.checkpoint", "not a Hi-LANDER checkpoint written by toolkit cluster")
    if int(hp.get("feature_dim", -1)) != feature_dim:
        raise InputError(p, "model.checkpoint", f"trained on {hp.get('feature_dim')}-d features, "
                         f"but the data has {feature_dim}-d features")
    model = Lander(**hp)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(p, "model.checkpoint", f"weights do not fit the model ({str(exc).splitlines()[0]})") from None
    return model.eval()


def _check_sizes(cfg, n_train: int, n_test: int) -> None:
    k_infer = int(cfg.model.infer.knn_k)
    if n_test <= k_infer:
        raise InputError("data", "test_features", f"has {n_test} points; needs more than model.infer.knn_k={k_infer}")
    if cfg.method == "hilander" and not cfg.model.checkpoint:
        k_train = max(int(k) for k in cfg.model.train.knn_k)
        if n_train <= k_train:
            raise InputError("data", "train_features",
                             f"has {n_train} points; needs more than max(model.train.knn_k)={k_train}")


def run(cfg, run: Run) -> dict:
    """Execute ``toolkit cluster`` for the composed config; see ``docs/cluster.md``.

    Returns:
        ``{"metrics": ...}`` with clustering metrics (when test labels exist), cluster counts,
        method details and per-level statistics.

    Raises:
        InputError: bad config or data (exit code 2).
    """
    method = str(cfg.method)
    if method not in METHODS:
        raise InputError("config", "method", f"unknown method '{method}' (expected one of {', '.join(METHODS)})")
    if cfg.model.infer.threshold not in ("prob", "sim"):
        raise InputError("config", "model.infer.threshold", "expected 'prob' or 'sim'")
    seed_everything(cfg.seed)
    from toolkit.cluster.features import load_cluster_data

    with run.timer("load"):
        data = load_cluster_data(cfg, run)
    _check_sizes(cfg, len(data.train_x), len(data.test_x))
    log(f"meta-training: {len(data.train_x)} points, {len(np.unique(data.train_y))} classes; "
        f"clustering {len(data.test_x)} points of dimension {data.test_x.shape[1]}")
    metrics: dict = {"method": method, "num_points": int(len(data.test_x))}
    if method == "hilander":
        labels, info = _hilander(cfg, run, data)
    else:
        from toolkit.cluster.baselines import cluster_baseline

        with run.timer("cluster"):
            labels, info = cluster_baseline(method, data.train_x, data.train_y, data.test_x, data.test_y, cfg.baselines)
    metrics.update(info)
    np.save(run.path("labels.npy"), labels)
    from toolkit.cluster.metrics import evaluate

    with run.timer("evaluate"):
        metrics.update(evaluate(data.test_y, labels))
    if cfg.plot:
        from toolkit.cluster.plot import plot_clusters

        with run.timer("plot"):
            plot_clusters(data.test_x, labels, data.test_y, run.path("clusters.png"), int(cfg.plot_max_points),
                          int(cfg.seed or 0))
    return {"metrics": metrics}


def _hilander(cfg, run: Run, data) -> tuple[np.ndarray, dict]:
    import torch

    from toolkit.cluster.hierarchy import cluster_hierarchy, training_graphs

    torch.set_num_threads(max(1, torch.get_num_threads()))
    mc = cfg.model
    dim = data.train_x.shape[1]
    info: dict = {}
    if mc.checkpoint:
        model = load_checkpoint(str(mc.checkpoint), data.test_x.shape[1])
        info["checkpoint"] = str(mc.checkpoint)
        log(f"loaded Hi-LANDER from {mc.checkpoint}")
    else:
        from toolkit.cluster.lightning import fit_lander

        with run.timer("train_graphs"):
            try:
                graphs = training_graphs(data.train_x, data.train_y, list(mc.train.knn_k), list(mc.train.levels),
                                         knn_kwargs(mc), log)
            except ValueError as exc:
                raise InputError("config", "model.train", str(exc)) from None
        info["train_graphs"] = len(graphs)
        log(f"training LANDER on {len(graphs)} graphs for {mc.train.epochs} epochs")
        with run.timer("train"):
            module = fit_lander(graphs, mc, cfg.trainer, run.staging / "train", run.staging / "checkpoints",
                                int(cfg.seed or 0))
        model = module.model
        save_checkpoint(model, dim, mc, run.path("model.ckpt"))
    inf = mc.infer
    with run.timer("cluster"):
        labels, stats = cluster_hierarchy(data.test_x, model.predict, int(inf.knn_k), float(inf.tau),
                                          str(inf.threshold), int(inf.max_levels), bool(inf.early_stop),
                                          knn_kwargs(mc), log)
    info["levels"] = [{"level": s.level, "nodes": s.nodes, "edges_added": s.edges_added, "clusters": s.clusters}
                      for s in stats]
    return labels, info
