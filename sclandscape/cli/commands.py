"""The command line: scan, optimum, classify, hessian, plot, sweep, saddles, path, slice, demo.

Exit code 0 on success, 2 on bad input with a one-line message on stderr and
no traceback. Argument parsing imports neither JAX nor the numerical modules:
each handler imports what it needs, so ``--help`` and argument errors answer
at once. Handlers enable float64 globally and JAX's persistent compilation
cache (``sclandscape.core.compilation``; ``--no-cache`` or ``SCLANDSCAPE_CACHE_DIR=off``
turn it off); the library does neither on import.

Interrupts: SIGINT (Ctrl-C) and SIGTERM stop any command at any phase with one
line (``interrupted after N of M runs; rerun with --resume``) and exit code
130 / 143, leaving every file complete (``sclandscape.core.interrupts``).
"""

from __future__ import annotations

import os
import signal
import sys

from sclandscape.cli import parser

# --------------------------------------------------------------------------
# Argument types and shared groups


def _problem_counts(args) -> tuple[int, ...]:
    from sclandscape.core import problems

    given = [
        args.counts is not None,
        args.classes is not None or args.per_class is not None,
        args.step is not None,
    ]
    if sum(given) != 1:
        raise ValueError("give exactly one of --counts, --classes/--per-class, --step")
    if args.counts is not None:
        return args.counts
    if args.step is not None:
        k_maj, k_min, n_min, R = args.step
        if not all(float(v).is_integer() for v in (k_maj, k_min, n_min)):
            raise ValueError(f"--step K_MAJ K_MIN N_MIN must be integers, got {args.step[:3]}")
        return problems.step_counts(int(k_maj), int(k_min), int(n_min), R)
    if args.classes is None or args.per_class is None:
        raise ValueError("--classes and --per-class go together")
    return problems.balanced_counts(args.classes, args.per_class)


def _check_runs(args) -> None:
    """``--inits`` and ``--seed`` of a command that runs scans (before anything is written)."""
    from sclandscape.core import problems

    if not args.inits >= 1:
        raise ValueError(f"--inits must be >= 1, got {args.inits}")
    problems.check_seed(args.seed)


def _settings(args):
    from sclandscape.explore import scanner

    return scanner.ScanSettings(
        tol=args.tol if args.tol is not None else (1e-9 if args.x64 else 1e-5),
        max_steps=args.max_steps,
        x64=args.x64,
        slots=args.slots,
        memory_budget=args.memory_budget,
        **_optimizer_settings(args),
    )


def _note(line: str) -> None:
    print(f"sclandscape: note: {line}", file=sys.stderr, flush=True)


def _optimizer_settings(args) -> dict:
    """``optimizer``, ``learning_rate``, ``momentum``, ``polish`` from ``scan``'s options (checked)."""
    name = getattr(args, "optimizer", "lbfgs")
    fields = {}
    if name != "lbfgs":
        fields["optimizer"] = name
    if getattr(args, "learning_rate", None) is not None:
        if name == "lbfgs":
            raise ValueError("--learning-rate applies to --optimizer adam or sgd (L-BFGS sets its own steps)")
        fields["learning_rate"] = args.learning_rate
    if getattr(args, "momentum", None) is not None:
        if name != "sgd":
            raise ValueError("--momentum applies to --optimizer sgd only")
        fields["momentum"] = args.momentum
    if getattr(args, "no_polish", False):
        fields["polish"] = False
    return fields


def _progress(quiet: bool, label: str = "scan", unit: str = "runs", *, counts: bool = True):
    """The progress display of a long command (``sclandscape.core.progress``): a bar on a terminal or in a
    notebook, plain lines when stderr goes to a file, nothing with ``--quiet``. Use with ``with``.

    ``unit``: what the count counts. ``counts``: the interrupt line reports the display's count (a
    scan reports its recorded runs itself, ``scan_study.run_scan``)."""
    from sclandscape.core import interrupts, progress

    shown = progress.display(label, quiet=quiet, unit=unit)
    interrupts.drawn(shown.mode == "bar")
    if counts:
        shown.observers.append(lambda done, total: interrupts.progress(done, total))
    return shown


