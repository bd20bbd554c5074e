"""Benchmark `toolkit train-compatible`: every method on MNIST / Omniglot update scenarios, several seeds.

For each scenario and seed an old model is trained once (method ``none`` run), then every method trains
a new model against that same old checkpoint.  Reported per scenario x method (mean ± std over seeds):
ER_old, ER_new, NFR, relative NFR (with the mean of the per-seed bootstrap 95% CI bounds), PFR, the BCT
retrieval criterion (seeds passing) and the new model's training CPU time relative to ``none`` (same seed).

Usage:
    .venv/bin/python benchmarks/bench_compat.py                      # all scenarios, 3 seeds, one run per core
    .venv/bin/python benchmarks/bench_compat.py --scenarios mnist_arch --seeds 0
    .venv/bin/python benchmarks/bench_compat.py --sweep --plan       # list the (lambda, epochs, tau) sweep
    .venv/bin/python benchmarks/bench_compat.py --sweep              # run it (SWEEP grid, FD methods)
    .venv/bin/python benchmarks/bench_compat.py --sweep --scenarios mnist_arch --seeds 0 \
        --lambdas 0.03 0.1 0.3 --sweep-epochs 8 --temperatures 100   # a small slice of it

Writes ``benchmarks/results/compat.json`` (raw per-run metrics) and ``benchmarks/results/compat.md``;
``--sweep`` writes ``compat_sweep.json`` and ``compat_sweep.md`` instead.  In the sweep each scenario
and seed trains one old model (at the scenario's epochs) and every run reuses it, so only the new
model's settings change; each (scenario, seed, epochs) has its own ``none`` reference, against which
the error cost (points) and the relative-NFR change (%) are reported.
Needs ../shared/data (MNIST IDX, Omniglot zips, the CIFAR-10 subset zip).
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

METHODS = ["none", "naive", "bct", "fd-kl", "fd-lm", "bct+fd", "ldi", "bct+ldi"]
# the table's default methods (``--methods`` may also name the LDI methods, which are not run by default)
TABLE_METHODS = ["none", "naive", "bct", "fd-kl", "fd-lm", "bct+fd"]

# The controlled sweep of the distillation settings (--sweep): every combination of these values for
# each FD method (FD-LM ignores the temperature, so it runs once per (weight, epochs)).  The weights
# are on the normalised scale (FD-LM = ½·mean over classes, the same size as FD-KL at tau = 100).
SWEEP: dict[str, list] = {
    "fd.weight": [0.01, 0.03, 0.1, 0.3, 1.0],
    "train.epochs": [8, 24],
    "fd.temperature": [4.0, 20.0, 100.0],
}
SWEEP_METHODS = ["fd-kl", "fd-lm"]
# the config key each sweep method's lambda goes to (``--lambdas``)
WEIGHT_KEY = {"fd-kl": "fd.weight", "fd-lm": "fd.weight", "bct+fd": "fd.weight", "naive": "naive.weight",
              "bct": "bct.weight", "ldi": "ldi.weight", "bct+ldi": "ldi.weight"}


def weight_overrides(method: str, weight: float, temperature: float | None) -> list[str]:
    """The overrides of one sweep run: its lambda under the method's key (:data:`WEIGHT_KEY`), and tau for FD-KL."""
    return [f"{WEIGHT_KEY[method]}={weight}"] + ([f"fd.temperature={temperature}"] if temperature is not None else [])

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
                      "model.hidden=512", "model.embed_dim=128", "old.kwargs.hidden=128",
                      "old.kwargs.embed_dim=64", "old.train_fraction=0.5"],
    },
    "cifar10_arch": {
        "desc": "CIFAR-10 subset (1,000 train / 300 test JPEGs per class): old Conv-4 (width 32) on 50% of "
                "train, new ResNet (width 16, 3 stages) on 100%, 6 epochs each (experiment=compat_cifar10)",
        "overrides": ["experiment=compat_cifar10", "train.epochs=6"],
        # issue 10's CIFAR-10 table is none / bct / fd-kl / fd-lm / bct+fd; naive costs 3 ResNet runs (~10 min)
        "skip_methods": ["naive"],
    },
}


