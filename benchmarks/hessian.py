"""Benchmark: Hessian spectra and classification against Pymanopt's Riemannian Hessian.

    .venv/bin/python benchmarks/hessian.py [--repeats 5] [--pymanopt-repeats 3] [--out FILE.json]

(Pymanopt comes with the ``peers`` extra: ``.venv/bin/pip install -e '.[peers]'``.)

Side by side in one process, float64, at tangent dimensions N = n(d-1) of
about 100, 500 and 2000 (a global minimum, the simplex ETF in a random
rotation):
1. sclandscape dense path: ``riemannian_hessian_eigs`` (closed-form assembly
   and ``eigh``) and ``classify(method="dense")`` (plus gradient, rank and
   certificate), one point at a time and per point in a batch of 8;
2. sclandscape Lanczos path: ``classify(method="lanczos")`` (300 HVPs, or
   the whole deflated space when smaller);
3. Pymanopt 2.2 (JAX backend, ``Oblique`` manifold, the cost jit-compiled
   inside the Pymanopt function): its Riemannian Hessian applied to every
   vector of the same tangent basis to form the matrix, then ``numpy.linalg.eigh``
   (and the time of one HVP without that jit, Pymanopt's default).
All timings are warm (after one compiling call), medians over repeats; the
eigenvalues of the three are compared.

Then the matrix-free target at n = 1000, d = 32 (31,000 tangent dimensions):
Hessian-vector products until the smallest non-symmetry eigenvalue is within
1e-6 (relative) of a converged 600-step reference, at a critical point found
by a scan run (50 classes of 20, tau = 0.5, d < k - 1 so no ETF) and at a
random point. Results are written atomically to a JSON file; markdown tables
are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

# jaxlib's CPU eigh/svd call SciPy's OpenBLAS from XLA's worker threads; with
# OpenBLAS threading on as well, batched or concurrent calls oversubscribe the
# cores and can stall for minutes or deadlock (jax-ml/jax#39292,
# OpenMathLib/OpenBLAS#5517; seen here as a batch of 8 dense classifications
# at N = 500 that never finished). Must be set before NumPy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

from sclandscape.core import problems  # noqa: E402
from sclandscape.explore import scanner  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.numerics import linalg, oblique  # noqa: E402
from sclandscape.theory import hessian as hs  # noqa: E402
from sclandscape.theory import optimum, verdict  # noqa: E402

# (classes, per class, d, tau): N = n (d - 1) = 100, 500, 2000.
SIZES = [(4, 5, 6, 0.5), (5, 10, 11, 0.5), (10, 10, 21, 0.5)]
LARGE = {"counts": (20,) * 50, "dim": 32, "tau": 0.5}
CHECKPOINTS = (10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 250, 300)


def warm_median(fn, repeats):
    """Median wall time of ``repeats`` calls after one warm-up call (which compiles)."""
    out = jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def etf_point(k, m, d, tau, seed=0):
    opt = optimum.global_optimum((m,) * k, tau)
    H = opt.embedding(d)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return H @ Q, opt


def pymanopt_eigs(H, labels, tau):
    """Pymanopt's Riemannian Hessian on every tangent basis vector, then eigh (``X = H^T``, unit columns)."""
    import pymanopt

    n, d = H.shape
    man = pymanopt.manifolds.Oblique(d, n)
    y = jnp.asarray(labels)
    loss = jax.jit(lambda X: jnp.sum(loss.anchor_losses(X.T @ X, y, tau)))

    @pymanopt.function.jax(man)
    def cost(X):
        return loss(X)

    problem = pymanopt.Problem(man, cost)
    X = np.ascontiguousarray(H.T)
    U = np.asarray(oblique.tangent_basis(jnp.asarray(H)))

    def run():
        M = np.empty((n * (d - 1), n * (d - 1)))
        for a in range(n):
            for k in range(d - 1):
                E = np.zeros((d, n))
                E[:, a] = U[a, :, k]
                HE = problem.riemannian_hessian(X, E)
                M[:, a * (d - 1) + k] = np.einsum("ndk,dn->nk", U, HE).reshape(-1)
        return np.linalg.eigvalsh(0.5 * (M + M.T))

    # Without the jit inside the cost, Pymanopt's JAX backend traces grad and
    # jvp afresh on every call (op by op): its out-of-the-box HVP cost.
    @pymanopt.function.jax(man)
    def eager_cost(X):
        return jnp.sum(loss.anchor_losses(X.T @ X, y, tau))

    eager = pymanopt.Problem(man, eager_cost)
    E = np.zeros((d, n))
    E[:, 0] = U[0, :, 0]
    return run, lambda: problem.riemannian_hessian(X, E), lambda: eager.riemannian_hessian(X, E)


