"""Benchmark of `toolkit compress`: SST-2 / TREC / SNIPS x LSTM / DAN x compression x seeds.

For each (dataset, model, seed) cell, with the same code the command runs (toolkit.compress.pipeline):

1. train the uncompressed model (``--pretrain-epochs``, Adam, constant lr);
2. for every compression p: truncated-SVD factorization, accuracy without fine-tuning, then
   ``--finetune-epochs`` of fine-tuning with CALR;
3. at p = ``--ablation-p`` (0.9): fine-tuning with each other scheduler (clr, triangular2,
   cosine-restarts, constant) from the same factorized start, and the equal-parameter from-scratch
   baselines (compress-before-training, plain smaller embedding) trained pretrain+finetune epochs;
4. fp16 / int8 / int4 quantization of the uncompressed embedding (no retraining).

Raw rows go to ``benchmarks/results/compress/<cell>.json``; the summary table (markdown) to
``benchmarks/results/compress_summary.md``.  Each worker process uses one torch thread.

    .venv/bin/python benchmarks/bench_compress.py                  # the full grid (see docs/compress.md)
    .venv/bin/python benchmarks/bench_compress.py --seeds 0 --datasets trec --archs dan   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
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
    "trec": {"train": T / "trec/TREC.train.all", "test": T / "trec/TREC.test.all", "int_labels": True},
    "snips": {"train": T / "snips/train", "valid": T / "snips/valid", "test": T / "snips/test"},
}
SCHEDULERS = ("calr", "clr", "triangular2", "cosine-restarts", "constant")


def run_cell(args: dict) -> dict:
    """Run one (dataset, arch, seed) cell; returns {"rows": [...], "seconds": float}."""
    import torch

    torch.set_num_threads(1)
    from toolkit.compress import pipeline as P

    start = time.perf_counter()
    ds, arch, seed = args["dataset"], args["arch"], args["seed"]
    data_cfg = {k: str(v) if isinstance(v, Path) else v for k, v in DATASETS[ds].items()}
    data = P.load_text_data({**data_cfg, "vectors": str(GLOVE)}, None, seed)
    dim, vsize = int(data.vectors.shape[1]), len(data.vocab)
    model_cfg = {"arch": arch}
    common = dict(optim_cfg={"name": "adam"}, trainer_cfg={"progress": "false"}, batch_size=50, seed=seed,
                  validate=False)
    ev = dict(latency_batch=50, latency_repeats=args["latency_repeats"])
    lr = args["lr"]
    sched = {"max_lr": lr, "min_lr": 1e-6, "cycle_epochs": args["cycle_epochs"], "decay": 0.1,
             "anneal_cycles": 1}
    rows = []

    def row(method, p, m, scheduler=None, rank=None):
        rows.append({"dataset": ds, "arch": arch, "seed": seed, "method": method, "compression": p,
                     "scheduler": scheduler, "rank": rank, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                     "params": m["params"], "embedding_params": m["embedding_params"],
                     "embedding_bytes": m["embedding_bytes"], "latency_ms": m["latency_ms_per_batch"]})

    net = P.build_net(arch, data, dim, model_cfg, data.vectors, seed)
    P.train_classifier(net, data, args["pretrain_epochs"], "constant", {"max_lr": lr}, **common)
    base = P.evaluate(net, data, **ev)
    row("uncompressed", 0.0, base)
    # budget-matched reference: the uncompressed model fine-tuned with CALR for the same extra epochs
    cont = copy.deepcopy(net)
    P.train_classifier(cont, data, args["finetune_epochs"], "calr", sched, **common)
    row("uncompressed_same_budget", 0.0, P.evaluate(cont, data, **ev))
    for bits in (16, 8, 4):
        m = P.evaluate(P.quantized_copy(net, bits), data, **ev)
        row({16: "quant_fp16", 8: "quant_int8", 4: "quant_int4"}[bits],
            1 - m["embedding_bytes"] / base["embedding_bytes"], m)
    for p in args["compressions"]:
        k = P.resolve_rank(vsize, dim, p, None)
        scheds = SCHEDULERS if abs(p - args["ablation_p"]) < 1e-9 else ("calr",)
        for name in scheds:
            fnet = P.factorized_copy(net, k)
            if name == "calr":
                row("svd_no_finetune", p, P.evaluate(fnet, data, **ev), rank=k)
            P.train_classifier(fnet, data, args["finetune_epochs"], name, sched, **common)
            row("svd_finetune", p, P.evaluate(fnet, data, **ev), scheduler=name, rank=k)
        if abs(p - args["ablation_p"]) < 1e-9:
            width = P.equal_params_dim(vsize, dim, k)
            budget = args["pretrain_epochs"] + args["finetune_epochs"]
            for method, from_svd in (("svd_before_training", True), ("small_embedding", False)):
                bnet = P.build_net(arch, data, width, model_cfg, P.small_table(data, dim, width, from_svd, seed), seed)
                P.train_classifier(bnet, data, budget, "constant", {"max_lr": lr}, **common)
                row(method, p, P.evaluate(bnet, data, **ev), rank=width)
    return {"rows": rows, "seconds": time.perf_counter() - start, "info": data.info}


def summarize(rows: list[dict], args: dict, wall: float, cell_seconds: dict) -> str:
    """Markdown tables (mean +- std over seeds, accuracy in %) and the target checks."""
    import collections

    def acc(**kw):
        vals = [r["accuracy"] * 100 for r in rows if all(r[k] == v for k, v in kw.items())]
        return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else None

    def fmt(x):
        return "-" if x is None else f"{x[0]:.1f} ± {x[1]:.1f}"

    p9 = args["ablation_p"]
    lines = [f"Machine: {platform.machine()} {os.cpu_count()} logical CPUs ({platform.processor() or 'cpu'}), "
             f"Python {platform.python_version()}, {args['workers']} worker processes x 1 torch thread; "
             f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.  Wall time {wall / 60:.1f} min.",
             f"Seeds {args['seeds']}; pretrain {args['pretrain_epochs']} epochs, fine-tune {args['finetune_epochs']} "
             f"epochs (cycle {args['cycle_epochs']} epoch), from-scratch baselines "
             f"{args['pretrain_epochs'] + args['finetune_epochs']} epochs; lr {args['lr']}; batch 50; "
             f"GloVe 6B 50-d top-2446 partial file.", ""]
    cells = sorted({(r["dataset"], r["arch"]) for r in rows})
    lines += ["### Accuracy (%) vs compression, SVD + fine-tuning with CALR", "",
              "| data | model | uncompressed | uncompressed + fine-tune | " + " | ".join(f"p={p}" for p in args["compressions"])
              + f" | p={p9} no fine-tune |", "|---|---|---|---|" + "---|" * (len(args["compressions"]) + 1)]
    for ds, arch in cells:
        lines.append(f"| {ds} | {arch} | {fmt(acc(dataset=ds, arch=arch, method='uncompressed'))} | "
                     f"{fmt(acc(dataset=ds, arch=arch, method='uncompressed_same_budget'))} | "
                     + " | ".join(fmt(acc(dataset=ds, arch=arch, method="svd_finetune", compression=p,
                                          scheduler="calr")) for p in args["compressions"])
                     + f" | {fmt(acc(dataset=ds, arch=arch, method='svd_no_finetune', compression=p9))} |")
    lines += ["", f"### Methods at p = {p9} (equal embedding parameters) and quantization (own size)", "",
              "| data | model | SVD+CALR | SVD no FT | compress-before-training | small embedding | fp16 | int8 | int4 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for ds, arch in cells:
        m = dict(dataset=ds, arch=arch)
        lines.append(f"| {ds} | {arch} | {fmt(acc(**m, method='svd_finetune', compression=p9, scheduler='calr'))} | "
                     f"{fmt(acc(**m, method='svd_no_finetune', compression=p9))} | "
                     f"{fmt(acc(**m, method='svd_before_training'))} | {fmt(acc(**m, method='small_embedding'))} | "
                     f"{fmt(acc(**m, method='quant_fp16'))} | {fmt(acc(**m, method='quant_int8'))} | "
                     f"{fmt(acc(**m, method='quant_int4'))} |")
    qb = collections.defaultdict(list)
    for r in rows:
        if r["method"].startswith("quant"):
            qb[r["method"]].append(r["compression"])
    lines += ["", "Embedding bytes removed by quantization: "
              + ", ".join(f"{k} {np.mean(v):.1%}" for k, v in sorted(qb.items()))
              + f"; the SVD factorization at p={p9} removes at least {p9:.0%} of the embedding's parameters "
              "(and float32 bytes) by the rank formula.", ""]
    lines += [f"### Scheduler ablation at p = {p9} (fine-tuning from the same factorized start)", "",
              "| data | model | " + " | ".join(SCHEDULERS) + " |", "|---|---|" + "---|" * len(SCHEDULERS)]
    for ds, arch in cells:
        lines.append(f"| {ds} | {arch} | " + " | ".join(
            fmt(acc(dataset=ds, arch=arch, method="svd_finetune", compression=p9, scheduler=s)) for s in SCHEDULERS)
            + " |")
    # targets
    lines += ["", "### Targets", ""]
    for ds, arch in cells:
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
        sched = {n: acc(**m, method="svd_finetune", compression=p9, scheduler=n) for n in SCHEDULERS}
        sched_ok = all(sched["calr"][0] > sched[n][0] for n in ("constant", "clr") if sched[n])
        lines.append(f"- {ds}/{arch}: within 1 point of uncompressed at p={p9}: "
                     f"{'MET' if gap <= 1.0 else 'MISSED'} (SVD+CALR {s[0]:.1f} vs best uncompressed {u[0]:.1f}: {-gap:+.1f} points); beats equal-size baselines: "
                     f"{'MET' if len(beaten) == len(base_names) else 'MISSED'} (beats {', '.join(beaten) or 'none'}); "
                     f"CALR > constant and CLR: {'MET' if sched_ok else 'MISSED'}.")
    total_cell = sum(cell_seconds.values())
    verdict = "UNKNOWN (partial run)" if wall != wall else ("MET" if wall <= 1800 else "MISSED")
    lines += ["", f"- Whole benchmark within 30 min on 2 cores: {verdict} "
              f"({wall / 60:.1f} min wall, {total_cell / 60:.1f} worker-min; the machine was shared with other jobs)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the grid (or rebuild the summary) and write the results; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--archs", nargs="+", default=["lstm", "dan"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--compressions", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95])
    ap.add_argument("--ablation-p", type=float, default=0.9)
    ap.add_argument("--pretrain-epochs", type=int, default=3)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--cycle-epochs", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--latency-repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--from-results", action="store_true",
                    help="only rebuild the summary from the per-cell files in benchmarks/results/compress/ "
                         "(e.g. after an interrupted run; the wall time is then unknown)")
    a = vars(ap.parse_args(argv))
    if a["from_results"]:
        rows, secs = [], {}
        for f in sorted((OUT / "compress").glob("*.json")):
            res = json.loads(f.read_text())
            rows += res["rows"]
            secs[f.stem] = res["seconds"]
        summary = summarize(rows, a, float("nan"), secs)
        summary += f"\nPartial summary rebuilt from {len(secs)} cell files: {', '.join(sorted(secs))}.\n"
        (OUT / "compress_summary.md").write_text(summary)
        print(summary)
        return 0
    if not (DATA / "text").is_dir():
        print(f"skipping: {DATA / 'text'} not found (the shared datasets are not beside this checkout)",
              file=sys.stderr)
        return 0
    (OUT / "compress").mkdir(parents=True, exist_ok=True)
    # the most expensive cells first so the two workers finish together
    cost = {"sst2": 2, "snips": 2, "trec": 1}
    tasks = sorted(({**a, "dataset": d, "arch": m, "seed": s} for d in a["datasets"] for m in a["archs"]
                    for s in a["seeds"]), key=lambda t: -(cost[t["dataset"]] * (3 if t["arch"] == "lstm" else 1)))
    start = time.perf_counter()
    rows, secs = [], {}
    with ProcessPoolExecutor(max_workers=a["workers"]) as pool:
        for task, res in zip(tasks, pool.map(run_cell, tasks), strict=True):
            name = f"{task['dataset']}_{task['arch']}_{task['seed']}"
            (OUT / "compress" / f"{name}.json").write_text(json.dumps(res, indent=1))
            rows += res["rows"]
            secs[name] = res["seconds"]
            print(f"{name}: {res['seconds']:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    summary = summarize(rows, a, wall, secs)
    (OUT / "compress_rows.json").write_text(json.dumps({"args": a, "rows": rows, "cell_seconds": secs,
                                                        "wall_seconds": wall}, indent=1))
    (OUT / "compress_summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
