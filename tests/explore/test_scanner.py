"""Batched scans: equivalences, statuses, classification on small problems (float64)."""

import dataclasses
import json
import os
import struct
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.explore import scanner
from sclandscape.folders import atomic, merging, summaries
from sclandscape.numerics.optim import Status
from sclandscape.studies import scan as scan_study

SETTINGS = scanner.ScanSettings(tol=1e-9, x64=True, slots=4, chunk_steps=10)
FIELDS = ("loss", "grad_norm", "cert_lambda", "gap")


def test_batched_equals_loop_of_single_runs():
    problem = sc.Problem((4, 3, 3), 2, 0.5)
    got = scanner.scan(problem, 6, jax.random.key(3), SETTINGS)
    labels = jnp.asarray(problem.labels)
    one = jax.jit(lambda H: scanner.solve_one(H, labels, problem.tau, SETTINGS))
    for i in range(6):
        H0 = scanner.initial_point(scanner.run_key(jax.random.key(3), i), problem.n, problem.dim, jnp.float64)
        H, steps, status, _, _ = one(H0)
        assert int(steps) == got["steps"][i]
        assert int(status) == got["status"][i]
        assert float(sc.sc_loss(H, problem.labels, problem.tau)) == pytest.approx(got["loss"][i], abs=1e-10)


def test_one_compilation_serves_new_batches():
    problem = sc.Problem((3, 3), 2, 1.0)
    runner = scanner.Scanner(problem, jax.random.key(0), SETTINGS)
    first = list(runner.results(range(4)))
    second = list(runner.results(range(10, 17)))
    programs = runner._programs
    for program in (programs.advance, programs.finish, programs.records):
        assert program.cache_size() == 1
    assert sorted(np.concatenate([p["run"] for p in second]).tolist()) == list(range(10, 17))
    assert len(first) >= 1


def test_balanced_benign_landscape_all_global_and_certified():
    counts, d, tau = (3, 3, 3), 2, 0.5  # d = k - 1
    runs = scanner.scan(sc.Problem(counts, d, tau), 8, jax.random.key(1), SETTINGS)
    L_star = sc.global_optimum(counts, tau).loss
    assert np.all(runs["status"] == Status.CONVERGED)
    assert np.all(runs["grad_norm"] <= 1e-9)
    assert np.all(np.abs(runs["gap"]) <= 1e-9)
    assert set(runs["kind"]) == {"global_min"} and set(runs["decided_by"]) <= {"certificate", "gap"}
    # One global minimum is stored and fully classified: only the symmetry modes are zero.
    points = runs["points"]
    assert list(points["kind"]) == ["global_min"] and np.all(runs["point"] == 0)
    assert points["index"][0] == 0 and points["lambda_min"][0] > 0
    assert points["n_zero"][0] == points["n_zero_predicted"][0]
    summary = summaries.summarize(runs, L_star, SETTINGS, points)
    assert summary["counts"]["global_min"] == 8
    assert [(m["kind"], m["count"]) for m in summary["distinct_minima"]] == [("global_min", 8)]


def test_minima_below_rank_are_local_min_judged_once_per_distinct_point():
    counts, d, tau = (10, 10, 2, 2), 2, 1.0
    runs = scanner.scan(sc.Problem(counts, d, tau), 8, jax.random.key(0), SETTINGS)
    converged = runs["status"] == Status.CONVERGED
    assert converged.sum() >= 6
    assert np.all(runs["gap"][converged] > 0.1)  # d = 2 < rank(M*) = 3: L* is not attainable
    assert np.all(runs["cert_lambda"][converged] < -1e-3)
    # Each distinct minimum was proven a strict local minimum once, and lifts to an index-1 saddle.
    points = runs["points"]
    assert set(points["kind"]) == {"local_min"} and len(points["kind"]) <= 3
    assert set(points["decided_by"]) == {"proof"} and np.all(points["lifted_index"] == 1)
    assert np.all(runs["kind"][converged] == "local_min") and np.all(runs["point"][converged] >= 0)
    np.testing.assert_allclose(runs["loss"][converged], points["loss"][runs["point"][converged]], atol=1e-8)
    summary = summaries.summarize(runs, sc.global_optimum(counts, tau).loss, SETTINGS, points)
    assert summary["counts"]["local_min"] == converged.sum()
    assert summary["distinct_minima"][0]["gap_to_lowest"] == 0.0
    assert all(not m["certified_global"] for m in summary["distinct_minima"])


