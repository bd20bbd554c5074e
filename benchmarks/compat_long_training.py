"""CIFAR-10 update trained out: 30 epochs, with and without augmentation (issue 10; docs/compat.md).

Does the CIFAR-10 scenario reach the paper's regime when both models train longer, and what does augmentation
of the new model change?  One seed: the `none` run trains the old Conv-4 and the new ResNet for ``--epochs``
epochs (no augmentation); every other row loads that old model (``old.checkpoint``), so all rows share it:

* distillation weights without augmentation (FD-KL and LDI),
* `none`, FD-KL and LDI with the new model trained on randomly shifted images (``train.shift_pixels``; FD/LDI
  then run the old model online on every shifted batch).

Usage::

    .venv/bin/python benchmarks/compat_long_training.py --seed 0 --epochs 30 --jobs 2 --out benchmarks/results/compat_long

Writes ``<out>/compat_long.json`` and ``<out>/compat_long.md`` (ER, NFR, relative NFR with its bootstrap 95%
interval, training CPU seconds); runs are deterministic with one torch thread, so a rerun gives the same rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compat as B  # noqa: E402  (the benchmark's common overrides, scenario and run helpers)

#: (method, weight, shift_pixels) of the rows after `none`; the weight goes to the method's WEIGHT_KEY.
ROWS: list[tuple[str, float | None, int]] = [
    ("fd-kl", 0.05, 0), ("fd-kl", 0.3, 0), ("fd-kl", 1.0, 0), ("ldi", 0.1, 0), ("ldi", 0.3, 0),
    ("none", None, 4), ("fd-kl", 0.3, 4), ("fd-kl", 1.0, 4), ("ldi", 0.3, 4),
]


def _name(method: str, weight: float | None, shift: int) -> str:
    return f"{method}" + ("" if weight is None else f"_w{weight:g}") + (f"_shift{shift}" if shift else "")


def _run(overrides: list[str], out: str) -> dict:
    doc = B.run_one(overrides, Path(out))
    met = doc["metrics"]
    return {"train_cpu_s": doc["cpu_timings_s"]["train"], **{k: met[k] for k in ("er_old", "er_new", "nfr", "rel_nfr",
                                                                                  "ci95")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--shift", type=int, default=4, help="train.shift_pixels of the augmented rows")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=B.ROOT / "benchmarks" / "results" / "compat_long")
    args = ap.parse_args()
    out = args.out if args.out.is_absolute() else B.ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    base = B.COMMON + B.SCENARIOS["cifar10_arch"]["overrides"] + [f"train.epochs={args.epochs}", f"seed={args.seed}"]
    start = time.perf_counter()
    B._worker_init()
    rows = [{"method": "none", "weight": None, "shift_pixels": 0,
             **_run(B.merge(base, ["method=none"]), str(out / "none"))}]
    print(f"[{time.perf_counter() - start:5.0f}s] none done", flush=True)
    old = out / "none" / "old_model.pt"
    jobs = []
    for method, weight, shift in ROWS:
        shift = args.shift if shift else 0
        ov = [f"method={method}", f"old.checkpoint={old}", f"train.shift_pixels={shift}"]
        if weight is not None:
            ov.append(f"{B.WEIGHT_KEY[method]}={weight}")
        jobs.append(((method, weight, shift), B.merge(base, ov),
                     str(out / _name(method, weight, shift))))
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), initializer=B._worker_init) as pool:
        futures = [(key, pool.submit(_run, ov, o)) for key, ov, o in jobs]
        for (method, weight, shift), fut in futures:
            rows.append({"method": method, "weight": weight, "shift_pixels": shift, **fut.result()})
            print(f"[{time.perf_counter() - start:5.0f}s] {_name(method, weight, shift)} done", flush=True)
    refs = {r["shift_pixels"]: r for r in rows if r["method"] == "none"}
    lines = [f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by benchmarks/compat_long_training.py on "
             f"{platform.machine()} {platform.system()}, torch 1 thread per run, --jobs {args.jobs}; seed {args.seed}, "
             f"{args.epochs} epochs for both models, old model of the `none` run in every row; "
             f"{time.perf_counter() - start:.0f} s.", "",
             "| new model | method | λ | ER_new | ΔER_new (points) | NFR | rel NFR (95% CI) | Δ rel NFR | train CPU s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = refs.get(r["shift_pixels"])
        lo, hi = r["ci95"]["rel_nfr"]
        d_er = "" if r is ref or ref is None else f"{100 * (r['er_new'] - ref['er_new']):+.2f}"
        d_rel = "" if r is ref or ref is None else f"{100 * (r['rel_nfr'] / ref['rel_nfr'] - 1):+.0f}%"
        kind = f"{args.epochs} epochs" + (f", shift {r['shift_pixels']}" if r["shift_pixels"] else "")
        weight = "" if r["weight"] is None else f"{r['weight']:g}"
        lines.append(f"| {kind} | {r['method']} | {weight} | "
                     f"{100 * r['er_new']:.2f} | {d_er} | {100 * r['nfr']:.2f} | {100 * r['rel_nfr']:.1f} "
                     f"[{100 * lo:.1f}, {100 * hi:.1f}] | {d_rel} | {r['train_cpu_s']:.0f} |")
    text = "\n".join(lines) + "\n"
    (out / "compat_long.md").write_text(text)
    (out / "compat_long.json").write_text(json.dumps({"rows": rows}, indent=1))
    print("\n" + text)


if __name__ == "__main__":
    main()
