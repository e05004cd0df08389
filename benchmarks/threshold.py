"""The temperature threshold of spurious minima: continuation in tau, folds located in arclength.

    make bench-threshold        (or: .venv/bin/python benchmarks/threshold.py)

1. **10,10,2,2, d = 5**: from the proven strict spurious minimum at tau = 0.02
   (``tests/data/spurious_step_d5_tau0.02.npz``), ``families.follow_family``
   upwards: natural predictor-corrector steps on minima (every point judged by
   ``verdict.classify``), then at each end the pseudo-arclength path through it
   (``ends.diagnose_end``): the fold's vertex between converged points of
   index 0 and 1, the square-root laws of ``|dH/dtau|`` and of the critical
   eigenvalue, the index-1 partner; past a fold, a descent finds the minimum the
   family falls to.
2. The minimum reached past the first fold, followed back **down** to tau = 0.02 and
   compared with the stored one (``metrics.align``).
3. **4 x 10 balanced, d = 3, 4, 5, tau = 0.02**: a search over spread constructions
   (``saddles.search_spurious``: one or two classes scattered by a repulsion energy,
   the others collapsed; at d = 5 also the stored 10,10,2,2 minimum's geometry
   relabelled), every end judged by ``verdict.classify`` and grouped modulo the
   symmetry group; the lowest spurious minimum found at d = 5 is then followed up in
   tau like the first family.

Writes ``benchmarks/results/threshold.json`` and ``threshold.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sclandscape.drawing import (  # noqa: E402
    style,
)
from sclandscape.explore import arclength, continuation, ends, families, saddles  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.theory import metrics, optimum, verdict  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "tests", "data", "spurious_step_d5_tau0.02.npz")
TAU_START, TAU_END = 0.02, 0.1
SETTINGS = continuation.ContinuationSettings()
BALANCED = (10, 10, 10, 10)
DIMS = (3, 4, 5)
#: The balanced minima followed in tau: the lowest FOLLOWED distinct spurious minima found at d = 5.
FOLLOWED = 2
BAL_SETTINGS = continuation.ContinuationSettings(classify=False)


def _verdict(H, labels, tau) -> dict:
    c = verdict.classify(H, labels, tau)
    return {
        "kind": str(c.kind),
        "strict_certified": bool(c.strict_certified),
        "loss": float(c.loss),
        "gap": float(c.gap),
        "lambda_min": float(c.lambda_min),
    }


def run_family(name: str, H, labels, tau_start: float, settings=SETTINGS) -> tuple[dict, families.Family]:
    start = time.perf_counter()
    family = families.follow_family(H, labels, tau_start, TAU_END, settings)
    out = family.to_json() | {"name": name, "seconds": time.perf_counter() - start}
    return out, family


def follow_back(family: families.Family, labels, stored) -> dict:
    """The minimum the descent past the first fold reached, continued down to TAU_START."""
    second = family.branches[1]
    start = time.perf_counter()
    back = continuation.continue_minimum(second.points[0], labels, second.tau_start, TAU_START, SETTINGS)
    end = back.points[-1]
    c = verdict.classify(end, labels, back.tau_last)
    align = metrics.align(stored, end, labels)
    out = {
        "from_tau": second.tau_start,
        "from_loss": float(second.loss[0]),
        "reached_end": bool(back.reached_end),
        "tau_last": back.tau_last,
        "loss": float(c.loss),
        "gap": float(c.gap),
        "kind": str(c.kind),
        "strict_certified": bool(c.strict_certified),
        "lambda_min": float(c.lambda_min),
        "stored_loss": float(verdict.classify(stored, labels, TAU_START).loss),
        "aligned_distance_to_stored": float(align.distance),
        "relabel": align.relabel.tolist(),
        "branch": back.to_json(),
    }
    if not back.reached_end:
        out["ending"] = ends.diagnose_end(back, labels).to_json()
    out["seconds"] = time.perf_counter() - start
    return out


def transplant(stored, stored_labels, counts) -> np.ndarray:
    """The stored 10,10,2,2 minimum's geometry on ``counts``: each class takes the points of the class
    of the same index (a scattered class keeps its spread; a collapsed class its direction)."""
    labels = np.repeat(np.arange(len(counts)), counts)
    X = np.zeros((labels.size, stored.shape[1]))
    for c, m in enumerate(counts):
        pts = stored[stored_labels == c]
        X[labels == c] = pts[np.arange(m) % len(pts)]
    return X


def search(stored, stored_labels) -> list[dict]:
    out = []
    for d in DIMS:
        start = time.perf_counter()
        extra = (
            [("transplant of the 10,10,2,2 minimum", transplant(stored, stored_labels, BALANCED))]
            if d == 5
            else []
        )
        r = saddles.search_spurious(
            BALANCED, d, TAU_START, saddles.spread_patterns(len(BALANCED)), extra=extra
        )
        r["seconds"] = time.perf_counter() - start
        out.append(r)
    return out


def figure(report: dict) -> Figure:
    fig = Figure(figsize=(2 * style.COLUMN_WIDTH, 2.8), layout="constrained")
    ax_gap, ax_law = fig.subplots(1, 2)
    for fam in report["families"]:
        for b_index, branch in enumerate(fam["branches"]):
            pts = branch["points"]
            tau, gap = np.asarray(pts["tau"]), np.asarray(pts["gap"])
            ending = branch["ending"]
            label = f"{fam['name']}, branch {b_index + 1} ({ending['kind']})"
            (line,) = ax_gap.plot(tau, gap, marker=".", ms=3, lw=1, label=label)
            if ending["kind"] == "fold":
                ax_gap.axvline(ending["tau_c"], color=line.get_color(), ls=":", lw=0.8)
                fit = ending["fit"]
                dist, pre = np.asarray(fit["distance"]), np.asarray(fit["prefactor"])
                if dist.size:
                    ax_law.loglog(
                        dist,
                        pre / np.sqrt(dist),
                        marker="o",
                        ms=3,
                        lw=0.8,
                        color=line.get_color(),
                        label=rf"$\tau_c$={ending['tau_c']:.10f}, slope {fit['tangent_exponent']:.3f}",
                    )
    x = np.logspace(-9, -3, 10)
    ax_law.loglog(x, 1.0 / np.sqrt(x), "k--", lw=0.6, label=r"$(\tau_c-\tau)^{-1/2}$")
    ax_gap.xaxis.set_major_locator(MaxNLocator(4))
    ax_gap.set_xlabel(r"temperature $\tau$")
    ax_gap.set_ylabel(r"gap $L - L^*(\tau)$")
    ax_gap.legend(fontsize=5, loc="upper right")
    ax_law.set_xlabel(r"$\tau_c - \tau$")
    ax_law.set_ylabel(r"$|dH/d\tau|$ on the minimum")
    ax_law.legend(fontsize=5, loc="upper right")
    fig.suptitle("Spurious minima continued in tau (dotted: folds, located in arclength)", fontsize=8)
    return fig


def _clean_search(r: dict) -> dict:
    return r | {"distinct": [{k: v for k, v in e.items() if k != "H"} for e in r["distinct"]]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--draw", action="store_true", help="only redraw the figure from threshold.json")
    args = parser.parse_args()
    if args.draw:
        with open(os.path.join(args.out, "threshold.json")) as fh:
            report = json.load(fh)
        atomic.write_atomic(
            os.path.join(args.out, "threshold.png"), style.figure_bytes(figure(report), "png")
        )
        return
    data = np.load(DATA)
    H, labels, tau = data["H"], data["labels"], float(data["tau"])
    start = time.perf_counter()
    step_json, step_family = run_family("10,10,2,2 d=5", H, labels, tau)
    families = [step_json]
    back = follow_back(step_family, labels, H) if len(step_family.branches) > 1 else None
    searches = search(H, labels)
    balanced = []
    d5 = next(r for r in searches if r["dim"] == 5)
    lab = np.repeat(np.arange(len(BALANCED)), BALANCED)
    for rank, found in enumerate(d5["distinct"][:FOLLOWED]):
        bal_json, bal_family = run_family(
            f"4 x 10 d=5, minimum {rank + 1}", found["H"], lab, TAU_START, BAL_SETTINGS
        )
        # The branch points are not judged one by one here (n = 40): the last point of each is.
        bal_json["last_points"] = [
            {"tau": b.tau_last, **_verdict(b.points[-1], lab, b.tau_last)} for b in bal_family.branches
        ]
        bal_json["start"] = {k: v for k, v in found.items() if k != "H"}
        families.append(bal_json)
        balanced.append(bal_json["name"])
    report = {
        "machine": machine_info(),
        "settings": SETTINGS.to_json(),
        "arclength_settings": arclength.ArclengthSettings().to_json(),
        "tau_range": [TAU_START, TAU_END],
        "families": families,
        "followed_back": back,
        "balanced_search": [_clean_search(r) for r in searches],
        "balanced_families": balanced,
        "global_loss_balanced": float(optimum.global_optimum(BALANCED, TAU_START).loss),
        "seconds": time.perf_counter() - start,
    }
    os.makedirs(args.out, exist_ok=True)
    atomic.write_json(os.path.join(args.out, "threshold.json"), report)
    atomic.write_atomic(os.path.join(args.out, "threshold.png"), style.figure_bytes(figure(report), "png"))
    for fam in families:
        print(f"{fam['name']}: largest tau with a proven strict spurious minimum {fam['tau_proven']:.10f}")
        for lp in fam.get("last_points", []):
            print(
                f"  last point of a branch at tau {lp['tau']:.10f}: {lp['kind']} "
                f"strict {lp['strict_certified']}"
            )
        for i, branch in enumerate(fam["branches"]):
            e = branch["ending"]
            print(
                f"  branch {i + 1}: tau {branch['tau_start']:.8f} -> tau_c {e['tau_c']:.11f} "
                f"bracket [{e['bracket'][0]:.12f}, {e['bracket'][1]:.12f}], ends: {e['kind']}, "
                f"L {e['loss']:.6f}, gap {e['gap']:.4f}, partner {e['partner'].get('found')} "
                f"(distance {e['partner'].get('distance', math.nan):.3g}, "
                f"lambda {e['partner'].get('lambda_min', math.nan):.3g})"
            )
        for landing in fam["landings"]:
            print(f"  landing at tau {landing['tau']:.8f}: L {landing['loss']:.6f} {landing['kind']}")
    if back:
        print(
            f"followed back to tau {back['tau_last']}: L {back['loss']:.6f} "
            f"(stored {back['stored_loss']:.6f}), "
            f"gap {back['gap']:.4f}, lambda_min {back['lambda_min']:.3e}, {back['kind']}, "
            f"aligned distance to the stored {back['aligned_distance_to_stored']:.3g}"
        )
    for r in searches:
        kinds = {k: r["kind"].count(k) for k in sorted(set(r["kind"]))}
        print(f"4 x 10, d = {r['dim']}: {r['starts']} starts, {kinds}, {r['seconds']:.0f} s")
        for e in r["distinct"]:
            print(
                f"    L {e['loss']:.6f} gap {e['gap']:.4f} {e['kind']} strict {e['strict_certified']} "
                f"lambda_min {e['lambda_min']:.3e} x{e['count']} ({e['names'][0]}), "
                f"|class means| {np.round(e['class_mean_norms'], 4).tolist()}"
            )
    print(f"{report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
