"""How many negative flips does a model update cause beyond retraining the same model with another seed?

Usage::

    .venv/bin/python benchmarks/compat_flip_floor.py benchmarks/results/compat_jobs2/compat_runs/cifar10_arch

The directory holds one ``seed<S>/<method>/`` run per seed of ``bench_compat.py`` (each with the new model's
``predictions.npz`` and the old model's ``old_predictions.npz`` on the same test set).  From the ``none`` runs it
prints, for every ordered pair:

* old -> new (same seed): the update the benchmark measures;
* new (seed a) -> new (seed b): the same new model retrained with another seed -- the flips training noise alone
  makes (the "flip floor" of this training budget);
* old (seed a) -> old (seed b): the same for the old model;
* old -> the logit mean of every seed's new model (an ensemble, which is what ELODI-style methods distil).

NFR = share of test samples the first model gets right and the second wrong; relative NFR = NFR / ((1 - ER_first)
ER_second), the Yan et al. (CVPR 2021) normalisation used by ``toolkit train-compatible``.  Prints the machine.
"""

from __future__ import annotations

import platform
import sys
from itertools import permutations
from pathlib import Path

import numpy as np


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, predictions, logits, ids)`` of a predictions file, sorted by sample id."""
    d = np.load(path)
    order = np.argsort(d["ids"])
    return d["labels"][order], d["predictions"][order], d["logits"][order], d["ids"][order]


def flips(first: np.ndarray, second: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """NFR, relative NFR and both error rates (percent) of replacing ``first`` by ``second``."""
    nfr = float(((first == y) & (second != y)).mean())
    er1, er2 = float((first != y).mean()), float((second != y).mean())
    return {"nfr": 100 * nfr, "rel_nfr": 100 * nfr / ((1 - er1) * er2), "er_first": 100 * er1, "er_second": 100 * er2}


def main(argv: list[str]) -> None:
    """Print the flip table of the ``none`` runs under ``argv[0]``."""
    root = Path(argv[0])
    seeds = sorted(int(p.name[4:]) for p in root.glob("seed*") if (p / "none" / "predictions.npz").exists())
    if len(seeds) < 2:
        raise SystemExit(f"{root}: needs the none runs of at least two seeds")
    new = {s: load(root / f"seed{s}" / "none" / "predictions.npz") for s in seeds}
    old = {s: load(root / f"seed{s}" / "none" / "old_predictions.npz") for s in seeds}
    y, ids = new[seeds[0]][0], new[seeds[0]][3]
    if any(not (np.array_equal(m[0], y) and np.array_equal(m[3], ids)) for m in (*new.values(), *old.values())):
        raise SystemExit(f"{root}: the runs were not evaluated on the same test set")
    print(f"machine: {platform.machine()} {platform.node()}; runs {root}; seeds {seeds}; {len(y)} test samples")
    # (group, pair, flips): the summary lines average each group
    rows = [("the update", f"old s{s} -> new s{s}", flips(old[s][1], new[s][1], y)) for s in seeds]
    rows += [("new model retrained, other seed", f"new s{a} -> new s{b}", flips(new[a][1], new[b][1], y))
             for a, b in permutations(seeds, 2)]
    rows += [("old model retrained, other seed", f"old s{a} -> old s{b}", flips(old[a][1], old[b][1], y))
             for a, b in permutations(seeds, 2)]
    ensemble = np.mean([new[s][2] for s in seeds], axis=0).argmax(1)
    rows += [(f"mean logits of {len(seeds)} new models", f"old s{s} -> ensemble", flips(old[s][1], ensemble, y))
             for s in seeds]
    print("\n| group | pair | ER first | ER second | NFR | relative NFR |\n|---|---|---|---|---|---|")
    for group, pair, f in rows:
        print(f"| {group} | {pair} | {f['er_first']:.2f} | {f['er_second']:.2f} | {f['nfr']:.2f} | {f['rel_nfr']:.1f} |")
    groups: dict[str, list[float]] = {}
    for group, _, f in rows:
        groups.setdefault(group, []).append(f["rel_nfr"])
    print("\n" + "\n".join(f"{k}: relative NFR {np.mean(v):.1f} (range {min(v):.1f}-{max(v):.1f})"
                           for k, v in groups.items()))

if __name__ == "__main__":
    main(sys.argv[1:])
