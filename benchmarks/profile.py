"""Where a whole scan's wall time goes: imports, set-up, compiling, first order, polish, judging, writing.

    .venv/bin/python benchmarks/profile.py [--classes 4 --per-class 5 --dim 8 --tau 0.5 --inits 64]
                                           [--cache DIR | --empty-cache] [--out FILE.json]

One process, timed from its first line: the imports (JAX, then the package),
then ``scan_study.run_scan`` with a progress callback that stamps every phase
change the scan reports (``compiling``, ``first order``, ``polish``,
``classification``, ``writing``) and a ``compilation.Stopwatch`` that splits the
compile time JAX reports (tracing, lowering, XLA compilation or a read from the
persistent cache). Each phase's wall time is the time from its first report to
the next phase's; "set-up" is ``run_scan`` before its first report (the folder,
the class-level optimum, the slot plan). Compile time happens inside phases
(the first batch compiles the polish and the records), so it is shown as a
column of its own, per phase, and its parts once for the whole scan.

Prints a table and writes it atomically as JSON (default
``benchmarks/results/profile.json``). ``--empty-cache`` uses a fresh cache
folder (the first scan a new environment sees); the default is the user's
persistent cache (run twice: the second run is the warm figure).
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402

JAX_S = time.perf_counter() - START

from sclandscape.core import compilation, problems  # noqa: E402
from sclandscape.explore import scanner  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.studies import scan as scan_study  # noqa: E402

IMPORTED = time.perf_counter()
IMPORT_S = IMPORTED - START


class PhaseClock:
    """Stamps phase changes: ``(phase, wall time, compile time so far)`` per change."""

    def __init__(self, watch: compilation.Stopwatch):
        self.watch = watch
        self.marks: list[tuple[str, float, float]] = []

    def __call__(self, done, total, phase=None, detail=None):
        del done, total, detail
        if phase and (not self.marks or self.marks[-1][0] != phase):
            self.marks.append((phase, time.perf_counter(), self.watch.compile_s))

    def rows(self, begin: float, end: float, compile_end: float) -> list[dict]:
        marks = [("set-up", begin, 0.0), *self.marks, ("end", end, compile_end)]
        totals: dict[str, list[float]] = {}
        for (name, t0, c0), (_, t1, c1) in zip(marks[:-1], marks[1:], strict=True):
            wall, comp = totals.setdefault(name, [0.0, 0.0])
            totals[name] = [wall + t1 - t0, comp + c1 - c0]
        return [{"phase": k, "wall_s": w, "compile_s": c} for k, (w, c) in totals.items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--inits", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=5000)
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache", help="persistent cache folder (default: the user's)")
    cache.add_argument("--empty-cache", action="store_true", help="a fresh, empty cache folder")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "profile.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = os.path.join(tmp, "cache") if args.empty_cache else args.cache
        cache_used = compilation.enable_cache(cache_dir)
        problem = problems.Problem.balanced(args.classes, args.per_class, args.dim, args.tau)
        settings = scanner.ScanSettings(max_steps=args.max_steps)
        watch = compilation.Stopwatch().start()
        clock = PhaseClock(watch)
        begin = time.perf_counter()
        folder = os.path.join(tmp, "scan")
        summary = scan_study.run_scan(problem, args.inits, 0, settings, folder, progress=clock)
        end = time.perf_counter()
        watch.stop()
        rows = clock.rows(begin, end, watch.compile_s)
    total = end - START
    report = {
        "problem": problem.to_json(),
        "inits": args.inits,
        "cache": "empty" if args.empty_cache else "persistent (as found)",
        "cache_dir_set": bool(cache_used),
        "process_s": total,
        "before_scan_s": begin - IMPORTED,
        "imports": {"jax_s": JAX_S, "sclandscape_s": IMPORT_S - JAX_S},
        "phases": rows,
        "compile": watch.to_json(),
        "counts": summary["counts"],
        "machine": {"devices": [str(d) for d in jax.devices()], "python": sys.version.split()[0]},
    }
    print(f"{'part':<22}{'wall (s)':>10}{'of which compiling':>20}")
    print(f"{'import jax':<22}{JAX_S:>10.2f}")
    print(f"{'import sclandscape':<22}{IMPORT_S - JAX_S:>10.2f}")
    print(f"{'(between)':<22}{begin - IMPORTED:>10.2f}")
    for row in rows:
        print(f"{row['phase']:<22}{row['wall_s']:>10.2f}{row['compile_s']:>20.2f}")
    print(f"{'whole process':<22}{total:>10.2f}{watch.compile_s:>20.2f}")
    parts = watch.phases()
    print("compiling = " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    atomic.write_json(args.out, report)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
