"""Hessian trace (Hutchinson) and spectral density (stochastic Lanczos quadrature), at any size."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.cli import commands as cli
from sclandscape.explore import curvature, scanner
from sclandscape.folders import atomic, merging
from sclandscape.numerics import oblique
from sclandscape.studies import scan as scan_study
from sclandscape.theory import hessian

LABELS = sc.labels_from_counts((4, 3, 3))
TAU = 0.5


@pytest.fixture(scope="module")
def point():
    return np.asarray(oblique.random_point(jax.random.key(7), 10, 3, jnp.float64))


def test_hutchinson_trace_agrees_with_the_dense_trace(point):
    M = np.asarray(hessian.hessian_matrix(jnp.asarray(point), jnp.asarray(LABELS), TAU))
    exact = np.trace(M)
    est = curvature.hutchinson_trace(point, LABELS, TAU, num_probes=256, key=jax.random.key(1))
    # One Rademacher probe in tangent coordinates has variance 2 (|M|_F^2 - sum M_ii^2).
    se_theory = np.sqrt(2 * (np.sum(M**2) - np.sum(np.diag(M) ** 2)) / 256)
    assert abs(est.trace - exact) <= 4 * se_theory  # a 4-sigma test (the CLT: fails with prob. ~6e-5)
    # The sample standard error estimates the theoretical one (relative error ~ 1/sqrt(2 m) ~ 4%, plus
    # the non-Gaussian tails of Rademacher quadratic forms): within 30%.
    assert est.stderr == pytest.approx(se_theory, rel=0.3)
    assert est.samples.shape == (256,)
    with pytest.raises(ValueError, match="num_probes"):
        curvature.hutchinson_trace(point, LABELS, TAU, num_probes=1)


def test_full_lanczos_quadrature_nodes_are_eigenvalues(point):
    N = 10 * 2
    dens = curvature.density(point, LABELS, TAU, num_iter=N, num_probes=2)
    exact = np.linalg.eigvalsh(
        np.asarray(hessian.hessian_matrix(jnp.asarray(point), jnp.asarray(LABELS), TAU))
    )
    scale = np.max(np.abs(exact))
    nodes, weights = dens["nodes"].reshape(-1), dens["weights"].reshape(-1)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    # A Gauss rule with m >= N nodes is exact; its nodes carrying weight are eigenvalues (to Lanczos'
    # rounding with full reorthogonalisation, ~ N eps scale).
    heavy = weights > 1e-8
    gaps = np.min(np.abs(nodes[heavy, None] - exact[None, :]), axis=1)
    assert np.max(gaps) <= 1e-8 * scale
    # The broadened density integrates to 1 but for the Gaussian tails beyond 3 sigma (0.27%).
    mass = np.trapezoid(dens["density"], dens["grid"])
    assert 1 - 0.003 <= mass <= 1 + 1e-6


@pytest.mark.slow  # ~8 s at n = 1,000
def test_trace_and_density_at_a_size_the_dense_path_refuses():
    n, d = 1100, 4  # n(d-1) = 3300 > hessian.DENSE_MAX_DIM
    assert n * (d - 1) > hessian.DENSE_MAX_DIM
    labels = sc.labels_from_counts((550, 550))
    H = np.asarray(oblique.random_point(jax.random.key(3), n, d, jnp.float64))
    est = curvature.hutchinson_trace(H, labels, 1.0, num_probes=4)
    dens = curvature.density(H, labels, 1.0, num_iter=12, num_probes=1)
    assert np.isfinite(est.trace) and np.isfinite(est.stderr) and est.stderr > 0
    assert np.all(np.isfinite(dens["density"])) and dens["weights"].sum() == pytest.approx(1.0, abs=1e-12)


def test_hessian_command_trace_and_density(tmp_path, capsys):
    out = str(tmp_path / "s")
    with jax.enable_x64(True):
        # The problem and settings of test_report.py's scan: the session's compilation cache serves both.
        scan_study.run_scan(
            sc.Problem((3, 3, 3), 2, 1.0),
            4,
            0,
            scanner.ScanSettings(tol=1e-9, x64=True, slots=4, chunk_steps=10),
            out,
            keep_embeddings=True,
        )
    assert cli.main(["hessian", out, "--trace", "--density", "--runs", "0", "--quiet"]) == 0
    text = capsys.readouterr().out
    record = json.load(open(f"{out}/hessian/curvature.json"))
    (entry,) = record["runs"]
    H = merging.load_runs(out)["H"][0]
    exact = float(np.sum(sc.riemannian_hessian_eigs(H, sc.labels_from_counts((3, 3, 3)), 1.0)))
    assert abs(entry["trace"] - exact) <= 4 * entry["trace_stderr"] + 1e-12
    assert f"{entry['trace']:.6g}" in text
    dens = atomic.read_npz(f"{out}/hessian/density.npz")
    assert dens["density"].shape == (1, curvature.GRID_POINTS) and list(dens["runs"]) == [0]
    assert os.path.exists(f"{out}/figures/hessian_density_run0.png")
    assert cli.main(["hessian", out, "--trace", "--runs", "x", "--quiet"]) == 2


def test_the_python_face_of_the_cli_tools():
    """trace and density in one call each (as PyHessian), paths, slices and continuation from sc.*."""
    import numpy as np

    import sclandscape as sc

    labels = sc.labels_from_counts((3, 3))
    H = np.asarray(sc.global_optimum((3, 3), 1.0).embedding(2))
    trace = sc.hessian_trace(H, labels, 1.0, num_probes=8)
    exact = float(np.sum(np.asarray(sc.riemannian_hessian_eigs(H, labels, 1.0))))
    assert abs(trace.trace - exact) <= 5 * trace.stderr + 1e-9
    dens = sc.hessian_density(H, labels, 1.0, num_iter=6, num_probes=2)
    assert np.all(np.isfinite(dens["density"])) and dens["grid"].size == dens["density"].size
    u = sc.slice_direction(H, labels, 1.0, "random:0")["vector"]
    assert sc.loss_slice(H, labels, 1.0, u[None], [np.linspace(-0.1, 0.1, 5)]).shape == (5,)
    for name in (
        "minimum_energy_path",
        "PathSettings",
        "continue_minimum",
        "ContinuationSettings",
        "enable_cache",
    ):
        assert callable(getattr(sc, name))