# metrics.json fields copied into every benchmark row
ROW_METRICS = ("er_old", "er_new", "nfr", "pfr", "rel_nfr", "ci95", "n", "old_correct_train_fraction")


def _provenance(flag: str, seeds, start: float, settings: str = "") -> str:
    """One line saying when, where and how a results file was generated (``flag``: extra CLI flag)."""
    return (f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by benchmarks/bench_compat.py"
            f"{' ' + flag if flag else ''} on {platform.machine()} Linux, {os.cpu_count()} CPU cores shared with "
            f"other jobs, torch 1 thread; seeds {seeds}; {settings}total {time.perf_counter() - start:.0f} s.")


@functools.lru_cache(maxsize=8)
def _split(key: str, seed: int):
    """Each dataset split is loaded once per process and handed to every run (the command would reload it)."""
    from omegaconf import OmegaConf

    from toolkit.compat.data import load_split

    return load_split(OmegaConf.create(json.loads(key)), seed)


def merge(overrides: list[str], later: list[str]) -> list[str]:
    """``overrides`` followed by ``later``, dropping earlier entries whose key ``later`` sets again."""
    keys = {o.split("=", 1)[0] for o in later}
    return [o for o in overrides if o.split("=", 1)[0] not in keys] + list(later)


def run_one(overrides: list[str], out: Path) -> dict:
    from omegaconf import OmegaConf

    from toolkit.compat.task import TrainCompatible
    from toolkit.config import compose_config
    from toolkit.runtime import execute
    from toolkit.task import run_task

    cfg = compose_config("train_compatible", overrides + [f"output_dir={out}"])
    split = _split(json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True), int(cfg.seed or 0))
    return execute("train-compatible", cfg, lambda c, r: run_task(TrainCompatible(c, r, split=split)))


def _worker_init() -> None:
    """A ``--jobs`` worker: one torch thread (the jobs share the cores) and no console output from the runs."""
    import torch

    from toolkit import console

    torch.set_num_threads(1)
    console.set_quiet(True)


def run_method(scenario: str, seed: int, method: str, extra: list[str], out_dir: str) -> dict:
    """One run of ``method`` on one scenario and seed; every method but ``none`` loads the old model that the
    group's ``none`` run trained (so ``none`` must have finished first).

    Returns the row: the ``ROW_METRICS`` of its ``metrics.json``, wall and training times (``time_ratio`` is
    filled in by :func:`with_time_ratios`).
    """
    spec = SCENARIOS[scenario]
    base = Path(out_dir) / "compat_runs" / scenario / f"seed{seed}"
    ov = COMMON + spec["overrides"] + list(extra) + [f"seed={seed}", f"method={method}"]
    if method != "none":
        ov.append(f"old.checkpoint={base / 'none' / 'old_model.pt'}")
    t0 = time.perf_counter()
    doc = run_one(ov, base / method)
    met = doc["metrics"]
    return {"scenario": scenario, "seed": seed, "method": method, "wall_s": time.perf_counter() - t0,
            "train_s": doc["timings_s"]["train"], "train_cpu_s": doc["cpu_timings_s"]["train"],
            **{k: met[k] for k in ROW_METRICS}, "bct_criterion": met.get("bct_criterion"),
            "retrieval": met.get("retrieval"), "old_classes": met.get("old_classes")}


