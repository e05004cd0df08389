"""Figures, the scan report and sweeps: each figure draws exactly the data it is given (Agg backend)."""

import json
import os

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import sclandscape as sc
from sclandscape import cli, plots, report, results, scan, sweep

L_STAR = 57.508222
KIND_CYCLE = ("global_min", "spurious_min", "saddle", "degenerate", "not_converged")


def synthetic_records(n=20, seed=0):
    """Per-run records shaped like runs.npz after the Hessian classification (hess_* fields)."""
    rng = np.random.default_rng(seed)
    kind = np.array([KIND_CYCLE[i % 5] for i in range(n)], dtype="<U13")
    gap = np.where(kind == "global_min", rng.normal(scale=1e-14, size=n), rng.uniform(0.1, 0.6, n))
    lam = np.where(kind == "saddle", -rng.uniform(1e-3, 0.1, n), rng.uniform(1e-3, 0.1, n))
    lam[1] = np.nan  # not computed for this run
    cert = np.where(kind == "global_min", rng.normal(scale=1e-15, size=n), -rng.uniform(0.1, 0.3, n))
    return {
        "run": np.arange(n),
        "loss": L_STAR + gap,
        "gap": gap,
        "cert_lambda": cert,
        "kind": kind,
        "hess_lambda_min": lam,
        "hess_index": np.where(kind == "saddle", 1, 0),
    }


def labelled(ax):
    assert ax.get_xlabel() and ax.get_ylabel()


def bars_by_label(ax):
    """``{legend label: heights}`` of the bar containers of ``ax``."""
    return {c.get_label(): np.array([p.get_height() for p in c.patches]) for c in ax.containers}


# --------------------------------------------------------------------------
# Figures


def test_gap_histogram_counts_every_converged_run_once_by_kind():
    rec = synthetic_records()
    fig = plots.gap_histogram(rec, L_STAR, tolerance=1e-6 * L_STAR)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    labelled(ax)
    assert ax.get_xscale() == "log"
    assert "floor" in ax.get_xlabel()
    bars = bars_by_label(ax)
    converged = rec["kind"] != "not_converged"
    assert sum(h.sum() for h in bars.values()) == converged.sum()
    for kind in ("global_min", "spurious_min", "saddle", "degenerate"):
        label = plots._kind_counts_label(kind, int(np.sum(rec["kind"] == kind)))
        assert bars[label].sum() == np.sum(rec["kind"] == kind)
    # global minima (gap ~ +-1e-14) are all in the first bin, at the floor
    floor = 1e-12 * L_STAR
    first = bars[plots._kind_counts_label("global_min", 4)]
    assert first[0] == 4 and ax.containers[0].patches[0].get_x() == pytest.approx(floor)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "not converged (4), not shown" in texts


def test_certificate_distribution_counts_every_finite_certificate():
    rec = synthetic_records()
    rec["cert_lambda"][3] = np.nan
    fig = plots.certificate_distribution(rec, tol=1e-5)
    (ax,) = fig.axes
    labelled(ax)
    bars = bars_by_label(ax)
    assert sum(h.sum() for h in bars.values()) == np.isfinite(rec["cert_lambda"]).sum()
    assert bars[plots._kind_counts_label("not_converged", 4)].sum() == 4


def test_eigenvalue_vs_gap_scatters_exactly_the_computed_points():
    rec = synthetic_records()
    fig = plots.eigenvalue_vs_gap(rec, L_STAR, tol=1e-6)
    (ax,) = fig.axes
    labelled(ax)
    assert ax.get_yscale() == "symlog"
    collections = [c for c in ax.collections if isinstance(c, PathCollection)]
    got = np.concatenate([c.get_offsets() for c in collections])
    have = np.isfinite(rec["hess_lambda_min"])
    floor = 1e-12 * L_STAR
    want = np.stack([np.maximum(rec["loss"] - L_STAR, floor)[have], rec["hess_lambda_min"][have]], axis=1)
    assert got.shape == want.shape
    assert np.allclose(np.sort(got, axis=0), np.sort(want, axis=0), rtol=1e-12, atol=0)
    colours = {matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in collections}
    assert plots.KIND_STYLE["saddle"]["color"].lower() in colours


def test_eigenvalue_vs_gap_needs_hessian_data():
    rec = synthetic_records()
    del rec["hess_lambda_min"]
    with pytest.raises(ValueError, match="hess_lambda_min"):
        plots.eigenvalue_vs_gap(rec, L_STAR)
    rec["hess_lambda_min"] = np.full(20, np.nan)
    with pytest.raises(ValueError, match="NaN"):
        plots.eigenvalue_vs_gap(rec, L_STAR)


