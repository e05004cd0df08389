"""Figures and a Markdown report for a finished scan folder (``sclandscape plot DIR``).

``plot_results(DIR)`` reads what ``scan_study.run_scan`` wrote (``config.json``,
``summary.json``, ``runs.npz``, ``optimum.json``; and, once
``sclandscape hessian DIR`` has run, ``hessian/spectra.npz``) and writes::

    figures/gap_histogram.{png,pdf}       gap L - L* over converged runs, by kind, with the
                                          upper bound on the spurious fraction
    figures/certificate.{png,pdf}         certificate lambda_min(S), by kind
    figures/eigenvalue_vs_gap.{png,pdf}   Hessian lambda_min vs gap   (runs with hess_lambda_min)
    figures/hessian_spectrum_<kind>.*     spectrum of one point a kind (needs hessian/spectra.npz)
    figures/gram_minimum_<p>.{png,pdf}    M(H) of the minimum with point index p beside M*
    report.md                             configuration, counts, distinct minima, figure links

Every figure states the problem (``n, k, d, tau`` and the number of runs,
``style.problem_title``). Every statement of ``report.md`` is read from
``summary.json`` and ``runs.npz`` (counts, bounds, the classification
note), ``config.json`` (problem, settings, provenance) or the figures drawn,
so the report cannot contradict the summary. Figure files of the names
above that the new report does not link (e.g. the PDFs after replotting
with ``--formats png``) are removed; nothing else in the folder is touched.

Every file is rendered to bytes first and written atomically
(``atomic.write_atomic``), so an interrupted call leaves only complete files.
A figure that cannot be drawn from the folder (e.g. no full spectra yet) is
listed in ``report.md`` with the reason, never an error.

The Gram figures use the embeddings of the distinct minima the scan stored
(``points.npz``); nothing is re-optimised.

``write_comparison(dirs, out)`` draws the demo's side-by-side figure
(``plots.comparison``) of finished scans.
"""

from __future__ import annotations

import os
import re

import numpy as np

from sclandscape.core import problems
from sclandscape.core import progress as progress_lib
from sclandscape.drawing import plots, style
from sclandscape.folders import atomic, reading, summaries
from sclandscape.theory import metrics

MINIMA = summaries.MINIMA

#: The figure names ``plot_results`` writes (``hessian_spectrum_<kind>``, ``gram_minimum_<i>``), and
#: so the only files of ``figures/`` it may remove as stale.
FIGURE_FILE = re.compile(
    r"(gap_histogram|certificate|eigenvalue_vs_gap|hessian_spectrum_(?:"
    + "|".join(metrics.KINDS)
    + r")|gram_minimum_[0-9]+)\.(?:"
    + "|".join(style.FORMATS)
    + r")"
)

#: One line per figure for ``report.md``.
CAPTIONS = {
    "gap_histogram": "Gap to the global optimum over converged runs, by kind; each bar carries its count.",
    "certificate": "Certificate of global optimality: how far S is from PSD, by kind.",
    "eigenvalue_vs_gap": "Smallest Hessian eigenvalue (symmetry modes removed) against the gap: "
    "local minima above zero, saddles below. Runs of one kind that coincide at this scale are one "
    "marker, its area growing with their number, the number written beside it.",
    "hessian_spectrum": "Riemannian Hessian spectrum of one point; symmetry zero modes circled.",
    "gram_minimum": "Class-mean Gram of a found minimum beside the optimum's M*.",
}


