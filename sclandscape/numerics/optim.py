r"""Optimisers on ``OB(n, d)``: run status codes, Riemannian L-BFGS (one driver) and trust regions.

**Status.** Every run ends with a ``Status`` carried as data (converged,
max steps, non-finite, stalled), never an exception, so one failure cannot
abort a vmapped batch (optimistix's ``RESULTS`` with ``throw=False``).

**L-BFGS.** ``lbfgs_armijo`` is Riemannian L-BFGS as an optax
``GradientTransformationExtraArgs`` whose every update judges one evaluation
as the trial of an Armijo backtracking search; ``lbfgs_init`` /
``lbfgs_steps`` / ``lbfgs_minimise`` are the one driver loop around it (the
scan, its polish, the variants and the saddle catalogue all use it), with
the stopping rules and status of every run.

**Optimisers people train with.** ``optax_init`` / ``optax_steps`` run
optax's adam or sgd (``OPTIMIZERS``, ``optax_transform``) on the same
``f(rownormalise(x))``, the rows re-normalised after every step, with the same
stopping rules and status codes as the L-BFGS driver (``scan --optimizer``).

**Trust regions.** ``trust_region`` is the Riemannian trust-region method
with a truncated conjugate-gradient (Steihaug-Toint) inner solver (Absil,
Baker & Gallivan, "Trust-region methods on Riemannian manifolds", FoCM 2007;
the Manopt ``trustregions`` defaults). It is a pure function with bounded
``lax.while_loop``s, so it jit-compiles once and vmaps over runs. With the
exact Hessian it converges globally to second-order critical points and
locally quadratically (the tCG stopping rule ``|r_j| <= |r_0| min(|r_0|,
kappa)`` gives superlinear steps). ``block_preconditioner`` measures the
trust region in a block-Jacobi metric.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sclandscape.core import problems
from sclandscape.core.settings import Status
from sclandscape.numerics.linalg import inner as _inner
from sclandscape.numerics.oblique import (
    normalize_rows,
    project_tangent,
    retract,
    riemannian_gradient,
    riemannian_hvp,
)


def run_status(finite, converged, stalled, out_of_steps):
    """A run's ``Status`` from its tests, first match wins in that order; -1 while running (int32)."""
    return jnp.where(
        ~finite,
        Status.NON_FINITE,
        jnp.where(
            converged,
            Status.CONVERGED,
            jnp.where(stalled, Status.STALLED, jnp.where(out_of_steps, Status.MAX_STEPS, -1)),
        ),
    ).astype(jnp.int32)


# --------------------------------------------------------------------------
# First order: L-BFGS with a one-evaluation-per-step Armijo rule (an optax transformation)


class LBFGSArmijoState(NamedTuple):
    """State of ``lbfgs_armijo``: the last accepted point, the search direction and the memory."""

    x: jax.Array  # last accepted point (the anchor of the current line search)
    value: jax.Array
    grad: jax.Array
    direction: jax.Array
    step: jax.Array  # trial step along ``direction``
    s_mem: jax.Array  # (m, n, d) displacements, newest at (count - 1) % m
    y_mem: jax.Array  # (m, n, d) gradient differences
    rho_mem: jax.Array  # (m,) 1 / <s, y> (0 for an empty slot)
    count: jax.Array  # curvature pairs stored so far
    evals: jax.Array
    stalled: jax.Array  # the step collapsed with no memory left to reset