def _start_jax(args) -> None:
    """What every command does before its first JAX computation: float64 on, and the compilation cache
    (``sclandscape.core.compilation``) unless ``--no-cache`` or ``SCLANDSCAPE_CACHE_DIR=off``."""
    import jax

    from sclandscape.core import compilation

    jax.config.update("jax_enable_x64", True)
    if getattr(args, "no_cache", False):
        return
    try:
        compilation.enable_cache()
    except OSError as err:  # a cache is an optimisation: the command runs without it
        _note(f"no compilation cache ({err})")


# --------------------------------------------------------------------------
# optimum


def _cmd_optimum(args) -> int:
    import json

    import numpy as np

    from sclandscape.theory import optimum

    counts = _problem_counts(args)
    _start_jax(args)
    opt = optimum.global_optimum(counts, args.tau)
    if args.json:
        print(json.dumps(opt.to_json()))
        return 0
    np.set_printoptions(precision=5, suppress=True, linewidth=120)
    print(f"counts={list(counts)} tau={opt.tau}")
    print(f"L* = {opt.loss:.9f}   rank(M*) = {opt.rank}   KKT residual = {opt.kkt_residual:.1e}")
    if len(counts) <= 12:
        print("M* =")
        print(opt.class_gram)
    return 0


# --------------------------------------------------------------------------
# scan


def _print_summary(summary: dict, out: str, watch=None) -> None:
    """The summary of a scan; ``watch``: a ``compilation.Stopwatch`` of it (its time, compiling and not)."""
    c = summary["counts"]
    print(
        f"{summary['n_inits']} runs, L* = {summary['global_loss']:.6f}: "
        + ", ".join(f"{k} {v}" for k, v in c.items())
    )
    attainable = summary.get("attainable", True)
    for m in summary["distinct_minima"][:10]:
        what = f"{m['kind']} ({m['decided_by']})"
        if m.get("flat_dim"):
            what += f", flat in {m['flat_dim']} directions (|eigenvalues| <= {m['flat_scale']:.1e})"
        if m.get("strict_certified"):
            what += f", proven strict within {m['certified_radius']:.1e}"
        if m.get("lifted_index", -1) >= 0:
            what += f", a saddle of index {m['lifted_index']} at d + 1"
        gap = f"gap {m['gap']:.2e}" if attainable else f"{m['gap_to_lowest']:.2e} above the lowest found"
        name = f"minimum {m['point']}" if m.get("point", -1) >= 0 else "minimum"
        print(f"  {name} at L = {m['loss']:.6f} ({gap}): {m['count']} runs, {what}")
    fo = summary.get("first_order")
    if fo:
        print(
            f"  {fo['optimizer']} itself (before {'the polish' if fo['polished'] else 'no polish'}): "
            f"{fo['n_at_optimum']} of {summary['n_inits']} runs at L* within their gap tolerance, "
            f"median |grad| {fo['median_grad_norm']:.1e}, median gap {fo['median_gap']:.2e}"
        )
    if watch is not None:
        print(f"{watch.total_s:.1f} s: {watch.compile_s:.1f} s compiling, {watch.run_s:.1f} s running")
    print(f"results in {out}")


