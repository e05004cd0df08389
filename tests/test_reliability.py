"""Reliability of the command line and of results folders.

One writer per folder (a lock naming its holder), chunk names that never
collide, merges that drop identical duplicate runs and refuse conflicting
ones, resumes that accept new execution settings and name every other
difference, clean interrupts (real subprocesses and signals), files created
with the user's umask, and no traceback for any bad input or malformed file.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import sclandscape as sc
from sclandscape.cli import commands as cli
from sclandscape.core import problems
from sclandscape.explore import scanner
from sclandscape.folders import atomic, identity, merging, reading
from sclandscape.studies import scan as scan_study
from sclandscape.studies import sweep
from sclandscape.theory import optimum

CLI = [sys.executable, "-m", "sclandscape.cli"]
SCAN = ["scan", "--counts", "3,3", "--dim", "2", "--tau", "1", "--x64", "--quiet", "--slots", "4"]
# The same scan in the API (the CLI's --x64 default tolerance is 1e-9).
PROBLEM = sc.Problem((3, 3), 2, 1.0)
SETTINGS = scanner.ScanSettings(tol=1e-9, x64=True, slots=4)
N = 8
ENV = dict(os.environ, JAX_PLATFORMS="cpu")
EXACT = ("run", "status", "steps", "polish_evals", "polish_iters", "kind")
CLOSE = ("loss", "grad_norm", "cert_lambda", "gap")


def _cli(*args, timeout=600):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=ENV, timeout=timeout)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def _snapshot(folder) -> dict:
    """Every file under ``folder`` with its bytes (to show that nothing changed)."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = fh.read()
    return out


def _same_runs(a: dict, b: dict) -> None:
    for f in EXACT:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f)
    for f in CLOSE:  # other slots or chunking: the same runs to rounding (as across device counts)
        np.testing.assert_allclose(a[f], b[f], rtol=1e-9, atol=1e-9, err_msg=f)


def _flip_a_data_byte(path) -> None:
    """Flip one byte inside the ``loss`` array of an ``.npz`` (covered by its CRC-32, unlike headers)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("loss.npy")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size - 1] ^= 0xFF  # the last byte of the array
    with open(path, "wb") as f:
        f.write(bytes(data))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished scan folder (8 runs, written in-process); tests work on copies."""
    out = str(tmp_path_factory.mktemp("finished") / "scan")
    scan_study.run_scan(PROBLEM, N, 0, SETTINGS, out)
    return out


@pytest.fixture
def copy(finished, tmp_path):
    target = str(tmp_path / "copy")
    shutil.copytree(finished, target)
    return target


# --------------------------------------------------------------------------
# One writer per folder


def test_lock_refuses_a_second_writer_naming_the_holder_and_releases(tmp_path):
    folder = str(tmp_path / "f")
    with atomic.lock_folder(folder) as lock:
        record = json.loads(open(os.path.join(folder, atomic.LOCK_NAME)).read())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(atomic.ResultsError, match=f"in use: pid {os.getpid()} on ") as err:
            atomic.FolderLock(folder).acquire()  # another open file: flock refuses it too
        assert record["since"] in str(err.value) and "\n" not in str(err.value)
        assert lock.previous is None
    assert not os.path.exists(os.path.join(folder, atomic.LOCK_NAME))
    atomic.FolderLock(folder).acquire().release()


def test_a_lock_left_by_a_killed_writer_is_taken_over_and_reported(tmp_path):
    folder = str(tmp_path / "f")
    os.makedirs(folder)
    holder = {"pid": _dead_pid(), "host": socket.gethostname(), "since": "2024-01-01T00:00:00+00:00"}
    with open(os.path.join(folder, atomic.LOCK_NAME), "w") as f:
        json.dump(holder, f)  # what SIGKILL leaves: the record (the kernel dropped the flock)
    with atomic.lock_folder(folder) as lock:
        assert lock.previous == holder
        record = json.loads(open(os.path.join(folder, atomic.LOCK_NAME)).read())
        assert record["pid"] == os.getpid()


