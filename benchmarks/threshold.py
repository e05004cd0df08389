"""The temperature threshold of a spurious minimum: continuation in tau from the proven one at tau = 0.02.

    make bench-threshold        (or: .venv/bin/python benchmarks/threshold.py)

Starts from the proven strict spurious minimum of counts 10,10,2,2, d = 5,
tau = 0.02 (``tests/data/spurious_step_d5_tau0.02.npz``) and follows its
family upwards in tau (``continuation.follow_family``): each branch by
predictor-corrector steps that stay on minima, every point judged by
``verdict.classify``; the end of each branch bisected to ``min_step`` and
diagnosed (``continuation.diagnose_end``: fold, crossing, merge); past a fold,
a descent finds the minimum the family falls to. The end of the last branch
is also bracketed by descents (``continuation.descent_bracket``), independently
of the corrector.

Writes ``benchmarks/results/threshold.json`` and ``threshold.png``: the gap
``L - L*`` and the smallest eigenvalue beyond the symmetry modes against tau,
one line per branch, each branch's end marked. A few minutes on two cores.
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

from sclandscape.drawing import plots  # noqa: E402
from sclandscape.explore import continuation  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "tests", "data", "spurious_step_d5_tau0.02.npz")
TAU_START, TAU_END = 0.02, 0.06
SETTINGS = continuation.ContinuationSettings()


def run_family(name: str, H, labels, tau_start: float) -> dict:
    start = time.perf_counter()
    family = continuation.follow_family(H, labels, tau_start, TAU_END, SETTINGS)
    last = family.branches[-1]
    bracket = continuation.descent_bracket(
        last.points[-1], labels, last.tau_last, last.tau_last + 4e-5, steps=8
    )
    out = family.to_json() | {"name": name, "descent_bracket": bracket}
    out["seconds"] = time.perf_counter() - start
    return out


def figure(report: dict) -> Figure:
    fig = Figure(figsize=(2 * plots.COLUMN_WIDTH, 2.6), layout="constrained")
    ax_gap, ax_lam = fig.subplots(1, 2)
    for fam in report["families"]:
        for b_index, branch in enumerate(fam["branches"]):
            pts = branch["points"]
            tau, gap, lam = (np.asarray(pts[k]) for k in ("tau", "gap", "lambda_min"))
            ending = branch["ending"]
            label = f"{fam['name']}, branch {b_index + 1} (ends: {ending['kind']})"
            (line,) = ax_gap.plot(tau, gap, marker=".", ms=3, lw=1, label=label)
            ax_lam.semilogy(tau, np.maximum(lam, 1e-12), marker=".", ms=3, lw=1, color=line.get_color())
            if math.isfinite(branch["tau_fail"]):
                tau_c = 0.5 * (branch["tau_last"] + branch["tau_fail"])
                for ax in (ax_gap, ax_lam):
                    ax.axvline(tau_c, color=line.get_color(), ls=":", lw=0.8)
                ax_gap.annotate(
                    rf"$\tau_c$={tau_c:.5f}", (tau_c, gap[-1]), fontsize=6, ha="right", va="bottom"
                )
    ax_gap.set_xlabel(r"temperature $\tau$")
    ax_gap.set_ylabel(r"gap $L - L^*(\tau)$")
    ax_lam.set_xlabel(r"temperature $\tau$")
    ax_lam.set_ylabel(r"$\lambda_{\min}$ (symmetry modes removed)")
    ax_gap.legend(fontsize=6, loc="upper right")
    fig.suptitle(
        "Spurious minimum of 10,10,2,2, d = 5, continued in tau (dotted: end of a branch)", fontsize=8
    )
    return fig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--draw", action="store_true", help="only redraw the figure from threshold.json")
    args = parser.parse_args()
    if args.draw:
        with open(os.path.join(args.out, "threshold.json")) as fh:
            report = json.load(fh)
        atomic.write_atomic(
            os.path.join(args.out, "threshold.png"), plots.figure_bytes(figure(report), "png")
        )
        return
    data = np.load(DATA)
    start = time.perf_counter()
    families = [run_family("10,10,2,2 d=5", data["H"], data["labels"], float(data["tau"]))]
    report = {
        "machine": machine_info(),
        "settings": SETTINGS.to_json(),
        "tau_range": [TAU_START, TAU_END],
        "families": families,
        "seconds": time.perf_counter() - start,
    }
    os.makedirs(args.out, exist_ok=True)
    atomic.write_json(os.path.join(args.out, "threshold.json"), report)
    atomic.write_atomic(os.path.join(args.out, "threshold.png"), plots.figure_bytes(figure(report), "png"))
    for fam in families:
        print(f"{fam['name']}: largest tau with a proven strict spurious minimum {fam['tau_proven']:.7f}")
        for i, branch in enumerate(fam["branches"]):
            e = branch["ending"]
            print(
                f"  branch {i + 1}: tau {branch['tau_start']:.6f} -> [{branch['tau_last']:.8f}, "
                f"{branch['tau_fail']:.8f}], ends: {e['kind']}, L {e['loss']:.4f}, gap {e['gap']:.4f}, "
                f"lambda_min {e['lambda_min']:.3e}"
            )
        print(f"  descent bracket of the last end: {fam['descent_bracket']['bracket']}")
    print(f"{report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
