import jax
import jax.numpy as jnp
import numpy as np
from reference import random_sphere

import sclandscape as sc
from sclandscape.numerics import loss as loss_mod
from sclandscape.numerics import oblique, optim


def _tangent(rng, H):
    return oblique.project_tangent(H, jnp.asarray(rng.standard_normal(H.shape)))


def test_block_preconditioner_is_spd_on_the_tangent_space_with_bounded_spectrum():
    rng = np.random.default_rng(0)
    labels = jnp.asarray(sc.labels_from_counts((4, 4, 3)))
    H = jnp.asarray(random_sphere(rng, 11, 3))
    tau = 0.2
    egrad = jax.grad(lambda X: jnp.sum(loss_mod.anchor_losses(X @ X.T, labels, tau)))(H)
    floor = 1e-2
    P = optim.block_preconditioner(H, egrad, loss_mod.row_hessian_blocks(H, tau), floor)
    U, V = _tangent(rng, H), _tangent(rng, H)
    PU = P(U)
    np.testing.assert_allclose(jnp.sum(PU * H, axis=1), 0.0, atol=1e-12)  # stays tangent
    np.testing.assert_allclose(jnp.sum(PU * V), jnp.sum(U * P(V)), rtol=1e-10)  # symmetric
    # The inverse preconditioner's spectrum lies in [floor, 1]: P's Rayleigh quotients in [1, 1/floor].
    for _ in range(5):
        W = _tangent(rng, H)
        q = float(jnp.sum(W * P(W)) / jnp.sum(W * W))
        assert 1.0 - 1e-10 <= q <= 1.0 / floor + 1e-8


def test_trust_region_with_block_preconditioner_converges_at_small_tau():
    """tau = 0.02: the class-level geometry is nearly flat next to stiff within-class terms."""
    labels = jnp.asarray(sc.labels_from_counts((5, 5, 5, 5)))
    tau = 0.02
    cost = lambda X: jnp.sum(loss_mod.anchor_losses(X @ X.T, labels, tau))  # noqa: E731
    pre = lambda X, g: optim.block_preconditioner(X, g, loss_mod.row_hessian_blocks(X, tau))  # noqa: E731
    settings = optim.TrustRegionSettings(gtol=1e-6, max_iter=300)
    H0 = jnp.asarray(random_sphere(np.random.default_rng(1), 20, 4))
    out = jax.jit(lambda h: optim.trust_region(cost, h, settings, preconditioner=pre))(H0)
    assert int(out.status) == optim.Status.CONVERGED
    assert float(out.grad_norm) <= 1e-6
    lam, gap = sc.certificate(out.x, np.asarray(labels), tau)
    assert float(out.value) - sc.global_optimum((5, 5, 5, 5), tau).loss <= max(float(gap), 0) + 1e-8
