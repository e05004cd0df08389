"""Benchmark: the class-level program (CLS) against CVXPY on the full n x n relaxation.

    .venv/bin/python benchmarks/optimum.py [--repeats 5] [--out benchmarks/results/optimum.json]

Side by side in one run:
1. CLS solve time for k = 10, 50, 200 classes, balanced (m = 10) and random
   counts (2..99), tau = 0.1 and 1: the first call (includes jit compilation
   for that k) and the median of warm repeats.
2. At n = 30 and 60: CLS against CVXPY with Clarabel (and SCS) on the full
   relaxation, the same problem: wall time (median), solver-only time, and
   the n x n KKT residual of each solution (docs/maths.md §2, same function).
Results are written atomically to a JSON file; a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

import sclandscape as sc  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.theory import certify  # noqa: E402
from sclandscape.theory.relaxation import solve_full_relaxation  # noqa: E402


def timed(fn, repeats):
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return out, first, statistics.median(times) if times else first


def nxn_kkt(G, labels, tau):
    G = jnp.asarray(0.5 * (G + G.T))
    return float(certify.kkt_residual(sc.sc_gram_gradient(G, labels, tau), G))


def cls_rows(repeats):
    rng = np.random.default_rng(0)
    rows = []
    for k in (10, 50, 200):
        for kind in ("balanced", "random"):
            counts = (10,) * k if kind == "balanced" else tuple(int(c) for c in rng.integers(2, 100, size=k))
            for tau in (0.1, 1.0):
                opt, first, warm = timed(lambda c=counts, t=tau: sc.global_optimum(c, t), repeats)
                rows.append(
                    {
                        "k": k,
                        "counts": kind,
                        "n": sum(counts),
                        "tau": tau,
                        "first_s": first,
                        "warm_median_s": warm,
                        "kkt_residual": opt.kkt_residual,
                        "rank": opt.rank,
                        "iterations": opt.iterations,
                    }
                )
                print(
                    f"CLS k={k:4d} {kind:8s} tau={tau}: first {first:.3f}s warm {warm:.4f}s "
                    f"KKT {opt.kkt_residual:.1e}",
                    flush=True,
                )
    return rows


def cvx_rows(repeats):
    rows = []
    for counts in ((12, 8, 6, 4), (24, 16, 12, 8)):
        tau = 1.0
        labels = sc.labels_from_counts(counts)
        opt, cls_first, cls_warm = timed(lambda c=counts, t=tau: sc.global_optimum(c, t), repeats)
        row = {
            "n": sum(counts),
            "counts": list(counts),
            "tau": tau,
            "cls_loss": opt.loss,
            "cls_first_s": cls_first,
            "cls_warm_median_s": cls_warm,
            "cls_kkt_nxn": nxn_kkt(opt.gram(), labels, tau),
        }
        for solver in ("CLARABEL", "SCS"):
            walls, solves = [], []
            for _ in range(max(1, min(repeats, 3))):
                t0 = time.perf_counter()
                value, G, solve_time = solve_full_relaxation(labels, tau, solver=solver)
                walls.append(time.perf_counter() - t0)
                solves.append(solve_time)
            key = solver.lower()
            row[f"{key}_wall_median_s"] = statistics.median(walls)
            row[f"{key}_solve_median_s"] = statistics.median(solves)
            row[f"{key}_loss"] = value
            row[f"{key}_kkt_nxn"] = nxn_kkt(G, labels, tau)
            row[f"{key}_speed_ratio"] = row[f"{key}_wall_median_s"] / cls_warm
            row[f"{key}_kkt_ratio"] = row[f"{key}_kkt_nxn"] / max(row["cls_kkt_nxn"], 1e-300)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/optimum.json")
    args = parser.parse_args()
    data = {
        "machine": machine_info(),
        "cls": cls_rows(args.repeats),
        "cvxpy": cvx_rows(args.repeats),
    }
    atomic.write_json(args.out, data)
    print(
        "\n| n | CLS warm (s) | Clarabel wall (s) | ratio | SCS wall (s) | ratio "
        "| KKT CLS | KKT Clarabel | KKT SCS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in data["cvxpy"]:
        print(
            f"| {r['n']} | {r['cls_warm_median_s']:.4f} | {r['clarabel_wall_median_s']:.2f} | "
            f"{r['clarabel_speed_ratio']:.0f}x | {r['scs_wall_median_s']:.2f} | "
            f"{r['scs_speed_ratio']:.0f}x | "
            f"{r['cls_kkt_nxn']:.1e} | {r['clarabel_kkt_nxn']:.1e} | {r['scs_kkt_nxn']:.1e} |"
        )


if __name__ == "__main__":
    main()
