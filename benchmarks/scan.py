"""Benchmark: batched scans against Pymanopt (one run at a time) and hand-batched PyTorch.

    .venv/bin/python benchmarks/scan.py [--inits 1024] [--pymanopt-runs 5] [--out FILE.json]

Side by side in one process, float32, the same problems and tolerance
(Riemannian gradient norm <= 1e-5 on the sum-form loss):
1. sclandscape ``Scanner`` (L-BFGS + float64 trust-region polish), warm
   (compiled on a first small batch), converged runs per second;
2. Pymanopt ``TrustRegions`` with its JAX backend, one initialisation at a time;
3. a hand-batched PyTorch projected gradient (``torch.bmm`` + autograd,
   per-run Armijo backtracking, retraction by row normalisation).
Then the loss+gradient kernel's throughput against this machine's float32
matmul peak, and peak memory (max RSS of a fresh process) against the number
of initialisations. Results are written atomically to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

import sclandscape as sc  # noqa: E402
from sclandscape.explore import scanner  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.numerics import loss as loss_lib  # noqa: E402
from sclandscape.numerics import streaming  # noqa: E402

PROBLEMS = {"A": ((10,) * 10, 16, 0.1), "B": ((5,) * 4, 8, 0.5)}
TOL = 1e-5


def bench_sclandscape(problem, inits):
    settings = scanner.ScanSettings(tol=TOL, slots=256)
    runner = scanner.Scanner(problem, jax.random.key(0), settings)
    list(runner.results(range(8)))  # compile
    t0 = time.perf_counter()
    parts = list(runner.results(range(1000, 1000 + inits)))
    wall = time.perf_counter() - t0
    status = np.concatenate([p["status"] for p in parts])
    gnorm = np.concatenate([p["grad_norm"] for p in parts])
    converged = int(np.sum((status == 0) & (gnorm <= TOL)))
    return {"runs": inits, "converged": converged, "wall_s": wall, "converged_per_s": converged / wall}


def bench_pymanopt(problem, runs):
    import pymanopt

    labels = jnp.asarray(problem.labels)
    manifold = pymanopt.manifolds.Oblique(problem.dim, problem.n)  # unit-norm columns: X = H^T

    @pymanopt.function.jax(manifold)
    def cost(X):
        return jnp.sum(loss_lib.anchor_losses(X.T @ X, labels, problem.tau))

    optimizer = pymanopt.optimizers.TrustRegions(min_gradient_norm=TOL, max_iterations=1000, verbosity=0)
    rng = np.random.default_rng(0)
    walls, converged = [], 0
    for _ in range(runs):
        X0 = rng.standard_normal((problem.dim, problem.n))
        X0 /= np.linalg.norm(X0, axis=0, keepdims=True)
        t0 = time.perf_counter()
        result = optimizer.run(pymanopt.Problem(manifold, cost), initial_point=X0)
        walls.append(time.perf_counter() - t0)
        converged += int(result.gradient_norm <= TOL)
    # The first run includes tracing and compilation of the JAX cost; report the rest.
    steady = walls[1:] if len(walls) > 1 else walls
    return {
        "runs": runs,
        "converged": converged,
        "median_run_s": statistics.median(steady),
        "converged_per_s": (converged / runs) / statistics.median(steady),
    }


def bench_torch(problem, inits, max_steps=2000, time_limit=150.0):
    import torch

    torch.manual_seed(0)
    labels = torch.as_tensor(problem.labels)
    n, tau = problem.n, problem.tau
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(n, dtype=torch.bool)
    ypos = same.float() / same.sum(1, keepdim=True)
    eye = torch.eye(n, dtype=torch.bool)

    def losses(H):
        G = torch.bmm(H, H.transpose(1, 2)) / tau
        lse = torch.logsumexp(G.masked_fill(eye, float("-inf")), dim=2)
        return (lse - (G * ypos).sum(2)).sum(1)

    def normalise(H):
        return H / H.norm(dim=2, keepdim=True)

    H = normalise(torch.randn(inits, n, problem.dim))
    t = torch.ones(inits)
    active = torch.ones(inits, dtype=torch.bool)
    t0 = time.perf_counter()
    for _ in range(max_steps):
        if time.perf_counter() - t0 > time_limit:  # converged runs per second so far
            break
        H.requires_grad_(True)
        L = losses(H)
        (g,) = torch.autograd.grad(L.sum(), H)
        H = H.detach()
        L = L.detach()
        rg = g - (g * H).sum(2, keepdim=True) * H
        gn = rg.flatten(1).norm(dim=1)
        active = gn > TOL
        if not active.any():
            break
        t = torch.where(active, 2 * t, t)
        with torch.no_grad():
            for _ in range(40):  # per-run Armijo backtracking, all runs at once
                Hn = normalise(H - t[:, None, None] * rg)
                ok = losses(Hn) <= L - 1e-4 * t * gn**2
                if bool((ok | ~active).all()):
                    break
                t = torch.where(ok | ~active, t, t / 2)
            H = torch.where(active[:, None, None], Hn, H)
    wall = time.perf_counter() - t0
    converged = int((~active).sum())
    return {"runs": inits, "converged": converged, "wall_s": wall, "converged_per_s": converged / wall}


def bench_kernel(problem, batch=256, repeats=20):
    labels = jnp.asarray(problem.labels)
    cost = streaming.loss_fn(labels, problem.tau, stream=False)
    H = jax.vmap(lambda i: scanner.initial_point(jax.random.key(i), problem.n, problem.dim))(
        jnp.arange(batch)
    )
    f = jax.jit(jax.vmap(jax.value_and_grad(cost)))
    hht = jax.jit(jax.vmap(lambda h: h @ h.T))
    A = jnp.ones((2048, 2048), jnp.float32)
    mm = jax.jit(lambda a: a @ a)

    def median_time(fn, x):
        jax.block_until_ready(fn(x))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x))
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    n, d = problem.n, problem.dim
    t_kernel, t_hht, t_mm = median_time(f, H), median_time(hht, H), median_time(mm, A)
    # Matmul work of one loss+gradient: H H^T forward, and the two products of the backward pass.
    flops = batch * 3 * 2 * n * n * d
    return {
        "batch": batch,
        "kernel_ms": 1e3 * t_kernel,
        "kernel_matmul_gflops": flops / t_kernel / 1e9,
        "batched_hht_gflops": batch * 2 * n * n * d / t_hht / 1e9,
        "peak_matmul_gflops": 2 * 2048**3 / t_mm / 1e9,
    }


def peak_memory(inits):
    code = (
        "import resource, jax, tempfile, os\n"
        "jax.config.update('jax_enable_x64', True)\n"
        "import sclandscape as sc\n"
        "from sclandscape.core import settings\n"
        "from sclandscape.studies import scan as scan_study\n"
        f"p = sc.Problem({PROBLEMS['B'][0]}, {PROBLEMS['B'][1]}, {PROBLEMS['B'][2]})\n"
        "out = os.path.join(tempfile.mkdtemp(), 's')\n"
        f"scan_study.run_scan(p, {inits}, 0, settings.ScanSettings(tol={TOL}, slots=256), out)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        # VmHWM is this process's own peak: ru_maxrss also counts the parent's RSS at fork.
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    maxrss, hwm = proc.stdout.strip().splitlines()[-2:]
    return {
        "inits": inits,
        "peak_rss_mb": int(hwm) / 1024,
        "ru_maxrss_mb": int(maxrss) / 1024,
        "wall_s": time.perf_counter() - t0,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", type=int, default=1024)
    parser.add_argument("--pymanopt-runs", type=int, default=5)
    parser.add_argument("--torch-inits", type=int, default=1024)
    parser.add_argument("--problems", default="A,B")
    parser.add_argument("--memory-inits", default="1000,10000")
    parser.add_argument("--out", default="benchmarks/results/scan.json")
    parser.add_argument(
        "--memory-only", action="store_true", help="re-measure peak memory only, into the existing --out"
    )
    args = parser.parse_args()
    if args.memory_only:
        with open(args.out) as f:
            data = json.load(f)
        data["memory"] = [peak_memory(int(m)) for m in args.memory_inits.split(",")]
        data["memory_machine"] = machine_info()
        print("memory", data["memory"], flush=True)
        atomic.write_json(args.out, data)
        return
    data = {
        "machine": machine_info(),
        "tol": TOL,
        "problems": {},
    }
    for name in args.problems.split(","):
        counts, d, tau = PROBLEMS[name]
        problem = sc.Problem(counts, d, tau)
        row = {"counts": list(counts), "dim": d, "tau": tau}
        row["sclandscape"] = bench_sclandscape(problem, args.inits)
        print(name, "sclandscape", row["sclandscape"], flush=True)
        row["torch"] = bench_torch(problem, args.torch_inits)
        print(name, "torch", row["torch"], flush=True)
        row["pymanopt"] = bench_pymanopt(problem, args.pymanopt_runs)
        print(name, "pymanopt", row["pymanopt"], flush=True)
        ours = row["sclandscape"]["converged_per_s"]
        row["ratio_vs_pymanopt"] = ours / row["pymanopt"]["converged_per_s"]
        row["ratio_vs_torch"] = ours / max(row["torch"]["converged_per_s"], 1e-12)
        row["kernel"] = bench_kernel(problem)
        print(name, "kernel", row["kernel"], flush=True)
        data["problems"][name] = row
    data["memory"] = [peak_memory(int(m)) for m in args.memory_inits.split(",")]
    print("memory", data["memory"], flush=True)
    atomic.write_json(args.out, data)


if __name__ == "__main__":
    main()