def lbfgs_armijo(memory_size: int = 10, c1: float = 1e-4, shrink: float = 0.5, min_step: float = 1e-10):
    """Riemannian L-BFGS on ``OB(n, d)`` as an ``optax.GradientTransformationExtraArgs``.

    Meant for ``f(H) = L(rownormalise(H))`` at unit-norm ``H``, where the
    Euclidean gradient *is* the Riemannian gradient and ``rownormalise(H + u)``
    is the retraction. Each ``update(grad, state, params, value=f(params))``
    judges the point it is given, ``params``, as the trial of a backtracking
    line search from the last accepted point ``x`` along ``direction``:

    - Armijo holds (``f <= f(x) + c1 t <g, dir> + slack``, ``slack`` = 8 ulp of
      ``|f(x)|`` so rounding cannot stall a float32 run): accept, store the
      curvature pair ``(s, y)`` when ``<s, y> > 0`` (ambient coordinates, the
      projection as vector transport), and take the two-loop direction,
      projected on the tangent space, with trial step 1;
    - otherwise shrink the step by ``shrink`` (a collapsed step resets the
      memory to a scaled gradient step; with no memory left, ``stalled``).

    The returned update is ``x + t dir - params``. One evaluation per update,
    with no inner loop, so under ``vmap`` no run waits for another's line
    search (optax's zoom search runs until the batch's slowest search ends:
    measured 22 gradient evaluations per step for 256 runs).
    """

    def init(params):
        m = memory_size
        zeros = jnp.zeros_like(params)
        mem = jnp.zeros((m,) + params.shape, params.dtype)
        f = jnp.asarray(jnp.inf, params.dtype)
        one = jnp.asarray(1.0, params.dtype)
        i0 = jnp.zeros((), jnp.int32)
        return LBFGSArmijoState(
            params, f, zeros, zeros, one, mem, mem, jnp.zeros((m,), params.dtype), i0, i0, jnp.zeros((), bool)
        )

    def two_loop(g, state):
        m = memory_size
        q = g
        alphas = []
        order = [(state.count - 1 - i) % m for i in range(m)]  # newest first
        for idx in order:
            a = state.rho_mem[idx] * _inner(state.s_mem[idx], q)
            q = q - a * state.y_mem[idx]
            alphas.append(a)
        newest = (state.count - 1) % m
        s, y = state.s_mem[newest], state.y_mem[newest]
        yy = _inner(y, y)
        gamma = jnp.where((state.count > 0) & (yy > 0), _inner(s, y) / jnp.where(yy > 0, yy, 1.0), 0.0)
        # No memory: a step of length at most 1 along -g (optax's capped first step).
        gamma = jnp.where(gamma > 0, gamma, 1.0 / jnp.maximum(jnp.linalg.norm(g), 1.0))
        r = gamma * q
        for idx, a in zip(reversed(order), reversed(alphas), strict=True):
            b = state.rho_mem[idx] * _inner(state.y_mem[idx], r)
            r = r + (a - b) * state.s_mem[idx]
        return -r

    def update(grad, state, params=None, *, value=None, **_):
        if params is None or value is None:
            raise ValueError("lbfgs_armijo needs params and value=f(params)")
        eps = jnp.finfo(params.dtype).eps
        first = state.evals == 0
        slack = 8 * eps * jnp.abs(jnp.where(jnp.isfinite(state.value), state.value, 0.0))
        slope = _inner(state.grad, state.direction)
        armijo = value <= state.value + c1 * state.step * slope + slack
        accept = first | (armijo & jnp.isfinite(value))

        # Accepted: new anchor, curvature pair, direction.
        s = params - state.x
        y = grad - state.grad
        sy = _inner(s, y)
        keep = accept & ~first & (sy > eps * jnp.sqrt(_inner(s, s) * _inner(y, y)))
        slot = state.count % memory_size
        # Write one slot (the old one back when nothing is stored): no copy of the whole memory.
        pushed = state._replace(
            s_mem=state.s_mem.at[slot].set(jnp.where(keep, s, state.s_mem[slot])),
            y_mem=state.y_mem.at[slot].set(jnp.where(keep, y, state.y_mem[slot])),
            rho_mem=state.rho_mem.at[slot].set(
                jnp.where(keep, 1.0 / jnp.where(keep, sy, 1.0), state.rho_mem[slot])
            ),
            count=state.count + keep,
        )
        direction = project_tangent(params, two_loop(grad, pushed))
        # A non-descent direction (rounding, or a stale memory) falls back to the gradient.
        descent = _inner(grad, direction) < 0
        fallback = -grad / jnp.maximum(jnp.linalg.norm(grad), 1.0)
        direction = jnp.where(descent, direction, fallback)

        # Rejected: shrink; a collapsed step restarts from a gradient step with empty memory.
        # (Both branches share the memory buffers, which ``pushed`` changed only when
        # accepting; only the small fields are selected.)
        t = state.step * shrink
        collapsed = t < min_step
        restart = ~accept & collapsed
        restart_dir = -state.grad / jnp.maximum(jnp.linalg.norm(state.grad), 1.0)
        pick = lambda a, r: jnp.where(accept, a, r)  # noqa: E731
        new = pushed._replace(
            x=pick(params, state.x),
            value=pick(value, state.value),
            grad=pick(grad, state.grad),
            direction=pick(direction, jnp.where(collapsed, restart_dir, state.direction)),
            step=pick(jnp.ones_like(t), jnp.where(collapsed, jnp.ones_like(t), t)),
            rho_mem=jnp.where(restart, jnp.zeros_like(pushed.rho_mem), pushed.rho_mem),
            count=jnp.where(restart, 0, pushed.count),
            stalled=restart & (state.count == 0),
            evals=state.evals + 1,
        )
        return new.x + new.step * new.direction - params, new

    return optax.GradientTransformationExtraArgs(init, update)


