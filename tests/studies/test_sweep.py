"""Sweeps: one resumable scan per grid cell, sweep.json and the phase map, and the sweep command."""

import csv
import json
import os

import matplotlib

matplotlib.use("Agg")

import pytest

import sclandscape as sc
from sclandscape.cli import commands as cli
from sclandscape.explore import scanner
from sclandscape.folders import atomic
from sclandscape.studies import scan as scan_study
from sclandscape.studies import sweep

L_STAR = 57.508222
KIND_CYCLE = ("global_min", "spurious_min", "local_min", "saddle", "degenerate", "not_converged")

SETTINGS = scanner.ScanSettings(tol=1e-9, x64=True, slots=4, chunk_steps=10)


@pytest.mark.slow  # ~30 s; test_cli_sweep_runs_and_reruns runs, writes and skips cells in the fast suite
def test_sweep_writes_sweep_json_and_phase_map_and_skips_finished_cells(tmp_path, monkeypatch):
    out = str(tmp_path / "sweep")
    base = sc.Problem((3, 3, 3), 2, 1.0)
    state = sweep.run_sweep(base, {"dim": [1, 2]}, 3, out, settings=SETTINGS)
    with open(os.path.join(out, "sweep.json")) as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(state))
    assert [c["name"] for c in state["cells"]] == ["dim=1", "dim=2"]
    assert all(c["status"] == "done" for c in state["cells"])
    # d = 1 < rank M* = 2: L* unattainable; d = 2 = k - 1: every minimum global
    assert state["fraction"] == [[0.0, 1.0]]
    # Below rank M* the minima are local, never spurious.
    assert state["n_spurious_minima"] == [[0, 0]] and state["cells"][0]["n_local_minima"] >= 1
    assert state["unattainable"] == [[True, False]]
    for fmt in ("png", "pdf"):
        assert os.path.getsize(os.path.join(out, "figures", f"phase_map.{fmt}")) > 0
    assert os.path.exists(os.path.join(out, "cells", "dim=1", "summary.json"))
    check_csv(out, state)
    check_phase_map(state)
    check_comparison(out, tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(scan_study, "run_scan", refuse)
    again = sweep.run_sweep(base, {"dim": [1, 2]}, 3, out, settings=SETTINGS)
    assert again["fraction"] == state["fraction"]
    monkeypatch.undo()

    # an interrupted cell (chunks only) is resumed, the other skipped
    cell = os.path.join(out, "cells", "dim=2")
    os.remove(os.path.join(cell, "summary.json"))
    os.remove(os.path.join(cell, "runs.npz"))
    calls = []
    real = scan_study.run_scan
    monkeypatch.setattr(scan_study, "run_scan", lambda *a, **k: calls.append(k["resume"]) or real(*a, **k))
    resumed = sweep.run_sweep(base, {"dim": [1, 2]}, 3, out, settings=SETTINGS)
    assert calls == [True]
    assert resumed["fraction"] == state["fraction"]
    with pytest.raises(atomic.ResultsError, match="different sweep"):
        sweep.run_sweep(base, {"dim": [1, 3]}, 3, out, settings=SETTINGS)


def check_csv(out, state):
    """sweep.csv against each cell's own summary.json (read independently of sweep.json)."""
    with open(os.path.join(out, "sweep.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["d"] for r in rows] == ["1", "2"] and [r["cell"] for r in rows] == ["dim=1", "dim=2"]
    assert tuple(rows[0]) == sweep.CSV_COLUMNS and rows[0]["R"] == ""
    for r in rows:
        summary = atomic.read_json(os.path.join(out, r["path"], "summary.json"))
        assert (r["status"], r["n"], r["k"], r["runs"]) == ("done", "9", "3", "3")
        assert float(r["tau"]) == 1.0
        for kind, count in summary["counts"].items():
            assert int(r[f"n_{kind}"]) == count
        assert float(r["fraction_global"]) == summary["counts"]["global_min"] / 3
        assert int(r["n_distinct_minima"]) == len(summary["distinct_minima"])
        assert float(r["global_loss"]) == summary["global_loss"]
    # d = 1 < rank M* = 2: no spurious bound; d = 2: 0 spurious of 3 runs, (1 - p)^3 = 0.05
    assert rows[0]["spurious_upper_95"] == "" and rows[0]["global_rank"] == "2"
    assert float(rows[1]["spurious_upper_95"]) == pytest.approx(1 - 0.05 ** (1 / 3), rel=1e-12)
    assert (rows[1]["spurious_observed"], rows[1]["n_spurious_minima"]) == ("0.0", "0")
    assert int(rows[0]["n_spurious_minima"]) + int(rows[0]["n_local_minima"]) >= 1


def check_phase_map(state):
    """The phase map states the problem and, per attainable cell, the bound on the spurious fraction."""
    from matplotlib.text import Text

    fig = sweep.phase_map_figure(state)
    text = "\n".join(t.get_text() for t in fig.findobj(Text))
    for part in ("n = 9", "k = 3", "$\\tau$ = 1", "3 runs a cell", "embedding dimension $d$"):
        assert part in text
    cells = sorted(t.get_text() for t in fig.axes[0].texts)
    assert cells == ["0.00\n" + cells[0].split("\n", 1)[1], "1.00\nsp < 63%"]  # 1 - 0.05^(1/3) = 0.63
    assert "minima" in cells[0] and "sp <" not in cells[0]


def check_comparison(out, tmp_path):
    """The demo's side-by-side figure from two finished scans (here two cells of the sweep)."""
    from sclandscape.drawing import report

    written = report.write_comparison(
        [os.path.join(out, "cells", "dim=2"), os.path.join(out, "cells", "dim=1")], str(tmp_path / "cmp")
    )
    assert [os.path.basename(p) for p in written] == ["comparison.png", "comparison.pdf"]
    fig = report.comparison_figure([os.path.join(out, "cells", "dim=2"), os.path.join(out, "cells", "dim=1")])
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert "d = 2" in titles[0] and "3 runs" in titles[0] and "0 spurious of 3 runs" in titles[0]
    assert "d = 1" in titles[1] and "unattainable" in titles[1] and "spurious of" not in titles[1]


@pytest.mark.parametrize(
    "grid, step, match",
    [
        ({}, None, "one or two"),
        ({"dim": [1], "tau": [1.0], "R": [1]}, (1, 1, 2), "one or two"),
        ({"depth": [1]}, None, "unknown sweep axis"),
        ({"dim": []}, None, "empty"),
        ({"dim": [1, 1]}, None, "repeated"),
        ({"dim": [0]}, None, "dimension"),
        ({"tau": [-1.0]}, None, "tau"),
        ({"R": [2]}, None, "needs step"),
        ({"R": [1.5]}, (1, 1, 3), "R"),
        ({"dim": [1]}, (1, 1, 2), "only with an R axis"),
        ({"dim": "12"}, None, "sequence"),
    ],
)
def test_sweep_bad_grid_is_a_one_line_value_error(tmp_path, grid, step, match):
    with pytest.raises(ValueError, match=match) as err:
        sweep.run_sweep(sc.Problem((3, 3), 1, 1.0), grid, 2, str(tmp_path / "s"), step=step)
    assert "\n" not in str(err.value)
    assert not os.path.exists(tmp_path / "s")


def test_sweep_refuses_a_folder_holding_something_else(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(atomic.ResultsError, match="no sweep.json"):
        sweep.run_sweep(sc.Problem((3, 3), 1, 1.0), {"dim": [1]}, 2, str(tmp_path))


def test_cli_sweep_runs_and_reruns(tmp_path, capsys):
    out = str(tmp_path / "s")
    argv = ["sweep", "--counts", "3,3", "--dims", "1", "--inits", "2", "--x64", "--slots", "2", "--out", out]
    assert cli.main([*argv, "--quiet", "--formats", "png"]) == 0
    printed = capsys.readouterr().out
    assert "[1/1] dim=1: done;" in printed and os.path.join(out, "figures", "phase_map.png") in printed
    assert cli.main([*argv, "--quiet", "--formats", "png"]) == 0
    assert "done earlier, skipped" in capsys.readouterr().out
    assert cli.main(["plot", out, "--formats", "pdf"]) == 0  # plot on a sweep folder: the phase map
    assert os.path.exists(os.path.join(out, "figures", "phase_map.pdf"))
    assert not os.path.exists(os.path.join(out, "figures", "phase_map.png"))  # stale: removed
    assert os.path.exists(os.path.join(out, "sweep.csv"))
    report = open(os.path.join(out, "report.md")).read()  # plot SWEEP writes a report, as for a scan
    assert "| [dim=1](cells/dim=1) | done |" in report
    assert "figures/phase_map.pdf" not in report  # (only a PNG is embedded)
    assert (
        "minima" in sweep._cell_note(0, 2, None, True) and sweep._cell_note(1, 0, None, True) == "1 minimum"
    )


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--counts", "3,3", "--dim", "1"], "one or two of --dims"),
        (["--counts", "3,3", "--dims", "1,2", "--dim", "1"], "not both"),
        (["--counts", "3,3", "--taus", "1"], "--dim"),
        (["--counts", "3,3", "--dim", "1", "--ratios", "1,2"], "needs --step"),
        (["--counts", "3,3", "--dims", "1,x"], "comma-separated"),
        (["--dims", "1,2"], "exactly one of"),
    ],
)
def test_cli_sweep_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, match):
    out = str(tmp_path / "s")
    assert cli.main(["sweep", *argv, "--inits", "2", "--out", out]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not os.path.exists(out)
