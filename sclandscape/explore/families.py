"""Families of branches: continue a minimum, diagnose its end, descend past a fold, continue again.

``follow_family`` strings ``continuation.continue_minimum`` and ``ends.diagnose_end``
together: past a fold the minimum no longer exists, a descent (``descend``) finds the
minimum the configuration falls to, and that one is continued in turn.
``descent_bracket`` brackets the last branch's end by descents alone,
independently of the corrector.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.explore import continuation, ends, scanner
from sclandscape.numerics import oblique
from sclandscape.theory import verdict


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
    tangent = continuation.analyse(H, labels, tau_lo).tangent

    def start(tau):  # the tangent predictor: the branch may move fast (|dH/dtau| ~ 1e4 seen)
        with precision.float64(), precision.float64_placement():
            return np.asarray(oblique.retract(jnp.asarray(H), (tau - tau_lo) * jnp.asarray(tangent)))

    far = descend(start(tau_hi), labels, tau_hi)
    c = verdict.classify(far, labels, tau_hi)
    reach = continuation.rotation_distance(far, H)
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
        dist = continuation.rotation_distance(X, H)
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
    settings: continuation.ContinuationSettings = continuation.ContinuationSettings(),
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
        branch = continuation.continue_minimum(H, labels, tau, tau_end, settings, progress=progress)
        ending = ends.diagnose_end(branch, labels)
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
