"""Sweeps: one scan per cell of a one- or two-parameter grid, and the phase map (``sclandscape sweep``).

The grid varies one or two of ``dim`` (embedding dimension ``d``), ``tau``
(temperature) and ``R`` (STEP imbalance ratio, with ``step = (k_maj, k_min,
n_min)``); everything else comes from the base problem. Layout of ``out``::

    sweep.json                 the grid, the base problem, settings, and per cell its status,
                               fraction of runs reaching L*, distinct spurious minima and the
                               95% upper bound on the fraction of runs ending at a spurious minimum
    sweep.csv                  the same, one row per cell (``CSV_COLUMNS``), for use without
                               this package
    cells/<name>/              one results folder per cell (``scan_study.run_scan``), e.g.
                               cells/dim=2_tau=0.5/
    figures/phase_map.{png,pdf}

``run_sweep`` is resumable: ``sweep.json`` is rewritten (atomically) after
every cell; a cell with a ``summary.json`` is done and skipped, any other is
(re)started with ``resume=True``, which continues an interrupted scan from
its chunks. Rerunning with a different grid or settings into the same
``out`` is refused once any cell has started (every differing field named;
the ``execution`` settings, such as slots, may change). One process at a
time writes a sweep folder (``atomic.FolderLock``); every cell's values are
checked before anything is written.

For each cell, "reaching the global optimum" means ending as ``global_min``
(certificate or loss within tolerance of the relaxation's ``L*``, docs/maths.md §2);
below ``d = rank(M*)`` that is impossible by construction, and the fraction
is 0 whatever the landscape. There a minimum above ``L*`` is not spurious
(``local_min``): such cells get no spurious bound, and the phase map counts
their distinct minima as "local".
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sclandscape.core import problems
from sclandscape.core import progress as progress_lib
from sclandscape.drawing import maps, style
from sclandscape.explore import scanner
from sclandscape.folders import atomic, identity, summaries
from sclandscape.studies import scan as scan_study
from sclandscape.theory import metrics

AXES = ("dim", "tau", "R")
AXIS_LABELS = {"dim": "embedding dimension $d$", "tau": r"temperature $\tau$", "R": "imbalance ratio $R$"}


def _check_value(axis: str, value):
    if axis == "dim":
        return problems.check_dim(value)
    if axis == "tau":
        return problems.check_tau(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"R must be a number >= 1, got {value!r}") from None
    if not math.isfinite(out) or out < 1:
        raise ValueError(f"R must be a number >= 1, got {value!r}")
    return out


def check_grid(grid: Mapping, step=None) -> dict[str, list]:
    """Validated grid ``{axis: [values]}`` (one or two axes from ``AXES``, in the given order)."""
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a mapping {{axis: values}} over {AXES}, got {type(grid).__name__}")
    if not 1 <= len(grid) <= 2:
        raise ValueError(f"grid must vary one or two of {AXES}, got {len(grid)} axes")
    out = {}
    for axis, values in grid.items():
        if axis not in AXES:
            raise ValueError(f"unknown sweep axis {axis!r} (use {', '.join(AXES)})")
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
            raise ValueError(f"grid[{axis!r}] must be a sequence of values, got {values!r}")
        checked = [_check_value(axis, v) for v in values]
        if not checked:
            raise ValueError(f"grid[{axis!r}] must not be empty")
        if len(set(checked)) != len(checked):
            raise ValueError(f"grid[{axis!r}] has repeated values: {list(values)!r}")
        out[axis] = checked
    if "R" in out:
        k_maj, k_min, n_min = _check_step(step)
        for R in out["R"]:
            problems.step_counts(k_maj, k_min, n_min, R)
    elif step is not None:
        raise ValueError("step = (k_maj, k_min, n_min) is used only with an R axis")
    return out


def _check_step(step) -> tuple[int, int, int]:
    if step is None:
        raise ValueError("an R axis needs step = (k_maj, k_min, n_min)")
    try:
        k_maj, k_min, n_min = (int(v) for v in step)
    except (TypeError, ValueError):
        raise ValueError(f"step must be three integers (k_maj, k_min, n_min), got {step!r}") from None
    if any(float(a) != b for a, b in zip(step, (k_maj, k_min, n_min), strict=True)):
        raise ValueError(f"step must be three integers (k_maj, k_min, n_min), got {step!r}")
    problems.step_counts(k_maj, k_min, n_min, 1)
    return k_maj, k_min, n_min


def cell_name(values: Mapping) -> str:
    """Folder name of a cell, e.g. ``dim=2_tau=0.5``."""
    return "_".join(f"{axis}={_format(v)}" for axis, v in values.items())


def _format(value) -> str:
    return str(value) if isinstance(value, int) else format(value, ".10g")


def _cell_problem(base: problems.Problem, values: Mapping, step) -> problems.Problem:
    counts = base.counts
    if "R" in values:
        counts = problems.step_counts(*step, values["R"])
    return problems.Problem(counts, values.get("dim", base.dim), values.get("tau", base.tau), base.nonneg)


def _cells(grid: dict) -> list[dict]:
    """Cells in row-major order over (second axis, first axis)."""
    axes = list(grid)
    if len(axes) == 1:
        return [{axes[0]: x} for x in grid[axes[0]]]
    return [{axes[0]: x, axes[1]: y} for y in grid[axes[1]] for x in grid[axes[0]]]


def _sweep_config(base, grid, step, n_inits, seed, settings) -> dict:
    cfg = {
        "base": base.to_json(),
        "axes": [{"name": axis, "values": values} for axis, values in grid.items()],
        "step": None if step is None else dict(zip(("k_maj", "k_min", "n_min"), step, strict=True)),
        "n_inits": int(n_inits),
        "seed": int(seed),
        "settings": settings.to_json(),
    }
    return json.loads(json.dumps(cfg))  # as it reads back from disk


def _local_only(m: dict) -> bool:
    """A distinct minimum all of whose runs are ``local_min`` (``L*`` unattainable: not spurious)."""
    kinds = m.get("kinds")
    return bool(kinds) and set(kinds) == {"local_min"}


def _cell_result(summary: dict) -> dict:
    n = max(1, int(summary["n_inits"]))
    uncertified = [m for m in summary["distinct_minima"] if not m["certified_global"]]
    bound = summary.get("spurious_fraction") or summaries.spurious_fraction(
        summary["counts"].get("spurious_min", 0), int(summary["n_inits"])
    )
    return {
        "status": "done",
        "global_loss": summary["global_loss"],
        "global_rank": summary.get("global_rank"),
        "counts": summary["counts"],
        "fraction_global": summary["counts"]["global_min"] / n,
        "n_spurious_minima": sum(not _local_only(m) for m in uncertified),
        "n_local_minima": sum(_local_only(m) for m in uncertified),
        "spurious_fraction": bound,
        "n_distinct_minima": len(summary["distinct_minima"]),
        "best_gap": (summary["best_loss"] - summary["global_loss"])
        if summary.get("best_loss") is not None
        else None,
    }


def run_sweep(
    problem: problems.Problem,
    grid: Mapping[str, Sequence],
    n_inits: int,
    out: str,
    *,
    seed: int = 0,
    settings: scanner.ScanSettings | None = None,
    step: Sequence[int] | None = None,
    formats=("png", "pdf"),
    progress: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run (or resume) one scan per grid cell into ``out/cells/`` and draw the phase map.

    Args:
      problem: the base problem; the swept axes override its ``dim`` / ``tau``
        / counts (``R``).
      grid: ``{axis: values}`` for one or two axes of ``AXES`` (``dim``,
        ``tau``, ``R``); the first is the phase map's x axis, the second its y.
      n_inits, seed, settings: as in ``scan_study.run_scan``, the same for every cell
        (``settings`` defaults to ``ScanSettings()``).
      out: the sweep folder (new, empty, or a previous run of this same sweep).
      step: ``(k_maj, k_min, n_min)`` of the STEP counts, needed for an ``R`` axis.
      formats: of the phase-map figure.
      progress: counts the runs of the whole sweep, each cell named in the detail (default: a display
        of its own, ``progress.resolve``; ``False``: silent).
      log: called with one line per cell (skipped / done).

    Returns the content of ``out/sweep.json``: ``config``, ``cells`` (each with
    ``values``, ``path``, ``status``, ``fraction_global``, ``n_spurious_minima``,
    ``counts``, ...), ``fraction`` and ``n_spurious_minima`` as ``(y, x)``
    lists, and ``figures``. Bad input raises ``ValueError`` (one line); a folder
    holding something else, or another sweep, ``ResultsError``.
    """
    if not isinstance(problem, problems.Problem):
        raise ValueError(f"problem must be a sclandscape.Problem, got {type(problem).__name__}")
    grid = check_grid(grid, step)
    step = _check_step(step) if "R" in grid else None
    if isinstance(n_inits, bool) or int(n_inits) != n_inits or n_inits < 1:
        raise ValueError(f"n_inits must be an integer >= 1, got {n_inits!r}")
    seed = problems.check_seed(seed)
    settings = scanner.ScanSettings() if settings is None else settings
    if not isinstance(settings, scanner.ScanSettings):
        raise ValueError(f"settings must be a ScanSettings, got {type(settings).__name__}")
    formats = tuple([formats] if isinstance(formats, str) else formats)
    if not formats or any(f not in style.FORMATS for f in formats):
        raise ValueError(f"formats must be values from {style.FORMATS}, got {formats!r}")
    cells = _cells(grid)
    cell_problems = [_cell_problem(problem, values, step) for values in cells]
    config = _sweep_config(problem, grid, step, n_inits, seed, settings)

    if os.path.exists(out) and not os.path.isdir(out):
        raise atomic.ResultsError(f"--out {out} exists and is not a folder")
    _check_folder(out, config)  # refuse before creating or locking anything
    created = not os.path.exists(out)
    try:
        with (
            atomic.lock_folder(out),  # one writer per sweep folder (each cell locks its own as well)
            progress_lib.resolve(progress, "sweep") as report,
        ):
            _check_folder(out, config)
            return _run_cells(
                out, config, cells, cell_problems, n_inits, seed, settings, formats, report, log
            )
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out)  # only when empty: refused before writing anything


