"""The command line's parser: one function per command adds its arguments, shared groups and value parsers.

No JAX, NumPy or matplotlib at import (``--help`` and bad arguments answer at
once); ``commands`` holds the handlers, which import them when they run.
Each sub-command's parser sets ``args.command`` to its name.
"""

from __future__ import annotations

import argparse

#: The command line's one-line description (``sclandscape --help``).
DESCRIPTION = "The command line: scan, optimum, classify, hessian, plot, sweep, saddles, path, slice, demo."


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage as well)
        raise UsageError(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every real default; options without one (``None``) and flags (``False``) say nothing."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        if isinstance(action.default, (tuple, list)):  # as it is typed: png,pdf (not ('png', 'pdf'))
            return f"{action.help} (default: {','.join(str(v) for v in action.default)})"
        return super()._get_help_string(action)


def formatter(prog):
    return HelpFormatter(prog, max_help_position=32)


def parse_counts(text: str) -> tuple[int, ...]:
    from sclandscape.core import problems

    try:
        return problems.check_counts([int(c) for c in text.split(",")])
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            str(err) if "class" in str(err) else f"bad --counts {text!r}"
        ) from None


def parse_formats(text: str) -> tuple[str, ...]:
    from sclandscape.drawing.style import FORMATS

    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    if not formats or any(f not in FORMATS for f in formats):
        raise argparse.ArgumentTypeError(
            f"bad --formats {text!r} (comma-separated, from {', '.join(FORMATS)})"
        )
    return formats


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(text: str) -> int:
    """``2G``, ``500M``, ``1.5GiB``, ``4096`` (binary units: 1G = 2^30 bytes)."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    try:
        amount = float(value[: len(value) - len(unit)])
    except ValueError:
        amount = -1.0
    if not 1 <= amount * _UNITS[unit] < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a size such as 2G or 500M, got {text!r}")
    return int(amount * _UNITS[unit])


def parse_list(kind):
    def parse(text: str):
        try:
            return [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__}s, got {text!r}"
            ) from None

    return parse


def add_problem_arguments(p) -> None:
    g = p.add_argument_group("problem (give one of --counts, --classes/--per-class, --step)")
    g.add_argument("--counts", type=parse_counts, help="class sizes, e.g. 10,10,2,2")
    g.add_argument("--classes", type=int, help="number of classes k (balanced)")
    g.add_argument("--per-class", type=int, help="samples per class m (balanced)")
    g.add_argument(
        "--step", type=float, nargs=4, metavar=("K_MAJ", "K_MIN", "N_MIN", "R"), help="STEP imbalance"
    )
    g.add_argument("--tau", type=float, default=1.0, help="temperature")


def add_run_arguments(p, inits: int) -> None:
    g = p.add_argument_group("runs")
    g.add_argument("--inits", type=int, default=inits, help="random initialisations")
    g.add_argument("--seed", type=int, default=0, help="seed of the initialisations")
    g.add_argument("--tol", type=float, help="Riemannian gradient tolerance (default 1e-5; 1e-9 with --x64)")
    g.add_argument("--max-steps", type=int, default=5000, help="first-order steps per run")
    g.add_argument(
        "--slots",
        type=int,
        help="runs optimised concurrently (default: what --memory-budget holds, <= --inits)",
    )
    g.add_argument(
        "--memory-budget",
        type=parse_bytes,
        metavar="BYTES",
        help="memory the slots may take, e.g. 2G or 500M (default: min(2G, a quarter of physical memory))",
    )
    g.add_argument("--x64", action="store_true", help="optimise in float64")
    g.add_argument("--quiet", action="store_true", help="no progress display")


def _scan_command(command) -> None:
    p = command("scan", "batched landscape scan from random initialisations")
    add_problem_arguments(p)
    p.add_argument("--dim", type=int, required=True, help="embedding dimension d")
    add_run_arguments(p, inits=1024)
    p.add_argument("--out", required=True, help="results folder (must be new or empty)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted scan in --out")
    p.add_argument("--save-embeddings", action="store_true", help="store the final H of every run")
    g = p.add_argument_group("first-order optimiser (does the optimiser you train with reach L*?)")
    g.add_argument(
        "--optimizer",
        choices=("lbfgs", "adam", "sgd"),
        default="lbfgs",
        help="first-order phase; adam and sgd (optax) re-normalise the rows after every step",
    )
    g.add_argument("--learning-rate", type=float, help="of adam / sgd (default 0.01)")
    g.add_argument("--momentum", type=float, help="of sgd, heavy ball, 0 for none (default 0.9)")
    g.add_argument(
        "--no-polish",
        action="store_true",
        help="judge the point the optimiser reached as it is (no float64 L-BFGS / trust-region polish; "
        "the run must reach --tol itself)",
    )
    g = p.add_argument_group("several processes (jax.distributed)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="share the scan: jax.distributed coordinator")
    g.add_argument("--num-processes", type=int, metavar="N", help="processes sharing the scan")
    g.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")


def _optimum_command(command) -> None:
    p = command("optimum", "global optimum (class-level program) for given class counts and temperature")
    add_problem_arguments(p)
    p.add_argument("--json", action="store_true", help="print the optimum as JSON")


def _classify_command(command) -> None:
    p = command("classify", "classify points you bring: global minimum, spurious minimum, saddle, ...")
    p.add_argument("file", metavar="FILE.npz", help="arrays H (n, d) or (runs, n, d) and integer labels (n,)")
    p.add_argument(
        "--tau", type=float, help="temperature (default: the file's tau, as a scan's points.npz holds)"
    )
    p.add_argument(
        "--gtol", type=float, default=1e-4, help="gradient norm above which a point is not converged"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _hessian_command(command) -> None:
    p = command(
        "hessian",
        "Hessian spectra of chosen runs of a finished scan: full (n(d-1) <= 3000), or the trace and "
        "the spectral density at any size",
    )
    p.add_argument("dir", help="a finished scan folder")
    p.add_argument("--runs", help="comma-separated run indices (default: every distinct critical point)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    g = p.add_argument_group("matrix-free, any size (instead of the full spectra)")
    g.add_argument("--density", action="store_true", help="spectral density by stochastic Lanczos quadrature")
    g.add_argument(
        "--trace", action="store_true", help="trace by Hutchinson's estimator, with its standard error"
    )
    g.add_argument("--trace-probes", type=int, default=64, help="Rademacher probes of the trace")
    g.add_argument("--probes", type=int, default=4, help="Rademacher probes of the density")
    g.add_argument("--lanczos-steps", type=int, default=80, help="Lanczos steps per density probe")
    g.add_argument("--formats", type=parse_formats, default=("png",), help="of the density figures")


def _plot_command(command) -> None:
    p = command("plot", "(re)draw the figures and report.md of a finished scan or sweep")
    p.add_argument("dir", metavar="DIR", help="a folder written by `sclandscape scan` or `sclandscape sweep`")
    p.add_argument("--formats", type=parse_formats, default=("png", "pdf"), help="comma-separated formats")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _sweep_command(command) -> None:
    p = command("sweep", "one scan per cell of a grid over d, tau or the STEP ratio R, and the phase map")
    add_problem_arguments(p)
    p.add_argument("--dim", type=int, help="embedding dimension d when --dims is not swept")
    p.add_argument("--dims", type=parse_list(int), help="sweep d over these values, e.g. 1,2,3")
    p.add_argument("--taus", type=parse_list(float), help="sweep tau over these values, e.g. 0.1,1")
    p.add_argument(
        "--ratios", type=parse_list(float), help="sweep the STEP ratio R over these values (needs --step)"
    )
    add_run_arguments(p, inits=256)
    p.add_argument("--formats", type=parse_formats, default=("png", "pdf"), help="of the phase map")
    p.add_argument("--out", required=True, help="sweep folder (new, empty, or this sweep to resume)")


def _saddles_command(command) -> None:
    p = command("saddles", "catalogue of critical points from symmetric constructions and random starts")
    add_problem_arguments(p)
    p.add_argument("--dim", type=int, required=True, help="embedding dimension d (>= 2)")
    p.add_argument("--random", type=int, default=0, help="critical-point finder runs from random starts")
    p.add_argument("--restarts", type=int, default=1, help="random starts of each symmetric construction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-splits", action="store_true", help="skip the split-class constructions")
    p.add_argument("--no-escape", action="store_true", help="skip the descents from the saddles")
    p.add_argument("--formats", type=parse_formats, default=("png", "pdf"), help="of the figure")
    p.add_argument("--out", required=True, help="results folder (must be new or empty)")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _path_command(command) -> None:
    p = command("path", "minimum-energy paths between the minima of a finished scan: barriers and saddles")
    p.add_argument("dir", metavar="DIR", help="a finished scan folder (best with --save-embeddings)")
    p.add_argument(
        "--runs", metavar="I,J", help="the path between these two runs (default: every pair of minima)"
    )
    p.add_argument("--images", type=int, default=17, help="images on the string, endpoints included")
    p.add_argument("--max-iter", type=int, default=4000, help="string iterations per string")
    p.add_argument("--max-pairs", type=int, default=10, help="at most this many pairs of distinct minima")
    p.add_argument("--formats", type=parse_formats, default=("png",), help="of the figures")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _slice_command(command) -> None:
    p = command("slice", "1-D and 2-D loss slices around a run or a minimum of a finished scan")
    p.add_argument("dir", metavar="DIR", help="a finished scan folder (best with --save-embeddings)")
    p.add_argument("--run", type=int, help="around this run (default: the lowest distinct minimum)")
    p.add_argument("--minimum", type=int, help="around this distinct minimum (0 = lowest loss)")
    p.add_argument(
        "--directions",
        default="escape,random",
        help="comma-separated: eig:K (K-th Hessian eigenvector, symmetry modes removed), escape, "
        "random[:SEED], minimum:M or run:J (towards another minimum or run)",
    )
    p.add_argument("--surface", action="store_true", help="one 2-D slice along two directions")
    p.add_argument("--extent", type=float, help="grid over [-extent, extent] (default: from each direction)")
    p.add_argument("--points", type=int, help="grid points per axis (default 101, or 41 for --surface)")
    p.add_argument("--formats", type=parse_formats, default=("png",), help="of the figure")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _demo_command(command) -> None:
    p = command("demo", "run the default demonstration scans and their reports")
    p.add_argument("--out", default="sclandscape-demo", help="results folder")
    p.add_argument("--inits", type=int, default=256, help="random initialisations per case")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sclandscape", description=DESCRIPTION, formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    def command(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=formatter)
        p.add_argument(
            "--no-cache",
            action="store_true",
            help="do not use the persistent compilation cache (also: SCLANDSCAPE_CACHE_DIR=off)",
        )
        return p

    _scan_command(command)
    _optimum_command(command)
    _classify_command(command)
    _hessian_command(command)
    _plot_command(command)
    _sweep_command(command)
    _saddles_command(command)
    _path_command(command)
    _slice_command(command)
    _demo_command(command)
    return parser
