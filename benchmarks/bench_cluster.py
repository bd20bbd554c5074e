"""Benchmark `toolkit cluster`: Hi-LANDER vs baselines on real data, and inference at scale.

Usage (from the repository root, after `make install`):

    .venv/bin/python benchmarks/bench_cluster.py                       # digits, omniglot, mnist
    .venv/bin/python benchmarks/bench_cluster.py --datasets digits
    .venv/bin/python benchmarks/bench_cluster.py --scale 1000000       # 1M x 128-d inference only

Every method runs through the real CLI (`toolkit cluster ... --json`) in its own process, so wall time and
peak RSS are per run.  Image datasets share one cached encoder/feature set (same output_dir cache).
Results: benchmarks/results/cluster.json (rows of rerun datasets are replaced, others kept) and a markdown table on stdout (paste into docs/cluster.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data"
METHODS = ["hilander", "kmeans", "hac", "dbscan", "hdbscan", "auto"]
DATASETS = {
    "digits": [],
    "omniglot": ["data=omniglot", f"data.root={DATA / 'omniglot'}"],
    # the paper's setting: 964 meta-training characters (30 alphabets), 659 unseen characters (20 other alphabets)
    "omniglot-full": ["data=omniglot-full", f"data.root={DATA / 'omniglot'}"],
    # Extended Yale B, 19 -> 19 disjoint people, pretrained dlib face embeddings (needs the faces extra)
    "faces": ["data=faces", f"data.root={DATA / 'faces'}", "encoder=dlib-face"],
    "mnist": ["data=mnist", f"data.root={DATA / 'mnist'}", "encoder.epochs=4"],  # 30k images: 4 epochs fit the time budget
    # ablation: encoder/meta-training split by class instead of by alphabet (see docs/cluster.md)
    "omniglot-class-split": ["data=omniglot", f"data.root={DATA / 'omniglot'}", "encoder.split_by=class"],
}
# ablations of our two departures from the reference's training/tau protocol (docs/cluster.md), Hi-LANDER only;
# the Omniglot ones reuse the encoder features cached by the `omniglot` rows of the same seed
for _name in ("digits", "omniglot"):
    DATASETS[f"{_name}-tau-heldout"] = [*DATASETS[_name], "model.train.tau_on=heldout"]
    DATASETS[f"{_name}-20-steps"] = [*DATASETS[_name], "model.train.min_steps=0"]
# ablation of issue 9's fix: the reference's upper levels (kNN of the peaks' own features) and no rotation
for _name in ("digits", "omniglot-full"):
    DATASETS[f"{_name}-reference-levels"] = [*DATASETS[_name], "model.knn_on=peak", "model.train.rotate=false"]
# ablation of the relational edge features (docs/cluster.md): the linkage head sees the edge cosine only
for _name in ("digits", "omniglot-full"):
    DATASETS[f"{_name}-cosine-edge"] = [*DATASETS[_name], "model.edge_features=[cosine]"]
# training levels decoded so that half of the would-be children keep their parent (fragments like inference's):
# the default since 2026-12-03 (these rows were measured before it was); -decode-all is the reference protocol
for _name in ("digits", "omniglot-full"):
    DATASETS[f"{_name}-decode-half"] = [*DATASETS[_name], "model.train.decode_keep=0.5"]
    DATASETS[f"{_name}-decode-all"] = [*DATASETS[_name], "model.train.decode_keep=1.0"]
# the encoder trained with a CosFace margin head (docs/cluster.md, "Encoder head"): its own encoder, so its own cache
DATASETS["omniglot-full-cosine-head"] = [*DATASETS["omniglot-full"], "encoder.head=cosine"]
# levels >= 1 with their own threshold, tuned on the meta-training classes with level 0's tau fixed
# (model.infer.tau_upper=auto; docs/cluster.md, "One threshold for every level"); Hi-LANDER only, cached encoders
# since 2026-12-04 the defaults are tau_upper=auto and singletons=attach; these rows spell every setting out:
# -one-threshold (the reference: tau at every level, singletons kept), -tau-upper (joint grid, singletons kept),
# -attach (joint grid, singletons attached = the defaults)
for _name in ("digits", "omniglot", "mnist", "omniglot-full", "omniglot-full-cosine-head"):
    DATASETS[f"{_name}-one-threshold"] = [*DATASETS[_name], "model.infer.tau_upper=same", "model.infer.singletons=keep"]
    DATASETS[f"{_name}-tau-upper"] = [*DATASETS[_name], "model.infer.tau_upper=auto", "model.infer.singletons=keep"]
    DATASETS[f"{_name}-attach"] = [*DATASETS[_name], "model.infer.tau_upper=auto", "model.infer.singletons=attach"]
# early model selection on the held-out meta-training classes (model.train.select_best=true: the epoch with the
# lowest unbalanced loss on them); Hi-LANDER only, cached encoders (docs/cluster.md, "Early stopping")
# -select-level0: the epoch of the minimum of the level-0 held-out loss (the defaults, spelled out); -select-hierarchy:
# the loss over the held-out classes' whole training hierarchy, the earliest epoch within one standard error of its
# minimum, stop 100 epochs after the last new minimum (measured 2026-12-07 night, not adopted: docs/cluster.md)
for _name in ("digits", "omniglot", "mnist", "omniglot-full", "faces"):
    DATASETS[f"{_name}-select-level0"] = [*DATASETS[_name], "model.train.select_best=true",
                                          "model.train.select_on=level0", "model.train.select_se=0",
                                          "model.train.select_patience=0"]
    DATASETS[f"{_name}-select-hierarchy"] = [*DATASETS[_name], "model.train.select_best=true",
                                             "model.train.select_on=hierarchy", "model.train.select_se=1",
                                             "model.train.select_patience=100"]
# -refit: the level-0 minimum, then the GNN trained again on every meta-training class for that many epochs
# (model.train.refit=true: thresholds tuned on the refit model; docs/cluster.md, "Refit")
for _name in ("digits", "omniglot", "mnist", "omniglot-full", "faces"):
    DATASETS[f"{_name}-refit"] = [*DATASETS[_name], "model.train.select_best=true", "model.train.select_on=level0",
                                  "model.train.select_se=0", "model.train.select_patience=0", "model.train.refit=true"]
ONLY_METHODS = {**{f"{n}-{a}": ["hilander"] for n in ("digits", "omniglot", "mnist", "omniglot-full",
                                                       "omniglot-full-cosine-head")
                   for a in ("attach", "tau-upper", "one-threshold")},
                "omniglot-class-split": ["hilander", "hac"], "omniglot-full-cosine-head": ["hilander", "hac"],
                **{f"{n}-{a}": ["hilander"] for n in ("digits", "omniglot") for a in ("tau-heldout", "20-steps")},
                **{f"{n}-{a}": ["hilander"] for n in ("digits", "omniglot-full")
                   for a in ("reference-levels", "cosine-edge", "decode-half", "decode-all")},
                **{f"{n}-{a}": ["hilander"] for n in ("digits", "omniglot", "mnist", "omniglot-full", "faces")
                   for a in ("select-hierarchy", "select-level0", "refit")}}
CACHE_OF = {"omniglot-tau-heldout": "omniglot", "omniglot-20-steps": "omniglot",
            "omniglot-full-reference-levels": "omniglot-full", "omniglot-full-cosine-edge": "omniglot-full",
            "omniglot-full-decode-half": "omniglot-full", "omniglot-full-decode-all": "omniglot-full",
            "omniglot-full-tau-upper": "omniglot-full", "omniglot-tau-upper": "omniglot",
            "omniglot-full-cosine-head-tau-upper": "omniglot-full-cosine-head",
            "omniglot-full-attach": "omniglot-full", "omniglot-attach": "omniglot",
            "mnist-tau-upper": "mnist", "mnist-attach": "mnist", "mnist-one-threshold": "mnist",
            "omniglot-one-threshold": "omniglot", "omniglot-full-one-threshold": "omniglot-full",
            "omniglot-full-cosine-head-one-threshold": "omniglot-full-cosine-head",
            "omniglot-full-cosine-head-attach": "omniglot-full-cosine-head",
            **{f"{n}-{a}": n for n in ("omniglot", "mnist", "omniglot-full", "faces")
               for a in ("select-hierarchy", "select-level0", "refit")}}
ONE_SEED = {"omniglot-class-split"}  # one seed only (an encoder per seed; an ablation, not a headline row)


def run_cli(args: list[str]) -> tuple[dict, float, float]:
    """Run `toolkit cluster args --json` in a child process; return (document, wall s, child peak RSS MiB)."""
    start = time.perf_counter()
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "toolkit"), "cluster", *args, "--json", "-q"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"toolkit cluster {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return json.loads(proc.stdout), wall, rss


def heldout_f(m: dict) -> float | None:
    """Pairwise F on the tuning (meta-training) classes at the chosen thresholds, from a run's metrics."""
    tau = str(m.get("tau"))
    if "joint_scores" in m:
        upper = m.get("tau_upper")
        return m["joint_scores"].get(tau, {}).get(tau if upper is None else str(upper))
    return (m.get("tau_scores") or {}).get(tau)


