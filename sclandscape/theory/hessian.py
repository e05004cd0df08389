r"""The Riemannian Hessian on ``OB(n, d)``: spectra, Hessian-vector products, escape directions.

For the sum-form SC loss ``L(H)`` of a single configuration ``H`` ``(n, d)``
(unit rows), with Euclidean gradient ``egrad = 2 F H`` and row multipliers
``mu_i = <egrad_i, h_i>``::

    Hess L(H)[V] = Proj_H(nabla^2 L(H)[V]) - diag(mu) V,      <v_i, h_i> = 0,

a symmetric operator on the tangent space of dimension ``N = n(d - 1)``.

**Coordinates.** ``oblique.tangent_basis`` gives per row an orthonormal basis
``U_i`` ``(d, d-1)`` of ``h_i^perp`` (the last ``d - 1`` columns of the
Householder reflector that maps ``h_i`` to ``-+e_1``); the tangent basis is
``B = blockdiag(U_1, ..., U_n)`` and coordinates ``c`` ``(n, d-1)`` map to
``V = c -> (U_i c_i)_i``. ``riemannian_hessian`` is ``B^T Hess B`` with rows
and columns ordered ``(i, k) -> i (d-1) + k``.

**Dense path (closed form).** With ``s = 1/tau``, ``P`` the masked row
softmax of ``s G`` (``P_ii = 0``), ``T_{il} = U_i^T h_l`` and
``dx_il = s (c_i.T_il + c_l.T_li)`` the variation of the logit ``s G_il``::

    c^T (B^T Hess B) c = 2 sum_il F_il <U_i c_i, U_l c_l> - sum_i mu_i |c_i|^2
                         + sum_i [ sum_l P_il dx_il^2 - (sum_l P_il dx_il)^2 ]

(the last bracket is the variance of the logit variations under anchor
``i``'s softmax: the Hessian of the log-sum-exp). It is assembled with
``O(n^2 d^3 + n N^2)`` work, one GEMM dominating, and checked in the tests
against forward-over-reverse autodiff, finite differences (a Taylor-slope
check) and NumPy.

**Matrix-free path.** ``hvp_operator`` is forward-over-reverse autodiff of
the loss (dense or streaming, ``streaming.loss_fn``), linearised once per
point, projected. ``lanczos_extremes`` runs ``linalg.lanczos`` with the
symmetry modes ``{H Omega}`` (``oblique.symmetry_basis``) deflated. Ritz
values are Rayleigh quotients, so ``theta_1 >= lambda_1`` (a Ritz value
``< -tol`` proves a negative eigenvalue) and ``#{theta < -tol}`` is a lower
bound on the index. ``spectral_density`` is stochastic Lanczos quadrature
(Ubaru, Chen & Saad, SIMAX 2017).

**Precision.** Everything follows the input dtype (``precision``);
``classify`` re-evaluates in float64 inside ``precision.float64()``.
Single-instance functions are pure and jit/vmap-safe; the public entry points
accept ``(n, d)`` or ``(runs, n, d)``.

**Threads (CPU).** jaxlib's ``eigh``/``svd`` call SciPy's OpenBLAS from XLA's
worker threads. With OpenBLAS's own threading on, batched or concurrent calls
oversubscribe the cores and can stall for minutes or deadlock (jax-ml/jax
#39292, OpenMathLib/OpenBLAS#5517); run with ``OPENBLAS_NUM_THREADS=1`` (set
before NumPy is imported), as ``benchmarks/hessian.py`` does.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.numerics import linalg, loss, oblique, streaming
from sclandscape.numerics.oblique import (
    map_points,
    symmetry_basis,
    tangent_basis,
    to_ambient,
    to_coordinates,
)

#: Above this tangent dimension ``n (d - 1)`` the entry points use Lanczos instead of the dense path.
DENSE_MAX_DIM = 3000
#: How spectra are computed: ``"dense"`` (closed form + ``eigh``), ``"lanczos"``, or ``"auto"``.
METHODS = ("auto", "dense", "lanczos")


# --------------------------------------------------------------------------
# Dense path


def _softmax_and_gradient(H, labels, tau):
    """``P`` (masked row softmax of ``G/tau``), ``F`` and the multipliers ``mu_i = <egrad_i, h_i>``."""
    n = H.shape[0]
    G = H @ H.T
    off = ~jnp.eye(n, dtype=bool)
    logits = G / tau
    lse = loss.masked_logsumexp(logits, off, axis=1)
    P = jnp.where(off, jnp.exp(jnp.where(off, logits - lse[:, None], 0.0)), 0.0)
    positive = off & (labels[:, None] == labels[None, :])
    Yp = positive / jnp.maximum(jnp.sum(positive, axis=1, keepdims=True), 1)
    A = (P - Yp) / tau
    F = 0.5 * (A + A.T)
    mu = 2 * jnp.sum(F * G, axis=1)
    return P, F, mu


def hessian_matrix(H, labels, tau, absolute: bool = False):
    """``B^T Hess L(H) B`` ``(N, N)`` in closed form (module docstring); one instance, traced.

    ``absolute=True`` assembles the same sums from the absolute values of
    their terms (``|F|``, ``|U|``, ``|T|``, ``|mu|``, ``|W|``, and ``+ |W|^T |W|``):
    entry by entry an upper bound on the sum of the magnitudes that the
    rounding error of each entry is proportional to (``hessian_rounding_bound``).
    """
    H = oblique.normalize_rows(H)
    n, d = H.shape
    k = d - 1
    s = 1.0 / tau
    P, F, mu = _softmax_and_gradient(H, labels, tau)
    U = tangent_basis(H)
    T = jnp.einsum("adk,ld->alk", U, H)  # T[a, l] = U_a^T h_l (zero for l = a)
    sign = 1.0
    if absolute:
        F, mu, U, T, sign = jnp.abs(F), jnp.abs(mu), jnp.abs(U), jnp.abs(T), -1.0
    Psym = P + P.T
    # 2 F (x) I in tangent coordinates, and the cross blocks s^2 (P_ab + P_ba) T_ab T_ba^T.
    M = 2 * jnp.einsum("ab,adk,bdl->akbl", F, U, U)
    M = M + s**2 * jnp.einsum("ab,abk,bal->akbl", Psym, T, T)
    # Diagonal blocks: s^2 sum_l (P_al + P_la) T_al T_al^T - mu_a I.
    eye = jnp.eye(k, dtype=H.dtype)
    diag = s**2 * jnp.einsum("al,alk,alm->akm", Psym, T, T) - sign * mu[:, None, None] * eye
    idx = jnp.arange(n)
    M = M.at[idx, :, idx, :].add(diag)
    # Minus sum_i (sum_l P_il dx_il)^2 = -|W c|^2, W[i, a] = s (delta_ia sum_l P_il T_il + P_ia T_ai).
    W = s * (P[:, :, None] * jnp.swapaxes(T, 0, 1))
    W = W.at[idx, idx, :].add(s * jnp.einsum("il,ilk->ik", P, T))
    W = W.reshape(n, n * k)
    M = M.reshape(n * k, n * k) - sign * W.T @ W
    return 0.5 * (M + M.T)


def hessian_rounding_bound(H, labels, tau, M, M_abs):
    r"""A bound on ``|lambda_j(computed) - lambda_j(exact)|`` for the closed-form Hessian (traced).

    Each entry of ``M`` is a sum of products of ``F``, ``P``, ``T = U^T H``,
    ``U``, ``mu`` and ``W``: with ``delta_P`` the relative error of the softmax
    (``certify.slack_rounding_bound``) and ``d``-, ``n``-term sums, every entry
    is off by at most ``gamma |M_abs|`` entrywise, ``gamma = delta_P + (2d + 2n
    + 8) eps``. By Weyl the eigenvalues move by at most the spectral norm of the
    error, ``<= gamma |M_abs|_F``; ``eigh`` adds its backward error ``N eps |M|_F``.
    """
    n, d = H.shape
    eps = jnp.finfo(M.dtype).eps
    delta_p = eps * ((3 * d + 5) / tau + n + 2 * math.log(n) + 2)
    gamma = delta_p + (2 * d + 2 * n + 8) * eps
    return gamma * jnp.linalg.norm(M_abs) + M.shape[0] * eps * jnp.linalg.norm(M)


def hessian_matrix_autodiff(H, labels, tau, batch_size: int = 64):
    """``B^T Hess B`` from ``hvp_operator`` on every basis vector (a check independent of the closed form)."""
    H = oblique.normalize_rows(H)
    n, d = H.shape
    k = d - 1
    U = tangent_basis(H)
    apply = hvp_operator(H, labels, tau)

    def column(index):
        a, j = index // k, index % k
        V = jnp.zeros_like(H).at[a].set(U[a, :, j])
        return to_coordinates(U, apply(V)).reshape(-1)

    M = jax.lax.map(column, jnp.arange(n * k), batch_size=batch_size)
    return 0.5 * (M + M.T)


def riemannian_hessian(H, labels, tau):
    """The Riemannian Hessian ``B^T Hess L(H) B`` ``(N, N)``, ``N = n(d-1)``, in ``tangent_basis`` coords.

    ``Hess L(H)[V] = Proj_H(nabla^2 L(H)[V]) - diag(<egrad_i, h_i>) V``
    (docs/maths.md §3), sum-form loss, rows of ``H`` normalised first. Symmetric;
    ``(runs, n, d)`` gives ``(runs, N, N)``. Dtype follows ``H``.
    """
    problems.check_points(H, labels, tau)
    return _riemannian_hessian(jnp.asarray(H), jnp.asarray(labels), tau)


@jax.jit
def _riemannian_hessian(H, labels, tau):
    return map_points(hessian_matrix, H, labels, tau)


def riemannian_hessian_eigs(H, labels, tau):
    """All ``n(d-1)`` eigenvalues of the Riemannian Hessian on the tangent space, ascending (docs/results.md).

    ``H`` ``(n, d)`` gives ``(N,)``; ``(runs, n, d)`` gives ``(runs, N)``.
    Dense (closed-form assembly and ``eigh``): practical up to ``N ~ 3000``.
    Computed and returned in float64 whatever ``jax_enable_x64`` says (the
    precision policy: decisions run in float64; ``precision.float64``).
    """
    problems.check_points(H, labels, tau)
    with precision.float64():
        H = jnp.asarray(np.asarray(H, np.float64), jnp.float64)
        return _riemannian_hessian_eigs(H, jnp.asarray(labels), tau)


@jax.jit
def _riemannian_hessian_eigs(H, labels, tau):
    return map_points(lambda h, y, t: jnp.linalg.eigvalsh(hessian_matrix(h, y, t)), H, labels, tau)


# --------------------------------------------------------------------------
# Matrix-free path


def hvp_operator(H, labels, tau, *, stream: bool | None = None):
    """``V -> Hess L(H)[V]`` at one ``H`` (traced, no checks): forward-over-reverse, linearised once.

    ``stream`` (default ``streaming.use_streaming(n)``) takes the streaming
    loss, which never forms the ``n x n`` matrix. ``V`` is projected on the
    tangent space first, so the closure is the symmetric ``Proj Hess Proj``.
    """
    if stream is None:
        stream = streaming.use_streaming(H.shape[0])
    H = oblique.normalize_rows(H)
    egrad, linear = jax.linearize(jax.grad(streaming.loss_fn(labels, tau, stream=stream)), H)
    mu = jnp.sum(egrad * H, axis=-1, keepdims=True)

    def apply(V):
        V = oblique.project_tangent(H, V)
        return oblique.project_tangent(H, linear(V)) - mu * V

    return apply


def hvp(H, labels, tau):
    """``V -> Hess L(H)[V]`` for one ``H`` ``(n, d)``: forward-over-reverse, linearised once.

    ``V`` ``(n, d)`` is projected onto the tangent space first, so the
    closure is the symmetric operator ``Proj Hess Proj`` on ambient
    coordinates. jit/vmap-safe (build it inside the transformed function).
    """
    shape = problems.check_points(H, labels, tau)
    if len(shape) != 2:
        raise ValueError(f"hvp takes one configuration H (n, d), got shape {shape}; vmap it for runs")
    return hvp_operator(jnp.asarray(H), jnp.asarray(labels), tau)


class Extremes(NamedTuple):
    """Extreme Ritz pairs of one Lanczos run (all fields gain a leading runs axis when batched).

    ``lambda_min``/``vector_min``/``residual_min``: the smallest Ritz pair (of
    the operator with the symmetry modes deflated when asked);
    ``lambda_max``/``residual_max``: the largest; ``ritz_values`` all ``m``;
    ``n_hvp``: Hessian-vector products used (``m``); ``n_deflated``: symmetry
    modes removed.
    """

    lambda_min: jax.Array
    vector_min: jax.Array
    residual_min: jax.Array
    lambda_max: jax.Array
    residual_max: jax.Array
    ritz_values: jax.Array
    n_hvp: jax.Array
    n_deflated: jax.Array


def lanczos_steps(shape, deflate: bool, num_iter: int) -> int:
    """Lanczos steps for ``num_iter`` asked: capped at the tangent dimension left after deflation."""
    n, d = shape[-2:]
    room = n * (d - 1) - (d * (d - 1) // 2 if deflate else 0)
    return max(1, min(int(num_iter), room))


def extremes_one(H, labels, tau, key, num_iter, deflate, rank_rtol):
    """``Extremes`` of one ``H`` (traced, no checks): Lanczos with the symmetry modes deflated when asked."""
    H = oblique.normalize_rows(H)
    apply = hvp_operator(H, labels, tau)
    Z, count = symmetry_basis(H, rank_rtol) if deflate else (None, jnp.zeros((), jnp.int32))
    k0, k1 = jax.random.split(key)
    v0 = jax.random.normal(k0, H.shape, H.dtype)
    project = lambda v: oblique.project_tangent(H, v)  # noqa: E731
    result = linalg.lanczos(apply, v0, num_iter, deflation=Z, project=project, key=k1)
    theta, S = jnp.linalg.eigh(linalg.tridiagonal(result))
    residual = jnp.abs(result.beta[-1] * S[-1])
    v = jnp.tensordot(S[:, 0], result.basis, axes=1)
    v = project(v) / jnp.linalg.norm(v)
    return Extremes(
        theta[0], v, residual[0], theta[-1], residual[-1], theta, jnp.asarray(num_iter), jnp.asarray(count)
    )


@functools.partial(jax.jit, static_argnames=("num_iter", "deflate"))
def _extremes_batched(H, labels, tau, key, num_iter, deflate, rank_rtol):
    def one(h, labels, tau, k):
        return extremes_one(h, labels, tau, k, num_iter, deflate, rank_rtol)

    return map_points(one, H, labels, tau, keys=key)


def lanczos_extremes(
    H, labels, tau, *, num_iter: int = 300, deflate_symmetry: bool = True, rank_rtol: float = 1e-6, key=None
) -> Extremes:
    """Smallest and largest eigenvalues of the Riemannian Hessian by Lanczos (matrix free).

    ``num_iter`` Hessian-vector products (capped at the tangent dimension left
    after deflation), full reorthogonalisation; with ``deflate_symmetry`` the
    symmetry modes ``{H Omega}`` (``symmetry_modes`` at ``rank_rtol``) are
    projected out, so ``lambda_min`` is the smallest non-symmetry eigenvalue
    at a critical point. ``H`` ``(n, d)`` or ``(runs, n, d)`` (one key split
    over runs). Residual norms bound the Ritz values' errors (``|theta -
    lambda| <= residual``).
    """
    shape = problems.check_points(H, labels, tau)
    key = jax.random.key(0) if key is None else key
    m = lanczos_steps(shape, deflate_symmetry, num_iter)
    return _extremes_batched(jnp.asarray(H), jnp.asarray(labels), tau, key, m, deflate_symmetry, rank_rtol)


def _slq(H, labels, tau, key, num_iter, num_probes):
    H = oblique.normalize_rows(H)
    apply = hvp_operator(H, labels, tau)
    project = lambda v: oblique.project_tangent(H, v)  # noqa: E731

    def probe(k):
        k0, k1 = jax.random.split(k)
        v0 = project(jax.random.rademacher(k0, H.shape, H.dtype))
        result = linalg.lanczos(apply, v0, num_iter, project=project, key=k1)
        theta, S = jnp.linalg.eigh(linalg.tridiagonal(result))
        return theta, S[0] ** 2 / num_probes

    return jax.lax.map(probe, jax.random.split(key, num_probes))


@functools.partial(jax.jit, static_argnames=("num_iter", "num_probes"))
def _slq_batched(H, labels, tau, key, num_iter, num_probes):
    return map_points(
        lambda h, labels, tau, k: _slq(h, labels, tau, k, num_iter, num_probes), H, labels, tau, keys=key
    )


def spectral_density(H, labels, tau, *, num_iter: int = 80, num_probes: int = 4, key=None):
    """Stochastic Lanczos quadrature of the spectral measure ``(1/N) sum_j delta(lambda - lambda_j)``.

    Each of ``num_probes`` Rademacher tangent probes ``v`` gives an
    ``m``-point Gauss quadrature ``v^T g(Hess) v / |v|^2 ~ sum_k (S_0k)^2
    g(theta_k)``. Returns ``(nodes, weights)`` of shape ``(num_probes, m)``
    (weights sum to 1 over both axes); evaluate with ``density_on_grid``.
    """
    shape = problems.check_points(H, labels, tau)
    if int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"num_probes must be an integer >= 1, got {num_probes!r}")
    key = jax.random.key(0) if key is None else key
    m = lanczos_steps(shape, False, num_iter)
    return _slq_batched(jnp.asarray(H), jnp.asarray(labels), tau, key, m, int(num_probes))


def density_on_grid(nodes, weights, grid, sigma):
    """Gaussian-broadened density ``sum_k w_k N(x; theta_k, sigma^2)`` on ``grid`` (integrates to 1)."""
    nodes = jnp.asarray(nodes).reshape(-1)
    weights = jnp.asarray(weights).reshape(-1)
    grid = jnp.asarray(grid)
    z = (grid[..., None] - nodes) / sigma
    return jnp.sum(weights * jnp.exp(-0.5 * z**2), axis=-1) / (sigma * math.sqrt(2 * math.pi))


# --------------------------------------------------------------------------
# Escape directions


class Escape(NamedTuple):
    """The most negative eigenvalue and its unit tangent eigenvector ``(n, d)`` (Frobenius norm 1)."""

    eigenvalue: jax.Array
    direction: jax.Array


def _escape_dense(H, labels, tau):
    H = oblique.normalize_rows(H)
    n, d = H.shape
    w, S = jnp.linalg.eigh(hessian_matrix(H, labels, tau))
    V = to_ambient(tangent_basis(H), S[:, 0].reshape(n, d - 1))
    return Escape(w[0], V / jnp.linalg.norm(V))


def escape_direction(H, labels, tau, *, method: str = "auto", num_iter: int = 300, key=None) -> Escape:
    """Unit tangent eigenvector of the most negative Hessian eigenvalue (a saddle's escape direction).

    Dense ``eigh`` when ``n(d-1) <= DENSE_MAX_DIM`` (``method="auto"``), else
    Lanczos with the symmetry modes deflated. Check it with ``escape_decrease``.
    ``(runs, n, d)`` batches.
    """
    shape = problems.check_points(H, labels, tau)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        method = "dense" if shape[-2] * (shape[-1] - 1) <= DENSE_MAX_DIM else "lanczos"
    if method == "lanczos":
        out = lanczos_extremes(H, labels, tau, num_iter=num_iter, key=key)
        return Escape(out.lambda_min, out.vector_min)
    return _escape_dense_jit(jnp.asarray(H), jnp.asarray(labels), tau)


@jax.jit
def _escape_dense_jit(H, labels, tau):
    return map_points(_escape_dense, H, labels, tau)


class EscapeCheck(NamedTuple):
    """``decrease = L(H) - L(R_H(step V))`` at the best ``step`` (signed) of the grid tried."""

    decrease: jax.Array
    step: jax.Array
    loss: jax.Array
    loss_after: jax.Array


@jax.jit
def _escape_decrease(H, labels, tau, V, steps):
    H = oblique.normalize_rows(H)
    V = oblique.project_tangent(H, V)
    V = V / jnp.linalg.norm(V)
    base = loss.sum_loss(H, labels, tau)
    signed = jnp.concatenate([steps, -steps])
    after = jax.vmap(lambda t: loss.sum_loss(oblique.retract(H, t * V), labels, tau))(signed)
    best = jnp.argmin(after)
    return EscapeCheck(base - after[best], signed[best], base, after[best])


def escape_decrease(H, labels, tau, V, *, steps=None) -> EscapeCheck:
    """How much a retraction step ``R_H(+-t V)`` along the unit tangent ``V`` lowers the loss.

    Tries ``t`` in ``steps`` (default ``2^0, 2^-1, ..., 2^-30``), both signs,
    and returns the largest decrease with its signed step; a positive
    ``decrease`` confirms ``V`` as a descent (escape) direction. One ``H``.
    """
    shape = problems.check_points(H, labels, tau)
    if len(shape) != 2 or np.shape(V) != shape:
        raise ValueError(f"H and V must both have shape (n, d); got {shape} and {np.shape(V)}")
    steps = 2.0 ** -np.arange(31) if steps is None else np.asarray(steps, dtype=float).reshape(-1)
    if steps.size == 0 or not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        raise ValueError("steps must be a non-empty list of positive finite step sizes")
    H = jnp.asarray(H)
    return _escape_decrease(H, jnp.asarray(labels), tau, jnp.asarray(V, H.dtype), jnp.asarray(steps, H.dtype))