def _check_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    if not formats or any(f not in style.FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise ValueError(f"formats must be distinct values from {style.FORMATS}, got {formats!r}")
    return formats


def _unattainable(summary: dict, problem: problems.Problem) -> bool:
    """``d < rank M*``: the relaxation's ``L*`` cannot be reached, so no minimum is "spurious"."""
    rank = summary.get("global_rank")
    return rank is not None and problem.dim < rank


def _title(scan_data: dict) -> str:
    problem, summary = scan_data["problem"], scan_data["summary"]
    return style.problem_title(problem.counts, problem.dim, problem.tau, summary["n_inits"])


def spurious_fraction(summary: dict) -> dict:
    """The summary's ``spurious_fraction``, or (an older summary) the same from its counts."""
    bound = summary.get("spurious_fraction")
    if bound is None:
        bound = summaries.spurious_fraction(summary["counts"].get("spurious_min", 0), summary["n_inits"])
    return bound


def _spurious_note(summary: dict, problem: problems.Problem) -> str:
    """The gap histogram's second title line: the bound, or why there is none."""
    if _unattainable(summary, problem):
        rank = summary["global_rank"]
        return f"$L^*$ unattainable (d < rank $M^*$ = {rank}): no minimum is spurious"
    return style.spurious_line(spurious_fraction(summary))


def _minimum_status(m: dict) -> str:
    """How ``report.md`` and the Gram figures name a distinct minimum (from its kinds in the summary)."""
    if m["certified_global"]:
        return "certified global"
    proven = ", proven strict" if m.get("strict_certified") else ""
    kinds = m.get("kinds", {})
    if kinds and set(kinds) == {"local_min"}:
        return f"local minimum ($L^*$ unattainable{proven})"
    if kinds and set(kinds) == {"degenerate"}:
        return "degenerate (not isolated modulo rotations)"
    return f"spurious{proven}"


def _hessian_spectra(out: str, runs: dict) -> tuple[list[tuple[str, dict]], list[str]]:
    """One spectrum per kind (the lowest-loss point of that kind) from ``hessian/spectra.npz``.

    The kind of each point is its kind in ``runs.npz`` (the scan's verdict, as
    in the summary); where ``hessian/spectra.npz``'s own classification
    differs, the item says so.
    """
    path = os.path.join(out, "hessian", "spectra.npz")
    if not os.path.exists(path):
        return [], [
            "hessian_spectrum: no hessian/spectra.npz (full spectra of chosen runs are written by "
            "`sclandscape hessian DIR`; the scan's own classification is summarised above)"
        ]
    data = atomic.read_npz(path)
    needed = ("runs", "eigenvalues", "n_zero_predicted")
    if any(k not in data for k in needed):
        return [], [f"hessian_spectrum: hessian/spectra.npz lacks one of {needed}"]
    eigs = np.asarray(data["eigenvalues"])
    r = np.asarray(data["runs"])
    if eigs.ndim != 2 or eigs.shape[0] != r.size or r.size == 0:
        return [], [
            f"hessian_spectrum: hessian/spectra.npz eigenvalues {eigs.shape} do not match runs {r.shape}"
        ]
    row_of = {int(i): j for j, i in enumerate(np.asarray(runs["run"]).tolist())}
    # An entry of a distinct point (run -1, ``hessian DIR``'s default) stands for the point's
    # lowest-loss member run, the run the report names for that point everywhere else.
    p = np.asarray(data["points"]) if "points" in data else np.full(r.size, -1)
    point = np.asarray(runs.get("point", np.full(len(row_of), -1)))
    loss_all = np.asarray(runs["loss"])
    rows, named = [], []
    for i, q in zip(r.tolist(), p.tolist(), strict=True):
        if int(i) >= 0:
            if int(i) not in row_of:
                return [], [
                    f"hessian_spectrum: hessian/spectra.npz holds run {int(i)}, which runs.npz does not"
                ]
            rows.append(row_of[int(i)])
        else:
            members = np.flatnonzero(point == int(q)) if int(q) >= 0 else np.array([], np.int64)
            if not members.size:
                return [], [
                    f"hessian_spectrum: hessian/spectra.npz holds point {int(q)}, which no run of runs.npz "
                    "ends at (rerun `sclandscape hessian DIR`)"
                ]
            rows.append(int(members[np.argmin(loss_all[members])]))
        named.append(int(runs["run"][rows[-1]]))
    rows = np.array(rows, np.int64)
    r = np.array(named, np.int64)
    kinds = np.asarray(runs["kind"]).astype(str)[rows]
    own = np.asarray(data["kind"]).astype(str) if "kind" in data else kinds
    loss = np.asarray(runs["loss"])[rows]
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
                        "own_kind": str(own[j]),
                    },
                )
            )
    return items, []


