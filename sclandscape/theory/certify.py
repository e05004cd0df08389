r"""The certificate of global optimality (docs/maths.md §2): dual slack, KKT residual, dense or matrix-free.

For ``min f(G)`` over the elliptope ``{G PSD, G_ii = 1}`` (``f`` the sum-form
SC loss as a convex function of the off-diagonal Gram entries) with
symmetric gradient ``F`` at ``G`` the dual slack is

    S = F - Diag((F G)_ii),

and ``G`` is optimal iff ``S`` is PSD and ``S G = 0`` (KKT). For any
unit-norm ``H`` (``G = H H^T``) the Riemannian gradient of ``L`` is exactly
``2 S H``, and convexity gives, for the relaxation's optimum ``G*``::

    L(H) - L*  <=  <F, G - G*>  =  <S, G> - <S, G*>
               <=  n max(0, -lambda_min(S)) + |<S, G>|          (gap_bound)

(``G*`` PSD with unit diagonal, ``tr G* = n``). The last line is the
solver-free ``gap_bound``; the first needs ``G*`` (known from the class-level
program, ``optimum``) and is the sharper ``linear_gap_bound``.

``lambda_min(S)`` is computed densely (``eigvalsh`` of ``S``, exact to
rounding) or, at large ``n``, by Lanczos on ``v -> S v`` with one streaming
sweep per product (``streaming.slack_matvec``): the smallest Ritz value is a
Rayleigh quotient, so ``>= lambda_min(S)``; a negative value always
disproves optimality, and a non-negative one is exact only once Lanczos has
converged. ``Certificate.exact`` records which.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import problems
from sclandscape.numerics import linalg, loss, oblique, streaming

#: Lanczos steps of the matrix-free certificate (capped at ``n``).
LANCZOS_STEPS = 100


def dual_slack(grad_sym, X):
    """``S = F - Diag((F X)_ii)``: the dual slack of ``min f`` over the elliptope at ``X``."""
    return grad_sym - jnp.diag(jnp.diagonal(grad_sym @ X))


def kkt_residual(grad_sym, X):
    """Relative KKT residual of ``X`` for ``min f`` over ``{X PSD, X_ii = 1}``.

    The maximum of complementarity ``|S X|_F``, dual infeasibility
    ``max(0, -lambda_min(S))`` (both divided by ``|F|_F``, so the residual is
    invariant to scaling ``f``) and primal infeasibility
    ``max(0, -lambda_min(X))``, ``max |X_ii - 1|``.
    """
    S = dual_slack(grad_sym, X)
    scale = jnp.linalg.norm(grad_sym)
    scale = jnp.where(scale > 0, scale, 1.0)
    comp = jnp.linalg.norm(S @ X) / scale
    dual = jnp.maximum(0.0, -jnp.linalg.eigvalsh(S)[0]) / scale
    primal = jnp.maximum(jnp.maximum(0.0, -jnp.linalg.eigvalsh(X)[0]), jnp.max(jnp.abs(jnp.diagonal(X) - 1)))
    return jnp.maximum(jnp.maximum(comp, dual), primal)


class Certificate(NamedTuple):
    """The certificate at one point (a leading runs axis when batched).

    ``lambda_min``: smallest eigenvalue of ``S`` (a Ritz value when not
    ``exact``); ``gap_bound``: ``n max(0, -lambda_min) + |<S, G>|``;
    ``residual``: Lanczos residual of ``lambda_min`` (0 when exact);
    ``exact``: dense ``eigvalsh`` (True) or a Lanczos estimate (False);
    ``rounding``: a bound on the rounding error of ``lambda_min``
    (``slack_rounding_bound``).
    """

    lambda_min: jax.Array
    gap_bound: jax.Array
    residual: jax.Array
    exact: jax.Array
    rounding: jax.Array


def slack_rounding_bound(n: int, d: int, tau, eps):
    r"""A bound on the rounding error of the computed ``lambda_min(S)`` (``docs/maths.md``, "Tolerances").

    Each ``F_il = (P_il + P_li - Y+_il - Y+_li) / (2 tau)`` carries the
    relative error ``delta_P = eps ((3d + 5)/tau + n + 2 log n + 2)`` of the
    softmax (its logits' ``(d+1) eps/tau`` and its log-sum-exp's error, as in
    ``loss.rounding_bound`` with ``|lse| <= 1/tau + log n``); ``|F|_F <= 2 sqrt(n)/tau``
    (each row of ``P`` and ``Y+`` sums to 1); ``(F G)_ii`` sums ``n`` terms of
    ``sum_l |F_il| <= 2/tau``; ``eigvalsh`` is backward stable (``n eps |S|``).
    By Weyl the eigenvalue moves by at most the norm of the total error::

        |d lambda| <= delta_P 2 sqrt(n)/tau + n eps 2/tau + n eps (2 sqrt(n) + 2)/tau
    """
    delta_p = eps * ((3 * d + 5) / tau + n + 2 * math.log(n) + 2)
    return delta_p * 2 * math.sqrt(n) / tau + n * eps * 2 / tau + n * eps * (2 * math.sqrt(n) + 2) / tau


def dense(H, labels, tau) -> Certificate:
    """The certificate of one ``H`` ``(n, d)`` from the dense ``S`` (rows normalised; traced, no checks)."""
    H = oblique.normalize_rows(H)
    G = H @ H.T
    S = dual_slack(loss.gram_gradient(G, labels, tau), G)
    lam = jnp.linalg.eigvalsh(S)[0]
    n, d = H.shape
    gap = n * jnp.maximum(0.0, -lam) + jnp.abs(jnp.sum(S * G))
    rounding = slack_rounding_bound(n, d, tau, jnp.finfo(H.dtype).eps)
    return Certificate(lam, gap, jnp.zeros_like(lam), jnp.ones((), bool), rounding + 0 * lam)


class SlackExtremes(NamedTuple):
    """Smallest Ritz pair of ``S`` from ``num_iter`` Lanczos steps and the certificate's gap bound."""

    lambda_min: jax.Array  # smallest Ritz value (>= lambda_min(S))
    residual: jax.Array  # |S u - theta u| of its Ritz vector u
    vector: jax.Array  # (n,) the Ritz vector
    gap_bound: jax.Array  # n max(0, -lambda_min) + |<S, G>|