def _cells_started(out: str) -> bool:
    """Whether any cell folder of ``out`` holds results (a scan's files, not just its scaffolding)."""
    cells = os.path.join(out, "cells")
    return os.path.isdir(cells) and any(
        identity.holds_results(os.path.join(cells, c)) for c in os.listdir(cells)
    )


def _check_folder(out: str, config: dict) -> None:
    """Refuse a folder holding something else, or another sweep that has started any cell.

    A ``sweep.json`` whose cells have not started (stopped before the first
    chunk) is replaced by this sweep's: nothing would be lost.
    """
    path = os.path.join(out, "sweep.json")
    if os.path.exists(path):
        state = read_state(path)
        try:
            differences = identity.config_differences(state["config"], config)
        except ValueError as err:
            raise atomic.ResultsError(f"{path}: {err}") from None
        if differences and _cells_started(out):
            raise atomic.ResultsError(
                f"{out} holds a different sweep (its sweep.json differs: {'; '.join(differences)})"
            )
    elif identity.holds_results(out):
        raise atomic.ResultsError(f"--out {out} exists, is not empty and holds no sweep.json")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_state(path: str) -> dict:
    """``sweep.json``, checked: an object with a ``config`` (``axes``, ``base``) and a ``cells`` list."""
    state = atomic.read_json(path, keys=("config", "cells"))
    config, cells = state["config"], state["cells"]
    axes = config.get("axes") if isinstance(config, dict) else None
    if (
        not isinstance(axes, list)
        or not 1 <= len(axes) <= 2
        or not all(
            isinstance(a, dict) and a.get("name") in AXES and isinstance(a.get("values"), list) for a in axes
        )
        or not isinstance(config.get("base"), dict)
        or not all(_number(config["base"].get(k)) for k in ("dim", "tau"))
        or not isinstance(config.get("n_inits"), int)
        or not (config.get("step") is None or isinstance(config["step"], dict))
    ):
        raise atomic.ResultsError(f"{path}: 'config' does not describe a sweep grid (axes, base, n_inits)")
    size = int(np.prod([len(a["values"]) for a in axes]))
    if not isinstance(cells, list) or len(cells) != size or not all(isinstance(c, dict) for c in cells):
        raise atomic.ResultsError(f"{path}: 'cells' must be a list of {size} cell records")
    for cell in cells:
        if cell.get("status") == "done":
            for key in ("fraction_global", "n_spurious_minima"):
                if not _number(cell.get(key)):
                    raise atomic.ResultsError(f"{path}: a finished cell has no number {key!r}")
            if not isinstance(cell.get("problem"), dict) or not isinstance(cell["problem"].get("dim"), int):
                raise atomic.ResultsError(f"{path}: a finished cell has no problem with a 'dim'")
    return state


