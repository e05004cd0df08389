"""Maps over a grid of problems: the phase map of a sweep and the geometry of STEP imbalance.

Plain data in (a sweep's cells, the STEP geometry over ratios), a ``Figure`` out, in
the house style of ``style``; bad input raises ``ValueError`` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from sclandscape.core import problems
from sclandscape.drawing import style
from sclandscape.theory import metrics


def phase_map(
    x_values: Sequence,
    y_values: Sequence | None,
    fraction,
    *,
    xlabel: str,
    ylabel: str | None = None,
    annotations=None,
    hatch=None,
    hatch_label: str = "marked",
    footnote: str | None = None,
    title: str | None = None,
    colorbar_label: str = "fraction reaching $L^*$",
    width: float = style.COLUMN_WIDTH,
) -> Figure:
    """Fraction of runs reaching the global optimum on a one- or two-parameter grid.

    ``fraction`` is ``(len(y_values), len(x_values))`` with entries in
    ``[0, 1]`` or NaN (a cell not run, drawn grey); for a one-parameter
    sweep pass ``y_values=None`` and ``fraction`` ``(len(x_values),)``. Each
    cell shows its fraction and, below it, ``annotations[i][j]`` when given
    (e.g. the number of distinct spurious minima). ``hatch``, a boolean array
    of the same shape, hatches cells (e.g. where ``d < rank M*``, so that
    ``L*`` cannot be reached) with a legend entry ``hatch_label``; ``footnote``
    is a line under the map (e.g. what an annotation means). The grid is
    categorical: one equal cell per value, ticks labelled with the values.
    """
    xs = list(x_values)
    frac = np.asarray(fraction, dtype=np.float64)
    if not xs:
        raise ValueError("x_values must not be empty")
    if y_values is None:
        ys = None
        if frac.ndim == 1:
            frac = frac[None, :]
    else:
        ys = list(y_values)
        if not ys:
            raise ValueError("y_values must not be empty")
    rows = 1 if ys is None else len(ys)
    if frac.shape != (rows, len(xs)):
        raise ValueError(f"fraction must have shape ({rows}, {len(xs)}) (y by x), got {np.shape(fraction)}")
    ok = np.isfinite(frac)
    if np.any((frac[ok] < 0) | (frac[ok] > 1)):
        raise ValueError("fraction entries must lie in [0, 1] (or be NaN for a missing cell)")
    if annotations is not None:
        ann = np.asarray(annotations, dtype=object)
        if ann.ndim == 1 and rows == 1:
            ann = ann[None, :]
        if ann.shape != frac.shape:
            raise ValueError(f"annotations must have the shape of fraction {frac.shape}, got {ann.shape}")
    if hatch is not None:
        hatch = np.asarray(hatch)
        if hatch.ndim == 1 and rows == 1:
            hatch = hatch[None, :]
        if hatch.shape != frac.shape or hatch.dtype != bool:
            raise ValueError(f"hatch must be a boolean array of the shape of fraction {frac.shape}")
    cmap = mpl.colormaps["viridis"].with_extremes(bad=style.OKABE_ITO["grey"])
    # room for the cells, then for each title line and each line of the legend below
    legend_lines = (1 if hatch is not None and hatch.any() else 0) + (
        footnote.count("\n") + 1 if footnote else 0
    )
    height = (
        max(1.5, 0.45 * rows + 1.1) + 0.15 * (title.count("\n") + 1 if title else 0) + 0.17 * legend_lines
    )

    with mpl.rc_context(style.STYLE):
        fig = style.figure(width, height)
        ax = fig.subplots()
        im = ax.imshow(
            np.ma.masked_invalid(frac), cmap=cmap, vmin=0.0, vmax=1.0, origin="lower", aspect="auto"
        )
        for i in range(rows):
            for j in range(len(xs)):
                if ok[i, j]:
                    text = f"{frac[i, j]:.2f}"
                    rgba = cmap(frac[i, j])
                    light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.5
                else:
                    text, light = "\u2013", True
                if annotations is not None and ann[i, j] is not None and str(ann[i, j]):
                    text += f"\n{ann[i, j]}"
                ax.text(j, i, text, ha="center", va="center", color="black" if light else "white")
        keys, labels = [], []
        if hatch is not None and hatch.any():
            for i, j in zip(*np.nonzero(hatch), strict=True):
                ax.add_patch(
                    mpl.patches.Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        fill=False,
                        hatch="//",
                        edgecolor=(1, 1, 1, 0.45),
                        linewidth=0,
                    )
                )
            keys.append(mpl.patches.Patch(facecolor=cmap(0.0), hatch="//", edgecolor=(1, 1, 1, 0.6)))
            labels.append(hatch_label)
        if footnote:
            keys.append(mpl.patches.Patch(facecolor="none", edgecolor="none"))
            labels.append(footnote)
        if keys:
            fig.legend(keys, labels, loc="outside lower center")
        ax.set_xticks(np.arange(len(xs)), [_tick(v) for v in xs])
        ax.set_xlabel(xlabel)
        if ys is None:
            ax.set_yticks([])
        else:
            ax.set_yticks(np.arange(rows), [_tick(v) for v in ys])
            ax.set_ylabel(ylabel or "")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        fig.colorbar(im, ax=ax, label=colorbar_label, fraction=0.08, pad=0.03)
        if title:
            ax.set_title(title)
    return fig


def _tick(value) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:g}"
    return str(value)


def imbalance_geometry(
    geometry: Mapping,
    *,
    overlay: Iterable[Mapping] | None = None,
    title: str | None = None,
    width: float = style.COLUMN_WIDTH,
) -> Figure:
    r"""The STEP optimum's block values ``alpha`` (maj-maj), ``beta`` (min-min), ``gamma`` (cross) vs ``R``.

    ``geometry`` is ``optimum.step_geometry``'s result: one curve per
    temperature. At ``R = 1`` every block is the simplex ETF value
    ``-1/(k-1)`` (dotted); as ``R`` grows the minority classes collapse
    towards each other (``beta -> 1``).

    ``overlay``: scan results to compare, each a mapping with ``R``, ``tau`` and
    either ``class_gram`` (the class-mean Gram ``M(H)`` of a found minimum,
    ``(k, k)``) or ``alpha``/``beta``/``gamma``; drawn as open markers in the
    colour of their temperature.
    """
    if not isinstance(geometry, Mapping):
        raise ValueError("geometry must be optimum.step_geometry's result (a mapping)")
    for name in ("ratios", "taus", "alpha", "beta", "gamma", "k_maj", "k_min"):
        if name not in geometry:
            raise ValueError(f"geometry has no {name!r} (pass optimum.step_geometry's result)")
    k_maj, k_min = int(geometry["k_maj"]), int(geometry["k_min"])
    R = np.asarray(geometry["ratios"], np.float64)
    T = np.asarray(geometry["taus"], np.float64)
    k = k_maj + k_min
    points = _overlay_points(overlay, k_maj, k) if overlay is not None else []
    panels = [
        ("alpha", r"$\alpha$ (maj$-$maj)"),
        ("beta", r"$\beta$ (min$-$min)"),
        ("gamma", r"$\gamma$ (maj$-$min)"),
    ]
    panels = [(name, label) for name, label in panels if np.any(np.isfinite(geometry[name]))]
    color_of = {float(t): style.SERIES_COLORS[i % len(style.SERIES_COLORS)] for i, t in enumerate(T)}
    marker_of = {float(t): style.SERIES_MARKERS[i % len(style.SERIES_MARKERS)] for i, t in enumerate(T)}

    with mpl.rc_context(style.STYLE):
        fig = style.figure(width, 0.95 * len(panels) + 1.0)
        axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True))
        for ax, (name, label) in zip(axes, panels, strict=True):
            ax.axhline(-1.0 / (k - 1), color=style.OKABE_ITO["grey"], linestyle=":", linewidth=0.8)
            for i, t in enumerate(T):
                ax.plot(
                    R,
                    np.asarray(geometry[name])[i],
                    color=color_of[float(t)],
                    marker=marker_of[float(t)] if R.size <= 12 else None,
                    markersize=3,
                    label=f"$\\tau$ = {t:g}",
                )
            for p in points:
                if np.isfinite(p[name]):
                    ax.plot(
                        p["R"],
                        p[name],
                        linestyle="none",
                        marker="o",
                        markersize=6,
                        markerfacecolor="none",
                        markeredgewidth=1.0,
                        markeredgecolor=color_of.get(p["tau"], style.OKABE_ITO["black"]),
                    )
            ax.set_ylabel(label)
        if R.size > 1 and R.max() / R.min() >= 10:
            axes[-1].set_xscale("log")
            if R.size <= 8:
                axes[-1].set_xticks(R, [f"{r:g}" for r in R])
                axes[-1].xaxis.set_minor_locator(mpl.ticker.NullLocator())
        axes[-1].set_xlabel(r"imbalance ratio $R = n_{maj} / n_{min}$")
        handles, labels = axes[0].get_legend_handles_labels()
        handles.append(mpl.lines.Line2D([], [], color=style.OKABE_ITO["grey"], linestyle=":", linewidth=0.8))
        labels.append("ETF $-1/(k-1)$")
        if points:
            handles.append(
                mpl.lines.Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", color="black")
            )
            labels.append("scan minima")
        fig.legend(handles, labels, loc="outside upper center", ncols=min(3, len(labels)), title=title)
    return fig


def _overlay_points(overlay, k_maj: int, k: int) -> list[dict]:
    points = []
    for i, item in enumerate(overlay):
        if not isinstance(item, Mapping) or "R" not in item or "tau" not in item:
            raise ValueError(
                f"overlay[{i}] must be a mapping with 'R', 'tau' and 'class_gram' or alpha/beta/gamma"
            )
        if "class_gram" in item:
            M = style.square(item["class_gram"], f"overlay[{i}]['class_gram']")
            if M.shape != (k, k):
                raise ValueError(f"overlay[{i}]['class_gram'] must be ({k}, {k}), got {M.shape}")
            a, b, g = metrics.step_blocks(M, k_maj)
        elif all(name in item for name in ("alpha", "beta", "gamma")):
            a, b, g = (
                style.finite_float(item[name], f"overlay[{i}][{name!r}]")
                for name in ("alpha", "beta", "gamma")
            )
        else:
            raise ValueError(f"overlay[{i}] needs 'class_gram' or 'alpha', 'beta' and 'gamma'")
        points.append(
            {
                "R": style.positive(item["R"], f"overlay[{i}]['R']"),
                "tau": problems.check_tau(item["tau"]),
                "alpha": a,
                "beta": b,
                "gamma": g,
            }
        )
    return points