class LBFGSRun(NamedTuple):
    """One L-BFGS run on ``f(rownormalise(x))`` (a leading runs axis when vmapped)."""

    x: jax.Array  # the point evaluated next (a line-search trial); the last accepted one when finished
    opt_state: LBFGSArmijoState
    value: jax.Array  # at the last accepted point
    grad_norm: jax.Array  # Riemannian gradient norm there
    steps: jax.Array  # loss-and-gradient evaluations
    status: jax.Array  # -1 while running, else a Status
    mark: jax.Array  # gradient norm at the last halving
    since: jax.Array  # evaluations since then


def lbfgs_init(x, memory: int = 10) -> LBFGSRun:
    """A fresh run from ``x`` (unit rows)."""
    inf = jnp.asarray(jnp.inf, x.dtype)
    zero = jnp.zeros((), jnp.int32)
    state = lbfgs_armijo(memory_size=memory).init(x)
    return LBFGSRun(x, state, inf, inf, zero, -jnp.ones((), jnp.int32), inf, zero)


def _steps_while_running(step, run, num_steps: int):
    """``step`` applied ``num_steps`` times, or until the run has finished (``status >= 0``).

    ``step`` freezes a finished run, so stopping early changes no result; it
    saves the work: under ``vmap`` the loop runs while any run of the batch
    runs, so a batch whose runs all end at step 3 (``max_steps``, or converged)
    costs 3 evaluations, not ``num_steps``.
    """

    def body(carry):
        i, s = carry
        return i + 1, step(i, s)

    return jax.lax.while_loop(lambda c: (c[0] < num_steps) & (c[1].status < 0), body, (0, run))[1]


def lbfgs_steps(
    f,
    run: LBFGSRun,
    num_steps: int,
    *,
    tol,
    max_steps: int,
    memory: int = 10,
    patience: int = 0,
    patience_zone: float = 10.0,
) -> LBFGSRun:
    """Advance a run by ``num_steps`` evaluations of ``f(rownormalise(x))`` (frozen once finished).

    At a unit-norm ``x`` the Euclidean gradient of ``f(rownormalise(x))`` *is*
    the Riemannian gradient (the Jacobian of row normalisation is the tangent
    projection) and ``rownormalise(x + u)`` *is* the retraction. Every step
    costs one loss-and-gradient evaluation, in every run alike. A run ends
    ``CONVERGED`` when its gradient norm is ``<= tol``, or (``patience > 0``)
    when it is within ``patience_zone * tol`` and has not halved for
    ``patience`` evaluations (float32 rounding has stopped its progress);
    ``STALLED`` when the step collapses with no memory to reset; ``MAX_STEPS``
    after ``max_steps`` evaluations; ``NON_FINITE`` on a NaN or infinity.
    """
    cost = lambda x: f(normalize_rows(x))  # noqa: E731
    opt = lbfgs_armijo(memory_size=memory)

    def step(_, s: LBFGSRun):
        value, grad = jax.value_and_grad(cost)(s.x)
        updates, opt_state = opt.update(grad, s.opt_state, s.x, value=value)
        gnorm = jnp.linalg.norm(opt_state.grad)
        finite = jnp.isfinite(opt_state.value) & jnp.isfinite(gnorm)
        evals = s.steps + 1
        halved = gnorm <= s.mark / 2
        mark = jnp.where(halved, gnorm, s.mark)
        since = jnp.where(halved, 0, s.since + 1)
        stuck = (patience > 0) & (gnorm <= patience_zone * tol) & (since >= patience)
        status = run_status(finite, (gnorm <= tol) | stuck, opt_state.stalled, evals >= max_steps)
        x = jnp.where(status == -1, normalize_rows(s.x + updates), opt_state.x)
        # A finished run is frozen; its optimiser state may run on (never read again), so
        # the large L-BFGS memory is not copied by a select every step.
        running = s.status == -1
        keep = lambda new, old: jnp.where(running, new, old)  # noqa: E731
        return LBFGSRun(
            keep(x, s.x),
            opt_state,
            keep(opt_state.value, s.value),
            keep(gnorm, s.grad_norm),
            keep(evals, s.steps),
            keep(status, s.status),
            keep(mark, s.mark),
            keep(since, s.since),
        )

    return _steps_while_running(step, run, num_steps)


