r"""Figures of landscape scans: every function returns a matplotlib ``Figure`` and never shows it.

Inputs are plain data: ``records`` is a mapping of equal-length 1-d arrays,
one entry per run, as ``merging.load_runs(DIR)`` returns them (fields of
``scan.RECORD_FIELDS`` plus ``kind``; ``hess_lambda_min`` once the Hessian
classification has run); losses are sum-form (docs/maths.md §1) and ``global_loss`` is
``L*`` from the class-level program (docs/maths.md §2).

Conventions shared by all figures:

- One colour and marker per kind of point (``style.KIND_STYLE``), from the
  Okabe-Ito palette (distinguishable under the common colour-vision
  deficiencies and in greyscale through the markers).
- Sized for one paper column (``style.COLUMN_WIDTH`` = 3.4 in) with every font at
  8 pt or more (``style.STYLE``); save with ``style.figure_bytes`` (or inside
  ``matplotlib.rc_context(style.STYLE)``) to get the 300 dpi PNG / Type 42 PDF
  settings.
- The figures are built with the object API (``matplotlib.figure.Figure``),
  so importing this module selects no backend and creates no window.
- Gaps ``L(H) - L*`` of global minima are rounding noise (``|gap| ~ 1e-14``
  in float64, sometimes negative); on logarithmic axes they are clipped to a
  floor ``floor_rtol * max(1, |L*|)``, and the axis label says so.
- A figure of a scan states its problem (``style.problem_title``: ``n, k, d, tau``
  and the number of runs) in its title; the callers (``report``, ``sweep``)
  pass it, the functions here take it as ``title``.
- Counts are read, not guessed: histogram bins carry their run count, and
  coinciding scatter points are one marker whose area grows with their
  number, the number written beside it.
- A legend names only what the axes show: a reference line outside the
  view is left out of it (``_shown``), or the axis is extended to show it.
- Bad input raises ``ValueError`` with a one-line message naming the problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.ticker  # noqa: F401  (mpl.ticker)
import matplotlib.transforms  # noqa: F401  (mpl.transforms)
import numpy as np
from matplotlib.figure import Figure

from sclandscape.drawing import style

# --------------------------------------------------------------------------
# Helpers


def _column(records, name: str, n: int | None = None, *, numeric: bool = True) -> np.ndarray:
    if not isinstance(records, Mapping):
        raise ValueError(f"records must be a mapping of per-run arrays, got {type(records).__name__}")
    if name not in records:
        raise ValueError(f"records have no field {name!r} (fields: {', '.join(sorted(records))})")
    arr = np.asarray(records[name])
    if arr.ndim != 1:
        raise ValueError(f"records[{name!r}] must be 1-d (one entry per run), got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise ValueError(f"records[{name!r}] has {arr.size} entries, expected {n} (one per run)")
    if numeric:
        if arr.dtype.kind not in "iuf":
            raise ValueError(f"records[{name!r}] must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    return arr


def _kinds(records, n: int) -> np.ndarray:
    kind = _column(records, "kind", n, numeric=False).astype(str)
    unknown = sorted(set(kind.tolist()) - set(style.KINDS))
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r} in records (expected one of {style.KINDS})")
    return kind


def _check_kinds(kind, n: int) -> np.ndarray:
    kind = np.asarray(kind).astype(str)
    if kind.shape != (n,):
        raise ValueError(f"kind must have shape ({n},), got {kind.shape}")
    unknown = sorted(set(kind.tolist()) - set(style.KINDS))
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r} (expected one of {style.KINDS})")
    return kind


def _optional_tol(tol) -> float | None:
    return None if tol is None else style.positive(tol, "tol")


def _bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    return int(bins)


def _fmt(value: float) -> str:
    """Compact number for labels: ``5.8e-11``, ``0.25``, ``57.5``."""
    return f"{value:.2g}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4) else f"{value:.3g}"


def _gap_floor(global_loss: float, floor_rtol) -> float:
    return style.positive(floor_rtol, "floor_rtol") * max(1.0, abs(global_loss))


def _kind_counts_label(kind: str, count: int) -> str:
    return f"{style.KIND_STYLE[kind]['label']} ({count})"


def _symlog_edges(values: np.ndarray, linthresh: float, bins: int) -> np.ndarray:
    """Bin edges uniform on the symlog scale (``sign(x) log10(1 + |x| / linthresh)``)."""
    fwd = lambda x: np.sign(x) * np.log10(1.0 + np.abs(x) / linthresh)  # noqa: E731
    inv = lambda y: np.sign(y) * linthresh * (10.0 ** np.abs(y) - 1.0)  # noqa: E731
    lo, hi = fwd(np.min(values)), fwd(np.max(values))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    edges = inv(np.linspace(lo, hi, bins + 1))
    edges[0], edges[-1] = min(edges[0], np.min(values)), max(edges[-1], np.max(values))
    return edges


def _symlog_axis(ax, which: str, linthresh: float, values: np.ndarray) -> None:
    """Symlog scale on ``which`` ("x"/"y"), linear within ``linthresh``, ~4 decades labelled a side."""
    getattr(ax, f"set_{which}scale")("symlog", linthresh=linthresh, linscale=1.0)
    values = np.asarray(values, np.float64)
    top = max(float(np.max(np.abs(values))), linthresh)
    lo = math.ceil(math.log10(linthresh) - 1e-9)
    hi = max(math.floor(math.log10(top) + 1e-9), lo + 1)  # the highest decade inside the data
    step = max(1, math.ceil((hi - lo + 1) / 4))
    # no tick at +-linthresh itself: its label would collide with the one at 0
    decades = [10.0**e for e in range(hi, lo, -step)]
    ticks = [0.0]
    if np.any(values < -linthresh) or not np.any(values > linthresh):
        ticks += [-d for d in decades]
    if np.any(values > linthresh) or not np.any(values < -linthresh):
        ticks += decades
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(mpl.ticker.FixedLocator(sorted(ticks)))
    axis.set_minor_locator(mpl.ticker.NullLocator())


def _default_linthresh(values: np.ndarray, tol: float | None) -> float:
    if tol is not None:
        return tol
    scale = float(np.max(np.abs(values))) if values.size else 1.0
    return max(1e-6 * scale, 1e-12)


def _stacked_bars(ax, edges, groups, *, horizontal=False):
    """Stacked histogram of ``groups`` (``[(kind, values), ...]``) on ``edges``; returns the counts."""
    bottom = np.zeros(edges.size - 1)
    out = {}
    for kind, values in groups:
        counts, _ = np.histogram(values, edges)
        look = style.KIND_STYLE[kind]
        common = dict(
            align="edge",
            color=look["color"],
            edgecolor="white",
            linewidth=0.3,
            label=_kind_counts_label(kind, values.size),
        )
        if horizontal:
            ax.barh(edges[:-1], counts, height=np.diff(edges), left=bottom, **common)
        else:
            ax.bar(edges[:-1], counts, width=np.diff(edges), bottom=bottom, **common)
        bottom = bottom + counts
        out[kind] = counts
    return out


def _groups(values: np.ndarray, kind: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(k, values[kind == k]) for k in style.KINDS if np.any(kind == k)]


def _log_histogram(ax, values, kinds, floor: float, bins: int, top: float | None = None):
    """Stacked histogram by kind of ``values >= floor`` in ``bins`` log-spaced bins from the floor.

    ``top``: the axis reaches at least this value (e.g. a tolerance line to show).
    Each non-empty bin's run count is written above it (``_annotate_bins``).
    """
    lo, hi = math.log10(floor), math.log10(max(float(np.max(values)), top or 0.0))
    hi = max(hi, lo + 2.0)  # a narrower log axis labels (colliding) minor ticks
    edges = np.logspace(lo, hi, bins + 1)
    edges[0], edges[-1] = floor, max(edges[-1], float(np.max(values)))
    counts = _stacked_bars(ax, edges, _groups(values, kinds))
    ax.set_xscale("log")
    ax.set_xlim(edges[0] / 3, edges[-1] * 3)
    ax.axvline(
        floor, color=style.OKABE_ITO["black"], linestyle=":", linewidth=0.8, label=f"floor {_fmt(floor)}"
    )
    _annotate_bins(ax, edges, np.sum(list(counts.values()), axis=0))
    ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    return counts


#: At most this many non-empty bins get their count written above them (more would collide).
MAX_BIN_LABELS = 12


def _annotate_bins(ax, edges, totals) -> None:
    """Write each non-empty bin's run count above its bar (log-x bins; when few enough are non-empty).

    A bar of 1 run beside one of 255 is a sliver at this height: the number
    makes it read, not guessed. The y axis is raised to leave room for the labels.
    """
    totals = np.asarray(totals)
    nonzero = np.flatnonzero(totals)
    if nonzero.size == 0:
        return
    if nonzero.size <= MAX_BIN_LABELS:
        centres = np.sqrt(edges[:-1] * edges[1:])
        for i in nonzero:
            ax.annotate(
                str(int(totals[i])),
                (centres[i], totals[i]),
                xytext=(0, 1),
                textcoords="offset points",
                ha="center",
                va="bottom",
            )
    ax.set_ylim(0, 1.18 * float(totals.max()))


def _shown(ax, artist) -> bool:
    """Whether a legend entry's artist is inside the axes' view (a reference line outside it is not).

    A vertical (horizontal) line drawn by ``axvline`` (``axhline``) is shown
    when its position lies within the x (y) limits; other artists are drawn
    from data inside the limits by construction.
    """
    if not isinstance(artist, mpl.lines.Line2D):
        return True
    x, y = np.asarray(artist.get_xdata(), float), np.asarray(artist.get_ydata(), float)
    if x.size == 2 and x[0] == x[1] and artist.get_transform() is not ax.transData:
        lo, hi = sorted(ax.get_xlim())
        return bool(lo <= x[0] <= hi)
    if y.size == 2 and y[0] == y[1] and artist.get_transform() is not ax.transData:
        lo, hi = sorted(ax.get_ylim())
        return bool(lo <= y[0] <= hi)
    return True


def _top_legend(fig, ax, notes=(), ncols: int = 2, title: str | None = None):
    """One legend above the axes (outside the data), ``notes`` as handle-less entries, ``title`` on top.

    Entries whose artist lies outside the view (``_shown``) are left out: the
    legend never names what the axes do not show.
    """
    handles, labels = ax.get_legend_handles_labels()
    keep = [i for i, h in enumerate(handles) if _shown(ax, h)]
    handles, labels = [handles[i] for i in keep], [labels[i] for i in keep]
    for note in notes:
        handles.append(mpl.patches.Patch(facecolor="none", edgecolor="none"))
        labels.append(note)
    if handles:
        fig.legend(handles, labels, loc="outside upper center", ncols=min(ncols, len(handles)), title=title)
    elif title:
        fig.suptitle(title, fontsize=style.STYLE["axes.titlesize"])


# --------------------------------------------------------------------------
# Gap and certificate


def _title_lines(*lines) -> str | None:
    """The non-empty ``lines`` joined one per line (``None`` when there is none)."""
    kept = [str(line) for line in lines if line]
    return "\n".join(kept) if kept else None


def _gap_data(records, global_loss, floor_rtol):
    """``(loss, kind, floor, converged)`` of ``records`` for the gap figures, checked."""
    global_loss = style.finite_float(global_loss, "global_loss")
    loss = _column(records, "loss")
    kind = _kinds(records, loss.size)
    floor = _gap_floor(global_loss, floor_rtol)
    converged = kind != "not_converged"
    if not np.any(converged):
        raise ValueError("no converged run to histogram (every run is not_converged)")
    if not np.all(np.isfinite(loss[converged])):
        raise ValueError("a converged run has a non-finite loss")
    return loss, kind, floor, converged


def _gap_panel(ax, loss, kind, converged, global_loss, floor, bins, tolerance) -> list[str]:
    """Draw the gap histogram into ``ax``; returns the legend notes (runs left out)."""
    clipped = np.maximum(loss[converged] - global_loss, floor)
    top = clipped if tolerance is None else np.append(clipped, 3 * tolerance)
    _log_histogram(ax, clipped, kind[converged], floor, bins, top=float(np.max(top)))
    if tolerance is not None:
        ax.axvline(
            tolerance, color=style.OKABE_ITO["black"], linestyle="--", linewidth=0.8, label="global tolerance"
        )
    ax.set_xlabel(f"gap $L(H) - L^*$  (values $\\leq$ {_fmt(floor)} drawn at that floor)")
    ax.set_ylabel("runs")
    if np.any(~converged):
        return [f"not converged ({int(np.sum(~converged))}), not shown"]
    return []


def gap_histogram(
    records: Mapping,
    global_loss: float,
    *,
    bins: int = 30,
    floor_rtol: float = 1e-12,
    tolerance: float | None = None,
    spurious: Mapping | None = None,
    title: str | None = None,
    width: float = style.COLUMN_WIDTH,
) -> Figure:
    """Histogram of the gap ``L(H) - L*`` over converged runs, stacked by kind, log-scaled gap.

    Gaps at or below the floor ``floor_rtol * max(1, |L*|)`` (rounding noise,
    including negative gaps) are counted in the first bin, at the floor; the
    axis label gives the floor. Each non-empty bin carries its run count.
    ``tolerance`` (absolute, e.g. the scan's gap tolerance from the
    summary) draws the global-minimum threshold. Runs of kind
    ``not_converged`` are left out (their number is noted in the figure).
    ``spurious`` (a summary's ``spurious_fraction``) adds the line
    ``spurious_line(spurious)`` under ``title`` (e.g. ``problem_title(...)``):
    the 95% upper bound on the fraction of initialisations ending at a
    spurious minimum.
    """
    loss, kind, floor, converged = _gap_data(records, global_loss, floor_rtol)
    bins = _bins(bins)
    tolerance = None if tolerance is None else style.positive(tolerance, "tolerance")
    note = None if spurious is None else style.spurious_line(spurious)

    with mpl.rc_context(style.STYLE):
        fig = style.figure(width, 0.8 * width)
        ax = fig.subplots()
        notes = _gap_panel(ax, loss, kind, converged, float(global_loss), floor, bins, tolerance)
        _top_legend(fig, ax, notes, title=_title_lines(title, note))
    return fig


def certificate_distribution(
    records: Mapping,
    *,
    bins: int = 30,
    floor: float = 1e-12,
    tol: float | None = None,
    title: str | None = None,
    width: float = style.COLUMN_WIDTH,
) -> Figure:
    r"""Distribution of the certificate ``lambda_min(S)`` (field ``cert_lambda``), stacked by kind.

    ``S = F - Diag((F G)_ii)`` (docs/maths.md §2): ``S \succeq 0`` at a critical point
    certifies a global minimum; spurious minima and saddles have
    ``lambda_min(S) < 0``. Drawn as the violation ``-lambda_min(S)`` on a log
    axis: values at or below ``floor`` (every ``lambda_min(S) >= -floor``,
    i.e. a passing certificate up to rounding) are counted in the first bin,
    at the floor; the axis label gives the floor. Each non-empty bin carries
    its run count. ``tol`` (e.g. the gap tolerance over ``n``, where the
    certificate's gap bound meets the tolerance) draws the pass threshold,
    the axis extended to show it; a ``tol`` at or below the floor cannot be
    told apart from it and is stated in a note instead of drawn. Runs with a
    non-finite certificate are left out and counted in the legend.
    """
    lam = _column(records, "cert_lambda")
    kind = _kinds(records, lam.size)
    bins = _bins(bins)
    floor = style.positive(floor, "floor")
    tol = _optional_tol(tol)
    finite = np.isfinite(lam)
    if not np.any(finite):
        raise ValueError("no run has a finite certificate (cert_lambda)")
    violation = np.maximum(-lam[finite], floor)
    drawn_tol = tol is not None and tol > floor

    with mpl.rc_context(style.STYLE):
        fig = style.figure(width, 0.8 * width)
        ax = fig.subplots()
        _log_histogram(ax, violation, kind[finite], floor, bins, top=3 * tol if drawn_tol else None)
        notes = []
        if drawn_tol:
            ax.axvline(
                tol, color=style.OKABE_ITO["black"], linestyle="--", linewidth=0.8, label="pass threshold"
            )
        elif tol is not None:
            notes.append(f"pass threshold {_fmt(tol)} $\\leq$ floor")
        ax.set_xlabel(
            f"certificate violation $-\\lambda_{{min}}(S)$  (values $\\leq$ {_fmt(floor)}\n"
            "drawn at that floor: $S \\succeq 0$ up to rounding, global)"
        )
        ax.set_ylabel("runs")
        if np.any(~finite):
            notes.append(f"non-finite ({int(np.sum(~finite))}), not shown")
        _top_legend(fig, ax, notes, title=title)
    return fig


# --------------------------------------------------------------------------
# Hessian


#: Points of one kind closer than this fraction of the axis span (each axis, in its scale) are drawn as one
#: marker: at one column width a marker is ~2% of the axis across, so such points would overlap anyway.
MERGE_FRACTION = 0.02


def _merge_close(u: np.ndarray, v: np.ndarray, du: float, dv: float) -> tuple[np.ndarray, np.ndarray]:
    """Group points of the (scaled) plane that lie within ``du`` and ``dv`` of a group's first point.

    The points are first bucketed in ``du x dv`` cells (vectorised; at most
    ``1 / MERGE_FRACTION^2`` cells are visible), then the cells are joined by
    leader clustering in lexicographic order: a cell joins the first group
    whose leader is within ``du`` in ``u`` and ``dv`` in ``v``, else starts a
    group, so two close points on either side of a cell edge still merge.
    Identical points always share a group. Returns, per group, the index of
    its leader point and the number of members.
    """
    key = np.stack([np.floor(u / du), np.floor(v / dv)], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    cell_count = np.bincount(np.asarray(inverse).ravel(), minlength=first.size)
    leaders: list[int] = []
    counts: list[int] = []
    for c in np.lexsort((v[first], u[first])):
        i = first[c]
        if leaders:
            near = np.flatnonzero((np.abs(u[leaders] - u[i]) <= du) & (np.abs(v[leaders] - v[i]) <= dv))
            if near.size:
                counts[near[0]] += int(cell_count[c])
                continue
        leaders.append(int(i))
        counts.append(int(cell_count[c]))
    return np.asarray(leaders, np.int64), np.asarray(counts, np.int64)


def _symlog(y, linthresh: float):
    return np.sign(y) * np.log10(1.0 + np.abs(y) / linthresh)


def _eigen_data(records, global_loss, floor_rtol):
    """``(gap, lam, kinds, floor)`` of the runs with a Hessian eigenvalue, gap clipped at the floor."""
    global_loss = style.finite_float(global_loss, "global_loss")
    loss = _column(records, "loss")
    lam = _column(records, "hess_lambda_min", loss.size)
    kind = _kinds(records, loss.size)
    floor = _gap_floor(global_loss, floor_rtol)
    have = np.isfinite(lam) & np.isfinite(loss)
    if not np.any(have):
        raise ValueError("no run has a Hessian eigenvalue (hess_lambda_min is NaN everywhere)")
    return np.maximum(loss[have] - global_loss, floor), lam[have], kind[have], floor


#: Label positions tried around a marker of radius ``r`` points: right, left, above, below.
_LABEL_SIDES = (
    (lambda r: (r + 1.5, 0.0), "left", "center"),
    (lambda r: (-r - 1.5, 0.0), "right", "center"),
    (lambda r: (0.0, r + 1.0), "center", "bottom"),
    (lambda r: (0.0, -r - 1.0), "center", "top"),
)


def _count_labels(ax, points) -> None:
    """Write the count beside each merged marker (count > 1), on the first side that hits nothing.

    ``points``: ``(count, (fx, fy) axes fraction, radius pt, x, y, colour)``
    for every marker. Positions are judged in points on an estimate of the
    axes' size (their position before layout): a label avoids every other
    marker's square and the labels placed before it, largest count first;
    when every side collides, the side with the least overlap is taken. A
    heuristic: in a crowded panel labels may still touch.
    """
    fig = ax.get_figure()
    box = ax.get_position()
    w_pt, h_pt = 72.0 * fig.get_figwidth() * box.width, 72.0 * fig.get_figheight() * box.height
    centre = [(fx * w_pt, fy * h_pt, r) for _, (fx, fy), r, *_ in points]
    taken = [(x - r, y - r, x + r, y + r) for x, y, r in centre]
    glyph, height = 0.6 * style.STYLE["font.size"], style.STYLE["font.size"]

    def overlap(a, b) -> float:
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    order = sorted(range(len(points)), key=lambda i: -points[i][0])
    for i in order:
        count, _, r, x, y, color = points[i]
        if count < 2:
            continue
        cx, cy, _ = centre[i]
        w = glyph * len(str(count))
        best = None
        for offset, ha, va in _LABEL_SIDES:
            ox, oy = offset(r)
            x0 = cx + ox - (w if ha == "right" else w / 2 if ha == "center" else 0.0)
            y0 = cy + oy - (height if va == "top" else height / 2 if va == "center" else 0.0)
            rect = (x0, y0, x0 + w, y0 + height)
            hit = sum(overlap(rect, t) for j, t in enumerate(taken) if j != i)
            outside = x0 < 0 or y0 < 0 or x0 + w > w_pt or y0 + height > h_pt
            score = hit + (w * height if outside else 0.0)
            if best is None or score < best[0]:
                best = (score, (ox, oy), ha, va, rect)
            if score == 0:
                break
        _, (ox, oy), ha, va, rect = best
        taken.append(rect)
        ax.annotate(
            f"{count}",
            (x, y),
            xytext=(ox, oy),
            textcoords="offset points",
            ha=ha,
            va=va,
            color=color,
            zorder=4,
        )


def _eigen_panel(ax, gap, lam, kinds, floor, tol) -> None:
    """Draw the eigenvalue-vs-gap scatter into ``ax``, coinciding points merged and counted."""
    linthresh = _default_linthresh(lam, tol)
    # a decade of room beyond the extreme points, so that a large (merged) marker is not clipped
    ylim = (min(10.0 * float(np.min(lam)), -100 * linthresh), max(10.0 * float(np.max(lam)), 100 * linthresh))
    # at least three decades: a narrower log axis labels its minor ticks, which then collide
    lo = math.log10(floor)
    hi = max(math.log10(max(float(np.max(gap)), floor)), lo + 3.0)
    xlim = (lo - 0.05 * (hi - lo) - 0.3, hi + 0.05 * (hi - lo) + 0.3)
    u, v = np.log10(gap), _symlog(lam, linthresh)
    du = MERGE_FRACTION * (xlim[1] - xlim[0])
    dv = MERGE_FRACTION * float(_symlog(ylim[1], linthresh) - _symlog(ylim[0], linthresh))
    sv = (float(_symlog(ylim[0], linthresh)), float(_symlog(ylim[1], linthresh)))
    labels = []
    for k in style.KINDS:
        sel = np.flatnonzero(kinds == k)
        if not sel.size:
            continue
        reps, counts = _merge_close(u[sel], v[sel], du, dv)
        rows = sel[reps]
        look = style.KIND_STYLE[k]
        sizes = 16.0 * np.sqrt(counts)  # marker area grows as sqrt(count); the count is written beside it
        ax.scatter(
            gap[rows],
            lam[rows],
            s=sizes,
            marker=look["marker"],
            color=look["color"],
            linewidths=0.8 if look["marker"] == "x" else 0.3,
            edgecolors=None if look["marker"] == "x" else "white",
            zorder=3,
        )
        # the legend shows a marker of the plain size (a proxy), not the first, possibly merged, one
        ax.plot(
            [],
            [],
            linestyle="none",
            marker=look["marker"],
            color=look["color"],
            markersize=5,
            label=_kind_counts_label(k, int(sel.size)),
        )
        for row, count, size in zip(rows, counts, sizes, strict=True):
            frac = ((u[row] - xlim[0]) / (xlim[1] - xlim[0]), (v[row] - sv[0]) / (sv[1] - sv[0]))
            labels.append((int(count), frac, 0.5 * math.sqrt(size), gap[row], lam[row], look["color"]))
    _count_labels(ax, labels)
    ax.set_xscale("log")
    _symlog_axis(ax, "y", linthresh, lam)
    # always show both half-planes, so that an empty one (no saddles found) is visible as such
    ax.set_ylim(*ylim)
    ax.axhline(0.0, color=style.OKABE_ITO["black"], linewidth=0.6)
    if tol is not None:
        ax.axhspan(-tol, tol, color=style.OKABE_ITO["grey"], alpha=0.2, linewidth=0)
    ax.axvline(
        floor, color=style.OKABE_ITO["black"], linestyle=":", linewidth=0.8, label=f"gap floor {_fmt(floor)}"
    )
    ax.set_xlim(10 ** xlim[0], 10 ** xlim[1])
    ax.set_xlabel(f"gap $L(H) - L^*$  (values $\\leq$ {_fmt(floor)} drawn at that floor)")
    ax.set_ylabel("smallest Hessian eigenvalue\n(symmetry modes removed)")
    band = mpl.transforms.blended_transform_factory(ax.transAxes, ax.transData)
    ax.text(0.5, 2.0 * linthresh, "$\\uparrow$ local minima", transform=band, ha="center", va="bottom")
    ax.text(0.5, -2.0 * linthresh, "$\\downarrow$ saddles", transform=band, ha="center", va="top")


def eigenvalue_vs_gap(
    records: Mapping,
    global_loss: float,
    *,
    tol: float | None = None,
    floor_rtol: float = 1e-12,
    title: str | None = None,
    width: float = style.COLUMN_WIDTH,
) -> Figure:
    r"""Smallest non-symmetry Hessian eigenvalue (``hess_lambda_min``) against the gap ``L - L*``.

    The picture of "every local minimum is global": minima (``lambda >= -tol``)
    sit at gap ~ 0 when ``d >= k - 1``; spurious minima are points with
    ``lambda >= -tol`` at a positive gap, saddles have ``lambda < -tol``.
    Runs where the eigenvalue was not computed (NaN) are left out. The gap is
    clipped below at ``floor_rtol * max(1, |L*|)`` (log axis); the eigenvalue
    axis is symlog, linear within ``tol`` (default ``1e-6 max |lambda|``).

    Runs of one kind closer than ``MERGE_FRACTION`` of the axis span in both
    coordinates (e.g. 256 runs at the same global minimum) are drawn as one
    marker whose area grows as the square root of their number, the number
    written beside it; the legend gives each kind's total.
    """
    gap, lam, kinds, floor = _eigen_data(records, global_loss, floor_rtol)
    tol = _optional_tol(tol)

    with mpl.rc_context(style.STYLE):
        fig = style.figure(width, 0.85 * width)
        ax = fig.subplots()
        _eigen_panel(ax, gap, lam, kinds, floor, tol)
        _top_legend(fig, ax, title=title)
    return fig


def comparison(cases: Sequence[Mapping], *, bins: int = 30, width: float = 2 * style.COLUMN_WIDTH) -> Figure:
    """Scans side by side, one column each: the gap histogram, and below it the eigenvalue-vs-gap scatter.

    Each case is a mapping with ``records`` (per-run arrays, as for
    ``gap_histogram``), ``global_loss`` (``L*``), ``title`` (one or more
    lines: e.g. ``problem_title(...)`` and the regime ``d >= k - 1``), and
    optionally ``tolerance`` (the gap tolerance line), ``spurious`` (a
    summary's ``spurious_fraction``, written under the title with
    ``spurious_line``) or ``note`` (a line written instead, e.g. where
    spurious has no meaning). The scatter row is drawn when every case has a
    finite ``hess_lambda_min``; one legend of kinds serves all panels, and each
    panel's bars and markers carry their counts (as in ``gap_histogram`` and
    ``eigenvalue_vs_gap``). Sized for a two-column page by default.
    """
    if isinstance(cases, Mapping) or not isinstance(cases, Sequence) or not 1 <= len(cases) <= 4:
        raise ValueError("cases must be a sequence of one to four mappings (records, global_loss, title)")
    bins = _bins(bins)
    prepared = []
    for i, case in enumerate(cases):
        if not isinstance(case, Mapping) or not all(
            key in case for key in ("records", "global_loss", "title")
        ):
            raise ValueError(f"cases[{i}] must be a mapping with 'records', 'global_loss' and 'title'")
        L = style.finite_float(case["global_loss"], f"cases[{i}]['global_loss']")
        loss, kind, floor, converged = _gap_data(case["records"], L, 1e-12)
        tolerance = case.get("tolerance")
        tolerance = None if tolerance is None else style.positive(tolerance, f"cases[{i}]['tolerance']")
        try:
            eigen = _eigen_data(case["records"], L, 1e-12)
        except ValueError:
            eigen = None
        note = style.spurious_line(case["spurious"]) if case.get("spurious") is not None else case.get("note")
        prepared.append(
            (L, loss, kind, floor, converged, tolerance, eigen, _title_lines(case["title"], note))
        )
    scatter = all(p[6] is not None for p in prepared)
    rows, cols = (2 if scatter else 1), len(prepared)

    with mpl.rc_context(style.STYLE):
        fig = style.figure(width, (0.8 if scatter else 0.45) * width * 2 / max(cols, 2) + 0.6)
        axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
        present, notes = set(), []
        for j, (L, loss, kind, floor, converged, tolerance, eigen, title) in enumerate(prepared):
            left = _gap_panel(axes[0, j], loss, kind, converged, L, floor, bins, tolerance)
            notes += [f"{note} (panel {j + 1})" for note in left] if cols > 1 else left
            axes[0, j].set_title(title, loc="center")
            present |= set(kind[converged].tolist())
            if scatter:
                _eigen_panel(axes[1, j], *eigen[:3], eigen[3], None)
                present |= set(eigen[2].tolist())
        handles = [
            mpl.lines.Line2D(
                [],
                [],
                linestyle="none",
                marker=style.KIND_STYLE[k]["marker"],
                color=style.KIND_STYLE[k]["color"],
                markersize=5,
            )
            for k in style.KINDS
            if k in present
        ]
        labels = [style.KIND_STYLE[k]["label"] for k in style.KINDS if k in present]
        shown = [
            line
            for ax in axes[0]
            for line in ax.get_lines()
            if line.get_label() == "global tolerance" and _shown(ax, line)
        ]
        if shown:  # only a tolerance line some panel shows
            handles.append(
                mpl.lines.Line2D([], [], color=style.OKABE_ITO["black"], linestyle="--", linewidth=0.8)
            )
            labels.append("global tolerance")
        for note in notes:
            handles.append(mpl.patches.Patch(facecolor="none", edgecolor="none"))
            labels.append(note)
        fig.legend(handles, labels, loc="outside upper center", ncols=min(4, len(handles)))
    return fig


def hessian_spectrum(
    eigenvalues,
    n_zero_predicted,
    *,
    kind=None,
    tol: float | None = None,
    bins: int = 30,
    title: str | None = None,
    width: float = style.COLUMN_WIDTH,
) -> Figure:
    """Sorted Riemannian Hessian eigenvalues (index vs value, symlog) beside their density.

    ``eigenvalues`` is ``(N,)`` for one point or ``(r, N)`` for ``r`` points
    (``N = n(d-1)``, as in ``hessian/spectra.npz``); ``n_zero_predicted`` the
    number of symmetry zero modes ``d(d-1)/2 - (d-r)(d-r-1)/2`` (an int, or
    ``(r,)``); ``kind`` (a string or ``(r,)``) colours each point. The
    ``n_zero_predicted`` eigenvalues nearest zero are marked as symmetry
    modes; a grey band shows ``|lambda| <= tol`` when given. The density
    panel is a histogram of all eigenvalues in bins uniform on the symlog
    scale, sharing the value axis.
    """
    eigs = np.asarray(eigenvalues)
    if eigs.ndim not in (1, 2) or eigs.size == 0 or eigs.dtype.kind not in "iuf":
        raise ValueError(
            f"eigenvalues must be a non-empty numeric (N,) or (r, N) array, got shape {eigs.shape}"
        )
    eigs = np.atleast_2d(eigs.astype(np.float64))
    r, N = eigs.shape
    if not np.all(np.isfinite(eigs)):
        raise ValueError("eigenvalues must be finite")
    nz = np.broadcast_to(np.asarray(n_zero_predicted), (r,)) if np.ndim(n_zero_predicted) == 0 else None
    nz = np.asarray(n_zero_predicted) if nz is None else nz
    if nz.shape != (r,) or nz.dtype.kind not in "iu" or np.any(nz < 0) or np.any(nz > N):
        raise ValueError(f"n_zero_predicted must be integers in 0..{N}, one per point ({r}), got {nz!r}")
    if kind is None:
        kinds = None
    else:
        kinds = _check_kinds(np.broadcast_to(np.asarray(kind), (r,)) if np.ndim(kind) == 0 else kind, r)
    tol = _optional_tol(tol)
    bins = _bins(bins)
    linthresh = _default_linthresh(eigs.ravel(), tol)
    index = np.arange(1, N + 1)

    with mpl.rc_context(style.STYLE):
        fig = style.figure(width, 0.72 * width)
        ax, axd = fig.subplots(1, 2, sharey=True, width_ratios=(2.4, 1))
        for i in range(r):
            values = np.sort(eigs[i])
            color = style.KIND_STYLE[kinds[i]]["color"] if kinds is not None else style.OKABE_ITO["blue"]
            label = None
            if kinds is not None and kinds[i] not in kinds[:i]:
                label = style.KIND_STYLE[kinds[i]]["label"]
            ax.plot(index, values, color=color, marker=".", markersize=2.5, linewidth=0.8, label=label)
            zero = np.sort(np.argsort(np.abs(values), kind="stable")[: nz[i]])
            ax.plot(
                index[zero],
                values[zero],
                linestyle="none",
                marker="o",
                markersize=4.5,
                markerfacecolor="none",
                markeredgecolor=style.OKABE_ITO["black"],
                markeredgewidth=0.7,
                label=(f"symmetry modes ({nz[i]})" if r == 1 else "symmetry modes") if i == 0 else None,
            )
        _symlog_axis(ax, "y", linthresh, eigs)
        ax.axhline(0.0, color=style.OKABE_ITO["black"], linewidth=0.5)
        for a in (ax, axd):
            if tol is not None:
                a.axhspan(-tol, tol, color=style.OKABE_ITO["grey"], alpha=0.25, linewidth=0)
        ax.set_xlabel(f"eigenvalue index (of {N})")
        ax.set_ylabel(f"Hessian eigenvalue\n(symlog, linear below {_fmt(linthresh)})")
        ax.set_xlim(0, N + 1)
        _top_legend(fig, ax, title=title, ncols=1)
        edges = _symlog_edges(eigs.ravel(), linthresh, bins)
        if kinds is None:
            counts, _ = np.histogram(eigs.ravel(), edges)
            axd.barh(edges[:-1], counts, height=np.diff(edges), align="edge", color=style.OKABE_ITO["blue"])
        else:
            groups = [(k, eigs[kinds == k].ravel()) for k in style.KINDS if np.any(kinds == k)]
            _stacked_bars(axd, edges, groups, horizontal=True)
        axd.set_xlabel("count")
        axd.tick_params(labelleft=False)
    return fig


# --------------------------------------------------------------------------
# Geometry


def gram_heatmaps(
    M_found,
    M_star,
    *,
    titles: Sequence[str] = ("found", "$M^*$"),
    annotate: bool | None = None,
    title: str | None = None,
    width: float = style.COLUMN_WIDTH,
) -> Figure:
    r"""Class-mean Gram ``M(H)`` of a found point beside the optimum's ``M*``, one colour scale.

    Both ``(k, k)``; the diverging scale is symmetric, ``[-1, 1]`` (the Gram of
    unit vectors) or wider if an entry exceeds it, with one colourbar. The
    relative distance ``|M - M*|_F / |M*|_F`` is printed under the panels.
    ``annotate`` writes the values in the cells (default: when ``k <= 3``; at one
    column width the numbers of a larger ``k`` only fit with a larger ``width``).
    """
    M = style.square(M_found, "M_found")
    S = style.square(M_star, "M_star")
    if M.shape != S.shape:
        raise ValueError(f"M_found {M.shape} and M_star {S.shape} must have the same shape")
    if len(titles) != 2:
        raise ValueError(f"titles must be two strings, got {titles!r}")
    k = M.shape[0]
    annotate = k <= 3 if annotate is None else bool(annotate)
    lim = max(1.0, float(np.max(np.abs(M))), float(np.max(np.abs(S))))
    norm = mpl.colors.Normalize(-lim, lim)
    cmap = mpl.colormaps["RdBu_r"]
    dist = float(np.linalg.norm(M - S) / np.linalg.norm(S))

    with mpl.rc_context(style.STYLE):
        fig = style.figure(width, 0.5 * width)
        axes = fig.subplots(1, 2)
        for ax, data, name in zip(axes, (M, S), titles, strict=True):
            im = ax.imshow(data, cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_title(name)
            ticks = np.arange(k) if k <= 10 else np.arange(0, k, max(1, k // 5))
            ax.set_xticks(ticks)
            ax.set_yticks(ticks)
            ax.set_xlabel("class")
            ax.tick_params(length=0)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if annotate:
                for i in range(k):
                    for j in range(k):
                        value = data[i, j]
                        shade = norm(value)
                        ax.text(
                            j,
                            i,
                            f"{value:.2f}".replace("-", "\u2212"),
                            ha="center",
                            va="center",
                            color="white" if abs(shade - 0.5) > 0.32 else "black",
                        )
        axes[0].set_ylabel("class")
        cbar = fig.colorbar(im, ax=axes, shrink=0.9, label="cosine")
        cbar.set_ticks([-lim, -lim / 2, 0.0, lim / 2, lim])
        fig.supxlabel(f"$\\|M - M^*\\|_F / \\|M^*\\|_F$ = {dist:.3g}", fontsize=8)
        if title:
            fig.suptitle(title)
    return fig
