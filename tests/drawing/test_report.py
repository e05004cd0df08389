"""The report of a finished scan: every figure and report.md, and the plot command."""

import os

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import sclandscape as sc
from sclandscape.cli import commands as cli
from sclandscape.drawing import report
from sclandscape.explore import scanner
from sclandscape.folders import atomic, reading, summaries
from sclandscape.studies import scan as scan_study

L_STAR = 57.508222
KIND_CYCLE = ("global_min", "spurious_min", "local_min", "saddle", "degenerate", "not_converged")

SETTINGS = scanner.ScanSettings(tol=1e-9, x64=True, slots=4, chunk_steps=10)


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("scan") / "tiny")
    scan_study.run_scan(sc.Problem((3, 3, 3), 2, 1.0), 4, 0, SETTINGS, out)
    return out


@pytest.fixture
def drawn_figures(monkeypatch):
    """Every figure ``style.figure_bytes`` renders during the test, with all its text."""
    from matplotlib.text import Text

    from sclandscape.drawing import style

    seen = []
    real = style.figure_bytes

    def spy(fig, fmt="png"):
        seen.append("\n".join(t.get_text() for t in fig.findobj(Text)))
        return real(fig, fmt)

    monkeypatch.setattr(style, "figure_bytes", spy)
    return seen


def test_plot_results_writes_every_figure_and_the_report(scan_dir, tmp_path, drawn_figures):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(scan_dir, out)
    written = report.plot_results(out)
    assert len(drawn_figures) == len(written) - 1  # one rendering per figure file
    for text in drawn_figures:  # every figure states the problem: n, k, d, tau and the number of runs
        for part in ("n = 9", "k = 3", "d = 2", "$\\tau$ = 1", "4 runs"):
            assert part in text
    names = {os.path.relpath(p, out) for p in written}
    for name in ("gap_histogram", "certificate", "eigenvalue_vs_gap", "gram_minimum_0"):
        assert {f"figures/{name}.png", f"figures/{name}.pdf"} <= names
    assert "report.md" in names
    assert all(os.path.getsize(p) > 0 for p in written)
    text = open(os.path.join(out, "report.md")).read()
    assert "| global_min | 4 | 1.000 |" in text
    assert "Every minimum found (4 of 4 runs) is certified global" in text
    assert "## Distinct minima" in text and "| 1 |" in text
    for link in ("figures/gap_histogram.png", "figures/gram_minimum_0.pdf"):
        assert f"]({link})" in text
    assert "hessian_spectrum: no hessian/spectra.npz" in text  # until `sclandscape hessian DIR` runs
    assert not [f for f in os.listdir(os.path.join(out, "figures")) if f.startswith(".tmp")]