def _run_cells(out, config, cells, cell_problems, n_inits, seed, settings, formats, progress, log) -> dict:
    for folder in (out, os.path.join(out, "figures")):  # left by a killed write (we hold the lock)
        atomic.clean_temps(folder, sole_writer=True)
    state = {
        "config": config,
        "cells": [
            {
                "name": cell_name(values),
                "path": f"cells/{cell_name(values)}",
                "values": values,
                "problem": p.to_json(),
                "status": "pending",
            }
            for values, p in zip(cells, cell_problems, strict=True)
        ],
    }
    _write_state(out, state)
    for i, (cell, p) in enumerate(zip(state["cells"], cell_problems, strict=True)):
        folder = os.path.join(out, cell["path"])
        summary_path = os.path.join(folder, "summary.json")
        if os.path.exists(summary_path):
            summary = summaries.read_summary(summary_path)
            what = "done earlier, skipped"
            if progress:
                progress(
                    (i + 1) * n_inits,
                    len(cells) * n_inits,
                    "skipped",
                    f"cell {i + 1}/{len(cells)} {cell['name']}",
                )
        else:
            shown = _cell_progress(progress, i, cells, cell, n_inits)
            summary = scan_study.run_scan(
                p, n_inits, seed, settings, folder, resume=True, progress=shown, log=log
            )
            what = "done"
        cell.update(_cell_result(summary))
        _write_state(out, state)
        if log:
            rank = cell.get("global_rank")
            if rank is not None and p.dim < rank:  # L* unattainable: no minimum is spurious
                minima = f"{cell['n_spurious_minima'] + cell['n_local_minima']} distinct minima above L*"
            else:
                minima = (
                    f"{cell['n_spurious_minima']} distinct spurious minima, fraction spurious "
                    f"< {cell['spurious_fraction']['upper_95']:.3g} (95%)"
                )
            log(
                f"[{i + 1}/{len(cells)}] {cell['name']}: {what}; fraction global "
                f"{cell['fraction_global']:.3f}, {minima}"
            )
    state.update(_grids(state))
    if progress:
        progress(None, None, "drawing", "the phase map")
    drawn = plot_sweep(out, formats, state=state)  # the phase map and report.md
    state["figures"] = [os.path.relpath(f, out) for f in drawn if os.path.basename(f) != "report.md"]
    _write_state(out, state)
    return state