def test_saddles_escape_and_continue():
    """Runs started on a saddle (two of three classes merged) are judged saddles, escape along their
    negative curvature and end at the global minimum; the escape is recorded."""
    from reference import merged_saddle as _merged_saddle

    H, labels, _, _ = _merged_saddle(4, 3, 0.5)
    problem = sc.Problem((4, 4, 4, 4), 3, 0.5)
    runner = scanner.Scanner(
        problem, jax.random.key(0), SETTINGS, initial=lambda key, i: jnp.asarray(H, jnp.float64)
    )
    runs = next(runner.results([0, 1]))
    assert set(runs["kind"]) == {"global_min"}
    assert np.all(runs["escapes"] >= 1)


def test_judge_settings_are_validated():
    with pytest.raises(ValueError, match="escapes"):
        scanner.ScanSettings(escapes=-1)
    with pytest.raises(ValueError, match="unknown scan setting"):
        scanner.ScanSettings(hessian="all")


def test_non_finite_run_is_recorded_not_raised():
    problem = sc.Problem((3, 3), 2, 1.0)

    def initial(key, i):
        H = scanner.initial_point(scanner.run_key(key, i), problem.n, problem.dim, jnp.float64)
        return jnp.where(i == 1, jnp.nan, H)

    runner = scanner.Scanner(problem, jax.random.key(0), SETTINGS, initial=initial)
    parts = list(runner.results(range(4)))
    status = np.concatenate([p["status"] for p in parts])[
        np.argsort(np.concatenate([p["run"] for p in parts]))
    ]
    assert status[1] == Status.NON_FINITE
    assert np.all(status[[0, 2, 3]] == Status.CONVERGED)


# ---------------------------------------------------------------- folders and processes

CLI = [sys.executable, "-m", "sclandscape.cli"]
SCAN_ARGS = ["scan", "--counts", "4,3,3", "--dim", "2", "--tau", "0.5", "--x64", "--quiet", "--slots", "4"]


def _run_cli(*args, env=None):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=env, timeout=600)


def test_same_results_with_8_host_devices(tmp_path):
    one = _run_cli(*SCAN_ARGS, "--inits", "16", "--out", str(tmp_path / "one"))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    eight = _run_cli(*SCAN_ARGS, "--inits", "16", "--slots", "8", "--out", str(tmp_path / "eight"), env=env)
    assert one.returncode == 0 and eight.returncode == 0, one.stderr + eight.stderr
    a = merging.load_runs(str(tmp_path / "one"))
    b = merging.load_runs(str(tmp_path / "eight"))
    np.testing.assert_array_equal(a["status"], b["status"])
    np.testing.assert_array_equal(a["kind"], b["kind"])
    for f in FIELDS:
        np.testing.assert_allclose(a[f], b[f], rtol=1e-9, atol=1e-9)