def test_without_flock_the_lock_file_is_the_lock(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    folder = str(tmp_path / "f")
    with atomic.lock_folder(folder):
        with pytest.raises(atomic.ResultsError, match="in use: pid .* remove .*\\.lock"):
            atomic.FolderLock(folder).acquire()
    assert not os.path.exists(os.path.join(folder, atomic.LOCK_NAME))
    with open(os.path.join(folder, atomic.LOCK_NAME), "w") as f:
        json.dump({"pid": _dead_pid(), "host": socket.gethostname(), "since": "then"}, f)
    with atomic.lock_folder(folder) as lock:  # a dead process of this host: taken over
        assert lock.previous["since"] == "then"


def test_chunk_names_cannot_collide():
    names = {merging.chunk_prefix(0) for _ in range(1000)}
    assert len(names) == 1000
    name = names.pop()
    assert name.startswith("part-p000-") and f"-{os.getpid()}-" in name


def test_run_scan_refuses_a_locked_folder_and_leaves_it_untouched(copy):
    before = _snapshot(copy)
    with atomic.lock_folder(copy):
        with pytest.raises(atomic.ResultsError, match="is in use: pid"):
            scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True)
    after = _snapshot(copy)
    assert after == before


def _holds_lock(out, pid):
    try:
        return json.loads((out / atomic.LOCK_NAME).read_text())["pid"] == pid
    except (OSError, ValueError, KeyError):
        return False


def test_a_second_scan_process_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "shared"
    args = [*SCAN, "--inits", str(N), "--out", str(out)]
    first = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None and not _holds_lock(out, first.pid):
            time.sleep(0.02)
        first.send_signal(signal.SIGSTOP)  # it holds the lock (and has written nothing else yet)
        assert first.poll() is None, "the first writer ended before the second started"
        before = _snapshot(out)
        for extra in ([], ["--resume"]):
            second = _cli(*args, *extra)
            assert second.returncode == 2
            line = _one_line(second.stderr)
            assert f"is in use: pid {first.pid} on {socket.gethostname()} since " in line, line
        assert _snapshot(out) == before
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow  # three scan processes, ~1 min on 2 cores
def test_two_writers_one_refused_then_a_killed_writer_is_taken_over(tmp_path, finished):
    out = tmp_path / "shared"
    n = 200
    args = [*SCAN, "--inits", str(n), "--out", str(out)]
    first = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:
            if (out / "chunks").is_dir() and any(f.startswith("part-") for f in os.listdir(out / "chunks")):
                break
            time.sleep(0.05)
        first.send_signal(signal.SIGSTOP)  # the writer holds its lock, mid-scan
        assert first.poll() is None, "the first writer finished before the second started: make it longer"
        second = _cli(*args, "--resume")
        assert second.returncode == 2
        line = _one_line(second.stderr)
        assert f"is in use: pid {first.pid} on {socket.gethostname()} since " in line
    finally:
        first.kill()
        first.wait()
    assert not (out / "summary.json").exists()
    notes = []
    scan_study.run_scan(PROBLEM, n, 0, SETTINGS, str(out), resume=True, log=notes.append)
    assert any(f"took over {out} from pid {first.pid}" in note for note in notes), notes
    runs = merging.load_runs(str(out))
    np.testing.assert_array_equal(runs["run"], np.arange(n))
    reference = merging.load_runs(finished)
    _same_runs({k: v[:N] for k, v in runs.items()}, reference)
    assert not os.path.exists(out / atomic.LOCK_NAME)


# --------------------------------------------------------------------------
# Merging chunks: duplicates, conflicts, damage, repair


def test_identical_duplicate_runs_are_dropped_and_reported(copy):
    chunk = merging.chunk_paths(copy)[0]
    shutil.copy(chunk, chunk.replace("part-p000-", "part-p000-dup-"))
    os.remove(os.path.join(copy, "runs.npz"))
    notes = []
    scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True, log=notes.append)
    dup = atomic.read_npz(chunk)["run"].size
    assert any(f"{dup} runs were recorded twice" in n for n in notes), notes
    np.testing.assert_array_equal(merging.load_runs(copy)["run"], np.arange(N))


