"""Command line: ``sclandscape scan | optimum | demo | hessian | plot | sweep``.

Exit code 0 on success, 2 on bad input with a one-line message on stderr and
no traceback. Entry points enable float64 (the library never does on import).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from sclandscape import cli_extra, cli_saddles, optimum, problems, report, results, scan


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage as well)
        raise _UsageError(message)


def _parse_counts(text: str) -> tuple[int, ...]:
    try:
        return problems.check_counts([int(c) for c in text.split(",")])
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            str(err) if "class" in str(err) else f"bad --counts {text!r}"
        ) from None


def _problem_counts(args) -> tuple[int, ...]:
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
        return problems.step_counts(int(k_maj), int(k_min), int(n_min), R)
    if args.classes is None or args.per_class is None:
        raise ValueError("--classes and --per-class go together")
    return problems.balanced_counts(args.classes, args.per_class)


def _add_problem_arguments(p):
    p.add_argument("--counts", type=_parse_counts, help="class sizes, e.g. 10,10,2,2")
    p.add_argument("--classes", type=int, help="number of classes k (balanced)")
    p.add_argument("--per-class", type=int, help="samples per class m (balanced)")
    p.add_argument(
        "--step", type=float, nargs=4, metavar=("K_MAJ", "K_MIN", "N_MIN", "R"), help="STEP imbalance"
    )
    p.add_argument("--tau", type=float, default=1.0, help="temperature (default 1.0)")


def _cmd_optimum(args) -> int:
    counts = _problem_counts(args)
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


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    start = time.monotonic()
    first = []

    def report(done, total):
        if not first:
            first.append(done)
        elapsed = time.monotonic() - start
        rate = (done - first[0]) / elapsed if elapsed > 0 else 0.0
        eta = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
        bar = "#" * int(30 * done / total)
        end = "\n" if done >= total else ""
        print(f"\r[{bar:<30}] {done}/{total} runs, ETA {eta}   ", end=end, file=sys.stderr, flush=True)

    return report


def _settings(args) -> scan.ScanSettings:
    return scan.ScanSettings(
        tol=args.tol if args.tol is not None else (1e-9 if args.x64 else 1e-5),
        max_steps=args.max_steps,
        x64=args.x64,
        slots=args.slots,
    )


def _print_summary(summary: dict, out: str) -> None:
    c = summary["counts"]
    print(
        f"{summary['n_inits']} runs, L* = {summary['global_loss']:.6f}: "
        + ", ".join(f"{k} {v}" for k, v in c.items())
    )
    for m in summary["distinct_minima"][:10]:
        flag = "certified global" if m["certified_global"] else "NOT certified (spurious)"
        print(f"  minimum at L = {m['loss']:.6f} (gap {m['gap']:.2e}): {m['count']} runs, {flag}")
    print(f"results in {out}")


def _join_processes(args) -> None:
    """Join a scan shared by several processes (``jax.distributed``), if asked.

    Must run before anything touches JAX devices. Beyond one agreement at the
    start, the scan needs no collectives: each process shards its share of runs
    over its own local devices and writes its own chunks (``results.run_scan``).
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
    problem = problems.Problem(_problem_counts(args), args.dim, args.tau)
    if not args.inits >= 1:
        raise ValueError(f"--inits must be >= 1, got {args.inits}")
    _join_processes(args)
    summary = results.run_scan(
        problem,
        args.inits,
        args.seed,
        _settings(args),
        args.out,
        resume=args.resume,
        keep_embeddings=args.save_embeddings,
        progress=_progress(args.quiet),
    )
    _print_summary(summary, args.out)
    return 0


DEMO_CASES = (
    # (title, counts, dim, tau): the benign landscape, and d < k - 1 where spurious minima appear.
    ("balanced, d >= k-1 (benign)", problems.balanced_counts(4, 5), 3, 1.0),
    ("imbalanced, d < k-1", (10, 10, 2, 2), 2, 1.0),
)


def _cmd_demo(args) -> int:
    import os

    for i, (title, counts, dim, tau) in enumerate(DEMO_CASES):
        out = os.path.join(args.out, f"case{i}")
        print(f"== {title}: counts={list(counts)} d={dim} tau={tau}")
        settings = scan.ScanSettings(tol=1e-9, x64=True, slots=64)
        summary = results.run_scan(
            problems.Problem(counts, dim, tau),
            args.inits,
            0,
            settings,
            out,
            resume=True,
            progress=_progress(args.quiet),
        )
        _print_summary(summary, out)
        report.hessian_spectra(out)
        report.plot_results(out)
        print(f"report: {os.path.join(out, 'report.md')}")
    return 0


def _cmd_hessian(args) -> int:
    runs = None
    if args.runs:
        try:
            runs = [int(r) for r in args.runs.split(",")]
        except ValueError:
            raise _UsageError(f"--runs must be comma-separated run indices, got {args.runs!r}") from None
    path = report.hessian_spectra(args.dir, runs, recompute=not args.no_recompute)
    data = results.read_npz(path)
    print(f"{'run':>6} {'kind':<13} {'index':>5} {'lambda_min':>12} {'zeros(pred)':>11} {'loss':>14}")
    columns = ("runs", "kind", "index", "lambda_min", "n_zero_predicted", "loss")
    for run, kind, index, lam, zeros, loss in zip(*(data[c] for c in columns), strict=True):
        print(f"{run:>6} {kind:<13} {index:>5} {lam:>12.4e} {zeros:>11} {loss:>14.8f}")
    print(f"spectra: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sclandscape", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("optimum", help="global optimum (CLS) for given class counts and temperature")
    _add_problem_arguments(p)
    p.add_argument("--json", action="store_true", help="print the optimum as JSON")
    p.set_defaults(func=_cmd_optimum)
    p = sub.add_parser("scan", help="batched landscape scan from random initialisations")
    _add_problem_arguments(p)
    p.add_argument("--dim", type=int, required=True, help="embedding dimension d")
    p.add_argument("--inits", type=int, default=1024, help="number of random initialisations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, help="Riemannian gradient tolerance (1e-5; 1e-9 with --x64)")
    p.add_argument("--max-steps", type=int, default=5000, help="first-order steps per run")
    p.add_argument("--slots", type=int, default=256, help="runs optimised concurrently")
    p.add_argument("--x64", action="store_true", help="optimise in float64")
    p.add_argument("--out", required=True, help="results folder (must be new or empty)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted scan in --out")
    p.add_argument("--save-embeddings", action="store_true", help="store the final H of every run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="share the scan: jax.distributed coordinator")
    p.add_argument("--num-processes", type=int, metavar="N", help="processes sharing the scan")
    p.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    p.set_defaults(func=_cmd_scan)
    p = sub.add_parser("demo", help="run the default demonstration scans")
    p.add_argument("--out", default="sclandscape-demo", help="results folder (default sclandscape-demo)")
    p.add_argument("--inits", type=int, default=256)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("hessian", help="full Hessian spectra of chosen runs of a finished scan")
    p.add_argument("dir", help="a finished scan folder")
    p.add_argument("--runs", help="comma-separated run indices (default: one per distinct critical point)")
    p.add_argument("--no-recompute", action="store_true", help="only use embeddings the scan saved")
    p.set_defaults(func=_cmd_hessian)
    cli_extra.add_plot_parser(sub)
    cli_extra.add_sweep_parser(sub)
    cli_saddles.add_saddles_parser(sub)
    return parser


def main(argv=None) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (_UsageError, ValueError, OSError) as err:
        print(f"sclandscape: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