def size_row(k, m, d, tau, repeats, pymanopt_repeats):
    H, opt = etf_point(k, m, d, tau)
    labels = opt.labels
    n = H.shape[0]
    N = n * (d - 1)
    dense = verdict.ClassifySettings(method="dense")
    lanczos = verdict.ClassifySettings(method="lanczos")
    eigs, t_eigs = warm_median(lambda: hs.riemannian_hessian_eigs(H, labels, tau), repeats)
    eigs = np.asarray(eigs)
    c_dense, t_dense = warm_median(
        lambda: verdict.classify(H, labels, tau, global_loss=opt.loss, settings=dense), repeats
    )
    c_lanczos, t_lanczos = warm_median(
        lambda: verdict.classify(H, labels, tau, global_loss=opt.loss, settings=lanczos), repeats
    )
    batch = np.stack([etf_point(k, m, d, tau, seed=s)[0] for s in range(8)])
    c_batch, t_batch = warm_median(
        lambda: verdict.classify(batch, labels, tau, global_loss=opt.loss, settings=dense),
        max(1, repeats // 2),
    )
    run, one_hvp, one_hvp_eager = pymanopt_eigs(H, labels, tau)
    pm_eigs, t_pm = warm_median(run, pymanopt_repeats)
    _, t_pm_hvp = warm_median(one_hvp, 20)
    _, t_pm_hvp_eager = warm_median(one_hvp_eager, 5)
    scale = np.abs(eigs).max()
    row = {
        "counts": [m] * k,
        "n": n,
        "dim": d,
        "tau": tau,
        "tangent_dim": N,
        "dense_eigs_s": t_eigs,
        "dense_classify_s": t_dense,
        "dense_classify_batch8_per_point_s": t_batch / 8,
        "lanczos_classify_s": t_lanczos,
        "lanczos_hvps": int(hs.lanczos_steps(H.shape, True, lanczos.num_iter)),
        "pymanopt_eigs_s": t_pm,
        "pymanopt_hvp_s": t_pm_hvp,
        "pymanopt_hvp_without_jit_s": t_pm_hvp_eager,
        "ratio_pymanopt_over_dense_eigs": t_pm / t_eigs,
        "ratio_pymanopt_over_dense_classify": t_pm / t_dense,
        "ratio_pymanopt_over_lanczos_classify": t_pm / t_lanczos,
        "max_eig_diff_pymanopt_rel": float(np.abs(pm_eigs - eigs).max() / scale),
        "lambda_min_diff_lanczos_rel": abs(c_lanczos.lambda_min - c_dense.lambda_min) / scale,
        "kinds": [c_dense.kind, c_lanczos.kind, *sorted(set(c_batch.kind.tolist()))],
        "n_zero": [c_dense.n_zero, c_dense.n_zero_predicted],
    }
    print(
        f"N={N:5d}: dense eigs {t_eigs:.4f}s, classify {t_dense:.4f}s (batch {t_batch / 8:.4f}s/pt), "
        f"lanczos {t_lanczos:.4f}s, pymanopt {t_pm:.3f}s ({t_pm_hvp * 1e3:.2f} ms/HVP, "
        f"{t_pm_hvp_eager * 1e3:.1f} without jit), "
        f"eig diff {row['max_eig_diff_pymanopt_rel']:.1e}",
        flush=True,
    )
    return row


def convergence(H, labels, tau, num_iter, key):
    """Smallest Ritz value of the deflated operator after each Lanczos step (one run, prefixes of ``T``)."""
    Hj = oblique.normalize_rows(jnp.asarray(H))
    y = jnp.asarray(labels)

    @jax.jit
    def run(Hj, key):
        Z, count = oblique.symmetry_basis(Hj, 1e-6)
        k0, k1 = jax.random.split(key)
        v0 = jax.random.normal(k0, Hj.shape, Hj.dtype)
        project = lambda v: oblique.project_tangent(Hj, v)  # noqa: E731
        return linalg.lanczos(
            hs.hvp_operator(Hj, y, tau), v0, num_iter, deflation=Z, project=project, key=k1
        ), count

    result, count = run(Hj, key)
    T = np.asarray(linalg.tridiagonal(result))
    return {j: float(np.linalg.eigvalsh(T[:j, :j])[0]) for j in CHECKPOINTS if j <= num_iter}, int(count)


def large_rows(repeats):
    counts, d, tau = LARGE["counts"], LARGE["dim"], LARGE["tau"]
    labels = problems.labels_from_counts(counts)
    n = len(labels)
    settings = scanner.ScanSettings(tol=1e-9, polish_from=1e-4, x64=True, polish_iters=200)
    H0 = scanner.initial_point(jax.random.key(7), n, d, jnp.float64)
    t0 = time.perf_counter()
    critical, steps, status, *_ = jax.jit(lambda h: scanner.solve_one(h, jnp.asarray(labels), tau, settings))(
        H0
    )
    t_solve = time.perf_counter() - t0
    points = {
        "critical": np.asarray(critical),
        "random": np.asarray(scanner.initial_point(jax.random.key(8), n, d, jnp.float64)),
    }
    apply = jax.jit(lambda H, V: hs.hvp_operator(H, jnp.asarray(labels), tau)(V))
    rows = []
    for name, H in points.items():
        V = jnp.asarray(np.random.default_rng(0).standard_normal(H.shape))
        _, t_hvp = warm_median(lambda H=H, V=V: apply(jnp.asarray(H), V), 10)
        t0 = time.perf_counter()
        ref = hs.lanczos_extremes(H, labels, tau, num_iter=600)
        lam_ref = float(ref.lambda_min)
        t_ref = time.perf_counter() - t0
        out, t_300 = warm_median(
            lambda H=H: hs.lanczos_extremes(H, labels, tau, num_iter=300), max(1, repeats // 3)
        )
        curve, count = convergence(H, labels, tau, 300, jax.random.key(1))
        errors = {j: abs(v - lam_ref) / abs(lam_ref) for j, v in curve.items()}
        reached = [j for j in CHECKPOINTS if j in errors and all(errors[i] <= 1e-6 for i in errors if i >= j)]
        c = verdict.classify(H, labels, tau, settings=verdict.ClassifySettings(num_iter=300))
        row = {
            "point": name,
            "n": n,
            "dim": d,
            "tau": tau,
            "counts": f"{len(counts)} x {counts[0]}",
            "tangent_dim": n * (d - 1),
            "symmetry_modes_deflated": count,
            "grad_norm": c.grad_norm,
            "kind": c.kind,
            "lambda_min_ref": lam_ref,
            "residual_ref": float(ref.residual_min),
            "lambda_max": float(ref.lambda_max),
            "ref_600_steps_s": t_ref,
            "hvp_s": t_hvp,
            "lanczos_300_s": t_300,
            "lanczos_300_rel_error": abs(float(out.lambda_min) - lam_ref) / abs(lam_ref),
            "rel_error_by_hvps": {str(j): e for j, e in errors.items()},
            "hvps_to_1e-6": reached[0] if reached else None,
        }
        if name == "critical":
            row.update({"solve_s": t_solve, "solve_steps": int(steps), "solve_status": int(status)})
        rows.append(row)
        print(
            f"n=1000 d=32 {name}: lambda_min {lam_ref:.6e} (ref residual {row['residual_ref']:.1e}), "
            f"1e-6 after {row['hvps_to_1e-6']} HVPs, 300 steps {t_300:.2f}s "
            f"(error {row['lanczos_300_rel_error']:.1e}), HVP {t_hvp * 1e3:.1f} ms, kind {c.kind}",
            flush=True,
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pymanopt-repeats", type=int, default=3)
    parser.add_argument("--sizes", default="0,1,2", help="indices into SIZES (N ~ 100, 500, 2000)")
    parser.add_argument("--skip-large", action="store_true", help="skip the n = 1000, d = 32 Lanczos run")
    parser.add_argument("--out", default="benchmarks/results/hessian.json")
    args = parser.parse_args()
    data = {
        "machine": machine_info(),
        "openblas_num_threads": os.environ["OPENBLAS_NUM_THREADS"],
        "sizes": [
            size_row(*SIZES[int(i)], args.repeats, args.pymanopt_repeats) for i in args.sizes.split(",")
        ],
    }
    if not args.skip_large:
        data["large"] = large_rows(args.repeats)
    atomic.write_json(args.out, data)
    print(
        "\n| N = n(d-1) | n | d | dense eigs (s) | dense classify (s) | batch of 8 (s/pt) "
        "| Lanczos classify (s) | Pymanopt (s) | Pymanopt / dense eigs | Pymanopt / Lanczos | eig diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in data["sizes"]:
        print(
            f"| {r['tangent_dim']} | {r['n']} | {r['dim']} | {r['dense_eigs_s']:.4f} "
            f"| {r['dense_classify_s']:.4f} "
            f"| {r['dense_classify_batch8_per_point_s']:.4f} | {r['lanczos_classify_s']:.4f} "
            f"| {r['pymanopt_eigs_s']:.2f} | {r['ratio_pymanopt_over_dense_eigs']:.0f}x "
            f"| {r['ratio_pymanopt_over_lanczos_classify']:.0f}x | {r['max_eig_diff_pymanopt_rel']:.1e} |"
        )
    for r in data.get("large", []):
        print(
            f"\nn=1000 d=32 {r['point']}: {r['hvps_to_1e-6']} HVPs to 1e-6, "
            f"300 HVPs in {r['lanczos_300_s']:.1f}s, error after 300 {r['lanczos_300_rel_error']:.1e}"
        )


if __name__ == "__main__":
    main()
