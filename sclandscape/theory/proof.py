r"""A-posteriori proofs about critical points: a true critical point near a computed one, and its inertia.

The argument (``docs/maths.md``, "Proving a critical point") works in the
chart ``f(V) = L(R_{H_r}(V))`` at a point ``H_r`` on the tangent space,
restricted to the *slice* ``S`` orthogonal to the rotation orbit's tangent
``{H_r Omega}``. In that flat space, with

- ``g = |grad L(H_r)|`` (the gradient of ``f`` at 0),
- ``A`` the Hessian of ``f`` on ``S`` at 0 (the Riemannian Hessian with the
  symmetry modes projected out: the metric-projection retraction is second
  order), ``sigma = min_j |lambda_j(A)|``,
- ``L3`` a bound on the third derivative of ``f`` along any segment
  (``third_derivative_bound``: ``|D^3 f[W, W, W]| <= L3 |W|^3``, so the
  Hessian of ``f`` is ``L3``-Lipschitz),

the Newton map ``T(V) = V - A^{-1} grad f(V)`` is a contraction of the ball
of radius ``r = 2 g / sigma`` into itself when ``2 L3 g <= sigma^2``. Its
fixed point ``V*`` is the only critical point of ``f`` on ``S`` in that ball;
it is a critical point of ``L`` (the gradient of an invariant function is
orthogonal to the orbit, which is transversal to ``S``), and its Hessian on
``S`` differs from ``A`` by at most ``L3 r < sigma``, so it has the inertia of
``A``: with every ``lambda_j(A) > 0`` it is a strict local minimum modulo
rotations.

A float64 point cannot meet ``2 L3 g <= sigma^2`` at small ``tau``: the stiff
within-class directions (curvature ``~1/tau^2``) turn the rounding of the
coordinates themselves into a gradient of ``~1e-13``, while ``sigma`` can be
``1e-4`` and ``L3 ~ n / tau^3``. So the point is first refined by Newton's
method in 50-digit decimal arithmetic (``decimal``), the gradient evaluated
exactly to that precision and the step solved with the float64 Hessian;
every step divides the gradient by ``~|A^{-1}| |A - A_64| ~ 1e-9``. ``A`` is
then taken as the float64 Hessian of the refined point's float64 rounding,
with an error budget: the rounding of the computed Hessian (``verdict``'s
``tol_round``), plus ``(L3 + K) |H_r - H_64|`` for the change of point and of
tangent space.
"""

from __future__ import annotations

import decimal
import math
from typing import NamedTuple

import numpy as np

from sclandscape.core import problems

#: Decimal digits of the refinement.
DIGITS = 50
#: Largest ``n^2 d`` refined (the decimal gradient costs ``~n^2 d`` operations, a few seconds here).
MAX_WORK = 2_000_000
#: Newton steps of the refinement, and halvings of a step that does not lower the gradient.
MAX_STEPS = 12
DAMPING = 10


def third_derivative_bound(n: int, tau: float) -> float:
    r"""``L3`` with ``|D^3 f[W, W, W]| <= L3 |W|_F^3`` for every chart ``f(V) = L(R_H(V))`` of the SC loss.

    ``L3 = sqrt(2) (4 n / tau^3 + 12 n / tau^2 + 3 n / tau + 6 / tau)``, for
    any point, any tangent ``V`` and unit ``W``; derived in ``docs/maths.md``
    (rows move on great circles with ``|n'| <= |w|``, ``|n''| <= |w|^2``,
    ``|n'''| <= 3 |w|^3``; the log-sum-exp's third derivative is the third
    cumulant of the logit velocities plus ``3 Cov(x', x'') + E x'''`` under the
    softmax). By Banach's theorem on symmetric trilinear forms it is also the
    Lipschitz constant of the chart's Hessian in the operator norm.
    """
    return math.sqrt(2.0) * (4 * n / tau**3 + 12 * n / tau**2 + 3 * n / tau + 6 / tau)


class Refinement(NamedTuple):
    """A high-precision critical point near a float64 one.

    ``H``: ``(n, d)`` object array of ``Decimal`` (unit rows to ``DIGITS``);
    ``grad_norm``: ``|grad L(H)|`` evaluated in decimal (an upper bound after
    adding ``grad_error``); ``distance``: ``|H - H_64|_F`` from the starting
    float64 point; ``steps``: Newton steps taken; ``converged``: the gradient
    fell below ``1e-30``.
    """

    H: np.ndarray
    grad_norm: float
    grad_error: float
    distance: float
    steps: int
    converged: bool


