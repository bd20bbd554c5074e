"""Benchmark of `toolkit compress`: SST-2 / TREC / SNIPS x LSTM / DAN x compression x seeds.

For each (dataset, model, seed) cell, with the same code the command runs (toolkit.compress.pipeline):

1. train the uncompressed model (``--pretrain-epochs``, Adam, constant ``--pretrain-lr``);
2. fp16 / int8 / int4 quantization of its embedding (no retraining);
3. scheduler ablation at p = ``--ablation-p`` (0.9): one truncated-SVD factorized start, then every
   schedule (calr, clr, triangular2, cosine-restarts, constant) gets the same tuning budget: the same
   number of trials (``--lr-grid`` values of max_lr for the one-knob schedules; ``--calr-lr-grid`` x
   ``--calr-decay-grid`` for CALR), each ``--finetune-epochs`` long from that same start with the same
   seed.  The trial with the best VALIDATION accuracy is kept and only its TEST accuracy is reported.
   Cells left out of ``--ablation-cells`` tune CALR alone (the grid below needs its configuration);
4. the validation-chosen CALR configuration then fine-tunes the other compressions p and the
   uncompressed model (the budget-matched reference "uncompressed + fine-tune");
5. the equal-parameter from-scratch baselines at p = 0.9 (compress-before-training, plain smaller
   embedding), trained pretrain + finetune epochs at the pretraining learning rate.

CALR anneals once per cycle of ``--cycle-epochs`` (1 epoch, as the authors' code anneals per epoch)
and its floor is max_lr * decay^``--calr-floor-exp``, so the peak restarts at max_lr after that many
annealed cycles (with the defaults: peaks max, max*decay, then a restart at the start of epoch 3 of 4).

The verdict of the ablation uses paired differences (CALR minus each other schedule, same seed, same
factorized start) with a Student-t 95% interval over seeds.  Every cell records wall time and
``time.process_time()`` (its CPU time: each worker uses one torch thread), so contention from other
jobs shows up as wall >> CPU.  Per-cell JSON goes to ``<out>/compress/<cell>.json``, the markdown
summary (the tables of docs/compress.md, ready to paste) to ``<out>/compress_summary.md`` and stdout.

    .venv/bin/python benchmarks/bench_compress.py                  # the full grid (see docs/compress.md)
    nice -n 19 .venv/bin/python benchmarks/bench_compress.py --datasets trec --archs dan --seeds 0 \
        --out /tmp/bench_smoke                                     # a quick look, results kept apart
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results"
GLOVE = DATA / "glove" / "glove.6B.50d.top2446.txt"
T = DATA / "text"
DATASETS = {
    "sst2": {"train": T / "sst2/stsa.binary.train", "valid": T / "sst2/stsa.binary.dev",
             "test": T / "sst2/stsa.binary.test", "int_labels": True},
    "trec": {"train": T / "trec/TREC.train.all", "test": T / "trec/TREC.test.all", "int_labels": True,
             "encoding": "latin-1"},  # TREC.train.all holds Latin-1 bytes (line 66); the reader decodes strictly
    "snips": {"train": T / "snips/train", "valid": T / "snips/valid", "test": T / "snips/test"},
}
SCHEDULERS = ("calr", "clr", "triangular2", "cosine-restarts", "constant")
OTHERS = SCHEDULERS[1:]
# relative CPU cost of one training epoch (measured: LSTM ~4x DAN; SNIPS > SST-2 > TREC), for ordering
EPOCH_COST = {("snips", "lstm"): 2.4, ("sst2", "lstm"): 2.1, ("trec", "lstm"): 1.1,
              ("snips", "dan"): 0.55, ("sst2", "dan"): 0.45, ("trec", "dan"): 0.25}


def trial_configs(name: str, args: dict) -> list[dict]:
    """The tuning trials of schedule ``name``: a list of scheduler configs (``build_scheduler`` keys).

    One-knob schedules try every max_lr of ``lr_grid``; CALR tries ``calr_lr_grid`` x ``calr_decay_grid``
    (as many trials, checked in :func:`check_args`), with its floor at max_lr * decay^``calr_floor_exp``
    so that the peak restarts after that many annealed cycles.  The cyclical torch schedules use the
    floor max_lr * ``cyclic_floor``.  All cycles last ``cycle_epochs``.
    """
    cyc = float(args["cycle_epochs"])
    if name == "calr":
        return [{"max_lr": lr, "decay": dec, "min_lr": lr * dec ** args["calr_floor_exp"], "cycle_epochs": cyc,
                 "anneal_cycles": 1} for lr, dec in itertools.product(args["calr_lr_grid"], args["calr_decay_grid"])]
    if name == "constant":
        return [{"max_lr": lr} for lr in args["lr_grid"]]
    return [{"max_lr": lr, "min_lr": lr * args["cyclic_floor"], "cycle_epochs": cyc} for lr in args["lr_grid"]]


def check_args(args: dict) -> str | None:
    """Return an error message if the tuning budget is unequal or CALR cannot restart, else None."""
    n_calr = len(args["calr_lr_grid"]) * len(args["calr_decay_grid"])
    if n_calr != len(args["lr_grid"]):
        return (f"unequal tuning budget: CALR gets {n_calr} trials (calr-lr-grid x calr-decay-grid), the other "
                f"schedules {len(args['lr_grid'])} (lr-grid); make them equal")
    if any(not 0 < d < 1 for d in args["calr_decay_grid"]) or args["calr_floor_exp"] < 1:
        return "calr-decay-grid values must lie in (0, 1) and calr-floor-exp must be >= 1 (else no restart)"
    cycles = args["finetune_epochs"] / args["cycle_epochs"]
    if cycles < args["calr_floor_exp"] + 1:
        return (f"{args['finetune_epochs']} fine-tuning epochs hold {cycles:g} cycles of {args['cycle_epochs']} "
                f"epochs: CALR restarts at cycle {args['calr_floor_exp'] + 1}, so it would never restart")
    tail = str(args.get("tail_rank", "none"))
    if tail not in ("auto", "none", "validation", "finetuned") and not (tail.isdigit()):
        return f"--tail-rank must be auto, none, validation, finetuned or an integer >= 0, got {tail!r}"
    bad = [c for c in args["ablation_cells"] if c != "all" and (c.count("/") != 1 or c.split("/")[0] not in DATASETS
                                                                or c.split("/")[1] not in ("lstm", "dan", "textcnn"))]
    if bad:
        return f"unknown --ablation-cells {bad}; use DATASET/ARCH (e.g. sst2/lstm) or all"
    return None


def in_ablation(dataset: str, arch: str, cells: list[str]) -> bool:
    """Whether the (dataset, arch) cell runs the full scheduler ablation."""
    return "all" in cells or f"{dataset}/{arch}" in cells


def run_cell(args: dict) -> dict:
    """Run one (dataset, arch, seed) cell.

    Returns:
        ``{"rows": [...], "trials": [...], "seconds": wall, "cpu_seconds": CPU, "phases": {...}, "info": ...}``;
        ``phases`` holds the CPU seconds of each stage.
    """
    import torch

    torch.set_num_threads(1)
    from toolkit.compress import metrics as M
    from toolkit.compress import pipeline as P
    from toolkit.compress.command import split_for_point, svd_metric, tail_rank_setting
    from toolkit.compress.models import model_config

    wall0, cpu0 = time.perf_counter(), time.process_time()
    phases: dict[str, float] = {}
    mark = [cpu0]

    def phase(name: str) -> None:
        now = time.process_time()
        phases[name] = phases.get(name, 0.0) + now - mark[0]
        mark[0] = now

    ds, arch, seed = args["dataset"], args["arch"], args["seed"]
    data_cfg = {k: str(v) if isinstance(v, Path) else v for k, v in DATASETS[ds].items()}
    data = P.load_text_data({**data_cfg, "vectors": str(GLOVE)}, None, seed)
    dim, vsize = int(data.vectors.shape[1]), len(data.vocab)
    model_cfg = model_config(arch)  # configs/compress/model/<arch>.yaml
    common = dict(optim_cfg={"name": "adam"}, trainer_cfg={"progress": "false"}, batch_size=50, seed=seed,
                  validate=False)
    ev = dict(latency_batch=50, latency_repeats=args["latency_repeats"])
    ft_epochs, p9 = args["finetune_epochs"], args["ablation_p"]
    rows: list[dict] = []
    trials: list[dict] = []

    def row(method, p, m, scheduler=None, rank=None, config=None, val_accuracy=None, mean_lr=None):
        rows.append({"dataset": ds, "arch": arch, "seed": seed, "method": method, "compression": p,
                     "scheduler": scheduler, "rank": rank, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                     "params": m["params"], "model_params": m["params"], "model_bytes": m["bytes"],
                     "embedding_params": m["embedding_params"],
                     "embedding_bytes": m["embedding_bytes"], "latency_ms": m["latency_ms_per_batch"],
                     "config": config, "val_accuracy": val_accuracy, "mean_lr": mean_lr})

    def val_acc(net) -> float:
        return float((torch.from_numpy(M.predict(net, data.x_valid)) == data.y_valid).float().mean())

    phase("load")
    net = P.build_net(model_cfg, data, dim, data.vectors, seed)
    P.train_classifier(net, data, args["pretrain_epochs"], "constant", {"max_lr": args["pretrain_lr"]}, **common)
    base = P.evaluate(net, data, **ev)
    row("uncompressed", 0.0, base)
    phase("pretrain")
    for bits in (16, 8, 4):
        m = P.evaluate(P.quantized_copy(net, bits), data, **ev)
        row({16: "quant_fp16", 8: "quant_int8", 4: "quant_int4"}[bits],
            1 - m["embedding_bytes"] / base["embedding_bytes"], m)
    phase("quantize")

    # scheduler ablation / CALR tuning at p9: one factorized start shared by every trial
    k9 = P.resolve_rank(vsize, dim, p9, None)
    metric = net.input_metric() if svd_metric(args["svd_metric"], arch) == "input_layers" else None
    tail = args["tail_rank"] if not str(args["tail_rank"]).isdigit() else int(args["tail_rank"])
    tail = tail_rank_setting(tail, arch)
    splits: dict[int, list[tuple[int, int]]] = {}

    def factorize(k: int) -> list:
        """The command's factorization(s) at rank budget k (svd.metric, svd.tail_rank as --svd-metric,
        --tail-rank): one start, or with ``finetuned`` the plain one and the best split, both to be fine-tuned
        and the better on validation kept (as the command does)."""
        if k not in splits:
            r, h, cands = split_for_point(tail, net, data, k, metric, None)
            splits[k] = [(r, h)]
            if tail == "finetuned":
                best = max((c for c in cands or [] if c["tail_rank"] < k and c["val_acc"] is not None),
                           key=lambda c: c["val_acc"], default=None)
                splits[k] = [(k, 0)] + ([(best["tail_rank"], best["head_rows"])] if best else [])
        return [(r, h, P.factorized_copy(net, r, metric=metric, head=h)) for r, h in splits[k]]

    starts = factorize(k9)
    row("svd_no_finetune", p9, P.evaluate(starts[0][2], data, **ev), rank=k9)
    chosen: dict[str, dict] = {}
    for name in SCHEDULERS if in_ablation(ds, arch, args["ablation_cells"]) else ("calr",):
        best = None
        for r_s, h_s, start in starts:
            for i, cfg in enumerate(trial_configs(name, args)):
                fnet = copy.deepcopy(start)
                lrs = P.train_classifier(fnet, data, ft_epochs, name, cfg, **common)
                acc = val_acc(fnet)
                trials.append({"dataset": ds, "arch": arch, "seed": seed, "scheduler": name, "trial": i,
                               "config": cfg, "val_accuracy": acc, "mean_lr": float(np.mean(lrs)),
                               "tail_rank": r_s, "head_rows": h_s})
                if best is None or acc > best[0]:  # ties keep the earlier (plain start, smaller max_lr) trial
                    best = (acc, cfg, fnet, float(np.mean(lrs)), (r_s, h_s))
        acc, cfg, fnet, mean_lr, src = best
        chosen[name] = cfg
        row("svd_finetune", p9, P.evaluate(fnet, data, **ev), scheduler=name, rank=k9, config=cfg,
            val_accuracy=acc, mean_lr=mean_lr)
        rows[-1]["tail_rank"], rows[-1]["head_rows"] = src
        phase(f"tune_{name}")
    del starts

    # the grid: the validation-chosen CALR configuration everywhere else
    calr = chosen["calr"]
    cont = copy.deepcopy(net)
    P.train_classifier(cont, data, ft_epochs, "calr", calr, **common)
    row("uncompressed_same_budget", 0.0, P.evaluate(cont, data, **ev), scheduler="calr", config=calr)
    del cont
    for p in args["compressions"]:
        if abs(p - p9) < 1e-9:
            continue
        k = P.resolve_rank(vsize, dim, p, None)
        options = factorize(k)
        row("svd_no_finetune", p, P.evaluate(options[0][2], data, **ev), rank=k)
        best = None
        for r_s, h_s, fnet in options:
            P.train_classifier(fnet, data, ft_epochs, "calr", calr, **common)
            acc = val_acc(fnet)
            if best is None or acc > best[0]:
                best = (acc, fnet, (r_s, h_s))
        row("svd_finetune", p, P.evaluate(best[1], data, **ev), scheduler="calr", rank=k, config=calr)
        rows[-1]["tail_rank"], rows[-1]["head_rows"] = best[2]
    phase("grid")

    width = P.equal_params_dim(vsize, dim, k9)
    budget = args["pretrain_epochs"] + ft_epochs
    for method, from_svd in (("svd_before_training", True), ("small_embedding", False)):
        bnet = P.build_net(model_cfg, data, width, P.small_table(data, dim, width, from_svd, seed), seed)
        P.train_classifier(bnet, data, budget, "constant", {"max_lr": args["pretrain_lr"]}, **common)
        row(method, p9, P.evaluate(bnet, data, **ev), rank=width)
    phase("baselines")
    for r in rows:  # the frequency split of each unfine-tuned factorized row: (tail rank, head rows)
        if r["method"] == "svd_no_finetune" and r["rank"] in splits:
            r["tail_rank"], r["head_rows"] = splits[r["rank"]][0]
    return {"rows": rows, "trials": trials, "seconds": time.perf_counter() - wall0,
            "cpu_seconds": time.process_time() - cpu0, "phases": phases, "info": data.info}


def model_bytes(row: dict) -> int:
    """Whole-model bytes of a result row; rows written before ``model_bytes`` existed are rebuilt from
    ``embedding_bytes`` plus the other parameters as float32 (how :func:`toolkit.compress.metrics.model_size`
    counts them)."""
    if row.get("model_bytes") is not None:
        return int(row["model_bytes"])
    return int(row["embedding_bytes"] + 4 * (row["params"] - row["embedding_params"]))


def whole_model_table(rows: list[dict], pairs: list[tuple[str, str]], p9: float) -> list[str]:
    """Markdown lines: embedding vs whole-model parameters and bytes removed (%) at ``p9`` and by quantization,
    each against the same seed's uncompressed model and averaged over seeds, beside the uncompressed model's
    size (issue 13: "90%" counts the embedding only)."""
    sizes = {"embedding params": lambda r: r["embedding_params"], "model params": lambda r: r["params"],
             "model bytes": model_bytes}

    def removed(ds: str, arch: str, method: str, what: str, **kw) -> str:
        """Mean over seeds of 1 - size / the same seed's uncompressed size, as a percentage ('-' if no row)."""
        base = {r["seed"]: r for r in rows if (r["dataset"], r["arch"], r["method"]) == (ds, arch, "uncompressed")}
        v = [1 - sizes[what](r) / sizes[what](base[r["seed"]]) for r in rows
             if (r["dataset"], r["arch"], r["method"]) == (ds, arch, method) and r["seed"] in base
             and all(r.get(k) == x for k, x in kw.items())]
        return f"{np.mean(v):.1%}" if v else "-"

    out = [f"#### Embedding vs whole-model size at p = {p9} (fraction removed; the rest of the model is kept)", "",
           "| data | model | uncompressed params | embedding share | SVD embedding params | SVD model params | "
           "SVD model bytes | int8 model bytes | int4 model bytes |", "|---|---|---|---|---|---|---|---|---|"]
    for ds, arch in pairs:
        base = [r for r in rows if (r["dataset"], r["arch"], r["method"]) == (ds, arch, "uncompressed")]
        if not base:
            continue
        params = float(np.mean([r["params"] for r in base]))
        share = float(np.mean([r["embedding_params"] / r["params"] for r in base]))
        svd = dict(compression=p9, scheduler="calr")
        cols = [removed(ds, arch, "svd_finetune", "embedding params", **svd),
                removed(ds, arch, "svd_finetune", "model params", **svd),
                removed(ds, arch, "svd_finetune", "model bytes", **svd),
                removed(ds, arch, "quant_int8", "model bytes"), removed(ds, arch, "quant_int4", "model bytes")]
        out.append(f"| {ds} | {arch} | {params:,.0f} | {share:.1%} | " + " | ".join(cols) + " |")
    return out + [""]


