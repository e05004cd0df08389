r"""The oblique manifold ``OB(n, d) = (S^{d-1})^n``: projection, retraction, tangent coordinates, symmetry.

Points are ``(n, d)`` arrays with unit-norm rows; tangent vectors ``V``
satisfy ``<v_i, h_i> = 0`` row by row. With ``egrad`` the Euclidean gradient
of a cost and ``ehess[V]`` its Euclidean Hessian-vector product (Absil,
Mahony & Sepulchre, *Optimization Algorithms on Matrix Manifolds*, 2008)::

    grad f(H)    = egrad - diag(<egrad_i, h_i>) H
    Hess f(H)[V] = Proj_H(ehess[V]) - diag(<egrad_i, h_i>) V
    R_H(V)       = rownormalise(H + V)          (a second-order retraction)

**Symmetry.** The SC loss satisfies ``L(H Q) = L(H)`` for ``Q in O(d)``, so
every ``V = H Omega`` (``Omega`` skew ``d x d``) is tangent to the orbit of
``H`` and, at a critical point, a zero mode of the Hessian. With the SVD
``H = sum_p sigma_p u_p w_p^T`` an orthonormal basis of ``{H Omega}`` is
``(sigma_p u_p w_q^T - sigma_q u_q w_p^T)/sqrt(sigma_p^2 + sigma_q^2)`` for
``p < q`` with ``sigma_p > 0``: ``d(d-1)/2 - (d-r)(d-r-1)/2`` vectors at
rank ``r`` (``predicted_zero_modes``).

**Numerical rank** (one definition for the whole package): ``#{sigma_p >
RANK_RTOL * sigma_1}``. A singular value below ``1e-6 sigma_1`` changes ``G =
H H^T`` by less than ``1e-12 |G|``, below what the certificate and the loss
resolve; above it, the direction is kept as a genuine dimension.

Single-instance functions are pure and jit/vmap-safe; the public entry
points with checks accept ``(n, d)`` or ``(runs, n, d)``; dtype follows the input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import problems

#: Relative threshold on singular values that defines the numerical rank (module docstring).
RANK_RTOL = 1e-6


def normalize_rows(X):
    """Scale every row to unit norm (a zero row becomes ``e_1``)."""
    norm = jnp.linalg.norm(X, axis=-1, keepdims=True)
    e1 = jnp.zeros_like(X).at[..., 0].set(1.0)
    return jnp.where(norm > 0, X / jnp.where(norm > 0, norm, 1.0), e1)


def project_tangent(H, Z):
    """Row-wise projection of ``Z`` onto the tangent space at ``H``."""
    return Z - jnp.sum(Z * H, axis=-1, keepdims=True) * H


def retract(H, V):
    """Metric-projection retraction ``R_H(V) = rownormalise(H + V)``."""
    return normalize_rows(H + V)


def riemannian_gradient(H, egrad):
    """``egrad - diag(<egrad_i, h_i>) H``."""
    return project_tangent(H, egrad)


def riemannian_hvp(egrad_fn, H, V):
    """``Hess f(H)[V]`` from the Euclidean gradient function (forward-over-reverse)."""
    egrad, ehvp = jax.jvp(egrad_fn, (H,), (V,))
    return project_tangent(H, ehvp) - jnp.sum(egrad * H, axis=-1, keepdims=True) * V


def random_point(key, n: int, d: int, dtype=jnp.float32):
    """Uniform on ``OB(n, d)``: normalised standard Gaussian rows."""
    return normalize_rows(jax.random.normal(key, (n, d), dtype))


# --------------------------------------------------------------------------
# Tangent coordinates


def tangent_basis(H):
    """Orthonormal bases ``U`` ``(n, d, d-1)`` of the row tangent spaces ``h_i^perp``.

    ``U_i`` is the last ``d - 1`` columns of the Householder reflector
    ``I - 2 v v^T/|v|^2``, ``v = h_i + sign(h_i1) e_1`` (rows normalised
    first), which maps ``h_i`` to ``-sign(h_i1) e_1``. The tangent basis of
    ``OB(n, d)`` is ``B = blockdiag(U_1, ..., U_n)``; see ``to_ambient`` and
    ``to_coordinates``. Accepts ``(..., n, d)``.
    """
    H = normalize_rows(H)
    d = H.shape[-1]
    sign = jnp.where(H[..., :1] >= 0, 1.0, -1.0).astype(H.dtype)
    v = H.at[..., :1].add(sign)
    reflector = (
        jnp.eye(d, dtype=H.dtype)
        - 2 * v[..., :, None] * v[..., None, :] / jnp.sum(v * v, axis=-1)[..., None, None]
    )
    return reflector[..., :, 1:]


def to_ambient(U, c):
    """Tangent vector ``V`` ``(n, d)`` with coordinates ``c`` ``(n, d-1)``: ``v_i = U_i c_i``."""
    return jnp.einsum("...ndk,...nk->...nd", U, c)


def to_coordinates(U, V):
    """Coordinates ``c_i = U_i^T v_i`` ``(n, d-1)`` of (the tangent part of) ``V`` ``(n, d)``."""
    return jnp.einsum("...ndk,...nd->...nk", U, V)


# --------------------------------------------------------------------------
# Rank and the symmetry modes


def rank_of_singular_values(sigma, rtol: float = RANK_RTOL):
    """``#{sigma_p > rtol * sigma_1}`` for descending singular values (the package's numerical rank)."""
    return jnp.sum(sigma > rtol * sigma[..., :1], axis=-1).astype(jnp.int32)


