"""Benchmark: the streaming SC loss + gradient against the dense path, time and peak memory.

    .venv/bin/python benchmarks/streaming.py [--sizes 1000,5000,20000] [--out FILE.json]

Side by side in one run, float32, ``d = 32``, 10 balanced classes, ``tau = 0.1``:
1. loss + gradient of one run, dense (``anchor_losses`` on ``H H^T``, what the
   scan differentiates) against ``streaming.value_and_grad`` (block 512): the
   median wall and CPU time of ``--repeats`` warm calls, the compiled program's
   temporary memory (XLA ``memory_analysis``) and the max RSS of the process.
   Every measurement runs in a fresh subprocess, so RSS is that path's alone.
2. The largest ``n`` each path handles here: dense by its compiled temporary
   memory against the RAM available (compile only, nothing allocated, so the
   probe cannot exhaust the machine), streaming by running it at
   ``--stream-max-n`` and compiling (only) at ``10x`` that.
3. 256 runs at ``n = 5000``: ``scan.py`` calls the dense loss, so this times
   our own batched loop instead, ``vmap`` over runs of the scan's L-BFGS
   (``optim.lbfgs_armijo``) on the streaming loss: seconds per batched
   evaluation and RSS; a whole scan is extrapolated, not run.
4. One Riemannian HVP and the matrix-free certificate (float64 Lanczos) at
   ``n = 20000`` on the collapsed simplex ETF (a global optimum).
Results are written atomically to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

from sclandscape.folders import atomic  # noqa: E402
from sclandscape.numerics import loss, oblique, optim, streaming  # noqa: E402
from sclandscape.theory import certify, hessian  # noqa: E402

D, TAU, K, BLOCK = 32, 0.1, 10, 512


def _problem(n, dtype=jnp.float32):
    labels = jnp.arange(n) % K
    H = oblique.normalize_rows(jax.random.normal(jax.random.key(n), (n, D), dtype))
    return H, labels


def _dense_vg(labels):
    return jax.jit(jax.value_and_grad(lambda h: jnp.sum(loss.anchor_losses(h @ h.T, labels, TAU))))


def _stream_vg(labels, block=BLOCK):
    return jax.jit(jax.value_and_grad(streaming.streaming_loss(labels, TAU, block=block, impl="jax")))


def _timed(fn, *args, repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))  # compile + first call
    first = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return out, {
        "first_s": first,
        "median_s": statistics.median(walls),
        "median_cpu_s": statistics.median(cpus),
    }


def _max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------
# Workers (each in a fresh process)


def work_loss(path, n, repeats):
    H, labels = _problem(n)
    fn = _dense_vg(labels) if path == "dense" else _stream_vg(labels)
    temp = fn.lower(H).compile().memory_analysis().temp_size_in_bytes
    (value, grad), timing = _timed(fn, H, repeats=repeats)
    return {
        "path": path,
        "n": n,
        "value": float(value),
        "grad_norm": float(jnp.linalg.norm(grad)),
        "temp_mb": temp / 2**20,
        "max_rss_mb": _max_rss_mb(),
        **timing,
    }


def work_baseline():
    H, labels = _problem(1000)
    jax.block_until_ready(jax.jit(lambda h: h @ h.T[:, :1])(H))
    return {"max_rss_mb": _max_rss_mb()}


def work_compile(path, n):
    labels = jnp.arange(n) % K
    H = jax.ShapeDtypeStruct((n, D), jnp.float32)
    fn = _dense_vg(labels) if path == "dense" else _stream_vg(labels)
    mem = fn.lower(H).compile().memory_analysis()
    return {"path": path, "n": n, "temp_mb": mem.temp_size_in_bytes / 2**20}


def work_batched(runs, n, steps, block):
    cost = streaming.streaming_loss(jnp.arange(n) % K, TAU, block=block, impl="jax")
    f = lambda h: cost(oblique.normalize_rows(h))  # noqa: E731  the scan's f(H) = L(rownormalise(H))
    opt = optim.lbfgs_armijo(memory_size=10)

    @jax.jit
    def step(H, state):
        def one(h, s):
            value, grad = jax.value_and_grad(f)(h)
            updates, s = opt.update(grad, s, h, value=value)
            return oblique.normalize_rows(h + updates), s, value

        return jax.vmap(one)(H, state)

    keys = jax.random.split(jax.random.key(0), runs)
    H = jax.vmap(lambda k: oblique.normalize_rows(jax.random.normal(k, (n, D), jnp.float32)))(keys)
    state = jax.vmap(opt.init)(H)
    t0 = time.perf_counter()
    H, state, values = jax.block_until_ready(step(H, state))
    first = time.perf_counter() - t0
    walls = []
    for _ in range(steps):
        t0 = time.perf_counter()
        H, state, values = jax.block_until_ready(step(H, state))
        walls.append(time.perf_counter() - t0)
    return {
        "runs": runs,
        "n": n,
        "block": block,
        "first_step_s": first,
        "step_s": walls,
        "median_step_s": statistics.median(walls),
        "median_loss_after": float(jnp.median(values)),
        "max_rss_mb": _max_rss_mb(),
    }


def _etf(n):
    labels = np.arange(n) % K
    H = np.zeros((n, D))
    H[:, :K] = np.eye(K)[labels] - 1.0 / K
    return jnp.asarray(H / np.linalg.norm(H, axis=1, keepdims=True)), labels


def work_certificate(n, num_iter):
    H, labels = _etf(n)
    V = oblique.project_tangent(H, jax.random.normal(jax.random.key(1), H.shape, H.dtype))
    hv = jax.jit(lambda h, v: hessian.hvp_operator(h, labels, TAU, stream=True)(v))
    _, hvp_timing = _timed(hv, H, V, repeats=1)
    t0 = time.perf_counter()
    out = jax.block_until_ready(certify.dual_slack_extremes(H, labels, TAU, block=BLOCK, num_iter=num_iter))
    wall = time.perf_counter() - t0
    return {
        "n": n,
        "dtype": "float64",
        "riemannian_hvp": hvp_timing,
        "num_iter": num_iter,
        "certificate_s": wall,
        "lambda_min": float(out.lambda_min),
        "residual": float(out.residual),
        "gap_bound": float(out.gap_bound),
        "max_rss_mb": _max_rss_mb(),
    }


WORKERS = {
    "loss": work_loss,
    "baseline": work_baseline,
    "compile": work_compile,
    "batched": work_batched,
    "certificate": work_certificate,
}


def run_worker(task, **kwargs):
    """Run ``WORKERS[task](**kwargs)`` in a fresh Python process; its JSON result."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    spec = json.dumps({"task": task, "kwargs": kwargs})
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", spec], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        return {"task": task, **kwargs, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# Driver


