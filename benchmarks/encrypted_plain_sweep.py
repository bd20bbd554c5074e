"""Owner-side plaintext sweep of train-encrypted's circuit: test AUC / accuracy vs exact logistic regression.

Encrypted training equals its plaintext polynomial model (gap 0.00 points on every benchmark dataset,
docs/encrypted.md), so the circuit's quality at a setting is measured here without encryption, in seconds: for
each (momentum mu, momentum schedule, iterations) the command's own ``train.lr=auto`` search picks the learning
rate exactly as the command does, then the simulated model after the last iteration is scored on the test split.
Issue 12: which setting closes the gap to exact LR on credit-style data, and does momentum help.

Usage:  .venv/bin/python benchmarks/encrypted_plain_sweep.py [--csv PATH --label COL] [--iterations 10 20]
Results: benchmarks/results/encrypted_plain_sweep_<tag>.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    from omegaconf import open_dict

    from benchmarks.bench_encrypted_csv import LABEL, synthetic_credit
    from toolkit.config import compose_config
    from toolkit.encrypted import circuit as C
    from toolkit.encrypted.command import (
        _choose_learning_rate,
        _choose_momentum,
        _momentum,
        _prepare_data,
        resolve_params,
    )
    from toolkit.encrypted.metrics import evaluate
    from toolkit.encrypted.plan import simulate
    from toolkit.encrypted.reference import exact_logistic_regression

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--label", default=LABEL)
    ap.add_argument("--rows", type=int, default=30000)
    ap.add_argument("--iterations", nargs="*", type=int, default=[10, 20])
    ap.add_argument("--momentum", nargs="*", type=float, default=[0.0, 0.5, 0.8, 0.9])
    ap.add_argument("--schedules", nargs="*", default=["fixed", "nesterov"])
    ap.add_argument("--momentum-auto", action="store_true", help="also a train.momentum=auto row per iteration count")
    ap.add_argument("--extra", nargs="*", default=[], help="extra overrides, e.g. data=breast_cancer")
    ap.add_argument("--tag", default="credit", help="results file suffix: encrypted_plain_sweep_<tag>.json")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    csv = args.csv
    data_ov = []
    if not any(o.startswith("data=") and o != "data=csv_binary" for o in args.extra):
        if csv is None:
            csv = RESULTS / "synthetic_credit.csv"
            if not csv.exists():
                synthetic_credit(csv, args.rows)
        data_ov = ["data=csv_binary", f"data.path={csv}", f"data.label_column='{args.label}'"]
    rows, start = [], time.perf_counter()
    exact = None
    for iters in args.iterations:
        settings = [(s_, mu) for s_ in args.schedules for mu in args.momentum if mu or s_ == args.schedules[0]]
        settings += [(args.schedules[0], "auto")] if args.momentum_auto else []
        for schedule, mu in settings:  # without momentum the schedule does not matter: one row
            cfg = compose_config("train_encrypted", data_ov + list(args.extra) + [
                f"train.iterations={iters}", f"train.momentum={mu}", f"train.momentum_schedule={schedule}"])
            params = resolve_params(cfg.ckks, str(cfg.circuit))
            prep = _prepare_data(cfg, params)
            if exact is None:
                w_exact = exact_logistic_regression(prep["x_train"], prep["data"].y_train, 0)
                exact = evaluate(w_exact, prep["x_test"], prep["data"].y_test)
            if mu == "auto":  # the command's joint choice: each mu of train.momentum_grid with its auto rate
                chosen = _choose_momentum(cfg, params, prep)
                search = chosen["lr_search"]
                with open_dict(cfg):
                    cfg.train.momentum = mu = chosen["chosen"]
                schedule = f"{schedule} (auto)"
            else:
                search = _choose_learning_rate(cfg, params, prep)
            with open_dict(cfg):
                cfg.train.lr = search["chosen"]
            rep = simulate(params, str(cfg.circuit), prep["z"], prep["batches"], iters,
                           C.SIGMOID_COEFFS[str(cfg.train.sigmoid)], float(cfg.train.lr), None,
                           momentum=_momentum(cfg))
            w = np.asarray(rep["trajectory"])[-1]
            m = evaluate(w, prep["x_test"], prep["data"].y_test)
            rows.append({"iterations": iters, "momentum": mu, "schedule": schedule if mu or "auto" in schedule else "-",
                         "learning_rate": search["chosen"], "fits_chain": rep["fits_chain"],
                         "refreshes": rep.get("refreshes"), "accuracy": m["accuracy"], "auc": m["auc"],
                         "log_loss": m["log_loss"],
                         "train_loss": min(c["final_train_loss"] for c in search["candidates"] if c["ok"])})
            r = rows[-1]
            print(f"[{time.perf_counter() - start:5.0f}s] iters={iters} mu={mu} {r['schedule']:8s} "
                  f"lr={r['learning_rate']:g} acc={100 * m['accuracy']:.2f} auc={m['auc']:.4f} "
                  f"(exact {100 * exact['accuracy']:.2f} / {exact['auc']:.4f})", flush=True)
    doc = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
           "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "data": str(csv) if csv else " ".join(args.extra), "exact": exact, "rows": rows}
    (RESULTS / f"encrypted_plain_sweep_{args.tag}.json").write_text(json.dumps(doc, indent=2, default=float) + "\n")
    print(f"\ndata: {doc['data']}; exact LR accuracy {100 * exact['accuracy']:.2f}%, AUC {exact['auc']:.4f}")
    print("| iterations | momentum | schedule | lr (auto) | train loss (auto) | accuracy % | AUC | AUC - exact |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['iterations']} | {r['momentum']:g} | {r['schedule']} | {r['learning_rate']:g} | "
              f"{r['train_loss']:.3f} | {100 * r['accuracy']:.2f} | {r['auc']:.4f} | {r['auc'] - exact['auc']:+.4f} |")


if __name__ == "__main__":
    main()
