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
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.explore import critical
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
    grad_rounding: jax.Array  # loss.gradient_rounding_bound: the smallest gradient float64 can resolve here
    eigs: jax.Array  # (N,) the Hessian's spectrum on the orbit complement ascending, +inf for the modes
    bound: jax.Array  # the rounding bound of the computed Hessian (hessian.hessian_rounding_bound)
    index: jax.Array  # eigenvalues below -bound on the orbit complement (critical.index_beyond_symmetry)
    tangent: jax.Array  # (n, d) dH/dtau = -A^+ d_tau grad on the orbit complement
    newton: jax.Array  # (n, d) the Newton step -A^+ grad on the orbit complement
    soft: jax.Array  # (n, d) unit eigenvector of the smallest eigenvalue on the orbit complement
    dloss_dtau: jax.Array  # the partial derivative d_tau L at fixed H (= dL/dtau along a branch)
    lambda_crit: jax.Array  # the eigenvalue of the mode that carries the tangent most (critical_mode)
    crit: jax.Array  # (n, d) its unit eigenvector


def riemannian_gradient(H, labels, tau):
    return oblique.riemannian_gradient(H, jax.grad(loss.sum_loss)(H, labels, tau))


def orbit_complement(H, labels, tau):
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
    grad, dgrad = jax.jvp(lambda t: riemannian_gradient(H, labels, t), (tau,), (jnp.ones_like(tau),))
    M, U, _, _, w, V, complement = orbit_complement(H, labels, tau)
    bound = hessian.hessian_rounding_bound(H, labels, tau, M, hessian.hessian_matrix(H, labels, tau, True))

    def solve(r):  # -A^+ r on the orbit complement, in ambient coordinates
        c = V.T @ oblique.to_coordinates(U, r).reshape(N)
        y = -V @ jnp.where(complement, c / jnp.where(complement, w, 1.0), 0.0)
        return oblique.to_ambient(U, y.reshape(n, d - 1))

    tangent, newton = solve(dgrad), solve(grad)
    soft = oblique.to_ambient(U, V[:, 0].reshape(n, d - 1))
    eigs = jnp.where(complement, w, jnp.inf)
    index = jnp.sum(complement & (w < -bound))
    rounding = loss.gradient_rounding_bound(H, labels, tau)
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
    """``max(gtol, 2 loss.gradient_rounding_bound)`` at ``H``: the gradient a corrected point must reach.

    A gradient below twice its rounding bound cannot be asked of float64 (near
    a collapsed class at small ``tau`` the bound is ``~eps n / tau^2``, ``~1e-10``
    at ``n = 24``, ``tau = 0.024``).
    """
    with precision.float64(), precision.float64_placement():
        bound = float(_rounding(jnp.asarray(H, jnp.float64), jnp.asarray(labels), jnp.asarray(float(tau))))
    return max(float(gtol), 2.0 * bound)


@jax.jit
def _rounding(H, labels, tau):
    return loss.gradient_rounding_bound(H, labels, tau)


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