def bench_dataset(name: str, methods: list[str], seed: int = 0) -> list[dict]:
    """Every method on one dataset with one seed (the seed sets the encoder/meta split, the held-out classes
    and the initialisations); image datasets share one cached encoder per seed."""
    rows = []
    cache_dir = RESULTS / "runs" / CACHE_OF.get(name, name) / f"seed{seed}" / "cache"
    for method in [m for m in methods if m in ONLY_METHODS.get(name, methods)]:
        out = RESULTS / "runs" / name / f"seed{seed}" / method
        args = [*DATASETS[name], f"seed={seed}", f"method={method}", "plot=false", f"output_dir={out}"]
        if method == "hilander":
            args.insert(-1, "model.infer.oracle_tau=true")  # diagnostic: best tau on the test labels
        if not name.startswith("digits"):
            # reuse the encoder features trained once for this dataset
            args[-1] = f"output_dir={cache_dir}"
        doc, wall, _ = run_cli(args)
        m = doc["metrics"]
        rows.append({"dataset": name, "method": method, "seed": seed, "pairwise_f": m.get("pairwise_f"),
                     "pairwise_precision": m.get("pairwise_precision"), "pairwise_recall": m.get("pairwise_recall"),
                     "bcubed_f": m.get("bcubed_f"), "nmi": m.get("nmi"), "ari": m.get("ari"),
                     "num_clusters": m["num_clusters"], "num_classes": m.get("num_classes"),
                     "num_clusters_90": m.get("num_clusters_90"),
                     "param": m.get("tau", m.get("param", m.get("k"))), "seconds": wall,
                     # pairwise F on the held-out meta-training classes at the chosen tau (Hi-LANDER only)
                     # (with model.infer.tau_upper=auto: of the chosen (tau, tau_upper) pair of the joint grid)
                     "heldout_pairwise_f": heldout_f(m),
                     "command_seconds": doc["timings_s"]["total"],
                     # edge scores vs threshold (issue 9): ROC-AUC of P(same) and of the cosine on the test
                     # level-0 kNN edges, and the best tau on the test labels beside the chosen one
                     **{k: (m.get("diagnostics") or {}).get(k) for k in
                        ("edge_auc_gnn", "edge_auc_cosine", "edge_same_class_share", "oracle_tau",
                         "oracle_pairwise_f", "oracle_tau_upper", "oracle_tau_upper_pairwise_f",
                         "tau_upper_pairwise_f", "oracle_joint_tau", "oracle_joint_tau_upper",
                         "oracle_joint_pairwise_f")},
                     # threshold of levels >= 1 (None: tau) and the clusters each level leaves
                     "tau_upper": m.get("tau_upper"),
                     "level_clusters": [lv["clusters"] for lv in m.get("levels", [])],
                     "chosen_method": m.get("chosen_method"),
                     "auto_heldout_pairwise_f": m.get("auto_heldout_pairwise_f"),
                     "auto_choice_bootstrap_wins": m.get("auto_choice_bootstrap_wins"),
                     # the image encoder is trained once per dataset and seed (first method), then cached
                     "encoder_seconds": doc["timings_s"].get("encoder", 0.0),
                     "peak_rss_mb": max(doc["peak_rss_mb"].values())})
        print(f"{name:9s} seed={seed} {method:9s} Fp={m.get('pairwise_f', float('nan')):.3f} "
              f"Fb={m.get('bcubed_f', float('nan')):.3f} clusters={m['num_clusters']} {wall:.0f}s", file=sys.stderr)
    return rows


