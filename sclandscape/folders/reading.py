"""TODO docstring"""

from __future__ import annotations

import os

import numpy as np

from sclandscape.core import problems
from sclandscape.core.settings import ScanSettings
from sclandscape.folders import atomic, merging, summaries


def _damaged_runs_hint(out: str, n_inits: int) -> str:
    """How a damaged or malformed ``runs.npz`` is repaired: from the chunks, by ``--resume``."""
    try:
        missing = merging.merge_runs(out, n_inits, use_final=False).missing.size
    except atomic.ResultsError:
        return "rerun `sclandscape scan ... --resume` on this folder after moving away the files it names"
    held = "all" if not missing else f"{n_inits - missing} of"
    rest = "" if not missing else " and recomputes the rest"
    return (
        f"`sclandscape scan ... --resume` with this scan's arguments rebuilds it from the chunks, which hold "
        f"{held} {n_inits} runs{rest}"
    )


def load_scan(out: str) -> dict:
    """The pieces of a finished scan folder: ``config``, ``summary``, ``runs``, ``class_gram`` (M*).

    Checks structure as well as bytes (every file of the shape the scan writes,
    ``runs.npz`` with one row per run ``0..n_inits-1`` in every array). Raises
    ``ResultsError`` (one line naming the file and the problem) when ``out`` is
    not a finished scan.
    """
    if not os.path.isdir(out):
        raise atomic.ResultsError(f"{out} is not a folder")
    if not os.path.exists(os.path.join(out, "config.json")):
        raise atomic.ResultsError(f"{out} is not a scan results folder (no config.json)")
    for name in ("summary.json", "runs.npz"):
        if not os.path.exists(os.path.join(out, name)):
            raise atomic.ResultsError(
                f"{out} holds an unfinished scan (no {name}); finish it with `sclandscape scan ... --resume`"
            )
    config_path = os.path.join(out, "config.json")
    config = atomic.read_json(config_path, keys=("problem", "settings", "seed", "n_inits"))
    try:
        problem = problems.Problem.from_json(config["problem"])
        settings = ScanSettings.from_json(config["settings"])
        problems.check_seed(config["seed"])
        problems.check_integer("n_inits", config["n_inits"])
    except (TypeError, ValueError, KeyError) as err:
        raise atomic.ResultsError(f"{config_path} does not describe a scan: {err}") from None
    n_inits = config["n_inits"]
    summary_path = os.path.join(out, "summary.json")
    summary = summaries.read_summary(summary_path)
    runs_path = os.path.join(out, "runs.npz")
    try:
        runs = merging.read_run_file(runs_path)
        if not np.array_equal(runs["run"], np.arange(n_inits)):
            raise atomic.ResultsError(f"{runs_path} does not hold runs 0..{n_inits - 1} in order")
    except atomic.ResultsError as err:
        raise atomic.ResultsError(f"{err}: {_damaged_runs_hint(out, n_inits)}") from None
    if summary["n_inits"] != n_inits:
        raise atomic.ResultsError(f"{summary_path} counts {summary['n_inits']} runs, config.json {n_inits}")
    if "kind" not in runs:
        runs["kind"] = summaries.classify_records(runs)
    if "status_name" not in runs:  # a scan written before the names were stored
        runs["status_name"] = summaries.status_names(runs["status"])
    opt_path = os.path.join(out, "optimum.json")
    if not os.path.exists(opt_path):
        raise atomic.ResultsError(f"{out} has no optimum.json: rerun the scan with --resume to write it")
    try:
        opt_data = atomic.read_json(opt_path, keys=("class_gram",))
        class_gram = np.asarray(opt_data["class_gram"], np.float64)
    except (TypeError, ValueError) as err:
        raise atomic.ResultsError(f"{opt_path}: 'class_gram' is not a matrix of numbers ({err})") from None
    if class_gram.shape != (problem.k, problem.k) or not np.all(np.isfinite(class_gram)):
        raise atomic.ResultsError(
            f"{opt_path}: 'class_gram' must be a finite {problem.k} x {problem.k} matrix, "
            f"got shape {class_gram.shape} (rerun the scan with --resume to rewrite it)"
        )
    points_path = os.path.join(out, "points.npz")
    points = atomic.read_npz(points_path) if os.path.exists(points_path) else {}
    return {
        "config": config,
        "summary": summary,
        "runs": runs,
        "points": points,
        "problem": problem,
        "settings": settings,
        "class_gram": class_gram,
        "optimum": opt_data,
    }


def embeddings(scan_data: dict, rows: list[int]) -> tuple[dict, list[str]]:
    """``{row: H}``: each run's saved embedding, else its distinct point's (stored at scan time); notes.

    A run without either (``not_converged``) is left out with a note. Nothing
    is ever re-optimised: a run's distinct point is the same critical point up
    to rotation and relabelling.
    """
    runs, points = scan_data["runs"], scan_data.get("points") or {}
    found, notes = {}, []
    for r in rows:
        p = int(np.asarray(runs.get("point", [-1] * (r + 1)))[r])
        if "H" in runs:
            found[r] = np.asarray(runs["H"][r])
        elif p >= 0 and "H" in points:
            found[r] = np.asarray(points["H"][p])
        else:
            notes.append(f"run {int(runs['run'][r])} has no stored embedding (its kind: {runs['kind'][r]})")
    return found, notes


def point_rows(scan_data: dict) -> list[int]:
    """One run row per distinct critical point of a loaded scan (``points.npz``): its lowest-loss member."""
    runs = scan_data["runs"]
    point = np.asarray(runs.get("point", np.full(len(runs["run"]), -1)))
    loss = np.asarray(runs["loss"])
    rows = []
    for p in np.unique(point[point >= 0]):
        members = np.flatnonzero(point == p)
        rows.append(int(members[np.argmin(loss[members])]))
    return rows


def minimum_rows(scan_data: dict) -> list[tuple[int | None, int, dict]]:
    """``(point, row, entry)`` per distinct minimum of the summary: its ``points.npz`` index and a run.

    The point index (by loss, ``census.merge``) is the one number of a minimum
    in the report, the figure names, ``slice --minimum``, ``path`` and
    ``hessian``; the run is the point's lowest-loss member. An entry of runs
    judged without a stored point (``point`` -1) has ``None`` and the
    lowest-loss run of its kind.
    """
    runs = scan_data["runs"]
    kind = np.asarray(runs["kind"]).astype(str)
    point = np.asarray(runs.get("point", np.full(kind.size, -1)))
    loss = np.asarray(runs["loss"])
    out = []
    for entry in scan_data["summary"]["distinct_minima"]:
        p = entry.get("point", -1)
        members = (
            np.flatnonzero(point == p) if p >= 0 else np.flatnonzero((kind == entry["kind"]) & (point < 0))
        )
        if members.size:
            out.append((p if p >= 0 else None, int(members[np.argmin(loss[members])]), entry))
    return out
