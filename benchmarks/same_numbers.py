"""Behaviour check for refactors: run a fixed set of quick CLI commands and compare their metrics with another checkout.

Issue 11 asks that moving the inside of the commands (config trees, ``_target_`` components, schemas) leaves
every number unchanged.  This script runs the same short commands, with the same seeds, against two source
trees -- this checkout and ``--before`` (another checkout of the repository, e.g. a ``git worktree`` of the commit
before the change) -- and reports every numeric metric that differs.  Timings, memory and paths are ignored.

Usage::

    git worktree add ../wt_before 092948c
    .venv/bin/python benchmarks/same_numbers.py --before ../wt_before --out benchmarks/results/same_numbers

Both trees run with this checkout's virtualenv; the ``--before`` tree is put first on ``PYTHONPATH`` so its
``toolkit`` package and its ``configs/`` are the ones imported.  ``TOOLKIT_DATA`` points both at this
checkout's ``../shared/data``.  ``--before .`` runs this checkout twice: the run-to-run noise floor.

Not bit-identical by design: train-encrypted's CKKS encryption draws fresh randomness every run (a seeded
encryption would be insecure), so its ciphertext sizes and the last digits of its encrypted results move
between any two runs.  Exit status: 0 when every compared metric is equal (within ``--rtol``), 1
otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, argv after ``toolkit``): short runs touching every command and the components issue 11 moved
#: (zoo networks from configs/network, compress classifiers from ``_target_``, the cluster encoder).
RUNS: list[tuple[str, list[str]]] = [
    ("cluster digits hilander", ["cluster", "method=hilander", "seed=0"]),
    ("cluster digits auto", ["cluster", "seed=0"]),
    ("cluster omniglot encoder", ["cluster", "data=omniglot", "method=hac", "seed=0", "encoder.epochs=2"]),
    ("train-compatible digits fd-kl", ["train-compatible", "seed=0"]),
    ("train-compatible digits bct cnn", ["train-compatible", "method=bct", "model=cnn", "seed=0", "train.epochs=3"]),
    ("compress trec dan", ["compress", "data=trec", "model=dan", "seed=0", "baselines.enabled=false"]),
    ("compress trec lstm", ["compress", "data=trec", "model=lstm", "seed=0", "baselines.enabled=false",
                            "pretrain.epochs=2", "finetune.epochs=2"]),
    ("compress trec textcnn", ["compress", "data=trec", "model=textcnn", "seed=0", "baselines.enabled=false",
                               "pretrain.epochs=2", "finetune.epochs=2"]),
    ("train-encrypted breast_cancer", ["train-encrypted", "seed=0"]),
]

#: Metric keys (any level) that measure the machine, not the model.
IGNORED = ("time", "_s", "seconds", "rss", "memory", "cpu", "path", "dir", "bytes_on_disk", "version", "latency")


def flatten(obj: object, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON document as ``{"a.b.c": value}``; lists are indexed ``a.0``.

    Keys containing any of :data:`IGNORED` are dropped (wall/CPU time, memory, paths).
    """
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if any(tag in str(key).lower() for tag in IGNORED):
                continue
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}{i}."))
    elif isinstance(obj, (bool, int, float)):
        out[prefix[:-1]] = float(obj)
    return out


def run_tree(tree: Path, argv: list[str], workdir: Path) -> tuple[dict[str, float], float]:
    """Run ``toolkit <argv> --json`` with ``tree``'s package first on the path; return its flat metrics and wall time.

    Raises:
        RuntimeError: the command failed (its stderr tail is in the message).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TOOLKIT_DATA", str(ROOT.parent / "shared" / "data"))
    env["CI"] = "1"
    out_dir = workdir / "out"
    cmd = [sys.executable, "-m", "toolkit", *argv, f"output_dir={out_dir}", "--json", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {tree}: exit {proc.returncode}: {proc.stderr[-400:]}")
    doc = json.loads(proc.stdout)
    return flatten(doc.get("metrics", {})), wall


def compare(a: dict[str, float], b: dict[str, float], rtol: float) -> list[str]:
    """Keys present in both whose values differ by more than ``rtol`` (relative, or absolute near 0)."""
    diffs = []
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if math.isnan(x) and math.isnan(y):
            continue
        if abs(x - y) > rtol * max(1.0, abs(x), abs(y)):
            diffs.append(f"{key}: {y:.6g} -> {x:.6g}")
    return diffs


def main() -> int:
    """Run :data:`RUNS` on both trees, print a table, write ``<out>.json`` and ``<out>.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="another checkout of the repository")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "same_numbers")
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--only", nargs="*", default=None, help="names (substrings) of RUNS to run")
    args = parser.parse_args()
    before = args.before.resolve()
    rows = []
    for name, argv in RUNS:
        if args.only and not any(s in name for s in args.only):
            continue
        with tempfile.TemporaryDirectory() as tmp_a, tempfile.TemporaryDirectory() as tmp_b:
            old, t_old = run_tree(before, argv, Path(tmp_b))
            new, t_new = run_tree(ROOT, argv, Path(tmp_a))
        diffs = compare(new, old, args.rtol)
        only_old = sorted(set(old) - set(new))
        only_new = sorted(set(new) - set(old))
        rows.append({"name": name, "argv": argv, "compared": len(set(old) & set(new)), "differ": diffs,
                     "only_before": only_old, "only_after": only_new, "wall_s": [t_old, t_new]})
        status = "same" if not diffs else f"{len(diffs)} differ"
        print(f"{name}: {len(set(old) & set(new))} metrics compared, {status} "
              f"({t_old:.0f} s / {t_new:.0f} s)", file=sys.stderr)
        for line in diffs[:10]:
            print(f"    {line}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"before": str(before), "rows": rows}, indent=2))
    lines = ["| run | metrics compared | differing | only before / only after |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['compared']} | {len(r['differ'])} | "
                     f"{len(r['only_before'])} / {len(r['only_after'])} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(not r["differ"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