def _join_processes(args) -> None:
    """Join a scan shared by several processes (``jax.distributed``), if asked.

    Must run before anything touches JAX devices. Beyond one agreement at the
    start, the scan needs no collectives: each process shards its share of runs
    over its own local devices and writes its own chunks (``scan_study.run_scan``).
    """
    given = (args.coordinator, args.num_processes, args.process_id)
    if all(v is None for v in given):
        return
    if any(v is None for v in given):
        raise ValueError("--coordinator, --num-processes and --process-id go together")
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if args.num_processes < 1:
        raise ValueError(f"--num-processes must be >= 1, got {args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        raise ValueError(f"--process-id must be in 0..{args.num_processes - 1}, got {args.process_id}")
    import jax

    try:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    except RuntimeError as err:  # e.g. the coordinator port is taken (an absent peer aborts in JAX)
        raise ValueError(f"cannot join {args.coordinator}: {str(err).strip().splitlines()[0]}") from None


def _cmd_scan(args) -> int:
    from sclandscape.core import compilation, interrupts, problems
    from sclandscape.studies import scan as scan_study

    problem = problems.Problem(_problem_counts(args), args.dim, args.tau)
    _check_runs(args)
    settings = _settings(args)
    interrupts.expect("rerun with --resume")
    _join_processes(args)
    _start_jax(args)
    with _progress(args.quiet, "scan", counts=False) as progress, compilation.Stopwatch() as watch:
        summary = scan_study.run_scan(
            problem,
            args.inits,
            args.seed,
            settings,
            args.out,
            resume=args.resume,
            keep_embeddings=args.save_embeddings,
            progress=progress,
            log=_note,
        )
    _print_summary(summary, args.out, watch)
    return 0


# --------------------------------------------------------------------------
# demo


#: (title, counts, dim, tau): the benign landscape, and d < k - 1 where spurious minima appear.
DEMO_CASES = (
    ("balanced, d >= k-1 (benign)", (5, 5, 5, 5), 3, 1.0),
    ("imbalanced, d < k-1", (10, 10, 2, 2), 2, 1.0),
)


def _check_demo_folder(out: str) -> None:
    """``--out`` of ``demo``: new, empty, or a demo folder (``case0``, ``case1``, ..., ``comparison.*``)."""
    from sclandscape.folders import atomic, identity

    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} exists and is not a folder")
    if not identity.holds_results(out):
        return
    # what the demo itself writes: one folder per case and the side-by-side figure
    cases = {f"case{i}" for i in range(len(DEMO_CASES))} | {f"comparison.{fmt}" for fmt in ("png", "pdf")}
    other = sorted(
        n for n in os.listdir(out) if n not in cases and n != atomic.LOCK_NAME and not n.startswith(".tmp-")
    )
    if other:
        raise ValueError(f"--out {out} exists and is not a demo folder (it holds {other[0]!r})")


def _cmd_demo(args) -> int:
    from sclandscape.core import interrupts, problems
    from sclandscape.drawing import report
    from sclandscape.explore import scanner
    from sclandscape.studies import hessian as hessian_study
    from sclandscape.studies import scan as scan_study

    if not args.inits >= 1:
        raise ValueError(f"--inits must be >= 1, got {args.inits}")
    _check_demo_folder(args.out)
    interrupts.expect("rerun the demo to continue it")
    _start_jax(args)
    folders = []
    for i, (title, counts, dim, tau) in enumerate(DEMO_CASES):
        out = os.path.join(args.out, f"case{i}")
        folders.append(out)
        print(f"== {title}: counts={list(counts)} d={dim} tau={tau}")
        settings = scanner.ScanSettings(tol=1e-9, x64=True, slots=64)
        with _progress(args.quiet, f"demo case {i}", counts=False) as progress:
            summary = scan_study.run_scan(
                problems.Problem(counts, dim, tau),
                args.inits,
                0,
                settings,
                out,
                resume=True,
                progress=progress,
                log=_note,
            )
        _print_summary(summary, out)
        with _progress(args.quiet, f"demo case {i}: hessian", "points", counts=False) as progress:
            hessian_study.hessian_spectra(out, progress=progress)
        with _progress(args.quiet, f"demo case {i}: plot", "figures", counts=False) as progress:
            report.plot_results(out, progress=progress)
        print(f"report: {os.path.join(out, 'report.md')}")
    # the two regimes side by side (d >= k - 1 beside d < k - 1), read back from the two folders
    for path in report.write_comparison(folders, args.out):
        print(f"comparison: {path}")
    return 0


# --------------------------------------------------------------------------
# hessian


