"""Benchmark `toolkit train-encrypted` defaults on a tabular CSV: encrypted model vs exact logistic regression.

Issue 12: at the old defaults (learning rate 2.0, `maxabs` scaling) a 23-feature credit-default table gave
exactly the majority-class rate and a training loss that rose every iteration.  This script runs the full
encrypted pipeline (keygen -> encrypt -> train -> decrypt, through the CLI) at the current defaults and at
the old ones, on

* `--csv PATH --label COLUMN`: any numeric CSV with a 0/1 label (e.g. the UCI "default of credit card
  clients" table exported as CSV), or
* by default, a synthetic credit-style table written by this script (seeded): 30,000 rows, 23 positive
  heavy-tailed columns (log-normal "amounts"), ~22% positives, a UTF-8 BOM and a quoted label name with
  spaces.  It has the shape that broke the old defaults; it is not the real credit data.

Usage:  .venv/bin/python benchmarks/bench_encrypted_csv.py [--csv PATH --label COL] [--rows 30000]
Results: benchmarks/results/encrypted_csv.json and a markdown table on stdout (docs/encrypted.md).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LABEL = "default payment next month"


def synthetic_credit(path: Path, rows: int, seed: int = 0) -> None:
    """Write the synthetic credit-style table described in the module docstring."""
    rng = np.random.default_rng(seed)
    d = 23
    x = rng.lognormal(mean=0.0, sigma=1.0, size=(rows, d)) * rng.uniform(1, 1000, size=d)
    logit = -1.75 + 0.9 * np.log(x[:, 0] / x[:, 0].mean()) - 0.6 * np.log(x[:, 1] / x[:, 1].mean()) \
        + 0.3 * np.log(x[:, 2] / x[:, 2].mean())
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    header = ",".join([f"X{j + 1}" for j in range(d)] + [f'"{LABEL}"'])
    body = "\n".join(",".join([f"{v:.2f}" for v in x[i]] + [str(y[i])]) for i in range(rows))
    path.write_text("\ufeff" + header + "\n" + body + "\n", encoding="utf-8")


def run(csv: Path, label: str, name: str, extra: list[str]) -> dict:
    """One full encrypted run through the CLI; returns the row."""
    out = RESULTS / f"encrypted_csv_{name}"
    cmd = [str(ROOT / ".venv" / "bin" / "toolkit"), "train-encrypted", "--json", "data=csv_binary",
           f"data.path={csv}", f'data.label_column="{label}"', f"output_dir={out}", "train.allow_rising_loss=true",
           *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1]}")
    doc = json.loads(proc.stdout)
    m = doc["metrics"]
    curve = m["plan"]["train_loss_curve"]
    return {"run": name, "overrides": " ".join(extra) or "(defaults)", "learning_rate": m["plan"]["learning_rate"],
            "loss_first": curve[0], "loss_min": min(curve), "loss_last": curve[-1],
            "loss_rises": m["plan"]["loss_rises"],
            "acc_enc": m["encrypted"]["accuracy"], "auc_enc": m["encrypted"]["auc"],
            "acc_plain_poly": m["plain_poly"]["accuracy"],
            "acc_exact": m["exact_sklearn"]["accuracy"], "auc_exact": m["exact_sklearn"]["auc"],
            "gap_points": m["plaintext_gap_accuracy_points"],
            "s_per_iteration": m["seconds_per_iteration"], "wall_s": wall,
            "iterations": m["iterations_done"], "samples_per_iteration": m["train_samples"] / m["minibatches"],
            "s_per_iteration_incl_refresh": m["seconds_per_iteration_incl_refresh"],
            "cpu_s": doc["cpu_timings_s"]["total"],
            "plan_data_mib": m["plan"]["data_mib"], "data_mib": m["encrypted_data_mib"],
            "peak_rss_mib": doc["peak_rss_mb"]["total"],
            "peak_rss_worker_mib": doc.get("peak_rss_children_mb", {}).get("total")}


OWNER = {
    "toolkit": "decrypts and re-encrypts the weights after every iteration (a refresh); chose the rate and "
               "scaling beforehand in plaintext (`--plan`)",
    "concrete": "gives per-feature min/max in the clear (to compile), encrypts every minibatch; nothing between "
                "iterations (the server bootstraps)",
}


def peer_rows(ours: Path, python: str, execute: int, simulate: list[int]) -> list[dict]:
    """Concrete ML's rows on exactly the data our run in ``ours`` trained on: its ``config.yaml`` gives the split
    (``data`` section and ``seed``, through :func:`toolkit.encrypted.data.load_dataset`), its
    ``owner/scaling.json`` the scaling; the scaled arrays go to an ``.npz``, then ``encrypted_peer_concrete.py``
    runs under the peer's own interpreter ``python`` once with real FHE (``execute`` iterations) and once per
    entry of ``simulate`` (Concrete's FHE simulation).

    Raises:
        SystemExit: a peer run fails.
    """
    import yaml

    from toolkit.encrypted.data import Scaling, load_dataset

    cfg = yaml.safe_load((ours / "config.yaml").read_text())
    data = load_dataset(cfg["data"], int(cfg["seed"]))
    scaling = Scaling.from_dict(json.loads((ours / "owner" / "scaling.json").read_text()))
    npz = RESULTS / "encrypted_peer_data.npz"
    np.savez(npz, x_train=scaling.apply(data.x_train), y_train=data.y_train, x_test=scaling.apply(data.x_test),
             y_test=data.y_test)
    script = Path(__file__).with_name("encrypted_peer_concrete.py")
    out = []
    for fhe, iterations in [("execute", execute)] * (execute > 0) + [("simulate", n) for n in simulate]:
        proc = subprocess.run([python, str(script), str(npz), "--fhe", fhe, "--iterations", str(iterations)],
                              capture_output=True, text=True, cwd=RESULTS)
        if proc.returncode != 0:
            raise SystemExit(f"peer ({fhe}, {iterations}): exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"peer {fhe} {iterations}: acc {out[-1]['accuracy']:.4f} auc {out[-1]['auc']:.4f}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--label", default=LABEL)
    ap.add_argument("--rows", type=int, default=30000)
    ap.add_argument("--concrete-python", default=None, help="interpreter of an environment with concrete-ml: adds "
                    "the peer's rows (benchmarks/encrypted_peer_concrete.py)")
    ap.add_argument("--peer-execute", type=int, default=3, help="peer iterations in real FHE (0: none)")
    ap.add_argument("--peer-simulate", type=int, nargs="*", default=[3, 300, 2625],
                    help="peer iterations in Concrete's FHE simulation (2,625 x 8 samples = one pass over 21,000)")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    csv = args.csv
    if csv is None:
        csv = RESULTS / "synthetic_credit.csv"
        synthetic_credit(csv, args.rows)
    y = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=-1, encoding="utf-8-sig")
    majority = float(max(y.mean(), 1 - y.mean()))
    rows = [run(csv, args.label, "defaults", []),
            run(csv, args.label, "robust-scaling", ["data.scaling=robust"]),  # the default before standard scaling
            run(csv, args.label, "mean-scaling", ["data.scaling=mean"]),  # the default before robust scaling
            run(csv, args.label, "old-defaults", ["train.lr=2.0", "data.scaling=maxabs"]),
            run(csv, args.label, "old-scaling-auto-lr", ["data.scaling=maxabs"])]
    if args.concrete_python:
        peer = peer_rows(RESULTS / "encrypted_csv_defaults", args.concrete_python, args.peer_execute,
                         args.peer_simulate)
    else:
        peer = ("not run: pass --concrete-python PYTHON, the interpreter of a separate environment with "
                "concrete-ml (set-up in benchmarks/encrypted_peer_concrete.py; concrete-ml 1.9.0 pins torch 2.3.1, "
                "numpy 1.26.4 and scikit-learn 1.5.0, so it cannot share the package's environment)")
    doc = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python "
                      f"{platform.python_version()}", "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "data": str(csv) if args.csv else f"synthetic credit-style, {args.rows} rows x 23 (this script)",
           "majority_rate": majority, "rows": rows, "concrete_ml": peer}
    (RESULTS / "encrypted_csv.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"data: {doc['data']}; majority class {100 * majority:.2f}%; {doc['machine']}; {doc['finished_utc']} UTC")
    print("| run | overrides | lr | train loss first / min / last | rises | acc enc % | AUC enc | acc exact % "
          "| AUC exact | gap points | s/iter | plan data MiB | file MiB | peak RSS MiB (main / largest worker) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | `{r['overrides']}` | {r['learning_rate']:g} | {r['loss_first']:.3f} / "
              f"{r['loss_min']:.3f} / {r['loss_last']:.3f} | {'yes' if r['loss_rises'] else 'no'} | "
              f"{100 * r['acc_enc']:.2f} | {r['auc_enc']:.3f} | {100 * r['acc_exact']:.2f} | {r['auc_exact']:.3f} | "
              f"{r['gap_points']:.2f} | {r['s_per_iteration']:.2f} | {r['plan_data_mib']:.1f} | {r['data_mib']:.1f} | "
              f"{r['peak_rss_mib']:.0f} / {r['peak_rss_worker_mib'] or 0:.0f} |")
    if isinstance(peer, str):
        print(f"Concrete ML: {peer}")
    else:
        ours = rows[0]
        print("\n| trainer | FHE | iterations | samples / iteration | acc % | AUC | s / iteration (ours: incl. refresh) "
              "| s per 1,000 samples "
              "| key generation s | peak RSS MiB | the data owner during training |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print(f"| toolkit (defaults) | CKKS, executed | {ours['iterations']} | {ours['samples_per_iteration']:.0f} | "
              f"{100 * ours['acc_enc']:.2f} | {ours['auc_enc']:.3f} | {ours['s_per_iteration_incl_refresh']:.2f} | "
              f"{1000 * ours['s_per_iteration_incl_refresh'] / ours['samples_per_iteration']:.3f} | - | "
              f"{ours['peak_rss_mib']:.0f} / {ours['peak_rss_worker_mib'] or 0:.0f} | {OWNER['toolkit']} |")
        for r in peer:
            per = r["seconds_per_iteration"]
            print(f"| Concrete ML {r['versions']['concrete-ml']} | TFHE, {r['fhe']}d | {r['iterations']} | "
                  f"{r['samples_per_iteration']} | {100 * r['accuracy']:.2f} | {r['auc']:.3f} | "
                  f"{per if per is not None else float('nan'):.2f} | "
                  f"{1000 * per / r['samples_per_iteration'] if per else float('nan'):.1f} | "
                  f"{'-' if r['keygen_s'] is None else format(r['keygen_s'], '.1f')} | {r['peak_rss_mib']:.0f} | "
                  f"{OWNER['concrete']} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