def _context():
    return decimal.Context(prec=DIGITS, Emax=999999, Emin=-999999)


def _to_decimal(H: np.ndarray) -> np.ndarray:
    ctx = _context()
    out = np.empty(H.shape, object)
    for index, value in np.ndenumerate(H):
        out[index] = ctx.create_decimal(float(value))  # exact binary value, rounded to DIGITS
    return out


def _normalise(X: np.ndarray) -> np.ndarray:
    out = np.empty(X.shape, object)
    with decimal.localcontext(_context()):
        for i in range(X.shape[0]):
            norm = sum(x * x for x in X[i]).sqrt()
            out[i] = [x / norm for x in X[i]]
    return out


def decimal_gradient(H: np.ndarray, labels: np.ndarray, tau: float):
    """``(L(H), Riemannian gradient (n, d))`` of the sum-form SC loss in ``DIGITS``-digit decimal arithmetic.

    ``H`` is an object array of ``Decimal`` with unit rows. Straight from the
    formulas: ``P`` the masked row softmax of ``G / tau``, ``A = (P - Y+)/tau``,
    ``F = (A + A^T)/2``, ``egrad = 2 F H``, ``grad = egrad - diag(<egrad_i, h_i>) H``.
    """
    with decimal.localcontext(_context()):
        n, d = H.shape
        t = decimal.Decimal(float(tau))
        G = H.dot(H.T)
        X = G / t
        labels = np.asarray(labels)
        A = np.empty((n, n), object)
        value = decimal.Decimal(0)
        for i in range(n):
            others = [j for j in range(n) if j != i]
            m = max(X[i, j] for j in others)
            e = {j: (X[i, j] - m).exp() for j in others}
            s = sum(e.values())
            positives = [j for j in others if labels[j] == labels[i]]
            npos = decimal.Decimal(len(positives))
            value += m + s.ln() - sum(X[i, j] for j in positives) / npos
            for j in range(n):
                p = e[j] / s if j != i else decimal.Decimal(0)
                y = 1 / npos if (j != i and labels[j] == labels[i]) else decimal.Decimal(0)
                A[i, j] = (p - y) / t
        F = (A + A.T) / 2
        egrad = 2 * F.dot(H)
        mu = np.array([sum(egrad[i, k] * H[i, k] for k in range(d)) for i in range(n)], object)
        grad = egrad - mu[:, None] * H
    return value, grad


def _norm(X: np.ndarray) -> decimal.Decimal:
    with decimal.localcontext(_context()):
        return sum(x * x for x in X.reshape(-1)).sqrt()


class Local(NamedTuple):
    """What the float64 dense analysis of a point gives the proof (``verdict`` builds it)."""

    eigs: np.ndarray  # the Hessian's eigenvalues on the orbit complement
    tol_round: float  # the bound on their rounding error
    hess_norm: float  # |Hess L|_F
    grad_norm: float  # |grad L| (float64)
    sigma_rank: float  # the smallest singular value of H counted in its rank
    step: object  # g (n, d) -> -Hess^+ g on the orbit complement (float64)


def _to_float(H: np.ndarray) -> np.ndarray:
    return np.asarray(H, np.float64)


def refine(H64: np.ndarray, labels, tau: float, analyse) -> tuple[Refinement, Local, float]:
    """Newton's method in decimal arithmetic from the float64 point ``H64`` (unit rows).

    ``analyse(H) -> Local`` is the float64 dense analysis of a point; each step
    solves with the Hessian of the current iterate's float64 rounding (the
    gradient is decimal). Steps are accepted while the decimal gradient
    decreases; the refinement stops below ``1e-30`` or when it stalls (a
    singular Hessian). Returns the refinement and the analysis of its final
    point's float64 rounding (whose spectrum the proof uses) and the distance
    ``rho`` between that point and its rounding.
    """
    problems.check_points(H64)
    H64 = np.asarray(H64, np.float64)
    start = _normalise(_to_decimal(H64))
    H = start
    _, grad = decimal_gradient(H, labels, tau)
    gnorm = _norm(grad)
    local = analyse(_to_float(H))
    steps = 0
    tiny = decimal.Decimal("1e-30")
    while gnorm > tiny and steps < MAX_STEPS:
        step = np.asarray(local.step(_to_float(grad)), np.float64)
        steps += 1
        # Damped Newton: the full step first, halved until the decimal gradient decreases.
        for halvings in range(DAMPING):
            candidate = _normalise(H + _to_decimal(step * 0.5**halvings))
            _, cand_grad = decimal_gradient(candidate, labels, tau)
            cand_norm = _norm(cand_grad)
            if cand_norm < gnorm:
                break
        else:
            break  # no decrease along the Newton direction: a singular Hessian, or rounding
        H, grad, gnorm = candidate, cand_grad, cand_norm
        if np.max(np.abs(step)) > 1e-10:  # still far: a fresh Hessian for the next step
            local = analyse(_to_float(H))
    final = analyse(_to_float(H))
    with decimal.localcontext(_context()):
        distance = float(_norm(H - start))
        rounding = float(_norm(H - _to_decimal(_to_float(H))))
    # Each of the ~n^2 d operations of the gradient rounds at 10^-DIGITS relative, on terms of size <= n/tau.
    n, d = H64.shape
    grad_error = 10.0 ** (-DIGITS + 2) * n * n * d * (1 + n / tau)
    return Refinement(H, float(gnorm), grad_error, distance, steps, bool(gnorm <= tiny)), final, rounding