@pytest.mark.slow  # a killed process and its resume (~25-100 s); test_reliability.py interrupts real scans
def test_kill_and_resume_matches_uninterrupted(tmp_path):
    out = tmp_path / "killed"
    n = 160  # enough chunks of 4 runs that the kill lands mid-scan
    args = [*SCAN_ARGS, "--inits", str(n), "--out", str(out)]
    proc = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunks = out / "chunks"
    import time

    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if chunks.is_dir() and len([f for f in os.listdir(chunks) if f.startswith("part-")]) >= 1:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (out / "summary.json").exists(), "the scan finished before the kill: make it longer"
    resumed = _run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    clean = _run_cli(*SCAN_ARGS, "--inits", str(n), "--out", str(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    a, b = merging.load_runs(str(out)), merging.load_runs(str(tmp_path / "clean"))
    np.testing.assert_array_equal(a["run"], np.arange(n))
    for f in ("status", "steps", "polish_evals", "polish_iters", "kind"):
        np.testing.assert_array_equal(a[f], b[f])
    for f in FIELDS:
        np.testing.assert_array_equal(a[f], b[f])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_inits"] == n and sum(summary["counts"].values()) == n


def test_existing_folder_refused_untouched_and_bad_input_writes_nothing(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = _run_cli(*SCAN_ARGS, "--inits", "2", "--out", str(out))
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    for bad in (["--counts", "3,1"], ["--tau", "-1"], ["--dim", "0"]):
        target = tmp_path / f"bad{len(os.listdir(tmp_path))}"
        args = [a for a in SCAN_ARGS]
        flag = bad[0]
        args[args.index(flag) + 1] = bad[1]
        proc = _run_cli(*args, "--inits", "2", "--out", str(target))
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not target.exists()


def test_corrupted_chunk_is_reported(tmp_path):
    problem = sc.Problem((3, 3), 2, 1.0)
    out = str(tmp_path / "scan")
    scan_study.run_scan(problem, 4, 0, SETTINGS, out)
    os.remove(os.path.join(out, "runs.npz"))
    chunk = merging.chunk_paths(out)[0]
    data = bytearray(open(chunk, "rb").read())
    # A byte of an array's data (a flipped header field the archive does not read would change nothing).
    member = zipfile.ZipFile(chunk).getinfo("loss.npy")
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    start = member.header_offset + 30 + name_len + extra_len
    data[start + member.compress_size // 2] ^= 0xFF
    open(chunk, "wb").write(bytes(data))
    with pytest.raises(atomic.ResultsError, match="corrupted"):
        scan_study.run_scan(problem, 4, 0, SETTINGS, out, resume=True)


@pytest.mark.slow  # ~20 s; test_streaming.py checks value, gradient, HVP and certificate against dense
def test_streaming_path_gives_the_dense_results():
    """``streaming="always"`` (what large n selects) agrees with the dense path run for run."""
    problem = sc.Problem((4, 3, 3), 2, 0.5)
    dense = scanner.scan(problem, 4, jax.random.key(2), dataclasses.replace(SETTINGS, streaming="never"))
    streamed = scanner.scan(problem, 4, jax.random.key(2), dataclasses.replace(SETTINGS, streaming="always"))
    np.testing.assert_array_equal(streamed["status"], dense["status"])
    assert np.all(streamed["grad_norm"] <= SETTINGS.tol)
    np.testing.assert_allclose(streamed["loss"], dense["loss"], rtol=1e-12)
    # The streaming certificate is a Lanczos estimate: it agrees at these sizes.
    np.testing.assert_allclose(streamed["cert_lambda"], dense["cert_lambda"], atol=1e-8)
    np.testing.assert_array_equal(streamed["kind"], dense["kind"])
    default = scanner.ScanSettings()
    assert scanner.streams(5000, default) and not scanner.streams(100, default)
    with pytest.raises(ValueError, match="streaming must be one of"):
        scanner.ScanSettings(streaming="maybe")


# ---------------------------------------------------------------- slots sized to the problem


def test_slots_never_exceed_the_runs_and_round_to_devices():
    given = scanner.ScanSettings(slots=256)
    assert scanner.plan(20, 8, given, runs=6).slots == 6
    assert scanner.plan(20, 8, given, runs=6, devices=4).slots == 8
    assert scanner.plan(20, 8, given).slots == 256
    chosen = scanner.plan(20, 8, scanner.ScanSettings(), runs=64)
    assert chosen.slots == 64 and chosen.slots_from == "memory_budget" and not chosen.stream
    assert scanner.plan(20, 8, scanner.ScanSettings()).slots == scanner.MAX_SLOTS


def test_memory_budget_chooses_slots_and_path():
    budget = 2 * scanner.GIB
    big = scanner.plan(20000, 32, scanner.ScanSettings(memory_budget=budget), runs=1000)
    assert big.stream and big.slots * big.slot_bytes <= budget and big.slots >= 1
    assert big.slot_bytes == scanner.slot_bytes(20000, 32, stream=True)
    # the dense path costs n^2 per slot: streaming holds more slots in the same budget
    dense = scanner.plan(5000, 32, scanner.ScanSettings(memory_budget=budget, streaming="never"), runs=1000)
    stream = scanner.plan(5000, 32, scanner.ScanSettings(memory_budget=budget), runs=1000)
    assert not dense.stream and stream.stream and stream.slots > dense.slots
    assert scanner.slot_bytes(5000, 32, stream=False) > 25 * 5000**2
    # float64 first-order state is larger
    assert scanner.slot_bytes(1000, 8, stream=True, x64=True) > scanner.slot_bytes(1000, 8, stream=True)
    # a budget below one slot per device is refused up front, naming the estimate
    one = scanner.slot_bytes(20000, 32, stream=True)
    with pytest.raises(ValueError, match=r"one run of n=20000, d=32 needs ~.* GiB per device"):
        scanner.plan(20000, 32, scanner.ScanSettings(memory_budget=2 * one - 1), runs=8, devices=2)
    assert scanner.plan(20000, 32, scanner.ScanSettings(memory_budget=2 * one), runs=8, devices=2).slots == 2
    assert scanner.plan(20000, 32, scanner.ScanSettings(memory_budget=1, slots=2), runs=8).slots == 2  # given
    assert 0 < scanner.default_memory_budget() <= scanner.MAX_DEFAULT_BUDGET


def test_bad_memory_budget_is_refused():
    with pytest.raises(ValueError, match="memory_budget"):
        scanner.ScanSettings(memory_budget=0)
    with pytest.raises(ValueError, match="slots"):
        scanner.ScanSettings(slots=0)
    from sclandscape.cli import commands as cli

    argv = ["scan", "--counts", "3,3", "--dim", "2", "--out", "never-written", "--memory-budget"]
    assert cli.main([*argv, "lots"]) == 2
    assert cli.main([*argv, "0"]) == 2