def with_time_ratios(rows: list[dict]) -> list[dict]:
    """Set each row's ``time_ratio``: training CPU time over its (scenario, seed)'s ``none`` run (CPU time, so runs
    sharing the cores do not distort it)."""
    none = {(r["scenario"], r["seed"]): r["train_cpu_s"] for r in rows if r["method"] == "none"}
    for r in rows:
        r["time_ratio"] = r["train_cpu_s"] / none[(r["scenario"], r["seed"])]
    return rows


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
            usable = [c for c in crit if c.get("applicable", c.get("new_old") is not None)]
            crit_s = (f"{sum(bool(c['pass']) for c in usable)}/{len(usable)} "
                      f"({np.mean([c['new_old'] for c in usable]) * 100:.1f} vs "
                      f"{np.mean([c['old_old'] for c in usable]) * 100:.1f})") if usable else "n/a"
            if crit and not usable:
                crit_s = ("n/a (spaces differ)" if all(c["new_old"] is None for c in crit)
                          else "n/a (old/old already 100%)")
            elif len(usable) < len(crit):
                crit_s += f", {len(crit) - len(usable)} n/a"
            ratio = np.mean([r["time_ratio"] for r in rs])
            lines.append(f"| {s} | {m} | {ms('er_old')} | {ms('er_new')} | {ci('er_new')} | {ms('nfr')} | "
                         f"{ci('nfr')} | {ms('rel_nfr')} | {ci('rel_nfr')} | {ms('pfr')} | {crit_s} | {ratio:.2f} |")
    return "\n".join(lines)


def sweep_plan(scenarios: list[str], seeds: list[int], methods: list[str], lambdas: list[float],
               epochs: list[int], temperatures: list[float]) -> list[dict]:
    """Every run of the sweep, in order: per (scenario, seed) the old model's base run, then per epochs
    the ``none`` reference and each (method, lambda, tau) combination.  FD-LM takes one tau (none)."""
    runs = []
    for s in scenarios:
        for seed in seeds:
            runs.append({"scenario": s, "seed": seed, "kind": "old", "method": "none", "epochs": None,
                         "weight": None, "temperature": None})
            for e in epochs:
                runs.append({"scenario": s, "seed": seed, "kind": "reference", "method": "none", "epochs": e,
                             "weight": None, "temperature": None})
                for m in methods:
                    for lam in lambdas:
                        for tau in (temperatures if m == "fd-kl" else [None]):
                            runs.append({"scenario": s, "seed": seed, "kind": "fd", "method": m, "epochs": e,
                                         "weight": lam, "temperature": tau})
    return runs


