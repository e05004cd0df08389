"""Outcome rates of the variant scans: mini-batch SC (random batches, batch binding) and UFM+.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/variants.py [--inits 64]

For each case, ``--inits`` random starts (``variants.minibatch_scan`` /
``variants.nonneg_scan``, float64, gradient tolerance 1e-9) and the fractions
of runs that converge, reach the full-batch optimum ``L*`` (loss within 1e-6
relative, or certified) and, for UFM+, reach the orthogonal frame
(``nonneg_optimum_loss``, attained iff d >= k). The batching of a mini-batch
case is fixed for the whole optimisation (``loss.make_batches`` with seed 0):
the objective is ``sum_b L(H_B_b)`` of that batching. Writes
``benchmarks/results/variants.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

from sclandscape.core import problems  # noqa: E402
from sclandscape.explore import variants  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.numerics import loss  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BALANCED = problems.balanced_counts(4, 5)
STEP = problems.step_counts(2, 2, 2, 5)

MINIBATCH = (
    # counts, d, tau, batch size (None = one full batch), bind
    (BALANCED, 3, 1.0, None, False),
    (BALANCED, 3, 1.0, 5, False),
    (BALANCED, 3, 1.0, 5, True),
    (BALANCED, 3, 1.0, 10, False),
    (BALANCED, 3, 1.0, 10, True),
    (BALANCED, 3, 0.1, 5, False),
    (BALANCED, 3, 0.1, 5, True),
    (STEP, 3, 1.0, None, False),
    (STEP, 3, 1.0, 6, False),
    (STEP, 3, 1.0, 6, True),
)
NONNEG = (
    # counts, d, tau
    (BALANCED, 3, 1.0),
    (BALANCED, 4, 1.0),
    (BALANCED, 6, 1.0),
    (BALANCED, 4, 0.1),
    (STEP, 4, 1.0),
    (STEP, 6, 1.0),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "variants.json"))
    args = parser.parse_args()
    settings = variants.VariantSettings()
    rows = []
    for counts, d, tau, size, bind in MINIBATCH:
        labels = problems.labels_from_counts(counts)
        batches = (
            np.arange(len(labels))[None, :] if size is None else loss.make_batches(labels, size, 0, bind)
        )
        t0 = time.perf_counter()
        rec = variants.minibatch_scan(problems.Problem(counts, d, tau), batches, args.inits, seed=args.seed)
        rows.append(
            {
                "variant": "minibatch",
                "counts": list(counts),
                "dim": d,
                "tau": tau,
                "batch_size": size,
                "bind": bind,
                "n_batches": int(batches.shape[0]),
                "seconds": time.perf_counter() - t0,
                **variants.outcome_rates(rec),
            }
        )
        print_row(rows[-1])
    for counts, d, tau in NONNEG:
        t0 = time.perf_counter()
        rec = variants.nonneg_scan(problems.Problem(counts, d, tau), args.inits, seed=args.seed)
        rows.append(
            {
                "variant": "nonneg",
                "counts": list(counts),
                "dim": d,
                "tau": tau,
                "seconds": time.perf_counter() - t0,
                "min_entry": float(np.min(rec["min_entry"])),
                "max_row_norm_error": float(np.max(rec["row_norm_error"])),
                **variants.outcome_rates(rec),
            }
        )
        print_row(rows[-1])
    atomic.write_json(
        args.out,
        {"machine": machine_info(), "settings": settings.to_json(), "inits": args.inits, "cases": rows},
    )


def print_row(r):
    what = (
        f"batches of {r['batch_size'] or 'all'}{' + binding' if r.get('bind') else ''}"
        if r["variant"] == "minibatch"
        else "UFM+"
    )
    extra = f", frame {r['reaches_nonneg']:.2f}" if "reaches_nonneg" in r else ""
    print(
        f"{r['variant']:<9} counts {','.join(map(str, r['counts']))} d={r['dim']} tau={r['tau']:g} {what}: "
        f"converged {r['converged']:.2f}, L* {r['reaches_global']:.2f}{extra}, "
        f"median gap {r['median_gap']:.3g}, {r['n_distinct_losses']} losses ({r['seconds']:.0f} s)"
    )


if __name__ == "__main__":
    main()