def test_hessian_spectrum_plots_sorted_eigenvalues_and_marks_symmetry_modes():
    # shaped like hessian/spectra.npz: eigenvalues (r, n(d-1)) ascending, n_zero_predicted (r,), kind (r,)
    rng = np.random.default_rng(1)
    n, d = 9, 3
    N = n * (d - 1)
    eigs = np.sort(np.concatenate([np.zeros((2, 3)) + 1e-13, rng.uniform(0.1, 5, (2, N - 3))], axis=1))
    eigs[1, 0] = -0.2  # a saddle
    fig = plots.hessian_spectrum(eigs, np.array([3, 3]), kind=["global_min", "saddle"], tol=1e-8)
    ax, axd = fig.axes[:2]
    labelled(ax)
    assert axd.get_xlabel()
    curves = [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_ydata()) == N]
    assert len(curves) == 2
    for line, row in zip(curves, eigs, strict=True):
        assert np.array_equal(line.get_ydata(), np.sort(row))
        assert np.array_equal(line.get_xdata(), np.arange(1, N + 1))
    marks = [line for line in ax.get_lines() if line.get_linestyle() == "None"]
    assert [len(m.get_ydata()) for m in marks] == [3, 3]
    assert np.allclose(marks[0].get_ydata(), 1e-13)
    assert (
        sum(h.sum() for h in [np.array([p.get_width() for p in c.patches]) for c in axd.containers]) == 2 * N
    )
    # one point, no kind
    fig = plots.hessian_spectrum(eigs[0], 3)
    assert len(fig.axes[0].get_lines()[0].get_ydata()) == N


def test_gram_heatmaps_show_both_matrices_on_one_scale():
    opt = sc.step_optimum(2, 2, 2, 5, 1.0)
    M = opt.class_gram + 0.05 * np.eye(4)[::-1]
    fig = plots.gram_heatmaps(M, opt.class_gram)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 2
    assert np.array_equal(images[0].get_array(), M)
    assert np.array_equal(images[1].get_array(), opt.class_gram)
    assert images[0].get_clim() == images[1].get_clim() == (-1.0, 1.0)
    assert len(fig.axes) == 3  # two heatmaps and one colourbar
    assert all(ax.get_xlabel() for ax in fig.axes[:2]) and fig.axes[0].get_ylabel()


def test_phase_map_draws_the_fractions_with_annotations():
    frac = np.array([[0.0, 0.5, 1.0], [0.25, np.nan, 1.0]])
    notes = [["2 spurious", "", ""], ["1 spurious", "", ""]]
    fig = plots.phase_map([1, 2, 3], [0.5, 1.0], frac, xlabel="d", ylabel="tau", annotations=notes)
    ax = fig.axes[0]
    labelled(ax)
    (im,) = [i for i in ax.get_images() if isinstance(i, AxesImage)]
    arr = im.get_array()
    assert np.array_equal(arr.filled(np.nan)[~np.isnan(frac)], frac[~np.isnan(frac)])
    assert arr.mask[1, 1]
    texts = sorted(t.get_text() for t in ax.texts)
    assert "0.00\n2 spurious" in texts and "\u2013" in texts and len(texts) == 6
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3"]
    # one-parameter sweep
    fig = plots.phase_map([1, 2], None, [0.0, 1.0], xlabel="d", hatch=[True, False], hatch_label="d < rank")
    assert fig.axes[0].get_images()[0].get_array().shape == (1, 2)