def bench_scale(n: int, dim: int = 128, classes: int = 10_000, seed: int = 0) -> dict:
    """Inference-only Hi-LANDER on ``n`` points of a ``classes``-component Gaussian mixture with varied spreads.

    The model is meta-trained on a separate mixture of 1,000 other classes x 20 points (20k points), then the
    saved checkpoint clusters the ``n`` test points (tau stored in the checkpoint).
    """
    import numpy as np

    rng = np.random.default_rng(seed)

    def mixture(num_classes: int, m: int) -> tuple:
        centres = rng.normal(size=(num_classes, dim)).astype(np.float32)
        spreads = rng.uniform(0.3, 0.9, size=num_classes).astype(np.float32)
        y = rng.integers(0, num_classes, m)
        x = np.empty((m, dim), np.float32)
        for start in range(0, m, 100_000):
            sl = slice(start, start + 100_000)
            x[sl] = centres[y[sl]] + spreads[y[sl], None] * rng.standard_normal((len(y[sl]), dim), np.float32)
        return x, y

    work = RESULTS / "scale"
    work.mkdir(parents=True, exist_ok=True)
    tx, ty = mixture(1_000, 20_000)
    np.save(work / "tr.npy", tx)
    np.save(work / "tr_y.npy", ty)
    sx, sy = mixture(classes, n)
    np.save(work / "te.npy", sx)
    np.save(work / "te_y.npy", sy)
    del sx, sy
    train = ["data=features", f"data.train_features={work}/tr.npy", f"data.train_labels={work}/tr_y.npy",
             f"data.test_features={work}/tr.npy", f"data.test_labels={work}/tr_y.npy", "plot=false",
             "method=hilander"]  # the scale run measures Hi-LANDER itself, not method=auto's candidates
    train_doc, train_wall, _ = run_cli([*train, f"output_dir={work}/train"])
    infer = ["data=features", f"data.train_features={work}/tr.npy", f"data.train_labels={work}/tr_y.npy",
             f"data.test_features={work}/te.npy", f"data.test_labels={work}/te_y.npy", "plot=false",
             f"model.checkpoint={work}/train/model.ckpt", "model.infer.tau=auto", "method=hilander"]
    doc, wall, _ = run_cli([*infer, f"output_dir={work}/infer"])
    return {"points": n, "dim": dim, "classes": classes, "train_wall_seconds": train_wall,
            "tau": doc["metrics"]["tau"], "wall_seconds": wall, "timings_s": doc["timings_s"],
            "peak_rss_mb": doc["peak_rss_mb"], "pairwise_f": doc["metrics"]["pairwise_f"],
            "bcubed_f": doc["metrics"]["bcubed_f"], "num_clusters": doc["metrics"]["num_clusters"],
            "levels": doc["metrics"]["levels"]}


