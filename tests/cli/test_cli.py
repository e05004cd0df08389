import json
import subprocess
import sys

import pytest

from sclandscape.cli import commands as cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "sclandscape.cli", *args], capture_output=True, text=True)


def test_optimum_json(capsys):
    assert cli.main(["optimum", "--step", "2", "2", "2", "5", "--tau", "1", "--json"]) == 0
    text = capsys.readouterr().out
    assert text.endswith("}\n")  # one line, ended
    data = json.loads(text)
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


@pytest.mark.slow  # `make demo` is the README's first command; its two scans take ~45 s here
def test_demo_runs(capsys, tmp_path):
    assert cli.main(["demo", "--inits", "8", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "L* = 41.473391" in out and "global_min (certificate)" in out
    assert "L* = 57.508222" in out and "local_min (proof)" in out and "index 1 at d + 1" in out
    assert (tmp_path / "case0" / "summary.json").exists() and (tmp_path / "case1" / "summary.json").exists()
    # the two regimes side by side, drawn from the two folders
    assert (tmp_path / "comparison.png").stat().st_size > 0 and (tmp_path / "comparison.pdf").exists()
    assert f"comparison: {tmp_path / 'comparison.png'}" in out
    assert list((tmp_path / "case0" / "figures").glob("hessian_spectrum_*.png"))
    # a second `make demo` continues into its own output (the scans resume as already finished)
    assert cli.main(["demo", "--inits", "8", "--out", str(tmp_path), "--quiet"]) == 0
    assert "L* = 41.473391" in capsys.readouterr().out


def test_hessian_command_stores_spectra_of_the_distinct_points(tmp_path, capsys):
    import jax
    import numpy as np

    import sclandscape as sc
    from sclandscape.explore import scanner
    from sclandscape.folders import atomic, merging
    from sclandscape.numerics import oblique
    from sclandscape.studies import scan as scan_study

    out = str(tmp_path / "s")
    problem = sc.Problem((4, 4, 2, 2), 2, 1.0)  # d < k - 1: local minima at several losses
    with jax.enable_x64(True):
        scan_study.run_scan(problem, 6, 0, scanner.ScanSettings(tol=1e-9, x64=True, slots=6), out)
    assert cli.main(["hessian", out]) == 0
    data = atomic.read_npz(f"{out}/hessian/spectra.npz")
    points = atomic.read_npz(f"{out}/points.npz")
    runs = merging.load_runs(out)
    N = problem.n * (problem.dim - 1)
    assert data["eigenvalues"].shape == (points["loss"].size, N)
    assert np.all(np.diff(data["eigenvalues"], axis=1) >= 0)
    # One spectrum per distinct point the scan stored (nothing re-optimised), with its verdict.
    np.testing.assert_array_equal(data["points"], np.arange(points["loss"].size))
    np.testing.assert_array_equal(data["kind"], points["kind"])
    # `hessian DIR && plot DIR` draws the spectra of those points (entries with run -1 stand for the
    # point's lowest-loss run), one per kind
    capsys.readouterr()
    assert cli.main(["plot", out, "--formats", "png", "--quiet"]) == 0
    drawn = sorted(p.name for p in (tmp_path / "s" / "figures").glob("hessian_spectrum_*.png"))
    assert drawn and len(drawn) == len(set(points["kind"].tolist())), drawn
    assert "holds runs that" not in (tmp_path / "s" / "report.md").read_text()
    assert cli.main(["hessian", out, "--runs", "1,3"]) == 0
    data = atomic.read_npz(f"{out}/hessian/spectra.npz")
    np.testing.assert_array_equal(data["runs"], [1, 3])
    np.testing.assert_array_equal(data["kind"], runs["kind"][[1, 3]])
    assert np.all(data["n_zero_predicted"] == oblique.predicted_zero_modes(2, 2))
    capsys.readouterr()
    assert cli.main(["hessian", out, "--runs", "99"]) == 2
    assert "runs must be indices of this scan" in capsys.readouterr().err


def test_help_lists_every_command_and_shows_defaults(capsys):
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    assert {"path", "slice", "scan", "hessian"} <= set(sub.choices)
    for name, command in sub.choices.items():
        assert f"\n    {name} " in top, name
        assert name in top.splitlines()[2] + top.splitlines()[3]  # the one-line summary names it too
        text = " ".join(command.format_help().split())  # the wrapping undone
        for action in command._actions:
            if action.default not in (None, False) and action.option_strings and action.dest != "help":
                shown = action.default
                if isinstance(shown, (tuple, list)):  # written as typed on the command line
                    shown = ",".join(map(str, shown))
                assert f"(default: {shown})" in text or f"(default: {shown}" in text, (name, action.dest)
        assert "('" not in text, name  # no Python tuple
        assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize("argv", [["--help"], ["scan", "--help"], ["scan", "--dim", "x"], ["bogus"]])
def test_help_and_argument_errors_import_no_jax(argv):
    """``--help`` and bad arguments answer before any numerical import (the package's names are lazy)."""
    code = (
        "import sys\n"
        "from sclandscape import cli\n"
        "try:\n"
        f"    code = cli.main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "heavy = sorted(m for m in ('jax', 'numpy', 'scipy', 'matplotlib') if m in sys.modules)\n"
        "print('CODE', code, 'HEAVY', ','.join(heavy) or '-')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    last = done.stdout.strip().splitlines()[-1]
    assert last == f"CODE {0 if argv[-1] == '--help' else 2} HEAVY -", done.stdout + done.stderr