def _cmd_curvature(args) -> int:
    from sclandscape.studies import curvature

    runs = _parse_runs(args.runs)
    _start_jax(args)
    with _progress(args.quiet, "hessian", "points") as progress:
        record = curvature.scan_curvature(
            args.dir,
            runs,
            trace=args.trace,
            spectrum=args.density,
            trace_probes=args.trace_probes,
            num_probes=args.probes,
            num_iter=args.lanczos_steps,
            formats=args.formats,
            progress=progress,
        )
    header = f"{'run':>6} {'kind':<13} {'loss':>14} {'n(d-1)':>8}"
    print(header + (f" {'trace':>12} {'+-':>9}" if args.trace else ""))
    for e in record["runs"]:
        line = f"{e['run']:>6} {e['kind']:<13} {e['loss']:>14.8f} {e['n_tangent']:>8}"
        if args.trace:
            line += f" {e['trace']:>12.6g} {e['trace_stderr']:>9.2g}"
        print(line)
    print(f"curvature: {os.path.join(args.dir, 'hessian', 'curvature.json')}")
    for path in record.get("figures", []):
        print(os.path.join(args.dir, path))
    return 0


def _cmd_hessian(args) -> int:
    from sclandscape.folders import atomic
    from sclandscape.studies import hessian as hessian_study

    if args.density or args.trace:
        return _cmd_curvature(args)
    runs = None
    if args.runs:
        try:
            runs = [int(r) for r in args.runs.split(",")]
        except ValueError:
            raise parser.UsageError(
                f"--runs must be comma-separated run indices, got {args.runs!r}"
            ) from None
    _start_jax(args)
    with _progress(args.quiet, "hessian", "points") as progress:
        path = hessian_study.hessian_spectra(args.dir, runs, progress=progress)
    data = atomic.read_npz(path)
    header = ("run", "point", "kind", "index", "lambda_min", "zeros(pred)", "loss")
    print("{:>6} {:>5} {:<13} {:>5} {:>12} {:>11} {:>14}".format(*header))
    columns = ("runs", "points", "kind", "index", "lambda_min", "n_zero_predicted", "loss")
    for run, point, kind, index, lam, zeros, loss in zip(*(data[c] for c in columns), strict=True):
        print(f"{run:>6} {point:>5} {kind:<13} {index:>5} {lam:>12.4e} {zeros:>11} {loss:>14.8f}")
    print(f"spectra: {path}")
    return 0


# --------------------------------------------------------------------------
# classify

#: Rows of a user's points may be off unit norm by this much (float16 normalisation is ~1e-3 off;
#: float32 ~1e-7): they are renormalised. Beyond it the file does not hold points of OB(n, d).
UNIT_NORM_TOL = 5e-3

CLASSIFY_JSON_KEYS = {
    "kind": "kind",
    "index": "index",
    "n_zero": "n_zero",
    "n_zero_predicted": "n_zero_predicted",
    "lambda_min": "lambda_min",
    "grad_norm": "grad_norm",
    "loss": "loss",
    "gap": "gap",
    "certificate_lambda_min": "cert_lambda",
    "strict_certified": "strict_certified",
    "certified_radius": "certified_radius",
    "decided_by": "decided_by",
    "flat_dim": "flat_dim",
    "flat_scale": "flat_scale",
    "tol": "tol",
    "tol_round": "tol_round",
    "tol_grad": "tol_grad",
    "proof_reason": "proof_reason",
}