def available_mb():
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 1024


def dense_max_n(budget_mb, start=20000, step=2000, limit=80000):
    """Largest ``n`` on the ``step`` grid whose compiled dense temporaries fit ``budget_mb`` (no run)."""
    probes, best = [], None
    n = start
    while n <= limit:
        row = run_worker("compile", path="dense", n=n)
        probes.append(row)
        print("dense compile", row, flush=True)
        if "error" in row or row["temp_mb"] + n * D * 4 * 2 / 2**20 > budget_mb:
            break
        best = n
        n += step
    return best, probes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large-repeats", type=int, default=2, help="repeats at n >= 20000")
    parser.add_argument("--stream-max-n", type=int, default=100_000)
    parser.add_argument("--batched-runs", type=int, default=256)
    parser.add_argument("--batched-n", type=int, default=5000)
    parser.add_argument("--batched-steps", type=int, default=3)
    parser.add_argument("--batched-block", type=int, default=256)
    parser.add_argument("--cert-n", type=int, default=20000)
    parser.add_argument("--cert-iters", type=int, default=30)
    parser.add_argument("--memory-fraction", type=float, default=0.5, help="of MemAvailable for dense probes")
    parser.add_argument("--out", default="benchmarks/results/streaming.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(WORKERS[spec["task"]](**spec["kwargs"])))
        return

    t_start = time.perf_counter()
    budget = args.memory_fraction * available_mb()
    data = {
        "machine": {**machine_info(), "mem_available_mb": available_mb(), "loadavg_start": os.getloadavg()},
        "settings": {"d": D, "tau": TAU, "classes": K, "block": BLOCK, "dtype": "float32"},
        "baseline": run_worker("baseline"),
        "loss_grad": [],
    }
    print("baseline", data["baseline"], flush=True)
    for n in map(int, args.sizes.split(",")):
        repeats = args.repeats if n < 20000 else args.large_repeats
        row = {"n": n}
        est = run_worker("compile", path="dense", n=n)
        if est.get("temp_mb", float("inf")) <= budget:
            row["dense"] = run_worker("loss", path="dense", n=n, repeats=repeats)
        else:
            row["dense"] = {"skipped": f"estimated {est.get('temp_mb')} MiB > budget {budget:.0f} MiB"}
        row["streaming"] = run_worker("loss", path="streaming", n=n, repeats=repeats)
        if "median_s" in row["dense"] and "median_s" in row["streaming"]:
            row["time_ratio_streaming_over_dense"] = row["streaming"]["median_s"] / row["dense"]["median_s"]
            row["value_rel_diff"] = abs(row["streaming"]["value"] - row["dense"]["value"]) / abs(
                row["dense"]["value"]
            )
        print(n, json.dumps(row), flush=True)
        data["loss_grad"].append(row)

    best, probes = dense_max_n(budget)
    data["dense_max_n"] = {"budget_mb": budget, "largest_n_fitting": best, "probes": probes}
    data["streaming_max_n"] = {
        "run": run_worker("loss", path="streaming", n=args.stream_max_n, repeats=1),
        "compile_only": run_worker("compile", path="streaming", n=10 * args.stream_max_n),
    }
    print("max n", json.dumps(data["dense_max_n"]), json.dumps(data["streaming_max_n"]), flush=True)
    data["batched"] = run_worker(
        "batched",
        runs=args.batched_runs,
        n=args.batched_n,
        steps=args.batched_steps,
        block=args.batched_block,
    )
    data["batched_dense_estimate_mb"] = run_worker("compile", path="dense", n=args.batched_n).get(
        "temp_mb", 0
    ) * (args.batched_runs)
    print("batched", json.dumps(data["batched"]), flush=True)
    data["certificate"] = run_worker("certificate", n=args.cert_n, num_iter=args.cert_iters)
    print("certificate", json.dumps(data["certificate"]), flush=True)
    data["machine"]["loadavg_end"] = os.getloadavg()
    data["wall_s"] = time.perf_counter() - t_start
    atomic.write_json(args.out, data)


if __name__ == "__main__":
    main()
