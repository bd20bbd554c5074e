"""Which training epoch clusters unseen classes best, and which held-out loss says so?

Usage::

    .venv/bin/python benchmarks/cluster_select_curves.py OUT_DIR [--eval 0,9,50,99] [toolkit cluster overrides...]
    .venv/bin/python benchmarks/cluster_select_curves.py /tmp/sel-digits --eval 0,25,51,100,200,299 seed=0
    .venv/bin/python benchmarks/cluster_select_curves.py --logs RUN/train/logs/metrics.csv ...   # patience check

Trains LANDER once as ``toolkit cluster`` does (same config composition, data, class split, training graphs and
seed; the encoder features are reused from ``OUT_DIR`` when a run cached them there) and keeps a checkpoint of
every epoch.  Every epoch logs two held-out losses of the held-out meta-training classes: ``val/loss`` on their
level-0 kNN graph (what ``model.train.select_best`` monitored until 2026-12-07) and ``val/loss_h``, the mean over
the graphs of their whole training hierarchy (levels >= 1 as training builds them; what it monitors now).  For each epoch in ``--eval`` the script then does what
the command does after training -- tunes tau, tau_upper and fragments on the meta-training classes, clusters the
test set -- and prints the test pairwise F beside the losses, with the epoch ``model.train.select_se`` = 0 / 1
would pick from each loss.  It prints the machine it ran on.

``--logs`` instead reads finished runs' ``train/logs/metrics.csv`` (trained without patience) and prints, per
``model.train.select_patience``, the epoch training would have stopped at and the epoch the one-SE rule
(``select_se=1``) would then keep, beside the full run's choice.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import platform
import sys
import time
from pathlib import Path

import torch

from toolkit.cluster.baselines import split_classes
from toolkit.cluster.command import knn_kwargs, run_hierarchy, tune_inference
from toolkit.cluster.features import load_cluster_data
from toolkit.cluster.graph import build_graph
from toolkit.cluster.hierarchy import training_graphs
from toolkit.cluster.knn import knn_search, l2_normalize
from toolkit.cluster.lightning import LanderModule, fit_lander
from toolkit.cluster.metrics import bcubed_f, pairwise_f
from toolkit.config import compose_config
from toolkit.runtime import Run


def curves(log_csv: Path) -> dict[str, dict[int, float]]:
    """Per-epoch values of every ``val/...`` column of a Lightning CSV log: name -> {epoch: value}."""
    out: dict[str, dict[int, float]] = {}
    with open(log_csv) as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key.startswith("val/") and value:
                    out.setdefault(key, {})[int(row["epoch"])] = float(value)
    return out


def pick(loss: dict[int, float], se: dict[int, float], k: float, upto: int | None = None) -> int:
    """``EarliestWithinSE``'s choice, offline: the earliest epoch whose loss is within the margin
    ``min over running minima r of (L_r + k SE_r)``, over the epochs before ``upto`` (all when None)."""
    epochs = [e for e in sorted(loss) if upto is None or e < upto]
    best, margin = float("inf"), float("inf")
    for e in epochs:
        if loss[e] < best:
            best, margin = loss[e], min(margin, loss[e] + k * se.get(e, 0.0))
    return min(e for e in epochs if loss[e] <= margin)


def stop_epoch(loss: dict[int, float], patience: int) -> int:
    """The number of epochs a run with ``select_patience=patience`` would have trained (Lightning's EarlyStopping:
    stop once no new minimum for ``patience`` epochs)."""
    best, last = float("inf"), 0
    for e in sorted(loss):
        if loss[e] < best:
            best, last = loss[e], e
        if e - last >= patience:
            return e + 1
    return len(loss)


def patience_table(logs: list[str]) -> None:
    """Print, per log, the full run's one-SE choice and the stop / choice at patience 100, 50 and 30."""
    print(f"machine: {platform.machine()}, {platform.node()}")
    for path in logs:
        c = curves(Path(path))
        loss, se = c["val/loss"], c["val/loss_se"]
        cells = [f"full run ({len(loss)} epochs): epoch {pick(loss, se, 1.0)}"]
        for patience in (100, 50, 30):
            stop = stop_epoch(loss, patience)
            cells.append(f"patience {patience}: stop after {stop}, epoch {pick(loss, se, 1.0, stop)}")
        print(f"{path}: " + "; ".join(cells))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--eval", default="", help="epochs to cluster the test set with (default: every tenth)")
    parser.add_argument("--logs", nargs="+", help="finished runs' metrics.csv: the patience check only")
    parser.add_argument("--test-points", type=int, default=0,
                        help="cluster only the first N test points (the scale benchmark's 1M: 100000)")
    args, overrides = parser.parse_known_args(argv)
    if args.logs:
        patience_table(args.logs)
        return
    if args.out is None:
        parser.error("OUT_DIR is required without --logs")
    out: Path = args.out
    cfg = compose_config("cluster", [*overrides, f"output_dir={out}", "trainer.progress=false"])
    run = Run(out)
    data = load_cluster_data(cfg, run)
    run.abort()
    if args.test_points:
        keep = slice(0, args.test_points)
        data = dataclasses.replace(data, test_x=data.test_x[keep],
                                   test_y=None if data.test_y is None else data.test_y[keep])
    mc, inf, kw = cfg.model, cfg.model.infer, knn_kwargs(cfg.model)
    seed = int(cfg.seed or 0)
    fit_idx, val_idx = split_classes(data.train_y, float(mc.train.val_fraction), seed)
    graphs = training_graphs(data.train_x[fit_idx], data.train_y[fit_idx], list(mc.train.knn_k),
                             list(mc.train.levels), kw, knn_on=str(mc.knn_on), decode_keep=float(mc.train.decode_keep))
    vx = l2_normalize(data.train_x[val_idx])
    level0 = build_graph(vx, vx, *knn_search(vx, int(inf.knn_k), **kw), data.train_y[val_idx])
    held = training_graphs(data.train_x[val_idx], data.train_y[val_idx], list(mc.train.knn_k),
                           list(mc.train.levels), kw, knn_on=str(mc.knn_on), decode_keep=float(mc.train.decode_keep))
    work = Path(f"{out}-select-curves")
    ckpt_dir = work / "epochs"
    from pytorch_lightning.callbacks import ModelCheckpoint

    every_epoch = ModelCheckpoint(dirpath=str(ckpt_dir), filename="{epoch}", every_n_epochs=1, save_top_k=-1,
                                  enable_version_counter=False)
    start = time.perf_counter()
    # the extra callbacks list replaces fit_lander's selection callbacks: the run keeps its last epoch
    fit_lander(graphs, mc, {**dict(cfg.trainer), "callbacks": [every_epoch]}, work / "train", work / "ckpt", seed,
               [level0], {"h": held})
    train_s = time.perf_counter() - start
    c = curves(work / "train" / "logs" / "metrics.csv")
    epochs = sorted(c["val/loss"])
    all_levels, all_se = c["val/loss_h"], c["val/loss_h_se"]
    picks = {"level0 k=0": pick(c["val/loss"], c["val/loss_se"], 0), "level0 k=1": pick(c["val/loss"], c["val/loss_se"], 1),
             "all levels k=0": pick(all_levels, all_se, 0), "all levels k=1": pick(all_levels, all_se, 1)}
    wanted = [int(e) for e in args.eval.split(",") if e] or list(range(0, len(epochs), 10)) + [epochs[-1]]
    wanted = sorted(set(wanted) | set(picks.values()))
    print(f"machine: {platform.machine()}, {platform.node()}; overrides {overrides}; training {train_s:.0f} s; "
          f"held-out graphs (nodes): {[g.num_nodes() for g in [level0, *held]]}")
    print("picks: " + ", ".join(f"{k} -> epoch {v}" for k, v in picks.items()))
    print("epoch | held-out loss level 0 (SE) | all levels (SE) | test pairwise F | BCubed F | clusters | tau, tau_upper")
    for e in wanted:
        ck = torch.load(ckpt_dir / f"epoch={e}.ckpt", map_location="cpu", weights_only=True)
        module = LanderModule(**ck["hyper_parameters"])
        module.load_state_dict(ck["state_dict"])
        model = module.model.eval()
        model.knn_on = str(mc.knn_on)
        tau, model.tau_upper, model.min_cluster_fraction, _ = tune_inference(model, data.train_x, data.train_y, inf, kw)
        labels, _ = run_hierarchy(model, data.test_x, inf, kw, tau, model.tau_upper)
        fp = pairwise_f(data.test_y, labels)[2]
        fb = bcubed_f(data.test_y, labels)[2]
        print(f"{e} | {c['val/loss'][e]:.4g} ({c['val/loss_se'][e]:.2g}) | {all_levels[e]:.4g} ({all_se[e]:.2g}) | "
              f"{fp:.3f} | {fb:.3f} | {labels.max() + 1} | {tau:g}, {model.tau_upper}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