def test_conflicting_duplicates_are_refused_naming_both_files(copy):
    chunk = merging.chunk_paths(copy)[0]
    data = atomic.read_npz(chunk)
    data["loss"] = data["loss"] + 1e-3
    other = chunk.replace("part-p000-", "part-p000-other-")
    atomic.write_npz(other, data)
    os.remove(os.path.join(copy, "runs.npz"))
    with pytest.raises(atomic.ResultsError, match="recorded with different results") as err:
        scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True)
    assert chunk in str(err.value) and other in str(err.value) and "recomputes their runs" in str(err.value)


def test_a_deleted_or_damaged_runs_npz_is_rebuilt_from_the_chunks(copy, finished):
    reference = merging.load_runs(finished)
    path = os.path.join(copy, "runs.npz")
    _flip_a_data_byte(path)
    with pytest.raises(atomic.ResultsError) as err:
        reading.load_scan(copy)
    message = str(err.value)
    assert "runs.npz" in message and f"rebuilds it from the chunks, which hold all {N} runs" in message
    assert "delete it" not in message
    notes = []
    scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True, log=notes.append)
    assert any("rebuilt from the chunks" in n for n in notes)
    _same_runs(reading.load_scan(copy)["runs"], reference)
    os.remove(path)  # as an older version advised: every later resume must still work
    scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True)
    _same_runs(merging.load_runs(copy), reference)


def test_a_damaged_chunk_is_reported_as_recomputable(copy):
    chunk = merging.chunk_paths(copy)[0]
    _flip_a_data_byte(chunk)
    # runs.npz holds every run: the damaged chunk is not needed
    scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True)
    os.remove(os.path.join(copy, "runs.npz"))
    with pytest.raises(atomic.ResultsError, match="corrupted.*its runs can be recomputed: move it out"):
        scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True)


def test_a_chunk_of_another_scan_is_refused(copy):
    data = atomic.read_npz(merging.chunk_paths(copy)[0])
    data["run"] = data["run"] + 100
    atomic.write_npz(os.path.join(copy, "chunks", "part-foreign.npz"), data)
    os.remove(os.path.join(copy, "runs.npz"))
    with pytest.raises(atomic.ResultsError, match="holds run 10[0-9], outside this scan's 0..7"):
        scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True)


