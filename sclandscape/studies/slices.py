"""The ``slice`` study of a scan folder: the loss along one or two directions through a point.

Folder in, folder out: reads the scan (``folders.reading``), builds the
directions (``explore.slices.direction``), evaluates the loss on the grid
(``explore.slices.loss_slice``), writes ``slices/<name>.npz``/``.json`` and the
figure (``drawing.tools.slice_figure``).
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from sclandscape.drawing import tools
from sclandscape.explore.slices import (
    DIRECTION_PATTERN,
    LINE_POINTS,
    SURFACE_POINTS,
    direction,
    grid,
    loss_slice,
)
from sclandscape.folders import atomic, reading
from sclandscape.studies import folder


def scan_slice(
    out: str,
    *,
    run: int | None = None,
    minimum: int | None = None,
    directions=("escape", "random"),
    surface: bool = False,
    extent: float | None = None,
    points: int | None = None,
    formats=("png",),
    progress=None,
) -> dict:
    """Slices of the loss around a point of the finished scan ``out``; written and drawn.

    The point: run ``run``, or the lowest-loss run of distinct minimum
    ``minimum`` (default: minimum 0, the lowest). ``directions``: names as
    ``direction``; ``"minimum:M"`` / ``"run:J"`` point towards another distinct
    minimum or run. ``surface``: one 2-D slice along exactly two directions
    (the second made orthogonal to the first), else one 1-D slice per
    direction. ``extent``: the grid runs over ``[-extent, extent]`` (default:
    from each direction: through the other point, or where the quadratic
    model changes the loss by one). Returns the record written to
    ``out/slices/NAME.json`` (``name``, ``point``, ``loss``, ``directions``,
    ``grids``, ``files``); the values are in ``out/slices/NAME.npz``.
    """
    data = folder.open_scan(out, "slices need d >= 2 (OB(n, 1) has no tangent space)")
    problem, runs_rec = data["problem"], data["runs"]
    directions = [d.strip() for d in directions]
    count = _check(directions, surface, extent, points)
    formats = folder.check_formats(formats)
    row, others = _rows(data, run, minimum, directions)
    report = folder.reporter(progress)
    found = folder.embeddings_of(data, sorted({row, *others.values()}), out, report, len(directions))
    H = found[row]
    infos = []
    for k, name in enumerate(directions):
        report(k, len(directions), "directions", name)
        infos.append(
            direction(H, problem.labels, problem.tau, name, points={n: found[r] for n, r in others.items()})
        )
    grids, slices = _values(H, problem, infos, surface, extent, count, report)
    point = int(runs_rec["run"][row])
    stem = re.sub(
        r"[^A-Za-z0-9_.-]+",
        "-",
        f"slice_run{point}_{'surface' if surface else 'lines'}_{'_'.join(directions)}",
    )
    record = {
        "name": stem,
        "point": point,
        "kind": str(runs_rec["kind"][row]),
        "loss": float(runs_rec["loss"][row]),
        "global_loss": float(data["summary"]["global_loss"]),
        "surface": bool(surface),
        "directions": [
            {k: info[k] for k in ("name", "eigenvalue", "reach", "exact", "distance")}
            | {"orthogonalised": bool(info.get("orthogonalised"))}
            for info in infos
        ],
        "grids": [g.tolist() for g in grids],
        "files": [f"slices/{stem}.npz", f"slices/{stem}.json"] + [f"figures/{stem}.{fmt}" for fmt in formats],
    }
    report(len(directions), len(directions), "writing", stem)
    arrays = {"point": np.asarray(H), "directions": np.stack([i["vector"] for i in infos])}
    if surface:
        arrays["values"] = slices[0]
    else:
        arrays.update({f"values_{k}": v for k, v in enumerate(slices)})
    arrays.update({f"grid_{k}": g for k, g in enumerate(grids)})
    atomic.write_npz(os.path.join(out, "slices", f"{stem}.npz"), arrays)
    folder.write_figure(out, stem, tools.slice_figure(record, slices, problem.to_json()), formats)
    atomic.write_json(os.path.join(out, "slices", f"{stem}.json"), record)
    return record


def _check(directions, surface: bool, extent, points) -> int:
    """Checks of a slice's directions, extent and grid; the grid points per axis."""
    if not directions or (surface and len(directions) != 2):
        raise ValueError("give one or more directions (exactly two for a surface)")
    for name in directions:
        if not DIRECTION_PATTERN.match(name):
            raise ValueError(
                f"bad direction {name!r} (eig:K, escape, random, random:SEED, minimum:M or run:J)"
            )
    if extent is not None and not (isinstance(extent, int | float) and 0 < extent < math.inf):
        raise ValueError(f"extent must be a positive number, got {extent!r}")
    count = points or (SURFACE_POINTS if surface else LINE_POINTS)
    if isinstance(count, bool) or not isinstance(count, int) or count < 3:
        raise ValueError(f"points must be an integer >= 3, got {count!r}")
    return count


def _rows(data: dict, run, minimum, directions) -> tuple[int, dict]:
    """The row of the point sliced (run ``run``, or distinct minimum ``minimum``, default the lowest)
    and the rows the ``minimum:M`` / ``run:J`` directions point to."""
    index_of = {int(i): r for r, i in enumerate(np.asarray(data["runs"]["run"]))}
    reps = {p: r for p, r, _ in reading.minimum_rows(data) if p is not None}

    def row_of_minimum(m):
        if m not in reps:
            raise ValueError(
                f"minimum must be the point index of one of the scan's minima {sorted(reps)}, got {m}"
            )
        return reps[m]

    def row_of_run(i):
        if i not in index_of:
            raise ValueError(f"run must be an index of this scan (0..{len(index_of) - 1}), got {i}")
        return index_of[i]

    if run is not None and minimum is not None:
        raise ValueError("give a run or a minimum, not both")
    if run is not None:
        row = row_of_run(int(run))
    else:
        row = row_of_minimum(min(reps, default=0) if minimum is None else int(minimum))
    others = {}
    for name in directions:
        if name.startswith("minimum:"):
            others[name] = row_of_minimum(int(name.split(":")[1]))
        elif name.startswith("run:"):
            others[name] = row_of_run(int(name.split(":")[1]))
    return row, others


def _values(H, problem, infos: list, surface: bool, extent, count: int, report) -> tuple[list, list]:
    """The grids and the loss on them: one 2-D slice (the second direction made orthogonal to the
    first) or one 1-D slice per direction."""
    labels, tau = problem.labels, problem.tau
    if surface:
        u, v = infos[0]["vector"], infos[1]["vector"]
        v = v - np.sum(u * v) * u
        infos[1]["vector"] = v / np.linalg.norm(v)
        infos[1]["orthogonalised"] = True
        grids = [grid(info, extent, count) for info in infos]
        report(0, 1, "values", f"{count} x {count} grid")
        return grids, [loss_slice(H, labels, tau, np.stack([u, infos[1]["vector"]]), grids)]
    grids, slices = [], []
    for k, info in enumerate(infos):
        report(k, len(infos), "values", f"{info['name']}: {count} points")
        grids.append(grid(info, extent, count))
        slices.append(loss_slice(H, labels, tau, info["vector"][None], [grids[-1]]))
    return grids, slices
