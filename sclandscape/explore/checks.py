r"""Taylor-remainder checks of a user's gradient and Hessian on ``OB(n, d)`` (as Manopt's / Pymanopt's).

For a cost ``f`` on ``OB(n, d)``, a point ``x``, a unit tangent direction ``u``
and the retraction ``R_x(t u) = rownormalise(x + t u)`` (second order), Taylor's
theorem along the curve ``c(t) = R_x(t u)`` gives::

    E_1(t) = |f(R_x(t u)) - f(x) - t <grad f(x), u>|                      = O(t^2)
    E_2(t) = |f(R_x(t u)) - f(x) - t <grad f(x), u> - t^2/2 <Hess f(x)[u], u>| = O(t^3)

(the second needs ``c''(0)`` normal to the manifold, which holds for a
second-order retraction such as the metric projection used here). On a
log-log plot of ``E`` against ``t`` the correct model shows a straight piece
of slope 2 (gradient) or 3 (Hessian) between the range where higher orders
dominate (large ``t``) and the range where rounding does (small ``t``). A
wrong gradient leaves a term ``t <g_true - g, u>``: slope 1; a wrong Hessian
leaves ``t^2/2 <(Hess_true - Hess) u, u>``: slope 2.

**Verdict.** ``slope`` is the least-squares slope of the straightest window of
``WINDOW`` consecutive step sizes (the one with the smallest fit residual)
among the points above the rounding floor; the check passes when ``|slope -
expected| < 0.5``. Derivation: a correct model gives ``expected`` and any
error in the model gives at most ``expected - 1`` (the two hypotheses the
check separates), so the midpoint is the threshold with the widest margin on
both sides. Points with ``E(t) <= FLOOR_FACTOR * eps * max(1, |f(x)|)`` are
rounding noise and excluded: ``E`` is a difference of a handful of values of
``f`` each carrying an error of a few ``eps |f|``, so above ``1000 eps |f|``
rounding moves ``log10 E`` by less than ``0.005`` and a fitted slope over a
window of more than one decade by less than ``0.01``. When every point is
below the floor the model is exact to rounding (``exact``, passed).

The checks also report what the slope cannot see: whether the gradient is
tangent (``tangent_error = |g - Proj_x g| / |g|``), and for the Hessian whether
it is symmetric (``symmetry_error = |<H u, v> - <u, H v>| / (|H u| |v| + |u|
|H v|)`` for two random tangent ``u, v``) and tangent.

Everything runs in float64 (``precision.float64()``), whatever the global
flag: a float32 remainder reaches its rounding floor within two decades.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.numerics import oblique

#: Step sizes ``t``: 51 points from 1e-8 to 1, as Manopt's ``checkgradient``.
STEPS = np.logspace(-8, 0, 51)
#: Consecutive step sizes in a fitted window (1.6 decades of ``t`` at ``STEPS``' spacing).
WINDOW = 10
#: Rounding floor of the remainder, in units of ``eps * max(1, |f(x)|)`` (module docstring).
FLOOR_FACTOR = 1000.0
#: ``|slope - expected|`` below which a check passes (module docstring: midpoint of 1).
SLOPE_MARGIN = 0.5


@dataclasses.dataclass(frozen=True)
class TaylorCheck:
    """The result of ``check_gradient`` / ``check_hessian``.

    Attributes:
      passed: the verdict (``|slope - expected| < 0.5``, or ``exact``, and tangent / symmetric).
      slope: fitted log-log slope of the remainder (NaN when ``exact`` or undetermined).
      expected: 2 (gradient) or 3 (Hessian).
      steps, errors: ``t`` and the remainder ``E(t)`` (float64 arrays).
      window: ``(first, last)`` indices into ``steps`` of the fitted piece (``None`` if none).
      floor: the rounding floor below which points were ignored.
      exact: every remainder is below the floor (the model is exact to rounding).
      tangent_error: ``|g - Proj g| / |g|`` (gradient) or ``|Hu - Proj Hu| / |Hu|`` (Hessian).
      symmetry_error: ``check_hessian`` only (NaN for the gradient).
      message: one line saying what was found.

    ``sclandscape.drawing.tools.taylor_figure`` draws it (``sc.taylor_figure``).
    """

    passed: bool
    slope: float
    expected: int
    steps: np.ndarray
    errors: np.ndarray
    window: tuple[int, int] | None
    floor: float
    exact: bool
    tangent_error: float
    symmetry_error: float
    message: str


# Tangency and symmetry are exact properties; their errors are rounding, ~ eps times the few
# operations of a projection or an inner product. 1e-8 sits far above float64's ~1e-15 and far
# below any real defect (a missing projection is an O(1) relative error).
EXACT_RTOL = 1e-8


def _point(point) -> jax.Array:
    problems.check_points(point)
    if np.ndim(point) != 2:
        raise ValueError(f"point must be one (n, d) configuration, got shape {np.shape(point)}")
    return oblique.normalize_rows(jnp.asarray(point, jnp.float64))


def _direction(x, direction, key, salt: int):
    if direction is None:
        key = jax.random.key(0) if key is None else key
        direction = jax.random.normal(jax.random.fold_in(key, salt), x.shape, jnp.float64)
    elif np.shape(direction) != x.shape:
        raise ValueError(f"direction must have the point's shape {x.shape}, got {np.shape(direction)}")
    given = jnp.asarray(direction, jnp.float64)
    u = oblique.project_tangent(x, given)
    norm = float(jnp.linalg.norm(u))
    if not math.isfinite(norm) or not norm > EXACT_RTOL * float(jnp.linalg.norm(given)):
        raise ValueError("direction has no tangent component at the point")
    return u / norm


def _steps(steps) -> np.ndarray:
    t = STEPS if steps is None else np.asarray(steps, np.float64).reshape(-1)
    if t.size < WINDOW or not np.all(np.isfinite(t)) or np.any(t <= 0) or np.any(np.diff(t) <= 0):
        raise ValueError(f"steps must be at least {WINDOW} increasing positive step sizes")
    return t


def _value(cost, x) -> float:
    value = cost(x)
    if np.ndim(value) != 0:
        raise ValueError(f"cost must return a scalar, got shape {np.shape(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("cost is not finite at the point")
    return value


def _vector(fn, what: str, shape, *args) -> jax.Array:
    out = jnp.asarray(fn(*args), jnp.float64)
    if out.shape != shape:
        raise ValueError(f"{what} must return an array of shape {shape}, got {out.shape}")
    if not bool(jnp.all(jnp.isfinite(out))):
        raise ValueError(f"{what} is not finite at the point")
    return out


def _fit(steps, errors, floor):
    """``(slope, window)`` of the straightest window above ``floor``; ``(nan, None)`` if none fits."""
    logt, loge = np.log10(steps), np.log10(np.maximum(errors, np.finfo(float).tiny))
    above = errors > floor
    best = (math.inf, math.nan, None)
    for i in range(steps.size - WINDOW + 1):
        j = i + WINDOW
        if not above[i:j].all():
            continue
        slope, intercept = np.polyfit(logt[i:j], loge[i:j], 1)
        residual = float(np.sum((loge[i:j] - (slope * logt[i:j] + intercept)) ** 2))
        if residual < best[0]:
            best = (residual, float(slope), (i, j - 1))
    return best[1], best[2]


def _verdict(steps, errors, value, expected, what, extra_ok, extra_msg):
    floor = FLOOR_FACTOR * np.finfo(np.float64).eps * max(1.0, abs(value))
    exact = bool(np.all(errors <= floor))
    slope, window = (math.nan, None) if exact else _fit(steps, errors, floor)
    if exact:
        ok, msg = True, f"the {what} model is exact to rounding along this direction"
    elif window is None:
        ok, msg = False, f"no {WINDOW} consecutive step sizes have a remainder above the rounding floor"
    else:
        ok = abs(slope - expected) < SLOPE_MARGIN
        msg = f"{what} remainder slope {slope:.3f} (expected {expected})"
        if not ok:
            msg += f": the {what} is wrong" + (" (slope ~1: wrong gradient)" if slope < 1.5 else "")
    passed = bool(ok and extra_ok)
    if extra_msg:
        msg += "; " + extra_msg
    return floor, exact, slope, window, passed, msg


def check_gradient(cost, point, gradient=None, *, direction=None, key=None, steps=None):
    """Check ``gradient`` of ``cost`` at ``point`` of ``OB(n, d)`` by the slope of its Taylor remainder.

    Args:
      cost: ``(n, d) -> scalar`` (JAX, or NumPy when ``gradient`` is given);
        evaluated at unit-row float64 points.
      point: ``(n, d)``; rows are normalised.
      gradient: ``(n, d) -> (n, d)``, the Riemannian gradient, or the
        Euclidean one (it is projected on the tangent space, which maps the
        Euclidean gradient to the Riemannian one on ``OB``); default
        ``jax.grad(cost)``.
      direction: ``(n, d)``, projected and normalised (default: random, from ``key``).
      steps: increasing step sizes (default ``STEPS``).

    Returns a ``TaylorCheck``: slope ~2 and ``passed`` for a correct gradient,
    slope ~1 for a wrong one (module docstring). ``ValueError`` on bad input.
    """
    with precision.float64():
        x = _point(point)
        u = _direction(x, direction, key, 0)
        t = _steps(steps)
        grad_fn = jax.grad(cost) if gradient is None else gradient
        g_raw = _vector(grad_fn, "gradient", x.shape, x)
        g = oblique.project_tangent(x, g_raw)
        gnorm = float(jnp.linalg.norm(g_raw))
        # A Euclidean gradient has a normal part that the projection removes; report it only when the
        # caller claims a Riemannian one (it is then a defect), never fail the Euclidean form on it.
        tangent_error = float(jnp.linalg.norm(g_raw - g)) / gnorm if gnorm > 0 else 0.0
        f0 = _value(cost, x)
        slope0 = float(jnp.sum(g * u))
        errors = np.array([abs(_value(cost, oblique.retract(x, s * u)) - f0 - s * slope0) for s in t])
    floor, exact, slope, window, passed, msg = _verdict(t, errors, f0, 2, "gradient", True, "")
    return TaylorCheck(passed, slope, 2, t, errors, window, floor, exact, tangent_error, math.nan, msg)


def check_hessian(
    cost,
    point,
    hessian=None,
    *,
    gradient=None,
    euclidean: bool = False,
    direction=None,
    key=None,
    steps=None,
):
    """Check ``hessian`` of ``cost`` at ``point`` by the slope (3) of the second-order Taylor remainder.

    Args:
      cost, point, direction, key, steps: as ``check_gradient``.
      hessian: ``(x, v) -> (n, d)``: the Riemannian Hessian-vector product
        ``Hess f(x)[v]`` for tangent ``v`` (default: forward-over-reverse
        autodiff, ``oblique.riemannian_hvp``); with ``euclidean=True`` the
        Euclidean one ``nabla^2 f(x)[v]``, converted as ``Proj_x(nabla^2 f[v])
        - diag(<egrad_i, x_i>) v``.
      gradient: ``x -> (n, d)``, used for the first-order term (projected) and,
        with ``euclidean=True``, for the curvature term (it must then be the
        Euclidean gradient); default ``jax.grad(cost)``.

    Returns a ``TaylorCheck`` (slope ~3 when right, ~2 when the Hessian is
    wrong), with ``symmetry_error`` and ``tangent_error`` of ``Hess``; both
    must be below ``EXACT_RTOL`` for ``passed``.
    """
    with precision.float64():
        x = _point(point)
        u = _direction(x, direction, key, 0)
        v = _direction(x, None, key, 1)
        t = _steps(steps)
        grad_fn = jax.grad(cost) if gradient is None else gradient
        egrad = _vector(grad_fn, "gradient", x.shape, x)
        if hessian is None:
            euclidean_grad = jax.grad(cost)
            hess = lambda p, w: oblique.riemannian_hvp(euclidean_grad, p, w)  # noqa: E731
        elif euclidean:
            mu = jnp.sum(egrad * x, axis=-1, keepdims=True)
            hess = lambda p, w: oblique.project_tangent(p, hessian(p, w)) - mu * w  # noqa: E731
        else:
            hess = hessian
        Hu = _vector(hess, "hessian", x.shape, x, u)
        Hv = _vector(hess, "hessian", x.shape, x, v)
        scale = float(jnp.linalg.norm(Hu)) + float(jnp.linalg.norm(Hv))
        symmetry_error = abs(float(jnp.sum(Hu * v) - jnp.sum(u * Hv))) / scale if scale > 0 else 0.0
        hnorm = float(jnp.linalg.norm(Hu))
        tangent_error = float(jnp.linalg.norm(Hu - oblique.project_tangent(x, Hu))) / hnorm if hnorm else 0.0
        g = oblique.project_tangent(x, egrad)
        f0 = _value(cost, x)
        d1, d2 = float(jnp.sum(g * u)), float(jnp.sum(Hu * u))
        errors = np.array(
            [abs(_value(cost, oblique.retract(x, s * u)) - f0 - s * d1 - 0.5 * s**2 * d2) for s in t]
        )
    defects = []
    if symmetry_error > EXACT_RTOL:
        defects.append(f"not symmetric (relative error {symmetry_error:.1e})")
    if tangent_error > EXACT_RTOL:
        defects.append(f"not tangent (relative normal part {tangent_error:.1e})")
    extra = "the Hessian is " + " and ".join(defects) if defects else ""
    floor, exact, slope, window, passed, msg = _verdict(t, errors, f0, 3, "Hessian", not defects, extra)
    return TaylorCheck(passed, slope, 3, t, errors, window, floor, exact, tangent_error, symmetry_error, msg)
