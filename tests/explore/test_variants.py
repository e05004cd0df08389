"""The mini-batch and non-negative (UFM+) variant scans."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.explore import scanner, variants
from sclandscape.theory import optimum

COUNTS = (3, 3, 3)  # k = 3 classes of 3: d = 2 = k - 1 is the benign regime
TAU = 1.0


def test_minibatch_with_one_full_batch_equals_the_full_batch_scan():
    problem = sc.Problem((4, 4, 2, 2), 2, TAU)  # d < k - 1: several distinct minima
    full = np.arange(problem.n)[None, :]
    # Plain float64 L-BFGS on both sides (no trust-region polish): the scan's single-run solve from the
    # scan's starting points, vmapped (the batched driver runs the same steps; tests/test_scan.py).
    rec = variants.minibatch_scan(problem, full, 6, seed=0, settings=variants.VariantSettings(polish_iters=0))
    settings = scanner.ScanSettings(tol=1e-9, x64=True, polish=False)
    key, labels = jax.random.key(0), jnp.asarray(problem.labels)
    H0 = jnp.stack(
        [scanner.initial_point(scanner.run_key(key, i), problem.n, 2, jnp.float64) for i in range(6)]
    )
    H, _, status, _, _ = jax.jit(jax.vmap(lambda h: scanner.solve_one(h, labels, TAU, settings)))(H0)
    ref = np.array([float(sc.sc_loss(h, problem.labels, TAU)) for h in np.asarray(H)])
    assert np.all(rec["status"] == sc.Status.CONVERGED) and np.all(np.asarray(status) == sc.Status.CONVERGED)
    np.testing.assert_allclose(rec["minibatch_loss"], rec["loss"], atol=1e-12)
    np.testing.assert_allclose(rec["loss"], ref, atol=1e-8)
    assert len(np.unique(np.round(ref, 6))) >= 2  # the comparison covers more than one minimum
    L_star = optimum.global_optimum(problem.counts, TAU).loss
    np.testing.assert_array_equal(rec["reaches_global"], np.abs(ref - L_star) <= 1e-6 * L_star)


def test_nonneg_runs_stay_feasible_and_reach_the_orthogonal_frame():
    problem = sc.Problem(COUNTS, 3, TAU)
    rec = variants.nonneg_scan(problem, 4, seed=0)
    assert np.all(rec["min_entry"] >= 0) and np.all(rec["row_norm_error"] <= 1e-12)
    assert np.all(rec["H"] >= 0)
    assert rec["nonneg_loss"] == pytest.approx(optimum.nonneg_optimum_loss(COUNTS, TAU))
    assert np.all(rec["reaches_nonneg"]) and np.all(rec["kkt_nonneg"] <= 1e-6)
    assert np.all(rec["frame_dist"] <= 1e-4)
    # The UFM+ optimum sits above the unconstrained one.
    assert np.all(rec["gap"] > 0)
    rates = variants.outcome_rates(rec)
    assert rates["reaches_nonneg"] == 1.0 and rates["reaches_global"] == 0.0
