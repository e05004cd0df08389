"""Regime maps: where random initialisation reaches the optimum, over d and tau, balanced and STEP.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/regimes.py [--inits 64] [--work DIR]

One ``sweep.run_sweep`` (a resumable scan per cell, ``--inits`` random
initialisations each, the scan's default optimiser and Hessian
classification) for each of

- balanced: 4 classes of 5 (n = 20, rank M* = 3 = k - 1);
- STEP: 2 majority classes of 10 and 2 minority classes of 2 (n_min = 2, R = 5);

over d in {2, 3, 4, 5} and tau in {0.02, 0.1, 0.5, 1, 5}.

What "reaching the global optimum" means: for d >= rank M* the relaxation's
L* is attained and a run reaches it when it ends ``global_min`` (certificate
or loss within tolerance of L*). For d < rank M* L* is not attainable and the
true optimum of the rank-constrained problem is unknown, so a run counts as
reaching the optimum when its loss is within ``--best-rtol`` (relative) of the
**best loss found by any run of that cell** (certified or not). The same
definition is used for every cell ("fraction_best"); "fraction_certified" is
the certificate-only fraction. Spurious minima are the distinct minima
(the summary's distinct minima: ``global_min``, ``spurious_min``,
``local_min`` below rank M*, ``degenerate``) other than the best one; for
d >= rank M* they are exactly the minima that are not global. A scan's
``saddle`` is a run whose escape along negative curvature failed; runs that
do not converge are neither.

Writes ``benchmarks/results/regimes.json`` and the phase maps
``benchmarks/results/regimes_{balanced,step}.{png,pdf}`` (fraction reaching the best
loss, annotated with the number of spurious minima, hatched where d < rank M*).
The per-cell scan folders go to ``--work`` (a temporary folder by default) and
are not kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

from sclandscape.core import problems  # noqa: E402
from sclandscape.drawing import (  # noqa: E402
    maps,
    style,
)
from sclandscape.explore import scanner  # noqa: E402
from sclandscape.folders import atomic, merging, summaries  # noqa: E402
from sclandscape.studies import sweep  # noqa: E402

DIMS = (2, 3, 4, 5)
TAUS = (0.02, 0.1, 0.5, 1.0, 5.0)
PROBLEMS = {
    "balanced": problems.balanced_counts(4, 5),
    "step": problems.step_counts(2, 2, 2, 5),
}
HERE = os.path.dirname(os.path.abspath(__file__))


def cell_metrics(runs: dict, summary: dict, dim: int, best_rtol: float) -> dict:
    kind = np.asarray(runs["kind"]).astype(str)
    loss = np.asarray(runs["loss"], np.float64)
    n = kind.size
    minima = np.isin(kind, summaries.MINIMA)
    L_star = float(summary["global_loss"])
    rank = int(summary["global_rank"])
    out = {
        "dim": dim,
        "global_loss": L_star,
        "global_rank": rank,
        "attainable": dim >= rank,
        "n_inits": n,
        "counts": summary["counts"],
        "fraction_certified": float(np.mean(kind == "global_min")),
    }
    if not minima.any():
        out.update(best_loss=None, fraction_best=0.0, n_spurious_minima=0, spurious_minima=[])
        return out
    best = float(np.min(loss[minima]))
    tol = best_rtol * max(1.0, abs(best))
    at_best = minima & (loss <= best + tol)
    spurious = [m for m in summary["distinct_minima"] if m["loss"] > best + tol]
    out.update(
        best_loss=best,
        best_gap=best - L_star,
        fraction_best=float(np.mean(at_best)),
        fraction_best_of_converged=float(np.sum(at_best) / max(1, np.sum(kind != "not_converged"))),
        n_spurious_minima=len(spurious),
        spurious_minima=[
            {"loss": m["loss"], "gap_to_best": m["loss"] - best, "count": m["count"]} for m in spurious
        ],
    )
    return out


def phase_figure(name: str, counts, cells: list[dict], inits: int):
    frac = np.full((len(TAUS), len(DIMS)), np.nan)
    notes = np.full(frac.shape, "", dtype=object)
    hatch = np.zeros(frac.shape, bool)
    for c in cells:
        i, j = TAUS.index(c["tau"]), DIMS.index(c["dim"])
        frac[i, j] = c["fraction_best"]
        hatch[i, j] = not c["attainable"]
        extra = []
        if c["n_spurious_minima"]:
            extra.append(f"{c['n_spurious_minima']} spur.")
        if c["counts"]["saddle"]:
            extra.append(f"{c['counts']['saddle']} sad.")
        notes[i, j] = "\n".join(extra)
    return maps.phase_map(
        DIMS,
        TAUS,
        frac,
        xlabel="embedding dimension $d$",
        ylabel=r"temperature $\tau$",
        annotations=notes,
        hatch=hatch,
        hatch_label="$d <$ rank $M^*$: best loss found, not $L^*$",
        title=f"{name}: counts {','.join(str(c) for c in counts)}; {inits} runs a cell",
        colorbar_label="fraction reaching the best loss",
        width=1.4 * style.COLUMN_WIDTH,
    )


def draw(report: dict, out: str) -> None:
    for name, data in report["problems"].items():
        fig = phase_figure(name, data["counts"], data["cells"], report["config"]["inits"])
        for fmt in ("png", "pdf"):
            atomic.write_atomic(os.path.join(out, f"regimes_{name}.{fmt}"), style.figure_bytes(fig, fmt))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--best-rtol", type=float, default=1e-6)
    parser.add_argument("--work", help="folder for the per-cell scans (default: a temporary one, deleted)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the figures from regimes.json")
    args = parser.parse_args()
    if args.plot_only:
        with open(os.path.join(args.out, "regimes.json")) as f:
            draw(json.load(f), args.out)
        return
    work = args.work or tempfile.mkdtemp(prefix="regimes-")
    settings = scanner.ScanSettings(slots=args.inits)
    report = {
        "machine": machine_info(),
        "config": {
            "dims": list(DIMS),
            "taus": list(TAUS),
            "inits": args.inits,
            "seed": args.seed,
            "best_rtol": args.best_rtol,
            "settings": settings.to_json(),
            "definition": (
                "fraction_best: runs ending at a minimum within best_rtol (relative) of the best loss "
                "any run of the cell found (= L* where d >= rank M*, where such runs are also certified); "
                "spurious minima: distinct minima above that best loss"
            ),
        },
        "problems": {},
    }
    start = time.perf_counter()
    try:
        for name, counts in PROBLEMS.items():
            t0 = time.perf_counter()
            folder = os.path.join(work, name)
            state = sweep.run_sweep(
                problems.Problem(counts, DIMS[0], TAUS[0]),
                {"dim": list(DIMS), "tau": list(TAUS)},
                args.inits,
                folder,
                seed=args.seed,
                settings=settings,
                log=print,
            )
            cells = []
            for cell in state["cells"]:
                path = os.path.join(folder, cell["path"])
                runs = merging.load_runs(path)
                summary = cell_summary(path)
                metrics = cell_metrics(runs, summary, cell["values"]["dim"], args.best_rtol)
                metrics["tau"] = cell["values"]["tau"]
                cells.append(metrics)
            high = [c for c in cells if c["dim"] >= len(counts) - 1]
            report["problems"][name] = {
                "counts": list(counts),
                "global_rank": cells[0]["global_rank"],
                "seconds": time.perf_counter() - t0,
                "cells": cells,
                "spurious_minima_at_d_ge_k_minus_1": sum(c["n_spurious_minima"] for c in high),
                "boundary": boundary(cells),
            }
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = time.perf_counter() - start
    atomic.write_json(os.path.join(args.out, "regimes.json"), report)
    draw(report, args.out)
    print_table(report)


def cell_summary(path: str) -> dict:
    with open(os.path.join(path, "summary.json")) as f:
        return json.load(f)


def boundary(cells: list[dict]) -> dict:
    """Per tau: the smallest d from which every larger d has no spurious minimum and all runs that end at
    a minimum end at the best one."""
    out = {}
    for tau in TAUS:
        row = sorted((c for c in cells if c["tau"] == tau), key=lambda c: c["dim"])
        benign = None
        for c in reversed(row):
            if c["n_spurious_minima"] == 0:
                benign = c["dim"]
            else:
                break
        out[f"{tau:g}"] = benign
    return out


def print_table(report: dict) -> None:
    for name, data in report["problems"].items():
        print(f"\n{name} {data['counts']} (rank M* = {data['global_rank']}), {data['seconds']:.0f} s")
        print("| tau | d | best gap | frac best | frac certified | spurious minima | saddles | not conv |")
        print("|---|---|---|---|---|---|---|---|")
        for c in sorted(data["cells"], key=lambda c: (c["tau"], c["dim"])):
            gap = "-" if c["best_loss"] is None else f"{c['best_gap']:.3g}"
            print(
                f"| {c['tau']:g} | {c['dim']} | {gap} | {c['fraction_best']:.2f} | "
                f"{c['fraction_certified']:.2f} | {c['n_spurious_minima']} | {c['counts']['saddle']} | "
                f"{c['counts']['not_converged']} |"
            )
        print(f"boundary (benign from d =): {data['boundary']}")
        print(f"spurious minima at d >= k-1: {data['spurious_minima_at_d_ge_k_minus_1']}")
    print(f"\ntotal {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