def test_resume_removes_temporary_files_of_a_killed_write(copy):
    target = os.path.join(copy, "chunks", "part-killed.npz")
    killer = (
        "import os, signal\n"
        "from sclandscape.folders import atomic\n"
        "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"  # dies between write and rename
        f"atomic.write_atomic({target!r}, b'x' * 100000)\n"
    )
    proc = subprocess.run([sys.executable, "-c", killer], env=ENV, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    left = [f for f in os.listdir(os.path.join(copy, "chunks")) if f.startswith(".tmp-")]
    assert len(left) == 1 and not os.path.exists(target)
    os.remove(os.path.join(copy, "runs.npz"))
    scan_study.run_scan(PROBLEM, N, 0, SETTINGS, copy, resume=True)
    assert not [f for f in os.listdir(os.path.join(copy, "chunks")) if f.startswith(".tmp-")]


def test_temporary_files_of_live_writers_are_kept(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = atomic.HOST_TAG
        live = tmp_path / f".tmp-{host}-{alive.pid}-0123abcd"
        dead = tmp_path / f".tmp-{host}-{_dead_pid()}-0123abcd"
        foreign = tmp_path / ".tmp-otherhost-12-0123abcd"
        for f in (live, dead, foreign):
            f.write_bytes(b"x")
        assert atomic.clean_temps(str(tmp_path), sole_writer=False) == 1
        assert live.exists() and not dead.exists() and foreign.exists()
        assert atomic.clean_temps(str(tmp_path), sole_writer=True) == 1  # another host's, when alone
        assert live.exists() and not foreign.exists()
    finally:
        alive.kill()
        alive.wait()


# --------------------------------------------------------------------------
# Resume and settings


def test_resume_accepts_new_execution_settings_and_names_every_other_difference(copy, finished):
    slots = scanner.ScanSettings(tol=1e-9, x64=True, slots=2, chunk_steps=7, streaming="never")
    scan_study.run_scan(PROBLEM, N, 0, slots, copy, resume=True)
    assert json.load(open(os.path.join(copy, "config.json")))["settings"]["execution"]["slots"] == 2
    before = _snapshot(copy)
    other = scanner.ScanSettings(tol=1e-8, x64=True, slots=4, escapes=1)
    with pytest.raises(atomic.ResultsError) as err:
        scan_study.run_scan(PROBLEM, N, 3, other, copy, resume=True)
    message = str(err.value)
    for part in (
        "settings.optimise.tol: 1e-09 on disk, 1e-08 given",
        "settings.judge.escapes: 3 on disk, 1 given",
        "seed: 0 on disk, 3 given",
    ):
        assert part in message, message
    assert "execution" not in message and "\n" not in message
    assert _snapshot(copy) == before


def test_config_differences_read_the_flat_settings_of_older_folders():
    flat = {"settings": {"tol": 1e-9, "x64": True, "slots": 7}, "seed": 0}
    given = {"settings": SETTINGS.to_json(), "seed": 0}
    assert identity.config_differences(flat, given) == []


# --------------------------------------------------------------------------
# Interrupts (real processes and signals)


def _interrupted(args, wait_for, sig, timeout=300):
    """Start the CLI, wait until ``wait_for()`` holds, send ``sig``; ``(returncode, stderr)``."""
    proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None and not wait_for():
            time.sleep(0.02)
        assert proc.poll() is None, "the command finished before the signal: make it longer"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_sigint_while_importing_exits_130_with_one_line(tmp_path):
    out = tmp_path / "early"
    start = time.time()
    code, err = _interrupted([*SCAN, "--inits", "4", "--out", str(out)], lambda: time.time() - start > 0.3, 2)
    assert code == 130
    assert _one_line(err) == "sclandscape: interrupted; nothing was left half-written"
    assert not out.exists()


def _resumable(out, n) -> None:
    """What a resume of ``out`` needs: the same scan, no lock record left, every reported file whole."""
    config = identity.scan_config(PROBLEM, SETTINGS, 0, n, False)
    assert identity.folder_error(str(out), config, resume=True) is None
    with atomic.lock_folder(str(out)) as lock:
        assert lock.previous is None  # the interrupted process emptied its record
    merging.merge_runs(str(out), n)  # every chunk reads back


def _chunk_written(out):
    return lambda: (
        (out / "chunks").is_dir() and any(f.startswith("part-") for f in os.listdir(out / "chunks"))
    )


def test_sigint_during_compilation_exits_130_with_one_line_and_leaves_a_resumable_folder(tmp_path):
    out = tmp_path / "compiling"
    # config.json is written once the optimum is known, just before the scan's programs compile
    args = [*SCAN, "--inits", str(N), "--out", str(out)]
    code, err = _interrupted(args, lambda: (out / "config.json").exists(), signal.SIGINT)
    assert code == 130
    # (before the scan's first progress report the line has no count)
    assert _one_line(err) in {
        f"sclandscape: interrupted{c}; rerun with --resume" for c in ("", " after 0 of 8 runs")
    }
    assert not (out / "summary.json").exists()
    _resumable(out, N)


@pytest.mark.slow  # two scan processes and a resume each, ~1 min on 2 cores
@pytest.mark.parametrize("sig, when", [(signal.SIGINT, "compiling"), (signal.SIGTERM, "running")])
def test_interrupted_scans_resume_to_the_uninterrupted_results(tmp_path, finished, sig, when):
    out = tmp_path / when
    n = N if when == "compiling" else 400
    args = [*SCAN, "--inits", str(n), "--out", str(out)]
    ready = (lambda: (out / "config.json").exists()) if when == "compiling" else _chunk_written(out)
    code, err = _interrupted(args, ready, sig)
    assert code == 128 + sig
    match = re.fullmatch(
        rf"sclandscape: interrupted(?: after (\d+) of {n} runs)?; rerun with --resume", _one_line(err)
    )
    assert match, err
    done = int(match.group(1) or 0)
    assert when == "compiling" or done >= 1
    assert merging.merge_runs(str(out), n).runs.get("run", np.zeros(0)).size >= done  # all it reported
    _resumable(out, n)
    resumed = _cli(*args, "--resume")
    assert resumed.returncode == 0 and "sclandscape: note" not in resumed.stderr, resumed.stderr
    runs = merging.load_runs(str(out))
    np.testing.assert_array_equal(runs["run"], np.arange(n))
    _same_runs({k: v[:N] for k, v in runs.items()}, merging.load_runs(finished))
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no lock, no temporary file


# --------------------------------------------------------------------------
# Files get the user's umask


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_write_atomic_gives_the_mode_of_a_plain_open(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic.write_atomic(str(tmp_path / "atomic"), b"x")
        with open(tmp_path / "plain", "w") as f:
            f.write("x")
        mode = os.stat(tmp_path / "plain").st_mode & 0o777
        assert os.stat(tmp_path / "atomic").st_mode & 0o777 == mode == 0o666 & ~umask
        os.chmod(tmp_path / "atomic", 0o600)  # replacing a file keeps its mode, as open(..., "w") does
        atomic.write_atomic(str(tmp_path / "atomic"), b"y")
        assert os.stat(tmp_path / "atomic").st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# --------------------------------------------------------------------------
# Bad input: exit 2, one line, nothing written


def _bad(argv, needle, capsys, out):
    before = _snapshot(out) if os.path.isdir(out) else None
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in _one_line(err), err
    if before is None:
        assert not os.path.exists(out)
    else:
        assert _snapshot(out) == before


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["scan", "--counts", "3,3", "--dim", "2", "--tau", "1e200"], "tau must be <= 1000"),
        (["scan", "--counts", "3,3", "--dim", "2", "--tau", "1e-4"], "tau must be >= 0.002"),
        (["scan", "--counts", "3,3", "--dim", "2", "--tau", "inf"], "positive finite"),
        (["scan", "--counts", "3,3", "--dim", "2", "--seed", "99999999999999999999"], "seed must be an"),
        (["scan", "--counts", "3,3", "--dim", "2", "--seed", "-1"], "seed must be an integer in [0, 4294"),
        (["scan", "--step", "2.5", "2", "2", "2", "--dim", "2"], "--step K_MAJ K_MIN N_MIN must be integers"),
        (["scan", "--step", "2", "2", "2.5", "2", "--dim", "2"], "must be integers"),
        (["scan", "--counts", "3,3", "--dim", "2", "--inits", "0"], "--inits must be >= 1"),
        (["scan", "--counts", "3,3", "--dim", "2", "--slots", "0"], "slots"),
        (["scan", "--counts", "3,3", "--dim", "2", "--tol", "nan"], "tol"),
        (["scan", "--counts", "1000,1000", "--dim", "2", "--memory-budget", "1M"], "GiB per device"),
        (["sweep", "--counts", "3,3", "--dim", "2", "--taus", "1,1e-4"], "tau must be >= 0.002"),
        (["sweep", "--counts", "3,3", "--dim", "2", "--taus", "1e308"], "tau must be <= 1000"),
        (["sweep", "--counts", "3,3", "--dims", "1,2", "--seed", "4294967296"], "seed must be"),
        (["sweep", "--step", "2", "2", "3", "2", "--dim", "2", "--ratios", "1,1.5"], "R must be"),
        (["saddles", "--counts", "3,3", "--dim", "2", "--seed", "-3"], "seed must be"),
        (["saddles", "--counts", "3,3", "--dim", "2", "--tau", "5000"], "tau must be <= 1000"),
        (["demo", "--inits", "0"], "--inits must be >= 1"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, needle):
    out = str(tmp_path / "out")
    _bad([*argv, "--out", out], needle, capsys, out)


@pytest.mark.parametrize("tau", ["1e10", "1e150", "1e308", "0.001"])
def test_optimum_command_refuses_tau_out_of_range(capsys, tau):
    assert cli.main(["optimum", "--counts", "5,5,5,5", "--tau", tau]) == 2
    assert "tau must be" in _one_line(capsys.readouterr().err)


def test_demo_refuses_a_folder_that_is_not_a_demo_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    _bad(["demo", "--out", str(tmp_path)], "is not a demo folder", capsys, str(tmp_path))


def test_demo_accepts_its_own_output_folder(tmp_path):
    """A second `make demo` finds case0, case1 and comparison.{png,pdf}: its own folder, accepted."""
    for name in ("case0", "case1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    for name in ("comparison.png", "comparison.pdf"):
        (tmp_path / name).write_bytes(b"x")
    cli._check_demo_folder(str(tmp_path))  # no error
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not a demo folder"):
        cli._check_demo_folder(str(tmp_path))


@pytest.mark.slow  # ~11 s; the refusal itself is in the bad-input table above
def test_a_corrected_sweep_runs_after_a_refused_one(tmp_path, capsys):
    out = str(tmp_path / "sweep")

    def argv(taus, slots="2"):
        base = [
            "sweep",
            "--counts",
            "3,3",
            "--dim",
            "1",
            "--inits",
            "2",
            "--x64",
            "--quiet",
            "--slots",
            slots,
        ]
        return [*base, "--taus", taus, "--formats", "png", "--out", out]

    _bad(argv("1,1e-4"), "tau must be >= 0.002", capsys, out)
    assert cli.main(argv("1")) == 0
    assert "fraction global" in capsys.readouterr().out
    # a rerun with other slots is the same sweep (and removes what a killed write left); another
    # grid is refused, naming the difference
    leftover = os.path.join(out, f".tmp-{atomic.HOST_TAG}-{_dead_pid()}-0123abcd")
    open(leftover, "wb").close()
    assert cli.main(argv("1", slots="3")) == 0
    assert "done earlier, skipped" in capsys.readouterr().out
    assert not os.path.exists(leftover)
    _bad(
        argv("0.5"),
        'differs: axes: [{"name": "tau", "values": [1.0]}] on disk, [{"name": "tau", "values": [0.5]}] given',
        capsys,
        out,
    )


def test_a_sweep_folder_has_one_writer(tmp_path):
    out = str(tmp_path / "sweep")
    with atomic.lock_folder(out):
        with pytest.raises(atomic.ResultsError, match="is in use"):
            sweep.run_sweep(PROBLEM, {"dim": [2]}, 2, out, settings=SETTINGS)


# --------------------------------------------------------------------------
# Readers check structure, not only bytes


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("summary.json", "3", "summary.json is not a results file"),
        ("summary.json", "{}", "summary.json: no 'n_inits'"),
        ("summary.json", '{"n_inits": 8, "global_loss": 1, "counts": 3, "distinct_minima": []}', "'counts'"),
        ("config.json", "[]", "config.json is not a results file"),
        (
            "config.json",
            '{"problem": 1, "settings": {}, "seed": 0, "n_inits": 8}',
            "does not describe a scan",
        ),
        ("optimum.json", "{}", "optimum.json has no 'class_gram'"),
        ("optimum.json", '{"class_gram": [[1, 0]]}', "must be a finite 2 x 2 matrix"),
        ("optimum.json", '{"class_gram": "x"}', "class_gram"),
    ],
)
def test_plot_and_hessian_on_malformed_json_exit_2_naming_the_file(copy, capsys, name, content, needle):
    with open(os.path.join(copy, name), "w") as f:
        f.write(content)
    for argv in (["plot", copy, "--formats", "png"], ["hessian", copy]):
        before = _snapshot(copy)
        assert cli.main(argv) == 2
        line = _one_line(capsys.readouterr().err)
        assert name in line and needle in line, line
        assert _snapshot(copy) == before


@pytest.mark.parametrize(
    "change, needle",
    [
        (
            lambda r: r.update(loss=r["loss"][:-1]),
            "arrays of mismatched lengths ('run' has 8 rows, 'loss' has 7)",
        ),
        (lambda r: r.pop("grad_norm"), "has no 'grad_norm'"),
        (lambda r: r.update(run=r["run"][::-1].copy()), "does not hold runs 0..7 in order"),
        (lambda r: r.update(run=r["run"].astype(float)), "'run' must be a vector of run indices"),
    ],
)
def test_malformed_runs_npz_is_refused_with_the_repair(copy, capsys, change, needle):
    path = os.path.join(copy, "runs.npz")
    runs = atomic.read_npz(path)
    change(runs)
    atomic.write_npz(path, runs)
    with pytest.raises(atomic.ResultsError, match="runs.npz") as err:
        reading.load_scan(copy)
    assert needle in str(err.value) and "which hold all 8 runs" in str(err.value)
    assert cli.main(["plot", copy, "--formats", "png"]) == 2
    assert needle in _one_line(capsys.readouterr().err)


def test_a_malformed_sweep_json_exits_2(tmp_path, capsys):
    for content in ("3", '{"config": {}, "cells": []}'):
        (tmp_path / "sweep.json").write_text(content)
        assert cli.main(["plot", str(tmp_path)]) == 2
        assert "sweep.json" in _one_line(capsys.readouterr().err)


def test_read_npz_names_a_missing_array(copy):
    with pytest.raises(atomic.ResultsError, match="has no array 'nope'"):
        atomic.read_npz(os.path.join(copy, "runs.npz"), keys=["nope"])


# --------------------------------------------------------------------------
# The temperature range


def test_check_tau_bounds():
    assert problems.check_tau(problems.TAU_MIN) == problems.TAU_MIN
    assert problems.check_tau(problems.TAU_MAX) == problems.TAU_MAX
    for bad, needle in (
        (1e3 * (1 + 1e-12), "<= 1000"),
        (1.99e-3, ">= 0.002"),
        (10**400, "finite"),
        ("x", "finite"),
    ):
        with pytest.raises(ValueError, match=needle):
            problems.check_tau(bad)


# four classes: the smallest k with a continuum of zero-centroid configurations (problems.TAU_MAX);
# balanced ones fail first as tau grows
@pytest.mark.parametrize("counts", [(5, 5, 5, 5), (10, 10, 2, 2)])
@pytest.mark.parametrize("tau", [problems.TAU_MIN, problems.TAU_MAX])
def test_global_optimum_solves_at_both_ends_of_the_range(counts, tau):
    opt = optimum.global_optimum(counts, tau)
    assert opt.kkt_residual <= 1e-9 and np.isfinite(opt.loss)
    n = sum(counts)
    if tau == problems.TAU_MAX:  # the loss is n log(n - 1) + O(1/tau): within the spread 4n/tau
        assert abs(opt.loss - n * np.log(n - 1)) <= 4 * n / tau
    if len(set(counts)) == 1:  # balanced: the closed form
        assert opt.loss == pytest.approx(sc.balanced_optimum_loss(len(counts), counts[0], tau), rel=1e-10)


@pytest.mark.slow
def test_global_optimum_solves_at_both_ends_of_the_range_for_many_counts():
    rng = np.random.default_rng(7)
    for counts in ((2, 2), (3, 5, 4, 2, 6), (7,) * 8):
        for tau in (problems.TAU_MAX, problems.TAU_MIN):
            assert optimum.global_optimum(counts, tau).kkt_residual <= 1e-9, (counts, tau)
    for k in (3, 4, 5, 6, 8, 10, 12, 16, 24):
        for _ in range(4):
            counts = tuple(int(c) for c in rng.integers(2, 200, size=k))
            for tau in (problems.TAU_MAX, problems.TAU_MIN):
                assert optimum.global_optimum(counts, tau).kkt_residual <= 1e-9, (counts, tau)


#: Arrays of a results folder that name the session that computed a run or joined a point, and so
#: legitimately differ between an uninterrupted scan and an interrupted, resumed one (docs/results.md).
PER_SESSION = {"runs.npz": ("session",), "points.npz": ("merged_points",)}


@pytest.mark.slow  # three scans of 128 runs in subprocesses, ~1-2 min on two cores
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupt_after_the_first_chunk_and_resume_is_identical_array_by_array(tmp_path, sig):
    """Every array of runs.npz and points.npz, bit for bit, against the uninterrupted scan.

    Before the fix, runs judged in the resumed session carried that session's copy of their distinct
    point's verdict: hess_lambda_min and hess_tol differed in the last bits."""
    args = [*SCAN, "--slots", "8", "--inits", "128"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _cli(*args, "--out", str(whole)).returncode == 0
    code, _ = _interrupted([*args, "--out", str(cut)], _chunk_written(cut), sig)
    assert code in (130, -signal.SIGKILL)
    assert _cli(*args, "--out", str(cut), "--resume").returncode == 0
    for name, skip in PER_SESSION.items():
        a, b = atomic.read_npz(str(whole / name)), atomic.read_npz(str(cut / name))
        assert set(a) == set(b)
        for key in sorted(set(a) - set(skip)):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
