r"""The point book of a scan: every finished run judged, grouped into distinct critical points, escaped.

A ``PointBook`` receives batches of finished runs (their float64 embeddings
and records, from the scan's scheduler) and, for each batch:

1. takes the cheap tests of every run from its records (gradient,
   certificate, gap: ``verdict``'s tests 1-3);
2. groups the runs that those tests do not decide into distinct critical
   points, and gives each new point one full verdict (``verdict.classify``:
   proof or spectrum, lifting); every run inherits its point's verdict;
3. moves each run judged a saddle off its saddle along the most negative
   curvature and continues it (``descend``, then ``records``, both given by
   the scheduler), then judges it again, up to ``escapes`` times.

The book keeps the points found so far across batches (``points``) and
returns, per batch, the points new in it (``arrays``), which the results
folder stores and merges.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from sclandscape import hessian, metrics, oblique, optimum, problems, verdict
from sclandscape.optim import Status


class PointBook:
    """The distinct critical points of one scan and the judging of its runs (module docstring).

    Args:
      problem: the scan's ``problems.Problem``.
      optimum_: its ``optimum.GlobalOptimum``.
      settings: the scan's settings (``tol``, ``gtol_factor``, ``prove``,
        ``lift``, ``escapes``, ``group_atol`` are read).
      session: the id that names this book's points in shared results files.
      descend: ``descend(H) -> (H, steps, status, polish_evals, polish_iters)``, a
        whole float64 run from each row of ``H`` (after an escape step).
      records: ``records(H) -> dict`` of the float64 run records of each row.
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
    ):
        self.problem = problem
        self.optimum = optimum_
        self.settings = settings
        self.session = session
        self._descend = descend
        self._records = records
        self.points: list[dict] = []  # the distinct critical points judged so far
        self._global_point = -1
        self._perms = metrics.class_permutations(problem.counts)

    # ----------------------------------------------------------------------
    # Judging: cheap tests per run, the full verdict once per distinct point, escapes

    def judge(self, H, rec) -> dict:
        """Add each run's verdict to ``rec`` (in place) and return the distinct points new in this batch."""
        size = rec["loss"].size
        fields = {
            "escapes": np.zeros(size, np.int64),
            "point": np.full(size, -1, np.int64),
            "hess_lambda_min": np.full(size, np.nan),
            "hess_index": np.full(size, -1, np.int64),
            "hess_n_zero": np.full(size, -1, np.int64),
            "hess_n_zero_predicted": np.full(size, -1, np.int64),
            "hess_tol": np.full(size, np.nan),
            "strict_certified": np.zeros(size, bool),
            "certified_radius": np.full(size, np.inf),
            "lifted_index": np.full(size, -1, np.int64),
        }
        rec.update(fields)
        rec["kind"] = np.full(size, "", "<U13")
        rec["decided_by"] = np.full(size, "", "<U11")
        known = len(self.points)
        rec["session"] = np.full(size, self.session, np.int64)
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

    def _cheap(self, rec, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(kind, decided_by, gap_tol)`` of ``rows`` from their records (gradient, certificate, gap)."""
        n = self.problem.n
        g = rec["grad_norm"][rows]
        converged = (rec["status"][rows] == Status.CONVERGED) & (
            g <= self.settings.gtol_factor * self.settings.tol
        )
        gap_tol = rec["loss_rounding"][rows] + self.optimum.loss_error + 2 * np.sqrt(n) * g
        attainable = self.problem.dim >= self.optimum.rank
        linear = rec["linear_bound"][rows] + rec["linear_rounding"][rows]
        bound = np.minimum(
            rec["cert_gap_bound"][rows] + n * rec["cert_rounding"][rows],
            np.where(np.isnan(linear), np.inf, linear),
        )
        certified = attainable & converged & (bound <= gap_tol)
        at_gap = (
            attainable & converged & ~certified & (np.abs(rec["loss"][rows] - self.optimum.loss) <= gap_tol)
        )
        kind = np.where(~converged, "not_converged", np.where(certified | at_gap, "global_min", ""))
        decided = np.where(
            ~converged, "gradient", np.where(certified, "certificate", np.where(at_gap, "gap", ""))
        )
        return kind.astype("<U13"), decided.astype("<U11"), gap_tol

    def _point_of(self, H, value, tol) -> int:
        """Which known distinct point ``H`` is (losses within both tolerances, same invariants), or -1."""
        inv = metrics.invariants(H, self.problem.labels)
        for p, point in enumerate(self.points):
            if abs(value - point["loss"]) > tol + point["gap_tol"]:
                continue
            if metrics.same_point(
                inv,
                point["invariants"],
                value,
                point["loss"],
                self.problem.counts,
                loss_rtol=np.inf,
                gram_atol=self.settings.group_atol,
                perms=self._perms,
            ):
                return p
        return -1

    def _classify_point(self, H, value, tol) -> int:
        """Classify ``H`` as a new distinct point (``verdict.classify``, float64); its index."""
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
        self.points.append(
            {
                "H": np.asarray(H, np.float64),
                "loss": value,
                "gap_tol": tol,
                "invariants": metrics.invariants(H, self.problem.labels),
                "verdict": c.to_json(),
            }
        )
        return len(self.points) - 1

    def _verdicts(self, H, rec, rows) -> None:
        kind, decided, gap_tol = self._cheap(rec, rows)
        rec["kind"][rows], rec["decided_by"][rows] = kind, decided
        glob = rows[kind == "global_min"]
        if glob.size and self.problem.dim >= 2:
            # One global minimum is stored (and fully classified) per book, for figures and spectra.
            if self._global_point < 0:
                best = int(np.argmin(rec["grad_norm"][glob]))
                r = glob[best]
                tol = float(gap_tol[kind == "global_min"][best])
                self._global_point = self._classify_point(H[r], float(rec["loss"][r]), tol)
            self._inherit(rec, glob, self._global_point)
        if self.problem.dim < 2:  # OB(n, 1) is a finite set: no tangent space, no spectrum
            rest = rows[kind == ""]
            rec["kind"][rest] = "spurious_min" if self.problem.dim >= self.optimum.rank else "local_min"
            rec["decided_by"][rest] = "gradient"
            return
        for r, tol in zip(rows[kind == ""], gap_tol[kind == ""], strict=True):
            value = float(rec["loss"][r])
            p = self._point_of(H[r], value, float(tol))
            if p < 0:
                p = self._classify_point(H[r], value, float(tol))
            self._inherit(rec, [r], p)
            rec["kind"][r], rec["decided_by"][r] = (
                self.points[p]["verdict"]["kind"],
                self.points[p]["verdict"]["decided_by"],
            )

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
        fresh = self._records(H[moved])
        for name, values in fresh.items():
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
        for name in verdict.FIELDS:
            values = [p["verdict"][name] for p in points]
            out[name] = np.asarray(values) if values else np.zeros(0)
        return out