def summarise_sweep(rows: list[dict]) -> str:
    """Markdown table of the sweep: mean over seeds of ER_new, NFR and relative NFR (%), with the error
    cost in points and the relative-NFR change in % against ``none`` at the same scenario, seed and epochs."""
    lines = ["| scenario | epochs | method | λ | τ | ER_new | ΔER_new (points) | NFR | rel NFR | Δ rel NFR | "
             "seeds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    ref = {(r["scenario"], r["seed"], r["epochs"]): r for r in rows if r["kind"] == "reference"}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["kind"] in ("reference", "fd"):
            groups.setdefault((r["scenario"], r["epochs"], r["method"], r["weight"], r["temperature"]), []).append(r)

    def order(key):
        s, e, m, lam, tau = key
        return (list(SCENARIOS).index(s), e, m != "none", m, lam or 0.0, tau or 0.0)

    for key in sorted(groups, key=order):
        s, e, m, lam, tau = key
        rs = groups[key]
        pairs = [(r, ref.get((r["scenario"], r["seed"], r["epochs"]))) for r in rs]
        d_er = [100 * (r["er_new"] - b["er_new"]) for r, b in pairs if b]
        d_rel = [100 * (r["rel_nfr"] / b["rel_nfr"] - 1) for r, b in pairs
                 if b and r["rel_nfr"] is not None and b["rel_nfr"]]

        def mean(key, rs=rs):
            v = [100 * r[key] for r in rs if r[key] is not None]
            return f"{np.mean(v):.2f}" if v else "n/a"

        lines.append(f"| {s} | {e} | {m} | {'' if lam is None else f'{lam:g}'} | {'' if tau is None else f'{tau:g}'} | "
                     f"{mean('er_new')} | {f'{np.mean(d_er):+.2f}' if d_er and m != 'none' else ''} | {mean('nfr')} | "
                     f"{mean('rel_nfr')} | {f'{np.mean(d_rel):+.0f}%' if d_rel and m != 'none' else ''} | {len(rs)} |")
    return "\n".join(lines)


def run_sweep(args: argparse.Namespace, out_dir: Path) -> None:
    """The controlled (lambda, epochs, temperature) sweep; see :data:`SWEEP`."""
    methods = [m for m in args.methods if m != "none"] if args.methods != TABLE_METHODS else SWEEP_METHODS
    unknown = [m for m in methods if m not in WEIGHT_KEY]
    if unknown:
        raise SystemExit(f"--sweep: methods {unknown} have no weight to sweep (choices: {', '.join(WEIGHT_KEY)})")
    plan = sweep_plan(args.scenarios, args.seeds, methods, args.lambdas, args.sweep_epochs, args.temperatures)
    print(f"sweep: {len(plan)} runs ({sum(r['kind'] == 'fd' for r in plan)} treated runs) over scenarios "
          f"{args.scenarios}, seeds {args.seeds}, methods {methods}, lambda {args.lambdas}, epochs "
          f"{args.sweep_epochs}, tau {args.temperatures}", flush=True)
    if args.plan:
        for r in plan:
            print(json.dumps(r))
        return
    raw_path = out_dir / "compat_sweep.json"
    rows: list[dict] = []
    start = time.perf_counter()
    for r in plan:
        spec = SCENARIOS[r["scenario"]]
        base = out_dir / "compat_sweep_runs" / r["scenario"] / f"seed{r['seed']}"
        old_base = (Path(args.old_from) if args.old_from else out_dir) / "compat_sweep_runs" / r["scenario"] / \
            f"seed{r['seed']}" / "old"
        if r["kind"] == "old" and args.old_from:
            if not (old_base / "old_model.pt").is_file():
                raise SystemExit(f"--old-from: {old_base / 'old_model.pt'} does not exist")
            print(f"old model reused from {old_base / 'old_model.pt'}", flush=True)
            continue
        ov = COMMON + spec["overrides"] + list(args.extra) + [f"seed={r['seed']}", f"method={r['method']}"]
        if r["kind"] == "old":
            out = base / "old"
        else:
            ov = merge(ov, [f"old.checkpoint={old_base / 'old_model.pt'}", f"train.epochs={r['epochs']}"])
            if r["kind"] == "fd":
                ov = merge(ov, weight_overrides(r["method"], r["weight"], r["temperature"]))
            name = "none" if r["kind"] == "reference" else f"{r['method']}_w{r['weight']:g}" + (
                f"_t{r['temperature']:g}" if r["temperature"] is not None else "")
            out = base / f"e{r['epochs']}" / name
        doc = run_one(ov, out)
        met = doc["metrics"]
        row = {**r, "train_cpu_s": doc["cpu_timings_s"]["train"],
               **{k: met[k] for k in ROW_METRICS}}
        rows.append(row)
        rel = "n/a" if row["rel_nfr"] is None or not np.isfinite(row["rel_nfr"]) else f"{100 * row['rel_nfr']:.2f}"
        print(f"[{time.perf_counter() - start:6.0f}s] {r['scenario']} seed={r['seed']} {r['kind']:9s} "
              f"{r['method']:6s} E={r['epochs']} w={r['weight']} tau={r['temperature']} "
              f"ER_new={100 * row['er_new']:.2f} NFR={100 * row['nfr']:.2f} relNFR={rel}", flush=True)
        raw_path.write_text(json.dumps({"rows": rows}, indent=1))
    table = summarise_sweep(rows)
    meta = _provenance("--sweep", args.seeds, start, f"methods {methods}, lambda {args.lambdas}, epochs "
                       f"{args.sweep_epochs}, tau {args.temperatures}; extra {args.extra}; "
                       f"old models from {args.old_from or args.out}; ")
    (out_dir / "compat_sweep.md").write_text(f"{meta}\n\n{table}\n")
    raw_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\n{meta}\n\n{table}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="*", default=TABLE_METHODS, help=f"any of {', '.join(METHODS)}")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--extra", nargs="*", default=[], help="extra overrides for every run, e.g. fd.beta=1")
    ap.add_argument("--sweep", action="store_true", help="run the (lambda, epochs, temperature) sweep of the FD "
                    "methods instead of the method table (grid: SWEEP, narrowed by the options below)")
    ap.add_argument("--lambdas", nargs="*", type=float, default=SWEEP["fd.weight"],
                    help="sweep: weight values (fd.weight; ldi.weight for ldi / bct+ldi, see WEIGHT_KEY)")
    ap.add_argument("--sweep-epochs", nargs="*", type=int, default=SWEEP["train.epochs"],
                    help="sweep: train.epochs values of the new model (the old model keeps the scenario's)")
    ap.add_argument("--temperatures", nargs="*", type=float, default=SWEEP["fd.temperature"],
                    help="sweep: fd.temperature values (FD-KL only)")
    ap.add_argument("--plan", action="store_true", help="sweep: print the runs and exit")
    ap.add_argument("--old-from", default=None, help="sweep: reuse the old models of an earlier sweep's --out "
                    "directory (its compat_sweep_runs/<scenario>/seed<k>/old/old_model.pt) instead of training "
                    "them, so the rows share the old model with that sweep")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="method table: run this many runs at once, "
                    "one process and one torch thread each (default: one per core; 2 on a 2-core machine about halves "
                    "the wall time, same rows as 1); a group's methods start once its `none` run has trained the old "
                    "model")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        ap.error(f"unknown methods {bad} (choices: {', '.join(METHODS)})")
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios {unknown} (choices: {', '.join(SCENARIOS)})")
    out_dir = Path(args.out)
    if args.sweep and args.plan:
        run_sweep(args, out_dir)
        return
    _worker_init()  # the cores are shared (with other jobs, or with --jobs workers): one torch thread, quiet runs
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        run_sweep(args, out_dir)
        return
    raw_path = out_dir / "compat.json"
    rows: list[dict] = []
    start = time.perf_counter()
    groups = [(s, seed) for s in args.scenarios for seed in args.seeds]
    methods = ["none"] + [m for m in args.methods if m != "none"]
    todo = {g: [m for m in methods[1:] if m not in SCENARIOS[g[0]].get("skip_methods", ())] for g in groups}
    order = {(s, seed, m): i for i, (s, seed, m) in enumerate((g[0], g[1], m) for g in groups for m in methods)}

    def done(row: dict) -> None:
        rows.append(row)
        rows.sort(key=lambda r: order[(r["scenario"], r["seed"], r["method"])])
        print(f"[{time.perf_counter() - start:6.0f}s] {row['scenario']} seed={row['seed']} {row['method']:7s} "
              f"ER_old={100 * row['er_old']:.2f} ER_new={100 * row['er_new']:.2f} NFR={100 * row['nfr']:.2f} "
              f"relNFR={100 * row['rel_nfr']:.2f} train={row['train_s']:.1f}s", flush=True)
        raw_path.write_text(json.dumps({"rows": rows}, indent=1))

    extra = list(args.extra)
    if args.jobs == 1:
        for s, seed in groups:
            for m in ["none", *todo[(s, seed)]]:
                done(run_method(s, seed, m, extra, str(out_dir)))
    else:  # runs in worker processes: every `none` first, then each group's methods once its old model exists
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
            pending = {pool.submit(run_method, s, seed, "none", extra, str(out_dir)): (s, seed) for s, seed in groups}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    group = pending.pop(fut)
                    row = fut.result()
                    done(row)
                    if row["method"] == "none":
                        for m in todo[group]:
                            pending[pool.submit(run_method, *group, m, extra, str(out_dir))] = group
    rows = with_time_ratios(rows)
    table = summarise(rows)
    meta = _provenance(f"--jobs {args.jobs}" if args.jobs > 1 else "", args.seeds, start)
    scen_lines = "\n".join(f"- `{s}`: {SCENARIOS[s]['desc']}" for s in args.scenarios)
    (out_dir / "compat.md").write_text(f"{meta}\n\n{scen_lines}\n\n{table}\n")
    raw_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\n{meta}\n\n{scen_lines}\n\n{table}")


if __name__ == "__main__":
    main()
