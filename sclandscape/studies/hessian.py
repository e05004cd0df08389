"""TODO docstring"""

from __future__ import annotations

import os

import numpy as np

from sclandscape.core import precision
from sclandscape.folders import atomic, reading
from sclandscape.numerics import oblique
from sclandscape.studies import folder
from sclandscape.theory import hessian


def hessian_spectra(out: str, run_indices=None, *, progress=None) -> str:
    """Full Riemannian Hessian spectra into ``out/hessian/spectra.npz``: the distinct points, or chosen runs.

    Default: every distinct critical point of the scan (``points.npz``,
    stored at scan time). With ``run_indices``: those runs (their saved
    embeddings, or their distinct points'). Nothing is re-optimised; the
    spectra are computed in float64 (dense). The file holds ``runs`` (-1 for a
    point), ``points``, ``eigenvalues`` ``(r, n(d-1))`` ascending,
    ``n_zero_predicted``, ``kind``, ``index``, ``lambda_min``, ``tol`` and
    ``loss`` (the scan's verdict on each point); it is written atomically.
    ``progress``: as in ``run_scan`` (phases ``spectra``, ``writing``).
    Returns its path. Raises ``ValueError`` (one line) on bad input.
    """
    progress = folder.reporter(progress)
    data = reading.load_scan(out)
    runs, problem, points = data["runs"], data["problem"], data.get("points") or {}
    N = problem.n * (problem.dim - 1)
    if problem.dim < 2:
        raise ValueError(f"{out}: d = 1 has no tangent space (no Hessian)")
    if N > hessian.DENSE_MAX_DIM:
        raise ValueError(
            f"full spectra need n(d-1) <= {hessian.DENSE_MAX_DIM}, this scan has {N} "
            "(use sclandscape.theory.hessian.lanczos_extremes / spectral_density)"
        )
    if run_indices is None:
        if not len(points.get("loss", [])):
            raise ValueError(f"{out}: the scan stored no distinct critical point (no converged run)")
        H = np.asarray(points["H"])
        chosen_runs = np.full(H.shape[0], -1, np.int64)
        chosen_points = np.arange(H.shape[0])
        fields = {
            f: np.asarray(points[f])
            for f in ("kind", "index", "lambda_min", "tol", "loss", "n_zero_predicted")
        }
    else:
        rows = folder.rows_of(data, run_indices)
        found = folder.embeddings_of(data, rows, out, progress, len(rows))
        H = np.stack([found[r] for r in rows])
        chosen_runs = np.asarray(runs["run"])[rows].astype(np.int64)
        chosen_points = np.asarray(runs.get("point", np.full(len(runs["run"]), -1)))[rows]
        fields = {
            "kind": np.asarray(runs["kind"])[rows],
            "index": np.asarray(runs["hess_index"])[rows],
            "lambda_min": np.asarray(runs["hess_lambda_min"])[rows],
            "tol": np.asarray(runs["hess_tol"])[rows],
            "loss": np.asarray(runs["loss"])[rows],
            "n_zero_predicted": np.asarray(runs["hess_n_zero_predicted"])[rows],
        }
    progress(0, H.shape[0], "spectra", f"dense, n(d-1) = {N}")
    with precision.float64():
        eigs = np.asarray(hessian.riemannian_hessian_eigs(H, problem.labels, problem.tau))
        if np.any(fields["n_zero_predicted"] < 0):  # runs judged without a spectrum: the symmetry count
            ranks = np.atleast_1d(np.asarray(oblique.numerical_rank(H)))
            fields["n_zero_predicted"] = np.array(
                [oblique.predicted_zero_modes(int(r), problem.dim) for r in ranks]
            )
    arrays = {
        "runs": chosen_runs,
        "points": np.asarray(chosen_points, np.int64),
        "eigenvalues": eigs.reshape(H.shape[0], N),
        "n_zero_predicted": np.asarray(fields["n_zero_predicted"], np.int64),
        "kind": np.asarray(fields["kind"]).astype("<U13"),
        "index": np.asarray(fields["index"], np.int64),
        "lambda_min": np.asarray(fields["lambda_min"], np.float64),
        "tol": np.asarray(fields["tol"], np.float64),
        "loss": np.asarray(fields["loss"], np.float64),
    }
    progress(H.shape[0], H.shape[0], "writing")
    path = os.path.join(out, "hessian", "spectra.npz")
    atomic.write_npz(path, arrays)
    return path