def _gap_tolerance(runs: dict, scan_data: dict) -> float:
    """The largest gap tolerance of a converged run, as the scan recorded it (``gap_tol``).

    Folders written before runs carried ``gap_tol`` get ``metrics.gap_tolerance`` of their records.
    """
    converged = np.asarray(runs["kind"]) != "not_converged"
    if "gap_tol" in runs:
        tol = np.asarray(runs["gap_tol"], np.float64)
    elif "loss_rounding" in runs:
        error = float(scan_data.get("optimum", {}).get("loss_error", 0.0))
        tol = metrics.gap_tolerance(runs["loss_rounding"], error, scan_data["problem"].n, runs["grad_norm"])
    else:
        return float("nan")
    tol = np.asarray(tol, np.float64)[converged]
    tol = tol[np.isfinite(tol)]
    return float(np.max(tol)) if tol.size else float("nan")


def _figures(out: str, scan_data: dict, max_minima: int):
    """``[(name, builder, caption)]`` and ``[skipped reason]``; builders return a Figure."""
    runs, summary, problem = scan_data["runs"], scan_data["summary"], scan_data["problem"]
    L = float(summary["global_loss"])
    gap_tol = _gap_tolerance(runs, scan_data)
    title = _title(scan_data)
    unattainable = _unattainable(summary, problem)
    figures, skipped = [], []
    figures.append(
        (
            "gap_histogram",
            lambda: plots.gap_histogram(
                runs, L, tolerance=gap_tol, title=_lines(title, _spurious_note(summary, problem))
            ),
            CAPTIONS["gap_histogram"]
            + f" The dashed line is the largest gap tolerance of a converged run, {gap_tol:.2g}: what "
            "float64 resolves in the loss and in L*, plus what the residual gradient accounts for. "
            + (
                "Above the axes: d < rank M*, so L* is not attainable and no minimum is spurious."
                if unattainable
                else "Above the axes: the runs ending at a spurious minimum and the exact one-sided 95% "
                "upper bound on their fraction (summary.json, spurious_fraction)."
            ),
        )
    )
    cert_tol = gap_tol / problem.n
    cert_floor = 1e-12  # plots.certificate_distribution's default floor
    figures.append(
        (
            "certificate",
            lambda: plots.certificate_distribution(runs, tol=cert_tol, floor=cert_floor, title=title),
            CAPTIONS["certificate"]
            + (
                " The dashed line is where the gap bound n max(0, -lambda_min(S)) reaches the largest "
                f"gap tolerance of a converged run ({gap_tol:.2g})."
                if cert_tol > cert_floor
                else f" The pass threshold {cert_tol:.2g} lies at or below the floor {cert_floor:g}."
            ),
        )
    )
    lam = runs.get("hess_lambda_min")
    n_spectra = int(np.sum(np.asarray(runs.get("hess_index", np.array([], np.int64))) >= 0))
    if lam is None:
        skipped.append("eigenvalue_vs_gap: runs.npz has no hess_lambda_min (a scan without Hessian records)")
    elif not np.any(np.isfinite(np.asarray(lam, np.float64))):
        skipped.append(
            f"eigenvalue_vs_gap: hess_lambda_min is NaN for every run ({n_spectra} runs with a spectrum)"
        )
    else:
        have = int(np.sum(np.isfinite(np.asarray(lam, np.float64))))
        figures.append(
            (
                "eigenvalue_vs_gap",
                lambda: plots.eigenvalue_vs_gap(runs, L, title=title),
                CAPTIONS["eigenvalue_vs_gap"]
                + f" {have} of {summary['n_inits']} runs have an eigenvalue (their distinct point's)."
                + (
                    " At d < rank M* a local minimum above L* is not spurious (L* is not attainable)."
                    if unattainable
                    else " A local minimum at a positive gap is spurious."
                ),
            )
        )
    spectra, notes = _hessian_spectra(out, runs)
    skipped += notes
    for kind, item in spectra:
        label = style.KIND_STYLE[kind]["label"]
        differs = item["own_kind"] != kind
        figures.append(
            (
                f"hessian_spectrum_{kind}",
                lambda item=item, kind=kind, label=label: plots.hessian_spectrum(
                    item["eigenvalues"],
                    item["n_zero_predicted"],
                    kind=kind,
                    title=_lines(title, f"run {item['run']} ({label})"),
                ),
                CAPTIONS["hessian_spectrum"]
                + f" Run {item['run']}, the lowest-loss {kind} among the runs of hessian/spectra.npz"
                + (f" (whose own dense classification says {item['own_kind']})." if differs else "."),
            )
        )
    reps = [(p, row, m) for p, row, m in reading.minimum_rows(scan_data) if p is not None][:max_minima]
    if not reps:
        skipped.append("gram_minimum: no converged minimum")
    else:
        H_of, notes = reading.embeddings(scan_data, [row for _, row, _ in reps])
        skipped += [f"gram_minimum: {note}" for note in notes]
        labels = problem.labels
        for i, row, m in reps:  # i: the minimum's point index (points.npz, summary, slice, path)
            if row not in H_of:
                continue
            M = np.asarray(metrics.class_mean_gram(H_of[row], np.eye(problem.k)[labels]), np.float64)
            status = _minimum_status(m)
            run = int(runs["run"][row])
            figures.append(
                (
                    f"gram_minimum_{i}",
                    lambda M=M, run=run, m=m, status=status, i=i: plots.gram_heatmaps(
                        M,
                        scan_data["class_gram"],
                        titles=(f"run {run}", "$M^*$"),
                        title=_lines(title, f"minimum {i}: gap {m['gap']:.2g}, {status}"),
                    ),
                    CAPTIONS["gram_minimum"]
                    + f" Minimum {i} (L = {m['loss']:.6f}, {m['count']} runs, {_plain(status)}), run {run}.",
                )
            )
    return figures, skipped