def _cell_progress(progress, i: int, cells, cell: dict, n_inits: int):
    """The progress of cell ``i`` as part of the sweep's: runs of the whole sweep, the cell named."""
    if not progress:
        return False
    report = progress_lib.adapt(progress)
    where = f"cell {i + 1}/{len(cells)} {cell['name']}"

    def cell_progress(done, total, phase=None, detail=None):
        report(
            None if done is None else i * n_inits + done,
            len(cells) * n_inits,
            phase,
            where + (f": {detail}" if detail else ""),
        )

    return cell_progress


def _write_state(out: str, state: dict) -> None:
    """``sweep.json`` and ``sweep.csv``, each written atomically."""
    atomic.write_json(os.path.join(out, "sweep.json"), state)
    atomic.write_atomic(os.path.join(out, "sweep.csv"), sweep_csv(state).encode())


#: Columns of ``sweep.csv``; the swept axes are among ``d``, ``tau`` and ``R`` (empty without an R axis).
CSV_COLUMNS = (
    "cell",
    "status",
    "n",
    "k",
    "d",
    "tau",
    "R",
    "runs",
    *(f"n_{kind}" for kind in metrics.KINDS),
    "fraction_global",
    "n_distinct_minima",
    "n_spurious_minima",
    "n_local_minima",
    "spurious_observed",
    "spurious_upper_95",
    "global_loss",
    "global_rank",
    "best_gap",
    "path",
)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form
    return str(value)