def paired_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and Student-t 95% interval (lo, hi) of paired differences; the interval is NaN for n < 2."""
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    if len(d) == 0:
        return math.nan, math.nan, math.nan
    mean = float(d.mean())
    if len(d) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


def verdict(mean: float, lo: float, hi: float) -> str:
    """``better`` / ``worse`` when the 95% interval excludes 0, ``n.s.`` when it covers 0."""
    if math.isnan(lo):
        return "no interval (n < 2)" if not math.isnan(mean) else "-"
    return "better" if lo > 0 else "worse" if hi < 0 else "n.s."


def _lr(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")


def summarize(rows: list[dict], args: dict, wall: float, cells: dict) -> str:
    """Markdown tables for docs/compress.md (accuracy in %, mean ± sample std over seeds) and target checks.

    Args:
        rows: the per-method rows of every cell.
        args: the run's arguments.
        wall: whole-run wall seconds (NaN when rebuilt from cell files).
        cells: per cell name, ``{"seconds", "cpu_seconds", "trials"}``.
    """
    def vals(**kw):
        return {r["seed"]: r["accuracy"] * 100 for r in rows if all(r.get(k) == v for k, v in kw.items())}

    def acc(**kw):
        v = list(vals(**kw).values())
        return (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) if v else None

    def fmt(x):
        return "-" if x is None else f"{x[0]:.1f} ± {x[1]:.1f}"

    def ci(x):
        return "-" if math.isnan(x[0]) else (f"{x[0]:+.1f}" if math.isnan(x[1]) else
                                             f"{x[0]:+.1f} [{x[1]:+.1f}, {x[2]:+.1f}] {verdict(*x)}")

    p9, ft = args["ablation_p"], args["finetune_epochs"]
    n_trials = len(args["lr_grid"])
    cpu = sum(c.get("cpu_seconds") or 0.0 for c in cells.values())
    cell_wall = sum(c["seconds"] for c in cells.values())
    lines = [f"Machine: {platform.machine()} {os.cpu_count()} logical CPUs ({platform.processor() or 'cpu'}), "
             f"Python {platform.python_version()}, {args['workers']} worker processes x 1 torch thread; "
             f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.  Wall time {wall / 60:.1f} min; "
             f"CPU time (process_time, all cells) {cpu / 60:.1f} min; summed cell wall time {cell_wall / 60:.1f} min "
             f"(cell wall / CPU = {cell_wall / cpu if cpu else math.nan:.2f}; about 1 on an idle machine).",
             f"Seeds {args['seeds']}; pretrain {args['pretrain_epochs']} epochs at constant lr "
             f"{args['pretrain_lr']:g}; fine-tune {ft} epochs (cycles of {args['cycle_epochs']:g} epoch); "
             f"from-scratch baselines {args['pretrain_epochs'] + ft} epochs at lr {args['pretrain_lr']:g}; "
             f"batch 50; GloVe 6B 50-d top-2446 partial file; svd.metric={args.get('svd_metric', 'none')}, "
             f"svd.tail_rank={args.get('tail_rank', 'none')} (auto: input_layers and the validation-chosen "
             f"frequency split for textcnn only).  Tuning: {n_trials} trials per schedule on the "
             f"validation split (max_lr in {{{', '.join(_lr(x) for x in args['lr_grid'])}}}; CALR max_lr in "
             f"{{{', '.join(_lr(x) for x in args['calr_lr_grid'])}}} x decay in "
             f"{{{', '.join(f'{x:g}' for x in args['calr_decay_grid'])}}}, floor max_lr x decay^"
             f"{args['calr_floor_exp']}); test accuracy of the chosen trial.  Ablation cells: "
             f"{', '.join(args['ablation_cells'])}.", ""]
    pairs = sorted({(r["dataset"], r["arch"]) for r in rows})
    comps = args["compressions"]
    lines += ["#### Accuracy (%) vs compression, SVD + fine-tuning with the validation-tuned CALR", "",
              "| data | model | uncompressed | uncompressed + fine-tune | " + " | ".join(f"p={p}" for p in comps)
              + f" | p={p9} no fine-tune |", "|---|---|---|---|" + "---|" * (len(comps) + 1)]
    for ds, arch in pairs:
        m = dict(dataset=ds, arch=arch)
        lines.append(f"| {ds} | {arch} | {fmt(acc(**m, method='uncompressed'))} | "
                     f"{fmt(acc(**m, method='uncompressed_same_budget'))} | "
                     + " | ".join(fmt(acc(**m, method="svd_finetune", compression=p, scheduler="calr"))
                                  for p in comps)
                     + f" | {fmt(acc(**m, method='svd_no_finetune', compression=p9))} |")
    lines += ["", f"#### Methods at p = {p9} (equal embedding parameters) and quantization (own size)", "",
              "| data | model | SVD+CALR | SVD no FT | compress-before-training | small embedding | fp16 | int8 | int4 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for ds, arch in pairs:
        m = dict(dataset=ds, arch=arch)
        lines.append(f"| {ds} | {arch} | {fmt(acc(**m, method='svd_finetune', compression=p9, scheduler='calr'))} | "
                     f"{fmt(acc(**m, method='svd_no_finetune', compression=p9))} | "
                     f"{fmt(acc(**m, method='svd_before_training'))} | {fmt(acc(**m, method='small_embedding'))} | "
                     f"{fmt(acc(**m, method='quant_fp16'))} | {fmt(acc(**m, method='quant_int8'))} | "
                     f"{fmt(acc(**m, method='quant_int4'))} |")
    qb: dict[str, list[float]] = {}
    for r in rows:
        if r["method"].startswith("quant"):
            qb.setdefault(r["method"], []).append(r["compression"])
    lines += ["", "Embedding bytes removed by quantization: "
              + ", ".join(f"{k} {np.mean(v):.1%}" for k, v in sorted(qb.items()))
              + f"; the SVD factorization at p={p9} removes at least {p9:.0%} of the embedding's parameters "
              "(and float32 bytes) by the rank formula.", ""]
    lines += whole_model_table(rows, pairs, p9)

    abl = [(ds, arch) for ds, arch in pairs
           if all(vals(dataset=ds, arch=arch, method="svd_finetune", compression=p9, scheduler=s) for s in OTHERS)]
    diffs: dict[tuple, tuple] = {}
    pooled: dict[str, list[float]] = {s: [] for s in OTHERS}
    for ds, arch in abl:
        m = dict(dataset=ds, arch=arch, method="svd_finetune", compression=p9)
        a = vals(**m, scheduler="calr")
        for s in OTHERS:
            b = vals(**m, scheduler=s)
            d = [a[k] - b[k] for k in sorted(set(a) & set(b))]
            pooled[s] += d
            diffs[(ds, arch, s)] = paired_interval(d)
    lines += [f"#### Scheduler ablation at p = {p9}: test accuracy (%) of the validation-chosen trial "
              f"({n_trials} trials each, same factorized start and seed)", "",
              "| data | model | " + " | ".join(SCHEDULERS) + " |", "|---|---|" + "---|" * len(SCHEDULERS)]
    for ds, arch in abl:
        lines.append(f"| {ds} | {arch} | " + " | ".join(
            fmt(acc(dataset=ds, arch=arch, method="svd_finetune", compression=p9, scheduler=s)) for s in SCHEDULERS)
            + " |")
    lines += ["", "#### Paired differences, CALR minus each schedule (points; mean [95% t-interval over seeds]; "
              "better / worse = interval excludes 0, n.s. = it covers 0)", "",
              "| data | model | " + " | ".join(f"CALR − {s}" for s in OTHERS) + " |", "|---|---|" + "---|" * len(OTHERS)]
    for ds, arch in abl:
        lines.append(f"| {ds} | {arch} | " + " | ".join(ci(diffs[(ds, arch, s)]) for s in OTHERS) + " |")
    if len(abl) > 1:
        lines.append(f"| all {len(abl)} cells | pooled | " + " | ".join(
            ci(paired_interval(pooled[s])) + f" (n={len(pooled[s])})" for s in OTHERS) + " |")
    lines += ["", "#### Chosen configurations (per seed) and mean learning rate of the chosen runs", "",
              "| data | model | " + " | ".join(SCHEDULERS) + " |", "|---|---|" + "---|" * len(SCHEDULERS)]
    for ds, arch in abl:
        out = []
        for s in SCHEDULERS:
            rs = sorted((r for r in rows if r["dataset"] == ds and r["arch"] == arch and r["method"] == "svd_finetune"
                         and r["compression"] == p9 and r["scheduler"] == s), key=lambda r: r["seed"])
            cfgs = ", ".join(_lr(r["config"]["max_lr"]) + (f"/{r['config']['decay']:g}" if s == "calr" else "")
                             for r in rs)
            out.append(f"{cfgs} (mean lr {_lr(float(np.mean([r['mean_lr'] for r in rs])))})")
        lines.append(f"| {ds} | {arch} | " + " | ".join(out) + " |")
    lines += ["", "CALR entries are max_lr/decay.  A choice at the edge of its grid means the grid may be too narrow.",
              "", "#### Targets", ""]
    for ds, arch in pairs:
        m = dict(dataset=ds, arch=arch)
        u0, u1 = acc(**m, method="uncompressed"), acc(**m, method="uncompressed_same_budget")
        u = max(u0, u1, key=lambda x: x[0]) if u0 and u1 else (u0 or u1)  # the stronger reference
        s = acc(**m, method="svd_finetune", compression=p9, scheduler="calr")
        if u is None or s is None:
            continue
        gap = u[0] - s[0]
        base_names = ("svd_no_finetune", "svd_before_training", "small_embedding")
        others = {b: acc(**m, method=b, compression=p9) for b in base_names}
        beaten = [b for b, v in others.items() if v is not None and s[0] > v[0]]
        line = (f"- {ds}/{arch}: within 1 point of uncompressed at p={p9}: {'MET' if gap <= 1.0 else 'MISSED'} "
                f"(SVD+CALR {s[0]:.1f} vs best uncompressed {u[0]:.1f}: {-gap:+.1f} points); beats equal-size "
                f"baselines: {'MET' if len(beaten) == len(base_names) else 'MISSED'} "
                f"(beats {', '.join(beaten) or 'none'}); ")
        if (ds, arch) in abl:
            vs = {o: diffs[(ds, arch, o)] for o in ("constant", "clr")}
            ok = all(verdict(*v) == "better" for v in vs.values())
            line += (f"CALR > constant and CLR (paired 95% interval above 0 for both): {'MET' if ok else 'MISSED'} ("
                     + "; ".join(f"vs {o} {ci(v)}" for o, v in vs.items()) + ").")
        else:
            line += "CALR vs constant and CLR: not run in this cell."
        lines.append(line)
    verdict_wall = "UNKNOWN (rebuilt from cell files)" if wall != wall else ("MET" if wall <= 1800 else "MISSED")
    lines += ["", f"- Whole benchmark within 30 min on 2 cores: {verdict_wall} ({wall / 60:.1f} min wall; "
              f"{cpu / 60:.1f} CPU-min in the cells, i.e. at least {cpu / 120:.1f} min of wall time on 2 idle cores; "
              f"summed cell wall / CPU = {cell_wall / cpu if cpu else math.nan:.2f})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the grid (or rebuild the summary) and write the results; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--archs", nargs="+", default=["lstm", "dan"], choices=["lstm", "dan", "textcnn"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--compressions", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95])
    ap.add_argument("--ablation-p", type=float, default=0.9)
    ap.add_argument("--ablation-cells", nargs="+", default=["all"],
                    help="DATASET/ARCH cells that run the full scheduler ablation (default: all)")
    ap.add_argument("--pretrain-epochs", type=int, default=3)
    ap.add_argument("--pretrain-lr", type=float, default=2e-3, help="also the from-scratch baselines' lr")
    ap.add_argument("--finetune-epochs", type=int, default=4)
    ap.add_argument("--cycle-epochs", type=float, default=1.0)
    ap.add_argument("--lr-grid", nargs="+", type=float, default=[1e-3, 2e-3, 4e-3, 8e-3],
                    help="max_lr trials of clr, triangular2, cosine-restarts and constant")
    ap.add_argument("--calr-lr-grid", nargs="+", type=float, default=[2e-3, 8e-3])
    ap.add_argument("--calr-decay-grid", nargs="+", type=float, default=[0.1, 0.3])
    ap.add_argument("--calr-floor-exp", type=int, default=2,
                    help="CALR floor = max_lr * decay^this: the peak restarts after this many annealed cycles")
    ap.add_argument("--cyclic-floor", type=float, default=0.01,
                    help="floor of clr, triangular2 and cosine-restarts as a fraction of max_lr")
    ap.add_argument("--latency-repeats", type=int, default=3, help="timed forward passes per reported model")
    ap.add_argument("--svd-metric", default="auto", choices=["auto", "none", "input_layers"],
                    help="the factorization, as the command's svd.metric (auto: input_layers for textcnn only)")
    ap.add_argument("--tail-rank", default="auto",
                    help="the frequency split, as the command's svd.tail_rank: auto (default), none, validation, finetuned or an "
                         "integer")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT, help="results folder (default benchmarks/results)")
    ap.add_argument("--from-results", action="store_true",
                    help="only rebuild the summary from the per-cell files in <out>/compress/ "
                         "(e.g. after an interrupted run; the wall time is then unknown)")
    a = vars(ap.parse_args(argv))
    err = check_args(a)
    if err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(a.pop("out"))
    if a["from_results"]:
        rows, cells = [], {}
        for f in sorted((out / "compress").glob("*.json")):
            res = json.loads(f.read_text())
            rows += res["rows"]
            cells[f.stem] = res
        summary = summarize(rows, a, float("nan"), cells)
        summary += f"\nSummary rebuilt from {len(cells)} cell files: {', '.join(sorted(cells))}.\n"
        (out / "compress_summary.md").write_text(summary)
        print(summary)
        return 0
    if not (DATA / "text").is_dir():
        print(f"skipping: {DATA / 'text'} not found (the shared datasets are not beside this checkout)",
              file=sys.stderr)
        return 0
    (out / "compress").mkdir(parents=True, exist_ok=True)

    def cost(t: dict) -> float:
        n = len(a["lr_grid"]) * (len(SCHEDULERS) if in_ablation(t["dataset"], t["arch"], a["ablation_cells"]) else 1)
        return EPOCH_COST.get((t["dataset"], t["arch"]), 1.0) * (n + len(a["compressions"]) + 3) * a["finetune_epochs"]

    # the most expensive cells first so the two workers finish together
    tasks = sorted(({**a, "dataset": d, "arch": m, "seed": s} for d in a["datasets"] for m in a["archs"]
                    for s in a["seeds"]), key=lambda t: -cost(t))
    start = time.perf_counter()
    rows, cells = [], {}
    with ProcessPoolExecutor(max_workers=a["workers"]) as pool:
        futures = {pool.submit(run_cell, t): t for t in tasks}
        for fut in as_completed(futures):
            task, res = futures[fut], fut.result()
            name = f"{task['dataset']}_{task['arch']}_{task['seed']}"
            (out / "compress" / f"{name}.json").write_text(json.dumps(res, indent=1))
            rows += res["rows"]
            cells[name] = res
            print(f"{name}: {res['seconds']:.0f} s wall, {res['cpu_seconds']:.0f} s CPU "
                  f"({time.perf_counter() - start:.0f} s elapsed)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    summary = summarize(rows, a, wall, cells)
    (out / "compress_rows.json").write_text(json.dumps(
        {"args": a, "rows": rows, "trials": [t for c in cells.values() for t in c["trials"]],
         "cells": {k: {x: c[x] for x in ("seconds", "cpu_seconds", "phases")} for k, c in cells.items()},
         "wall_seconds": wall}, indent=1))
    (out / "compress_summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
