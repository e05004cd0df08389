r"""Hessian trace (Hutchinson) and spectral density (stochastic Lanczos quadrature) at any size.

Both are matrix free: they need only Hessian-vector products
(``hessian.hvp_operator``: forward-over-reverse autodiff of the dense or the
streaming loss), so they work where the dense spectrum (``n(d-1) <= 3000``)
does not.

**Trace.** With ``U`` the orthonormal tangent basis (``oblique.tangent_basis``)
and ``c`` a Rademacher vector of ``n(d-1)`` signs, ``v = U c`` is a tangent
vector with ``E[c c^T] = I``, so ``E[<v, Hess v>] = tr(U^T Hess U)``: the trace
of the Riemannian Hessian on the tangent space (Hutchinson, 1989). The
estimate is the mean over ``m`` probes and its standard error the sample
standard deviation over ``sqrt(m)``; for Rademacher probes the variance of one
probe is ``2 (|A|_F^2 - sum_i A_ii^2)`` in the tangent coordinates (the
diagonal is counted exactly), never more than Gaussian probes' ``2 |A|_F^2``.

**Density.** ``hessian.spectral_density`` (stochastic Lanczos quadrature,
Ubaru, Chen & Saad 2017): each of ``P`` Rademacher tangent probes gives an
``m``-point Gauss quadrature of the spectral measure ``(1/N) sum_j
delta(lambda - lambda_j)``; ``hessian.density_on_grid`` broadens the nodes by
Gaussians of width ``sigma = (theta_max - theta_min) / DENSITY_RESOLUTION``,
on a grid reaching ``3 sigma`` beyond the extreme nodes. With ``m >= N`` the
quadrature is exact: its nodes are eigenvalues.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape import hessian, oblique, plots, precision, problems, results
from sclandscape import progress as progress_lib

#: Kernel width of the density, as a fraction of the spectral range covered by the nodes.
DENSITY_RESOLUTION = 200
#: Points of the density grid.
GRID_POINTS = 512


class TraceEstimate(NamedTuple):
    """``trace`` (mean of the probes), ``stderr`` (their standard deviation / sqrt(m)), ``samples``."""

    trace: float
    stderr: float
    samples: np.ndarray


@functools.partial(jax.jit, static_argnames="num_probes")
def _hutchinson(H, labels, tau, key, num_probes):
    H = oblique.normalize_rows(H)
    n, d = H.shape
    apply = hessian.hvp_operator(H, labels, tau)
    U = oblique.tangent_basis(H)

    def probe(k):
        v = oblique.to_ambient(U, jax.random.rademacher(k, (n, d - 1), H.dtype))
        return jnp.sum(v * apply(v))

    return jax.lax.map(probe, jax.random.split(key, num_probes))


def hutchinson_trace(H, labels, tau, *, num_probes: int = 64, key=None) -> TraceEstimate:
    """Hutchinson estimate of ``tr Hess L(H)`` on the tangent space (module docstring), float64.

    ``H`` ``(n, d)``; ``num_probes`` Hessian-vector products. Needs ``num_probes >= 2``
    (a standard error needs two samples).
    """
    shape = problems.check_points(H, labels, tau)
    if len(shape) != 2:
        raise ValueError(f"H must be one (n, d) configuration, got shape {shape}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 2:
        raise ValueError(f"num_probes must be an integer >= 2, got {num_probes!r}")
    key = jax.random.key(0) if key is None else key
    with precision.float64():
        samples = np.asarray(
            _hutchinson(jnp.asarray(H, jnp.float64), jnp.asarray(labels), float(tau), key, num_probes)
        )
    return TraceEstimate(float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(samples.size)), samples)


def density(H, labels, tau, *, num_iter: int = 80, num_probes: int = 4, key=None) -> dict:
    """Spectral density of the Riemannian Hessian at ``H`` by stochastic Lanczos quadrature, float64.

    Returns ``nodes``, ``weights`` (``(num_probes, m)``, summing to 1), ``grid``,
    ``density`` (integrating to 1 over the grid, up to the tails beyond it)
    and ``sigma`` (module docstring).
    """
    shape = problems.check_points(H, labels, tau)
    if len(shape) != 2:
        raise ValueError(f"H must be one (n, d) configuration, got shape {shape}")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 1:
        raise ValueError(f"num_iter must be an integer >= 1, got {num_iter!r}")
    with precision.float64():
        nodes, weights = hessian.spectral_density(
            jnp.asarray(H, jnp.float64), labels, tau, num_iter=num_iter, num_probes=num_probes, key=key
        )
        nodes, weights = np.asarray(nodes), np.asarray(weights)
        lo, hi = float(nodes.min()), float(nodes.max())
        sigma = max(hi - lo, abs(hi), 1e-12) / DENSITY_RESOLUTION
        grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, GRID_POINTS)
        values = np.asarray(hessian.density_on_grid(nodes, weights, grid, sigma))
    return {"nodes": nodes, "weights": weights, "grid": grid, "density": values, "sigma": sigma}


#: The public names (``sc.hessian_trace``, ``sc.hessian_density``): one call each, as in PyHessian.
hessian_trace = hutchinson_trace
hessian_density = density


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
    (``results.point_rows``). Writes ``out/hessian/curvature.json``
    (per run: ``run``, ``kind``, ``loss``, ``trace``, ``trace_stderr``,
    ``trace_probes``, ``n_tangent``; the density's ``sigma``, ``num_iter``,
    ``num_probes``), ``out/hessian/density.npz`` (``runs``, ``grid``,
    ``density``, ``nodes``, ``weights``: one row per run) and
    ``out/figures/hessian_density_run{I}.{fmt}``. Returns the JSON content.
    """
    if not (trace or spectrum):
        raise ValueError("ask for the trace, the density, or both")
    formats = tuple(formats)
    if any(f not in plots.FORMATS for f in formats):
        raise ValueError(f"formats must be values from {plots.FORMATS}, got {formats!r}")
    data = results.load_scan(out)
    runs, problem = data["runs"], data["problem"]
    if problem.dim < 2:
        raise ValueError("OB(n, 1) has no tangent space: no Hessian")
    index_of = {int(i): r for r, i in enumerate(np.asarray(runs["run"]))}
    if run_indices is None:
        rows = results.point_rows(data)
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
    found, notes = results.embeddings(data, rows)
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
        results.write_npz(
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
            fig = density_figure(entry, dens, problem.to_json())
            for fmt in formats:
                rel = f"figures/hessian_density_run{entry['run']}.{fmt}"
                results.write_atomic(os.path.join(out, rel), plots.figure_bytes(fig, fmt))
                record["figures"].append(rel)
    results.write_json(os.path.join(out, "hessian", "curvature.json"), record)
    return record


def density_figure(entry: dict, dens: dict, problem: dict, *, width: float = plots.COLUMN_WIDTH):
    """The broadened spectral density (log scale), the nodes' weights as a rug, zero, and the trace."""
    import matplotlib as mpl

    grid, values = np.asarray(dens["grid"]), np.asarray(dens["density"])
    floor = max(values.max() * 1e-8, np.finfo(float).tiny)
    with mpl.rc_context(plots.STYLE):
        fig = plots.StyledFigure(figsize=(width, 0.7 * width), layout="constrained")
        ax = fig.subplots()
        ax.semilogy(grid, np.maximum(values, floor), color=plots.OKABE_ITO["blue"], label="density")
        ax.axvline(0.0, color=plots.OKABE_ITO["grey"], linewidth=0.6)
        nodes = np.asarray(dens["nodes"]).reshape(-1)
        ax.plot(
            nodes,
            np.full_like(nodes, floor * 10),
            "|",
            color=plots.OKABE_ITO["black"],
            markersize=4,
            label="Ritz values",
        )
        if "trace" in entry:
            ax.text(
                0.98,
                0.95,
                f"trace = {entry['trace']:.4g} $\\pm$ {entry['trace_stderr']:.2g}",
                transform=ax.transAxes,
                ha="right",
                va="top",
            )
        ax.set_ylim(floor, values.max() * 3)
        ax.set_xlabel("Hessian eigenvalue $\\lambda$")
        ax.set_ylabel("spectral density")
        counts = ",".join(str(c) for c in problem["counts"])
        ax.set_title(
            f"counts {counts}, d={problem['dim']}, $\\tau$={problem['tau']:g}: "
            f"run {entry['run']} ({entry['kind']})"
        )
        ax.legend(loc="best")
    return fig