def test_plot_results_draws_hessian_figures_when_present(scan_dir, tmp_path):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(scan_dir, out)
    runs = atomic.read_npz(os.path.join(out, "runs.npz"))
    r = runs["run"].size
    runs["hess_lambda_min"] = np.array([0.5, np.nan, 0.4, 0.3])
    runs["hess_index"] = np.array([0, -1, 0, 0])
    atomic.write_npz(os.path.join(out, "runs.npz"), runs)
    N = 9 * (2 - 1)
    eigs = np.sort(np.random.default_rng(0).uniform(0.1, 2, (r, N)), axis=1)
    eigs[:, 0] = 1e-14
    atomic.write_npz(
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
    assert "figures/gram_minimum_0.png" in names  # from the distinct points stored at scan time


def test_plot_results_refuses_what_is_not_a_finished_scan(tmp_path, scan_dir):
    with pytest.raises(atomic.ResultsError, match="not a folder"):
        report.plot_results(str(tmp_path / "nowhere"))
    with pytest.raises(atomic.ResultsError, match="no config.json"):
        report.plot_results(str(tmp_path))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(open(os.path.join(scan_dir, "config.json")).read())
    with pytest.raises(atomic.ResultsError, match="unfinished scan"):
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


# --------------------------------------------------------------------------
# What a referee reads: the problem in every figure, bounds, provenance, names, stale files


def test_spectrum_figures_state_the_problem(scan_dir, tmp_path, drawn_figures):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(scan_dir, out)
    runs = atomic.read_npz(os.path.join(out, "runs.npz"))
    atomic.write_npz(  # full spectra, so that the spectrum figure is drawn too
        os.path.join(out, "hessian", "spectra.npz"),
        {"runs": runs["run"], "eigenvalues": np.ones((4, 9)), "n_zero_predicted": np.ones(4, np.int64)},
    )
    written = report.plot_results(out, formats=("png",))
    figures = [p for p in written if p.endswith(".png")]
    # Four figures and the Gram figure of the one distinct minimum, whose embedding the scan stored.
    assert len(drawn_figures) == len(figures) == 5 and "hessian_spectrum_global_min.png" in str(figures)
    for text in drawn_figures:
        for part in ("n = 9", "k = 3", "d = 2", "$\\tau$ = 1", "4 runs"):
            assert part in text


def test_summary_and_report_state_the_spurious_bound(scan_dir):
    summary = atomic.read_json(os.path.join(scan_dir, "summary.json"))
    # 0 spurious of 4 runs: the exact bound solves (1 - p)^4 = 0.05
    assert summary["spurious_fraction"] == {
        "count": 0,
        "runs": 4,
        "observed": 0.0,
        "upper_95": pytest.approx(1 - 0.05 ** (1 / 4), rel=1e-12),
    }
    text = report.markdown_report(reading.load_scan(scan_dir), [], [])
    assert "Spurious minima: 0 of 4 runs" in text and f"{1 - 0.05**0.25:.3g}" in text


def test_binomial_upper_bound_against_hand_computations():
    import scipy.optimize
    import scipy.stats

    # x = 0: (1 - p)^N = alpha; x = N - 1: 1 - p^N = alpha; x = N: no bound below 1
    assert summaries.binomial_upper_bound(0, 100) == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-12)
    assert summaries.binomial_upper_bound(0, 100) < 3 / 100  # the rule of three bounds it from above
    assert summaries.binomial_upper_bound(99, 100) == pytest.approx(0.95 ** (1 / 100), rel=1e-12)
    assert summaries.binomial_upper_bound(100, 100) == 1.0
    # 0 < x < N: the p at which P(X <= x) = 0.05, found from the binomial CDF directly (not the beta quantile)
    p = scipy.optimize.brentq(lambda q: scipy.stats.binom.cdf(7, 50, q) - 0.05, 1e-9, 1 - 1e-9, xtol=1e-14)
    assert summaries.binomial_upper_bound(7, 50) == pytest.approx(p, rel=1e-9)
    for bad in [(-1, 10), (11, 10), (1, 0), (True, 10)]:
        with pytest.raises(ValueError):
            summaries.binomial_upper_bound(*bad)


def test_config_records_provenance_and_resume_keeps_the_scan(scan_dir, tmp_path):
    import platform
    import shutil

    import jax

    config = atomic.read_json(os.path.join(scan_dir, "config.json"))
    prov = config["provenance"]
    assert prov["sclandscape"] == sc.__version__ and prov["jax"] == jax.__version__
    assert prov["jaxlib"] and prov["python"] == platform.python_version()
    assert (
        prov["devices"]["platform"] == jax.default_backend()
        and prov["devices"]["count"] == jax.device_count()
    )
    ex = prov["execution"]
    assert (
        ex["streaming"] is False and ex["first_order_kernel"] == "dense" and ex["certificate"] == "eigvalsh"
    )
    assert ex["slots"] == 4 and ex["first_order_dtype"] == "float64"
    assert ex["slots_from"] == "settings" and ex["slot_bytes"] > 0 and ex["memory_budget"] > 0
    timing = config["timing"]
    assert timing["started"] <= timing["finished"] and timing["wall_s"] > 0 and timing["runs_computed"] == 4
    assert timing["total_s"] == timing["wall_s"]
    assert timing["compile_s"] >= 0 and timing["run_s"] >= 0
    assert timing["compile_s"] + timing["run_s"] == pytest.approx(timing["total_s"])
    # a resume of the finished scan is the same scan: its session is kept and nothing recomputed
    out = str(tmp_path / "copy")
    shutil.copytree(scan_dir, out)
    scan_study.run_scan(sc.Problem((3, 3, 3), 2, 1.0), 4, 0, SETTINGS, out, resume=True)
    again = atomic.read_json(os.path.join(out, "config.json"))
    assert again["earlier_sessions"] == [{"provenance": prov, "timing": timing}]
    assert again["timing"]["runs_computed"] == 0