def lbfgs_minimise(f, x0, *, tol, max_steps: int, memory: int = 10, patience: int = 0) -> LBFGSRun:
    """Run ``lbfgs_steps`` from ``x0`` until the run ends (one evaluation per loop iteration)."""
    run = lbfgs_init(normalize_rows(x0), memory)
    return jax.lax.while_loop(
        lambda s: s.status < 0,
        lambda s: lbfgs_steps(f, s, 1, tol=tol, max_steps=max_steps, memory=memory, patience=patience),
        run,
    )


# --------------------------------------------------------------------------
# First order: the optimisers people train with (optax adam / sgd), projected on OB(n, d)


def optax_transform(name: str, learning_rate: float, momentum: float = 0.0):
    """``optax.adam(learning_rate)`` or ``optax.sgd(learning_rate, momentum)`` (heavy ball; none at 0)."""
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate, momentum=momentum if momentum > 0 else None)
    raise ValueError(f"optimizer must be 'adam' or 'sgd' here, got {name!r}")


class OptaxRun(NamedTuple):
    """One run of an optax optimiser on ``f(rownormalise(x))`` (a leading runs axis when vmapped).

    The fields shared with ``LBFGSRun`` (``x``, ``value``, ``grad_norm``,
    ``steps``, ``status``, ``mark``, ``since``) mean the same; ``x`` is the
    point evaluated last, frozen once the run ends.
    """

    x: jax.Array
    opt_state: optax.OptState
    value: jax.Array
    grad_norm: jax.Array
    steps: jax.Array
    status: jax.Array
    mark: jax.Array
    since: jax.Array


def optax_init(x, transform) -> OptaxRun:
    """A fresh run of the optax ``transform`` from ``x`` (unit rows)."""
    inf = jnp.asarray(jnp.inf, x.dtype)
    zero = jnp.zeros((), jnp.int32)
    return OptaxRun(x, transform.init(x), inf, inf, zero, -jnp.ones((), jnp.int32), inf, zero)


def optax_steps(
    f,
    run: OptaxRun,
    num_steps: int,
    transform,
    *,
    tol,
    max_steps: int,
    patience: int = 0,
    patience_zone: float = 10.0,
) -> OptaxRun:
    """Advance a run by ``num_steps`` evaluations of ``f(rownormalise(x))``, projected (frozen once finished).

    Each step evaluates the loss and its gradient at the unit-norm ``x`` (the
    Euclidean gradient of ``f(rownormalise(x))`` there *is* the Riemannian
    gradient), judges that point, and, while the run goes on, moves to
    ``rownormalise(x + u)`` with ``u`` the optax update (Adam's moments and
    SGD's momentum are kept in ambient coordinates: ``u`` mixes tangent vectors
    of past points, and the row normalisation retracts the step onto
    ``OB(n, d)``). Stopping rules and status exactly as ``lbfgs_steps``:
    ``CONVERGED`` at ``|grad| <= tol`` (or, ``patience > 0``, within
    ``patience_zone * tol`` without halving for ``patience`` evaluations),
    ``MAX_STEPS``, ``NON_FINITE``; an optax optimiser never ``STALLED``.
    """
    cost = lambda x: f(normalize_rows(x))  # noqa: E731

    def step(_, s: OptaxRun):
        value, grad = jax.value_and_grad(cost)(s.x)
        gnorm = jnp.linalg.norm(grad)
        finite = jnp.isfinite(value) & jnp.isfinite(gnorm)
        evals = s.steps + 1
        halved = gnorm <= s.mark / 2
        mark = jnp.where(halved, gnorm, s.mark)
        since = jnp.where(halved, 0, s.since + 1)
        stuck = (patience > 0) & (gnorm <= patience_zone * tol) & (since >= patience)
        status = run_status(finite, (gnorm <= tol) | stuck, False, evals >= max_steps)
        updates, opt_state = transform.update(grad, s.opt_state, s.x)
        x = jnp.where(status == -1, normalize_rows(s.x + updates), s.x)
        running = s.status == -1
        keep = lambda new, old: jnp.where(running, new, old)  # noqa: E731
        return OptaxRun(
            keep(x, s.x),
            jax.tree.map(keep, opt_state, s.opt_state),
            keep(value, s.value),
            keep(gnorm, s.grad_norm),
            keep(evals, s.steps),
            keep(status, s.status),
            keep(mark, s.mark),
            keep(since, s.since),
        )

    return _steps_while_running(step, run, num_steps)