def _lines(*lines) -> str:
    """Title lines of a figure, one per line (empty ones left out)."""
    return "\n".join(str(line) for line in lines if line)


def _plain(text: str) -> str:
    """Mathtext of a figure label as plain Markdown text (``$L^*$`` -> ``L*``)."""
    return text.replace("$L^*$", "L*").replace("$M^*$", "M*").replace("$", "")


def remove_stale_figures(out: str, keep) -> list[str]:
    """Remove ``out/figures/`` files named by ``FIGURE_FILE`` that are not in ``keep``; returns them.

    ``keep``: file names (``gap_histogram.png``) the new report links. Only
    names this module writes are candidates (``FIGURE_FILE``): files of any
    other name, subfolders and links are never touched.
    """
    folder = os.path.join(out, "figures")
    if not os.path.isdir(folder):
        return []
    keep = set(keep)
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if (
            FIGURE_FILE.fullmatch(name)
            and name not in keep
            and os.path.isfile(path)
            and not os.path.islink(path)
        ):
            os.remove(path)
            removed.append(path)
    return removed


def plot_results(out: str, formats=("png", "pdf"), *, max_minima: int = 3, progress=None) -> list[str]:
    """Draw the figures of the finished scan in ``out`` into ``out/figures/`` and write ``out/report.md``.

    Args:
      out: a folder written by ``scan_study.run_scan`` (or ``sclandscape scan``).
      formats: file formats, from ``style.FORMATS``.
      max_minima: Gram figures for at most this many distinct minima (lowest loss first).
      progress: ``progress(done, total, phase, detail)`` (``sclandscape.core.progress``):
        phases ``loading`` (and recomputing embeddings), ``drawing``, ``writing``.

    Returns the written paths (figures, then ``report.md``). Figure files of
    an earlier call that the new report does not link are removed
    (``remove_stale_figures``), after the report is written. Raises
    ``ResultsError`` (a ``ValueError``) with a one-line message when ``out`` is
    not a finished scan, ``ValueError`` for bad arguments.
    """
    formats = _check_formats(formats)
    if isinstance(max_minima, bool) or not isinstance(max_minima, int) or max_minima < 0:
        raise ValueError(f"max_minima must be an integer >= 0, got {max_minima!r}")
    progress = progress_lib.adapt(progress) or (lambda *a: None)
    progress(None, None, "loading", out)
    scan_data = reading.load_scan(out)
    figures, skipped = _figures(out, scan_data, max_minima)
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
            atomic.write_atomic(path, style.figure_bytes(fig, fmt))
            written.append(path)
            files.append(f"figures/{name}.{fmt}")
        drawn.append((name, caption, files))
    progress(len(figures), len(figures), "writing", "report.md")
    report = os.path.join(out, "report.md")
    atomic.write_atomic(report, markdown_report(scan_data, drawn, skipped).encode())
    written.append(report)
    remove_stale_figures(out, {os.path.basename(p) for p in written[:-1]})
    return written


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def verdict(summary: dict, problem: problems.Problem) -> str:
    """One sentence from the summary: did every minimum found reach the global optimum; is that expected?"""
    counts = summary["counts"]
    n = summary["n_inits"]
    local = counts.get("local_min", 0)
    spurious = counts.get("spurious_min", 0)
    minima = counts.get("global_min", 0) + spurious + local
    rank = summary.get("global_rank")
    if _unattainable(summary, problem):
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
    elif _unattainable(summary, problem):
        found = (
            f"{spurious + local} of {minima} minima found lie above L* and are not certified "
            f"({counts.get('global_min', 0)} reach L*)"
        )
    elif spurious == 0 and local == 0:
        found = f"every minimum found ({minima} of {n} runs) is certified global"
    else:
        parts = [f"{spurious} spurious"] if spurious else []
        parts += [f"{local} local (L* unattainable)"] if local else []
        found = (
            f"{' and '.join(parts)} of {minima} minima found are not certified global "
            f"({counts.get('global_min', 0)} certified)"
        )
    return f"{found}; {expect}."


