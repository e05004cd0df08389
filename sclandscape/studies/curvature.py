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

from sclandscape.core import progress as progress_lib
from sclandscape.drawing import style, tools
from sclandscape.explore.curvature import density, hutchinson_trace
from sclandscape.folders import atomic, reading


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
    formats = tuple(formats)
    if any(f not in style.FORMATS for f in formats):
        raise ValueError(f"formats must be values from {style.FORMATS}, got {formats!r}")
    data = reading.load_scan(out)
    runs, problem = data["runs"], data["problem"]
    if problem.dim < 2:
        raise ValueError("OB(n, 1) has no tangent space: no Hessian")
    index_of = {int(i): r for r, i in enumerate(np.asarray(runs["run"]))}
    if run_indices is None:
        rows = reading.point_rows(data)
        if not rows:
            raise ValueError(f"{out}: no converged run to take a spectrum of")
    else:
        run_indices = [int(i) for i in run_indices]
        bad = [i for i in run_indices if i not in index_of]
        if not run_indices or bad:
            raise ValueError(f"runs must be indices of this scan (0..{len(index_of) - 1}), got {bad or '[]'}")
        rows = [index_of[i] for i in dict.fromkeys(run_indices)]
    report = progress_lib.adapt(progress) or (lambda *a: None)
    report(0, len(rows), "embeddings", "saved" if "H" in runs else "stored points")
    found, notes = reading.embeddings(data, rows)
    if notes:
        raise ValueError(f"{out}: {notes[0]}")
    labels, tau = problem.labels, problem.tau
    entries, densities = [], []
    trace_key, density_key = jax.random.split(jax.random.key(seed))
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
            est = hutchinson_trace(
                found[row], labels, tau, num_probes=trace_probes, key=jax.random.fold_in(trace_key, run)
            )
            entry.update(trace=est.trace, trace_stderr=est.stderr, trace_probes=trace_probes)
        if spectrum:
            report(k, len(rows), "density", f"run {run}: {num_probes} probes x {num_iter} Lanczos steps")
            dens = density(
                found[row],
                labels,
                tau,
                num_iter=num_iter,
                num_probes=num_probes,
                key=jax.random.fold_in(density_key, run),
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
        atomic.write_npz(
            os.path.join(out, "hessian", "density.npz"),
            {
                "runs": np.array([e["run"] for e in entries], np.int64),
                "grid": np.stack([d["grid"] for d in densities]),
                "density": np.stack([d["density"] for d in densities]),
                "nodes": np.stack([d["nodes"] for d in densities]),
                "weights": np.stack([d["weights"] for d in densities]),
            },
        )
        record["figures"] = []
        for entry, dens in zip(entries, densities, strict=True):
            fig = tools.density_figure(entry, dens, problem.to_json())
            for fmt in formats:
                rel = f"figures/hessian_density_run{entry['run']}.{fmt}"
                atomic.write_atomic(os.path.join(out, rel), style.figure_bytes(fig, fmt))
                record["figures"].append(rel)
    atomic.write_json(os.path.join(out, "hessian", "curvature.json"), record)
    return record
