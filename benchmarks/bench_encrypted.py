"""Benchmark `toolkit train-encrypted` on MNIST 3 vs 8 (14x14): baseline vs low-depth circuit, same iterations.

Runs the full local protocol (keygen, encrypt, server training with owner refreshes, decrypt + plaintext
references) once per circuit through the CLI, then prints a markdown table and writes
benchmarks/results/encrypted.json.  Optional: `--workers-sweep` reruns the low-depth circuit with 1 and 2
worker processes to measure the multi-core speed-up.

Usage: .venv/bin/python benchmarks/bench_encrypted.py [--iterations 6] [--workers-sweep] [--quick]
Needs ../shared/data/mnist (IDX files).  Machine: whatever runs it (the docs state which one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run(circuit: str, iterations: int, workers: int, extra: list[str]) -> dict:
    out = RESULTS / f"encrypted_{circuit}_w{workers}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cmd = [str(ROOT / ".venv" / "bin" / "toolkit"), "train-encrypted", "--json", "data=mnist38",
           f"circuit={circuit}", f"train.iterations={iterations}", f"output_dir={out}", "plot=true",
           "estimate_time=true", f"workers={workers}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark run failed: {' '.join(cmd)}")
    doc = json.loads(proc.stdout)
    m = doc["metrics"]
    state = json.loads((out / "server" / "train_state.json").read_text())
    return {
        "circuit": circuit, "workers": workers, "iterations": iterations,
        "ring": m["params"]["poly_modulus_degree"], "chain": m["params"]["coeff_mod_bit_sizes"],
        "levels_per_iteration": m["depth_per_iteration"], "refreshes": m["refreshes"],
        "s_per_iteration": m["seconds_per_iteration"],
        "s_per_iteration_incl_refresh": m["seconds_per_iteration_incl_refresh"],
        "refresh_s_mean": (sum(state["refresh_seconds"]) / len(state["refresh_seconds"]))
        if state["refresh_seconds"] else 0.0,
        "prepare_s": state["prepare_seconds"],
        "plan_estimated_s": m["plan"].get("estimated_seconds"),
        "timings_s": doc["timings_s"], "peak_rss_mb": doc["peak_rss_mb"]["total"],
        "acc_encrypted": m["encrypted"]["accuracy"], "auc_encrypted": m["encrypted"]["auc"],
        "acc_plain_poly": m["plain_poly"]["accuracy"], "auc_plain_poly": m["plain_poly"]["auc"],
        "acc_exact": m["exact_sklearn"]["accuracy"], "auc_exact": m["exact_sklearn"]["auc"],
        "gap_points": m["plaintext_gap_accuracy_points"], "max_abs_weight_diff": m["max_abs_weight_diff"],
        "encrypted_data_mib": m["encrypted_data_mib"], "public_context_mib": m["public_context_mib"],
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--workers-sweep", action="store_true")
    ap.add_argument("--skip-circuits", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2000 training samples (smoke run)")
    args = ap.parse_args()
    if not (ROOT.parent / "shared" / "data" / "mnist").exists():
        raise SystemExit("needs ../shared/data/mnist")
    RESULTS.mkdir(parents=True, exist_ok=True)
    extra = ["data.max_train=2000"] if args.quick else []
    rows, sweep = [], []
    if not args.skip_circuits:
        rows = [run(c, args.iterations, args.workers, extra) for c in ("baseline", "low-depth")]
    if args.workers_sweep:
        sweep = [run("low-depth", max(2, args.iterations // 3), w, extra) for w in (1, 2)]
    doc = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "machine": platform.platform(),
           "cpus": os.cpu_count(), "data": "MNIST 3 vs 8, 14x14 (11,982 train / 1,984 test)", "seed": 0,
           "rows": rows, "workers_sweep": sweep}
    name = "encrypted_quick.json" if args.quick else "encrypted.json"
    path = RESULTS / name
    if path.exists():
        old = json.loads(path.read_text())
        doc["rows"] = rows or old.get("rows", [])
        doc["workers_sweep"] = sweep or old.get("workers_sweep", [])
    path.write_text(json.dumps(doc, indent=2))
    print("| circuit | ring / chain | levels/iter | refreshes | s/iter | s/iter incl. refresh | peak RSS (MiB) "
          "| acc enc | acc plain poly | acc exact | AUC enc | gap (points) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in doc["rows"]:
        print(f"| {r['circuit']} | {r['ring']} {r['chain']} | {r['levels_per_iteration']:.1f} | {r['refreshes']} | "
              f"{r['s_per_iteration']:.1f} | {r['s_per_iteration_incl_refresh']:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{100 * r['acc_encrypted']:.2f} | {100 * r['acc_plain_poly']:.2f} | {100 * r['acc_exact']:.2f} | "
              f"{r['auc_encrypted']:.4f} | {r['gap_points']:.2f} |")
    if len(doc["rows"]) == 2:
        b, lo = doc["rows"]
        print(f"\nlow-depth speed-up per iteration incl. refresh: "
              f"{b['s_per_iteration_incl_refresh'] / lo['s_per_iteration_incl_refresh']:.2f}x")
    if doc["workers_sweep"]:
        w1, w2 = doc["workers_sweep"]
        print(f"\nlow-depth, {w1['iterations']} iterations: 1 worker {w1['s_per_iteration']:.1f} s/iter, "
              f"2 workers {w2['s_per_iteration']:.1f} s/iter -> speed-up {w1['s_per_iteration'] / w2['s_per_iteration']:.2f}x")
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
