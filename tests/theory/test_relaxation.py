"""Independent solver cross-check: the full n x n relaxation (CVXPY) against CLS."""

import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.theory import certify

cvxpy = pytest.importorskip("cvxpy")
from sclandscape.theory.relaxation import solve_full_relaxation  # noqa: E402


def _check(counts, tau, solver="CLARABEL"):
    labels = sc.labels_from_counts(counts)
    value, G, _ = solve_full_relaxation(labels, tau, solver=solver)
    opt = sc.global_optimum(counts, tau)
    assert value == pytest.approx(opt.loss, abs=1e-4 * max(1.0, abs(opt.loss)) / 10)
    # Fact 1 of docs/maths.md §2: the relaxation's optimum is collapsed, G*_ij = 1 within a class.
    same = labels[:, None] == labels[None, :]
    assert np.min(G[same]) >= 1 - 1e-4
    np.testing.assert_allclose(G, opt.gram(), atol=1e-4)
    F = sc.sc_gram_gradient(jnp.asarray(G), labels, tau)
    return float(certify.kkt_residual(F, jnp.asarray(G)))


def test_small_imbalanced_case_agrees():
    _check((5, 3, 2, 2), 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("counts,tau", [((10, 10, 2, 2), 1.0), ((6,) * 5, 0.3), ((12, 8, 4, 3, 3), 2.0)])
def test_larger_cases_agree(counts, tau):
    _check(counts, tau)