# --------------------------------------------------------------------------
# Second order: Riemannian trust regions


@dataclasses.dataclass(frozen=True)
class TrustRegionSettings:
    """Tolerances and limits of ``trust_region`` (all explicit, recorded with results).

    Attributes:
      gtol: absolute bound on the Riemannian gradient's Frobenius norm (``trust_region``'s
        ``gtol`` argument overrides it, e.g. with a traced value).
      max_iter: outer iterations; max_inner: tCG steps per iteration (also capped at ``n(d-1)``).
      kappa, theta: tCG stopping rule ``|r_j| <= |r_0| min(|r_0|^theta, kappa)``.
      min_reduction: never ask tCG for a relative reduction below this (rounding noise).
      rho_prime: accept a step when actual/predicted decrease exceeds this.
      min_delta: ``STALLED`` when the radius falls below this.
      precondition: row-scaling preconditioner when no other is given.
    """

    gtol: float = 1e-10
    max_iter: int = 500
    max_inner: int = 1000
    kappa: float = 0.1
    theta: float = 1.0
    min_reduction: float = 1e-10
    rho_prime: float = 0.1
    min_delta: float = 1e-14
    precondition: bool = True

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("gtol", "kappa", "theta", "min_reduction", "min_delta"),
            nonnegative=("rho_prime",),
            integers={"max_iter": 1, "max_inner": 1},
        )


class TrustRegionResult(NamedTuple):
    x: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    iterations: jax.Array
    inner_iterations: jax.Array
    status: jax.Array


