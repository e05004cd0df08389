"""The figures of the tools: Taylor checks, Hessian densities, minimum-energy paths, loss slices, saddles.

Each takes the records its tool wrote (arrays and JSON-ready dicts, never a
computation) and returns a ``matplotlib.figure.Figure`` in the house style of
``plots`` (``style.STYLE``, Okabe-Ito colours, column widths). NumPy and
matplotlib only: the studies draw them, and so can a user reading a folder.
"""

from __future__ import annotations

import matplotlib as mpl
import numpy as np

from sclandscape.drawing import style
from sclandscape.theory import metrics


def taylor_figure(check, *, width: float | None = None):
    """Log-log remainder against step size, the fitted window, and reference slopes 1, 2 and 3."""
    width = style.COLUMN_WIDTH if width is None else width

    t, e = check.steps, np.maximum(check.errors, np.finfo(float).tiny)
    with mpl.rc_context(style.STYLE):
        fig = style.StyledFigure(figsize=(width, 0.75 * width), layout="constrained")
        ax = fig.subplots()
        ax.loglog(t, e, marker="o", markersize=2.5, color=style.OKABE_ITO["blue"], label="remainder")
        if check.window is not None:
            i, j = check.window
            ax.loglog(
                t[i : j + 1],
                e[i : j + 1],
                color=style.OKABE_ITO["vermillion"],
                linewidth=2.4,
                label=f"fitted: slope {check.slope:.2f}",
            )
            anchor_t, anchor_e = t[j], e[j]
        else:
            anchor_t, anchor_e = t[-1], e[-1]
        for p, dash in ((1, ":"), (2, "--"), (3, "-.")):
            ax.loglog(
                t,
                anchor_e * (t / anchor_t) ** p,
                dash,
                color=style.OKABE_ITO["grey"],
                linewidth=0.7,
                label=f"slope {p}",
            )
        ax.axhline(check.floor, color=style.OKABE_ITO["black"], linewidth=0.6, label="rounding floor")
        ax.set_ylim(max(np.min(e), check.floor / 100), np.max(e) * 10)
        ax.set_xlabel("step size t")
        ax.set_ylabel("Taylor remainder")
        what = "gradient" if check.expected == 2 else "Hessian"
        ax.set_title(
            f"{what} check: {'passed' if check.passed else 'FAILED'} (expected slope {check.expected})"
        )
        ax.legend(loc="best")
    return fig


def density_figure(entry: dict, dens: dict, problem: dict, *, width: float = style.COLUMN_WIDTH):
    """The broadened spectral density (log scale), the nodes' weights as a rug, zero, and the trace."""
    import matplotlib as mpl

    grid, values = np.asarray(dens["grid"]), np.asarray(dens["density"])
    floor = max(values.max() * 1e-8, np.finfo(float).tiny)
    with mpl.rc_context(style.STYLE):
        fig = style.StyledFigure(figsize=(width, 0.7 * width), layout="constrained")
        ax = fig.subplots()
        ax.semilogy(grid, np.maximum(values, floor), color=style.OKABE_ITO["blue"], label="density")
        ax.axvline(0.0, color=style.OKABE_ITO["grey"], linewidth=0.6)
        nodes = np.asarray(dens["nodes"]).reshape(-1)
        ax.plot(
            nodes,
            np.full_like(nodes, floor * 10),
            "|",
            color=style.OKABE_ITO["black"],
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


def path_figure(entry: dict, global_loss: float, problem: dict, *, width: float = style.COLUMN_WIDTH):
    """Loss along the path (normalised arc length), the endpoints, the refined saddle and ``L*``."""
    import matplotlib as mpl

    s = np.asarray(entry["profile"]["s"])
    loss = np.asarray(entry["profile"]["loss"])
    with mpl.rc_context(style.STYLE):
        fig = style.StyledFigure(figsize=(width, 0.7 * width), layout="constrained")
        ax = fig.subplots()
        ax.plot(s, loss, marker="o", markersize=2.5, color=style.OKABE_ITO["blue"], label="string images")
        for x, y, name in ((0.0, loss[0], f"run {entry['from']}"), (1.0, loss[-1], f"run {entry['to']}")):
            look = style.KIND_STYLE["spurious_min" if y - global_loss > 0 else "global_min"]
            ax.scatter([x], [y], color=look["color"], marker=look["marker"], s=30, zorder=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(0, -11), ha="center")
        look = style.KIND_STYLE.get(entry["saddle_kind"], style.KIND_STYLE["saddle"])
        ax.scatter(
            [entry["saddle_position"]],
            [entry["saddle_loss"]],
            color=look["color"],
            marker=look["marker"],
            s=30,
            zorder=4,
            label=f"{look['label']} (index {entry['saddle_index']}), refined",
        )
        ax.axhline(global_loss, color=style.OKABE_ITO["black"], linestyle="--", linewidth=0.8, label="$L^*$")
        ax.set_xlabel("position along the path (normalised arc length)")
        ax.set_ylabel("loss $L(H)$")
        counts = ",".join(str(c) for c in problem["counts"])
        ax.set_title(
            f"counts {counts}, d={problem['dim']}, $\\tau$={problem['tau']:g}: "
            f"barrier {entry['barrier']:.3g} / {entry['barrier_reverse']:.3g}"
        )
        # below the axes: inside them a legend covers the profile, wherever its bump lies
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3)
    return fig