def sweep_csv(state: dict) -> str:
    """``sweep.csv``: one row per cell, columns ``CSV_COLUMNS`` (the cell's problem: ``n``, ``k``, ``d``,
    ``tau``, and ``R`` for a STEP sweep, which hold the swept axes' values).

    ``n_<kind>`` are the runs per kind (``metrics.KINDS``); ``spurious_*``
    the runs ending at a spurious minimum as a fraction of the cell's runs,
    and the exact one-sided 95% upper bound on it (``summaries.binomial_upper_bound``),
    left empty where ``d < rank M*`` (no minimum is spurious there). A cell
    not finished yet has only its axes, name, problem and status.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    runs = state["config"]["n_inits"]
    for cell in state["cells"]:
        p = cell["problem"]
        row = {
            "cell": cell["name"],
            "status": cell.get("status"),
            "n": sum(p["counts"]),
            "k": len(p["counts"]),
            "d": p["dim"],
            "tau": float(p["tau"]),
            "R": cell["values"].get("R"),
            "runs": runs,
            "path": cell["path"],
        }
        if cell.get("status") == "done":
            rank = cell.get("global_rank")
            bound = cell.get("spurious_fraction") or {}
            attainable = rank is None or p["dim"] >= rank
            row.update({f"n_{kind}": cell["counts"].get(kind, 0) for kind in metrics.KINDS})
            row.update(
                fraction_global=float(cell["fraction_global"]),
                n_distinct_minima=cell.get("n_distinct_minima"),
                n_spurious_minima=cell.get("n_spurious_minima"),
                n_local_minima=cell.get("n_local_minima", 0),
                spurious_observed=float(bound["observed"]) if attainable and bound else None,
                spurious_upper_95=float(bound["upper_95"]) if attainable and bound else None,
                global_loss=float(cell["global_loss"]),
                global_rank=rank,
                best_gap=None if cell.get("best_gap") is None else float(cell["best_gap"]),
            )
        writer.writerow([_csv_value(row.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()


def _grids(state: dict) -> dict:
    axes = state["config"]["axes"]
    nx = len(axes[0]["values"])
    ny = len(axes[1]["values"]) if len(axes) > 1 else 1
    frac = np.full((ny, nx), np.nan)
    spur = np.full((ny, nx), -1, np.int64)
    local = np.full((ny, nx), -1, np.int64)
    upper = np.full((ny, nx), np.nan)
    unattainable = np.zeros((ny, nx), bool)
    for idx, cell in enumerate(state["cells"]):
        if cell.get("status") == "done":
            at = (idx // nx, idx % nx)
            frac[at] = cell["fraction_global"]
            spur[at] = cell["n_spurious_minima"]
            local[at] = cell.get("n_local_minima", 0)
            rank = cell.get("global_rank")
            unattainable[at] = rank is not None and cell["problem"]["dim"] < rank
            bound = cell.get("spurious_fraction")
            if bound and not unattainable[at]:
                upper[at] = bound["upper_95"]
    return {
        "fraction": [[None if np.isnan(v) else float(v) for v in row] for row in frac],
        "n_spurious_minima": [[None if v < 0 else int(v) for v in row] for row in spur],
        "n_local_minima": [[None if v < 0 else int(v) for v in row] for row in local],
        "spurious_upper_95": [[None if np.isnan(v) else float(v) for v in row] for row in upper],
        "unattainable": unattainable.tolist(),
    }


def _sweep_title(state: dict) -> str:
    """The problem of a sweep: ``n``, ``k`` (or the STEP family), the fixed ``d`` / ``tau``, runs a cell."""
    config = state["config"]
    base, step = config["base"], config.get("step")
    swept = [ax["name"] for ax in config["axes"]]
    ns = sorted({sum(c["problem"]["counts"]) for c in state["cells"]})
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}..{ns[-1]}"
    if step:
        what = (
            f"STEP $k_{{maj}}$ = {step['k_maj']}, $k_{{min}}$ = {step['k_min']}, "
            f"$n_{{min}}$ = {step['n_min']}: n = {n}, k = {step['k_maj'] + step['k_min']}"
        )
    else:
        what = style.problem_title(base["counts"], base["dim"], base["tau"]).split(", d = ")[0]
    fixed = [f"d = {base['dim']}"] if "dim" not in swept else []
    fixed += [f"$\\tau$ = {base['tau']:g}"] if "tau" not in swept else []
    return ", ".join([what, *fixed]) + f"\n{config['n_inits']} runs a cell"


def phase_map_figure(state: dict):
    """The phase map of a sweep (``sweep.json``'s content) as a ``Figure``.

    Each cell: the fraction of runs reaching ``L*``, the number of distinct
    spurious (or, where ``d < rank M*``, local) minima, and ``sp < x%``, the
    exact one-sided 95% upper bound on the fraction of runs ending at a
    spurious minimum (not given where ``d < rank M*``).
    """
    axes = state["config"]["axes"]
    grids = _grids(state)
    frac = np.array([[np.nan if v is None else v for v in row] for row in grids["fraction"]], np.float64)
    notes = [
        [_cell_note(*values) for values in zip(*rows, strict=True)]
        for rows in zip(
            grids["n_spurious_minima"],
            grids["n_local_minima"],
            grids["spurious_upper_95"],
            grids["unattainable"],
            strict=True,
        )
    ]
    nx = len(axes[0]["values"])
    return maps.phase_map(
        axes[0]["values"],
        axes[1]["values"] if len(axes) > 1 else None,
        frac,
        xlabel=AXIS_LABELS[axes[0]["name"]],
        ylabel=AXIS_LABELS[axes[1]["name"]] if len(axes) > 1 else None,
        annotations=notes,
        hatch=np.array(grids["unattainable"], bool),
        hatch_label="$d <$ rank $M^*$: $L^*$ not attainable",
        footnote="sp < x%: 95% upper bound on the fraction\nof runs ending at a spurious minimum",
        title=_sweep_title(state),
        width=max(style.COLUMN_WIDTH, 0.75 * nx + 1.4),
    )


def _cell_note(n_spurious, n_local, upper, unattainable: bool) -> str:
    """Cell note: distinct minima not certified global, and the bound on the spurious fraction.

    Where ``L*`` is unattainable every uncertified minimum is counted (as
    "minima": spurious has no meaning there) and no bound is given.
    """
    if n_spurious is None:
        return ""
    lines = []
    if unattainable:
        total = n_spurious + (n_local or 0)
        if total:
            lines.append(f"{total} {'minimum' if total == 1 else 'minima'}")
        return "\n".join(lines)
    if n_spurious:
        lines.append(f"{n_spurious} spurious")
    if n_local:
        lines.append(f"{n_local} local")
    if upper is not None:
        lines.append(f"sp < {style.percent(upper)}")
    return "\n".join(lines)


#: The figure files ``plot_sweep`` writes, and so the only ones it may remove as stale.
PHASE_MAP_FILES = tuple(f"phase_map.{fmt}" for fmt in style.FORMATS)


def plot_sweep(out: str, formats=("png", "pdf"), *, state: dict | None = None) -> list[str]:
    """(Re)draw ``out/figures/phase_map.*`` and ``out/report.md`` from ``out/sweep.json``; returns the
    written paths (the report last).

    A phase map of a format not asked for this time (left by an earlier call)
    is removed, so ``figures/`` holds only the current drawing; no other file
    is touched. ``sweep.csv`` is (re)written alongside when missing.
    """
    if state is None:
        path = os.path.join(out, "sweep.json")
        if not os.path.exists(path):
            raise atomic.ResultsError(f"{out} is not a sweep folder (no sweep.json)")
        state = read_state(path)
        if not os.path.exists(os.path.join(out, "sweep.csv")):
            atomic.write_atomic(os.path.join(out, "sweep.csv"), sweep_csv(state).encode())
    if not any(c.get("status") == "done" for c in state["cells"]):
        raise atomic.ResultsError(f"{out}: no cell of the sweep has finished yet")
    fig = phase_map_figure(state)
    written = []
    for fmt in formats:
        target = os.path.join(out, "figures", f"phase_map.{fmt}")
        atomic.write_atomic(target, style.figure_bytes(fig, fmt))
        written.append(target)
    keep = {os.path.basename(p) for p in written}
    for name in PHASE_MAP_FILES:
        stale = os.path.join(out, "figures", name)
        if name not in keep and os.path.isfile(stale) and not os.path.islink(stale):
            os.remove(stale)
    report = os.path.join(out, "report.md")
    atomic.write_atomic(report, sweep_report(state, [os.path.relpath(p, out) for p in written]).encode())
    return written + [report]


def sweep_report(state: dict, figures=()) -> str:
    """``report.md`` of a sweep: its problem, one row per cell (from ``sweep.json``) and the phase map."""
    config = state["config"]
    axes = "; ".join(a["name"] + " = " + ", ".join(f"{v:g}" for v in a["values"]) for a in config["axes"])
    lines = [
        "# Sweep",
        "",
        _sweep_title(state).replace("\n", " ").replace("$\\tau$", "tau"),
        "",
        f"Axes: {axes}; seed {config['seed']}. Every cell is a scan folder of its own (`cells/NAME`, "
        "with its `summary.json`; `sclandscape plot cells/NAME` draws its report).",
        "",
        "| cell | status | fraction at L* | distinct spurious minima | distinct local minima | "
        "95% bound on the spurious fraction |",
        "|---|---|---|---|---|---|",
    ]
    for cell in state["cells"]:
        done = cell.get("status") == "done"
        bound = (cell.get("spurious_fraction") or {}).get("upper_95")
        rank = cell.get("global_rank")
        attainable = rank is None or cell["problem"]["dim"] >= rank
        row = [
            f"[{cell['name']}]({cell['path']})",
            cell.get("status", ""),
            f"{cell['fraction_global']:.3f}" if done else "",
            str(cell.get("n_spurious_minima", "")) if done else "",
            str(cell.get("n_local_minima", "")) if done else "",
            (style.percent(bound) if bound is not None and attainable else "L* not attainable")
            if done
            else "",
        ]
        lines.append("| " + " | ".join(row) + " |")
    for path in figures:
        if path.endswith(".png"):
            lines += ["", f"![phase map]({path})"]
    lines += ["", "Per-cell numbers as a table: `sweep.csv`; everything: `sweep.json`.", ""]
    return "\n".join(lines)
