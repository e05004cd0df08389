r"""Continuation in the temperature of a local minimum: where a spurious minimum stops existing, and how.

A critical point ``H(tau)`` of ``L(., tau)`` on ``OB(n, d)`` solves
``grad L(H; tau) = 0``. Where its Hessian ``A`` on the orbit complement (the
symmetry modes ``{H Omega}`` projected out) is invertible, the implicit
function theorem gives a smooth branch with tangent

    dH/dtau = -A^+ d_tau grad L(H; tau)

(``d_tau`` the partial derivative at fixed ``H``, the pseudo-inverse taken on
the orbit complement). ``continue_minimum`` follows the branch of a minimum
by natural-parameter predictor-corrector steps:

- **predictor**: ``H_pred = R_H(dtau dH/dtau)`` (the metric-projection retraction);
- **corrector**: ``critical.find_critical`` at ``tau + dtau`` from ``H_pred``
  with ``max_index=0``: a Levenberg-Marquardt trial whose Hessian has an
  eigenvalue below minus its rounding bound beyond the symmetry modes is
  refused, so the corrector never slides onto a saddle; then a few Newton
  steps on the orbit complement (``newton_polish``: the LM ratio test stalls
  near rounding);
- **acceptance**: the corrector converged (``|grad| <= gtol``), the corrected
  point has index 0 beyond the symmetry modes (the same count as the guard),
  and it stayed on the branch: the corrector moved it (modulo rotations) by at
  most ``contraction`` times the predictor's displacement, plus how far the
  two points' residual gradients let each be from its critical point. A tangent predictor is off by
  ``O(dtau^2)`` against a displacement ``O(dtau)``, so the ratio is small on
  the branch; a jump to another critical point moves by ``O(1)``. The
  ``2 (gtol + |grad L(H)|) / lambda_min`` term is what the two points' own
  residual gradients allow.
- **step control**: an accepted step grows by ``grow``; after a rejection the
  steps bisect ``[last accepted, rejected]`` down to ``min_step``. A closed
  bracket is then confirmed by a step of at most ``min_step`` straight to the
  rejected ``tau`` (the rejection may have been the long step's predictor):
  if that step is accepted the run resumes growing from it, else the branch
  ends in the bracket.

Every accepted point is judged by ``verdict.classify`` (a proven strict
spurious minimum, or not) and recorded with ``L``, the gap ``L - L*(tau)``
(``optimum.global_optimum``) and the smallest eigenvalue beyond the symmetry
modes.

``diagnose_end`` then asks what happens at the end ``tau_c``. The eigenvalue
that goes to zero need not be the lowest (``critical_mode``: the mode that
carries the tangent ``dH/dtau``), so every point records ``lambda_crit`` and
``|dH/dtau|``, and the end is followed in **pseudo-arclength**
(``follow_arclength``: Newton on the bordered system, which stays invertible at
a simple fold). Three possibilities, each with its own signature:

- **fold** (saddle-node): the path turns back in ``tau`` (``dtau/ds`` changes
  sign between converged points, where ``lambda_crit`` changes sign), and goes
  on as an index-1 saddle, the partner; on the minimum ``|dH/dtau| ~ C (tau_c - tau)^(-1/2)``
  with a steady ``C`` and ``lambda_crit ~ c sqrt(tau_c - tau)`` close enough to ``tau_c``;
- **crossing** (transcritical or pitchfork): the path goes on past ``tau_c``
  without turning, its index changing;
- **merges_global**: the gap ``L - L*`` goes to zero.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.explore import critical, scanner
from sclandscape.numerics import loss, oblique
from sclandscape.theory import hessian, optimum, verdict

ENDINGS = ("reached_end", "fold", "crossing", "merges_global", "undetermined")


@dataclasses.dataclass(frozen=True)
class ContinuationSettings:
    """Step control of ``continue_minimum`` (frozen, recorded with results).

    Attributes:
      step: the first ``dtau``.
      max_step: the largest ``dtau``.
      min_step: the resolution of the end: the bisection stops once the bracket
        ``[last accepted, first rejected]`` is this narrow.
      grow: ``dtau`` is multiplied by this after an accepted step.
      contraction: the largest ratio of the corrector's displacement to the
        predictor's (modulo rotations) on the branch.
      gtol: the accepted gradient (sum-form loss, absolute) after the Newton
        steps; raised to twice the gradient's rounding bound where float64 cannot
        resolve it (``corrector_gtol``).
      lm_gtol: the Levenberg-Marquardt corrector's own tolerance: it only has to
        bring the point into Newton's basin (one static setting, so the guarded
        corrector compiles once per shape).
      max_iter: the corrector's Levenberg-Marquardt iterations.
      newton_steps: Newton steps after them (``newton_polish``).
      max_points: the most accepted points (the run stops there).
      classify: judge every accepted point with ``verdict.classify`` (the proof included).
    """

    step: float = 1e-3
    max_step: float = 2e-3
    min_step: float = 1e-7
    grow: float = 2.0
    contraction: float = 0.5
    gtol: float = 1e-10
    lm_gtol: float = 1e-8
    max_iter: int = 60
    newton_steps: int = 6
    max_points: int = 400
    classify: bool = True

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("step", "max_step", "min_step", "grow", "contraction", "gtol", "lm_gtol"),
            integers={"max_iter": 1, "newton_steps": 0, "max_points": 2},
        )
        if not self.min_step <= self.step <= self.max_step:
            raise ValueError(
                f"need min_step <= step <= max_step, got {self.min_step!r}, {self.step!r}, {self.max_step!r}"
            )
        if self.grow < 1:
            raise ValueError(f"grow must be >= 1, got {self.grow!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------
# The local analysis of one point (traced, float64)


class Local(NamedTuple):
    """The dense float64 analysis of one point at one ``tau``."""

    loss: jax.Array
    grad_norm: jax.Array
    grad_rounding: jax.Array  # gradient_rounding_bound: the smallest gradient float64 can resolve here
    eigs: jax.Array  # (N,) the Hessian's spectrum on the orbit complement ascending, +inf for the modes
    bound: jax.Array  # the rounding bound of the computed Hessian (hessian.hessian_rounding_bound)
    index: jax.Array  # eigenvalues below -bound on the orbit complement (critical.index_beyond_symmetry)
    tangent: jax.Array  # (n, d) dH/dtau = -A^+ d_tau grad on the orbit complement
    newton: jax.Array  # (n, d) the Newton step -A^+ grad on the orbit complement
    soft: jax.Array  # (n, d) unit eigenvector of the smallest eigenvalue on the orbit complement
    dloss_dtau: jax.Array  # the partial derivative d_tau L at fixed H (= dL/dtau along a branch)
    lambda_crit: jax.Array  # the eigenvalue of the mode that carries the tangent most (critical_mode)
    crit: jax.Array  # (n, d) its unit eigenvector


def gradient_rounding_bound(H, labels, tau):
    r"""A bound on ``|grad L(H) computed - exact|_F`` in the dtype of ``H`` (one point, traced).

    ``grad_i = e_i - <e_i, h_i> h_i`` with ``e_i = 2 sum_l F_il h_l`` and
    ``F_il = (P_il + P_li - Y+_il - Y+_li) / (2 tau)``. Each ``P_il`` carries the
    softmax's relative error ``delta_P = eps ((3d + 5)/tau + n + 2 log n + 2)``
    (``certify.slack_rounding_bound``), so ``|dF_il| <= delta_P (P_il + P_li) / (2 tau)``
    plus the rounding of the difference, ``2 eps |F_il|``; the ``n``-term sum of
    ``d``-vectors adds ``(n + d) eps sum_l |F_il|``; the projection at most
    doubles the error of ``e_i`` and adds ``(d + 2) eps |e_i|``::

        err_i <= 2 [2 sum_l |dF_il| + 2 (n + d + 2) eps sum_l |F_il|] + (d + 2) eps |e_i|,

    and the bound is ``sqrt(sum_i err_i^2)``. At small ``tau`` it is ``~eps n / tau^2``:
    a corrector cannot be asked for a smaller gradient.
    """
    H = oblique.normalize_rows(H)
    n, d = H.shape
    eps = jnp.finfo(H.dtype).eps
    G = H @ H.T
    off = ~jnp.eye(n, dtype=bool)
    P = jax.nn.softmax(jnp.where(off, G / tau, -jnp.inf), axis=1)
    F = loss.gram_gradient(G, labels, tau)
    delta_p = eps * ((3 * d + 5) / tau + n + 2 * math.log(n) + 2)
    dF = delta_p * (P + P.T) / (2 * tau)
    absF = jnp.sum(jnp.abs(F), axis=1)
    e = 2 * F @ H
    err = 2 * (2 * jnp.sum(dF, axis=1) + 2 * (n + d + 2) * eps * absF) + (d + 2) * eps * jnp.linalg.norm(
        e, axis=1
    )
    return jnp.sqrt(jnp.sum(err**2))


def _rgrad(H, labels, tau):
    return oblique.riemannian_gradient(H, jax.grad(loss.sum_loss)(H, labels, tau))


def _complement(H, labels, tau):
    """The Hessian on the orbit complement at one point: ``(M, U, sym, A', w, V, complement)``.

    ``A' = P M P + shift sym`` moves the symmetry modes above every eigenvalue
    (as ``verdict``), so ``A'`` is invertible exactly where the Hessian on the
    orbit complement is; ``w, V`` its spectrum and eigenvectors, ``complement``
    marks the eigenvalues that belong to the complement.
    """
    n, d = H.shape
    N = n * (d - 1)
    M = hessian.hessian_matrix(H, labels, tau)
    U = oblique.tangent_basis(H)
    Z, _ = oblique.symmetry_basis(H)
    Zc = oblique.to_coordinates(U[None], Z).reshape(Z.shape[0], N)
    sym = Zc.T @ Zc
    P = jnp.eye(N, dtype=H.dtype) - sym
    shift = 2.0 * jnp.linalg.norm(M) + 1.0
    A = P @ M @ P + shift * sym
    w, V = jnp.linalg.eigh(A)
    return M, U, P, A, w, V, w < 0.5 * shift


def critical_mode(w, V, complement, c):
    r"""The mode that carries the tangent ``-A^+ r`` most: its index among ``w`` (traced).

    ``-A^+ r = -sum_i v_i (v_i . r) / w_i``: at a fold the mode whose
    eigenvalue goes to zero dominates the sum (its weight ``|v_i . r| / |w_i|``
    diverges), whether or not it is the lowest eigenvalue (at 10,10,2,2,
    ``d = 5``, ``tau -> 0.0374486`` it comes down from ``1.8e-2`` through an
    18-fold cluster at ``4.65e-3``). ``c = V^T r``.
    """
    weight = jnp.where(complement, jnp.abs(c) / jnp.abs(jnp.where(complement, w, 1.0)), -1.0)
    return jnp.argmax(weight)


def _analyse_one(H, labels, tau):
    H = oblique.normalize_rows(H)
    n, d = H.shape
    N = n * (d - 1)
    value, dvalue = jax.jvp(lambda t: loss.sum_loss(H, labels, t), (tau,), (jnp.ones_like(tau),))
    grad, dgrad = jax.jvp(lambda t: _rgrad(H, labels, t), (tau,), (jnp.ones_like(tau),))
    M, U, _, _, w, V, complement = _complement(H, labels, tau)
    bound = hessian.hessian_rounding_bound(H, labels, tau, M, hessian.hessian_matrix(H, labels, tau, True))

    def solve(r):  # -A^+ r on the orbit complement, in ambient coordinates
        c = V.T @ oblique.to_coordinates(U, r).reshape(N)
        y = -V @ jnp.where(complement, c / jnp.where(complement, w, 1.0), 0.0)
        return oblique.to_ambient(U, y.reshape(n, d - 1))

    tangent, newton = solve(dgrad), solve(grad)
    soft = oblique.to_ambient(U, V[:, 0].reshape(n, d - 1))
    eigs = jnp.where(complement, w, jnp.inf)
    index = jnp.sum(complement & (w < -bound))
    rounding = gradient_rounding_bound(H, labels, tau)
    i_crit = critical_mode(w, V, complement, V.T @ oblique.to_coordinates(U, dgrad).reshape(N))
    crit = oblique.to_ambient(U, V[:, i_crit].reshape(n, d - 1))
    return Local(
        value,
        jnp.linalg.norm(grad),
        rounding,
        eigs,
        bound,
        index,
        tangent,
        newton,
        soft,
        dvalue,
        w[i_crit],
        crit,
    )


@jax.jit
def _analyse(H, labels, tau):
    return _analyse_one(H, labels, tau)


def analyse(H, labels, tau) -> Local:
    """``Local`` of one point ``H`` ``(n, d)`` at ``tau``, in float64 (NumPy arrays)."""
    problems.check_points(H, labels, tau)
    if np.ndim(H) != 2:
        raise ValueError(f"H must be one point (n, d), got shape {np.shape(H)}")
    with precision.float64(), precision.float64_placement():
        out = _analyse(jnp.asarray(H, jnp.float64), jnp.asarray(labels), jnp.asarray(float(tau), jnp.float64))
        return Local(*(np.asarray(a) for a in out))


def rotation_distance(A, B) -> float:
    """``min_Q |A - B Q|_F`` over orthogonal ``Q`` (orthogonal Procrustes): a distance modulo rotations."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    # The rotation itself, then the residual: |A|^2 + |B|^2 - 2 sum(s) would cancel to ~1e-7.
    U, _, Vt = np.linalg.svd(B.T @ A)
    return float(np.linalg.norm(A - B @ (U @ Vt)))


def lambda_min(local: Local) -> float:
    """The smallest eigenvalue beyond the symmetry modes."""
    eigs = np.asarray(local.eigs)
    return float(np.min(eigs)) if eigs.size else math.nan


# --------------------------------------------------------------------------
# One predictor-corrector step


class Step(NamedTuple):
    """One predictor-corrector step from ``tau`` to ``tau + dtau``.

    ``reason``: ``""`` when accepted, else ``not_converged`` (the corrector did
    not reach ``gtol``: typically no minimum nearby), ``index`` (the corrected
    point has a negative eigenvalue beyond the symmetry modes) or ``jump`` (it
    left the branch: the corrector moved it further than the predictor did).
    """

    accepted: bool
    reason: str
    H: np.ndarray
    tau: float
    local: Local | None
    predicted: float  # |H_pred - H| modulo rotations
    corrected: float  # |H_new - H_pred| modulo rotations
    allowed: float  # the largest corrector displacement accepted
    status: str


def corrector_gtol(H, labels, tau, gtol: float) -> float:
    """``max(gtol, 2 gradient_rounding_bound)`` at ``H``: the gradient a corrected point must reach.

    A gradient below twice its rounding bound cannot be asked of float64 (near
    a collapsed class at small ``tau`` the bound is ``~eps n / tau^2``, ``~1e-10``
    at ``n = 24``, ``tau = 0.024``).
    """
    with precision.float64(), precision.float64_placement():
        bound = float(_rounding(jnp.asarray(H, jnp.float64), jnp.asarray(labels), jnp.asarray(float(tau))))
    return max(float(gtol), 2.0 * bound)


@jax.jit
def _rounding(H, labels, tau):
    return gradient_rounding_bound(H, labels, tau)


def corrector_settings(settings: ContinuationSettings, max_index: int = 0) -> critical.CriticalSettings:
    """The Levenberg-Marquardt corrector's settings (dense, guarded by ``max_index``; -1: unguarded)."""
    return critical.CriticalSettings(
        gtol=settings.lm_gtol, max_iter=settings.max_iter, method="dense", max_index=max(max_index, -1)
    )


def newton_polish(H, labels, tau, steps: int):
    """Damped Newton steps ``H <- R_H(-t A^+ grad)`` on the orbit complement while the gradient decreases.

    ``t = 1, 1/2, ..., 1/8``: the first that lowers ``|grad|`` is taken; the
    polish stops when none does or after ``steps`` steps. The Levenberg-Marquardt
    corrector's ratio test stalls once ``|grad|^2`` differences approach rounding
    (measured: ``~5e-10`` at 10,10,2,2, ``d = 5``, ``tau = 0.023``), where Newton
    still converges quadratically to the gradient's rounding (``~2e-13`` there).
    Returns the best point and its ``Local``.
    """
    best = (np.asarray(H, np.float64), analyse(H, labels, tau))
    for _ in range(steps):
        for halvings in range(4):
            with precision.float64(), precision.float64_placement():
                X = np.asarray(
                    oblique.retract(jnp.asarray(best[0]), 0.5**halvings * jnp.asarray(best[1].newton))
                )
            local = analyse(X, labels, tau)
            if float(local.grad_norm) < float(best[1].grad_norm):
                break
        else:
            break
        best = (X, local)
    return best


def step(
    H,
    labels,
    tau: float,
    dtau: float,
    settings: ContinuationSettings = ContinuationSettings(),
    *,
    local: Local | None = None,
    max_index: int = 0,
) -> Step:
    """One predictor-corrector step from the critical point ``H`` at ``tau`` (module docstring).

    ``local``: ``analyse(H, labels, tau)`` when already known. ``max_index``:
    the corrector's guard and the acceptance's index bound (0: stay on minima;
    ``-1``: any critical point, which ``diagnose_end`` uses to look beyond the end).
    """
    local = analyse(H, labels, tau) if local is None else local
    new_tau = float(tau) + float(dtau)
    with precision.float64(), precision.float64_placement():
        H_pred = np.asarray(oblique.retract(jnp.asarray(H), float(dtau) * jnp.asarray(local.tangent)))
    gtol = corrector_gtol(H_pred, labels, new_tau, settings.gtol)
    with precision.float64(), precision.float64_placement():
        result = critical.find_critical(H_pred, labels, new_tau, corrector_settings(settings, max_index))
    H_new = np.asarray(result.x)
    status = critical.status_names(result.status)[0]
    predicted = rotation_distance(H_pred, np.asarray(H))
    new_local = None
    if status != "non_finite":
        H_new, new_local = newton_polish(H_new, labels, new_tau, settings.newton_steps)
        # Judged by the final gradient alone (the LM corrector's own tolerance is looser).
        if float(new_local.grad_norm) <= gtol:
            status = "converged"
        elif status == "converged":
            status = "newton_stalled"
    if status != "converged":
        return Step(False, "not_converged", H_new, new_tau, None, predicted, math.nan, math.nan, status)
    corrected = rotation_distance(H_new, H_pred)
    lam = abs(lambda_min(new_local))
    # A point with gradient g is within ~g / lambda_min of its critical point: both ends' errors.
    floor = 2.0 * (gtol + float(local.grad_norm)) / lam if lam > 0 else math.inf
    allowed = settings.contraction * predicted + floor
    if max_index >= 0 and int(new_local.index) > max_index:
        return Step(False, "index", H_new, new_tau, new_local, predicted, corrected, allowed, status)
    if not corrected <= allowed:
        return Step(False, "jump", H_new, new_tau, new_local, predicted, corrected, allowed, status)
    return Step(True, "", H_new, new_tau, new_local, predicted, corrected, allowed, status)


# --------------------------------------------------------------------------
# The branch


#: Per accepted point, the fields of a ``Branch`` (arrays over points).
POINT_FIELDS = (
    "tau",
    "loss",
    "global_loss",
    "gap",
    "lambda_min",
    "lambda_crit",
    "tangent_norm",
    "newton_norm",
    "index",
    "grad_norm",
    "dloss_dtau",
    "kind",
    "decided_by",
    "strict_certified",
    "certified_radius",
)


@dataclasses.dataclass(frozen=True)
class Branch:
    """A continued branch of minima: per accepted point ``POINT_FIELDS`` and ``points`` ``(m, n, d)``.

    ``tau_last``: the largest accepted ``tau``; ``tau_fail``: the smallest
    rejected ``tau`` above it (``nan`` when the run reached ``tau_end``), so the
    branch ends in ``[tau_last, tau_fail]``; ``tau_proven``: the largest ``tau``
    at which the verdict is a proven strict spurious minimum (``nan`` if none);
    ``rejected``: ``(tau, reason)`` of every rejected step.
    """

    counts: tuple[int, ...]
    dim: int
    tau_start: float
    tau_end: float
    points: np.ndarray
    fields: dict
    rejected: tuple
    tau_last: float
    tau_fail: float
    tau_proven: float
    reached_end: bool
    settings: ContinuationSettings

    def __getattr__(self, name):
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def to_json(self) -> dict:
        return {
            "counts": list(self.counts),
            "dim": self.dim,
            "tau_start": self.tau_start,
            "tau_end": self.tau_end,
            "tau_last": self.tau_last,
            "tau_fail": self.tau_fail,
            "tau_proven": self.tau_proven,
            "reached_end": self.reached_end,
            "points": {name: np.asarray(v).tolist() for name, v in self.fields.items()},
            "rejected": [{"tau": t, "reason": r} for t, r in self.rejected],
            "settings": self.settings.to_json(),
        }


def _record(H, labels, tau, local: Local, judge: bool) -> dict:
    opt = optimum.global_optimum(problems.counts_from_labels(labels), tau)
    out = {
        "tau": float(tau),
        "loss": float(local.loss),
        "global_loss": float(opt.loss),
        "gap": float(local.loss) - float(opt.loss),
        "lambda_min": lambda_min(local),
        "lambda_crit": float(local.lambda_crit),
        "tangent_norm": float(np.linalg.norm(local.tangent)),
        # |A^+ grad|: to first order how far the point is from the critical point it stands for.
        "newton_norm": float(np.linalg.norm(local.newton)),
        "index": int(local.index),
        "grad_norm": float(local.grad_norm),
        "dloss_dtau": float(local.dloss_dtau),
        "kind": "",
        "decided_by": "",
        "strict_certified": False,
        "certified_radius": math.inf,
    }
    if judge:
        c = verdict.classify(H, labels, tau, optimum_=opt)
        out.update(
            kind=str(c.kind),
            decided_by=str(c.decided_by),
            strict_certified=bool(c.strict_certified),
            certified_radius=float(c.certified_radius),
        )
    return out


def continue_minimum(
    H0,
    labels,
    tau_start,
    tau_end,
    settings: ContinuationSettings = ContinuationSettings(),
    *,
    progress: Callable | None = None,
) -> Branch:
    """Follow the minimum ``H0`` (a critical point at ``tau_start``) in ``tau`` towards ``tau_end``.

    Args:
      H0: ``(n, d)`` a local minimum at ``tau_start`` (it is polished there first
        with the guarded corrector; a point that does not converge to a minimum
        raises ``ValueError``).
      labels: ``(n,)`` integer labels.
      tau_start, tau_end: the range (either direction).
      settings: ``ContinuationSettings``.
      progress: optional ``progress(done, total, phase, detail)`` callback
        (``done``/``total`` in units of ``tau``'s progress, scaled to 1000).

    Returns a ``Branch`` (module docstring: predictor, corrector, acceptance,
    bisection of the end). Runs in float64.
    """
    problems.check_points(H0, labels, tau_start)
    if np.ndim(H0) != 2:
        raise ValueError(f"H0 must be one point (n, d), got shape {np.shape(H0)}")
    tau_start, tau_end = problems.check_tau(tau_start), problems.check_tau(tau_end)
    if tau_end == tau_start:
        raise ValueError(f"tau_end must differ from tau_start, both are {tau_start!r}")
    if not isinstance(settings, ContinuationSettings):
        raise ValueError(f"settings must be a ContinuationSettings, got {type(settings).__name__}")
    labels = problems.check_labels(labels)
    sign = 1.0 if tau_end > tau_start else -1.0
    span = abs(tau_end - tau_start)

    first = step(np.asarray(H0, np.float64), labels, tau_start, 0.0, settings)
    if not first.accepted:
        raise ValueError(
            f"H0 is not a local minimum at tau={tau_start:g} (the guarded corrector ended with "
            f"{first.reason}: {first.status})"
        )
    H, tau, local = first.H, tau_start, first.local
    points, records, rejected = [H], [_record(H, labels, tau, local, settings.classify)], []
    dtau, tau_fail, confirmed = settings.step, math.nan, False
    while len(points) < settings.max_points:
        if abs(tau_end - tau) <= 0:
            break
        closed = not math.isnan(tau_fail) and abs(tau_fail - tau) <= settings.min_step
        if closed and confirmed:
            break
        if closed:
            # The bracket is closed: the rejection at tau_fail came from a longer step, whose
            # predictor may have been the culprit. Step to tau_fail from within min_step to confirm.
            dtau, confirmed = abs(tau_fail - tau), True
        elif math.isnan(tau_fail):
            dtau = min(dtau, settings.max_step, abs(tau_end - tau))
        else:
            dtau = 0.5 * abs(tau_fail - tau)
        s = step(H, labels, tau, sign * dtau, settings, local=local)
        if s.accepted:
            H, tau, local = s.H, s.tau, s.local
            if abs(tau_end - tau) < 1e-12 * span:
                tau = tau_end
            points.append(H)
            records.append(_record(H, labels, tau, local, settings.classify))
            if closed:  # the end was not there: resume growing from this step
                tau_fail, confirmed = math.nan, False
            dtau *= settings.grow
        else:
            rejected.append((s.tau, s.reason))
            tau_fail = s.tau
        if progress is not None:
            progress(int(1000 * abs(tau - tau_start) / span), 1000, "continuation", f"tau={tau:.7g}")
    fields = {name: np.asarray([r[name] for r in records]) for name in POINT_FIELDS}
    proven = [r["tau"] for r in records if r["kind"] == "spurious_min" and r["strict_certified"]]
    return Branch(
        counts=problems.counts_from_labels(labels),
        dim=int(np.shape(H0)[1]),
        tau_start=tau_start,
        tau_end=tau_end,
        points=np.stack(points),
        fields=fields,
        rejected=tuple(rejected),
        tau_last=float(tau),
        tau_fail=float(tau_fail),
        tau_proven=float(max(proven, key=lambda t: sign * t)) if proven else math.nan,
        reached_end=tau == tau_end,
        settings=settings,
    )


# --------------------------------------------------------------------------
# Pseudo-arclength: through a fold


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
    grad, dgrad = jax.jvp(lambda t: _rgrad(H, labels, t), (tau,), (jnp.ones_like(tau),))
    M, U, P, A, w, V, complement = _complement(H, labels, tau)
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
    i_crit = critical_mode(w, V, complement, V.T @ r)
    amb = lambda y: oblique.to_ambient(U, y.reshape(n, d - 1))  # noqa: E731
    return (
        value,
        jnp.linalg.norm(grad),
        gradient_rounding_bound(H, labels, tau),
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
        if rotation_distance(H, H0) > settings.contraction * ds + 1e-12:
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


# --------------------------------------------------------------------------
# What happens at the end


@dataclasses.dataclass(frozen=True)
class Ending:
    """What ``diagnose_end`` found at the end of a branch (``ENDINGS``) and the evidence.

    - ``tau_c`` and ``bracket``: at a fold, from the arclength path through it
      (``fold_point``): the bracket's lower end is the largest ``tau`` of a converged
      point on the path, the upper end adds twice the quadratic vertex correction;
      otherwise the natural continuation's ``[tau_last, tau_fail]``.
      ``natural_bracket``: always the latter.
    - ``fit``: over the natural branch's last ``fit_points`` points and the arclength
      path's points before the fold, least-squares fits of ``lambda_crit^2 = a (tau_c - tau)``
      (fold) and ``lambda_crit = b (tau_c - tau)`` (crossing), each one's ``tau_c`` and
      relative residual; ``exponent``: the slope of ``log lambda_crit`` against
      ``log(tau_c - tau)`` (fold: 1/2), ``tangent_exponent`` that of ``log |dH/dtau|``
      (fold: -1/2) and ``prefactor`` the values ``|dH/dtau| sqrt(tau_c - tau)`` (steady
      at a fold), with the arclength ``tau_c`` where there is one.
      ``lambda_crit`` is the eigenvalue of the mode that carries the tangent
      (``critical_mode``), not necessarily the lowest.
    - ``beyond``: the unguarded corrector (any index) from the predictor at
      ``tau_fail``: its status, index, loss and whether it stayed on the branch.
    - ``arclength``: what the path through the end did (``stopped``, turns, index changes,
      its points' records).
    - ``partner``: at a fold, the index-1 critical point the path reaches on the other
      sheet, Newton-polished at the natural branch's ``tau_last``: its index, loss,
      ``lambda_min``, ``lambda_crit`` and distance modulo rotations from the minimum
      there (at a fold the two critical eigenvalues are opposite to leading order).
    """

    kind: str
    tau_c: float
    bracket: tuple
    loss: float
    gap: float
    lambda_min: float
    fit: dict
    beyond: dict
    partner: dict
    reason: str
    natural_bracket: tuple = (math.nan, math.nan)
    arclength: dict = dataclasses.field(default_factory=dict)
    fold_point: np.ndarray | None = None

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "fold_point"}
        return out | {"bracket": list(self.bracket), "natural_bracket": list(self.natural_bracket)}


def _line_root(tau, y) -> dict:
    """``y = a (tau_c - tau)`` by least squares: its root ``tau_c`` and relative residual."""
    X = np.stack([np.ones_like(tau), tau], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    tau_c = float(-coef[0] / coef[1]) if coef[1] != 0 else math.nan
    return {"tau_c": tau_c, "relative_residual": float(np.linalg.norm(X @ coef - y) / np.linalg.norm(y))}


def _fits(tau, lam, dH, sign: float, tau_c=None) -> dict:
    """The laws near an end (``Ending.fit``): ``lam`` the critical eigenvalue, ``dH`` ``|dH/dtau|``."""
    tau, lam, dH = (np.asarray(a, np.float64) for a in (tau, lam, dH))
    out = {
        "fold": _line_root(tau, lam**2),
        "crossing": _line_root(tau, lam),
        # |dH/dtau| ~ C (tau_c - tau)^(-1/2) at a fold: |dH/dtau|^-2 is linear in tau.
        "tangent": _line_root(tau, dH**-2.0),
        "points": int(tau.size),
    }
    tau_c = out["fold"]["tau_c"] if tau_c is None else float(tau_c)
    dist = sign * (tau_c - tau)
    ok = (dist > 0) & (lam > 0)
    out["tau_c_used"] = tau_c
    if np.sum(ok) >= 2:
        x, order = np.log(dist[ok]), np.argsort(dist[ok])
        out["exponent"] = float(np.polyfit(x, np.log(lam[ok]), 1)[0])
        # The critical eigenvalue's law holds once its mode dominates the tangent: the closest points.
        near = order[: max(2, min(4, order.size))]
        out["exponent_near"] = float(np.polyfit(x[near], np.log(lam[ok][near]), 1)[0])
        out["tangent_exponent"] = float(np.polyfit(x, np.log(dH[ok]), 1)[0])
        out["prefactor"] = (dH[ok] * np.sqrt(dist[ok])).tolist()
        out["distance"] = dist[ok].tolist()
        out["lambda_crit"] = lam[ok].tolist()
    else:
        out["exponent"] = out["exponent_near"] = out["tangent_exponent"] = math.nan
        out["prefactor"], out["distance"], out["lambda_crit"] = [], [], []
    return out


def fold_vertex(turn: dict, sign: float) -> dict:
    """``tau_c`` and its bracket from the two converged points that straddle a fold (``refine_turn``).

    Near the vertex ``dtau/ds = -kappa (s - s_c)``: ``kappa`` from the straddling
    points' slopes, and from the one closer to the vertex ``tau_c = tau_p + sign
    (dtau/ds)_p^2 / (2 kappa)`` (``sign``: the direction of ``tau`` before the turn).
    The bracket runs from the farthest converged ``tau`` to ``tau_p`` plus twice that
    correction and the rounding of ``tau`` (``4 eps tau``), widened on both sides by
    ``tau_error``: the ``tau`` component of the Newton increment at the two points (to first
    order, how far their residual gradients leave each from the exact path).
    """
    lo, hi = turn["lo"], turn["hi"]
    f_lo, f_hi = float(lo.b.tangent_tau), float(hi.b.tangent_tau)
    kappa = abs(f_lo - f_hi) / max(hi.s - lo.s, 1e-300)
    near = lo if abs(f_lo) <= abs(f_hi) else hi
    correction = float(near.b.tangent_tau) ** 2 / (2.0 * kappa) if kappa > 0 else math.inf
    tau_c = near.tau + sign * correction
    err = max(abs(float(lo.b.newton_tau)), abs(float(hi.b.newton_tau)))
    reached = (max(lo.tau, hi.tau) if sign > 0 else min(lo.tau, hi.tau)) - sign * err
    far = near.tau + sign * (2.0 * correction + 4.0 * np.finfo(float).eps * near.tau + err)
    return {
        "tau_c": float(tau_c),
        "bracket": sorted([float(reached), float(far)]),
        "tau_error": err,
        "kappa": float(kappa),
        "correction": float(correction),
        "straddle": [
            {
                "tau": x.tau,
                "s": x.s,
                "dtau_ds": float(x.b.tangent_tau),
                "index": int(x.b.index),
                "lambda_crit": float(x.b.lambda_crit),
                "grad_norm": float(x.b.grad_norm),
                "loss": float(x.b.loss),
            }
            for x in (lo, hi)
        ],
        "H": near.H,
    }


#: Newton steps towards a fold's partner from its predicted place (quadratic convergence from ~1e-3).
PARTNER_NEWTON_STEPS = 8


def fold_partner(arc: dict, turn: dict, labels, tau_ref: float, H_ref, local_ref: Local, gtol: float) -> dict:
    """The other critical point of a fold at ``tau_ref``: from the path's point past the turn whose
    ``tau`` is nearest ``tau_ref``, Newton at ``tau_ref`` (index-blind: the nearest critical point)."""
    after = [p for p in arc["points"] if p.s > turn["hi"].s - 1e-15]
    start = min(after, key=lambda p: abs(p.tau - tau_ref))
    X, other = newton_polish(start.H, labels, tau_ref, PARTNER_NEWTON_STEPS)
    distance = rotation_distance(X, H_ref)
    tol = max(gtol, 2.0 * float(other.grad_rounding))
    return {
        "found": bool(float(other.grad_norm) <= tol and int(other.index) == 1 and distance > 0),
        "tau": float(tau_ref),
        "start_tau": float(start.tau),
        "grad_norm": float(other.grad_norm),
        "index": int(other.index),
        "loss": float(other.loss),
        "loss_minus_minimum": float(other.loss) - float(local_ref.loss),
        "lambda_min": lambda_min(other),
        "lambda_crit": float(other.lambda_crit),
        "minimum_lambda_crit": float(local_ref.lambda_crit),
        "distance": distance,
    }


def soft_cubic(H, labels, tau, v, s: float = 1e-2) -> float:
    """``D^3 f[v, v, v]`` along the unit tangent ``v`` from ``f'(s) + f'(-s) = D3 s^2 + O(s^4)``.

    ``f(s) = L(R_H(s v))``; ``f'`` by forward differentiation along the line.
    """
    with precision.float64(), precision.float64_placement():
        Hj, vj = jnp.asarray(H, jnp.float64), jnp.asarray(v, jnp.float64)
        total = 0.0
        for t in (s, -s):
            _, slope = _line_slope(Hj, vj, jnp.asarray(labels), jnp.asarray(float(tau)), jnp.asarray(t))
            total += float(slope)
    return total / s**2


@jax.jit
def _line_slope(H, v, labels, tau, t):
    return jax.jvp(lambda x: loss.sum_loss(oblique.retract(H, x * v), labels, tau), (t,), (jnp.ones_like(t),))


def diagnose_end(
    branch: Branch,
    labels,
    *,
    fit_points: int = 8,
    arclength: ArclengthSettings = ArclengthSettings(),
) -> Ending:
    """What happens at the end of ``branch`` (module docstring): fold, crossing, merge, or the range's end.

    Checked, not guessed: the natural corrector's look past the end (``beyond``); the
    pseudo-arclength path from the last point (``follow_arclength``), which turns
    back at a fold (refined to the vertex and continued on the other sheet to the
    index-1 partner at ``tau_last``) and changes index without turning at a crossing;
    and the laws of the critical eigenvalue and of ``|dH/dtau|`` on the way (``fit``).
    """
    labels = problems.check_labels(labels)
    if not isinstance(branch, Branch):
        raise ValueError(f"branch must be a Branch, got {type(branch).__name__}")
    if not isinstance(arclength, ArclengthSettings):
        raise ValueError(f"arclength must be an ArclengthSettings, got {type(arclength).__name__}")
    H_last = branch.points[-1]
    last = {name: np.asarray(v)[-1] for name, v in branch.fields.items()}
    natural = (branch.tau_last, branch.tau_fail)
    common = {
        "loss": float(last["loss"]),
        "gap": float(last["gap"]),
        "lambda_min": float(last["lambda_min"]),
        "natural_bracket": natural,
    }
    if branch.reached_end:
        return Ending("reached_end", math.nan, natural, fit={}, beyond={}, partner={}, reason="", **common)
    sign = 1.0 if branch.tau_fail > branch.tau_last else -1.0
    settings = branch.settings
    local = analyse(H_last, labels, branch.tau_last)
    s = step(
        H_last,
        labels,
        branch.tau_last,
        branch.tau_fail - branch.tau_last,
        settings,
        local=local,
        max_index=-1,
    )
    beyond = {
        "tau": s.tau,
        "status": s.status,
        "index": int(s.local.index) if s.local is not None else -1,
        "loss": float(s.local.loss) if s.local is not None else math.nan,
        "lambda_min": lambda_min(s.local) if s.local is not None else math.nan,
        "on_branch": bool(s.status == "converged" and s.corrected <= s.allowed),
        "corrected": s.corrected,
        "allowed": s.allowed,
    }
    m = min(fit_points, len(branch.tau))
    nat = (
        np.asarray(branch.tau)[-m:],
        np.asarray(branch.lambda_crit)[-m:],
        np.asarray(branch.tangent_norm)[-m:],
        np.asarray(branch.newton_norm)[-m:],
    )
    if last["kind"] == "global_min":
        fit = _fits(*nat[:3], sign) if m >= 3 else {}
        reason = "the last point is a global minimum (the gap to L* vanished)"
        return Ending(
            "merges_global", math.nan, natural, fit=fit, beyond=beyond, partner={}, reason=reason, **common
        )

    arc = follow_arclength(
        H_last, labels, branch.tau_last, arclength, direction=sign, tau_stop=branch.tau_last
    )
    summary = {
        "stopped": arc["stopped"],
        "turns": len(arc["turns"]),
        "index_changes": [
            {"tau": [p.tau, q.tau], "index": [int(p.b.index), int(q.b.index)]}
            for p, q in arc["index_changes"]
        ],
        "points": arc["records"],
        "settings": arclength.to_json(),
    }
    gtol = corrector_gtol(H_last, labels, branch.tau_last, settings.gtol)
    if arc["turns"]:
        turn = arc["turns"][0]
        vertex = fold_vertex(turn, sign)
        H_c = vertex.pop("H")
        summary["vertex"] = vertex
        before = [r for r in arc["records"] if r["s"] < turn["lo"].s and r["index"] == 0]
        taus = np.concatenate([nat[0], [r["tau"] for r in before]])
        lams = np.concatenate([nat[1], [r["lambda_crit"] for r in before]])
        dHs = np.concatenate([nat[2], [r["dH_dtau"] for r in before]])
        errs = np.concatenate([nat[3], [r["newton_norm"] for r in before]])
        # A point measures the laws only if its own error (|A^+ g|, first order) is below 1% of its
        # distance to the fold along the branch, int |dH/dtau| dtau = 2 |dH/dtau| (tau_c - tau).
        # (Near a fold the natural corrector's |g| ~ 1e-10 over lambda ~ 1e-7 can exceed it.)
        usable = errs <= 0.01 * 2.0 * dHs * np.abs(vertex["tau_c"] - taus)
        fit = _fits(taus[usable], lams[usable], dHs[usable], sign, vertex["tau_c"])
        fit["excluded"] = int(np.sum(~usable))
        partner = fold_partner(arc, turn, labels, branch.tau_last, H_last, local, gtol)
        # And nearer the fold: at the path's last converged minimum before the refinement.
        if before and before[-1]["s"] > 0:
            p_near = max(
                (p for p in arc["points"] if 0 < p.s < turn["lo"].s and int(p.b.index) == 0),
                key=lambda p: p.s,
            )
            partner["near"] = fold_partner(
                arc, turn, labels, p_near.tau, p_near.H, analyse(p_near.H, labels, p_near.tau), gtol
            )
        # Across the turn the critical eigenvalue changes sign: at the straddling points it may lie
        # within the Hessian's rounding (index 0 on both), so the index is read one step out.
        indices = [int(turn["before"].b.index), int(turn["after"].b.index)]
        signs = [float(np.sign(p["lambda_crit"])) for p in vertex["straddle"]]
        if partner["found"] and indices == [0, 1] and signs == [1.0, -1.0]:
            kind = "fold"
            reason = (
                "the arclength path turns back in tau (dtau/ds changes sign between converged points, "
                "where the critical eigenvalue changes sign; index 0 before the turn, 1 after) and "
                "reaches an index-1 partner on the other sheet"
            )
        else:
            kind = "undetermined"
            reason = (
                f"the arclength path turns back, but the indices before and after the turn are {indices}, "
                f"the critical eigenvalue's signs at the vertex {signs}, and the partner search found "
                f"index {partner['index']} at |grad| {partner['grad_norm']:.2g}"
            )
        return Ending(
            kind,
            vertex["tau_c"],
            tuple(vertex["bracket"]),
            fit=fit,
            beyond=beyond,
            partner=partner,
            reason=reason,
            arclength=summary,
            fold_point=H_c,
            **common,
        )
    fit = _fits(*nat[:3], sign) if m >= 3 else {}
    past = [(p, q) for p, q in arc["index_changes"] if sign * (q.tau - branch.tau_last) > 0]
    if past:
        p, q = past[0]
        kind = "crossing"
        reason = (
            f"the arclength path goes on past the end without turning, its index changing from "
            f"{int(p.b.index)} to {int(q.b.index)} between tau {p.tau:.10g} and {q.tau:.10g}"
        )
        bracket = tuple(sorted((p.tau, q.tau)))
        tau_c = 0.5 * (p.tau + q.tau)
    elif beyond["on_branch"] and beyond["index"] >= 1:
        kind, reason = "crossing", "a critical point of index >= 1 continues the branch past its end"
        bracket, tau_c = natural, 0.5 * sum(natural)
    else:
        kind, bracket, tau_c = "undetermined", natural, 0.5 * sum(natural)
        reason = (
            f"the arclength path neither turns nor changes index (stopped: {arc['stopped']}, "
            f"{len(arc['points'])} points, last tau {arc['points'][-1].tau:.10g})"
        )
    return Ending(
        kind,
        tau_c,
        bracket,
        fit=fit,
        beyond=beyond,
        partner={"found": False},
        reason=reason,
        arclength=summary,
        **common,
    )


# --------------------------------------------------------------------------
# A family: branches joined where the minimum falls past a fold


def descent_bracket(H, labels, tau_lo: float, tau_hi: float, *, steps: int = 12) -> dict:
    """Where a minimum stops existing, by descents: bisect ``[tau_lo, tau_hi]`` on whether the descent
    from ``H`` (the branch's last point, at ``tau_lo``; moved by the tangent predictor to each ``tau``)
    stays on a proven strict spurious minimum near ``H``.

    Independent of the corrector (a descent, not Newton), so it also brackets ends the
    corrector cannot approach (a branch racing at ``|dH/dtau| >> 1``). "Near ``H``": at
    less than a tenth of the distance (modulo rotations) to where the descent lands at
    ``tau_hi``, which must be elsewhere. Returns the bracket, and per tried ``tau`` the
    landing's loss, kind, ``lambda_min`` (from ``verdict``) and distance.
    """
    H = np.asarray(H, np.float64)
    tangent = analyse(H, labels, tau_lo).tangent

    def start(tau):  # the tangent predictor: the branch may move fast (|dH/dtau| ~ 1e4 seen)
        with precision.float64(), precision.float64_placement():
            return np.asarray(oblique.retract(jnp.asarray(H), (tau - tau_lo) * jnp.asarray(tangent)))

    far = descend(start(tau_hi), labels, tau_hi)
    c = verdict.classify(far, labels, tau_hi)
    reach = rotation_distance(far, H)
    tried = [
        {
            "tau": tau_hi,
            "loss": float(c.loss),
            "kind": str(c.kind),
            "strict_certified": bool(c.strict_certified),
            "lambda_min": float(c.lambda_min),
            "distance": reach,
            "stays": False,
        }
    ]
    lo, hi, last = float(tau_lo), float(tau_hi), None
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        X = descend(start(mid), labels, mid)
        c = verdict.classify(X, labels, mid)
        dist = rotation_distance(X, H)
        stays = bool(c.kind == "spurious_min" and c.strict_certified and dist < 0.1 * reach)
        tried.append(
            {
                "tau": mid,
                "loss": float(c.loss),
                "kind": str(c.kind),
                "strict_certified": bool(c.strict_certified),
                "lambda_min": float(c.lambda_min),
                "distance": dist,
                "stays": stays,
            }
        )
        if stays:
            lo, last = mid, tried[-1]
        else:
            hi = mid
    return {"bracket": [lo, hi], "last_minimum": last, "tried": tried}


@dataclasses.dataclass(frozen=True)
class Family:
    """Branches followed one after the other (``follow_family``) and what each ended with.

    ``branches`` and ``endings`` pair up; ``landings`` records, after each
    ending but the last, the descent from just past it (``tau``, ``loss``,
    ``kind``, ``decided_by``, ``strict_certified``); ``tau_proven`` is the
    largest ``tau`` at which any branch holds a proven strict spurious minimum.
    """

    branches: tuple
    endings: tuple
    landings: tuple
    tau_proven: float

    def to_json(self) -> dict:
        return {
            "tau_proven": self.tau_proven,
            "branches": [
                b.to_json() | {"ending": e.to_json()}
                for b, e in zip(self.branches, self.endings, strict=True)
            ],
            "landings": list(self.landings),
        }


def descend(H0, labels, tau, *, tol: float = 1e-10, max_steps: int = 50000) -> np.ndarray:
    """The scan's float64 descent (``scanner.solve_one``) from ``H0`` at ``tau``: where a minimum falls to."""
    settings = scanner.ScanSettings(tol=tol, x64=True, max_steps=max_steps)
    with precision.float64(), precision.float64_placement():
        return np.asarray(
            _descend(jnp.asarray(H0, jnp.float64), jnp.asarray(labels), jnp.asarray(float(tau)), settings)
        )


@functools.partial(jax.jit, static_argnames="settings")
def _descend(H0, labels, tau, settings):
    return scanner.solve_one(H0, labels, tau, settings)[0]


def follow_family(
    H0,
    labels,
    tau_start,
    tau_end,
    settings: ContinuationSettings = ContinuationSettings(),
    *,
    past: float = 1e-5,
    max_branches: int = 8,
    progress: Callable | None = None,
) -> Family:
    """Continue ``H0`` (``continue_minimum``); where the branch folds, descend from ``past`` beyond the
    bracket and continue the minimum it lands on, while that is a proven strict spurious minimum.

    The family ends where a descent lands on the global minimum (or on a point
    that is not a proven strict spurious minimum), where a branch ends other
    than by a fold, at ``tau_end``, or after ``max_branches`` branches.
    """
    problems.check_positive("past", past)
    problems.check_integer("max_branches", max_branches)
    branches, endings, landings = [], [], []
    H, tau = np.asarray(H0, np.float64), float(tau_start)
    sign = 1.0 if tau_end > tau_start else -1.0
    while len(branches) < max_branches:
        branch = continue_minimum(H, labels, tau, tau_end, settings, progress=progress)
        ending = diagnose_end(branch, labels)
        branches.append(branch)
        endings.append(ending)
        if ending.kind != "fold":
            break
        # From the fold point (the path's vertex), just past the fold's bracket.
        edge = max(ending.bracket) if sign > 0 else min(ending.bracket)
        tau = edge + sign * past
        if sign * (tau_end - tau) <= 0:
            break
        start = ending.fold_point if ending.fold_point is not None else branch.points[-1]
        X = descend(start, labels, tau)
        c = verdict.classify(X, labels, tau)
        landings.append(
            {
                "tau": tau,
                "loss": float(c.loss),
                "gap": float(c.gap),
                "kind": str(c.kind),
                "decided_by": str(c.decided_by),
                "strict_certified": bool(c.strict_certified),
                "loss_drop": float(branch.loss[-1]) - float(c.loss),
            }
        )
        if not (c.kind == "spurious_min" and c.strict_certified):
            break
        H = X
    proven = [b.tau_proven for b in branches if math.isfinite(b.tau_proven)]
    return Family(
        tuple(branches),
        tuple(endings),
        tuple(landings),
        max(proven, key=lambda t: sign * t) if proven else math.nan,
    )
