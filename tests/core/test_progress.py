"""Progress display: the callback protocol, honest ETA, bar, lines and heartbeat, a scan logged to a file."""

import io
import subprocess
import sys
import time

import pytest

from sclandscape.core import progress as progress_lib
from sclandscape.core.progress import Progress, adapt


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress_lib.time, "monotonic", c)
    return c


def test_adapt_accepts_two_three_and_four_argument_callables():
    seen = []
    adapt(lambda d, t: seen.append((d, t)))(1, 2, "polish", "x")
    adapt(lambda d, t, p: seen.append((d, t, p)))(1, 2, "polish", "x")
    adapt(lambda d, t, p, x: seen.append((d, t, p, x)))(1, 2, "polish", "x")
    adapt(lambda *a: seen.append(a))(1, 2, "polish", "x")
    assert seen == [(1, 2), (1, 2, "polish"), (1, 2, "polish", "x"), (1, 2, "polish", "x")]
    assert adapt(None) is None
    with pytest.raises(ValueError, match="callable"):
        adapt(3)
    with pytest.raises(ValueError, match="accept"):
        adapt(lambda d: None)


def test_bad_mode_and_interval():
    with pytest.raises(ValueError, match="mode"):
        Progress(mode="fancy")
    with pytest.raises(ValueError, match="interval"):
        Progress(interval=0)


def test_no_eta_until_the_rate_is_measured_after_the_first_batch(clock):
    out = io.StringIO()
    p = Progress("scan", stream=out, mode="lines", interval=1e9)
    p(0, 100)
    p.phase("compiling")
    clock.t += 50  # the first batch carries 50 s of compilation
    p(10, 100, "first order")
    assert p.eta() is None and "ETA" not in p.text()
    clock.t += 0.5  # a second batch within MIN_WINDOW of the first: a burst, no rate yet
    p(20, 100)
    assert p.eta() is None
    clock.t += 9.5
    p(30, 100)
    # rate = (30 - 10) / 10 s = 2 runs/s, measured from the first batch (compilation excluded);
    # 70 runs left -> 35 s. (Counting from the start would give 30/60.5 s and 141 s.)
    assert p.eta() == pytest.approx(35.0)
    assert "ETA 35s" in p.text()
    p(100, 100)
    assert "ETA" not in p.text()  # finished: nothing left to estimate
    p.close()


def test_a_new_total_or_counting_down_restarts_the_measurement(clock):
    p = Progress(mode="lines", stream=io.StringIO())
    for done in (0, 10, 20):
        p(done, 50)
        clock.t += 10
    assert p.eta() is not None
    p(0, 50)  # the next sweep cell
    assert p.eta() is None
    p(5, 80)
    assert p.eta() is None
    p.close()


def test_lines_mode_logs_each_phase_once_then_at_most_every_interval(clock):
    out = io.StringIO()
    p = Progress("scan", stream=out, mode="lines", interval=10.0)
    p(0, 8)
    for phase in ("compiling", "first order", "polish", "classification", "writing"):
        p(None, None, phase)
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and all(line.startswith("[scan] ") for line in lines)
    for phase in ("first order", "polish", "classification", "writing"):  # the second batch: no new phase
        p(4, 8, phase)
    assert len(out.getvalue().splitlines()) == 6
    clock.t += 10.0
    p(4, 8, "first order")
    assert len(out.getvalue().splitlines()) == 7
    p.close()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("[scan] finished: 4/8 runs")
    p(5, 8)  # after close: silent
    assert out.getvalue().splitlines()[-1] == last


def test_bar_mode_redraws_in_place_and_ends_the_line():
    out = io.StringIO()
    with Progress("scan", stream=out, mode="bar") as p:
        p(0, 4, "first order")
        p(4, 4, "writing")
    text = out.getvalue()
    assert text.count("\r") >= 2 and text.endswith("\n")
    assert "[" + "#" * progress_lib.BAR_WIDTH + "] 4/4 runs" in text


def test_auto_mode_is_lines_off_a_terminal_and_off_writes_nothing():
    assert Progress(stream=io.StringIO()).mode == "lines"
    out = io.StringIO()
    p = progress_lib.display("scan", quiet=True, stream=out)
    p(1, 2, "polish")
    p.note("x")
    p.close()
    assert out.getvalue() == ""


def test_heartbeat_keeps_a_log_alive_during_a_long_phase():
    out = io.StringIO()
    p = Progress("scan", stream=out, mode="lines", interval=0.2)
    p.phase("compiling")
    time.sleep(1.0)  # nothing reported: the heartbeat writes a line every 0.2 s
    p.close()
    lines = out.getvalue().splitlines()
    assert sum("compiling" in line for line in lines) >= 3  # the phase, >= 1 heartbeat, the last line


