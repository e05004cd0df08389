"""Second-order check of the spurious minimum the regime map found at d >= k - 1 (STEP, tau = 0.02).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/spurious.py

``benchmarks/regimes.py`` (seed 0, 64 runs a cell) found, for STEP counts
10,10,2,2 at d = 5 (>= k - 1 = 3) and tau = 0.02, one run (index 11) ending at
loss ~147 (L* ~ 43.9), which the scan classified ``degenerate``: its spectrum
has many eigenvalues within ``ClassifySettings.rtol * max|lambda|`` (~3e-3) of
zero. This script reproduces that run (the scan's own pipeline, embeddings
kept), polishes it with ``critical.find_critical`` to ``|grad| <= 1e-12`` and
tests the second-order sufficient condition directly:

- the full Riemannian Hessian spectrum: how many eigenvalues lie below 1e-8
  in absolute value against the predicted number of rotation modes, and the
  smallest eigenvalue beyond them;
- the loss along ``R_H(+-t v)`` for the 30 eigenvectors after the rotation
  modes and 2000 random tangent directions, ``t`` in ``[1e-3, 0.3]``;
- descents (the scan's optimiser, float64) from perturbations of size 1e-3 to
  0.1 of the point, and the losses they end at.

Writes ``benchmarks/results/spurious.json``.
"""

from __future__ import annotations

import os

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

from sclandscape.core import problems  # noqa: E402
from sclandscape.explore import critical, scanner  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.numerics import loss, oblique  # noqa: E402
from sclandscape.theory import hessian, optimum  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTS, DIM, TAU, SEED, RUN = (10, 10, 2, 2), 5, 0.02, 0, 11


def main():
    problem = problems.Problem(COUNTS, DIM, TAU)
    labels = problem.labels
    jl = jnp.asarray(labels)
    # Exactly the regime map's cell: ScanSettings(slots=64), seed 0.
    runner = scanner.Scanner(
        problem, jax.random.key(SEED), scanner.ScanSettings(slots=64), keep_embeddings=True
    )
    rec = next(runner.results([RUN]))
    H_scan = rec["H"][0]
    polished = critical.find_critical(H_scan, labels, TAU, critical.CriticalSettings(gtol=1e-12))
    H = np.asarray(polished.x)
    cost = jax.jit(lambda X: loss.sum_loss(X, jl, TAU))
    L0 = float(cost(jnp.asarray(H)))
    L_star = optimum.global_optimum(COUNTS, TAU).loss
    w = np.asarray(hessian.riemannian_hessian_eigs(H, labels, TAU))
    rank = int(oblique.numerical_rank(H))
    predicted = oblique.predicted_zero_modes(rank, DIM)
    zeros = int(np.sum(np.abs(w) <= 1e-8))
    M = np.asarray(hessian.riemannian_hessian(H, labels, TAU))
    _, V = np.linalg.eigh(M)
    U = oblique.tangent_basis(jnp.asarray(H))
    steps = (1e-3, 1e-2, 3e-2, 1e-1, 3e-1)
    along = []
    for j in range(predicted, predicted + 30):
        v = oblique.to_ambient(U, jnp.asarray(V[:, j]).reshape(problem.n, DIM - 1))
        for t in steps:
            for sign in (1.0, -1.0):
                along.append(float(cost(oblique.retract(jnp.asarray(H), sign * t * v))) - L0)
    rng = np.random.default_rng(0)
    random_changes = []
    for _ in range(2000):
        z = np.array(oblique.project_tangent(jnp.asarray(H), rng.standard_normal(H.shape)))
        t = 10 ** rng.uniform(-3, np.log10(0.3))
        random_changes.append(float(cost(oblique.retract(jnp.asarray(H), t * z / np.linalg.norm(z)))) - L0)
    descend = jax.jit(
        jax.vmap(
            lambda h: scanner.solve_one(
                h, jl, TAU, scanner.ScanSettings(tol=1e-10, x64=True, max_steps=20000)
            )
        )
    )
    eps = np.repeat([1e-3, 1e-2, 3e-2, 1e-1], 4)
    starts = np.stack([np.asarray(oblique.normalize_rows(H + e * rng.standard_normal(H.shape))) for e in eps])
    ends = descend(jnp.asarray(starts))
    end_losses = [float(cost(x)) for x in ends[0]]
    report = {
        "machine": machine_info(),
        "problem": problem.to_json(),
        "seed": SEED,
        "run": RUN,
        "global_loss": L_star,
        "scan_loss": float(rec["loss"][0]),
        "scan_kind": str(rec["kind"][0]),
        "scan_grad_norm": float(rec["grad_norm"][0]),
        "polished": {
            "loss": L0,
            "gap": L0 - L_star,
            "grad_norm": float(polished.grad_norm),
            "status": critical.status_names(polished.status)[0],
            "moved_loss": L0 - float(rec["loss"][0]),
        },
        "rank": rank,
        "hessian": {
            "dimension": int(w.size),
            "eigenvalues_below_1e-8": zeros,
            "predicted_rotation_modes": predicted,
            "largest_abs_of_those": float(np.max(np.abs(w[:predicted]))),
            "smallest_beyond_rotation_modes": float(w[predicted]),
            "lowest_40": w[:40].tolist(),
            "largest": float(w[-1]),
        },
        "min_loss_change_along_30_eigenvectors": min(along),
        "min_loss_change_random_directions": min(random_changes),
        "perturbed_descents": [
            {"eps": float(e), "end_loss": v, "end_minus_point": v - L0}
            for e, v in zip(eps, end_losses, strict=True)
        ],
        "class_mean_norms": np.linalg.norm(
            (np.eye(problem.k)[labels].T @ H) / np.asarray(COUNTS)[:, None], axis=1
        ).tolist(),
    }
    report["strict_local_min_modulo_rotations"] = bool(
        zeros == predicted and w[predicted] > 1e3 * max(1e-12, report["hessian"]["largest_abs_of_those"])
    )
    atomic.write_json(os.path.join(HERE, "results", "spurious.json"), report)
    print(
        f"run {RUN}: scan loss {report['scan_loss']:.6f} ({report['scan_kind']}), polished |grad| "
        f"{report['polished']['grad_norm']:.1e}, gap to L* {report['polished']['gap']:.3f}"
    )
    print(
        f"Hessian: {zeros} eigenvalues below 1e-8 (predicted rotation modes {predicted}, largest "
        f"{report['hessian']['largest_abs_of_those']:.1e}), next {w[predicted]:.3e}, largest {w[-1]:.1f}"
    )
    print(
        f"loss change: min along 30 eigenvectors {min(along):.2e}, min over 2000 random directions "
        f"{min(random_changes):.2e}; descents end at {sorted(set(np.round(end_losses, 9)))}"
    )
    print(f"strict local minimum modulo rotations: {report['strict_local_min_modulo_rotations']}")


if __name__ == "__main__":
    main()
