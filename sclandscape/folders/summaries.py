"""TODO docstring"""

from __future__ import annotations

import numpy as np
import scipy.stats

from sclandscape.core.settings import ScanSettings, Status
from sclandscape.folders import atomic
from sclandscape.theory import metrics


def classify_records(rec: dict) -> np.ndarray:
    """Each run's kind as the scan recorded it (``ResultsError`` for records without one)."""
    if "kind" not in rec:
        raise atomic.ResultsError("the runs carry no 'kind' (written by an older version): rerun the scan")
    return np.asarray(rec["kind"]).astype("<U13")


#: Kinds grouped into distinct minima by ``summarize``.
MINIMA = ("global_min", "spurious_min", "local_min", "degenerate")


#: ``runs.npz``'s integer ``status`` -> name (``Status``, lower case); summary.json's ``status_codes``.
STATUS_NAMES = {int(s): s.name.lower() for s in Status}


def status_names(status) -> np.ndarray:
    """The name of each ``status`` code (``STATUS_NAMES``; a code it lacks is written as its number)."""
    codes = np.asarray(status).astype(np.int64)
    return np.array([STATUS_NAMES.get(int(c), str(int(c))) for c in codes.ravel()], dtype="<U16").reshape(
        codes.shape
    )


def binomial_upper_bound(count: int, trials: int, confidence: float = 0.95) -> float:
    r"""Clopper-Pearson exact one-sided upper confidence bound on a binomial proportion.

    ``count`` successes in ``trials`` independent trials, ``X ~ Binomial(N, p)``.
    The bound ``p_U(x)`` is the largest ``p`` under which seeing at most ``x``
    successes still has probability at least ``alpha = 1 - confidence``::

        P(X <= x; p_U) = alpha        (x < N),        p_U = 1   (x = N).

    Coverage: ``F(x; p) = P(X <= x; p)`` decreases in ``p``, so
    ``p_U(x) < p`` exactly when ``F(x; p) < alpha``; the outcomes ``x`` with
    ``F(x; p) < alpha`` form a lower tail of probability below ``alpha``, so
    ``P(p_U(X) >= p) >= 1 - alpha`` for every ``p`` (exact, conservative, no
    normal approximation). With
    ``P(X <= x; p) = 1 - I_p(x + 1, N - x)`` (regularised incomplete beta)
    the bound is the ``confidence`` quantile of ``Beta(x + 1, N - x)``. For
    ``x = 0`` the equation is ``(1 - p_U)^N = alpha``, so
    ``p_U = 1 - alpha^(1/N) <= -ln(alpha) / N``, which is ``2.996 / N`` at
    95%: the "rule of three" (``3 / N``).
    """
    if isinstance(trials, bool) or int(trials) != trials or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    if isinstance(count, bool) or int(count) != count or not 0 <= count <= trials:
        raise ValueError(f"count must be an integer in 0..{int(trials)}, got {count!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    x, n = int(count), int(trials)
    if x == n:
        return 1.0
    if x == 0:  # closed form, exact to rounding (the beta quantile agrees to ~1e-15)
        return float(-np.expm1(np.log1p(-confidence) / n))
    return float(scipy.stats.beta.ppf(confidence, x + 1, n - x))


def spurious_fraction(count: int, trials: int) -> dict:
    """``{"count", "runs", "observed", "upper_95"}``: runs ending at a spurious minimum, and the bound.

    ``upper_95`` is ``binomial_upper_bound(count, runs, 0.95)``: with 95%
    confidence, at most this fraction of random initialisations (the scan's
    distribution) ends at a spurious minimum.
    """
    return {
        "count": int(count),
        "runs": int(trials),
        "observed": int(count) / int(trials),
        "upper_95": binomial_upper_bound(count, trials, 0.95),
    }


def _point_entry(points: dict, p: int, count: int, global_loss: float) -> dict:
    """The summary's entry of distinct point ``p`` (``points.npz``'s index) reached by ``count`` runs."""

    def field(name, cast, default=None):
        return cast(points[name][p]) if name in points else default

    kind = str(points["kind"][p])
    fixed, total = field("relabel_stabilizer", int, 0), field("relabellings", int, 0)
    return {
        "point": p,
        "loss": float(points["loss"][p]),
        "gap": float(points["loss"][p] - global_loss),
        "count": count,
        "kind": kind,
        "decided_by": str(points["decided_by"][p]),
        "certified_global": kind == "global_min",
        "index": int(points["index"][p]),
        "strict_certified": bool(points["strict_certified"][p]),
        "certified_radius": float(points["certified_radius"][p]),
        "proof_reason": field("proof_reason", str, ""),
        "lifted_index": int(points["lifted_index"][p]),
        "lambda_min": field("lambda_min", float),
        "flat_dim": field("flat_dim", int, 0),
        "flat_scale": field("flat_scale", float, 0.0),
        "tolerances": {name: field(name, float) for name in ("tol", "tol_round", "tol_grad", "gap_tol")},
        "radius": field("refined_radius", float),
        "merged_points": field("merged_points", int, 1),
        # The point's orbit under relabelling of equal-size classes: relabellings / stabiliser.
        "relabel_orbit": total // fixed if fixed else None,
        "kinds": {kind: count},
    }


def _distinct_minima(rec: dict, kind: np.ndarray, points: dict | None, global_loss: float) -> list[dict]:
    """One entry per distinct minimum: the scan's distinct points (``point``), counted over runs."""
    entries = []
    point = np.asarray(rec.get("point", np.full(kind.size, -1)))
    if points is not None and len(points.get("loss", [])):
        for p in range(len(points["loss"])):
            members = point == p
            if members.any() and str(points["kind"][p]) in MINIMA:
                entries.append(_point_entry(points, p, int(members.sum()), global_loss))
    # Runs judged by the cheap tests alone (no representative point): one entry per kind.
    for name in MINIMA:
        alone = (kind == name) & (point < 0)
        if alone.any():
            losses = rec["loss"][alone]
            entries.append(
                {
                    "point": -1,
                    "loss": float(np.min(losses)),
                    "gap": float(np.min(losses) - global_loss),
                    "count": int(alone.sum()),
                    "kind": name,
                    "decided_by": ",".join(
                        sorted(set(np.asarray(rec.get("decided_by", kind))[alone].tolist()))
                    ),
                    "certified_global": name == "global_min",
                    "index": 0,
                    "strict_certified": False,
                    "certified_radius": None,
                    "proof_reason": "no representative point (judged by the gradient alone)",
                    "lifted_index": -1,
                    "kinds": {name: int(alone.sum())},
                }
            )
    entries.sort(key=lambda e: e["loss"])
    return entries


def summarize(
    rec: dict,
    global_loss: float,
    settings: ScanSettings,
    points: dict | None = None,
    global_rank=None,
) -> dict:
    """The summary: counts per kind and per deciding test, and the distinct minima.

    ``points``: the scan's distinct critical points (``merge_points``); each
    run's ``point`` field says which one it reached. When ``d < rank M*``
    (``global_rank``) ``L*`` is not attainable: the minima are ``local_min``
    and each gets its ``gap_to_lowest``, the difference to the lowest found.
    """
    kind = classify_records(rec)
    distinct = _distinct_minima(rec, kind, points, global_loss)
    lowest = min((e["loss"] for e in distinct), default=None)
    for e in distinct:
        e["gap_to_lowest"] = e["loss"] - lowest
    decided = np.asarray(rec.get("decided_by", np.full(kind.size, "")))
    counts = {k: int(np.sum(kind == k)) for k in metrics.KINDS}
    n_inits = int(rec["run"].size)
    extra = {}
    if "first_order_loss" in rec:  # adam / sgd scans: where the optimiser itself got, before the polish
        fo_gap = np.asarray(rec["first_order_loss"]) - global_loss
        extra["first_order"] = {
            "optimizer": settings.optimizer,
            "n_at_optimum": int(np.sum(np.abs(fo_gap) <= np.asarray(rec["first_order_gap_tol"]))),
            "median_grad_norm": float(np.median(rec["first_order_grad_norm"])),
            "median_gap": float(np.median(fo_gap)),
            "polished": bool(settings.polish),
        }
    summary = {
        "n_inits": n_inits,
        "global_loss": float(global_loss),
        "counts": counts,
        "spurious_fraction": spurious_fraction(counts["spurious_min"], n_inits) if n_inits else None,
        "decided_by": {d: int(np.sum(decided == d)) for d in metrics.DECIDERS if np.any(decided == d)},
        "distinct_minima": distinct,
        "best_loss": float(np.min(rec["loss"])) if rec["loss"].size else None,
        "lowest_minimum": lowest,
        "escapes": int(np.sum(rec.get("escapes", np.zeros(1)))),
        "status_counts": {
            STATUS_NAMES.get(int(s), str(s)): int(np.sum(rec["status"] == s))
            for s in np.unique(rec["status"])
        },
        "status_codes": {str(code): name for code, name in STATUS_NAMES.items()},
        "classification": (
            "every run: gradient, certificate and gap tests; runs they leave open: refined in float64 and "
            "grouped modulo rotations, reflections, sample permutations and relabellings; each distinct "
            "critical point: its float64 "
            "spectrum with the symmetry modes removed, the a-posteriori proof and (below rank M*) the "
            "lifting test; saddles escaped and continued (docs/maths.md §5)"
        ),
        "tolerances": {
            "tol": settings.tol,
            "gtol": settings.gtol_factor * settings.tol,
            "grouping": "derived per point (census.same_point): loss within both gap tolerances, then the "
            "aligned distance within both radii, or a flat path for flat sets",
        },
        **extra,
    }
    if global_rank is not None:
        summary["global_rank"] = int(global_rank)
    return summary


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_summary(summary: dict, path: str) -> dict:
    """``summary`` (read from ``path``) has the shape ``summarize`` writes; else ``ResultsError``."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise atomic.ResultsError(f"{path}: {what}")

    for key in ("n_inits", "global_loss", "counts", "distinct_minima"):
        need(key in summary, f"no {key!r}")
    need(_is_int(summary["n_inits"]) and summary["n_inits"] >= 1, "'n_inits' must be an integer >= 1")
    need(_is_number(summary["global_loss"]), "'global_loss' must be a number")
    counts = summary["counts"]
    need(
        isinstance(counts, dict) and all(_is_int(counts.get(k)) and counts[k] >= 0 for k in metrics.KINDS),
        f"'counts' must give a count >= 0 for each of {', '.join(metrics.KINDS)}",
    )
    minima = summary["distinct_minima"]
    entry = {
        "loss": _is_number,
        "gap": _is_number,
        "count": _is_int,
        "certified_global": lambda v: v in (True, False),
    }
    need(
        isinstance(minima, list)
        and all(isinstance(m, dict) and all(f(m.get(k)) for k, f in entry.items()) for m in minima),
        "'distinct_minima' must be a list of {loss, gap, count, certified_global}",
    )
    optional = {
        "best_loss": lambda v: v is None or _is_number(v),
        "grouping_tolerance": _is_number,
        "global_rank": lambda v: v is None or _is_int(v),
        "classification": lambda v: isinstance(v, str),
        "status_counts": lambda v: isinstance(v, dict) and all(_is_int(c) for c in v.values()),
    }
    for key, ok in optional.items():
        need(key not in summary or ok(summary[key]), f"{key!r} has the wrong type ({summary.get(key)!r})")
    return summary


def read_summary(path: str) -> dict:
    """A scan's ``summary.json``, checked (``check_summary``)."""
    return check_summary(atomic.read_json(path), path)