def _read_points(path: str):
    """``(H (runs, n, d), labels (n,), tau or None)`` from a user's ``.npz`` (``ValueError`` naming the
    problem); ``tau`` when the file carries one (a scan's ``points.npz`` does)."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    for key in ("H", "labels"):
        if key not in arrays:
            raise ValueError(
                f"{path} has no array {key!r} (it needs H (n, d) or (runs, n, d), and labels (n,))"
            )
    H, labels = arrays["H"], arrays["labels"]
    if H.ndim not in (2, 3) or not np.issubdtype(H.dtype, np.floating):
        raise ValueError(f"{path}: H must be a float array (n, d) or (runs, n, d), got {H.dtype} {H.shape}")
    H = H.reshape((-1,) + H.shape[-2:]).astype(np.float64)
    if labels.ndim != 1 or labels.shape[0] != H.shape[1]:
        raise ValueError(
            f"{path}: labels must have shape ({H.shape[1]},) (one per row of H), got {labels.shape}"
        )
    if not np.all(np.isfinite(H)):
        raise ValueError(f"{path}: H has non-finite entries")
    if H.shape[-1] < 2:
        raise ValueError(f"{path}: d = {H.shape[-1]}: the tangent space of OB(n, 1) is empty (need d >= 2)")
    worst = float(np.max(np.abs(np.linalg.norm(H, axis=-1) - 1.0)))
    if worst > UNIT_NORM_TOL:
        raise ValueError(
            f"{path}: rows of H are not unit norm (off by up to {worst:.2e} > {UNIT_NORM_TOL:g}): "
            "normalise the embeddings first"
        )
    tau = arrays.get("tau")
    if tau is not None and (tau.shape != () or not np.issubdtype(tau.dtype, np.floating)):
        raise ValueError(f"{path}: tau must be one float, got {tau.dtype} {tau.shape}")
    return H, labels, None if tau is None else float(tau)


def _cmd_classify(args) -> int:
    from sclandscape.core import problems
    from sclandscape.folders import atomic
    from sclandscape.theory import verdict

    H, labels, file_tau = _read_points(args.file)
    problems.check_labels(labels)
    tau = args.tau if args.tau is not None else file_tau
    if tau is None:
        raise ValueError(f"{args.file} carries no tau: give --tau")
    problems.check_tau(tau)
    _start_jax(args)
    c = verdict.classify(H, labels, tau, settings=verdict.ClassifySettings(gtol=args.gtol))
    rows = [c.point(i) for i in range(H.shape[0])]
    if args.json:
        points = [{key: row[field] for key, field in CLASSIFY_JSON_KEYS.items()} for row in rows]
        print(atomic.dumps({"points": points, "global_loss": c.global_loss, "attainable": c.attainable}))
        return 0
    d = H.shape[-1]
    print(f"L* = {c.global_loss:.9f} (rank M* = {c.global_rank}; attainable at d = {d}: {c.attainable})")
    print(
        f"{'point':>5} {'kind':<13} {'decided by':<11} {'index':>5} {'zeros(pred)':>11} {'lambda_min':>11} "
        f"{'|grad|':>9} {'gap':>10} {'lambda(S)':>10} {'strict':>6}"
    )
    for i, r in enumerate(rows):
        zeros = f"{r['n_zero']}({r['n_zero_predicted']})"
        strict = str(r["strict_certified"])
        print(
            f"{i:>5} {r['kind']:<13} {r['decided_by']:<11} {r['index']:>5} {zeros:>11} "
            f"{r['lambda_min']:>11.3e} {r['grad_norm']:>9.1e} {r['gap']:>10.3e} "
            f"{r['cert_lambda']:>10.2e} {strict:>6}"
        )
    return 0


# --------------------------------------------------------------------------
# plot


def _cmd_plot(args) -> int:
    from sclandscape.drawing import report
    from sclandscape.studies import sweep

    if not os.path.isdir(args.dir):
        raise ValueError(f"{args.dir} is not a folder")
    _start_jax(args)
    with _progress(args.quiet, "plot", "figures") as progress:
        if os.path.exists(os.path.join(args.dir, "sweep.json")):
            progress.phase("drawing", "the phase map")
            written = sweep.plot_sweep(args.dir, args.formats)
        else:
            written = report.plot_results(args.dir, args.formats, progress=progress)
    for path in written:
        print(path)
    return 0


# --------------------------------------------------------------------------
# sweep


def sweep_arguments(args):
    """``(problem, grid, step)`` from parsed ``sweep`` arguments (``ValueError`` on bad input)."""
    from sclandscape.core import problems

    grid = {}
    for axis, values in (("dim", args.dims), ("R", args.ratios), ("tau", args.taus)):
        if values is not None:
            grid[axis] = values
    if not 1 <= len(grid) <= 2:
        raise ValueError("give one or two of --dims, --taus, --ratios")
    if args.dims is None and args.dim is None:
        raise ValueError("give --dim (or sweep it with --dims)")
    if args.dims is not None and args.dim is not None:
        raise ValueError("give --dim or --dims, not both")
    step = None
    if args.ratios is not None:
        if args.step is None:
            raise ValueError("--ratios needs --step K_MAJ K_MIN N_MIN R (R is then taken from --ratios)")
        step = tuple(args.step[:3])
    counts = _problem_counts(args)
    dim = args.dim if args.dim is not None else args.dims[0]
    return problems.Problem(counts, dim, args.tau), grid, step


def _cmd_sweep(args) -> int:
    from sclandscape.core import interrupts
    from sclandscape.studies import sweep

    problem, grid, step = sweep_arguments(args)
    _check_runs(args)
    settings = _settings(args)
    interrupts.expect("rerun the same sweep command to continue it", "runs of the current cell")
    _start_jax(args)
    with _progress(args.quiet, "sweep", counts=False) as progress:
        state = sweep.run_sweep(
            problem,
            grid,
            args.inits,
            args.out,
            seed=args.seed,
            settings=settings,
            step=step,
            formats=args.formats,
            progress=progress,
            log=print,
        )
    print(f"sweep of {len(state['cells'])} cells in {args.out}: {os.path.join(args.out, 'sweep.json')}")
    for path in state["figures"]:
        print(os.path.join(args.out, path))
    return 0


# --------------------------------------------------------------------------
# saddles


def _check_new_folder(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} exists and is not a folder")
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"--out {out} exists and is not empty")


def _cmd_saddles(args) -> int:
    import numpy as np

    from sclandscape.core import interrupts, problems
    from sclandscape.drawing import style, tools
    from sclandscape.explore import saddles
    from sclandscape.folders import atomic

    problem = problems.Problem(_problem_counts(args), args.dim, args.tau)
    if problem.dim < 2:
        raise ValueError(f"--dim must be >= 2 (OB(n, 1) has no tangent space), got {problem.dim}")
    if problem.k > saddles.MAX_CLASSES:
        raise ValueError(
            f"saddles enumerates partitions of at most {saddles.MAX_CLASSES} classes, got {problem.k}"
        )
    for name in ("random", "restarts"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    settings = saddles.CatalogueSettings(
        restarts=args.restarts, random=args.random, escape=not args.no_escape, splits=not args.no_splits
    )
    if not saddles.attempts(problem, settings):
        raise ValueError("nothing to run: give --restarts >= 1 or --random >= 1")
    problems.check_seed(args.seed)
    _check_new_folder(args.out)
    interrupts.expect("rerun into a new or empty --out")
    _start_jax(args)
    with _progress(args.quiet, "saddles") as progress:
        summary, H = saddles.catalogue(problem, seed=args.seed, settings=settings, progress=progress)
    figures = []
    if summary["entries"]:
        fig = tools.catalogue_figure(summary)
        figures = [
            (os.path.join(args.out, f"saddles.{fmt}"), style.figure_bytes(fig, fmt)) for fmt in args.formats
        ]
    entries = summary["entries"]
    atomic.write_json(os.path.join(args.out, "catalogue.json"), summary)
    atomic.write_npz(
        os.path.join(args.out, "critical_points.npz"),
        {
            "H": np.asarray(H, np.float64).reshape(len(entries), problem.n, problem.dim),
            "loss": np.array([e["loss"] for e in entries], np.float64),
            "index": np.array([e["index"] for e in entries], np.int64),
            "kind": np.array([e["kind"] for e in entries], "<U13"),
        },
    )
    for path, data in figures:
        atomic.write_atomic(path, data)
    print(
        f"{len(entries)} distinct critical points from {summary['n_attempts']} attempts "
        f"({summary['n_converged']} converged), L* = {summary['global_loss']:.6f}"
    )
    for e in entries:
        esc = e["escape"]
        where = ""
        if esc:
            plus, minus = esc["plus"], esc["minus"]
            where = f"  -> {plus['kind']} {plus['loss']:.6f} / {minus['kind']} {minus['loss']:.6f}"
        print(f"  L = {e['loss']:.6f}  {e['kind']:<12} index {e['index']:>3}  {e['construction']}{where}")
    print(f"results in {args.out}")
    return 0


# --------------------------------------------------------------------------
# path


def _parse_runs(text: str | None, count: int | None = None) -> list[int] | None:
    if text is None:
        return None
    try:
        runs = [int(r) for r in text.split(",")]
    except ValueError:
        raise parser.UsageError(f"--runs must be comma-separated run indices, got {text!r}") from None
    if count is not None and len(runs) != count:
        raise parser.UsageError(f"--runs takes {count} run indices, got {len(runs)}")
    return runs


def _cmd_path(args) -> int:
    from sclandscape.explore import paths
    from sclandscape.studies import paths as path_study

    runs = _parse_runs(args.runs, 2)
    settings = paths.PathSettings(images=args.images, max_iter=args.max_iter)
    _start_jax(args)
    with _progress(args.quiet, "path", "pairs") as progress:
        state = path_study.scan_paths(
            args.dir,
            runs,
            settings=settings,
            max_pairs=args.max_pairs,
            formats=args.formats,
            progress=progress,
        )
    print(
        f"{'from':>6} {'to':>6} {'L(from)':>12} {'L(to)':>12} {'barrier':>10} {'saddle L':>12} index connects"
    )
    for e in state["paths"]:
        print(
            f"{e['from']:>6} {e['to']:>6} {e['from_loss']:>12.6f} {e['to_loss']:>12.6f} "
            f"{e['barrier']:>10.4g} {e['saddle_loss']:>12.6f} {e['saddle_index']:>5} "
            f"{'yes' if e['connects'] else 'NO':>8}"
        )
        if e["intermediate_minima"]:
            print(f"{'':>14}through intermediate minima at L = {e['intermediate_minima']}")
    print(f"paths: {os.path.join(args.dir, 'paths.json')}")
    return 0


# --------------------------------------------------------------------------
# slice


def _cmd_slice(args) -> int:
    from sclandscape.studies import slices as slice_study

    directions = [d.strip() for d in args.directions.split(",") if d.strip()]
    _start_jax(args)
    with _progress(args.quiet, "slice") as progress:
        record = slice_study.scan_slice(
            args.dir,
            run=args.run,
            minimum=args.minimum,
            directions=directions,
            surface=args.surface,
            extent=args.extent,
            points=args.points,
            formats=args.formats,
            progress=progress,
        )
    what = "2-D slice" if record["surface"] else "1-D slices"
    print(f"{what} around run {record['point']} (L = {record['loss']:.6f})")
    for d in record["directions"]:
        notes = []
        if d["eigenvalue"] is not None:
            notes.append(f"eigenvalue {d['eigenvalue']:.4g}")
        if d["distance"] is not None:
            notes.append(
                f"the other point at step {d['distance']:.4g}" + ("" if d["exact"] else " (not on the slice)")
            )
        print(f"  {d['name']}" + (": " + ", ".join(notes) if notes else ""))
    for path in record["files"]:
        print(os.path.join(args.dir, path))
    return 0


# --------------------------------------------------------------------------
# The parser


#: The handler of each command (``args.command``, set by the parser).
HANDLERS = {
    "scan": _cmd_scan,
    "optimum": _cmd_optimum,
    "classify": _cmd_classify,
    "hessian": _cmd_hessian,
    "plot": _cmd_plot,
    "sweep": _cmd_sweep,
    "saddles": _cmd_saddles,
    "path": _cmd_path,
    "slice": _cmd_slice,
    "demo": _cmd_demo,
}


def build_parser():
    """The parser of every command (``parser.build_parser``)."""
    return parser.build_parser()


def main(argv=None) -> int:
    from sclandscape.core import interrupts

    interrupts.expect("nothing was left half-written")
    try:
        args = build_parser().parse_args(argv)
        return interrupts.run(HANDLERS[args.command], args)
    except (parser.UsageError, ValueError, OSError) as err:
        print(f"sclandscape: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # signals not deferred (main called from a program that did not)
        print("sclandscape: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
