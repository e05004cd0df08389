"""Batched scans: equivalences, statuses, classification on small problems (float64)."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape import results, scanner
from sclandscape.optim import Status

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
    assert programs.advance._cache_size() == 1
    assert programs.finish._cache_size() == 1
    assert programs.records._cache_size() == 1
    assert sorted(np.concatenate([p["run"] for p in second]).tolist()) == list(range(10, 17))
    assert len(first) >= 1


def test_balanced_benign_landscape_all_global_and_certified():
    counts, d, tau = (3, 3, 3), 2, 0.5  # d = k - 1
    summary_runs = scanner.scan(sc.Problem(counts, d, tau), 8, jax.random.key(1), SETTINGS)
    L_star = sc.global_optimum(counts, tau).loss
    assert np.all(summary_runs["status"] == Status.CONVERGED)
    assert np.all(summary_runs["grad_norm"] <= 1e-9)
    assert np.all(np.abs(summary_runs["gap"]) <= 1e-9)
    assert np.all(summary_runs["cert_gap_bound"] <= 1e-6)
    assert set(summary_runs["kind"]) == {"global_min"}
    # n(d-1) = 9 <= 256: every converged run has its spectrum; only the symmetry modes are zero.
    assert np.all(summary_runs["hess_index"] == 0)
    assert np.all(summary_runs["hess_lambda_min"] > 0)
    np.testing.assert_array_equal(summary_runs["hess_n_zero"], summary_runs["hess_n_zero_predicted"])
    summary = results.summarize(summary_runs, L_star, SETTINGS)
    assert summary["counts"]["global_min"] == 8
    assert [m["certified_global"] for m in summary["distinct_minima"]] == [True]


def test_spurious_minima_found_and_flagged_below_k_minus_1():
    counts, d, tau = (10, 10, 2, 2), 2, 1.0
    runs = scanner.scan(sc.Problem(counts, d, tau), 8, jax.random.key(0), SETTINGS)
    L_star = sc.global_optimum(counts, tau).loss
    converged = runs["status"] == Status.CONVERGED
    assert converged.sum() >= 6
    assert np.all(runs["gap"][converged] > 0.1)  # d = 2 < rank(M*) = 3: L* is not attainable
    assert np.all(runs["cert_lambda"][converged] < -1e-3)
    # The Hessian confirms they are strict local minima (index 0, positive beyond the symmetry modes).
    assert np.all(runs["hess_index"][converged] == 0)
    assert np.all(runs["hess_lambda_min"][converged] > 0)
    summary = results.summarize(runs, L_star, SETTINGS)
    assert summary["counts"]["spurious_min"] == converged.sum()
    assert all(not m["certified_global"] for m in summary["distinct_minima"])


def test_hessian_modes_choose_which_runs_get_a_spectrum():
    problem = sc.Problem((3, 3, 3), 2, 0.5)
    for mode, expect in (("none", False), ("uncertified", False), ("all", True)):
        settings = dataclasses.replace(SETTINGS, hessian=mode)
        runs = scanner.scan(problem, 3, jax.random.key(1), settings)
        assert set(runs["kind"]) == {"global_min"}  # certified, whatever the mode
        assert np.all(np.isfinite(runs["hess_lambda_min"]) == expect), mode
        assert np.all((runs["hess_index"] >= 0) == expect), mode
    with pytest.raises(ValueError, match="hessian must be one of"):
        scanner.ScanSettings(hessian="sometimes")


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
    a = results.load_runs(str(tmp_path / "one"))
    b = results.load_runs(str(tmp_path / "eight"))
    np.testing.assert_array_equal(a["status"], b["status"])
    np.testing.assert_array_equal(a["kind"], b["kind"])
    for f in FIELDS:
        np.testing.assert_allclose(a[f], b[f], rtol=1e-9, atol=1e-9)


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
    a, b = results.load_runs(str(out)), results.load_runs(str(tmp_path / "clean"))
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
    results.run_scan(problem, 4, 0, SETTINGS, out)
    os.remove(os.path.join(out, "runs.npz"))
    chunk = results._chunk_paths(out)[0]
    data = bytearray(open(chunk, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(chunk, "wb").write(bytes(data))
    with pytest.raises(results.ResultsError, match="corrupted"):
        results.run_scan(problem, 4, 0, SETTINGS, out, resume=True)


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
