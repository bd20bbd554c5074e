"""Where an encrypted iteration's time goes: SEAL calls of one `toolkit train-encrypted` run, by operation.

Usage::

    .venv/bin/python benchmarks/encrypted_profile.py low-depth 8192 [iterations] [extra overrides...]
    .venv/bin/python benchmarks/encrypted_profile.py baseline 8192

Runs the command in this process under ``cProfile`` (``data=mnist38``, one worker so every SEAL call is in this
process, ``train.lr=2.0`` as in ``bench_encrypted.py``; output in ``benchmarks/results/encrypted_profile_<circuit>_b<batch>``)
and prints, for the SEAL operations (TenSEAL's ``_sealapi_cpp``), calls, total seconds and milliseconds per call,
beside the run's own seconds per iteration. Includes data encryption and refreshes, so compare operations, not
the total. Prints the machine it ran on.
"""

from __future__ import annotations

import cProfile
import json
import platform
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPS = ("rotate_vector", "relinearize_inplace", "rescale_to_next_inplace", "multiply", "multiply_plain",
       "mod_switch_to", "encrypt_symmetric", "add", "add_inplace")


def main(argv: list[str]) -> None:
    """Profile one run and print the SEAL operations' totals."""
    from typer.main import get_command

    from toolkit.cli import app

    circuit, batch = argv[0], int(argv[1])
    iterations = int(argv[2]) if len(argv) > 2 else 3
    out = ROOT / "benchmarks" / "results" / f"encrypted_profile_{circuit}_b{batch}"
    args = ["train-encrypted", "-q", "data=mnist38", f"circuit={circuit}", f"train.iterations={iterations}",
            f"train.batch_size={batch}", "workers=1", "train.lr=2.0", "plot=false", f"output_dir={out}", *argv[3:]]
    prof = cProfile.Profile()
    prof.enable()
    try:
        get_command(app).main(args, standalone_mode=False)
    finally:
        prof.disable()
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    print(f"machine: {platform.machine()} {platform.node()}; {circuit}, batch {batch}, {iterations} iterations: "
          f"{m['seconds_per_iteration']:.2f} s/iter, {m['seconds_per_iteration_incl_refresh']:.2f} s/iter incl. refresh")
    stats = pstats.Stats(prof).stats
    for (_file, _line, name), (_cc, calls, tottime, _cum, _callers) in sorted(stats.items(), key=lambda kv: -kv[1][2]):
        op = name.removeprefix("<built-in method _sealapi_cpp.").removesuffix(">")
        if "_sealapi_cpp" in name and op in OPS:
            print(f"{op:26s} {calls:7d} calls {tottime:7.2f} s {1000 * tottime / calls:7.3f} ms/call")


if __name__ == "__main__":
    main(sys.argv[1:])