def _tcg(hess, precon, grad, delta, settings: TrustRegionSettings):
    """Preconditioned truncated CG for ``min <g,e> + 1/2 <e, Hess e>`` with ``|e|_{P^-1} <= delta``.

    Steihaug-Toint as in Manopt's ``tCG``: the trust region is measured in the
    norm of the inverse preconditioner; stopping uses the unpreconditioned
    residual. Returns ``(eta, Hess eta, hit_boundary, iterations)``.
    """
    # In exact arithmetic CG ends within dim(tangent space) steps; beyond that
    # only rounding is being chased (the target can sit below the HVP's noise).
    max_inner = min(settings.max_inner, grad.shape[-2] * (grad.shape[-1] - 1))
    norm_r0 = jnp.sqrt(_inner(grad, grad))
    # |r_j| <= |r_0| min(|r_0|^theta, kappa), but never asking for a relative
    # reduction below ``min_reduction``: past it the residual is rounding noise.
    reduction = jnp.maximum(jnp.minimum(norm_r0**settings.theta, settings.kappa), settings.min_reduction)
    target = norm_r0 * reduction
    zero = jnp.zeros_like(grad)
    z = precon(grad)
    z_r = _inner(z, grad)

    # state: eta, Heta, r, d, e_e, e_d, d_d, z_r, j, done, boundary
    init = (zero, zero, grad, -z, 0.0 * z_r, 0.0 * z_r, z_r, z_r, 0, norm_r0 == 0, False)

    def cond(s):
        return (~s[9]) & (s[8] < max_inner)

    def body(s):
        eta, Heta, r, d, e_e, e_d, d_d, z_r, j, _, _ = s
        Hd = hess(d)
        d_Hd = _inner(d, Hd)
        alpha = z_r / jnp.where(d_Hd == 0, 1.0, d_Hd)
        e_e_new = e_e + 2 * alpha * e_d + alpha**2 * d_d
        to_boundary = (d_Hd <= 0) | (e_e_new >= delta**2) | ~jnp.isfinite(d_Hd)
        # Step to the boundary along d: the positive root of |eta + t d|^2 = delta^2.
        disc = jnp.maximum(e_d**2 + d_d * (delta**2 - e_e), 0.0)
        t_b = (-e_d + jnp.sqrt(disc)) / jnp.where(d_d == 0, 1.0, d_d)
        step = jnp.where(to_boundary, t_b, alpha)
        eta_new = eta + step * d
        Heta_new = Heta + step * Hd
        r_new = r + alpha * Hd
        small = jnp.sqrt(_inner(r_new, r_new)) <= target
        z_new = precon(r_new)
        z_r_new = _inner(z_new, r_new)
        beta = z_r_new / jnp.where(z_r == 0, 1.0, z_r)
        d_new = -z_new + beta * d
        e_d_new = beta * (e_d + alpha * d_d)
        d_d_new = z_r_new + beta**2 * d_d
        return (
            eta_new,
            Heta_new,
            r_new,
            d_new,
            e_e_new,
            e_d_new,
            d_d_new,
            z_r_new,
            j + 1,
            to_boundary | small,
            to_boundary,
        )

    eta, Heta, *_, j, _, boundary = jax.lax.while_loop(cond, body, init)
    return eta, Heta, boundary, j


def _row_preconditioner(egrad, x):
    """Row scaling ``v_i / |<egrad_i, h_i>|``: the diagonal of the Hessian's curvature term.

    The Riemannian Hessian contains ``-diag(<egrad_i, h_i>) V``; dividing each
    row by that multiplier's size relative to the largest (floored at 1e-3, so
    the scaling lies in [1, 1e3] and the trust region keeps its scale) equalises
    the curvature of rows whose classes differ greatly in size. A row scaling
    keeps tangent vectors tangent and is symmetric positive definite.
    """
    mu = jnp.abs(jnp.sum(egrad * x, axis=-1, keepdims=True))
    top = jnp.max(mu)
    mu = jnp.where(top > 0, jnp.maximum(mu, 1e-3 * top) / jnp.where(top > 0, top, 1.0), 1.0)
    return lambda v: v / mu


def block_preconditioner(x, egrad, blocks, floor=1e-2):
    """Block-Jacobi preconditioner from the Euclidean Hessian's ``(n, d, d)`` row blocks.

    Row ``i``'s block of the Riemannian Hessian is ``Pr_i B_i Pr_i - <egrad_i,
    h_i> Pr_i`` on the tangent space ``h_i^perp`` (``Pr_i = I - h_i h_i^T``).
    Its eigenvalues are taken in absolute value, scaled by the largest over
    all rows and floored at ``floor``, so the preconditioner's inverse has its
    spectrum in ``[floor, 1]``: the trust region (measured in that norm) keeps
    its scale along the stiffest directions and stretches along flat ones.
    That is what a narrow curved valley needs (small ``tau``, where the
    within-class geometry is stiff and the class-level motion nearly flat).
    Symmetric positive definite on the tangent space.
    """
    d = x.shape[-1]
    proj = jnp.eye(d, dtype=x.dtype) - x[:, :, None] * x[:, None, :]
    mu = jnp.sum(egrad * x, axis=-1)
    B = proj @ blocks @ proj - mu[:, None, None] * proj
    w, U = jnp.linalg.eigh(B)
    # The normal direction h_i is an exact zero of the projected block; it is
    # projected out below, so its eigenvalue never matters.
    w = jnp.abs(w)
    top = jnp.max(w)
    w = jnp.where(top > 0, jnp.maximum(w / jnp.where(top > 0, top, 1.0), floor), 1.0)

    def apply(v):
        coeff = jnp.einsum("ide,id->ie", U, v) / w
        return project_tangent(x, jnp.einsum("ide,ie->id", U, coeff))

    return apply


