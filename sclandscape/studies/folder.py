"""The template of a folder study: read a finished scan, check, take its points, compute, write, draw.

Every study of a finished scan folder (``hessian``, ``path``, ``slice``, the
trace and density) has the same shape; these are its steps, so that each
study module holds only what it computes:

1. ``open_scan``: the folder loaded and checked (``folders.reading.load_scan``),
   its problem on ``OB(n, d)`` with ``d >= 2`` (a tangent space), the figure
   formats checked;
2. ``rows_of``: the rows of the runs asked for (one line naming the bad ones);
3. ``embeddings_of``: their embeddings, saved or stored at scan time;
4. the study's computation;
5. ``write_figure`` (each format, atomically) and the study's arrays and JSON
   (``folders.atomic``), the JSON last: a record implies its files.
"""

from __future__ import annotations

import os

import numpy as np

from sclandscape.core import progress as progress_lib
from sclandscape.drawing import style
from sclandscape.folders import atomic, reading


def check_formats(formats) -> tuple[str, ...]:
    """``formats`` as a tuple of figure formats (``style.FORMATS``); ``ValueError`` otherwise."""
    formats = tuple(formats)
    if any(f not in style.FORMATS for f in formats):
        raise ValueError(f"formats must be values from {style.FORMATS}, got {formats!r}")
    return formats


def open_scan(out: str, why: str) -> dict:
    """The finished scan ``out`` (``reading.load_scan``), refused when ``d < 2`` (``why``: the message)."""
    data = reading.load_scan(out)
    if data["problem"].dim < 2:
        raise ValueError(why)
    return data


def reporter(progress):
    """``progress`` as ``(done, total, phase, detail)`` (``progress.adapt``), or a call that does nothing."""
    return progress_lib.adapt(progress) or (lambda *a: None)


def rows_of(data: dict, run_indices) -> list[int]:
    """The rows of ``runs.npz`` holding the runs ``run_indices`` (duplicates dropped, order kept)."""
    index_of = {int(i): r for r, i in enumerate(np.asarray(data["runs"]["run"]))}
    run_indices = [int(i) for i in run_indices]
    bad = [i for i in run_indices if i not in index_of]
    if not run_indices or bad:
        raise ValueError(f"runs must be indices of this scan (0..{len(index_of) - 1}), got {bad or '[]'}")
    return [index_of[i] for i in dict.fromkeys(run_indices)]


def embeddings_of(data: dict, rows, out: str, report, total: int) -> dict:
    """``{row: H}`` for ``rows``: the runs' saved embeddings, or their points' (``reading.embeddings``)."""
    report(0, total, "embeddings", "saved" if "H" in data["runs"] else "stored points")
    found, notes = reading.embeddings(data, rows)
    if notes:
        raise ValueError(f"{out}: {notes[0]}")
    return found


def write_figure(out: str, stem: str, fig, formats) -> list[str]:
    """``fig`` as ``out/figures/<stem>.<fmt>`` for each format, atomically; the paths relative to ``out``."""
    written = []
    for fmt in formats:
        rel = f"figures/{stem}.{fmt}"
        atomic.write_atomic(os.path.join(out, rel), style.figure_bytes(fig, fmt))
        written.append(rel)
    return written