def test_imbalance_geometry_matches_the_step_optimum():
    geo = plots.step_geometry([1, 5], [1.0], method="cls")
    step = plots.step_geometry([1, 5], [1.0], method="step")
    for name in ("alpha", "beta", "gamma", "loss"):
        assert np.allclose(geo[name], step[name], atol=1e-5)
    # SPEC §2 fact 5: 2 + 2 classes, n_min = 2, R = 5, tau = 1
    assert geo["alpha"][0, 1] == pytest.approx(-0.77169, abs=2e-5)
    assert geo["beta"][0, 1] == pytest.approx(0.27989, abs=2e-5)
    assert geo["gamma"][0, 1] == pytest.approx(-0.27028, abs=2e-5)
    assert np.allclose(geo["alpha"][0, 0], -1 / 3) and np.allclose(geo["gamma"][0, 0], -1 / 3)
    overlay = [{"R": 5, "tau": 1.0, "class_gram": sc.step_optimum(2, 2, 2, 5, 1.0).class_gram}]
    fig = plots.imbalance_geometry([1, 5], [1.0], geometry=geo, overlay=overlay)
    assert len(fig.axes) == 3
    for ax, name in zip(fig.axes, ("alpha", "beta", "gamma"), strict=True):
        assert ax.get_ylabel()
        curve, point = ax.get_lines()[1], ax.get_lines()[2]  # [0] is the ETF reference
        assert np.array_equal(curve.get_xdata(), [1.0, 5.0])
        assert np.array_equal(curve.get_ydata(), geo[name][0])
        assert point.get_ydata()[0] == pytest.approx(geo[name][0, 1], abs=1e-5)
    assert fig.axes[-1].get_xlabel()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: plots.gap_histogram({"loss": [1.0]}, 0.0), "kind"),
        (lambda: plots.gap_histogram(synthetic_records(), float("nan")), "global_loss"),
        (lambda: plots.gap_histogram({"loss": [1.0, 2.0], "kind": ["global_min"]}, 0.0), "entries"),
        (lambda: plots.gap_histogram({"loss": [1.0], "kind": ["bogus"]}, 0.0), "unknown kind"),
        (lambda: plots.gap_histogram({"loss": [1.0], "kind": ["not_converged"]}, 0.0), "no converged"),
        (lambda: plots.gap_histogram(synthetic_records(), 0.0, bins=0), "bins"),
        (lambda: plots.certificate_distribution([1, 2]), "mapping"),
        (lambda: plots.hessian_spectrum(np.ones((2, 4)), [1, 2, 3]), "n_zero_predicted"),
        (lambda: plots.hessian_spectrum(np.ones((2, 2, 2)), 1), "eigenvalues"),
        (lambda: plots.gram_heatmaps(np.eye(3), np.eye(4)), "same shape"),
        (lambda: plots.gram_heatmaps(np.ones(3), np.eye(3)), "M_found"),
        (lambda: plots.phase_map([1, 2], None, [0.5], xlabel="d"), "shape"),
        (lambda: plots.phase_map([1, 2], None, [0.5, 2.0], xlabel="d"), r"\[0, 1\]"),
        (lambda: plots.step_geometry([1.3], [1.0]), "R"),
        (lambda: plots.step_geometry([1], [1.0], method="x"), "method"),
        (lambda: plots.imbalance_geometry([1], [1.0], overlay=[{"R": 1}]), "overlay"),
    ],
)
def test_bad_input_is_a_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_one_style_per_kind_of_the_scan_and_the_hessian():
    from sclandscape import hessian

    assert plots.KINDS == scan.KINDS == hessian.KINDS
    assert set(plots.KIND_STYLE) == set(plots.KINDS)
    assert len({s["color"] for s in plots.KIND_STYLE.values()}) == len(plots.KINDS)


def test_figure_bytes_of_the_same_figure_are_the_same_pdf():
    make = lambda: plots.phase_map([1, 2], None, [0.0, 1.0], xlabel="d")  # noqa: E731
    assert plots.figure_bytes(make(), "pdf") == plots.figure_bytes(make(), "pdf")  # no creation date
    fig = make()
    assert plots.figure_bytes(fig, "png").startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="format"):
        plots.figure_bytes(fig, "gif")


# --------------------------------------------------------------------------
# Report on a tiny real scan

