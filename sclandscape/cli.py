"""Command line: ``sclandscape optimum | demo``.

Exit code 0 on success, 2 on bad input with a one-line message on stderr and
no traceback. Entry points enable float64 (the library never does on import).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from sclandscape import optimum, problems


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


DEMO_CASES = (
    # (title, counts, dim, tau): the benign landscape, and d < k - 1 where spurious minima appear.
    ("balanced, d >= k-1 (benign)", problems.balanced_counts(4, 5), 3, 1.0),
    ("imbalanced, d < k-1", (10, 10, 2, 2), 2, 1.0),
)


def _cmd_demo(args) -> int:
    from sclandscape import loss

    print("sclandscape demo: global optima of the demo problems (convex relaxation, CLS)")
    for title, counts, dim, tau in DEMO_CASES:
        opt = optimum.global_optimum(counts, tau)
        attained = dim >= opt.rank
        line = (
            f"- {title}: counts={list(counts)} d={dim} tau={tau}: L* = {opt.loss:.6f}, rank(M*) = {opt.rank}"
        )
        if attained:
            H = opt.embedding(dim)
            lam, gap = optimum.certificate(H, opt.labels, tau)
            value = float(loss.sc_loss(H, opt.labels, tau))
            line += f"; attained by H* (L = {value:.6f}, certificate lambda_min = {float(lam):.1e})"
        else:
            line += f"; not attainable with d={dim} < rank(M*): the landscape may hold spurious minima"
        print(line)
    print("The batched landscape scan and its figures are not part of this release yet.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sclandscape", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("optimum", help="global optimum (CLS) for given class counts and temperature")
    _add_problem_arguments(p)
    p.add_argument("--json", action="store_true", help="print the optimum as JSON")
    p.set_defaults(func=_cmd_optimum)
    p = sub.add_parser("demo", help="run the default demonstration")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (_UsageError, ValueError) as err:
        print(f"sclandscape: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
