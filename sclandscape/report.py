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

from sclandscape import plots, problems, results
from sclandscape import scan as _scan

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


def load_scan(out: str) -> dict:
    """The pieces of a finished scan folder: ``config``, ``summary``, ``runs``, ``class_gram`` (M*).

    Raises ``ResultsError`` (one line) when ``out`` is not a finished scan.
    """
    if not os.path.isdir(out):
        raise results.ResultsError(f"{out} is not a folder")
    if not os.path.exists(os.path.join(out, "config.json")):
        raise results.ResultsError(f"{out} is not a scan results folder (no config.json)")
    for name in ("summary.json", "runs.npz"):
        if not os.path.exists(os.path.join(out, name)):
            raise results.ResultsError(
                f"{out} holds an unfinished scan (no {name}); finish it with `sclandscape scan ... --resume`"
            )
    config = results.read_json(os.path.join(out, "config.json"))
    summary = results.read_json(os.path.join(out, "summary.json"))
    runs = results.read_npz(os.path.join(out, "runs.npz"))
    for key in ("problem", "settings", "seed", "n_inits"):
        if key not in config:
            raise results.ResultsError(f"{out}/config.json has no {key!r}")
    for key in ("global_loss", "counts", "distinct_minima"):
        if key not in summary:
            raise results.ResultsError(f"{out}/summary.json has no {key!r}")
    missing = [
        f for f in ("run", "loss", "status", "grad_norm", "cert_lambda", "cert_gap_bound") if f not in runs
    ]
    if missing:
        raise results.ResultsError(f"{out}/runs.npz has no {missing[0]!r}")
    try:
        problem = problems.Problem.from_json(config["problem"])
        settings = _scan.ScanSettings(**config["settings"])
    except (TypeError, ValueError, KeyError) as err:
        raise results.ResultsError(f"{out}/config.json does not describe a scan: {err}") from None
    if "kind" not in runs:
        runs["kind"] = _scan.classify_records(runs, summary["global_loss"], settings)
    opt_path = os.path.join(out, "optimum.json")
    if os.path.exists(opt_path):
        class_gram = np.asarray(results.read_json(opt_path)["class_gram"], np.float64)
    else:
        from sclandscape import optimum

        class_gram = optimum.global_optimum(problem.counts, problem.tau).class_gram
    return {
        "config": config,
        "summary": summary,
        "runs": runs,
        "problem": problem,
        "settings": settings,
        "class_gram": class_gram,
    }


