"""Pseudo-arclength continuation through a fold: the bordered Newton corrector and the path that turns.

Natural continuation in ``tau`` (``continuation``) fails at a fold, where the
Hessian becomes singular along the branch's tangent. Here the unknowns are
``(H, tau)`` and the step is a length ``ds`` along the path: the bordered
system (``bordered``: the Hessian on the symmetry orbit's complement, the
``tau``-derivative of the gradient, the tangent) stays invertible at the fold,
so ``follow_arclength`` walks through it and onto the partner branch, and
``refine_turn`` locates the turning point between converged points.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.explore import continuation
from sclandscape.numerics import loss, oblique
from sclandscape.theory import hessian


class Bordered(NamedTuple):
    """The bordered (pseudo-arclength) system at one point ``(H, tau)`` (float64, NumPy arrays).

    With ``A'`` the Hessian on the orbit complement (``_complement``), ``r = d_tau grad``
    and ``(c, c_tau)`` the previous tangent (``c`` carried to this tangent space)::

        J = [[A', P r], [c^T, c_tau]]

    is invertible at a regular point *and* at a simple fold (``v . r != 0`` for the
    null vector ``v`` of ``A'``). ``newton`` / ``newton_tau``: ``J [y; t] = -[P g; 0]``
    (a corrector increment orthogonal to the tangent); ``tangent`` / ``tangent_tau``:
    ``J [y; t] = [0; 1]``, normalised (``|y|^2 + t^2 = 1``), which keeps the
    orientation (its product with the previous tangent is positive).
    """

    loss: np.ndarray
    grad_norm: np.ndarray
    grad_rounding: np.ndarray
    eigs: np.ndarray
    bound: np.ndarray
    index: np.ndarray
    lambda_crit: np.ndarray
    newton: np.ndarray
    newton_tau: np.ndarray
    tangent: np.ndarray
    tangent_tau: np.ndarray


def _bordered_one(H, labels, tau, c_amb, c_tau):
    H = oblique.normalize_rows(H)
    n, d = H.shape
    N = n * (d - 1)
    value = loss.sum_loss(H, labels, tau)
    grad, dgrad = jax.jvp(
        lambda t: continuation.riemannian_gradient(H, labels, t), (tau,), (jnp.ones_like(tau),)
    )
    M, U, P, A, w, V, complement = continuation.orbit_complement(H, labels, tau)
    bound = hessian.hessian_rounding_bound(H, labels, tau, M, hessian.hessian_matrix(H, labels, tau, True))
    g = P @ oblique.to_coordinates(U, grad).reshape(N)
    r = P @ oblique.to_coordinates(U, dgrad).reshape(N)
    c = P @ oblique.to_coordinates(U, c_amb).reshape(N)
    J = jnp.block([[A, r[:, None]], [c[None, :], jnp.reshape(c_tau, (1, 1))]])
    rhs = jnp.stack(
        [jnp.concatenate([-g, jnp.zeros(1, H.dtype)]), jnp.zeros(N + 1, H.dtype).at[N].set(1.0)], 1
    )
    sol = jnp.linalg.solve(J, rhs)
    t = sol[:, 1] / jnp.linalg.norm(sol[:, 1])
    i_crit = continuation.critical_mode(w, V, complement, V.T @ r)
    amb = lambda y: oblique.to_ambient(U, y.reshape(n, d - 1))  # noqa: E731
    return (
        value,
        jnp.linalg.norm(grad),
        loss.gradient_rounding_bound(H, labels, tau),
        jnp.where(complement, w, jnp.inf),
        bound,
        jnp.sum(complement & (w < -bound)),
        w[i_crit],
        amb(sol[:N, 0]),
        sol[N, 0],
        amb(t[:N]),
        t[N],
    )


@jax.jit
def _bordered(H, labels, tau, c_amb, c_tau):
    return _bordered_one(H, labels, tau, c_amb, c_tau)


def bordered(H, labels, tau, c, c_tau) -> Bordered:
    """``Bordered`` at ``(H, tau)`` with the previous tangent ``(c, c_tau)`` (``c`` ``(n, d)``)."""
    with precision.float64(), precision.float64_placement():
        out = _bordered(
            jnp.asarray(H, jnp.float64),
            jnp.asarray(labels),
            jnp.asarray(float(tau), jnp.float64),
            jnp.asarray(c, jnp.float64),
            jnp.asarray(float(c_tau), jnp.float64),
        )
        return Bordered(*(np.asarray(a) for a in out))


def _retract(H, V):
    with precision.float64(), precision.float64_placement():
        return np.asarray(oblique.retract(jnp.asarray(H, jnp.float64), jnp.asarray(V, jnp.float64)))


@dataclasses.dataclass(frozen=True)
class ArclengthSettings:
    """Step control of ``follow_arclength`` (frozen, recorded with results).

    The arclength ``s`` is measured in ``(H, tau)`` with the Frobenius norm on ``H``
    (``ds^2 = |dH|^2 + dtau^2``).

    Attributes:
      ds: the first step; ``max_ds`` the largest; ``min_ds``: give up below it.
      grow: an accepted step that took at most 3 Newton iterations grows by this.
      max_turn: the largest angle (radians) between consecutive tangents.
      contraction: the corrector may move the predictor by at most this times ``ds``.
      newton_iter: Newton iterations of the bordered corrector.
      gtol: the gradient a corrected point must reach, raised to twice the
        gradient's rounding bound where float64 cannot resolve it.
      max_points: the most accepted points.
      refine_iter: secant/bisection steps that put ``dtau/ds = 0`` (the fold) between
        two converged points.
    """

    ds: float = 1e-4
    max_ds: float = 2e-2
    min_ds: float = 1e-9
    grow: float = 2.0
    max_turn: float = 0.3
    contraction: float = 0.5
    newton_iter: int = 10
    gtol: float = 1e-10
    max_points: int = 200
    refine_iter: int = 30

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("ds", "max_ds", "min_ds", "grow", "max_turn", "contraction", "gtol"),
            integers={"newton_iter": 1, "max_points": 2, "refine_iter": 0},
        )
        if not self.min_ds <= self.ds <= self.max_ds:
            raise ValueError(
                f"need min_ds <= ds <= max_ds, got {self.min_ds!r}, {self.ds!r}, {self.max_ds!r}"
            )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class ArcPoint(NamedTuple):
    """A converged point of the arclength path and its ``Bordered`` analysis (tangent included)."""

    H: np.ndarray
    tau: float
    s: float
    b: Bordered


def arc_correct(H, tau, c, c_tau, labels, settings: ArclengthSettings, ds: float):
    """Newton on the bordered system from the predictor ``(H, tau)``, increments orthogonal to ``(c, c_tau)``.

    Returns ``(H, tau, Bordered, iterations)`` of the converged point, or ``None``
    (no convergence in ``newton_iter``, or the corrector moved by more than
    ``contraction * ds``: it left the branch).
    """
    H0 = np.asarray(H, np.float64)
    for it in range(settings.newton_iter + 1):
        b = bordered(H, labels, tau, c, c_tau)
        if not np.isfinite(b.grad_norm):
            return None
        if float(b.grad_norm) <= max(settings.gtol, 2.0 * float(b.grad_rounding)):
            return H, tau, b, it
        if it == settings.newton_iter:
            return None
        H, tau = _retract(H, b.newton), tau + float(b.newton_tau)
        if continuation.rotation_distance(H, H0) > settings.contraction * ds + 1e-12:
            return None
    return None


def arc_step(p: ArcPoint, labels, ds: float, settings: ArclengthSettings) -> tuple[ArcPoint | None, int]:
    """One predictor-corrector step of length ``ds`` along the tangent of ``p``."""
    H_pred = _retract(p.H, ds * p.b.tangent)
    tau_pred = p.tau + ds * float(p.b.tangent_tau)
    if tau_pred <= 0:
        return None, 0
    out = arc_correct(H_pred, tau_pred, p.b.tangent, float(p.b.tangent_tau), labels, settings, ds)
    if out is None:
        return None, settings.newton_iter
    H, tau, b, it = out
    # The tangent turns by at most max_turn (cos of the angle: the carried tangents' product).
    c = float(np.sum(b.tangent * p.b.tangent) + b.tangent_tau * p.b.tangent_tau)
    if c < math.cos(settings.max_turn):
        return None, it
    return ArcPoint(H, float(tau), p.s + ds, b), it


def arc_start(H, labels, tau, direction: float, settings: ArclengthSettings) -> ArcPoint:
    """The first point of a path: ``(H, tau)`` corrected, its tangent oriented along ``direction`` in tau."""
    # With c = 0, c_tau = 1 the tangent solves A' y = -P r: the natural tangent (dH/dtau, 1).
    out = arc_correct(H, tau, np.zeros_like(np.asarray(H, np.float64)), 1.0, labels, settings, math.inf)
    if out is None:
        raise ValueError(f"the bordered corrector did not converge at the start (tau={tau:g})")
    H, tau, b, _ = out
    sign = 1.0 if float(b.tangent_tau) * direction > 0 else -1.0
    return ArcPoint(
        H, float(tau), 0.0, b._replace(tangent=sign * b.tangent, tangent_tau=sign * b.tangent_tau)
    )


def _arc_record(p: ArcPoint) -> dict:
    eigs = np.asarray(p.b.eigs)
    return {
        "s": p.s,
        "tau": p.tau,
        "loss": float(p.b.loss),
        "grad_norm": float(p.b.grad_norm),
        "index": int(p.b.index),
        "lambda_min": float(np.min(eigs)) if eigs.size else math.nan,
        "lambda_crit": float(p.b.lambda_crit),
        "dtau_ds": float(p.b.tangent_tau),
        "newton_norm": float(math.hypot(np.linalg.norm(p.b.newton), float(p.b.newton_tau))),
        # |dH/dtau| along the branch: |t_H| / |t_tau| (diverges as (tau_c - tau)^(-1/2) at a fold).
        "dH_dtau": float(
            math.sqrt(max(0.0, 1.0 - float(p.b.tangent_tau) ** 2)) / max(abs(float(p.b.tangent_tau)), 1e-300)
        ),
    }


def refine_turn(a: ArcPoint, b_s: float, labels, settings: ArclengthSettings) -> dict:
    """Put the fold (``dtau/ds = 0``) between converged points: secant/bisection on the step from ``a``.

    ``a``'s ``dtau/ds`` and that of the converged point ``b_s`` further along have
    opposite signs. Each trial is a corrector step of length ``h in (0, b_s - a.s)``
    from ``a``. Near the vertex ``tau(s) = tau_c - kappa (s - s_c)^2 / 2``, so
    ``dtau/ds = -kappa (s - s_c)`` and the closest converged point ``p`` has
    ``tau_c = tau_p + (dtau/ds)_p^2 / (2 kappa)``; ``kappa`` from the two
    points that straddle the vertex. Returns the straddling points (``lo`` before the
    vertex, ``hi`` after), ``tau_c`` and the size of its quadratic correction.
    """
    lo_h, hi_h = 0.0, b_s - a.s
    f_lo = float(a.b.tangent_tau)
    lo_p, hi_p = a, None
    for _ in range(settings.refine_iter):
        h = 0.5 * (lo_h + hi_h)
        p, _ = arc_step(a, labels, h, settings)
        if p is None:  # cannot be reached from a in one step: shorten
            hi_h = h
            continue
        f = float(p.b.tangent_tau)
        if f * f_lo > 0:
            lo_h, lo_p = h, p
        else:
            hi_h, hi_p = h, p
        if hi_p is not None and (hi_h - lo_h) < 1e-3 * (b_s - a.s) and abs(f) < 1e-6:
            break
    return {"lo": lo_p, "hi": hi_p}


def follow_arclength(
    H0,
    labels,
    tau0: float,
    settings: ArclengthSettings = ArclengthSettings(),
    *,
    direction: float = 1.0,
    tau_stop: float | None = None,
    after_turn: int | None = None,
) -> dict:
    """Follow the branch of critical points through ``(H0, tau0)`` in arclength (pseudo-arclength).

    Predictor along the tangent of the bordered system, corrector Newton on it
    (``arc_correct``), step halved on failure and grown after an easy step. A fold
    (``dtau/ds`` changes sign) is refined (``refine_turn``) and the path goes on
    past it on the other sheet (at a fold of a minimum: the index-1 partner) until
    ``tau`` returns to ``tau_stop`` (default ``tau0``), or for ``after_turn`` more points.

    Returns ``{"points": [ArcPoint], "records": [...], "turns": [...], "index_changes": [...],
    "stopped": reason}``: ``turns`` lists each fold's straddling points; ``index_changes``
    the consecutive points whose index differs without a turn between them (a crossing).
    """
    problems.check_points(H0, labels, tau0)
    if np.ndim(H0) != 2:
        raise ValueError(f"H0 must be one point (n, d), got shape {np.shape(H0)}")
    if not isinstance(settings, ArclengthSettings):
        raise ValueError(f"settings must be an ArclengthSettings, got {type(settings).__name__}")
    labels = problems.check_labels(labels)
    tau0 = problems.check_tau(tau0)
    tau_stop = tau0 if tau_stop is None else float(tau_stop)
    p = arc_start(np.asarray(H0, np.float64), labels, tau0, direction, settings)
    points, turns, changes = [p], [], []
    ds, left = settings.ds, None
    stopped = "max_points"
    while len(points) < settings.max_points:
        q, it = arc_step(p, labels, ds, settings)
        if q is None:
            ds *= 0.5
            if ds < settings.min_ds:
                stopped = "min_ds"
                break
            continue
        if float(q.b.tangent_tau) * float(p.b.tangent_tau) < 0:
            refined = refine_turn(p, q.s, labels, settings)
            lo, hi = refined["lo"], refined["hi"] or q
            turns.append({"before": p, "lo": lo, "hi": hi, "after": q})
            if left is None:
                left = settings.max_points if after_turn is None else after_turn
        elif int(q.b.index) != int(p.b.index):
            changes.append((p, q))
        points.append(q)
        p = q
        if it <= 3:
            ds = min(settings.max_ds, ds * settings.grow)
        if left is not None:
            left -= 1
            back = direction * (tau_stop - p.tau) >= 0
            if back or left <= 0:
                stopped = "returned" if back else "after_turn"
                break
    return {
        "points": points,
        "records": [_arc_record(x) for x in points],
        "turns": turns,
        "index_changes": changes,
        "stopped": stopped,
    }
