"""How a branch ends: the diagnosis of its last points (fold, crossing, merge with the global minimum).

``diagnose_end`` reads the end of a ``continuation.Branch``: it follows the end
in arclength (``arclength``), and a turn of the path in ``tau`` with the critical
eigenvalue changing sign (index 0 before, 1 after) is a fold, located at its
vertex (``fold_vertex``) with its index-1 partner (``fold_partner``); the
square-root laws of ``|dH/dtau|`` and of the critical eigenvalue are fitted as a
check (``Ending``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.explore import arclength as arclength_lib
from sclandscape.explore import continuation
from sclandscape.numerics import loss, oblique


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


def fold_partner(
    arc: dict, turn: dict, labels, tau_ref: float, H_ref, local_ref: continuation.Local, gtol: float
) -> dict:
    """The other critical point of a fold at ``tau_ref``: from the path's point past the turn whose
    ``tau`` is nearest ``tau_ref``, Newton at ``tau_ref`` (index-blind: the nearest critical point)."""
    after = [p for p in arc["points"] if p.s > turn["hi"].s - 1e-15]
    start = min(after, key=lambda p: abs(p.tau - tau_ref))
    X, other = continuation.newton_polish(start.H, labels, tau_ref, PARTNER_NEWTON_STEPS)
    distance = continuation.rotation_distance(X, H_ref)
    tol = max(gtol, 2.0 * float(other.grad_rounding))
    return {
        "found": bool(float(other.grad_norm) <= tol and int(other.index) == 1 and distance > 0),
        "tau": float(tau_ref),
        "start_tau": float(start.tau),
        "grad_norm": float(other.grad_norm),
        "index": int(other.index),
        "loss": float(other.loss),
        "loss_minus_minimum": float(other.loss) - float(local_ref.loss),
        "lambda_min": continuation.lambda_min(other),
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
    branch: continuation.Branch,
    labels,
    *,
    fit_points: int = 8,
    arclength: arclength_lib.ArclengthSettings = arclength_lib.ArclengthSettings(),
) -> Ending:
    """What happens at the end of ``branch`` (module docstring): fold, crossing, merge, or the range's end.

    Checked, not guessed: the natural corrector's look past the end (``beyond``); the
    pseudo-arclength path from the last point (``follow_arclength``), which turns
    back at a fold (refined to the vertex and continued on the other sheet to the
    index-1 partner at ``tau_last``) and changes index without turning at a crossing;
    and the laws of the critical eigenvalue and of ``|dH/dtau|`` on the way (``fit``).
    """
    labels = problems.check_labels(labels)
    if not isinstance(branch, continuation.Branch):
        raise ValueError(f"branch must be a Branch, got {type(branch).__name__}")
    if not isinstance(arclength, arclength_lib.ArclengthSettings):
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
    local = continuation.analyse(H_last, labels, branch.tau_last)
    s = continuation.step(
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
        "lambda_min": continuation.lambda_min(s.local) if s.local is not None else math.nan,
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

    arc = arclength_lib.follow_arclength(
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
    gtol = continuation.corrector_gtol(H_last, labels, branch.tau_last, settings.gtol)
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
                arc,
                turn,
                labels,
                p_near.tau,
                p_near.H,
                continuation.analyse(p_near.H, labels, p_near.tau),
                gtol,
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
