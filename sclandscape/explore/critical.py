r"""A critical-point finder on ``OB(n, d)`` that converges to saddles as readily as to minima.

Minimisation (``scan``) is drawn to minima; to find *every* kind of critical
point we solve the gradient equation ``grad L(H) = 0`` instead, i.e. minimise

    phi(H) = 1/2 |grad L(H)|_F^2,       grad phi(H) = Hess L(H)[grad L(H)]

(the second identity because the Riemannian Hessian is the covariant
derivative of the gradient and is symmetric; this is Manopt's
``criticalpointfinder``). Gradient descent on ``phi`` squares the condition
number, so each iteration here is a **Levenberg-Marquardt** step on the
linearised gradient instead: with ``g = grad L(H)`` and ``A`` the Riemannian
Hessian in an orthonormal basis of a subspace of the tangent space,

    eta(lambda) = argmin_y  1/2 |g + A y|^2 + lambda/2 |y|^2,
                = -A^T (A A^T + lambda I)^{-1} g  (through one SVD of A),

accepted on the ratio ``rho`` of the actual decrease ``phi(H) - phi(R_H(eta))``
to the model's (Nielsen's damping update: ``lambda *= max(1/3, 1 - (2 rho -
1)^3)`` on success, doubling factors on failure). ``lambda -> 0`` near a
critical point makes the step the pseudo-inverse Newton step ``-Hess^+ g``,
so the convergence is quadratic at non-degenerate critical points (modulo the
rotation orbit: the symmetry zero modes ``H Omega`` are orthogonal to ``g``
at every point and drop out of the pseudo-inverse); far from one, ``lambda``
is large and the step is a short step along ``-grad phi``. The basis is

- ``"dense"``: the whole tangent space (``hessian.riemannian_hessian``'s
  closed form in ``oblique.tangent_basis`` coordinates; ``N = n(d-1)``, one
  ``N x N`` SVD per iteration);
- ``"lanczos"``: the Krylov space ``K_m(Hess, g)`` from ``linalg.lanczos``
  (``m`` Hessian-vector products, full reorthogonalisation). With
  ``Hess Q = Q T + beta_m q_{m+1} e_m^T`` the residual is exactly
  ``|g + Hess Q y| = |(|g| e_1) + Tbar y|`` with ``Tbar`` the ``(m+1) x m``
  Lanczos matrix: a damped MINRES step, matrix-free.

One run is a pure function of ``(H0, labels, tau, settings)`` with bounded
``lax.while_loop``s (an outer loop of LM iterations, an inner loop of damping
trials, one gradient evaluation per trial), so a batch is a ``vmap`` and the
public entry compiles once per shape. Every run ends with a ``Status`` as data:
``CONVERGED`` (``|grad| <= gtol``), ``MAX_STEPS``, ``NON_FINITE`` or
``STALLED`` (no damping makes progress: typically a local minimum of ``phi``
that is not a critical point of ``L``). Work in float64: near a critical point
the ratio ``rho`` compares differences of ``phi ~ |g|^2``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import problems
from sclandscape.numerics import linalg, loss, oblique, optim
from sclandscape.numerics.optim import Status
from sclandscape.theory import hessian

METHODS = hessian.METHODS


@dataclasses.dataclass(frozen=True)
class CriticalSettings:
    """Tolerances and limits of ``find_critical`` (frozen, recorded with results).

    Attributes:
      gtol: converged when the Riemannian gradient norm (sum-form loss, absolute) is ``<= gtol``.
      max_iter: LM iterations (one Hessian model each).
      max_trials: damping trials per iteration (one gradient evaluation each).
      method: ``"dense"``, ``"lanczos"`` or ``"auto"`` (dense when ``n(d-1) <= dense_max_dim``).
      dense_max_dim: the ``"auto"`` threshold.
      krylov_dim: Lanczos steps ``m`` per iteration (capped at ``n(d-1)``).
      mu0: initial damping ``lambda = mu * sigma_max(A)^2``.
      mu_min: floor of ``mu`` (singular values below ``~sqrt(mu_min) sigma_max`` are damped out).
      mu_max: ``STALLED`` once ``mu`` exceeds this.
      max_index: ``-1``: any critical point. ``>= 0`` (dense method only): a trial step is
        accepted only where the Hessian, with the symmetry modes projected out, has at most
        this many eigenvalues below minus its rounding bound (``hessian.hessian_rounding_bound``):
        a re-polisher that must stay on a minimum (``max_index=0``) never slides to a saddle.
    """

    gtol: float = 1e-10
    max_iter: int = 100
    max_trials: int = 30
    method: str = "auto"
    dense_max_dim: int = 600
    krylov_dim: int = 60
    mu0: float = 1e-4
    mu_min: float = 1e-18
    mu_max: float = 1e16
    max_index: int = -1

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("gtol", "mu0", "mu_min", "mu_max"),
            integers={"max_iter": 1, "max_trials": 1, "dense_max_dim": 1, "krylov_dim": 1, "max_index": -1},
            choices={"method": METHODS},
        )
        if self.max_index >= 0 and self.method == "lanczos":
            raise ValueError("max_index needs the dense method (the whole spectrum of every trial point)")

    def resolved_method(self, n: int, d: int) -> str:
        if self.method != "auto":
            return self.method
        return "dense" if n * (d - 1) <= self.dense_max_dim else "lanczos"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class CriticalResult(NamedTuple):
    """One run (a leading runs axis when batched): the point, ``L``, ``|grad L|``, counts, ``Status``."""

    x: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    iterations: jax.Array  # LM iterations (Hessian models built)
    evals: jax.Array  # gradient evaluations
    status: jax.Array


def _value_and_grad(H, labels, tau):
    f, eg = jax.value_and_grad(loss.sum_loss)(H, labels, tau)
    return f, oblique.riemannian_gradient(H, eg)


def _model(H, g, labels, tau, method: str, m: int, key):
    """``(A, c, to_ambient)``: ``|g + Hess V|`` = ``|c + A y|`` for ``V = to_ambient(y)``."""
    n, d = H.shape
    if method == "dense":
        U = oblique.tangent_basis(H)
        A = hessian.hessian_matrix(H, labels, tau)
        c = oblique.to_coordinates(U, g).reshape(-1)
        return A, c, lambda y: oblique.to_ambient(U, y.reshape(n, d - 1))
    apply = hessian.hvp_operator(H, labels, tau)
    project = lambda v: oblique.project_tangent(H, v)  # noqa: E731
    res = linalg.lanczos(apply, g, m, project=project, key=key)
    T = linalg.tridiagonal(res)
    A = jnp.concatenate([T, jnp.zeros((1, m), H.dtype).at[0, m - 1].set(res.beta[-1])], axis=0)
    c = jnp.zeros((m + 1,), H.dtype).at[0].set(jnp.linalg.norm(g))
    return A, c, lambda y: jnp.tensordot(y, res.basis, axes=1)


def index_beyond_symmetry(H, labels, tau):
    """How many Hessian eigenvalues lie below minus its rounding bound, symmetry modes removed (traced)."""
    n, d = H.shape
    N = n * (d - 1)
    M = hessian.hessian_matrix(H, labels, tau)
    bound = hessian.hessian_rounding_bound(H, labels, tau, M, hessian.hessian_matrix(H, labels, tau, True))
    U = oblique.tangent_basis(H)
    Z, _ = oblique.symmetry_basis(H)
    Zc = oblique.to_coordinates(U[None], Z).reshape(Z.shape[0], N)
    P = jnp.eye(N, dtype=H.dtype) - Zc.T @ Zc
    w = jnp.linalg.eigvalsh(P @ M @ P)  # the symmetry modes sit at 0: never counted as negative
    return jnp.sum(w < -bound)


def _find_one(H0, labels, tau, key, settings: CriticalSettings, method: str, m: int):
    H0 = oblique.normalize_rows(H0)
    f0, g0 = _value_and_grad(H0, labels, tau)
    gtol = settings.gtol

    def status_of(f, g, it, mu, stuck):
        gnorm = jnp.linalg.norm(g)
        finite = jnp.isfinite(f) & jnp.isfinite(gnorm)
        return optim.run_status(
            finite, gnorm <= gtol, stuck | (mu > settings.mu_max), it >= settings.max_iter
        )

    dtype = H0.dtype
    one = jnp.ones((), dtype)
    zero_i = jnp.zeros((), jnp.int32)
    mu0 = jnp.asarray(settings.mu0, dtype)
    init = (H0, f0, g0, mu0, 2 * one, zero_i, zero_i, status_of(f0, g0, 0, mu0, False))

    def body(s):
        H, f, g, mu, nu, it, evals, _ = s
        A, c, to_ambient = _model(H, g, labels, tau, method, m, jax.random.fold_in(key, it))
        P, sv, Rt = jnp.linalg.svd(A, full_matrices=False)
        cp = P.T @ c
        scale = jnp.maximum(sv[0] ** 2, jnp.finfo(dtype).tiny)
        phi = 0.5 * jnp.sum(g * g)

        def trial(ts):
            mu, nu, _, _, _, _, tries, _ = ts
            lam = mu * scale
            y = -Rt.T @ (sv * cp / (sv**2 + lam))
            V = oblique.project_tangent(H, to_ambient(y))
            r = c + A @ y
            pred = phi - 0.5 * jnp.sum(r * r)
            Hn = oblique.retract(H, V)
            fn, gn = _value_and_grad(Hn, labels, tau)
            actual = phi - 0.5 * jnp.sum(gn * gn)
            rho = actual / jnp.where(pred > 0, pred, 1.0)
            ok = (pred > 0) & (rho > 1e-4) & jnp.isfinite(fn) & jnp.isfinite(actual)
            if settings.max_index >= 0:
                ok = ok & (index_beyond_symmetry(Hn, labels, tau) <= settings.max_index)
            mu_ok = jnp.maximum(mu * jnp.maximum(1 / 3, 1 - (2 * rho - 1) ** 3), settings.mu_min)
            return (
                jnp.where(ok, mu_ok, mu * nu),
                jnp.where(ok, 2 * one, 2 * nu),
                ok,
                jnp.where(ok, Hn, H),
                jnp.where(ok, fn, f),
                jnp.where(ok, gn, g),
                tries + 1,
                pred,
            )

        def more(ts):
            return (~ts[2]) & (ts[6] < settings.max_trials) & (ts[0] <= settings.mu_max)

        ts = jax.lax.while_loop(more, trial, (mu, nu, False, H, f, g, zero_i, one))
        mu, nu, ok, H, f, g, tries, pred = ts
        # No model decrease left (pred <= 0) with a non-zero gradient: a critical point of phi only.
        stuck = ~ok
        return (H, f, g, mu, nu, it + 1, evals + tries, status_of(f, g, it + 1, mu, stuck))

    H, f, g, _, _, it, evals, status = jax.lax.while_loop(lambda s: s[7] < 0, body, init)
    return CriticalResult(H, f, jnp.linalg.norm(g), it, evals + 1, status)


@functools.partial(jax.jit, static_argnames=("settings", "method", "m"))
def _find_batch(H0, labels, tau, keys, settings, method, m):
    return jax.vmap(_find_one, in_axes=(0, None, None, 0, None, None, None))(
        H0, labels, tau, keys, settings, method, m
    )


def krylov_dim(n: int, d: int, settings: CriticalSettings) -> int:
    return max(1, min(settings.krylov_dim, n * (d - 1)))


def find_critical_one(H0, labels, tau, settings: CriticalSettings = CriticalSettings(), key=None):
    """The traceable single-run solver (for use inside ``jit``/``vmap``; no input checks)."""
    n, d = H0.shape
    method = settings.resolved_method(n, d)
    key = jax.random.key(0) if key is None else key
    return _find_one(H0, labels, tau, key, settings, method, krylov_dim(n, d, settings))


def find_critical(H0, labels, tau, settings: CriticalSettings = CriticalSettings(), *, key=None):
    """Converge from ``H0`` to a nearby critical point of ``L`` on ``OB(n, d)`` (minimum, saddle or maximum).

    Args:
      H0: ``(n, d)`` or ``(runs, n, d)`` starting points (rows normalised); ``d >= 2``.
      labels, tau: the problem (sum-form loss of docs/maths.md §1).
      settings: ``CriticalSettings``.
      key: PRNG key for Lanczos restart vectors (``"lanczos"`` only).

    Returns a ``CriticalResult`` (leading runs axis when ``H0`` has one), in
    ``H0``'s dtype (pass float64 under ``jax.enable_x64``). Compiles once per
    shape and settings; bad input raises ``ValueError``.
    """
    shape = problems.check_points(H0, labels, tau)
    if not isinstance(settings, CriticalSettings):
        raise ValueError(f"settings must be a CriticalSettings, got {type(settings).__name__}")
    H = jnp.asarray(H0)
    single = H.ndim == 2
    if single:
        H = H[None]
    n, d = shape[-2:]
    key = jax.random.key(0) if key is None else key
    keys = jax.random.split(key, H.shape[0])
    out = _find_batch(
        H,
        jnp.asarray(labels),
        float(tau),
        keys,
        settings,
        settings.resolved_method(n, d),
        krylov_dim(n, d, settings),
    )
    if single:
        out = jax.tree.map(lambda x: x[0], out)
    return out


def status_names(status) -> list[str]:
    """``Status`` codes as lower-case names (``converged``, ``max_steps``, ...)."""
    return [Status(int(s)).name.lower() for s in np.asarray(status).reshape(-1)]