def slice_figure(record: dict, slices, problem: dict, *, width: float = style.COLUMN_WIDTH):
    """1-D slices (one curve per direction, with the quadratic model of eigen-directions) or a 2-D
    contour map, relative to the point's loss; ``L*`` where it is in range."""
    import matplotlib as mpl

    base = record["loss"]
    title = f"run {record['point']} ({record['kind']}), L = {base:.6g}"
    with mpl.rc_context(style.STYLE):
        fig = style.StyledFigure(figsize=(width, 0.8 * width), layout="constrained")
        ax = fig.subplots()
        if record["surface"]:
            a, b = (np.asarray(g) for g in record["grids"])
            z = np.asarray(slices[0]) - base
            cs = ax.contourf(a, b, z.T, levels=20, cmap="viridis")
            ax.contour(a, b, z.T, levels=[0.0], colors=style.OKABE_ITO["black"], linewidths=0.6)
            ax.plot([0], [0], marker="+", color="white", markersize=8)
            fig.colorbar(cs, ax=ax, label="$L - L(H)$")
            d0, d1 = record["directions"]
            ax.set_xlabel(f"along {d0['name']}")
            ax.set_ylabel(f"along {d1['name']}" + (" (orthogonalised)" if d1["orthogonalised"] else ""))
        else:
            for k, (info, grid, values) in enumerate(
                zip(record["directions"], record["grids"], slices, strict=True)
            ):
                color = style.SERIES_COLORS[k % len(style.SERIES_COLORS)]
                t = np.asarray(grid)
                label = info["name"] + (
                    f" ($\\lambda$ = {info['eigenvalue']:.3g})" if info["eigenvalue"] is not None else ""
                )
                ax.plot(t, np.asarray(values) - base, color=color, label=label)
                if info["eigenvalue"] is not None:
                    ax.plot(t, 0.5 * info["eigenvalue"] * t**2, ":", color=color, linewidth=0.8)
                if info["reach"] is not None:
                    ax.axvline(info["reach"], color=color, linestyle="--", linewidth=0.6)
            ax.axhline(0.0, color=style.OKABE_ITO["grey"], linewidth=0.5)
            ax.set_xlabel("step along the direction (Frobenius norm)")
            ax.set_ylabel("$L(R_H(t\\,u)) - L(H)$")
            ax.legend(loc="best", title="dotted: $\\frac{1}{2}\\lambda t^2$")
        counts = ",".join(str(c) for c in problem["counts"])
        ax.set_title(f"counts {counts}, d={problem['dim']}, $\\tau$={problem['tau']:g}: {title}")
    return fig


def catalogue_figure(summary: dict, *, width: float = style.COLUMN_WIDTH):
    """Loss against Morse index of every catalogue entry, one marker per kind; thin lines join each
    saddle to the minima its escape descents reach. A dashed line marks ``L*``."""
    entries = summary.get("entries", [])
    if not entries:
        raise ValueError("the catalogue has no entries to draw")
    L_star = float(summary["global_loss"])
    import matplotlib as mpl

    with mpl.rc_context(style.STYLE):
        fig = style.StyledFigure(figsize=(width, 0.75 * width), layout="constrained")
        ax = fig.subplots()
        for e in entries:
            esc = e.get("escape") or {}
            for side in ("plus", "minus"):
                end = esc.get(side)
                if end and end["kind"] != "not_converged":
                    ax.plot(
                        [e["index"], end["index"]],
                        [e["loss"], end["loss"]],
                        color=style.OKABE_ITO["grey"],
                        linewidth=0.5,
                        zorder=1,
                    )
        for kind in metrics.KINDS:
            pts = [e for e in entries if e["kind"] == kind]
            if not pts:
                continue
            look = style.KIND_STYLE[kind]
            ax.scatter(
                [e["index"] for e in pts],
                [e["loss"] for e in pts],
                color=look["color"],
                marker=look["marker"],
                s=18,
                zorder=3,
                label=f"{look['label']} ({len(pts)})",
                edgecolors="white",
                linewidths=0.3,
            )
        ax.axhline(
            L_star,
            color=style.OKABE_ITO["black"],
            linestyle="--",
            linewidth=0.8,
            label=f"$L^*$ = {L_star:.4g}",
        )
        ax.set_xlabel("Morse index (negative Hessian eigenvalues)")
        ax.set_ylabel("loss $L(H)$")
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        p = summary["problem"]
        ax.set_title(
            f"counts {','.join(str(c) for c in p['counts'])}, d={p['dim']}, $\\tau$={p['tau']:g}: "
            f"{len(entries)} critical points"
        )
        ax.legend(loc="best")
    return fig
