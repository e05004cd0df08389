"""Figures and a Markdown report for a finished scan folder (``sclandscape plot DIR``).

``plot_results(DIR)`` reads what ``results.run_scan`` wrote (``config.json``,
``summary.json``, ``runs.npz``, ``optimum.json``; and, once the Hessian
classification has run, the per-run ``hess_lambda_min`` and
``hessian/spectra.npz``) and writes::

    figures/gap_histogram.{png,pdf}       gap L - L* over converged runs, by kind
    figures/certificate.{png,pdf}         certificate lambda_min(S), by kind
    figures/eigenvalue_vs_gap.{png,pdf}   Hessian lambda_min vs gap   (needs hess_lambda_min)
    figures/hessian_spectrum_<kind>.*     spectrum of one point a kind (needs hessian/spectra.npz)
    figures/gram_minimum_<i>.{png,pdf}    M(H) of the i-th distinct minimum beside M*
    report.md                             configuration, counts, distinct minima, figure links

Every file is rendered to bytes first and written atomically
(``results.write_atomic``), so an interrupted call leaves only complete files.
A figure that cannot be drawn from the folder (e.g. no Hessian data yet) is
listed in ``report.md`` with the reason, never an error.

The Gram figures need the embedding ``H`` of one run per distinct minimum:
taken from ``runs.npz`` when the scan saved embeddings, otherwise recomputed
from the seed (a run depends only on ``fold_in(key, run)``; the recomputed
loss is checked against the recorded one before it is drawn).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from sclandscape import metrics, plots, problems, results
from sclandscape import progress as progress_lib

MINIMA = ("global_min", "spurious_min", "degenerate")

#: One line per figure for ``report.md``.
CAPTIONS = {
    "gap_histogram": "Gap to the global optimum over converged runs, by kind.",
    "certificate": "Certificate of global optimality: how far S is from PSD, by kind.",
    "eigenvalue_vs_gap": "Smallest Hessian eigenvalue (symmetry modes removed) against the gap: "
    "local minima above zero, saddles below; a local minimum at a positive gap is spurious.",
    "hessian_spectrum": "Riemannian Hessian spectrum of one point; symmetry zero modes circled.",
    "gram_minimum": "Class-mean Gram of a found minimum beside the optimum's M*.",
}


def _check_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    if not formats or any(f not in plots.FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise ValueError(f"formats must be distinct values from {plots.FORMATS}, got {formats!r}")
    return formats


def _representatives(runs: dict, summary: dict, limit: int) -> list[tuple[int, dict]]:
    """``(row, minimum)`` for the first ``limit`` distinct minima: the lowest-index run nearest its loss."""
    kind = np.asarray(runs["kind"]).astype(str)
    rows = np.flatnonzero(np.isin(kind, MINIMA))
    tol = float(summary.get("grouping_tolerance", 0.0))
    out = []
    for m in summary["distinct_minima"][:limit]:
        if not rows.size:
            break
        dist = np.abs(runs["loss"][rows] - m["loss"])
        near = rows[dist <= max(tol, float(dist.min()))]
        out.append((int(near[0]), m))
    return out


def _hessian_spectra(out: str, runs: dict) -> tuple[list[tuple[str, dict]], list[str]]:
    """One spectrum per kind (the lowest-loss point of that kind) from ``hessian/spectra.npz``."""
    path = os.path.join(out, "hessian", "spectra.npz")
    if not os.path.exists(path):
        return [], ["hessian_spectrum: no hessian/spectra.npz (the Hessian classification has not run)"]
    data = results.read_npz(path)
    needed = ("runs", "eigenvalues", "n_zero_predicted", "kind")
    if any(k not in data for k in needed):
        return [], [f"hessian_spectrum: hessian/spectra.npz lacks one of {needed}"]
    eigs = np.asarray(data["eigenvalues"])
    r = np.asarray(data["runs"])
    if eigs.ndim != 2 or eigs.shape[0] != r.size or r.size == 0:
        return [], [
            f"hessian_spectrum: hessian/spectra.npz eigenvalues {eigs.shape} do not match runs {r.shape}"
        ]
    kinds = np.asarray(data["kind"]).astype(str)
    loss_of = dict(zip(np.asarray(runs["run"]).tolist(), np.asarray(runs["loss"]).tolist(), strict=True))
    loss = np.array([loss_of.get(int(i), np.inf) for i in r])
    items = []
    for kind in metrics.KINDS:
        sel = np.flatnonzero(kinds == kind)
        if sel.size:
            j = sel[np.argmin(loss[sel])]
            items.append(
                (
                    kind,
                    {
                        "run": int(r[j]),
                        "eigenvalues": eigs[j],
                        "n_zero_predicted": int(data["n_zero_predicted"][j]),
                    },
                )
            )
    return items, []


def _figures(out: str, scan_data: dict, recompute: bool, max_minima: int):
    """``[(name, builder, caption)]`` and ``[skipped reason]``; builders return a Figure."""
    runs, summary, problem = scan_data["runs"], scan_data["summary"], scan_data["problem"]
    settings = scan_data["settings"]
    L = float(summary["global_loss"])
    scale = max(1.0, abs(L))
    figures, skipped = [], []
    figures.append(
        (
            "gap_histogram",
            lambda: plots.gap_histogram(runs, L, tolerance=settings.gap_rtol * scale),
            CAPTIONS["gap_histogram"],
        )
    )
    figures.append(
        (
            "certificate",
            lambda: plots.certificate_distribution(runs, tol=settings.cert_rtol * scale / problem.n),
            CAPTIONS["certificate"] + " The dashed line is where the gap bound n max(0, -lambda_min(S)) "
            f"reaches the tolerance {settings.cert_rtol:g} max(1, |L*|).",
        )
    )
    lam = runs.get("hess_lambda_min")
    if lam is None:
        skipped.append(
            "eigenvalue_vs_gap: runs.npz has no hess_lambda_min (the Hessian classification has not run)"
        )
    elif not np.any(np.isfinite(np.asarray(lam, np.float64))):
        skipped.append("eigenvalue_vs_gap: hess_lambda_min is NaN for every run (not computed)")
    else:
        figures.append(
            ("eigenvalue_vs_gap", lambda: plots.eigenvalue_vs_gap(runs, L), CAPTIONS["eigenvalue_vs_gap"])
        )
    spectra, notes = _hessian_spectra(out, runs)
    skipped += notes
    for kind, item in spectra:
        figures.append(
            (
                f"hessian_spectrum_{kind}",
                lambda item=item, kind=kind: plots.hessian_spectrum(
                    item["eigenvalues"],
                    item["n_zero_predicted"],
                    kind=kind,
                    title=f"run {item['run']} ({plots.KIND_STYLE[kind]['label']})",
                ),
                CAPTIONS["hessian_spectrum"] + f" Run {item['run']}, the lowest-loss {kind}.",
            )
        )
    reps = _representatives(runs, summary, max_minima)
    if not reps:
        skipped.append("gram_minimum: no converged minimum")
    elif "H" not in runs and not recompute:
        skipped.append("gram_minimum: the scan saved no embeddings (--save-embeddings) and recompute is off")
    else:
        H_of, notes = results.embeddings(scan_data, [row for row, _ in reps])
        skipped += [f"gram_minimum: {note}" for note in notes]
        labels = problem.labels
        for i, (row, m) in enumerate(reps, start=1):
            if row not in H_of:
                continue
            M = np.asarray(metrics.class_mean_gram(H_of[row], np.eye(problem.k)[labels]), np.float64)
            status = "certified global" if m["certified_global"] else "spurious"
            run = int(runs["run"][row])
            figures.append(
                (
                    f"gram_minimum_{i}",
                    lambda M=M, run=run, m=m, status=status, i=i: plots.gram_heatmaps(
                        M,
                        scan_data["class_gram"],
                        titles=(f"run {run}", "$M^*$"),
                        title=f"minimum {i}: gap {m['gap']:.2g}, {status}",
                    ),
                    CAPTIONS["gram_minimum"]
                    + f" Minimum {i} (L = {m['loss']:.6f}, {m['count']} runs, {status}), run {run}"
                    + (" (embedding recomputed from the seed)." if "H" not in runs else "."),
                )
            )
    return figures, skipped


def plot_results(
    out: str, formats=("png", "pdf"), *, recompute: bool = True, max_minima: int = 3, progress=None
) -> list[str]:
    """Draw the figures of the finished scan in ``out`` into ``out/figures/`` and write ``out/report.md``.

    Args:
      out: a folder written by ``results.run_scan`` (or ``sclandscape scan``).
      formats: file formats, from ``plots.FORMATS``.
      recompute: when the scan saved no embeddings, recompute one run per
        distinct minimum from the seed for the Gram figures (a few seconds);
        ``False`` skips those figures.
      max_minima: Gram figures for at most this many distinct minima (lowest loss first).
      progress: ``progress(done, total, phase, detail)`` (``sclandscape.progress``):
        phases ``loading`` (and recomputing embeddings), ``drawing``, ``writing``.

    Returns the written paths (figures, then ``report.md``). Raises
    ``ResultsError`` (a ``ValueError``) with a one-line message when ``out`` is
    not a finished scan, ``ValueError`` for bad arguments.
    """
    formats = _check_formats(formats)
    if isinstance(max_minima, bool) or not isinstance(max_minima, int) or max_minima < 0:
        raise ValueError(f"max_minima must be an integer >= 0, got {max_minima!r}")
    progress = progress_lib.adapt(progress) or (lambda *a: None)
    progress(None, None, "loading", "and recomputing embeddings where needed")
    scan_data = results.load_scan(out)
    figures, skipped = _figures(out, scan_data, recompute, max_minima)
    written, drawn = [], []
    for done, (name, build, caption) in enumerate(figures):
        progress(done, len(figures), "drawing", name)
        try:
            fig = build()
        except ValueError as err:  # the data cannot make this figure (e.g. no converged run)
            skipped.append(f"{name}: {err}")
            continue
        files = []
        for fmt in formats:
            path = os.path.join(out, "figures", f"{name}.{fmt}")
            results.write_atomic(path, plots.figure_bytes(fig, fmt))
            written.append(path)
            files.append(f"figures/{name}.{fmt}")
        drawn.append((name, caption, files))
    progress(len(figures), len(figures), "writing", "report.md")
    report = os.path.join(out, "report.md")
    results.write_atomic(report, markdown_report(scan_data, drawn, skipped).encode())
    written.append(report)
    return written


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def verdict(summary: dict, problem: problems.Problem) -> str:
    """One sentence: did every minimum found reach the global optimum, and is that expected?"""
    counts = summary["counts"]
    n = summary["n_inits"]
    minima = counts.get("global_min", 0) + counts.get("spurious_min", 0)
    rank = summary.get("global_rank")
    if rank is not None and problem.dim < rank:
        expect = (
            f"d = {problem.dim} < rank(M*) = {rank}: the relaxation's L* is not attainable, so no point can "
            "be certified and the lowest minimum found may be the best configuration in dimension d"
        )
    elif problem.dim >= problem.k - 1:
        expect = f"d = {problem.dim} >= k - 1 = {problem.k - 1}: theory says every local minimum is global"
    else:
        expect = f"d = {problem.dim} < k - 1 = {problem.k - 1}: spurious minima may exist"
    if not minima:
        found = f"no run of {n} converged to a minimum"
    elif counts.get("spurious_min", 0) == 0:
        found = f"every minimum found ({minima} of {n} runs) is certified global"
    else:
        found = (
            f"{counts.get('spurious_min', 0)} of {minima} minima found are not certified global "
            f"({counts.get('global_min', 0)} certified)"
        )
    return f"{found}; {expect}."


def markdown_report(scan_data: dict, drawn: list, skipped: list[str]) -> str:
    """The text of ``report.md`` (figure paths relative to the folder)."""
    config, summary, problem = scan_data["config"], scan_data["summary"], scan_data["problem"]
    settings = scan_data["settings"]
    counts = ", ".join(str(c) for c in problem.counts)
    lines = [
        f"# Landscape scan: counts {counts}, d = {problem.dim}, tau = {problem.tau:g}",
        "",
        verdict(summary, problem)[0].upper() + verdict(summary, problem)[1:],
        "",
        "## Configuration",
        "",
    ]
    rank = summary.get("global_rank")
    lines += _table(
        ["", ""],
        [
            ["class counts", f"{counts} (n = {problem.n}, k = {problem.k})"],
            ["embedding dimension d", f"{problem.dim} (k - 1 = {problem.k - 1})"],
            ["temperature tau", f"{problem.tau:g}"],
            ["runs", f"{config['n_inits']} (seed {config['seed']})"],
            ["global optimum L*", f"{summary['global_loss']:.9f}" + (f" (rank M* = {rank})" if rank else "")],
            [
                "best loss found",
                f"{summary['best_loss']:.9f}" if summary.get("best_loss") is not None else "-",
            ],
            [
                "settings",
                ", ".join(
                    f"{k}={v}"
                    for k, v in dataclasses.asdict(settings).items()
                    if k in ("tol", "max_steps", "polish", "x64", "cert_rtol", "gap_rtol", "group_rtol")
                ),
            ],
            ["classification", summary.get("classification", "certificate")],
        ],
    )
    n = max(1, int(summary["n_inits"]))
    lines += ["", "## Runs per kind", ""]
    lines += _table(
        ["kind", "runs", "fraction"],
        [[k, summary["counts"].get(k, 0), f"{summary['counts'].get(k, 0) / n:.3f}"] for k in metrics.KINDS],
    )
    status = summary.get("status_counts")
    if status:
        lines += ["", "Optimiser status: " + ", ".join(f"{k} {v}" for k, v in status.items()) + "."]
    lines += ["", "## Distinct minima", ""]
    if summary["distinct_minima"]:
        lines += _table(
            ["#", "loss L", "gap L - L*", "runs", "certified global"],
            [
                [
                    i,
                    f"{m['loss']:.9f}",
                    f"{m['gap']:.3e}",
                    m["count"],
                    "yes" if m["certified_global"] else f"no ({m.get('n_certified', 0)} of {m['count']})",
                ]
                for i, m in enumerate(summary["distinct_minima"], start=1)
            ],
        )
        tol = summary.get("grouping_tolerance")
        if tol is not None:
            lines += ["", f"Minima whose losses differ by at most {tol:.2e} are grouped as one."]
    else:
        lines += ["No converged minimum."]
    lines += ["", "## Figures", ""]
    for name, caption, files in drawn:
        show = next((f for f in files if f.endswith(".png")), None)
        if show:
            lines += [f"![{name}]({show})", ""]
        lines += [f"{caption} Files: " + ", ".join(f"[{os.path.basename(f)}]({f})" for f in files), ""]
    if skipped:
        lines += ["## Not drawn", ""] + [f"- {s}" for s in skipped] + [""]
    return "\n".join(lines).rstrip() + "\n"