def predicted_zero_modes(rank: int, d: int) -> int:
    """``d(d-1)/2 - (d-r)(d-r-1)/2``: the dimension of ``{H Omega : Omega skew}`` at rank ``r``."""
    return d * (d - 1) // 2 - (d - rank) * (d - rank - 1) // 2


def svd_full(H):
    """``(U (n, d), sigma (d,), W (d, d))`` with ``H = U diag(sigma) W^T`` (zero-padded when ``n < d``)."""
    n, d = H.shape
    if n >= d:
        U, sigma, Wt = jnp.linalg.svd(H, full_matrices=False)
        return U, sigma, Wt.T
    U, sigma, Wt = jnp.linalg.svd(H, full_matrices=True)
    U = jnp.concatenate([U, jnp.zeros((n, d - n), H.dtype)], axis=1)
    sigma = jnp.concatenate([sigma, jnp.zeros((d - n,), H.dtype)])
    return U, sigma, Wt.T


def symmetry_basis(H, rank_rtol: float = RANK_RTOL):
    """Orthonormal basis of ``{H Omega}`` at one ``H`` ``(n, d)`` (unit rows), traced, no checks.

    Returns ``(modes, count)``: ``modes`` ``(d(d-1)/2, n, d)`` whose first
    ``count = predicted_zero_modes(rank, d)`` rows are orthonormal (tangent by
    construction, ``h_i Omega h_i^T = 0``) and the rest zero.
    """
    U, sigma, W = svd_full(H)
    d = H.shape[1]
    p, q = np.triu_indices(d, 1)
    sp, sq = sigma[p], sigma[q]
    norm = jnp.sqrt(sp**2 + sq**2)
    keep = sp > rank_rtol * sigma[0]
    scale = jnp.where(keep, 1.0 / jnp.where(keep, norm, 1.0), 0.0)
    modes = (sp * scale)[:, None, None] * U.T[p][:, :, None] * W.T[q][:, None, :]
    modes = modes - (sq * scale)[:, None, None] * U.T[q][:, :, None] * W.T[p][:, None, :]
    # keep depends on p only (sigma descends), and the pairs come in row-major order: kept rows first.
    return modes, jnp.sum(keep).astype(jnp.int32)


def map_points(fn, H, *args, keys=None):
    """Apply the single-instance ``fn`` to ``(n, d)``, or run by run (``lax.map``) to ``(runs, n, d)``.

    Run by run, not ``vmap``: a Hessian is ``N^2`` memory per run, its
    ``eigh`` dominates the time, and vmapped graphs holding several LAPACK
    calls (``svd`` + ``eigh`` of the certificate + ``eigh`` of the Hessian)
    were seen to hang XLA:CPU for good (jax 0.10.2: every worker idle, the
    result never ready) where the same graph mapped run by run finished.
    The single-instance functions remain vmap-safe. ``keys`` (one PRNG key)
    is split over runs and passed as the last argument.
    """
    if H.ndim == 2:
        return fn(H, *args) if keys is None else fn(H, *args, keys)
    if keys is None:
        return jax.lax.map(lambda h: fn(h, *args), H)
    return jax.lax.map(lambda hk: fn(hk[0], *args, hk[1]), (H, jax.random.split(keys, H.shape[0])))


def symmetry_modes(H, *, rank_rtol: float = RANK_RTOL):
    """Orthonormal basis of ``{H Omega : Omega skew d x d}`` in ambient coordinates (rows normalised first).

    Returns ``(modes, count)`` as ``symmetry_basis``: the first ``count =
    predicted_zero_modes(rank, d)`` rows of ``modes`` ``(d(d-1)/2, n, d)`` are
    orthonormal, the rest zero. ``(runs, n, d)`` batches.
    """
    problems.check_points(H)
    return _symmetry_modes_jit(normalize_rows(jnp.asarray(H)), rank_rtol)


@jax.jit
def _symmetry_modes_jit(H, rank_rtol):
    return map_points(symmetry_basis, H, rank_rtol)


def numerical_rank(H, *, rank_rtol: float = RANK_RTOL):
    """``#{sigma_p(H) > rank_rtol * sigma_1(H)}`` (rows normalised first); ``(runs, n, d)`` batches."""
    problems.check_points(H)
    return _rank_jit(normalize_rows(jnp.asarray(H)), rank_rtol)


@jax.jit
def _rank_jit(H, rank_rtol):
    return rank_of_singular_values(jnp.linalg.svd(H, compute_uv=False), rank_rtol)
