"""The ``saddles`` subcommand: a catalogue of critical points, registered on ``cli.build_parser``.

In ``cli.build_parser``, after the other subcommands::

    cli_saddles.add_saddles_parser(sub)

``sclandscape saddles --classes 4 --per-class 5 --dim 3 --tau 1 --random 16 --out DIR`` writes

    DIR/catalogue.json        one entry per distinct critical point (``saddles.catalogue``)
    DIR/critical_points.npz   ``H`` (entries, n, d) in catalogue order, with ``loss``, ``index``, ``kind``
    DIR/saddles.{png,pdf}     loss against Morse index

Every file is written atomically, after all the computing; bad input raises
``ValueError`` before anything is written, which ``cli.main`` turns into one
line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from sclandscape import cli_extra, plots, problems, results, saddles


def add_saddles_parser(subparsers) -> argparse.ArgumentParser:
    """``sclandscape saddles``: find, classify and deduplicate critical points (minima and saddles)."""
    from sclandscape import cli

    p = subparsers.add_parser(
        "saddles", help="catalogue of critical points from symmetric constructions and random starts"
    )
    cli._add_problem_arguments(p)
    p.add_argument("--dim", type=int, required=True, help="embedding dimension d (>= 2)")
    p.add_argument("--random", type=int, default=0, help="critical-point finder runs from random starts")
    p.add_argument("--restarts", type=int, default=1, help="random starts of each symmetric construction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-splits", action="store_true", help="skip the split-class constructions")
    p.add_argument("--no-escape", action="store_true", help="skip the descents from the saddles")
    p.add_argument(
        "--formats", type=cli_extra._parse_formats, default=("png", "pdf"), help="of the figure (png,pdf)"
    )
    p.add_argument("--out", required=True, help="results folder (must be new or empty)")
    p.set_defaults(func=cmd_saddles)
    return p


def _check_out(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} exists and is not a folder")
    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"--out {out} exists and is not empty")


def cmd_saddles(args) -> int:
    from sclandscape import cli

    problem = problems.Problem(cli._problem_counts(args), args.dim, args.tau)
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
    _check_out(args.out)
    summary, H = saddles.catalogue(problem, seed=args.seed, settings=settings)
    figures = []
    if summary["entries"]:
        fig = saddles.catalogue_figure(summary)
        figures = [
            (os.path.join(args.out, f"saddles.{fmt}"), plots.figure_bytes(fig, fmt)) for fmt in args.formats
        ]
    entries = summary["entries"]
    results.write_json(os.path.join(args.out, "catalogue.json"), summary)
    results.write_npz(
        os.path.join(args.out, "critical_points.npz"),
        {
            "H": np.asarray(H, np.float64).reshape(len(entries), problem.n, problem.dim),
            "loss": np.array([e["loss"] for e in entries], np.float64),
            "index": np.array([e["index"] for e in entries], np.int64),
            "kind": np.array([e["kind"] for e in entries], "<U13"),
        },
    )
    for path, data in figures:
        results.write_atomic(path, data)
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
