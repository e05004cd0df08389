import json
import subprocess
import sys

import pytest

from sclandscape import cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "sclandscape.cli", *args], capture_output=True, text=True)


def test_optimum_json(capsys):
    assert cli.main(["optimum", "--step", "2", "2", "2", "5", "--tau", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["loss"] == pytest.approx(57.508222, abs=1e-6)
    assert data["counts"] == [10, 10, 2, 2]


def test_balanced_flags(capsys):
    assert cli.main(["optimum", "--classes", "4", "--per-class", "5", "--tau", "1"]) == 0
    assert "L* = 41.47339" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["optimum", "--counts", "3,1"], "class 1 has 1 sample"),
        (["optimum", "--counts", "3,x"], "bad --counts"),
        (["optimum", "--counts", "3,3", "--tau", "0"], "tau"),
        (["optimum", "--classes", "3"], "--per-class"),
        (["optimum"], "exactly one of"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_input_exit_2_one_line(args, needle):
    proc = run(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_demo_runs(capsys, tmp_path):
    assert cli.main(["demo", "--inits", "8", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "L* = 41.473391" in out and "certified global" in out
    assert "L* = 57.508222" in out and "NOT certified (spurious)" in out
    assert (tmp_path / "case0" / "summary.json").exists() and (tmp_path / "case1" / "summary.json").exists()
