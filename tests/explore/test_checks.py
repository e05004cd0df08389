"""Taylor-remainder checks: right gradients and Hessians pass with slopes 2 and 3, wrong ones fail."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.explore import checks
from sclandscape.numerics import oblique
from sclandscape.theory import hessian

LABELS = sc.labels_from_counts((4, 3, 3))
TAU = 0.5


def cost(H):
    return sc.sc_loss(H, LABELS, TAU)


@pytest.fixture(scope="module")
def point():
    return oblique.random_point(jax.random.key(3), 10, 3, jnp.float64)


def test_sc_loss_gradient_passes_with_slope_two(point):
    r = sc.check_gradient(cost, point)
    assert r.passed and r.expected == 2 and abs(r.slope - 2) < 0.05
    assert r.window is not None and np.all(r.errors[r.window[0] : r.window[1] + 1] > r.floor)
    # The same with the Riemannian gradient written out (the projection of the Euclidean one).
    riemannian = lambda H: oblique.riemannian_gradient(H, jax.grad(cost)(H))  # noqa: E731
    r = sc.check_gradient(cost, point, riemannian)
    assert r.passed and r.tangent_error < 1e-12


def test_a_wrong_gradient_fails_with_slope_one(point):
    for wrong in (
        lambda H: 1.01 * jax.grad(cost)(H),  # a 1% scale error
        lambda H: jax.grad(lambda X: sc.sc_loss(X, LABELS, 2 * TAU))(H),  # the wrong temperature
    ):
        r = sc.check_gradient(cost, point, wrong)
        assert not r.passed and abs(r.slope - 1) < 0.05, r.message
        assert "wrong" in r.message


def test_sc_loss_hessian_passes_with_slope_three(point):
    r = sc.check_hessian(cost, point)
    assert r.passed and abs(r.slope - 3) < 0.05
    assert r.symmetry_error < 1e-12 and r.tangent_error < 1e-12
    # The package's closed-form Riemannian Hessian, through its tangent coordinates.
    U = oblique.tangent_basis(point)
    M = hessian.hessian_matrix(point, jnp.asarray(LABELS), TAU)

    def closed_form(x, v):
        c = oblique.to_coordinates(U, v).reshape(-1)
        return oblique.to_ambient(U, (M @ c).reshape(x.shape[0], -1))

    assert sc.check_hessian(cost, point, closed_form).passed
    # The Euclidean Hessian-vector product, converted with the Weingarten term.
    ehess = lambda x, v: jax.jvp(jax.grad(cost), (x,), (v,))[1]  # noqa: E731
    assert sc.check_hessian(cost, point, ehess, euclidean=True).passed


def test_a_wrong_hessian_fails(point):
    ehess = lambda x, v: jax.jvp(jax.grad(cost), (x,), (v,))[1]  # noqa: E731
    # The classic mistake: the projected Euclidean Hessian without -diag(<egrad_i, x_i>) v.
    missing_curvature = lambda x, v: oblique.project_tangent(x, ehess(x, v))  # noqa: E731
    r = sc.check_hessian(cost, point, missing_curvature)
    assert not r.passed and abs(r.slope - 2) < 0.05
    # Not projected: the slope along a tangent u cannot see it, the tangency test does.
    unprojected = lambda x, v: ehess(x, v) - jnp.sum(jax.grad(cost)(x) * x, -1, keepdims=True) * v  # noqa: E731
    r = sc.check_hessian(cost, point, unprojected)
    assert not r.passed and r.tangent_error > 1e-3 and "not tangent" in r.message
    # Not symmetric: an added skew part leaves <H u, u> (so the slope) unchanged.
    A = jax.random.normal(jax.random.key(9), (3, 3), jnp.float64)
    skew = lambda x, v: oblique.project_tangent(x, v @ (A - A.T))  # noqa: E731
    right = lambda x, v: oblique.riemannian_hvp(jax.grad(cost), x, v)  # noqa: E731
    r = sc.check_hessian(cost, point, lambda x, v: right(x, v) + skew(x, v))
    assert not r.passed and "not symmetric" in r.message


def test_a_linear_ambient_cost_and_a_constant_one():
    """f(x) = <c, x> is curved on OB (1 - cos t along a great circle): slopes 2 and 3 all the same;
    a constant cost has zero remainders: exact to rounding, passed."""
    c = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    x = oblique.random_point(jax.random.key(1), 4, 3, jnp.float64)
    r = sc.check_gradient(lambda H: jnp.sum(c * H), x)
    assert r.passed and abs(r.slope - 2) < 0.05
    assert sc.check_hessian(lambda H: jnp.sum(c * H), x).passed
    r = sc.check_gradient(lambda H: jnp.sum(H * 0.0) + 3.0, x)
    assert r.passed and r.exact and np.isnan(r.slope) and "exact" in r.message


def test_figure_and_bad_input(point):
    fig = sc.taylor_figure(sc.check_gradient(cost, point))
    assert fig.axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match="shape"):
        sc.check_gradient(cost, point, lambda H: jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="scalar"):
        sc.check_gradient(lambda H: H, point, lambda H: H)
    with pytest.raises(ValueError, match="tangent component"):
        sc.check_gradient(cost, point, direction=point)  # normal to every row
    with pytest.raises(ValueError, match="zero row"):
        sc.check_gradient(cost, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="steps"):
        sc.check_gradient(cost, point, steps=[1e-3, 1e-2])
    assert checks.SLOPE_MARGIN == 0.5