def _provenance_rows(config: dict) -> list[list[str]]:
    """Rows of the configuration table from ``config.json``'s provenance and timing (when recorded)."""
    prov, timing = config.get("provenance"), config.get("timing") or {}
    if not prov:
        return [["provenance", "not recorded (a scan written before provenance was kept)"]]
    dev = prov.get("devices", {})
    ex = prov.get("execution", {})
    rows = [
        [
            "software",
            f"sclandscape {prov.get('sclandscape')}, JAX {prov.get('jax')} (jaxlib {prov.get('jaxlib')}), "
            f"NumPy {prov.get('numpy')}, Python {prov.get('python')}",
        ],
        [
            "devices",
            f"{dev.get('count')} x {dev.get('platform')} ({dev.get('kind')}), "
            f"{dev.get('processes')} process(es); float64 work on {dev.get('float64_platform')}",
        ],
        [
            "execution",
            ("streaming" if ex.get("streaming") else "dense")
            + f" (mode {ex.get('streaming_mode')!r}), first-order phase {ex.get('first_order_dtype')} "
            f"with {ex.get('first_order_kernel')} kernels, polish with {ex.get('polish_kernel')}, "
            f"certificate by {ex.get('certificate')}, {ex.get('slots')} slots",
        ],
    ]
    wall = timing.get("wall_s")
    when = f"started {timing.get('started')}" + (f", {wall:.1f} s wall time" if wall is not None else "")
    computed = timing.get("runs_computed")
    if computed is not None:
        when += f", {computed} runs computed in this session"
    earlier = len(config.get("earlier_sessions", []))
    if earlier:
        when += f" (after {earlier} earlier session{'s' if earlier > 1 else ''})"
    rows.append(["last session", when])
    return rows


def _spurious_lines(summary: dict, problem: problems.Problem) -> list[str]:
    bound = spurious_fraction(summary)
    if _unattainable(summary, problem):
        return [
            f"At d = {problem.dim} < rank M* = {summary['global_rank']} the relaxation's L* is not "
            "attainable: a local minimum above it is not spurious, and no bound on spurious minima is given."
        ]
    x, N = bound["count"], bound["runs"]
    where = "summary.json" if "spurious_fraction" in summary else "computed from the summary's counts"
    upper = bound["upper_95"]
    return [
        f"Spurious minima: {x} of {N} runs ({bound['observed']:.3g}) end at a spurious minimum. Exact "
        f"one-sided 95% upper bound (Clopper-Pearson) on the fraction of random initialisations that do: "
        f"{upper:.3g} ({100 * upper:.2g}%); with none seen it is 1 - 0.05^(1/N), about 3/N (the rule of "
        f"three). Source: {where}, spurious_fraction."
    ]


