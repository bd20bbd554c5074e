"""The peer of issue 12: Concrete ML's encrypted logistic-regression training on the data our benchmark uses.

Runs in its *own* environment, never the package's: concrete-ml 1.9.0 pins torch 2.3.1, numpy 1.26.4 and
scikit-learn 1.5.0, which cannot live beside the package (torch 2.13). One-time set-up (about 3 minutes and
several GB, most of it the CUDA build of torch 2.3.1 that the registry serves)::

    python3.11 -m venv ../concrete-venv && ../concrete-venv/bin/pip install concrete-ml==1.9.0

``benchmarks/bench_encrypted_csv.py --concrete-python ../concrete-venv/bin/python`` then writes the split and
scaled arrays it gives our command to an ``.npz`` and calls this script once per row::

    ../concrete-venv/bin/python benchmarks/encrypted_peer_concrete.py DATA.npz --fhe execute --iterations 3

``SGDClassifier(fit_encrypted=True)`` compiles a TFHE training circuit for a fixed minibatch (``batch_size`` 8
samples, 6-bit quantised training, ``parameters_range`` bounding the weights) and iterates it on the server
with the weights staying encrypted between iterations (Concrete's composable circuits), so the data owner is
not involved after key generation and batch encryption. ``--fhe execute`` runs real FHE (per-iteration and
key-generation seconds come from Concrete ML's own verbose report); ``--fhe simulate`` runs Concrete's FHE
simulation of the same quantised circuit, fast enough for the iteration counts the accuracy needs.

Prints one JSON document: accuracy and ROC-AUC on the test split, seconds per iteration, key generation and
compilation seconds, samples per iteration, peak RSS of this process, the library versions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import resource
import time

import numpy as np


def main() -> None:
    """Train, evaluate and print the row (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help=".npz with x_train, y_train, x_test, y_test (already scaled)")
    ap.add_argument("--fhe", choices=["execute", "simulate"], default="simulate")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--parameters-range", type=float, nargs=2, default=(-1.0, 1.0))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import concrete.ml
    from concrete.ml.sklearn import SGDClassifier
    from sklearn.metrics import roc_auc_score

    d = np.load(args.data)
    model = SGDClassifier(fit_encrypted=True, parameters_range=tuple(args.parameters_range),
                          max_iter=args.iterations, random_state=args.seed, verbose=1)
    log = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(log):
        model.fit(d["x_train"], d["y_train"], fhe=args.fhe)
    fit_s = time.perf_counter() - start
    text = log.getvalue()
    iteration_s = [float(s) for s in re.findall(r"Iteration \d+ took ([0-9.]+) seconds", text)]
    keygen = re.findall(r"Key generation took ([0-9.]+) seconds", text)
    compile_ = re.findall(r"Compilation took ([0-9.]+) seconds", text)
    proba = model.predict_proba(d["x_test"])[:, 1]
    y_test = d["y_test"]
    print(json.dumps({
        "peer": "concrete-ml SGDClassifier(fit_encrypted=True)", "fhe": args.fhe, "iterations": args.iterations,
        "samples_per_iteration": int(model.batch_size), "parameters_range": list(args.parameters_range),
        "accuracy": float(((proba >= 0.5).astype(int) == y_test).mean()), "auc": float(roc_auc_score(y_test, proba)),
        "seconds_per_iteration": float(np.mean(iteration_s)) if iteration_s else None,
        "first_iteration_s": iteration_s[0] if iteration_s else None,
        "keygen_s": float(keygen[0]) if keygen else None, "compile_s": float(compile_[0]) if compile_ else None,
        "fit_s": fit_s, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {"concrete-ml": concrete.ml.__version__},
    }))


if __name__ == "__main__":
    main()
