"""One scan shared by two local CPU processes through ``jax.distributed`` (``scan --coordinator``).

Each process runs the run indices of its residue class on its own device; a run
depends only on ``fold_in(key, run)``, so the merged results must equal a
single-process scan's. CPU processes talk through gloo (JAX's default CPU
collectives); the scan itself needs only the one start-up agreement.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from sclandscape.folders import merging

CLI = [sys.executable, "-m", "sclandscape.cli"]
SCAN_ARGS = ["scan", "--counts", "4,3,3", "--dim", "2", "--tau", "0.5", "--x64", "--quiet", "--slots", "4"]
SCAN_ARGS += ["--inits", "16"]
# CPU only, so that the test means the same on a machine with accelerators.
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(out, *extra):
    """Run the scan as processes 0 and 1 of two; ``(returncode, stdout, stderr)`` of each."""
    shared = [*SCAN_ARGS, "--out", str(out), *extra]
    shared += ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    procs = [
        subprocess.Popen(
            CLI + shared + ["--process-id", str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for i in range(2)
    ]
    done = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            done.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


# Real processes (~40 s on 2 cores): with the heavy checks; the 8-device test of test_scanner.py
# shards a scan in the fast suite.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shared_scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed") / "two"
    done = _two_processes(out)
    assert all(rc == 0 for rc, _, _ in done), "\n".join(err for _, _, err in done)
    return out


def test_two_processes_equal_one(shared_scan, tmp_path):
    chunks = os.listdir(shared_scan / "chunks")
    assert any(c.startswith("part-p000-") for c in chunks) and any(c.startswith("part-p001-") for c in chunks)
    single = subprocess.run(
        CLI + SCAN_ARGS + ["--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    a, b = merging.load_runs(str(shared_scan)), merging.load_runs(str(tmp_path / "one"))
    np.testing.assert_array_equal(a["run"], np.arange(16))
    for f in ("run", "status", "steps", "polish_evals", "polish_iters", "kind"):
        np.testing.assert_array_equal(a[f], b[f])
    for f in ("loss", "grad_norm", "cert_lambda", "gap"):
        np.testing.assert_allclose(a[f], b[f], rtol=1e-12, atol=1e-12)
    sa = json.loads((shared_scan / "summary.json").read_text())
    sb = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert sa["counts"] == sb["counts"] and sa["status_counts"] == sb["status_counts"]
    assert sa["n_inits"] == 16 and sum(sa["counts"].values()) == 16


def test_refusal_stops_every_process(shared_scan):
    before = {f: os.path.getmtime(shared_scan / f) for f in ("config.json", "runs.npz", "summary.json")}
    (rc0, _, err0), (rc1, _, err1) = _two_processes(shared_scan)
    assert rc0 == 2 and "not empty" in err0
    assert rc1 == 2 and "process 0 refused" in err1
    assert before == {f: os.path.getmtime(shared_scan / f) for f in before}
