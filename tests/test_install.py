"""Install from a wheel into a fresh virtual environment: the command line and a tiny scan work there.

Slow (a fresh environment installs JAX and its dependencies); skipped with the reason when pip cannot
reach a package index (dependencies that pip has cached need none).
"""

import glob
import os
import subprocess
import sys
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: pip's words when it cannot reach an index (or the index lacks what is needed offline).
OFFLINE = (
    "Could not find a version that satisfies",
    "No matching distribution found",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Failed to establish a new connection",
    "Network is unreachable",
    "ProxyError",
    "connection broken",
    "Max retries exceeded",
)


def _run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def _skip_if_offline(proc, what):
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 and any(s in text for s in OFFLINE):
        pytest.skip(f"{what}: pip cannot reach a package index ({text.strip().splitlines()[-1]})")
    assert proc.returncode == 0, f"{what} failed:\n{text[-3000:]}"


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_scans(tmp_path):
    dist = tmp_path / "dist"
    proc = _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-w", str(dist)], cwd=ROOT)
    _skip_if_offline(proc, "pip wheel")
    (wheel,) = glob.glob(str(dist / "sclandscape-*.whl"))

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = str(bindir / "python")
    proc = _run([python, "-m", "pip", "install", "--quiet", wheel])
    _skip_if_offline(proc, "pip install of the wheel")

    # Outside the source tree, so that the installed package (not ./sclandscape) is imported.
    exe = str(bindir / "sclandscape")
    proc = _run([exe, "--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("scan", "optimum", "hessian", "plot", "sweep", "saddles", "path", "slice", "demo"):
        assert command in proc.stdout
    out = tmp_path / "scan"
    proc = _run(
        [exe, "scan", "--counts", "3,3", "--dim", "2", "--inits", "2", "--slots", "2", "--x64"]
        + ["--out", str(out), "--quiet"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 runs, L* = " in proc.stdout and (out / "summary.json").exists()
    where = _run(
        [python, "-c", "import sclandscape; print(sclandscape.__file__, sclandscape.__version__)"],
        cwd=tmp_path,
    )
    assert str(env_dir) in where.stdout and "0+unknown" not in where.stdout
