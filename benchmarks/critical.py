"""Benchmark: throughput of the critical-point finder, batched (one vmap) against one run at a time.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/critical.py [--out benchmarks/results/critical.json]

``critical.find_critical`` in float64, gradient tolerance 1e-10, 100 LM
iterations at most, from two kinds of start:

- ``collapsed``: every class on a random point of the sphere, plus Gaussian
  noise of size 0.05 per entry, rows normalised (what the symmetric
  constructions hand to the finder, roughly; they end at saddles of various
  index and at minima);
- ``uniform``: uniform random points of ``OB(n, d)`` (far from every
  critical point; the hard case);

at two sizes:

- small: 4 classes of 5, d = 3 (n = 20, tangent dimension 40), dense model;
- medium: 10 classes of 10, d = 9 (n = 100, tangent dimension 800), Lanczos
  model (60 Hessian-vector products per iteration).

"batched" solves ``B`` starts in one call (the compiled vmap); "one at a time"
calls the same public function on one start after another (its own compiled
batch of one). Compilation is timed separately (first call) and excluded from
the rates. Critical points per second = converged runs / wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

from sclandscape.core import problems  # noqa: E402
from sclandscape.explore import critical  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.numerics.optim import Status  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = (
    # name, k, m, d, method, start, batch, singles
    ("small", 4, 5, 3, "dense", "collapsed", 64, 16),
    ("small", 4, 5, 3, "dense", "uniform", 64, 16),
    ("medium", 10, 10, 9, "lanczos", "collapsed", 16, 4),
    ("medium", 10, 10, 9, "lanczos", "uniform", 8, 2),
)


def starts(seed, runs, labels, d, kind):
    rng = np.random.default_rng(seed)
    n = len(labels)
    if kind == "uniform":
        X = rng.standard_normal((runs, n, d))
    else:
        k = int(labels.max()) + 1
        X = rng.standard_normal((runs, k, d))[:, labels] + 0.05 * rng.standard_normal((runs, n, d))
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def run_case(name, k, m, d, method, kind, batch, singles, tau):
    counts = problems.balanced_counts(k, m)
    labels = problems.labels_from_counts(counts)
    n = len(labels)
    settings = critical.CriticalSettings(method=method)
    t0 = time.perf_counter()
    out = critical.find_critical(starts(0, batch, labels, d, kind), labels, tau, settings)
    jax.block_until_ready(out.x)
    compile_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = critical.find_critical(starts(1, batch, labels, d, kind), labels, tau, settings)
    jax.block_until_ready(out.x)
    wall_batch = time.perf_counter() - t0
    ok = np.asarray(out.status) == Status.CONVERGED

    t0 = time.perf_counter()
    jax.block_until_ready(critical.find_critical(starts(2, 1, labels, d, kind)[0], labels, tau, settings).x)
    compile_single = time.perf_counter() - t0
    times, ok_single, iters_single = [], [], []
    for H0 in starts(3, singles, labels, d, kind):
        t0 = time.perf_counter()
        one = critical.find_critical(H0, labels, tau, settings)
        jax.block_until_ready(one.x)
        times.append(time.perf_counter() - t0)
        ok_single.append(int(one.status) == Status.CONVERGED)
        iters_single.append(int(one.iterations))
    wall_single = sum(times)
    row = {
        "case": name,
        "counts": f"{k} x {m}",
        "n": n,
        "d": d,
        "tangent_dim": n * (d - 1),
        "tau": tau,
        "method": method,
        "start": kind,
        "batch": batch,
        "batched": {
            "compile_s": compile_batch,
            "wall_s": wall_batch,
            "converged": int(ok.sum()),
            "points_per_s": float(ok.sum() / wall_batch),
            "median_iterations": float(np.median(np.asarray(out.iterations))),
            "max_iterations": int(np.max(np.asarray(out.iterations))),
            "median_grad_evals": float(np.median(np.asarray(out.evals))),
            "status": {s.name.lower(): int(np.sum(np.asarray(out.status) == s)) for s in Status},
        },
        "one_at_a_time": {
            "compile_s": compile_single,
            "runs": singles,
            "wall_s": wall_single,
            "median_run_s": statistics.median(times),
            "converged": int(sum(ok_single)),
            "points_per_s": float(sum(ok_single) / wall_single),
            "median_iterations": float(np.median(iters_single)),
        },
    }
    row["speedup"] = row["batched"]["points_per_s"] / max(row["one_at_a_time"]["points_per_s"], 1e-300)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tau", type=float, default=1.0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "critical.json"))
    args = parser.parse_args()
    rows = [run_case(*case, args.tau) for case in CASES]
    report = {"machine": machine_info(), "settings": critical.CriticalSettings().to_json(), "cases": rows}
    atomic.write_json(args.out, report)
    print(
        "| case | n x d | model | start | batch | batched pts/s | single pts/s | speed-up | conv. | iters |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, s = r["batched"], r["one_at_a_time"]
        print(
            f"| {r['case']} | {r['n']} x {r['d']} | {r['method']} | {r['start']} | {r['batch']} | "
            f"{b['points_per_s']:.2f} | "
            f"{s['points_per_s']:.2f} | {r['speedup']:.1f}x | {b['converged']}/{r['batch']} | "
            f"{b['median_iterations']:.0f} |"
        )


if __name__ == "__main__":
    main()
