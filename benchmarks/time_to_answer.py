"""Time to answer, whole processes side by side: ``sclandscape scan`` against Pymanopt's trust regions.

    .venv/bin/python benchmarks/time_to_answer.py [--inits 64] [--repeats 3] [--large 8192]
                                                  [--pymanopt-runs 8] [--out FILE.json]

Problem B of ``benchmarks/scan.py`` (4 classes of 5, d = 8, tau = 0.5), float32
first order, gradient tolerance 1e-5. Each figure is the wall clock of a fresh
process (``subprocess``, imports included):

1. ``sclandscape scan ... --inits 64`` with an empty compilation cache (a
   fresh ``SCLANDSCAPE_CACHE_DIR``), then again with that cache warm; the
   pair repeated ``--repeats`` times (medians and every value recorded);
2. Pymanopt 2.2 ``TrustRegions`` (JAX backend, one initialisation at a time,
   as its users run it), a whole process for the same 64 inits;
3. ``--large`` inits (8192): sclandscape whole process, warm, per converged
   init; Pymanopt per converged init from its median run time in a process
   of ``--pymanopt-runs`` runs (its first run, which compiles, excluded:
   generous to Pymanopt, whose 8192 runs would take about an hour here).

Ratios are Pymanopt's time over ours. Results written atomically to JSON
(default ``benchmarks/results/time_to_answer.json``). Needs the ``peers``
extra (``make bench-scan`` installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTS, DIM, TAU, TOL = (5, 5, 5, 5), 8, 0.5, 1e-5

PYMANOPT_CHILD = """
import json, statistics, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np, pymanopt
from sclandscape.core import problems
from sclandscape.numerics import loss
counts, dim, tau, tol, runs = {counts!r}, {dim}, {tau}, {tol}, {runs}
labels = jnp.asarray(problems.labels_from_counts(counts))
manifold = pymanopt.manifolds.Oblique(dim, sum(counts))  # unit-norm columns: X = H^T

@pymanopt.function.jax(manifold)
def cost(X):
    return jnp.sum(loss.anchor_losses(X.T @ X, labels, tau))

optimizer = pymanopt.optimizers.TrustRegions(min_gradient_norm=tol, max_iterations=1000, verbosity=0)
rng = np.random.default_rng(0)
walls, converged = [], 0
for _ in range(runs):
    X0 = rng.standard_normal((dim, sum(counts)))
    X0 /= np.linalg.norm(X0, axis=0, keepdims=True)
    t0 = time.perf_counter()
    result = optimizer.run(pymanopt.Problem(manifold, cost), initial_point=X0)
    walls.append(time.perf_counter() - t0)
    converged += int(result.gradient_norm <= tol)
print(json.dumps({{"runs": runs, "converged": converged, "walls": walls}}))
"""


def timed(cmd, env=None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, proc.stdout


def ours(inits: int, cache: str, out: str) -> dict:
    env = dict(os.environ, SCLANDSCAPE_CACHE_DIR=cache)
    counts = ",".join(map(str, COUNTS))
    cmd = [sys.executable, "-m", "sclandscape.cli", "scan", "--counts", counts, "--dim", str(DIM)]
    cmd += ["--tau", str(TAU), "--inits", str(inits), "--tol", str(TOL), "--out", out, "--quiet"]
    wall, _ = timed(cmd, env)
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out, "config.json")) as f:
        timing = json.load(f)["timing"]
    converged = summary["n_inits"] - summary["counts"]["not_converged"]
    return {"wall_s": wall, "converged": converged, "timing": timing}


def pymanopt(runs: int) -> dict:
    code = PYMANOPT_CHILD.format(counts=COUNTS, dim=DIM, tau=TAU, tol=TOL, runs=runs)
    wall, stdout = timed([sys.executable, "-c", code])
    data = json.loads(stdout.strip().splitlines()[-1])
    steady = data["walls"][1:] or data["walls"]
    return {"wall_s": wall, **data, "median_run_s": statistics.median(steady)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", type=int, default=8192)
    parser.add_argument("--pymanopt-runs", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "time_to_answer.json"))
    args = parser.parse_args(argv)
    from machine import machine_info

    from sclandscape.folders import atomic

    report = {"machine": machine_info(), "problem": {"counts": COUNTS, "dim": DIM, "tau": TAU, "tol": TOL}}
    with tempfile.TemporaryDirectory() as tmp:
        pairs = []
        for r in range(args.repeats):
            cache = os.path.join(tmp, f"cache{r}")
            empty = ours(args.inits, cache, os.path.join(tmp, f"empty{r}"))
            warm = ours(args.inits, cache, os.path.join(tmp, f"warm{r}"))
            pairs.append({"empty": empty, "warm": warm})
            e, w = empty["wall_s"], warm["wall_s"]
            print(f"sclandscape {args.inits} inits: empty cache {e:.1f} s, warm {w:.1f} s")
        peer = pymanopt(args.inits)
        print(f"pymanopt {args.inits} inits: {peer['wall_s']:.1f} s ({peer['converged']} converged)")
        empty_med = statistics.median(p["empty"]["wall_s"] for p in pairs)
        warm_med = statistics.median(p["warm"]["wall_s"] for p in pairs)
        report["small"] = {
            "inits": args.inits,
            "sclandscape": pairs,
            "pymanopt": peer,
            "median_empty_s": empty_med,
            "median_warm_s": warm_med,
            "ratio_empty": peer["wall_s"] / empty_med,
            "ratio_warm": peer["wall_s"] / warm_med,
        }
        print(f"ratios: empty cache {peer['wall_s'] / empty_med:.1f}x, warm {peer['wall_s'] / warm_med:.1f}x")
        if args.large:
            big = ours(args.large, os.path.join(tmp, "cache0"), os.path.join(tmp, "large"))
            per_init = big["wall_s"] / max(big["converged"], 1)
            peer_big = pymanopt(args.pymanopt_runs)
            peer_per = peer_big["median_run_s"] / max(peer_big["converged"] / peer_big["runs"], 1e-12)
            report["large"] = {
                "inits": args.large,
                "sclandscape": big,
                "sclandscape_s_per_converged": per_init,
                "pymanopt": peer_big,
                "pymanopt_s_per_converged": peer_per,
                "ratio": peer_per / per_init,
            }
            print(
                f"{args.large} inits: {big['wall_s']:.1f} s, {1e3 * per_init:.2f} ms per converged init; "
                f"pymanopt {1e3 * peer_per:.0f} ms: {peer_per / per_init:.0f}x"
            )
    atomic.write_json(args.out, report)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