class Proof(NamedTuple):
    """What the a-posteriori argument established (``closed``) or why not (``reason``)."""

    closed: bool
    index: int  # negative eigenvalues of the critical point it proves (-1 when not closed)
    lambda_min: float  # the smallest eigenvalue on the orbit complement at the refined point
    radius: float  # a critical point lies within this distance of the float64 point (inf when not closed)
    sigma: float  # min |lambda| on the slice minus the eigenvalue error budget
    eigenvalue_error: float
    grad_norm: float
    reason: str
    #: The refined point's float64 rounding (``None`` when not closed): the critical point it proves
    #: lies within ``point_radius`` (its rounding plus ``2 g / sigma``) of it.
    point: np.ndarray | None = None
    point_radius: float = math.inf


def prove(H64: np.ndarray, labels, tau: float, analyse) -> Proof:
    """The a-posteriori argument of the module docstring, near the float64 point ``H64``.

    ``analyse(H) -> Local`` is the float64 dense analysis of a point (spectrum
    on the orbit complement, its rounding bound, norms, the Newton step).

    The chart is at the refined point ``H_r``; its spectrum is computed at
    ``H_r``'s float64 rounding, a distance ``rho ~ 1e-16`` away. Moving the
    point changes the chart's Hessian by at most ``L3 rho``; moving the tangent
    space (the differential of the retraction is the projection to ``O(rho)``,
    within a factor 2) by ``4 rho |Hess|``, and the retraction's curvature
    term ``<grad, D^2 R>`` by ``2 rho |grad|``; moving the slice (the orbit
    tangent ``H Omega`` turns by at most ``rho / sigma_rank``) by
    ``4 rho |Hess| / sigma_rank``. All of these are added to the error budget.
    The certified radius is measured from ``H64``.
    """
    n, d = np.shape(H64)
    if n * n * d > MAX_WORK:
        reason = f"n^2 d = {n * n * d} is above {MAX_WORK} (the decimal refinement would take too long)"
        return Proof(False, -1, math.nan, math.inf, math.nan, math.nan, math.nan, reason)
    ref, local, rho = refine(H64, labels, tau, analyse)
    eigs = np.asarray(local.eigs, np.float64)
    if eigs.size == 0 or not np.all(np.isfinite(eigs)):
        return Proof(False, -1, math.nan, math.inf, math.nan, math.nan, math.nan, "no finite spectrum")
    L3 = third_derivative_bound(n, tau)
    K = L3 + 4.0 * local.hess_norm * (1.0 + 1.0 / local.sigma_rank) + 2.0 * local.grad_norm
    error = local.tol_round + K * rho
    sigma = float(np.min(np.abs(eigs))) - error
    g = ref.grad_norm + ref.grad_error
    if sigma <= 0:
        reason = "an eigenvalue on the orbit complement is within the error budget of zero (degenerate)"
        return Proof(False, -1, float(np.min(eigs)), math.inf, sigma, error, g, reason)
    if not 2.0 * L3 * g <= sigma**2:
        reason = f"no Newton-Kantorovich proof: 2 L3 |grad| = {2 * L3 * g:.2e} > sigma^2 = {sigma**2:.2e}"
        if not ref.converged:
            reason += " (the decimal refinement stalled)"
        return Proof(False, -1, float(np.min(eigs)), math.inf, sigma, error, g, reason)
    radius = ref.distance + 2.0 * g / sigma
    index = int(np.sum(eigs < 0))
    point, point_radius = _to_float(ref.H), rho + 2.0 * g / sigma
    return Proof(True, index, float(np.min(eigs)), radius, sigma, error, g, "", point, point_radius)
