"""The report of a finished scan: every figure and report.md, and the plot command."""

import os

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import sclandscape as sc
from sclandscape import cli, report, results, scanner

L_STAR = 57.508222
KIND_CYCLE = ("global_min", "spurious_min", "saddle", "degenerate", "not_converged")

SETTINGS = scanner.ScanSettings(tol=1e-9, x64=True, slots=4, chunk_steps=10)


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("scan") / "tiny")
    results.run_scan(sc.Problem((3, 3, 3), 2, 1.0), 4, 0, SETTINGS, out)
    return out


def test_plot_results_writes_every_figure_and_the_report(scan_dir, tmp_path):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(scan_dir, out)
    written = report.plot_results(out)
    names = {os.path.relpath(p, out) for p in written}
    for name in ("gap_histogram", "certificate", "eigenvalue_vs_gap", "gram_minimum_1"):
        assert {f"figures/{name}.png", f"figures/{name}.pdf"} <= names
    assert "report.md" in names
    assert all(os.path.getsize(p) > 0 for p in written)
    text = open(os.path.join(out, "report.md")).read()
    assert "| global_min | 4 | 1.000 |" in text
    assert "Every minimum found (4 of 4 runs) is certified global" in text
    assert "## Distinct minima" in text and "| 1 |" in text
    for link in ("figures/gap_histogram.png", "figures/gram_minimum_1.pdf"):
        assert f"]({link})" in text
    assert "hessian_spectrum: no hessian/spectra.npz" in text  # until `sclandscape hessian DIR` runs
    assert not [f for f in os.listdir(os.path.join(out, "figures")) if f.startswith(".tmp")]


def test_plot_results_draws_hessian_figures_when_present(scan_dir, tmp_path):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(scan_dir, out)
    runs = results.read_npz(os.path.join(out, "runs.npz"))
    r = runs["run"].size
    runs["hess_lambda_min"] = np.array([0.5, np.nan, 0.4, 0.3])
    runs["hess_index"] = np.array([0, -1, 0, 0])
    results.write_npz(os.path.join(out, "runs.npz"), runs)
    N = 9 * (2 - 1)
    eigs = np.sort(np.random.default_rng(0).uniform(0.1, 2, (r, N)), axis=1)
    eigs[:, 0] = 1e-14
    results.write_npz(
        os.path.join(out, "hessian", "spectra.npz"),
        {
            "runs": runs["run"],
            "eigenvalues": eigs,
            "n_zero_predicted": np.ones(r, np.int64),
            "kind": runs["kind"],
        },
    )
    names = {os.path.relpath(p, out) for p in report.plot_results(out, formats=("png",))}
    assert {"figures/eigenvalue_vs_gap.png", "figures/hessian_spectrum_global_min.png"} <= names
    assert "figures/gram_minimum_1.png" in names  # from the distinct points stored at scan time


def test_plot_results_refuses_what_is_not_a_finished_scan(tmp_path, scan_dir):
    with pytest.raises(results.ResultsError, match="not a folder"):
        report.plot_results(str(tmp_path / "nowhere"))
    with pytest.raises(results.ResultsError, match="no config.json"):
        report.plot_results(str(tmp_path))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(open(os.path.join(scan_dir, "config.json")).read())
    with pytest.raises(results.ResultsError, match="unfinished scan"):
        report.plot_results(str(unfinished))
    with pytest.raises(ValueError, match="formats"):
        report.plot_results(scan_dir, formats=("gif",))


def test_cli_plot_and_its_errors(scan_dir, tmp_path, capsys):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(scan_dir, out)
    assert cli.main(["plot", out, "--formats", "png"]) == 0
    printed = capsys.readouterr().out.split()
    assert os.path.join(out, "figures", "gap_histogram.png") in printed
    assert cli.main(["plot", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sclandscape: error:") and err.count("\n") == 1
    assert cli.main(["plot", out, "--formats", "gif"]) == 2
    assert "--formats" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Sweeps
