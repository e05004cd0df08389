"""Figures: each draws exactly the data it is given (Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import sclandscape as sc
from sclandscape.drawing import maps, plots, style
from sclandscape.theory import optimum

L_STAR = 57.508222
KIND_CYCLE = ("global_min", "spurious_min", "local_min", "saddle", "degenerate", "not_converged")


def synthetic_records(n=24, seed=0):
    """Per-run records shaped like runs.npz after the Hessian classification (hess_* fields)."""
    rng = np.random.default_rng(seed)
    kind = np.array([KIND_CYCLE[i % len(KIND_CYCLE)] for i in range(n)], dtype="<U13")
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
    for kind in ("global_min", "spurious_min", "local_min", "saddle", "degenerate"):
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


def _markers(ax):
    """``[(colour, offsets (m, 2), counts (m,))]`` per scatter: counts from the annotations at each offset."""
    notes = {tuple(np.round(t.xy, 12)): int(t.get_text()) for t in ax.texts if hasattr(t, "xy")}
    out = []
    for c in ax.collections:
        if isinstance(c, PathCollection):
            offsets = np.asarray(c.get_offsets())
            counts = np.array([notes.get(tuple(np.round(o, 12)), 1) for o in offsets])
            out.append((matplotlib.colors.to_hex(c.get_facecolor()[0]), offsets, counts))
    return out


def test_eigenvalue_vs_gap_draws_every_computed_point_once_merging_coinciding_ones():
    rec = synthetic_records()
    fig = plots.eigenvalue_vs_gap(rec, L_STAR, tol=1e-6, title="the problem")
    (ax,) = fig.axes
    labelled(ax)
    assert ax.get_yscale() == "symlog"
    have = np.isfinite(rec["hess_lambda_min"])
    floor = 1e-12 * L_STAR
    points = np.stack([np.maximum(rec["loss"] - L_STAR, floor), rec["hess_lambda_min"]], axis=1)
    size = (
        ax.bbox.size
    )  # display units: a merged point lies within 2 MERGE_FRACTION of the axes of its marker
    markers = {colour: (offsets, counts) for colour, offsets, counts in _markers(ax)}
    for kind in KIND_CYCLE:
        mine = points[have & (rec["kind"] == kind)]
        offsets, counts = markers[style.KIND_STYLE[kind]["color"].lower()]
        assert counts.sum() == len(mine)  # every computed point counted once
        # each marker is one of the kind's points, and each point is near a marker of its kind
        assert all(np.any(np.all(np.isclose(mine, o, rtol=1e-12, atol=0), axis=1)) for o in offsets)
        shown, data = ax.transData.transform(offsets), ax.transData.transform(mine)
        near = np.abs(data[:, None, :] - shown[None, :, :]) <= 2 * plots.MERGE_FRACTION * size + 1e-9
        assert np.all(np.any(np.all(near, axis=2), axis=1))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"saddle ({int(np.sum(have & (rec['kind'] == 'saddle')))})" in legend


def test_identical_runs_are_one_marker_with_their_count():
    n = 256
    rec = {
        "loss": np.full(n, L_STAR),
        "kind": np.array(["global_min"] * n),
        "hess_lambda_min": np.full(n, 0.31),
    }
    rec["loss"][:3] += 0.2
    rec["kind"][:3] = "saddle"
    rec["hess_lambda_min"][:3] = -0.05
    fig = plots.eigenvalue_vs_gap(rec, L_STAR)
    markers = {colour: (offsets, counts) for colour, offsets, counts in _markers(fig.axes[0])}
    offsets, counts = markers[style.KIND_STYLE["global_min"]["color"].lower()]
    assert offsets.shape == (1, 2) and counts.tolist() == [253]
    assert markers[style.KIND_STYLE["saddle"]["color"].lower()][1].tolist() == [3]
    sizes = [c.get_sizes() for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert sizes[0][0] > sizes[1][0]  # area grows with the count
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "global min (253)" in legend and "saddle (3)" in legend


def test_merge_close_groups_points_within_the_distance_and_no_others():
    # identical points are one group; close points on either side of a cell edge too; far ones are not
    u = np.array([0.0, 0.0, 0.0, 0.999, 1.001, 5.0])
    v = np.array([0.0, 0.0, 0.0, 3.0, 3.0, 0.0])
    leaders, counts = plots._merge_close(u, v, 1.0, 1.0)
    groups = sorted(zip(u[leaders].tolist(), counts.tolist(), strict=True))
    assert groups == [(0.0, 3), (0.999, 2), (5.0, 1)]


def test_eigenvalue_vs_gap_needs_hessian_data():
    rec = synthetic_records()
    del rec["hess_lambda_min"]
    with pytest.raises(ValueError, match="hess_lambda_min"):
        plots.eigenvalue_vs_gap(rec, L_STAR)
    rec["hess_lambda_min"] = np.full(24, np.nan)
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
    fig = maps.phase_map([1, 2, 3], [0.5, 1.0], frac, xlabel="d", ylabel="tau", annotations=notes)
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
    fig = maps.phase_map(
        [1, 2],
        None,
        [0.0, 1.0],
        xlabel="d",
        hatch=[True, False],
        hatch_label="d < rank",
        footnote="what sp is",
    )
    assert fig.axes[0].get_images()[0].get_array().shape == (1, 2)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["d < rank", "what sp is"]
    assert "what sp is" in all_text(fig)


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
    fig = maps.imbalance_geometry(geo, overlay=overlay)
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
        (lambda: maps.phase_map([1, 2], None, [0.5], xlabel="d"), "shape"),
        (lambda: maps.phase_map([1, 2], None, [0.5, 2.0], xlabel="d"), r"\[0, 1\]"),
        (lambda: optimum.step_geometry([1.3], [1.0]), "R"),
        (lambda: optimum.step_geometry([1], [1.0], method="x"), "method"),
        (
            lambda: maps.imbalance_geometry(optimum.step_geometry([1], [1.0]), overlay=[{"R": 1}]),
            "overlay",
        ),
        (lambda: maps.imbalance_geometry({"ratios": [1]}), "geometry"),
    ],
)
def test_bad_input_is_a_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def all_text(fig) -> str:
    """Every string the figure draws (titles, legend titles and entries, labels, annotations)."""
    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def test_problem_title_states_n_k_d_tau_and_runs():
    assert (
        style.problem_title((10, 10, 2, 2), 2, 1.0, 256)
        == "n = 24, k = 4 (10,10,2,2), d = 2, $\\tau$ = 1; 256 runs"
    )
    assert (
        style.problem_title((5, 5, 5, 5), 3, 0.5, 1)
        == "n = 20, k = 4 (4\u00d75), d = 3, $\\tau$ = 0.5; 1 run"
    )
    assert style.problem_title(range(2, 12), 4, 2.0).startswith("n = 65, k = 10 (counts 2..11), d = 4")


def test_gap_histogram_states_the_bound_and_counts_each_bin():
    # 0 of 256: the exact bound 1 - 0.05^(1/256) = 0.0116 (1.2%)
    bound = {"count": 0, "runs": 256, "upper_95": 1 - 0.05 ** (1 / 256)}
    assert style.spurious_line(bound) == "0 spurious of 256 runs: fraction < 1.2% (95%)"
    assert style.spurious_line({"count": 3, "runs": 20, "upper_95": 0.3789}) == (
        "3 spurious of 20 runs (15%): fraction < 38% (95%)"
    )
    rec = synthetic_records()
    title = style.problem_title((10, 10, 2, 2), 2, 1.0, 24)
    fig = plots.gap_histogram(rec, L_STAR, title=title, spurious=bound)
    assert fig.legends[0].get_title().get_text() == title + "\n0 spurious of 256 runs: fraction < 1.2% (95%)"
    (ax,) = fig.axes
    totals = sum(bars_by_label(ax).values())
    notes = sorted(int(t.get_text()) for t in ax.texts)
    assert notes == sorted(int(v) for v in totals[totals > 0])  # one count per non-empty bin
    assert ax.get_ylim()[1] > totals.max()  # room for the numbers


def test_certificate_threshold_is_drawn_inside_the_axis_or_not_named():
    rec = synthetic_records()
    fig = plots.certificate_distribution(rec, tol=1e3)  # far beyond every violation: the axis is extended
    (ax,) = fig.axes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "pass threshold" in legend
    lo, hi = ax.get_xlim()
    assert lo <= 1e3 <= hi
    fig = plots.certificate_distribution(rec, tol=1e-14)  # below the floor: stated, not drawn
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "pass threshold" not in legend and any("pass threshold 1e-14" in t for t in legend)


def test_legend_never_names_a_reference_line_outside_the_axes():
    # a global tolerance below the gap floor lies left of the axis: no legend entry for it
    fig = plots.gap_histogram(synthetic_records(), L_STAR, tolerance=1e-20)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "global tolerance" not in legend
    fig = plots.gap_histogram(synthetic_records(), L_STAR, tolerance=1e-6)
    assert "global tolerance" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_comparison_draws_each_case_in_its_column_with_its_title():
    a, b = synthetic_records(seed=1), synthetic_records(seed=2)
    b["kind"] = np.where(b["kind"] == "local_min", "spurious_min", b["kind"])
    cases = [
        {
            "records": a,
            "global_loss": L_STAR,
            "title": "case A",
            "spurious": {"count": 4, "runs": 24, "upper_95": 0.4},
        },
        {"records": b, "global_loss": L_STAR, "title": "case B", "note": "a note", "tolerance": 1e-5},
    ]
    fig = plots.comparison(cases)
    assert len(fig.axes) == 4  # gap histograms above, eigenvalue scatters below
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles == ["case A\n4 spurious of 24 runs (17%): fraction < 40% (95%)", "case B\na note"]
    for ax, rec in zip(fig.axes[:2], (a, b), strict=True):
        assert sum(h.sum() for h in bars_by_label(ax).values()) == np.sum(rec["kind"] != "not_converged")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert style.KIND_STYLE["local_min"]["label"] in legend and "global tolerance" in legend
    del b["hess_lambda_min"]  # no eigenvalues for one case: the histograms only
    assert len(plots.comparison(cases).axes) == 2
    with pytest.raises(ValueError, match="cases"):
        plots.comparison([{"records": a}])


def test_one_style_per_kind_of_the_scan_and_the_hessian():
    from sclandscape.theory import metrics

    assert style.KINDS == metrics.KINDS
    assert metrics.KINDS.index("local_min") == metrics.KINDS.index("spurious_min") + 1
    assert set(style.KIND_STYLE) == set(style.KINDS)
    assert len({s["marker"] for s in style.KIND_STYLE.values()}) == len(style.KINDS)
    assert len({s["color"] for s in style.KIND_STYLE.values()}) == len(style.KINDS)


def test_figure_bytes_of_the_same_figure_are_the_same_pdf():
    make = lambda: maps.phase_map([1, 2], None, [0.0, 1.0], xlabel="d")  # noqa: E731
    assert style.figure_bytes(make(), "pdf") == style.figure_bytes(make(), "pdf")  # no creation date
    fig = make()
    assert style.figure_bytes(fig, "png").startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="format"):
        style.figure_bytes(fig, "gif")


# --------------------------------------------------------------------------
# Report on a tiny real scan
