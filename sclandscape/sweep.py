"""Sweeps: one scan per cell of a one- or two-parameter grid, and the phase map (``sclandscape sweep``).

The grid varies one or two of ``dim`` (embedding dimension ``d``), ``tau``
(temperature) and ``R`` (STEP imbalance ratio, with ``step = (k_maj, k_min,
n_min)``); everything else comes from the base problem. Layout of ``out``::

    sweep.json                 the grid, the base problem, settings, and per cell its status,
                               fraction of runs reaching L* and distinct spurious minima
    cells/<name>/              one results folder per cell (``results.run_scan``), e.g.
                               cells/dim=2_tau=0.5/
    figures/phase_map.{png,pdf}

``run_sweep`` is resumable: ``sweep.json`` is rewritten (atomically) after
every cell; a cell with a ``summary.json`` is done and skipped, any other is
(re)started with ``resume=True``, which continues an interrupted scan from
its chunks. Rerunning with a different grid or settings into the same
``out`` is refused once any cell has started (every differing field named;
the ``execution`` settings, such as slots, may change). One process at a
time writes a sweep folder (``results.FolderLock``); every cell's values are
checked before anything is written.

For each cell, "reaching the global optimum" means ending as ``global_min``
(certificate or loss within tolerance of the relaxation's ``L*``, docs/maths.md §2);
below ``d = rank(M*)`` that is impossible by construction, and the fraction
is 0 whatever the landscape.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from sclandscape import plots, problems, results, scanner

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


def _cell_result(summary: dict) -> dict:
    n = max(1, int(summary["n_inits"]))
    spurious = [m for m in summary["distinct_minima"] if not m["certified_global"]]
    return {
        "status": "done",
        "global_loss": summary["global_loss"],
        "global_rank": summary.get("global_rank"),
        "counts": summary["counts"],
        "fraction_global": summary["counts"]["global_min"] / n,
        "n_spurious_minima": len(spurious),
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
      n_inits, seed, settings: as in ``results.run_scan``, the same for every cell
        (``settings`` defaults to ``ScanSettings()``).
      out: the sweep folder (new, empty, or a previous run of this same sweep).
      step: ``(k_maj, k_min, n_min)`` of the STEP counts, needed for an ``R`` axis.
      formats: of the phase-map figure.
      progress: passed to ``results.run_scan`` for each cell.
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
    if not formats or any(f not in plots.FORMATS for f in formats):
        raise ValueError(f"formats must be values from {plots.FORMATS}, got {formats!r}")
    cells = _cells(grid)
    cell_problems = [_cell_problem(problem, values, step) for values in cells]
    config = _sweep_config(problem, grid, step, n_inits, seed, settings)

    if os.path.exists(out) and not os.path.isdir(out):
        raise results.ResultsError(f"--out {out} exists and is not a folder")
    _check_folder(out, config)  # refuse before creating or locking anything
    created = not os.path.exists(out)
    try:
        with results.lock_folder(out):  # one writer per sweep folder (each cell locks its own as well)
            _check_folder(out, config)
            return _run_cells(
                out, config, cells, cell_problems, n_inits, seed, settings, formats, progress, log
            )
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out)  # only when empty: refused before writing anything


def _cells_started(out: str) -> bool:
    """Whether any cell folder of ``out`` holds results (a scan's files, not just its scaffolding)."""
    cells = os.path.join(out, "cells")
    return os.path.isdir(cells) and any(
        results.holds_results(os.path.join(cells, c)) for c in os.listdir(cells)
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
            differences = results.config_differences(state["config"], config)
        except ValueError as err:
            raise results.ResultsError(f"{path}: {err}") from None
        if differences and _cells_started(out):
            raise results.ResultsError(
                f"{out} holds a different sweep (its sweep.json differs: {'; '.join(differences)})"
            )
    elif results.holds_results(out):
        raise results.ResultsError(f"--out {out} exists, is not empty and holds no sweep.json")


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_state(path: str) -> dict:
    """``sweep.json``, checked: an object with a ``config`` (``axes``, ``base``) and a ``cells`` list."""
    state = results.read_json(path, keys=("config", "cells"))
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
        raise results.ResultsError(f"{path}: 'config' does not describe a sweep grid (axes, base, n_inits)")
    size = int(np.prod([len(a["values"]) for a in axes]))
    if not isinstance(cells, list) or len(cells) != size or not all(isinstance(c, dict) for c in cells):
        raise results.ResultsError(f"{path}: 'cells' must be a list of {size} cell records")
    for cell in cells:
        if cell.get("status") == "done":
            for key in ("fraction_global", "n_spurious_minima"):
                if not _number(cell.get(key)):
                    raise results.ResultsError(f"{path}: a finished cell has no number {key!r}")
            if not isinstance(cell.get("problem"), dict) or not isinstance(cell["problem"].get("dim"), int):
                raise results.ResultsError(f"{path}: a finished cell has no problem with a 'dim'")
    return state


def _run_cells(out, config, cells, cell_problems, n_inits, seed, settings, formats, progress, log) -> dict:
    path = os.path.join(out, "sweep.json")
    for folder in (out, os.path.join(out, "figures")):  # left by a killed write (we hold the lock)
        results.clean_temps(folder, sole_writer=True)
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
    results.write_json(path, state)
    for i, (cell, p) in enumerate(zip(state["cells"], cell_problems, strict=True)):
        folder = os.path.join(out, cell["path"])
        summary_path = os.path.join(folder, "summary.json")
        if os.path.exists(summary_path):
            summary = results.read_summary(summary_path)
            what = "done earlier, skipped"
        else:
            summary = results.run_scan(
                p, n_inits, seed, settings, folder, resume=True, progress=progress, log=log
            )
            what = "done"
        cell.update(_cell_result(summary))
        results.write_json(path, state)
        if log:
            log(
                f"[{i + 1}/{len(cells)}] {cell['name']}: {what}; fraction global "
                f"{cell['fraction_global']:.3f}, {cell['n_spurious_minima']} distinct spurious minima"
            )
    state.update(_grids(state))
    state["figures"] = [os.path.relpath(f, out) for f in plot_sweep(out, formats, state=state)]
    results.write_json(path, state)
    return state


def _grids(state: dict) -> dict:
    axes = state["config"]["axes"]
    nx = len(axes[0]["values"])
    ny = len(axes[1]["values"]) if len(axes) > 1 else 1
    frac = np.full((ny, nx), np.nan)
    spur = np.full((ny, nx), -1, np.int64)
    unattainable = np.zeros((ny, nx), bool)
    for idx, cell in enumerate(state["cells"]):
        if cell.get("status") == "done":
            frac[idx // nx, idx % nx] = cell["fraction_global"]
            spur[idx // nx, idx % nx] = cell["n_spurious_minima"]
            rank = cell.get("global_rank")
            unattainable[idx // nx, idx % nx] = rank is not None and cell["problem"]["dim"] < rank
    return {
        "fraction": [[None if np.isnan(v) else float(v) for v in row] for row in frac],
        "n_spurious_minima": [[None if v < 0 else int(v) for v in row] for row in spur],
        "unattainable": unattainable.tolist(),
    }


def phase_map_figure(state: dict):
    """The phase map of a sweep (``sweep.json``'s content) as a ``Figure``."""
    axes = state["config"]["axes"]
    grids = _grids(state)
    frac = np.array([[np.nan if v is None else v for v in row] for row in grids["fraction"]], np.float64)
    notes = [
        [_spurious_note(v, gone) for v, gone in zip(row, hatch, strict=True)]
        for row, hatch in zip(grids["n_spurious_minima"], grids["unattainable"], strict=True)
    ]
    base = state["config"]["base"]
    step = state["config"].get("step")
    if step:
        what = f"STEP $k_{{maj}}$={step['k_maj']}, $k_{{min}}$={step['k_min']}, $n_{{min}}$={step['n_min']}"
    else:
        what = "counts " + ",".join(str(c) for c in base["counts"])
    fixed = [f"{a}={base[a]:g}" for a in ("dim", "tau") if a not in [ax["name"] for ax in axes]]
    return plots.phase_map(
        axes[0]["values"],
        axes[1]["values"] if len(axes) > 1 else None,
        frac,
        xlabel=AXIS_LABELS[axes[0]["name"]],
        ylabel=AXIS_LABELS[axes[1]["name"]] if len(axes) > 1 else None,
        annotations=notes,
        hatch=np.array(grids["unattainable"], bool),
        hatch_label="$d <$ rank $M^*$: $L^*$ not attainable",
        title=", ".join([what, *fixed]) + f"; {state['config']['n_inits']} runs a cell",
    )


def _spurious_note(n, unattainable: bool) -> str:
    """Cell note: distinct minima that are not certified global (all of them where L* is unattainable)."""
    if n is None or n == 0:
        return ""
    return f"{n} minima" if unattainable else f"{n} spurious"


def plot_sweep(out: str, formats=("png", "pdf"), *, state: dict | None = None) -> list[str]:
    """(Re)draw ``out/figures/phase_map.*`` from ``out/sweep.json``; returns the written paths."""
    if state is None:
        path = os.path.join(out, "sweep.json")
        if not os.path.exists(path):
            raise results.ResultsError(f"{out} is not a sweep folder (no sweep.json)")
        state = read_state(path)
    if not any(c.get("status") == "done" for c in state["cells"]):
        raise results.ResultsError(f"{out}: no cell of the sweep has finished yet")
    fig = phase_map_figure(state)
    written = []
    for fmt in formats:
        target = os.path.join(out, "figures", f"phase_map.{fmt}")
        results.write_atomic(target, plots.figure_bytes(fig, fmt))
        written.append(target)
    return written
