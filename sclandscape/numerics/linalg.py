r"""Lanczos with full reorthogonalisation, Ritz pairs and the tridiagonal matrix (one home for all).

Used by the Hessian spectra (``hessian``), the matrix-free certificate
(``certificate``) and the critical-point finder's Krylov model (``critical``).
Single-instance, pure, jit/vmap-safe; dtype follows the input.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def inner(a, b):
    """Frobenius inner product ``sum(a * b)``."""
    return jnp.sum(a * b)


class LanczosResult(NamedTuple):
    """``m`` Lanczos steps: ``Q^T A Q = T = tridiag(beta[:-1], alpha, beta[:-1])``, ``|AQ - QT| = beta[-1]``.

    ``basis`` ``(m, *shape)`` is orthonormal; ``beta[j] = 0`` marks a restart
    (an exhausted invariant subspace), so ``T`` is then block diagonal.
    """

    alpha: jax.Array
    beta: jax.Array
    basis: jax.Array


def orthogonalise(w, *sets):
    """Remove from ``w`` its components on the rows of each array in ``sets`` (classical Gram-Schmidt, twice).

    Both passes run over all sets: rounding of one set's subtraction has
    components on the others, which matter once ``w`` has cancelled to a
    tiny remainder (an exhausted Krylov space).
    """
    sets = [Q for Q in sets if Q is not None]
    for _ in range(2):
        for Q in sets:
            coef = jnp.tensordot(Q, w, axes=(tuple(range(1, Q.ndim)), tuple(range(w.ndim))))
            w = w - jnp.tensordot(coef, Q, axes=1)
    return w


def lanczos(matvec, v0, num_iter: int, *, deflation=None, project=None, key=None) -> LanczosResult:
    """Lanczos with full reorthogonalisation for a symmetric ``matvec`` (one instance, jit/vmap-safe).

    Args:
      matvec: symmetric linear map on arrays shaped like ``v0``.
      v0: starting vector (projected and normalised here).
      num_iter: number of steps ``m`` (static); must not exceed the dimension
        of the space left after deflation.
      deflation: ``(s, *shape)`` orthonormal rows (zero rows allowed) that the
        iteration is kept orthogonal to: it then runs on ``(I - Z Z^T) A (I - Z Z^T)``.
      project: maps an ambient vector into the working space (here the
        tangent projection); applied to the start and restart vectors.
      key: PRNG key for restart vectors (default ``key(0)``).

    When ``|w| <= 1e3 eps |A q_j|`` after orthogonalisation the Krylov space
    is invariant; the iteration then restarts from a random vector orthogonal
    to everything so far and records ``beta = 0``.
    """
    project = (lambda v: v) if project is None else project
    key = jax.random.key(0) if key is None else key
    eps = jnp.finfo(v0.dtype).eps
    shape = v0.shape

    def orth(w, Q):
        # Project before and after: rounding off the working space (the tangent
        # space; the subtractions' rounding is not tangent) would otherwise grow
        # into spurious zero Ritz values from the normal directions.
        return project(orthogonalise(project(w), deflation, Q))

    q0 = orth(v0, None)
    q0 = q0 / jnp.linalg.norm(q0)
    # One spare row for the last step's (unused) next vector keeps every update unconditional.
    Q = jnp.zeros((num_iter + 1,) + shape, v0.dtype).at[0].set(q0)
    alpha = jnp.zeros((num_iter,), v0.dtype)
    beta = jnp.zeros((num_iter,), v0.dtype)

    def body(j, state):
        Q, alpha, beta = state
        q = Q[j]
        Aq = matvec(q)
        a = inner(q, Aq)
        w = orth(Aq, Q)
        b = jnp.linalg.norm(w)
        exhausted = b <= 1e3 * eps * jnp.linalg.norm(Aq)
        w = jax.lax.cond(
            exhausted,
            lambda: orth(jax.random.normal(jax.random.fold_in(key, j), shape, v0.dtype), Q),
            lambda: w,
        )
        nxt = w / jnp.linalg.norm(w)
        return Q.at[j + 1].set(nxt), alpha.at[j].set(a), beta.at[j].set(jnp.where(exhausted, 0.0, b))

    Q, alpha, beta = jax.lax.fori_loop(0, num_iter, body, (Q, alpha, beta))
    return LanczosResult(alpha, beta, Q[:num_iter])


def tridiagonal(result: LanczosResult):
    return jnp.diag(result.alpha) + jnp.diag(result.beta[:-1], 1) + jnp.diag(result.beta[:-1], -1)


def ritz(result: LanczosResult):
    """Ritz values ``(m,)`` ascending, Ritz vectors ``(m, *shape)`` and residual norms ``|beta_m s_mi|``."""
    theta, S = jnp.linalg.eigh(tridiagonal(result))
    vectors = jnp.tensordot(S.T, result.basis, axes=1)
    return theta, vectors, jnp.abs(result.beta[-1] * S[-1])