SETTINGS = scan.ScanSettings(tol=1e-9, x64=True, slots=4, chunk_steps=10)


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
    names = {os.path.relpath(p, out) for p in report.plot_results(out, formats=("png",), recompute=False)}
    assert {"figures/eigenvalue_vs_gap.png", "figures/hessian_spectrum_global_min.png"} <= names
    assert "figures/gram_minimum_1.png" not in names  # no embeddings saved and recompute off
    text = open(os.path.join(out, "report.md")).read()
    assert "recompute is off" in text


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
    assert cli.main(["plot", out, "--formats", "png", "--no-recompute"]) == 0
    printed = capsys.readouterr().out.split()
    assert os.path.join(out, "figures", "gap_histogram.png") in printed
    assert cli.main(["plot", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sclandscape: error:") and err.count("\n") == 1
    assert cli.main(["plot", out, "--formats", "gif"]) == 2
    assert "--formats" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Sweeps


def test_sweep_writes_sweep_json_and_phase_map_and_skips_finished_cells(tmp_path, monkeypatch):
    out = str(tmp_path / "sweep")
    base = sc.Problem((3, 3, 3), 2, 1.0)
    state = sweep.run_sweep(base, {"dim": [1, 2]}, 3, out, settings=SETTINGS)
    with open(os.path.join(out, "sweep.json")) as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(state))
    assert [c["name"] for c in state["cells"]] == ["dim=1", "dim=2"]
    assert all(c["status"] == "done" for c in state["cells"])
    # d = 1 < rank M* = 2: L* unattainable; d = 2 = k - 1: every minimum global
    assert state["fraction"] == [[0.0, 1.0]]
    assert state["n_spurious_minima"][0][0] >= 1 and state["n_spurious_minima"][0][1] == 0
    assert state["unattainable"] == [[True, False]]
    for fmt in ("png", "pdf"):
        assert os.path.getsize(os.path.join(out, "figures", f"phase_map.{fmt}")) > 0
    assert os.path.exists(os.path.join(out, "cells", "dim=1", "summary.json"))

    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(results, "run_scan", refuse)
    again = sweep.run_sweep(base, {"dim": [1, 2]}, 3, out, settings=SETTINGS)
    assert again["fraction"] == state["fraction"]
    monkeypatch.undo()

    # an interrupted cell (chunks only) is resumed, the other skipped
    cell = os.path.join(out, "cells", "dim=2")
    os.remove(os.path.join(cell, "summary.json"))
    os.remove(os.path.join(cell, "runs.npz"))
    calls = []
    real = results.run_scan
    monkeypatch.setattr(results, "run_scan", lambda *a, **k: calls.append(k["resume"]) or real(*a, **k))
    resumed = sweep.run_sweep(base, {"dim": [1, 2]}, 3, out, settings=SETTINGS)
    assert calls == [True]
    assert resumed["fraction"] == state["fraction"]
    with pytest.raises(results.ResultsError, match="different sweep"):
        sweep.run_sweep(base, {"dim": [1, 3]}, 3, out, settings=SETTINGS)


@pytest.mark.parametrize(
    "grid, step, match",
    [
        ({}, None, "one or two"),
        ({"dim": [1], "tau": [1.0], "R": [1]}, (1, 1, 2), "one or two"),
        ({"depth": [1]}, None, "unknown sweep axis"),
        ({"dim": []}, None, "empty"),
        ({"dim": [1, 1]}, None, "repeated"),
        ({"dim": [0]}, None, "dimension"),
        ({"tau": [-1.0]}, None, "tau"),
        ({"R": [2]}, None, "needs step"),
        ({"R": [1.5]}, (1, 1, 3), "R"),
        ({"dim": [1]}, (1, 1, 2), "only with an R axis"),
        ({"dim": "12"}, None, "sequence"),
    ],
)
def test_sweep_bad_grid_is_a_one_line_value_error(tmp_path, grid, step, match):
    with pytest.raises(ValueError, match=match) as err:
        sweep.run_sweep(sc.Problem((3, 3), 1, 1.0), grid, 2, str(tmp_path / "s"), step=step)
    assert "\n" not in str(err.value)
    assert not os.path.exists(tmp_path / "s")


def test_sweep_refuses_a_folder_holding_something_else(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(results.ResultsError, match="no sweep.json"):
        sweep.run_sweep(sc.Problem((3, 3), 1, 1.0), {"dim": [1]}, 2, str(tmp_path))


def test_cli_sweep_runs_and_reruns(tmp_path, capsys):
    out = str(tmp_path / "s")
    argv = ["sweep", "--counts", "3,3", "--dims", "1", "--inits", "2", "--x64", "--slots", "2", "--out", out]
    assert cli.main([*argv, "--quiet", "--formats", "png"]) == 0
    printed = capsys.readouterr().out
    assert "[1/1] dim=1: done;" in printed and os.path.join(out, "figures", "phase_map.png") in printed
    assert cli.main([*argv, "--quiet", "--formats", "png"]) == 0
    assert "done earlier, skipped" in capsys.readouterr().out
    assert cli.main(["plot", out, "--formats", "pdf"]) == 0  # plot on a sweep folder: the phase map
    assert os.path.exists(os.path.join(out, "figures", "phase_map.pdf"))


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--counts", "3,3", "--dim", "1"], "one or two of --dims"),
        (["--counts", "3,3", "--dims", "1,2", "--dim", "1"], "not both"),
        (["--counts", "3,3", "--taus", "1"], "--dim"),
        (["--counts", "3,3", "--dim", "1", "--ratios", "1,2"], "needs --step"),
        (["--counts", "3,3", "--dims", "1,x"], "comma-separated"),
        (["--dims", "1,2"], "exactly one of"),
    ],
)
def test_cli_sweep_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, match):
    out = str(tmp_path / "s")
    assert cli.main(["sweep", *argv, "--inits", "2", "--out", out]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not os.path.exists(out)
