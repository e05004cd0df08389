"""The ``hessian --trace/--density`` study of a scan folder: trace and spectral density at its points.

Folder in, folder out: reads the scan (``folders.reading``), computes the
Hutchinson trace and the stochastic Lanczos density at the chosen points
(``explore.curvature``), writes ``hessian/curvature.json``, ``.npz`` and the
density figures (``drawing.tools.density_figure``).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from sclandscape.drawing import tools
from sclandscape.explore.curvature import density, hutchinson_trace
from sclandscape.folders import atomic, reading
from sclandscape.studies import folder


def scan_curvature(
    out: str,
    run_indices=None,
    *,
    trace: bool = True,
    spectrum: bool = True,
    trace_probes: int = 64,
    num_probes: int = 4,
    num_iter: int = 80,
    formats=("png",),
    seed: int = 0,
    progress=None,
) -> dict:
    """Trace and/or spectral density of chosen runs of the finished scan ``out``, at any size.

    ``run_indices`` default: one run per distinct critical point of the scan
    (``reading.point_rows``). Writes ``out/hessian/curvature.json``
    (per run: ``run``, ``kind``, ``loss``, ``trace``, ``trace_stderr``,
    ``trace_probes``, ``n_tangent``; the density's ``sigma``, ``num_iter``,
    ``num_probes``), ``out/hessian/density.npz`` (``runs``, ``grid``,
    ``density``, ``nodes``, ``weights``: one row per run) and
    ``out/figures/hessian_density_run{I}.{fmt}``. Returns the JSON content.
    """
    if not (trace or spectrum):
        raise ValueError("ask for the trace, the density, or both")
    formats = folder.check_formats(formats)
    data = folder.open_scan(out, "OB(n, 1) has no tangent space: no Hessian")
    runs, problem = data["runs"], data["problem"]
    if run_indices is None:
        rows = reading.point_rows(data)
        if not rows:
            raise ValueError(f"{out}: no converged run to take a spectrum of")
    else:
        rows = folder.rows_of(data, run_indices)
    report = folder.reporter(progress)
    found = folder.embeddings_of(data, rows, out, report, len(rows))
    trace_key, density_key = jax.random.split(jax.random.key(seed))
    entries, densities = [], []
    for k, row in enumerate(rows):
        run = int(runs["run"][row])
        entry = {
            "run": run,
            "kind": str(runs["kind"][row]),
            "loss": float(runs["loss"][row]),
            "n_tangent": problem.n * (problem.dim - 1),
        }
        if trace:
            report(k, len(rows), "trace", f"run {run}: {trace_probes} probes")
            key = jax.random.fold_in(trace_key, run)
            est = hutchinson_trace(found[row], problem.labels, problem.tau, num_probes=trace_probes, key=key)
            entry.update(trace=est.trace, trace_stderr=est.stderr, trace_probes=trace_probes)
        if spectrum:
            report(k, len(rows), "density", f"run {run}: {num_probes} probes x {num_iter} Lanczos steps")
            key = jax.random.fold_in(density_key, run)
            dens = density(
                found[row], problem.labels, problem.tau, num_iter=num_iter, num_probes=num_probes, key=key
            )
            entry.update(sigma=dens["sigma"], num_iter=int(dens["nodes"].shape[-1]), num_probes=num_probes)
            densities.append(dens)
        entries.append(entry)
    report(len(rows), len(rows), "writing")
    record = {
        "problem": problem.to_json(),
        "global_loss": float(data["summary"]["global_loss"]),
        "runs": entries,
    }
    if spectrum:
        record["figures"] = _write_densities(out, entries, densities, problem, formats)
    atomic.write_json(os.path.join(out, "hessian", "curvature.json"), record)
    return record


def _write_densities(out: str, entries: list, densities: list, problem, formats) -> list[str]:
    """``hessian/density.npz`` (one row per run) and one density figure per run; the figures' paths."""
    stacked = {k: np.stack([d[k] for d in densities]) for k in ("grid", "density", "nodes", "weights")}
    runs = np.array([e["run"] for e in entries], np.int64)
    atomic.write_npz(os.path.join(out, "hessian", "density.npz"), {"runs": runs, **stacked})
    figures = []
    for entry, dens in zip(entries, densities, strict=True):
        fig = tools.density_figure(entry, dens, problem.to_json())
        figures += folder.write_figure(out, f"hessian_density_run{entry['run']}", fig, formats)
    return figures