@pytest.mark.slow  # a subprocess scan, ~15 s on two idle cores (compilation); the in-process test below
def test_scan_with_stderr_in_a_file_logs_its_phases(tmp_path):
    """The acceptance test: stderr redirected to a file shows every phase and the counts."""
    log = tmp_path / "scan.log"
    out = tmp_path / "scan"
    with open(log, "w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "sclandscape.cli", "scan", "--counts", "2,2", "--dim", "2"]
            + ["--inits", "6", "--slots", "2", "--x64", "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.returncode == 0, log.read_text()
    text = log.read_text()
    for phase in ("compiling", "first order", "polish", "classification", "writing"):
        assert f"{phase}" in text, (phase, text)
    assert "0/6 runs" in text and "finished: 6/6 runs" in text
    assert "\r" not in text  # plain lines in a file
    assert "6 runs, L* = " in proc.stdout


def test_run_scan_reports_phases_to_a_callable_and_to_a_log_file(tmp_path):
    import jax

    import sclandscape as sc

    calls, counts = [], []
    problem = sc.Problem((2, 2), 2, 1.0)
    settings = sc.ScanSettings(tol=1e-9, x64=True, slots=2)
    log = tmp_path / "scan.log"
    with open(log, "w") as stream, Progress("scan", stream=stream) as display:  # a file: lines mode

        def both(*args):
            calls.append(args)
            display(*args)

        with jax.enable_x64(True):
            sc.run_scan(problem, 4, 0, settings, str(tmp_path / "a"), progress=both)
            # A resume with every run on disk: a two-argument callable (the old protocol) still works.
            sc.run_scan(
                problem,
                4,
                0,
                settings,
                str(tmp_path / "a"),
                resume=True,
                progress=lambda d, t: counts.append((d, t)),
            )
    phases = [c[2] for c in calls if len(c) > 2 and c[2]]
    assert phases[0] == "compiling"
    assert phases.index("first order") < phases.index("polish") < phases.index("classification")
    assert "writing" in phases
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == 4 and all(c[1] == 4 for c in calls)
    assert counts and all(c == (4, 4) for c in counts)
    text = log.read_text()
    for phase in ("compiling", "first order", "polish", "classification", "writing"):
        assert phase in text
    assert "finished: 4/4 runs" in text and "\r" not in text


def test_auto_mode_draws_a_bar_in_a_jupyter_kernel():
    class OutStream(io.StringIO):  # what ipykernel gives a notebook's stderr (isatty() is False)
        pass

    OutStream.__module__ = "ipykernel.iostream"
    stream = OutStream()
    assert not stream.isatty()
    p = Progress("scan", stream=stream)
    assert p.mode == "bar"
    p(1, 2, "polish")
    p.close()
    assert "\r" in stream.getvalue()


@pytest.mark.slow  # ~9 s; run_scan reports its phases to a callable and a log file in the fast suite
def test_scan_api_reports_progress():
    import jax

    import sclandscape as sc

    calls = []
    with jax.enable_x64(True):
        rec = sc.scan(
            sc.Problem((2, 2), 2, 1.0),
            3,
            jax.random.key(0),
            sc.ScanSettings(tol=1e-9, x64=True, slots=2),
            progress=lambda *a: calls.append(a),
        )
    assert rec["run"].size == 3
    assert calls[0][:2] == (0, 3) and calls[-1][:2] == (3, 3)
    assert {"compiling", "first order", "polish", "classification"} <= {c[2] for c in calls if len(c) > 2}


def test_heartbeat_goes_on_after_the_count_completes_until_closed_or_idle(monkeypatch):
    """The last batch is still polished once the count is complete: the log stays alive; a display
    never closed falls silent IDLE_STOP seconds after its last report."""
    monkeypatch.setattr(progress_lib, "IDLE_STOP", 0.5)
    out = io.StringIO()
    p = Progress("scan", stream=out, mode="lines", interval=0.1)
    p(0, 2, "first order")
    p(2, 2, "polish")
    time.sleep(0.4)
    assert sum("polish" in line for line in out.getvalue().splitlines()) >= 3  # heartbeats
    time.sleep(0.6)  # past IDLE_STOP: silent
    lines = out.getvalue().splitlines()
    time.sleep(0.3)
    assert out.getvalue().splitlines() == lines
    p(0, 2, "first order")  # counting again restarts it
    time.sleep(0.5)
    assert len(out.getvalue().splitlines()) >= len(lines) + 2
    p.close()


def test_a_scan_log_counts_runs_as_they_leave_the_first_order_phase(tmp_path):
    """Every run in flight at once (slots = runs): the count still moves before the scan finishes,
    because it counts runs that have left the first-order phase, not only whole recorded batches."""
    import jax

    import sclandscape as sc

    calls = []
    with jax.enable_x64(True):
        sc.run_scan(
            sc.Problem((3, 3), 2, 1.0),
            32,
            0,
            sc.ScanSettings(tol=1e-9, x64=True, slots=32),
            str(tmp_path / "a"),
            progress=lambda *a: calls.append(a),
        )
    before_recorded = [c[0] for c in calls if c[2] == "first order" and c[3] == "0 recorded"]
    assert any(0 < d < 32 for d in before_recorded), calls  # counts above 0 before any run is recorded
    assert calls[0][2] == "compiling"


def test_the_api_shows_progress_by_default_and_is_silent_when_asked(tmp_path, capsys, monkeypatch):
    import jax

    import sclandscape as sc

    monkeypatch.setattr(progress_lib, "GRACE", 0.0)
    problem, settings = sc.Problem((2, 2), 2, 1.0), sc.ScanSettings(tol=1e-9, x64=True, slots=4)
    with jax.enable_x64(True):
        sc.run_scan(problem, 4, 0, settings, str(tmp_path / "a"))
        err = capsys.readouterr().err
        assert "[scan]" in err and "compiling" in err and "finished: 4/4 runs" in err  # lines: not a tty
        sc.run_scan(problem, 4, 0, settings, str(tmp_path / "b"), progress=False)
        monkeypatch.setenv("SCLANDSCAPE_PROGRESS", "off")
        sc.run_scan(problem, 4, 0, settings, str(tmp_path / "c"))
    assert capsys.readouterr().err == ""