def _check_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    if not formats or any(f not in plots.FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise ValueError(f"formats must be distinct values from {plots.FORMATS}, got {formats!r}")
    return formats


def class_mean_gram(H: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``M(H)``: the Gram matrix ``(k, k)`` of the normalised class means of ``H`` ``(n, d)``."""
    H = np.asarray(H, np.float64)
    k = int(labels.max()) + 1
    onehot = np.eye(k)[labels]
    means = onehot.T @ H / onehot.sum(axis=0)[:, None]
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    unit = means / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


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


def _embeddings(scan_data: dict, rows: list[int]) -> tuple[dict, list[str]]:
    """``{row: H}`` for the given rows: saved, or recomputed from the seed; plus notes."""
    runs = scan_data["runs"]
    if "H" in runs:
        return {r: np.asarray(runs["H"][r]) for r in rows}, []
    if not rows:
        return {}, []
    import jax

    problem, settings = scan_data["problem"], scan_data["settings"]
    # Same seed and settings, fewer slots: the same runs (to rounding), checked below.
    settings = dataclasses.replace(settings, slots=max(1, len(rows)))
    indices = [int(runs["run"][r]) for r in rows]
    with jax.enable_x64(True):
        key = jax.random.key(int(scan_data["config"]["seed"]))
        scanner = _scan.Scanner(problem, key, settings, keep_embeddings=True)
        parts = list(scanner.results(indices))
    got = {int(i): (h, loss) for p in parts for i, h, loss in zip(p["run"], p["H"], p["loss"], strict=True)}
    tol = max(float(scan_data["summary"].get("grouping_tolerance", 0.0)), 1e-9)
    found, notes = {}, []
    for r, i in zip(rows, indices, strict=True):
        H, loss = got[i]
        if abs(loss - runs["loss"][r]) <= tol:
            found[r] = H
        else:
            notes.append(f"run {i} recomputed to L = {loss:.6f}, not the recorded {runs['loss'][r]:.6f}")
    return found, notes


def _critical_representatives(runs: dict, tol: float) -> list[int]:
    """Rows of one run per distinct converged critical point: grouped by kind, then loss within ``tol``."""
    kind = np.asarray(runs["kind"]).astype(str)
    loss = np.asarray(runs["loss"])
    rows = []
    for k in plots.KINDS:
        if k == "not_converged":
            continue
        sel = np.flatnonzero(kind == k)
        sel = sel[np.argsort(loss[sel], kind="stable")]
        last = None
        for r in sel:
            if last is None or loss[r] - last > tol:
                rows.append(int(r))
            last = loss[r]
    return rows


def hessian_spectra(out: str, run_indices=None, *, recompute: bool = True) -> str:
    """Full Riemannian Hessian spectra of chosen runs of a finished scan, into ``out/hessian/spectra.npz``.

    ``run_indices`` default: one run per distinct converged critical point
    (per kind, losses grouped by the scan's grouping tolerance). Embeddings
    come from the scan (``--save-embeddings``) or are recomputed from the seed
    (checked against the recorded loss). Each point is classified again
    (``hessian.classify``, float64, dense). The file holds ``runs``,
    ``eigenvalues`` ``(r, n(d-1))`` ascending, ``n_zero_predicted``, ``kind``,
    ``index``, ``lambda_min``, ``tol`` and ``loss``; it is written atomically.
    Returns its path. Raises ``ValueError`` (one line) on bad input.
    """
    import jax

    from sclandscape import hessian

    data = load_scan(out)
    runs, problem, settings = data["runs"], data["problem"], data["settings"]
    N = problem.n * (problem.dim - 1)
    if N > hessian.DENSE_MAX_DIM:
        raise ValueError(
            f"full spectra need n(d-1) <= {hessian.DENSE_MAX_DIM}, this scan has {N} "
            "(use sclandscape.hessian.lanczos_extremes / spectral_density)"
        )
    index_of = {int(i): r for r, i in enumerate(np.asarray(runs["run"]))}
    if run_indices is None:
        rows = _critical_representatives(runs, float(data["summary"].get("grouping_tolerance", 0.0)))
        if not rows:
            raise ValueError(f"{out}: no converged run to take a spectrum of")
    else:
        run_indices = [int(i) for i in run_indices]
        bad = [i for i in run_indices if i not in index_of]
        if not run_indices or bad:
            raise ValueError(f"runs must be indices of this scan (0..{len(index_of) - 1}), got {bad or '[]'}")
        rows = [index_of[i] for i in dict.fromkeys(run_indices)]
    if "H" not in runs and not recompute:
        raise ValueError(f"{out}: the scan saved no embeddings (--save-embeddings) and recompute is off")
    found, notes = _embeddings(data, rows)
    if notes:
        raise ValueError(f"{out}: {notes[0]}")
    H = np.stack([found[r] for r in rows])
    with jax.enable_x64(True):
        c = hessian.classify(
            H,
            problem.labels,
            problem.tau,
            global_loss=data["summary"]["global_loss"],
            settings=hessian.ClassifySettings(
                gtol=10 * settings.tol,
                cert_rtol=settings.cert_rtol,
                gap_rtol=settings.gap_rtol,
                method="dense",
            ),
        )
        eigs = np.asarray(hessian.riemannian_hessian_eigs(H, problem.labels, problem.tau))
    arrays = {
        "runs": np.asarray(runs["run"])[rows].astype(np.int64),
        "eigenvalues": eigs.reshape(len(rows), N),
        "n_zero_predicted": np.atleast_1d(np.asarray(c.n_zero_predicted, np.int64)),
        "kind": np.atleast_1d(np.asarray(c.kind)).astype("<U13"),
        "index": np.atleast_1d(np.asarray(c.index, np.int64)),
        "lambda_min": np.atleast_1d(np.asarray(c.lambda_min, np.float64)),
        "tol": np.atleast_1d(np.asarray(c.tol, np.float64)),
        "loss": np.atleast_1d(np.asarray(c.loss, np.float64)),
    }
    path = os.path.join(out, "hessian", "spectra.npz")
    results.write_npz(path, arrays)
    return path


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
    for kind in plots.KINDS:
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
        H_of, notes = _embeddings(scan_data, [row for row, _ in reps])
        skipped += [f"gram_minimum: {note}" for note in notes]
        labels = problem.labels
        for i, (row, m) in enumerate(reps, start=1):
            if row not in H_of:
                continue
            M = class_mean_gram(H_of[row], labels)
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
    out: str, formats=("png", "pdf"), *, recompute: bool = True, max_minima: int = 3
) -> list[str]:
    """Draw the figures of the finished scan in ``out`` into ``out/figures/`` and write ``out/report.md``.

    Args:
      out: a folder written by ``results.run_scan`` (or ``sclandscape scan``).
      formats: file formats, from ``plots.FORMATS``.
      recompute: when the scan saved no embeddings, recompute one run per
        distinct minimum from the seed for the Gram figures (a few seconds);
        ``False`` skips those figures.
      max_minima: Gram figures for at most this many distinct minima (lowest loss first).

    Returns the written paths (figures, then ``report.md``). Raises
    ``ResultsError`` (a ``ValueError``) with a one-line message when ``out`` is
    not a finished scan, ``ValueError`` for bad arguments.
    """
    formats = _check_formats(formats)
    if isinstance(max_minima, bool) or not isinstance(max_minima, int) or max_minima < 0:
        raise ValueError(f"max_minima must be an integer >= 0, got {max_minima!r}")
    scan_data = load_scan(out)
    figures, skipped = _figures(out, scan_data, recompute, max_minima)
    written, drawn = [], []
    for name, build, caption in figures:
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
        [[k, summary["counts"].get(k, 0), f"{summary['counts'].get(k, 0) / n:.3f}"] for k in _scan.KINDS],
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