def test_status_names_are_stored(scan_dir):
    runs = atomic.read_npz(os.path.join(scan_dir, "runs.npz"))
    assert runs["status_name"].tolist() == ["converged"] * 4 and runs["status"].tolist() == [0] * 4
    summary = atomic.read_json(os.path.join(scan_dir, "summary.json"))
    assert summary["status_codes"] == {str(int(s)): s.name.lower() for s in sc.Status}
    assert summaries.status_names(np.array([0, 1, 2, 3, 7])).tolist() == [
        "converged",
        "max_steps",
        "non_finite",
        "stalled",
        "7",
    ]


def test_summary_counts_local_minima_and_keeps_them_out_of_the_spurious_bound():
    rec = {
        "run": np.arange(6),
        "loss": np.array([1.0, 1.0, 2.0, 2.0, 3.0, 4.0]),
        "status": np.zeros(6, np.int64),
        "kind": np.array(["global_min", "global_min", "local_min", "local_min", "spurious_min", "saddle"]),
    }
    summary = summaries.summarize(rec, 1.0, SETTINGS)
    assert summary["counts"]["local_min"] == 2 and summary["counts"]["spurious_min"] == 1
    assert [m["kinds"] for m in summary["distinct_minima"]] == [
        {"global_min": 2},
        {"local_min": 2},
        {"spurious_min": 1},
    ]
    assert summary["spurious_fraction"]["count"] == 1 and summary["spurious_fraction"]["runs"] == 6


def test_report_agrees_with_the_summary(scan_dir):
    data = reading.load_scan(scan_dir)
    text = report.markdown_report(data, [], [])
    for kind, count in data["summary"]["counts"].items():
        assert f"| {kind} | {count} |" in text
    assert data["summary"]["classification"] in text
    assert "has not run" not in text  # the scan took Hessian spectra of its runs
    _, skipped = report._figures(scan_dir, data, max_minima=0)
    assert not any("has not run" in s for s in skipped)
    assert "settings | tol=1e-09" in text  # the settings row names the scan's settings


def test_replotting_removes_stale_figures_and_nothing_else(scan_dir, tmp_path):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(scan_dir, out)
    report.plot_results(out, formats=("png", "pdf"))
    figures = os.path.join(out, "figures")
    assert os.path.exists(os.path.join(figures, "gap_histogram.pdf"))
    foreign = [
        "notes.txt",
        "gap_histogram_mine.png",
        "gap_histogram.gif",
        "gram_minimum_x.png",
        "Certificate.png",
    ]
    for name in foreign:
        open(os.path.join(figures, name), "w").write("not the package's")
    open(os.path.join(figures, "hessian_spectrum_saddle.png"), "w").write("an old figure")
    written = report.plot_results(out, formats=("png",))
    kept = sorted(os.listdir(figures))
    ours = sorted(os.path.basename(p) for p in written if "/figures/" in p)
    assert kept == sorted(ours + foreign)  # no PDF left, the old spectrum gone, the rest untouched
    text = open(os.path.join(out, "report.md")).read()
    assert all(f"figures/{name}" in text for name in ours)
