"""The house style of every figure: sizes, the Okabe-Ito palette, one style per kind, titles, output.

- One colour and marker per kind of point (``KIND_STYLE``), from the Okabe-Ito
  palette (distinguishable under the common colour-vision deficiencies and in
  greyscale through the markers).
- Sized for one paper column (``COLUMN_WIDTH`` = 3.4 in) with every font at 8 pt
  or more (``STYLE``); ``figure_bytes`` renders with the 300 dpi PNG / Type 42
  PDF settings and no creation date (the same figure gives the same bytes).
- ``problem_title`` states a scan's problem; ``percent`` and ``spurious_line``
  write the bound on the spurious fraction the same way everywhere.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from sclandscape.theory import metrics

#: Width of one paper column, inches.
COLUMN_WIDTH = 3.4


#: Kinds of point (``metrics.KINDS``, the one list).
KINDS = metrics.KINDS


#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "grey": "#999999",
}


#: A fixed colour, marker and legend label for each kind of point.
KIND_STYLE = {
    "global_min": {"color": OKABE_ITO["blue"], "marker": "o", "label": "global min"},
    "spurious_min": {"color": OKABE_ITO["vermillion"], "marker": "^", "label": "spurious min"},
    "local_min": {
        "color": OKABE_ITO["bluish_green"],
        "marker": "v",
        "label": "local min ($L^*$ unattainable)",
    },
    "saddle": {"color": OKABE_ITO["orange"], "marker": "s", "label": "saddle"},
    "degenerate": {"color": OKABE_ITO["reddish_purple"], "marker": "D", "label": "degenerate"},
    "not_converged": {"color": OKABE_ITO["grey"], "marker": "x", "label": "not converged"},
}


#: Colours for a family of curves (e.g. one per temperature), yellow left out (weak on white).
SERIES_COLORS = tuple(OKABE_ITO[c] for c in ("black", "sky_blue", "bluish_green", "reddish_purple", "orange"))


SERIES_MARKERS = ("o", "s", "^", "D", "v")


#: rcParams for publication figures (every font >= 8 pt, 300 dpi PNG, embedded TrueType in PDF).
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 9,
    "font.family": "sans-serif",
    "mathtext.default": "regular",
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 3,
    "ytick.major.size": 3,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "legend.frameon": False,
    "legend.handlelength": 1.4,
    "legend.borderaxespad": 0.3,
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "image.cmap": "viridis",
    "hatch.linewidth": 0.6,
}


FORMATS = ("png", "pdf", "svg")


def problem_title(counts: Sequence[int], dim: int, tau: float, runs: int | None = None) -> str:
    """One line stating the problem: ``n = 24, k = 4 (10,10,2,2), d = 2, τ = 1; 256 runs``.

    The class counts are listed when ``k <= 6``, written ``k×m`` when
    balanced, else as their range. Every figure of a scan carries this line.
    """
    counts = [int(c) for c in counts]
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"counts must be positive integers, got {counts!r}")
    k, n = len(counts), sum(counts)
    if len(set(counts)) == 1:
        shape = f"{k}\u00d7{counts[0]}"
    elif k <= 6:
        shape = ",".join(str(c) for c in counts)
    else:
        shape = f"counts {min(counts)}..{max(counts)}"
    text = f"n = {n}, k = {k} ({shape}), d = {int(dim)}, $\\tau$ = {finite_float(tau, 'tau'):g}"
    if runs is not None:
        text += f"; {int(runs)} run{'s' if int(runs) != 1 else ''}"
    return text


def percent(p: float) -> str:
    """``0.0116 -> '1.2%'``: two significant digits (integers above 10%)."""
    v = 100.0 * p
    return f"{v:.0f}%" if v >= 10 else f"{v:.2g}%"


def spurious_line(bound: Mapping) -> str:
    """``"0 spurious of 256 runs: fraction < 1.2% (95%)"`` from a summary's ``spurious_fraction``.

    ``bound`` holds ``count``, ``runs`` and ``upper_95`` (``summaries.spurious_fraction``);
    with a positive count the observed fraction is given as well.
    """
    if not isinstance(bound, Mapping) or not all(key in bound for key in ("count", "runs", "upper_95")):
        raise ValueError("bound must be a summary's spurious_fraction (count, runs, upper_95)")
    x, N, upper = int(bound["count"]), int(bound["runs"]), finite_float(bound["upper_95"], "upper_95")
    seen = f" ({percent(x / N)})" if x else ""
    return f"{x} spurious of {N} runs{seen}: fraction < {percent(upper)} (95%)"


class StyledFigure(Figure):
    """A ``Figure`` that draws under ``STYLE`` wherever it is drawn (a notebook, ``savefig``, a GUI).

    Sizes and colours are fixed when the artists are created; this makes the
    settings read at draw time (mathtext font, hatch width) the same everywhere.
    """

    def draw(self, renderer):
        with mpl.rc_context(STYLE):
            return super().draw(renderer)


def figure(width: float, height: float) -> Figure:
    """A ``StyledFigure`` of ``width`` x ``height`` inches with the constrained layout."""
    return StyledFigure(figsize=(width, height), layout="constrained")


def figure_bytes(fig: Figure, fmt: str = "png") -> bytes:
    """Render ``fig`` as ``fmt`` (``png``, ``pdf`` or ``svg``) with ``STYLE``'s output settings.

    PDF and SVG carry no creation date, so the same figure gives the same bytes.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[fmt]
    buf = io.BytesIO()
    with mpl.rc_context(STYLE):
        fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()


def finite_float(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return out


def positive(value, name: str) -> float:
    out = finite_float(value, name)
    if out <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return out


def square(M, name: str) -> np.ndarray:
    arr = np.asarray(M)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 2 or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a numeric (k, k) matrix with k >= 2, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr
