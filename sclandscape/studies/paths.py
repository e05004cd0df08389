"""The ``path`` study of a scan folder: minimum-energy paths between its distinct minima.

Folder in, folder out: reads the scan (``folders.reading``), runs the string
method between pairs of minima (``explore.paths.minimum_energy_path``), writes
``paths.json``, the paths' arrays and figures (``drawing.tools.path_figure``).
"""

from __future__ import annotations

import os

import numpy as np

from sclandscape.drawing import tools
from sclandscape.explore.paths import PathSettings, minimum_energy_path
from sclandscape.folders import atomic, reading, summaries
from sclandscape.studies import folder


def scan_paths(
    out: str,
    runs=None,
    *,
    settings: PathSettings | None = None,
    max_pairs: int = 10,
    formats=("png",),
    progress=None,
) -> dict:
    """Minimum-energy paths between the distinct minima of the finished scan ``out``.

    ``runs``: two run indices (the path between them), or ``None``: every pair
    of the summary's distinct minima (lowest loss first, at most ``max_pairs``),
    each represented by its lowest-loss run. Embeddings are the runs' own
    (``--save-embeddings``) or their distinct points' (stored at scan time).

    Writes ``out/paths.json`` (``problem``, ``global_loss`` and ``paths``, which
    keeps the pairs computed by earlier calls and replaces those computed again:
    one entry per pair with ``from`` / ``to`` (run indices), ``from_minimum`` /
    ``to_minimum`` (the minima's point indices, as in ``points.npz`` and the
    report, or ``None``), ``from_loss``, ``to_loss``, ``barrier``, ``barrier_reverse``, ``saddle_loss``,
    ``saddle_index``, ``saddle_kind``, ``connects``, ..., ``segments``,
    ``settings`` and ``profile``: ``s``, ``loss`` along the string),
    ``out/paths/path_I_J.npz`` (images, losses, saddle) and
    ``out/figures/path_I_J.{fmt}``; all atomically. Returns ``paths.json``'s
    content with only this call's paths. ``ValueError`` (one line) on bad input.
    """
    settings = PathSettings() if settings is None else settings
    data = folder.open_scan(out, "paths need d >= 2 (OB(n, 1) is a finite set)")
    problem, runs_rec = data["problem"], data["runs"]
    if problem.nonneg:
        raise ValueError("paths of the non-negative (UFM+) problem are not supported")
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise ValueError(f"max_pairs must be an integer >= 1, got {max_pairs!r}")
    formats = folder.check_formats(formats)
    pairs = _pairs(data, runs, max_pairs, out)
    minimum_of = {r: m for m, r, _ in reading.minimum_rows(data)}
    report = folder.reporter(progress)
    found = folder.embeddings_of(data, sorted({r for pair in pairs for r in pair}), out, report, len(pairs))
    global_loss = float(data["summary"]["global_loss"])
    entries = []
    for p, (ra, rb) in enumerate(pairs):

        def inner(done, total, phase=None, detail=None, p=p):
            report(p, len(pairs), f"path {p + 1}/{len(pairs)}: {phase}", detail)

        res = minimum_energy_path(
            found[ra],
            found[rb],
            problem.labels,
            problem.tau,
            global_loss=global_loss,
            settings=settings,
            progress=inner,
        )
        i, j = int(runs_rec["run"][ra]), int(runs_rec["run"][rb])
        entry = _entry(res, i, j, minimum_of.get(ra), minimum_of.get(rb), formats)
        entries.append(entry)
        report(p + 1, len(pairs), "writing", f"path_{i}_{j}")
        arrays = {k: res[k] for k in ("images", "losses", "arclength", "saddle")}
        atomic.write_npz(os.path.join(out, entry["arrays"]), arrays)
        fig = tools.path_figure(entry, global_loss, problem.to_json())
        folder.write_figure(out, f"path_{i}_{j}", fig, formats)
    return _write_state(out, problem, global_loss, entries, settings)


def _write_state(out: str, problem, global_loss: float, entries: list, settings) -> dict:
    """``paths.json``: the paths computed earlier (other pairs, other settings) stay, a pair computed
    again is replaced. Returns its content with only ``entries``."""
    path = os.path.join(out, "paths.json")
    earlier = atomic.read_json(path).get("paths", []) if os.path.exists(path) else []
    done = {(e["from"], e["to"]) for e in entries}
    kept = [e for e in earlier if (e.get("from"), e.get("to")) not in done]
    state = {
        "problem": problem.to_json(),
        "global_loss": global_loss,
        "paths": kept + [{**e, "settings": settings.to_json()} for e in entries],
    }
    atomic.write_json(path, state)
    return {**state, "paths": state["paths"][len(kept) :]}


#: What ``paths.json`` keeps of each path (``minimum_energy_path``'s result).
ENTRY_FIELDS = (
    "barrier",
    "barrier_reverse",
    "saddle_loss",
    "saddle_index",
    "saddle_kind",
    "saddle_grad_norm",
    "saddle_status",
    "saddle_lambda_min",
    "saddle_position",
    "path_max_loss",
    "connects",
    "descent_losses",
    "converged",
    "distance",
    "length",
    "segments",
    "intermediate_minima",
)


def _entry(res: dict, i: int, j: int, from_minimum, to_minimum, formats) -> dict:
    """The ``paths.json`` entry of the path from run ``i`` to run ``j``."""
    name = f"path_{i}_{j}"
    return {
        "from": i,
        "to": j,
        "from_minimum": from_minimum,
        "to_minimum": to_minimum,
        "from_loss": float(res["losses"][0]),
        "to_loss": float(res["losses"][-1]),
        **{k: res[k] for k in ENTRY_FIELDS},
        "arrays": f"paths/{name}.npz",
        "figures": [f"figures/{name}.{fmt}" for fmt in formats],
        "profile": {"s": res["arclength"].tolist(), "loss": res["losses"].tolist()},
    }


def _pairs(data: dict, runs, max_pairs: int, out: str) -> list[tuple[int, int]]:
    """The pairs of rows to join: the two runs given, or the distinct minima pairwise (lowest first)."""
    runs_rec = data["runs"]
    kind = np.asarray(runs_rec["kind"]).astype(str)
    if runs is not None:
        runs = [int(i) for i in runs]
        if len(runs) != 2 or runs[0] == runs[1]:
            raise ValueError(f"give two different run indices, got {runs}")
        rows = folder.rows_of(data, runs)
        for i, r in zip(runs, rows, strict=True):
            if kind[r] not in summaries.MINIMA:
                raise ValueError(f"run {i} is {kind[r]}, not a local minimum")
        return [(rows[0], rows[1])]
    reps = [r for _, r, _ in reading.minimum_rows(data)]
    if len(reps) < 2:
        raise ValueError(
            f"{out}: the scan found {len(reps)} distinct minimum(s); a path needs two "
            "(give --runs I,J for two runs of your choice)"
        )
    return [(reps[i], reps[j]) for i in range(len(reps)) for j in range(i + 1, len(reps))][:max_pairs]