def slack_extremes(H, labels, tau, key, block: int = streaming.DEFAULT_BLOCK, num_iter: int = LANCZOS_STEPS):
    """Lanczos on ``v -> S v`` (streaming sweeps, no ``n x n`` array) at one ``H`` (traced, no checks)."""
    n = H.shape[0]
    num_iter = min(num_iter, n)  # S is n x n: more steps exhaust the Krylov space
    op = streaming.slack_operator(H, labels, tau, block)
    v0 = jax.random.normal(key, (n,), H.dtype)
    result = linalg.lanczos(lambda v: streaming.slack_matvec(op, v, tau, n, block), v0, num_iter, key=key)
    theta, vectors, residual = linalg.ritz(result)
    lam = theta[0]
    return SlackExtremes(lam, residual[0], vectors[0], n * jnp.maximum(0.0, -lam) + jnp.abs(op.inner_SG))


def matrix_free(H, labels, tau, key, block: int = streaming.DEFAULT_BLOCK) -> Certificate:
    """The certificate of one ``H`` by Lanczos on the streaming ``S v`` (traced, no checks)."""
    out = slack_extremes(H, labels, tau, key, block, LANCZOS_STEPS)
    n, d = H.shape
    exact = jnp.asarray(n <= LANCZOS_STEPS)  # n steps span the whole space
    rounding = slack_rounding_bound(n, d, tau, jnp.finfo(H.dtype).eps) + 0 * out.lambda_min
    return Certificate(out.lambda_min, out.gap_bound, out.residual, exact, rounding)


def of_point(H, labels, tau, *, stream: bool, key=None, block: int = streaming.DEFAULT_BLOCK) -> Certificate:
    """The certificate of one ``H`` on the path ``streaming.choose`` picked; traced, no checks."""
    if stream:
        return matrix_free(H, labels, tau, jax.random.key(0) if key is None else key, block)
    return dense(H, labels, tau)


def linear_gap_bound(H, labels, tau, G_star):
    r"""``(<F, G - G*>, its rounding bound)``: the convexity bound on ``L(H) - f(G*)``.

    ``f(G*) <= f(G) + <F, G* - G>`` for the convex ``f``, so ``L(H) - f(G*) <=
    <F, G - G*> = <S, G> - <S, G*>`` exactly, for the computed ``G* = Y^T M* Y``
    (a feasible point: unit diagonal, PSD) whose value is the computed ``L*``.
    Near a collapsed optimum both ``F`` and ``G - G*`` are small, so the bound
    is second order where ``n max(0, -lambda_min(S))`` is first order.
    Rounding: ``F`` carries the softmax's relative error ``delta_P``
    (``slack_rounding_bound``), ``G`` ``d eps``, the sum ``n^2 eps``.
    One ``H`` ``(n, d)`` (rows normalised), ``G*`` ``(n, n)``; traced, no checks.
    """
    H = oblique.normalize_rows(H)
    n, d = H.shape
    eps = jnp.finfo(H.dtype).eps
    G = H @ H.T
    F = loss.gram_gradient(G, labels, tau)
    terms = F * (G - G_star)
    delta_p = eps * ((3 * d + 5) / tau + n + 2 * math.log(n) + 2)
    rounding = (delta_p + n * n * eps) * jnp.sum(jnp.abs(terms)) + d * eps * jnp.sum(jnp.abs(F))
    return jnp.sum(terms), rounding