def trust_region(
    cost,
    x0,
    settings: TrustRegionSettings = TrustRegionSettings(),
    gtol=None,
    delta_bar=None,
    preconditioner=None,
):
    """Minimise ``cost`` over ``OB(n, d)`` from ``x0`` by Riemannian trust regions.

    Args:
      cost: ``(n, d) -> scalar``, a JAX-traceable Euclidean cost.
      x0: ``(n, d)`` starting point (rows are normalised first).
      settings: tolerances and limits.
      gtol: gradient tolerance overriding ``settings.gtol`` (may be traced,
        e.g. relative to a problem's gradient scale).
      delta_bar: largest trust radius (default ``sqrt(n) * pi / 2``, the
        diameter scale of ``OB``); the initial radius is ``delta_bar / 8``.
      preconditioner: ``(x, egrad) -> (v -> P v)``, a symmetric positive
        definite map on the tangent space at ``x`` (e.g. ``block_preconditioner``);
        default: the row scaling ``_row_preconditioner`` when
        ``settings.precondition``, else none.

    Returns a ``TrustRegionResult`` (point, value, Riemannian gradient norm,
    outer and total inner iterations, ``Status`` code). Pure and jit/vmap-safe.
    """
    x0 = normalize_rows(x0)
    if delta_bar is None:
        delta_bar = jnp.sqrt(x0.shape[0]) * jnp.pi / 2
    egrad_fn = jax.grad(cost)
    gtol = settings.gtol if gtol is None else gtol

    def evaluate(x):
        f, eg = jax.value_and_grad(cost)(x)
        return f, riemannian_gradient(x, eg), eg

    f0, g0, eg0 = evaluate(x0)
    dtype = x0.dtype
    eps = jnp.finfo(dtype).eps

    def status_of(f, g, it, delta):
        gnorm = jnp.linalg.norm(g)
        finite = jnp.isfinite(f) & jnp.isfinite(gnorm)
        return run_status(finite, gnorm <= gtol, delta < settings.min_delta, it >= settings.max_iter)

    delta0 = jnp.asarray(delta_bar / 8, dtype)
    # state: x, f, Riemannian gradient, Euclidean gradient (for the preconditioner), delta, ...
    init = (x0, f0, g0, eg0, delta0, 0, 0, status_of(f0, g0, 0, delta0))

    def cond(s):
        return s[7] < 0

    def body(s):
        x, f, g, eg, delta, it, inner, _ = s
        hess = lambda v: riemannian_hvp(egrad_fn, x, v)  # noqa: E731
        if preconditioner is not None:
            precon = preconditioner(x, eg)
        elif settings.precondition:
            precon = _row_preconditioner(eg, x)
        else:
            precon = lambda v: v  # noqa: E731
        eta, Heta, boundary, j = _tcg(hess, precon, g, delta, settings)
        eta = project_tangent(x, eta)
        x_new = retract(x, eta)
        f_new, g_new, eg_new = evaluate(x_new)
        reg = jnp.maximum(1.0, jnp.abs(f)) * eps * 1e3
        num = f - f_new + reg
        den = -(_inner(g, eta) + 0.5 * _inner(eta, Heta)) + reg
        rho = num / den
        model_ok = (den >= 0) & jnp.isfinite(rho) & jnp.isfinite(f_new)
        shrink = (rho < 0.25) | ~model_ok
        grow = (rho > 0.75) & boundary & model_ok
        delta_new = jnp.where(shrink, delta / 4, jnp.where(grow, jnp.minimum(2 * delta, delta_bar), delta))
        accept = model_ok & (rho > settings.rho_prime)
        x = jnp.where(accept, x_new, x)
        f = jnp.where(accept, f_new, f)
        g = jnp.where(accept, g_new, g)
        eg = jnp.where(accept, eg_new, eg)
        return (x, f, g, eg, delta_new, it + 1, inner + j, status_of(f, g, it + 1, delta_new))

    x, f, g, _, _, it, inner, status = jax.lax.while_loop(cond, body, init)
    return TrustRegionResult(x, f, jnp.linalg.norm(g), it, inner, status)
