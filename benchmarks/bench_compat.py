"""Benchmark `toolkit train-compatible`: every method on MNIST / Omniglot update scenarios, several seeds.

For each scenario and seed an old model is trained once (method ``none`` run), then every method trains
a new model against that same old checkpoint.  Reported per scenario x method (mean ± std over seeds):
ER_old, ER_new, NFR, relative NFR (with the mean of the per-seed bootstrap 95% CI bounds), PFR, the BCT
retrieval criterion (seeds passing) and the new model's training CPU time relative to ``none`` (same seed).

Usage:
    .venv/bin/python benchmarks/bench_compat.py                      # all scenarios, 3 seeds
    .venv/bin/python benchmarks/bench_compat.py --scenarios mnist_arch --seeds 0

Writes ``benchmarks/results/compat.json`` (raw per-run metrics) and ``benchmarks/results/compat.md``.
Needs ../shared/data (MNIST IDX, Omniglot zips).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

METHODS = ["none", "naive", "bct", "fd-kl", "fd-lm", "bct+fd"]

# Scenario overrides (MNIST is subsampled so the whole benchmark fits ~15 minutes on 2 shared cores).
COMMON = ["trainer.progress=false", "bootstrap.n=1000", "retrieval.max_samples=2000", "train.batch_size=256"]
SCENARIOS: dict[str, dict] = {
    "mnist_seed": {
        "desc": "MNIST (6k train / 3k test subsample): old and new MLP-256/64 on 100% of train, "
                "different seeds (PCT paper Table 2a setting)",
        "overrides": ["data=compat_mnist", "data.max_train=6000", "data.max_test=3000", "train.epochs=8",
                      "old.kwargs.hidden=256", "old.kwargs.embed_dim=64", "old.train_fraction=1.0"],
    },
    "mnist_arch": {
        "desc": "MNIST (6k train / 3k test subsample): old MLP-64/32 on 50% of train, new MLP-256/64 on 100%",
        "overrides": ["data=compat_mnist", "data.max_train=6000", "data.max_test=3000", "train.epochs=8",
                      "old.kwargs.hidden=64", "old.kwargs.embed_dim=32", "old.train_fraction=0.5"],
    },
    "mnist_newclasses": {
        "desc": "MNIST (6k/3k): old MLP-64/32 on digits 0-4 (50%), new MLP-256/64 on all 10 digits",
        "overrides": ["data=compat_mnist", "data.max_train=6000", "data.max_test=3000", "train.epochs=8",
                      "old.kwargs.hidden=64", "old.kwargs.embed_dim=32", "old.train_fraction=0.5",
                      "old.classes=[0,1,2,3,4]"],
    },
    "omniglot_arch": {
        "desc": "Omniglot small1 (136-way, 15 train / 5 test per character): old MLP-128/64 on 50%, "
                "new MLP-512/128 on 100%",
        "overrides": ["data=compat_omniglot", "train.epochs=25", "train.batch_size=128", "model=mlp",
                      "model.kwargs.hidden=512", "model.kwargs.embed_dim=128", "old.kwargs.hidden=128",
                      "old.kwargs.embed_dim=64", "old.train_fraction=0.5"],
    },
}


def _patch_data_cache() -> None:
    """Load each dataset split once per process (the command reloads it per run otherwise)."""
    from omegaconf import OmegaConf

    import toolkit.compat.data as data_mod

    original = data_mod.load_split

    @functools.lru_cache(maxsize=8)
    def cached(key: str, seed: int):
        return original(OmegaConf.create(json.loads(key)), seed)

    def load_split(data_cfg, seed=0):
        return cached(json.dumps(OmegaConf.to_container(data_cfg, resolve=True), sort_keys=True), seed)

    data_mod.load_split = load_split


def run_one(overrides: list[str], out: Path) -> dict:
    from toolkit.compat.command import run
    from toolkit.config import compose_config
    from toolkit.runtime import execute

    cfg = compose_config("train_compatible", overrides + [f"output_dir={out}"])
    return execute("train-compatible", cfg, run)


def summarise(rows: list[dict]) -> str:
    """Markdown table: mean ± std over seeds of every rate, and the mean per-seed bootstrap 95% CI bounds of
    ER_new, NFR and relative NFR (in %)."""
    lines = ["| scenario | method | ER_old | ER_new | ER_new 95% CI | NFR | NFR 95% CI | rel NFR | rel NFR 95% CI | "
             "PFR | BCT criterion | train CPU time / none |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    scen = sorted({r["scenario"] for r in rows}, key=list(SCENARIOS).index)
    for s in scen:
        for m in METHODS:
            rs = [r for r in rows if r["scenario"] == s and r["method"] == m]
            if not rs:
                continue

            def ms(key, rs=rs):
                v = 100 * np.array([r[key] for r in rs], dtype=float)
                return f"{v.mean():.2f}±{v.std():.2f}" if len(v) > 1 else f"{v.mean():.2f}"

            def ci(key, rs=rs):
                c = np.array([r["ci95"][key] for r in rs], dtype=float) * 100
                return f"[{c[:, 0].mean():.2f}, {c[:, 1].mean():.2f}]"

            crit = [r["bct_criterion"] for r in rs if r.get("bct_criterion")]
            crit_s = (f"{sum(c['pass'] for c in crit)}/{len(crit)} "
                      f"({np.mean([c['new_old'] or 0 for c in crit]) * 100:.1f} vs "
                      f"{np.mean([c['old_old'] for c in crit]) * 100:.1f})") if crit else "n/a"
            if crit and all(c["new_old"] is None for c in crit):
                crit_s = "n/a (spaces differ)"
            ratio = np.mean([r["time_ratio"] for r in rs])
            lines.append(f"| {s} | {m} | {ms('er_old')} | {ms('er_new')} | {ci('er_new')} | {ms('nfr')} | "
                         f"{ci('nfr')} | {ms('rel_nfr')} | {ci('rel_nfr')} | {ms('pfr')} | {crit_s} | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="*", default=METHODS)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--extra", nargs="*", default=[], help="extra overrides for every run, e.g. fd.beta=1")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # the machine's 2 cores are shared with other jobs; avoid oversubscription
    from toolkit import console

    console.set_quiet(True)
    _patch_data_cache()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_path = out_dir / "compat.json"
    rows: list[dict] = []
    start = time.perf_counter()
    for s in args.scenarios:
        spec = SCENARIOS[s]
        for seed in args.seeds:
            base = out_dir / "compat_runs" / s / f"seed{seed}"
            none_time = None
            for m in ["none"] + [m for m in args.methods if m != "none"]:
                ov = COMMON + spec["overrides"] + list(args.extra) + [f"seed={seed}", f"method={m}"]
                if m != "none":
                    ov.append(f"old.checkpoint={base / 'none' / 'old_model.pt'}")
                t0 = time.perf_counter()
                doc = run_one(ov, base / m)
                met = doc["metrics"]
                train_t = doc["timings_s"]["train"]
                # the ratio uses CPU time of the training stage: wall time also counts other jobs on the cores
                train_cpu = doc["cpu_timings_s"]["train"]
                none_time = train_cpu if m == "none" else none_time
                row = {"scenario": s, "seed": seed, "method": m, "wall_s": time.perf_counter() - t0,
                       "train_s": train_t, "train_cpu_s": train_cpu,
                       "time_ratio": train_cpu / none_time,
                       **{k: met[k] for k in ("er_old", "er_new", "nfr", "pfr", "rel_nfr", "ci95", "n",
                                              "old_correct_train_fraction")},
                       "bct_criterion": met.get("bct_criterion"), "retrieval": met.get("retrieval"),
                       "old_classes": met.get("old_classes")}
                rows.append(row)
                print(f"[{time.perf_counter() - start:6.0f}s] {s} seed={seed} {m:7s} ER_old={100 * row['er_old']:.2f} "
                      f"ER_new={100 * row['er_new']:.2f} NFR={100 * row['nfr']:.2f} "
                      f"relNFR={100 * row['rel_nfr']:.2f} train={train_t:.1f}s", flush=True)
                raw_path.write_text(json.dumps({"rows": rows}, indent=1))
    table = summarise(rows)
    meta = (f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by benchmarks/bench_compat.py on "
            f"{platform.machine()} Linux, {os.cpu_count()} CPU cores shared with other jobs, torch 1 thread; "
            f"seeds {args.seeds}; total {time.perf_counter() - start:.0f} s.")
    scen_lines = "\n".join(f"- `{s}`: {SCENARIOS[s]['desc']}" for s in args.scenarios)
    (out_dir / "compat.md").write_text(f"{meta}\n\n{scen_lines}\n\n{table}\n")
    raw_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\n{meta}\n\n{scen_lines}\n\n{table}")


if __name__ == "__main__":
    main()
