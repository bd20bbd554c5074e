"""Benchmark `toolkit train-encrypted` on MNIST 3 vs 8 (14x14): baseline vs low-depth circuit, same iterations.

Each run is the full local protocol through the CLI (keygen, encrypt, server training with owner refreshes
through files, decrypt + plaintext references), one output directory per run under benchmarks/results/.
Both circuits use the same minibatches and the same number of iterations.  `--workers-sweep` reruns the
low-depth circuit with 1 and 2 server processes for the multi-core speed-up.  `--report` only re-reads the
run directories and prints the markdown tables (rows come from each run's metrics.json / config.yaml /
train_state.json, never typed in).

Usage:
  .venv/bin/python benchmarks/bench_encrypted.py [--iterations 6] [--batch-size 8192] [--workers-sweep]
  .venv/bin/python benchmarks/bench_encrypted.py --batch-size 4096 --momentum 0.5   # Nesterov momentum, both circuits
  .venv/bin/python benchmarks/bench_encrypted.py --batch-size 8192 --repeats 3   # both circuits 3 times, alternating
  .venv/bin/python benchmarks/bench_encrypted.py --report
Needs ../shared/data/mnist (IDX files).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def collect(out: Path) -> dict:
    """One table row from a finished run directory."""
    doc = json.loads((out / "metrics.json").read_text())
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    state = json.loads((out / "server" / "train_state.json").read_text())
    m = doc["metrics"]
    refresh = state["refresh_seconds"]
    return {
        "run": out.name, "circuit": cfg["circuit"], "workers": cfg.get("workers", 1),
        "momentum": float(cfg["train"].get("momentum") or 0.0),
        "momentum_schedule": str(cfg["train"].get("momentum_schedule", "fixed")),
        "iterations": cfg["train"]["iterations"], "batch_size": cfg["train"]["batch_size"],
        "minibatches": m.get("minibatches"),
        "ring": m["params"]["poly_modulus_degree"], "chain": m["params"]["coeff_mod_bit_sizes"],
        "levels_per_iteration": m["depth_per_iteration"], "refreshes": m["refreshes"],
        "s_per_iteration": m["seconds_per_iteration"],
        "s_per_iteration_incl_refresh": m["seconds_per_iteration_incl_refresh"],
        "refresh_s_mean": sum(refresh) / len(refresh) if refresh else 0.0,
        "prepare_s": state["prepare_seconds"], "plan_estimated_s": m["plan"].get("estimated_seconds"),
        "timings_s": doc["timings_s"], "peak_rss_mb": doc["peak_rss_mb"]["total"],
        "acc_encrypted": m["encrypted"]["accuracy"], "auc_encrypted": m["encrypted"]["auc"],
        "acc_plain_poly": m["plain_poly"]["accuracy"], "auc_plain_poly": m["plain_poly"]["auc"],
        "acc_exact": m["exact_sklearn"]["accuracy"], "auc_exact": m["exact_sklearn"]["auc"],
        "gap_points": m["plaintext_gap_accuracy_points"], "max_abs_weight_diff": m["max_abs_weight_diff"],
        "encrypted_data_mib": m["encrypted_data_mib"], "public_context_mib": m["public_context_mib"],
        "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime((out / "metrics.json").stat().st_mtime)),
    }


def run(circuit: str, iterations: int, workers: int, batch_size: int, extra: list[str], tag: str = "") -> dict:
    """Run one configuration through the CLI and collect its row (``tag``: a suffix of the run's name)."""
    out = RESULTS / f"encrypted_{circuit}_w{workers}_b{batch_size}_it{iterations}{tag}"
    if out.exists():
        shutil.rmtree(out)
    cmd = [str(ROOT / ".venv" / "bin" / "toolkit"), "train-encrypted", "--json", "-q", "data=mnist38",
           f"circuit={circuit}", f"train.iterations={iterations}", f"train.batch_size={batch_size}",
           f"workers={workers}", f"output_dir={out}", "plot=true", "estimate_time=true",
           "train.lr=2.0",  # the rate the tables in docs/encrypted.md were measured at (before `auto`)
           *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark run failed: {' '.join(cmd)}")
    return collect(out)


def core_check(repeats: int = 150) -> dict:
    """How much parallel throughput the machine offers right now: the same SEAL ct-ct multiply loop in 1
    process, then in 2 processes at once (N=8192).  ~2x means two free cores; ~1x means one."""
    import multiprocessing as mp

    import numpy as np

    from toolkit.encrypted import he
    from toolkit.encrypted.params import choose_params

    be = he.SealBackend(he.keygen(choose_params(3)))
    a = be.encrypt(np.linspace(-1, 1, 4096))

    def work() -> None:
        for _ in range(repeats):
            be.finish(be.mul_lazy(a, a))

    t0 = time.perf_counter()
    work()
    one = time.perf_counter() - t0
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=work) for _ in range(2)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    two = time.perf_counter() - t0
    return {"one_process_s": one, "two_processes_s": two, "throughput_speedup": 2 * one / two,
            "load_average": os.getloadavg()[0], "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def repeat_pairs(rows: list[dict]) -> None:
    """Print the speed-up of every baseline/low-depth pair of a configuration run more than once (``--repeats``)."""
    import re

    pairs: dict[tuple, list[tuple[float, float]]] = {}
    by_name = {r["run"]: r for r in rows}
    for name, r in by_name.items():
        if r["circuit"] != "low-depth":
            continue
        twin = by_name.get(name.replace("encrypted_low-depth_", "encrypted_baseline_", 1))
        if twin is None:
            continue
        key = (r["workers"], r["batch_size"], r["iterations"], r["momentum"], re.sub(r"_rep\d+$", "", name))
        pairs.setdefault(key, []).append((twin["s_per_iteration"] / r["s_per_iteration"],
                                          twin["s_per_iteration_incl_refresh"] / r["s_per_iteration_incl_refresh"]))
    for (workers, batch, its, mu, _), got in sorted(pairs.items(), key=lambda kv: [str(x) for x in kv[0]]):
        if len(got) < 2:
            continue
        without = ", ".join(f"{a:.2f}" for a, _ in got)
        incl = ", ".join(f"{b:.2f}" for _, b in got)
        print(f"\nbatch {batch}, {its} iterations, {workers} worker(s), momentum {mu:g}, {len(got)} repeats: low-depth "
              f"speed-up without refresh {without} (mean {sum(a for a, _ in got) / len(got):.2f}x), including "
              f"refresh {incl} (mean {sum(b for _, b in got) / len(got):.2f}x, lowest {min(b for _, b in got):.2f}x)")


def report() -> None:
    """Print the markdown tables from every run directory under benchmarks/results/."""
    rows = [collect(p) for p in sorted(RESULTS.glob("encrypted_*")) if (p / "metrics.json").exists()]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; data: MNIST 3 vs 8, 14x14 "
          "(11,982 train / 1,984 test); seed 0")
    print("\n| run | circuit | workers | momentum | batch (minibatches) | ring / chain | levels/iter | refreshes | s/iter "
          "| refresh s | s/iter incl. refresh | peak RSS MiB | acc enc % | acc plain poly % | acc exact % "
          "| AUC enc | gap points | finished (UTC) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mom = f"{r['momentum']:g} {r['momentum_schedule']}" if r["momentum"] else "0"
        print(f"| {r['run']} | {r['circuit']} | {r['workers']} | {mom} | {r['batch_size']} ({r['minibatches']}) | "
              f"{r['ring']} {r['chain']} | {r['levels_per_iteration']:.1f} | {r['refreshes']} | "
              f"{r['s_per_iteration']:.1f} | {r['refresh_s_mean']:.1f} | {r['s_per_iteration_incl_refresh']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {100 * r['acc_encrypted']:.2f} | {100 * r['acc_plain_poly']:.2f} | "
              f"{100 * r['acc_exact']:.2f} | {r['auc_encrypted']:.4f} | {r['gap_points']:.2f} | "
              f"{r['finished_utc']} |")
    by = {(r["circuit"], r["workers"], r["batch_size"], r["iterations"], r["momentum"]): r for r in rows}
    for (circ, workers, batch, its, mu), r in sorted(by.items(), key=lambda kv: [str(x) for x in kv[0]]):
        if circ == "low-depth" and ("baseline", workers, batch, its, mu) in by:
            b = by[("baseline", workers, batch, its, mu)]
            print(f"\nbatch {batch}, {its} iterations, {workers} worker(s), momentum {mu:g}: low-depth speed-up "
                  "per iteration "
                  f"{b['s_per_iteration'] / r['s_per_iteration']:.2f}x without refresh, "
                  f"{b['s_per_iteration_incl_refresh'] / r['s_per_iteration_incl_refresh']:.2f}x including refresh")
        if circ == "low-depth" and workers == 2 and ("low-depth", 1, batch, its, mu) in by:
            one = by[("low-depth", 1, batch, its, mu)]
            print(f"\nlow-depth, batch {batch}, {its} iterations: 1 worker {one['s_per_iteration']:.1f} s/iter, "
                  f"2 workers {r['s_per_iteration']:.1f} s/iter -> {one['s_per_iteration'] / r['s_per_iteration']:.2f}x")
    repeat_pairs(rows)
    (RESULTS / "encrypted.json").write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                                        "rows": rows}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8192, help="samples per minibatch (same for both circuits)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--workers-sweep", action="store_true", help="low-depth with 1 and 2 workers")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run both circuits this many times, alternating (runs 2.. are tagged _rep2, _rep3, ...); "
                         "the report prints the speed-up of each pair and their mean")
    ap.add_argument("--momentum", type=float, default=0.0,
                    help="train.momentum of both circuits' runs (Nesterov; 0: off, the main table)")
    ap.add_argument("--momentum-schedule", default="fixed", choices=["fixed", "nesterov"])
    ap.add_argument("--skip-circuits", action="store_true")
    ap.add_argument("--report", action="store_true", help="only print the tables from existing runs")
    ap.add_argument("--core-check", action="store_true", help="measure 1- vs 2-process SEAL throughput now")
    args = ap.parse_args()
    if args.core_check:
        check = core_check()
        print(f"core check ({check['utc']} UTC, load average {check['load_average']:.1f}): same SEAL loop "
              f"1 process {check['one_process_s']:.2f} s, 2 processes at once {check['two_processes_s']:.2f} s "
              f"-> throughput {check['throughput_speedup']:.2f}x")
        path = RESULTS / "encrypted_core_check.json"
        RESULTS.mkdir(parents=True, exist_ok=True)
        history = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(history + [check], indent=2))
        return
    if not args.report:
        if not (ROOT.parent / "shared" / "data" / "mnist").exists():
            raise SystemExit("needs ../shared/data/mnist")
        RESULTS.mkdir(parents=True, exist_ok=True)
        mom = ([f"train.momentum={args.momentum}", f"train.momentum_schedule={args.momentum_schedule}"]
               if args.momentum else [])
        tag = f"_m{args.momentum:g}{'n' if args.momentum_schedule == 'nesterov' else ''}" if args.momentum else ""
        if not args.skip_circuits:
            for rep in range(1, max(1, args.repeats) + 1):
                for c in ("baseline", "low-depth"):
                    run(c, args.iterations, args.workers, args.batch_size, mom, tag + (f"_rep{rep}" if rep > 1 else ""))
        if args.workers_sweep:
            for w in (1, 2):
                run("low-depth", max(2, args.iterations // 2), w, args.batch_size, [])
    report()


if __name__ == "__main__":
    main()
