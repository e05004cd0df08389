"""Every accelerator figure BENCHMARKS.md needs, from one short script (under 8 minutes on one GPU).

    .venv/bin/python benchmarks/accelerator.py [--small] [--out FILE.json] [--budget SECONDS]

Parts, each timed and recorded on its own (a part that fails records its error
and the others still run; the file is rewritten atomically after every part):

1. ``devices``: the backend, the devices, where float64 work is placed
   (``precision.float64_device``: the accelerator on GPUs, the host CPU on
   TPUs) and which streaming kernel ``auto`` picks (Pallas on GPUs).
2. ``throughput``: warm batched scans of problems A (10 classes of 10,
   d = 16, tau = 0.1) and B (4 classes of 5, d = 8, tau = 0.5), float32 first
   order and float64 polish, records and judging: converged runs per second
   and seconds per converged run (compiled first on one batch of the same
   slot count, so compilation is not counted; it is reported apart).
3. ``scan_1e5``: 10^5 initialisations of B in one scan (one compiled program
   refilled as runs finish): wall, converged runs, kinds.
4. ``streaming``: value and gradient of the SC loss at n = 20,000, d = 32
   (float32) without the n x n matrix, the Pallas kernel against the
   pure-JAX blocked path (median of repeats, after compilation), and the
   two values' agreement.
5. ``large_n``: a whole scan at n = 20,000 (10 classes of 2000, d = 32,
   2 inits, 3 first-order steps): wall, compile and run time, time per step,
   slots, and the device's peak memory where the runtime reports it.

``--small`` shrinks every size so the script runs on a CPU in a few minutes
(a check that it works before a device is lent); its numbers are not
accelerator figures. ``--budget`` stops starting new parts once that many
seconds have passed (default 450: the 8 minutes with a margin).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import traceback

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402
from scan import PROBLEMS, TOL  # noqa: E402  (the problems and tolerance of benchmarks/scan.py)

import sclandscape as sc  # noqa: E402
from sclandscape.core import compilation, precision  # noqa: E402
from sclandscape.explore import scanner  # noqa: E402
from sclandscape.folders import atomic  # noqa: E402
from sclandscape.numerics import streaming  # noqa: E402
from sclandscape.studies import scan as scan_study  # noqa: E402

FULL = {"inits": 8192, "slots": 4096, "many": 100_000, "many_slots": 8192, "n_per_class": 2000, "repeats": 10}
SMALL = {"inits": 256, "slots": 128, "many": 2048, "many_slots": 256, "n_per_class": 200, "repeats": 3}


def part_devices() -> dict:
    device = jax.local_devices()[0]
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": device.device_kind,
        "float64_device": str(precision.float64_device()),
        "streaming_kernel": streaming.kernel_impl(jnp.float32, "auto"),
    }


def _converged(parts) -> tuple[int, dict]:
    status = np.concatenate([p["status"] for p in parts])
    gnorm = np.concatenate([p["grad_norm"] for p in parts])
    kinds = np.concatenate([np.asarray(p["kind"]).astype(str) for p in parts])
    names, counts = np.unique(kinds, return_counts=True)
    return int(np.sum((status == 0) & (gnorm <= TOL))), dict(
        zip(names.tolist(), counts.tolist(), strict=True)
    )


def _scan_rate(name: str, inits: int, slots: int) -> dict:
    counts, d, tau = PROBLEMS[name]
    problem = sc.Problem(counts, d, tau)
    settings = scanner.ScanSettings(tol=TOL, slots=slots)
    with compilation.Stopwatch() as watch:
        runner = scanner.Scanner(problem, jax.random.key(0), settings, runs=inits)
        t0 = time.perf_counter()
        list(runner.results(range(runner.slots)))  # compiles every program for this slot count
        first = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts = list(runner.results(range(10**7, 10**7 + inits)))
    wall = time.perf_counter() - t0
    converged, kinds = _converged(parts)
    return {
        "problem": name,
        "runs": inits,
        "slots": runner.slots,
        "first_batch_s": first,
        "compile_s": watch.compile_s,
        "wall_s": wall,
        "converged": converged,
        "converged_per_s": converged / wall,
        "s_per_converged_run": wall / max(converged, 1),
        "kinds": kinds,
    }


def part_throughput(size: dict) -> dict:
    return {name: _scan_rate(name, size["inits"], size["slots"]) for name in PROBLEMS}


def part_scan_1e5(size: dict) -> dict:
    return _scan_rate("B", size["many"], size["many_slots"])


def _median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def part_streaming(size: dict) -> dict:
    labels = np.repeat(np.arange(10), size["n_per_class"])
    n, d, tau = labels.size, 32, 0.1
    H = jax.random.normal(jax.random.key(0), (n, d), jnp.float32)
    H = H / jnp.linalg.norm(H, axis=1, keepdims=True)
    out = {"n": n, "dim": d, "tau": tau}
    impls = ["jax"] + (["pallas"] if streaming.kernel_impl(jnp.float32, "auto") == "pallas" else [])
    values = {}
    for impl in impls:
        vg = jax.jit(
            jax.value_and_grad(lambda X, impl=impl: streaming.sc_loss_streaming(X, labels, tau, impl=impl))
        )
        seconds = _median_time(lambda vg=vg: vg(H), size["repeats"])
        values[impl] = float(vg(H)[0])
        out[impl] = {"value_and_grad_s": seconds, "loss": values[impl]}
    if "pallas" in values:
        out["pallas_speedup"] = out["jax"]["value_and_grad_s"] / out["pallas"]["value_and_grad_s"]
        out["relative_difference"] = abs(values["pallas"] - values["jax"]) / abs(values["jax"])
    else:
        out["pallas"] = "not run: this backend has no Pallas kernel (GPUs only)"
    return out


def part_large_n(size: dict) -> dict:
    problem = sc.Problem((size["n_per_class"],) * 10, 32, 0.1)
    steps = 3
    settings = scanner.ScanSettings(tol=TOL, max_steps=steps, chunk_steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = scan_study.run_scan(problem, 2, 0, settings, os.path.join(tmp, "scan"))
        wall = time.perf_counter() - t0
        config = atomic.read_json(os.path.join(tmp, "scan", "config.json"))
    timing = config.get("timing", {})
    row = {
        "n": problem.n,
        "dim": problem.dim,
        "runs": 2,
        "first_order_steps": steps,
        "wall_s": wall,
        "timing": timing,
        "execution": config.get("provenance", {}).get("execution"),
        "counts": summary.get("counts"),
    }
    stats = getattr(jax.local_devices()[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
        row["device_peak_gb"] = stats["peak_bytes_in_use"] / 2**30
    return row


PARTS = {
    "devices": lambda size: part_devices(),
    "throughput": part_throughput,
    "scan_1e5": part_scan_1e5,
    "streaming": part_streaming,
    "large_n": part_large_n,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized check of the script itself")
    parser.add_argument(
        "--out", default=None, help="JSON file (default benchmarks/results/accelerator[_small].json)"
    )
    parser.add_argument("--budget", type=float, default=450.0, help="seconds after which no new part starts")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    args = parser.parse_args(argv)
    chosen = [p for p in args.parts.split(",") if p]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    size = SMALL if args.small else FULL
    here = os.path.dirname(os.path.abspath(__file__))
    out = args.out or os.path.join(here, "results", f"accelerator{'_small' if args.small else ''}.json")
    record = {"machine": machine_info(), "small": args.small, "sizes": size, "parts": {}}
    start = time.perf_counter()
    for name in chosen:
        if time.perf_counter() - start > args.budget:
            record["parts"][name] = {"skipped": f"time budget of {args.budget:g} s spent"}
            continue
        t0 = time.perf_counter()
        try:
            row = PARTS[name](size)
        except Exception as err:  # one failing part must not lose the others' figures
            row = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=5)}
        row["part_s"] = time.perf_counter() - t0
        record["parts"][name] = row
        record["total_s"] = time.perf_counter() - start
        atomic.write_json(out, record)
        print(f"{name} ({row['part_s']:.1f} s): {row}", flush=True)
    print(f"written {out}")
    return 0 if all("error" not in r for r in record["parts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