def markdown_report(scan_data: dict, drawn: list, skipped: list[str]) -> str:
    """The text of ``report.md`` (figure paths relative to the folder)."""
    config, summary, problem = scan_data["config"], scan_data["summary"], scan_data["problem"]
    settings = scan_data["settings"]
    counts = ", ".join(str(c) for c in problem.counts)
    sentence = verdict(summary, problem)
    lines = [
        f"# Landscape scan: counts {counts}, d = {problem.dim}, tau = {problem.tau:g}",
        "",
        sentence[0].upper() + sentence[1:],
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
            ["runs", f"{summary['n_inits']} (seed {config['seed']})"],
            ["global optimum L*", f"{summary['global_loss']:.9f}" + (f" (rank M* = {rank})" if rank else "")],
            [
                "best loss found",
                f"{summary['best_loss']:.9f}" if summary.get("best_loss") is not None else "-",
            ],
            [
                "settings",
                ", ".join(
                    f"{k}={v}"
                    for group in settings.to_json().values()
                    for k, v in group.items()
                    if k in ("tol", "max_steps", "polish", "x64", "gtol_factor", "escapes")
                ),
            ],
            ["classification", summary.get("classification", "certificate")],
            *_provenance_rows(config),
        ],
    )
    n = max(1, int(summary["n_inits"]))
    lines += ["", "## Runs per kind", ""]
    lines += _table(
        ["kind", "runs", "fraction"],
        [[k, summary["counts"].get(k, 0), f"{summary['counts'].get(k, 0) / n:.3f}"] for k in metrics.KINDS],
    )
    lines += [""] + _spurious_lines(summary, problem)
    status = summary.get("status_counts")
    if status:
        codes = {name: code for code, name in summary.get("status_codes", {}).items()}
        lines += [
            "",
            "Optimiser status (runs.npz `status`, named in `status_name`): "
            + ", ".join(f"{k}{f' (code {codes[k]})' if k in codes else ''} {v}" for k, v in status.items())
            + ".",
        ]
    lines += ["", "## Distinct minima", ""]
    if summary["distinct_minima"]:
        lines += _table(
            ["#", "loss L", "gap L - L*", "runs", "kinds", "certified global"],
            [
                [
                    m["point"] if m.get("point", -1) >= 0 else "-",
                    f"{m['loss']:.9f}",
                    f"{m['gap']:.3e}",
                    m["count"],
                    ", ".join(f"{k} {c}" for k, c in m["kinds"].items()) if "kinds" in m else "-",
                    "yes" if m["certified_global"] else f"no ({m.get('n_certified', 0)} of {m['count']})",
                ]
                for m in summary["distinct_minima"]
            ],
        )
        lines += [
            "",
            "`#` is the minimum's point index (`points.npz`, the figure names, `slice --minimum`, `path`). "
            "Runs are one minimum when they map onto each other by a rotation or reflection, a permutation "
            "of samples within a class and a relabelling of classes of equal size, within the distances "
            "float64 resolves (docs/maths.md §5); flat sets are one entry when a path at the loss's "
            "resolution joins them.",
        ]
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


# --------------------------------------------------------------------------
# Scans side by side (the demo)


def _regime(summary: dict, problem: problems.Problem) -> str:
    """``d`` against ``k - 1`` (the rank condition, ``d < rank M*``, is the spurious note's)."""
    k1 = problem.k - 1
    if _unattainable(summary, problem):
        return f"d = {problem.dim} < k $-$ 1 = {k1}"  # the spurious note says why no minimum is spurious
    if problem.dim >= k1:
        return f"d = {problem.dim} $\\geq$ k $-$ 1 = {k1}: every local minimum global"
    return f"d = {problem.dim} < k $-$ 1 = {k1}: spurious minima possible"


def comparison_figure(dirs):
    """``plots.comparison`` of finished scans (one column per folder in ``dirs``), each titled by its problem,
    its regime (``d`` against ``k - 1`` and ``rank M*``) and its spurious bound, all read from the folders."""
    cases = []
    for folder in dirs:
        scan_data = reading.load_scan(folder)
        summary, problem = scan_data["summary"], scan_data["problem"]
        L = float(summary["global_loss"])
        cases.append(
            {
                "records": scan_data["runs"],
                "global_loss": L,
                "title": _lines(_title(scan_data), _regime(summary, problem)),
                "tolerance": _gap_tolerance(scan_data["runs"], scan_data),
                "note": _spurious_note(summary, problem),
            }
        )
    return plots.comparison(cases)


def write_comparison(dirs, out: str, name: str = "comparison", formats=("png", "pdf")) -> list[str]:
    """Draw ``comparison_figure(dirs)`` into ``out/<name>.<fmt>`` (atomically); returns the written paths."""
    formats = _check_formats(formats)
    fig = comparison_figure(list(dirs))
    written = []
    for fmt in formats:
        path = os.path.join(out, f"{name}.{fmt}")
        atomic.write_atomic(path, style.figure_bytes(fig, fmt))
        written.append(path)
    return written