def bench_metrics(n: int = 584_013, classes: int = 8_573, repeats: int = 3) -> dict:
    """Seconds for pairwise F and BCubed F on MS1M part1_test-sized random labels (reference BCubed: 20.8 s)."""
    import numpy as np

    from toolkit.cluster.metrics import bcubed_f, pairwise_f

    rng = np.random.default_rng(0)
    truth = rng.integers(0, classes, n)
    pred = np.where(rng.random(n) < 0.8, truth, rng.integers(0, classes, n))
    out = {"points": n, "classes": classes}
    for name, fn in [("pairwise_s", pairwise_f), ("bcubed_s", bcubed_f)]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(truth, pred)
            times.append(time.perf_counter() - start)
        out[name] = min(times)
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ms(values: list[float], digits: int = 3) -> str:
    """``mean ± std`` over seeds (just the value for one seed)."""
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def table(rows: list[dict]) -> str:
    """Markdown table, one line per dataset and method, mean ± std over seeds.  Time is the command's wall time
    without the image encoder's training (reported in its own column, once per dataset and seed).  Clusters:
    the mean number, and in parentheses the mean ``num_clusters_90`` (the largest clusters holding 90% of the
    points) when every row has it."""
    lines = ["| dataset | method | seeds | pairwise F | (P / R) | BCubed F | NMI | clusters / classes | param | "
             "held-out F | time (s) | encoder (s) | peak RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["dataset"], r["method"]) for r in rows))
    for dataset, method in keys:
        rs = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
        col = lambda k, rs=rs: [r[k] for r in rs]  # noqa: E731
        held = [r["heldout_pairwise_f"] for r in rs if r.get("heldout_pairwise_f") is not None]
        enc = [r.get("encoder_seconds", 0.0) for r in rs]
        c90 = [r["num_clusters_90"] for r in rs if r.get("num_clusters_90") is not None]
        clusters = f"{np.mean(col('num_clusters')):.0f}" + (f" ({np.mean(c90):.0f})" if len(c90) == len(rs) else "")
        timing = (f"{np.mean([r['seconds'] - r.get('encoder_seconds', 0.0) for r in rs]):.0f} | {np.mean(enc):.0f}"
                  if max(enc) > 0 else f"{np.mean(col('seconds')):.0f} | -")
        lines.append(
            f"| {dataset} | {method} | {len(rs)} | {_ms(col('pairwise_f'))} | "
            f"({np.mean(col('pairwise_precision')):.2f} / {np.mean(col('pairwise_recall')):.2f}) | "
            f"{_ms(col('bcubed_f'))} | {np.mean(col('nmi')):.3f} | {clusters} / {rs[0]['num_classes']} | "
            f"{', '.join(str(p) for p in col('param'))} | {_ms(held) if held else '-'} | {timing} | "
            f"{max(col('peak_rss_mb')):.0f} |")
    return "\n".join(lines)


def bench_knn_recall(n: int = 50_000, dim: int = 128, classes: int = 1_000, k: int = 10, seed: int = 0) -> dict:
    """Recall@(k-1) of the default HNSW settings (configs/cluster/model/hilander.yaml) against exact faiss search, and
    both search times, on a Gaussian mixture of ``n`` unit vectors (the size where HNSW takes over)."""
    from omegaconf import OmegaConf

    from toolkit.cluster.knn import knn_search, l2_normalize
    from toolkit.config import config_dir

    knn_cfg = OmegaConf.load(config_dir() / "cluster" / "model" / "hilander.yaml").knn
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    x = l2_normalize(centres[rng.integers(0, classes, n)] + 0.6 * rng.standard_normal((n, dim), np.float32))
    start = time.perf_counter()
    exact, _ = knn_search(x, k, exact_max_points=n)
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    approx, _ = knn_search(x, k, exact_max_points=0, hnsw_m=int(knn_cfg.hnsw_m),
                           ef_search=int(knn_cfg.hnsw_ef_search), ef_construction=int(knn_cfg.hnsw_ef_construction))
    hnsw_s = time.perf_counter() - start
    hits = sum(len(np.intersect1d(a[a >= 0], e)) for a, e in zip(approx, exact, strict=True))
    return {"points": n, "dim": dim, "k": k, "hnsw_m": int(knn_cfg.hnsw_m), "ef_search": int(knn_cfg.hnsw_ef_search),
            "ef_construction": int(knn_cfg.hnsw_ef_construction), "recall": hits / exact.size,
            "exact_s": exact_s, "hnsw_s": hnsw_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits,omniglot,mnist,omniglot-class-split,digits-tau-heldout,"
                        "digits-20-steps,omniglot-tau-heldout,omniglot-20-steps")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2", help="seeds per dataset (MNIST: --mnist-seeds)")
    parser.add_argument("--mnist-seeds", default="0", help="MNIST trains a 30k-image encoder per seed")
    parser.add_argument("--scale", type=int, default=0, help="also run inference on this many points")
    parser.add_argument("--no-datasets", action="store_true", help="only the --scale run")
    parser.add_argument("--table-only", action="store_true", help="print the table of the stored results")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "cluster.json"
    result = json.loads(out.read_text()) if out.exists() else {"rows": []}
    if args.table_only:
        print(table(result["rows"]))
        return
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d")}
    result["meta"] = meta
    for name in [] if args.no_datasets else [d for d in args.datasets.split(",") if d]:
        if not name.startswith("digits") and not DATA.exists():
            print(f"skipping {name}: {DATA} not found", file=sys.stderr)
            continue
        seeds = args.mnist_seeds if name.startswith("mnist") else args.seeds.split(",")[0] if name in ONE_SEED else args.seeds
        # rows of a rerun (dataset, seed) replace the stored ones; the file is re-read before every write, so
        # two invocations on different datasets can run side by side
        for seed in [int(s) for s in seeds.split(",") if s]:
            rows = bench_dataset(name, args.methods.split(","), seed)
            stored = json.loads(out.read_text()) if out.exists() else {"rows": []}
            done = {r["method"] for r in rows}
            result["rows"] = [r for r in stored.get("rows", []) if not (r["dataset"] == name and r["seed"] == seed
                                                                           and r["method"] in done)] + rows
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(result, indent=2))
            tmp.replace(out)
    result["metrics_speed"] = bench_metrics()
    print(f"metrics on 584,013 points: {result['metrics_speed']}", file=sys.stderr)
    result["knn_recall"] = bench_knn_recall()
    print(f"HNSW vs exact kNN: {result['knn_recall']}", file=sys.stderr)
    if args.scale:
        result["scale"] = bench_scale(args.scale)
    if out.exists():  # rows another invocation stored meanwhile
        result["rows"] = json.loads(out.read_text()).get("rows", result["rows"])
    out.write_text(json.dumps(result, indent=2))
    print(table(result["rows"]))
    if "scale" in result:
        print(json.dumps(result["scale"], indent=2))


if __name__ == "__main__":
    main()
