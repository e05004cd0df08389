"""The ``plot`` and ``sweep`` subcommands, registered on ``cli.build_parser``'s subparsers.

In ``cli.build_parser``, after the other subcommands::

    cli_extra.add_plot_parser(sub)
    cli_extra.add_sweep_parser(sub)

The handlers raise ``ValueError`` (``results.ResultsError`` included) or
``OSError`` on bad input, which ``cli.main`` turns into one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import os

from sclandscape import plots


def _cli():
    from sclandscape import cli  # lazy: cli imports this module

    return cli


def _parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    if not formats or any(f not in plots.FORMATS for f in formats):
        raise argparse.ArgumentTypeError(
            f"bad --formats {text!r} (comma-separated, from {', '.join(plots.FORMATS)})"
        )
    return formats


def _parse_list(kind):
    def parse(text: str):
        try:
            return [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None

    return parse


# --------------------------------------------------------------------------
# sclandscape plot DIR


def add_plot_parser(subparsers) -> argparse.ArgumentParser:
    """``sclandscape plot DIR``: (re)draw the figures and report of a finished scan or sweep."""
    p = subparsers.add_parser("plot", help="(re)draw the figures and report.md of a finished scan or sweep")
    p.add_argument("dir", metavar="DIR", help="a folder written by `sclandscape scan` or `sclandscape sweep`")
    p.add_argument(
        "--formats", type=_parse_formats, default=("png", "pdf"), help="comma-separated (default png,pdf)"
    )
    p.add_argument(
        "--no-recompute",
        action="store_true",
        help="do not recompute one run per distinct minimum for the Gram figures (scans without embeddings)",
    )
    p.set_defaults(func=cmd_plot)
    return p


def cmd_plot(args) -> int:
    from sclandscape import report, sweep

    if not os.path.isdir(args.dir):
        raise ValueError(f"{args.dir} is not a folder")
    if os.path.exists(os.path.join(args.dir, "sweep.json")):
        written = sweep.plot_sweep(args.dir, args.formats)
    else:
        written = report.plot_results(args.dir, args.formats, recompute=not args.no_recompute)
    for path in written:
        print(path)
    return 0


# --------------------------------------------------------------------------
# sclandscape sweep ...


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    """``sclandscape sweep``: one scan per cell of a grid over one or two of d, tau, R; phase map."""
    cli = _cli()
    p = subparsers.add_parser(
        "sweep", help="one scan per cell of a grid over d, tau or the STEP ratio R, and the phase map"
    )
    cli._add_problem_arguments(p)
    p.add_argument("--dim", type=int, help="embedding dimension d when --dims is not swept")
    p.add_argument("--dims", type=_parse_list(int), help="sweep d over these values, e.g. 1,2,3")
    p.add_argument("--taus", type=_parse_list(float), help="sweep tau over these values, e.g. 0.1,1")
    p.add_argument(
        "--ratios", type=_parse_list(float), help="sweep the STEP ratio R over these values (needs --step)"
    )
    p.add_argument("--inits", type=int, default=256, help="random initialisations per cell (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, help="Riemannian gradient tolerance (1e-5; 1e-9 with --x64)")
    p.add_argument("--max-steps", type=int, default=5000, help="first-order steps per run")
    p.add_argument("--slots", type=int, default=256, help="runs optimised concurrently")
    p.add_argument("--x64", action="store_true", help="optimise in float64")
    p.add_argument("--formats", type=_parse_formats, default=("png", "pdf"), help="of the phase map")
    p.add_argument("--out", required=True, help="sweep folder (new, empty, or this sweep to resume)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    return p


def sweep_arguments(args):
    """``(problem, grid, step)`` from parsed ``sweep`` arguments (``ValueError`` on bad input)."""
    from sclandscape import problems

    cli = _cli()
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
    counts = cli._problem_counts(args)
    dim = args.dim if args.dim is not None else args.dims[0]
    tau = args.tau
    return problems.Problem(counts, dim, tau), grid, step


def cmd_sweep(args) -> int:
    from sclandscape import sweep

    cli = _cli()
    problem, grid, step = sweep_arguments(args)
    if not args.inits >= 1:
        raise ValueError(f"--inits must be >= 1, got {args.inits}")
    state = sweep.run_sweep(
        problem,
        grid,
        args.inits,
        args.out,
        seed=args.seed,
        settings=cli._settings(args),
        step=step,
        formats=args.formats,
        progress=cli._progress(args.quiet),
        log=print,
    )
    print(f"sweep of {len(state['cells'])} cells in {args.out}: {os.path.join(args.out, 'sweep.json')}")
    for path in state["figures"]:
        print(os.path.join(args.out, path))
    return 0
