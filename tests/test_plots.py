"""Figures: each draws exactly the data it is given (Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import sclandscape as sc
from sclandscape import optimum, plots

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
    geo = optimum.step_geometry([1, 5], [1.0], method="cls")
    step = optimum.step_geometry([1, 5], [1.0], method="step")
    for name in ("alpha", "beta", "gamma", "loss"):
        assert np.allclose(geo[name], step[name], atol=1e-5)
    # docs/maths.md §2 fact 5: 2 + 2 classes, n_min = 2, R = 5, tau = 1
    assert geo["alpha"][0, 1] == pytest.approx(-0.77169, abs=2e-5)
    assert geo["beta"][0, 1] == pytest.approx(0.27989, abs=2e-5)
    assert geo["gamma"][0, 1] == pytest.approx(-0.27028, abs=2e-5)
    assert np.allclose(geo["alpha"][0, 0], -1 / 3) and np.allclose(geo["gamma"][0, 0], -1 / 3)
    overlay = [{"R": 5, "tau": 1.0, "class_gram": sc.step_optimum(2, 2, 2, 5, 1.0).class_gram}]
    fig = plots.imbalance_geometry(geo, overlay=overlay)
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
        (lambda: optimum.step_geometry([1.3], [1.0]), "R"),
        (lambda: optimum.step_geometry([1], [1.0], method="x"), "method"),
        (
            lambda: plots.imbalance_geometry(optimum.step_geometry([1], [1.0]), overlay=[{"R": 1}]),
            "overlay",
        ),
        (lambda: plots.imbalance_geometry({"ratios": [1]}), "geometry"),
    ],
)
def test_bad_input_is_a_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_one_style_per_kind_of_the_scan_and_the_hessian():
    from sclandscape import metrics

    assert plots.KINDS == metrics.KINDS
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