@functools.partial(jax.jit, static_argnames="stream")
def _certificate_batch(H, labels, tau, stream):
    def one(h):
        return of_point(h, labels, tau, stream=stream)

    return one(H) if H.ndim == 2 else jax.vmap(one)(H)


def certificate_details(H, labels, tau, *, streaming_mode: str = "auto") -> Certificate:
    """The ``Certificate`` of ``H`` ``(n, d)`` or ``(runs, n, d)`` with the path it took (``exact``).

    ``streaming_mode``: ``"auto"`` streams above ``streaming.use_streaming``
    (``runs * n^2 > 4096^2``), where ``lambda_min`` is a Lanczos estimate
    (``LANCZOS_STEPS`` steps, exact when ``n <= LANCZOS_STEPS``); ``"never"``
    always builds ``S``; ``"always"`` never does. Computed in ``H``'s dtype.
    """
    shape = np.shape(H)
    if len(shape) not in (2, 3):
        raise ValueError(f"H must have shape (n, d) or (runs, n, d), got {shape}")
    problems.check_loss_inputs(np.empty(shape[-2:]), labels, tau, "sum")
    stream = streaming.choose(streaming_mode, shape[-2], runs=shape[0] if len(shape) == 3 else 1)
    return _certificate_batch(jnp.asarray(H), jnp.asarray(labels), tau, stream)


def certificate(H, labels, tau):
    """Certificate of global optimality ``(lambda_min(S), gap_bound)`` (docs/maths.md §2, §5).

    ``S = F - Diag((F G)_ii)`` at ``G = H H^T`` (rows normalised first) with
    ``F`` the symmetric gradient of the sum-form loss in ``G``. ``H`` is a
    global minimiser iff ``S H = 0`` and ``S`` is PSD, and always
    ``L(H) - L* <= gap_bound = n max(0, -lambda_min(S)) + |<S, G>|``.

    ``H`` is ``(n, d)`` or batched ``(runs, n, d)``; the outputs then have a
    leading runs axis. Computed in ``H``'s dtype; pass float64 for decisions.
    Above ``streaming.use_streaming`` (``runs * n^2 > 4096^2``) ``S`` is never
    built and ``lambda_min(S)`` is a Lanczos estimate; ``certificate_details``
    says which (``exact``) and gives the Lanczos residual.
    """
    out = certificate_details(H, labels, tau)
    return out.lambda_min, out.gap_bound


@functools.partial(jax.jit, static_argnames=("block", "num_iter"))
def _slack_extremes_jit(H, labels, tau, key, block, num_iter):
    if H.ndim == 2:
        return slack_extremes(H, labels, tau, key, block, num_iter)
    keys = jax.random.split(key, H.shape[0])
    return jax.vmap(slack_extremes, in_axes=(0, None, None, 0, None, None))(
        H, labels, tau, keys, block, num_iter
    )


def dual_slack_extremes(
    H, labels, tau, *, block: int = streaming.DEFAULT_BLOCK, num_iter: int = LANCZOS_STEPS, key=None
) -> SlackExtremes:
    """Smallest eigenvalue of the dual slack ``S`` by matrix-free Lanczos, with residual and gap bound.

    ``num_iter`` products ``S v`` (capped at ``n``), each one streaming sweep.
    ``H`` ``(n, d)`` or ``(runs, n, d)`` (one key split over runs); rows are
    normalised first. Pass float64 for decisions.
    """
    shape = np.shape(H)
    if len(shape) not in (2, 3):
        raise ValueError(f"H must have shape (n, d) or (runs, n, d), got {shape}")
    problems.check_loss_inputs(np.empty(shape[-2:]), labels, tau, "sum")
    problems.check_integer("block", block)
    problems.check_integer("num_iter", num_iter)
    key = jax.random.key(0) if key is None else key
    m = min(int(num_iter), shape[-2])  # (also capped inside; capping here keeps one jit key per n)
    return _slack_extremes_jit(jnp.asarray(H), jnp.asarray(labels), tau, key, int(block), m)


def certificate_streaming(
    H, labels, tau, *, block: int = streaming.DEFAULT_BLOCK, num_iter: int = LANCZOS_STEPS, key=None
):
    """Matrix-free ``certificate``: ``(lambda_min(S), gap_bound)``, ``O(n d + block^2)`` memory.

    ``lambda_min`` is Lanczos' smallest Ritz value (exact when ``num_iter >=
    n``; otherwise an upper bound that converges from above, see
    ``dual_slack_extremes`` for its residual). ``H`` ``(n, d)`` or ``(runs, n, d)``.
    """
    out = dual_slack_extremes(H, labels, tau, block=block, num_iter=num_iter, key=key)
    return out.lambda_min, out.gap_bound
