r"""The census: every finished run judged and counted once per distinct critical point (docs/maths.md §5).

**Equivalence.** Two points are one critical point when one maps to the
other by the loss's symmetry group (an orthogonal ``Q``, rotations and
reflections; a permutation of samples within a class; a relabelling of
classes of equal size). ``same_point`` decides it on float64 points refined
to what float64 resolves:

- their losses agree within both points' gap tolerances
  (``metrics.gap_tolerance``: the loss's rounding plus ``2 sqrt(n) |grad|``);
- **isolated points** (no zero eigenvalue beyond the symmetry modes): their
  distance after alignment (``metrics.align``, an upper bound on the
  distance modulo the group) is at most ``r_a + r_b + alignment rounding``,
  where ``r`` is how far the point may be from its critical point: the
  proof's radius, or ``2 |A^+ g|`` (the Newton step on the orbit complement,
  the Newton-Kantorovich radius to first order) from its own spectrum; a run
  without a spectrum borrows the candidate's ``sigma`` (``r = 2 |g| / sigma``);
  the spectra of ``H H^T`` (invariant under the whole group, moved by at most
  ``2 sqrt(n)`` times the distance) must agree within that too;
- **flat sets** (zero eigenvalues beyond the symmetry modes that float64
  cannot separate, so ``r`` is unbounded along them): both are judged flat
  and the straight path between them after alignment (``flat_path``) stays
  within their loss tolerances: one connected flat set, at the loss's
  resolution. Its entry records the flat dimension and the scale of the
  eigenvalues called zero.

Global minima need no comparison: where ``d >= rank M*`` the relaxation's
optimum ``G*`` is unique, so every certified run lies on one orbit.

**The book.** A ``PointBook`` receives batches of finished runs (float64
embeddings and records, from the scan's scheduler) and, for each batch:

1. takes the cheap tests of every run from its records (``verdict.first_tests``);
2. refines the runs those tests leave open (``refine``: float64 trust regions
   until they stall at rounding, so that distances between copies of one
   point are what float64 resolves, not what the scan's tolerance left) and
   tests them again;
3. matches each remaining run against the known points (``same_point``); a
   run that matches none becomes a new point with one full verdict
   (``verdict.classify``: proof or spectrum, lifting) and its relabelling
   stabiliser; every run inherits its point's verdict;
4. moves each run judged a saddle off its saddle along the most negative
   curvature and continues it, then judges it again, up to ``escapes`` times.

``group_points`` applies the same rule to sets of points (points found by
different sessions or processes of one scan, the saddle catalogue's
constructions) with union-find, and ``merge`` numbers the result by loss:
the one numbering of a scan's points.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.numerics import loss, oblique
from sclandscape.numerics.optim import Status
from sclandscape.theory import hessian, metrics, optimum, verdict

#: Points sampled on the straight path between two flat points (``flat_path``).
PATH_POINTS = 32
#: The per-point fields ``same_point`` reads (``points.npz`` holds them, with ``H``).
MATCH_FIELDS = ("loss", "gap_tol", "kind", "sigma", "refined_radius", "grad_norm")


# --------------------------------------------------------------------------
# The rule


@functools.partial(jax.jit, static_argnames="count")
def _path_losses(A, B, labels, tau, count: int):
    s = jnp.arange(1, count + 1, dtype=A.dtype) / (count + 1)

    def at(t):
        X = (1 - t) * A + t * B
        norms = jnp.linalg.norm(X, axis=1, keepdims=True)
        bad = jnp.min(norms) < 1e-8  # antipodal rows: the straight path leaves the manifold
        return jnp.where(bad, jnp.inf, loss.sum_loss(X / norms, labels, tau))

    return jax.lax.map(at, s)


def flat_path(A, B, labels, tau, level: float, *, perms=None, count: int = PATH_POINTS) -> tuple[bool, float]:
    """``(flat, excess)``: whether the straight path from ``A`` to ``B`` (aligned) stays below ``level``.

    ``B`` is aligned onto ``A`` (``metrics.align``), the rows interpolated
    linearly and normalised at ``count`` interior points, and the loss
    evaluated there in float64; ``excess`` is the largest loss on the path
    minus ``level`` (the higher endpoint's loss plus both loss tolerances).
    A sufficient test of connection at the loss's resolution: a barrier
    narrower than ``1 / (count + 1)`` of the path can be missed.
    """
    al = metrics.align(A, B, labels, perms=perms)
    Bq = np.asarray(B, np.float64)[al.rows] @ al.Q
    with precision.float64():
        values = np.asarray(
            _path_losses(
                jnp.asarray(A, jnp.float64), jnp.asarray(Bq), jnp.asarray(labels), jnp.float64(tau), count
            )
        )
    excess = float(np.max(values)) - level
    return bool(excess <= 0.0), excess


def _radius(p: dict, other: dict) -> float:
    """How far ``p`` may lie from its critical point; a run (no spectrum) borrows ``other``'s sigma."""
    r = float(p["refined_radius"])
    if math.isnan(r):
        sigma = float(other["sigma"])
        return 2.0 * float(p["grad_norm"]) / sigma if sigma > 0 else math.inf
    return r


def _flat(p: dict) -> bool:
    return str(p["kind"]) == "degenerate" or math.isinf(float(p["refined_radius"]))


def same_point(a: dict, b: dict, labels, tau, *, perms=None) -> tuple[bool, float, float]:
    """``(same, distance, tolerance)``: whether ``a`` and ``b`` are one critical point (module docstring).

    ``a``, ``b``: dicts with ``H`` (float64, unit rows), ``spectrum``
    (``metrics.invariants``) and ``MATCH_FIELDS``; a run not yet judged has
    ``kind`` ``""`` and ``refined_radius``/``sigma`` NaN. For flat points
    ``distance`` is the path's excess over the loss level and ``tolerance`` 0.
    """
    level = max(float(a["loss"]), float(b["loss"]))
    ltol = float(a["gap_tol"]) + float(b["gap_tol"])
    if abs(float(a["loss"]) - float(b["loss"])) > ltol:
        return False, math.inf, math.nan
    ka, kb = str(a["kind"]), str(b["kind"])
    if ka and kb and ka != kb:
        return False, math.inf, math.nan
    if _flat(a) or _flat(b):
        if not ((_flat(a) or not ka) and (_flat(b) or not kb)):
            return False, math.inf, math.nan
        flat, excess = flat_path(a["H"], b["H"], labels, tau, level + ltol, perms=perms)
        return flat, excess, 0.0
    n, d = np.shape(a["H"])
    tol = _radius(a, b) + _radius(b, a) + metrics.alignment_rounding(n, d)
    if not math.isfinite(tol):
        return False, math.inf, tol
    spread = float(np.max(np.abs(a["spectrum"] - b["spectrum"])))
    if spread > 2.0 * math.sqrt(n) * tol + metrics.alignment_rounding(n, d):
        return False, math.inf, tol
    distance = metrics.align(a["H"], b["H"], labels, perms=perms, within=tol).distance
    return distance <= tol, distance, tol


class _UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def point_entry(H, labels, fields: dict) -> dict:
    """What ``same_point`` reads of one point: ``H`` (float64), its ``spectrum`` and ``MATCH_FIELDS``."""
    H = np.asarray(H, np.float64)
    entry = {name: fields[name] for name in MATCH_FIELDS}
    entry.update(H=H, spectrum=metrics.invariants(H, labels)["spectrum"])
    return entry


def _entries(points: dict, labels) -> list[dict]:
    fields = [{name: points[name][i] for name in MATCH_FIELDS} for i in range(len(points["loss"]))]
    return [point_entry(points["H"][i], labels, f) for i, f in enumerate(fields)]


def group_points(points: dict, labels, tau) -> np.ndarray:
    """The group of each point ``(m,)`` (its lowest member's index), by ``same_point`` and union-find.

    Points of kind ``global_min`` form one group (``G*`` is unique). Flat
    points are joined through chains of flat paths (connected components).
    """
    entries = _entries(points, labels)
    perms = metrics.class_permutations(np.bincount(np.asarray(labels)))
    uf = _UnionFind(len(entries))
    glob = [i for i, e in enumerate(entries) if str(e["kind"]) == "global_min"]
    for i in glob[1:]:
        uf.union(glob[0], i)
    for i, a in enumerate(entries):
        if str(a["kind"]) == "global_min":
            continue
        for j in range(i):
            if uf.find(i) != uf.find(j) and same_point(a, entries[j], labels, tau, perms=perms)[0]:
                uf.union(i, j)
    return np.array([uf.find(i) for i in range(len(entries))], np.int64)


def merge(points: dict, labels, tau) -> tuple[dict, np.ndarray]:
    """Group ``points`` (``group_points``) and number the groups by loss: ``(merged, image)``.

    ``merged`` holds one row per group, its representative the earliest
    session's member (``session``), then the one closest to its critical point
    (smallest ``refined_radius``, then gradient), and
    ``merged_points`` (how many points it joins); ``image[i]`` is point
    ``i``'s new index. Groups are sorted by the representative's loss (ties:
    kind order): the one numbering of a scan's points.
    """
    m = len(points.get("loss", []))
    if not m:
        return {}, np.zeros(0, np.int64)
    group = group_points(points, labels, tau)
    roots = sorted(set(group.tolist()))
    reps = []
    for g in roots:
        members = np.flatnonzero(group == g)
        # The earliest session's copy first (session ids grow with the start time, ``Scanner``), so a
        # scan interrupted and resumed keeps the copy its uninterrupted twin has; then the closest.
        session = np.asarray(points.get("session", np.zeros(m, np.int64)))[members]
        key = np.lexsort(
            (
                np.asarray(points["grad_norm"])[members],
                np.asarray(points["refined_radius"])[members],
                session,
            )
        )
        reps.append(int(members[key[0]]))
    kind_order = {k: i for i, k in enumerate(metrics.KINDS)}
    order = sorted(
        range(len(reps)),
        key=lambda r: (float(points["loss"][reps[r]]), kind_order.get(str(points["kind"][reps[r]]), 99)),
    )
    image = np.empty(m, np.int64)
    for new, r in enumerate(order):
        image[group == roots[r]] = new
    rows = [reps[r] for r in order]
    merged = {k: np.asarray(v)[rows] for k, v in points.items()}
    merged["merged_points"] = np.bincount(image, minlength=len(rows)).astype(np.int64)
    return merged, image


def merge_sessions(points: dict, run_point, run_session, labels, tau) -> tuple[dict, np.ndarray]:
    """Merge the points of several books (``session``, ``local`` name them) and renumber each run's point.

    ``points``: the concatenated ``PointBook.arrays`` of every session;
    ``run_point``/``run_session``: each run's ``point`` (its book's index,
    -1 for none) and ``session``. Returns ``(merged, point)``: ``merge``'s
    points (without ``session``/``local``, with ``count``, the runs that
    reached each) and each run's index into them.
    """
    run_point = np.asarray(run_point, np.int64)
    if not len(points.get("loss", [])):
        return {}, np.full(run_point.size, -1, np.int64)
    merged, image = merge(points, labels, tau)
    lookup = {
        (int(s), int(loc)): int(image[i])
        for i, (s, loc) in enumerate(zip(points["session"], points["local"], strict=True))
    }
    point = np.array(
        [
            lookup.get((int(s), int(p)), -1) if p >= 0 else -1
            for s, p in zip(run_session, run_point, strict=True)
        ],
        np.int64,
    )
    merged = {k: v for k, v in merged.items() if k not in ("session", "local")}
    merged["count"] = np.bincount(point[point >= 0], minlength=len(merged["loss"])).astype(np.int64)
    return merged, point


# --------------------------------------------------------------------------
# The book


class PointBook:
    """The distinct critical points of one scan and the judging of its runs (module docstring).

    Args:
      problem: the scan's ``problems.Problem``.
      optimum_: its ``optimum.GlobalOptimum``.
      settings: the scan's settings (``tol``, ``gtol_factor``, ``prove``,
        ``lift``, ``escapes`` are read).
      session: the id that names this book's points in shared results files.
      descend: ``descend(H) -> (H, steps, status, polish_evals, polish_iters)``, a
        whole float64 run from each row of ``H`` (after an escape step).
      records: ``records(H, status=None) -> dict`` of the float64 run records of each row (the
        certificate only where ``status``, when given, is converged).
      refine: ``refine(H) -> (H, iterations)``: each row minimised further in
        float64 until the trust region stalls at rounding.
    """

    def __init__(
        self,
        problem: problems.Problem,
        optimum_: optimum.GlobalOptimum,
        settings,
        session: int,
        *,
        descend: Callable,
        records: Callable,
        refine: Callable,
    ):
        self.problem = problem
        self.optimum = optimum_
        self.settings = settings
        self.session = session
        self._descend = descend
        self._records = records
        self._refine = refine
        self.points: list[dict] = []  # the distinct critical points judged so far
        self._global_point = -1
        self._perms = metrics.class_permutations(problem.counts)

    def judge(self, H, rec) -> dict:
        """Add each run's verdict to ``rec`` (in place; ``H`` refined in place) and return the new points."""
        size = rec["loss"].size
        rec.update(
            escapes=np.zeros(size, np.int64),
            point=np.full(size, -1, np.int64),
            point_distance=np.full(size, np.nan),
            point_tol=np.full(size, np.nan),
            gap_tol=np.full(size, np.nan),
            refine_iters=np.zeros(size, np.int64),
            hess_lambda_min=np.full(size, np.nan),
            hess_index=np.full(size, -1, np.int64),
            hess_n_zero=np.full(size, -1, np.int64),
            hess_n_zero_predicted=np.full(size, -1, np.int64),
            hess_tol=np.full(size, np.nan),
            strict_certified=np.zeros(size, bool),
            certified_radius=np.full(size, np.inf),
            lifted_index=np.full(size, -1, np.int64),
            kind=np.full(size, "", "<U13"),
            decided_by=np.full(size, "", "<U11"),
            session=np.full(size, self.session, np.int64),
        )
        known = len(self.points)
        rows = np.arange(size)
        for attempt in range(self.settings.escapes + 1):
            self._verdicts(H, rec, rows)
            rows = np.flatnonzero(rec["kind"] == "saddle")
            if attempt == self.settings.escapes or not rows.size or self.problem.dim < 2:
                break
            rows = self._escape(H, rec, rows)
            if not rows.size:
                break
        return self.arrays(known)

    def _cheap(self, rec, rows) -> np.ndarray:
        """Tests 1-3 of ``rows`` from their records (setting ``kind``, ``decided_by``, ``gap_tol``).

        Returns the rows they leave open.
        """
        n = self.problem.n
        converged, certified, at_gap, gap_tol = verdict.first_tests(
            rec["loss"][rows],
            rec["loss_rounding"][rows],
            rec["grad_norm"][rows],
            rec["cert_gap_bound"][rows] + n * rec["cert_rounding"][rows],
            rec["linear_bound"][rows] + rec["linear_rounding"][rows],
            n=n,
            gtol=self.settings.gtol_factor * self.settings.tol,
            L_star=self.optimum.loss,
            L_err=self.optimum.loss_error,
            attainable=self.problem.dim >= self.optimum.rank,
            ok=rec["status"][rows] == Status.CONVERGED,
        )
        rec["gap_tol"][rows] = gap_tol
        rec["kind"][rows] = np.where(
            ~converged, "not_converged", np.where(certified | at_gap, "global_min", "")
        )
        rec["decided_by"][rows] = np.where(
            ~converged, "gradient", np.where(certified, "certificate", np.where(at_gap, "gap", ""))
        )
        return rows[rec["kind"][rows] == ""]

    def _refined(self, H, rec, rows) -> np.ndarray:
        """Refine the open ``rows`` in float64 and test them again; the rows still open."""
        if not rows.size:
            return rows
        H[rows], iterations = self._refine(H[rows])
        rec["refine_iters"][rows] += iterations
        for name, values in self._records(H[rows]).items():
            rec[name][rows] = values
        return self._cheap(rec, rows)

    def _verdicts(self, H, rec, rows) -> None:
        open_rows = self._cheap(rec, rows)
        if self.problem.dim < 2:  # OB(n, 1) is a finite set: no tangent space, no spectrum
            rec["kind"][open_rows] = "spurious_min" if self.problem.dim >= self.optimum.rank else "local_min"
            rec["decided_by"][open_rows] = "gradient"
            return
        open_rows = self._refined(H, rec, open_rows)
        glob = rows[rec["kind"][rows] == "global_min"]
        if glob.size:
            # One global minimum is stored (and fully classified) per book, for figures and spectra.
            if self._global_point < 0:
                r = glob[int(np.argmin(rec["grad_norm"][glob]))]
                self._global_point = self._new_point(H[r], rec, r)
            self._inherit(rec, glob, self._global_point)
        for r in open_rows:
            p, distance, tol = self._match(H[r], rec, r)
            if p < 0:
                p, distance, tol = self._new_point(H[r], rec, r), 0.0, 0.0
            self._inherit(rec, [r], p)
            rec["point_distance"][r], rec["point_tol"][r] = distance, tol
            rec["kind"][r] = self.points[p]["verdict"]["kind"]
            rec["decided_by"][r] = self.points[p]["verdict"]["decided_by"]

    def _run_entry(self, H, rec, r) -> dict:
        """A run not judged yet: no kind, no spectrum of its own (it borrows the candidate's sigma)."""
        fields = {name: float(rec[name][r]) for name in ("loss", "gap_tol", "grad_norm")}
        return point_entry(
            H, self.problem.labels, fields | {"kind": "", "sigma": math.nan, "refined_radius": math.nan}
        )

    def _match(self, H, rec, r) -> tuple[int, float, float]:
        """``(point, distance, tolerance)`` of the known point run ``r`` is, or ``(-1, nan, nan)``."""
        run = self._run_entry(H, rec, r)
        near = sorted(
            (abs(run["loss"] - p["entry"]["loss"]), i)
            for i, p in enumerate(self.points)
            if i != self._global_point
        )
        for _, i in near:
            same, distance, tol = same_point(
                run, self.points[i]["entry"], self.problem.labels, self.problem.tau, perms=self._perms
            )
            if same:
                return i, distance, tol
        return -1, math.nan, math.nan

    def _new_point(self, H, rec, r) -> int:
        """Classify ``H`` (run ``r``) as a new distinct point (``verdict.classify``, float64); its index."""
        c = verdict.classify(
            H,
            self.problem.labels,
            self.problem.tau,
            optimum_=self.optimum,
            settings=verdict.ClassifySettings(
                gtol=self.settings.gtol_factor * self.settings.tol,
                prove=self.settings.prove,
                lift=self.settings.lift,
            ),
        )
        v = c.to_json()
        X = np.asarray(c.refined, np.float64)
        radius = float(v["refined_radius"])
        entry = point_entry(X, self.problem.labels, v)
        if math.isfinite(radius):
            fixed, total = metrics.relabel_stabilizer(
                X, self.problem.labels, 2 * radius + metrics.alignment_rounding(*X.shape), perms=self._perms
            )
        else:  # flat: the orbit is not resolved
            fixed, total = 0, 0
        v.update(relabel_stabilizer=fixed, relabellings=total)
        self.points.append({"H": X, "entry": entry, "verdict": v})
        return len(self.points) - 1

    def _inherit(self, rec, rows, p: int) -> None:
        """Runs ``rows`` reached distinct point ``p``: its spectrum and proof fields are theirs."""
        v = self.points[p]["verdict"]
        rec["point"][rows] = p
        rec["hess_lambda_min"][rows], rec["hess_index"][rows] = v["lambda_min"], v["index"]
        rec["hess_n_zero"][rows], rec["hess_n_zero_predicted"][rows] = v["n_zero"], v["n_zero_predicted"]
        rec["hess_tol"][rows], rec["strict_certified"][rows] = v["tol"], v["strict_certified"]
        rec["certified_radius"][rows], rec["lifted_index"][rows] = v["certified_radius"], v["lifted_index"]

    def _escape(self, H, rec, rows) -> np.ndarray:
        """Move each saddle run of ``rows`` off its saddle and continue it; the rows that moved."""
        labels, tau = self.problem.labels, self.problem.tau
        moved = []
        for r in rows:
            esc = hessian.escape_direction(H[r], labels, tau)
            check = hessian.escape_decrease(H[r], labels, tau, np.asarray(esc.direction))
            # A decrease the loss cannot resolve is no escape: the run stays a saddle.
            if not float(check.decrease) > float(rec["loss_rounding"][r]):
                continue
            H[r] = np.asarray(oblique.retract(jnp.asarray(H[r]), float(check.step) * esc.direction))
            moved.append(r)
        moved = np.asarray(moved, np.int64)
        if not moved.size:
            return moved
        out = self._descend(H[moved])
        H[moved] = out[0]
        rec["steps"][moved] += out[1]
        rec["status"][moved] = out[2]
        rec["polish_evals"][moved] += out[3]
        rec["polish_iters"][moved] += out[4]
        for name, values in self._records(H[moved], rec["status"][moved]).items():
            rec[name][moved] = values
        rec["escapes"][moved] += 1
        return moved

    # ----------------------------------------------------------------------
    # The points as arrays

    def arrays(self, first: int = 0) -> dict:
        """The distinct points from ``first`` on as arrays (``H`` ``(m, n, d)``, verdict fields, indices)."""
        points = self.points[first:]
        problem = self.problem
        out = {
            "H": np.zeros((len(points), problem.n, problem.dim)),
            "local": np.arange(first, first + len(points), dtype=np.int64),
            "session": np.full(len(points), self.session, np.int64),
        }
        if points:
            out["H"] = np.stack([p["H"] for p in points])
        for name in POINT_FIELDS:
            values = [p["verdict"][name] for p in points]
            out[name] = np.asarray(values) if values else np.zeros(0)
        return out


#: The per-point fields of a scan's points (``points.npz``): the verdict's and the relabelling orbit.
POINT_FIELDS = verdict.FIELDS + ("relabel_stabilizer", "relabellings")
