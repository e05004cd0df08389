"""Results folders: atomic chunk files, one writer at a time, resume, and the summary.

Layout of ``DIR``::

    config.json            problem, settings, seed, n_inits, L* (written first)
    optimum.json           the class-level optimum M* (``optimum.GlobalOptimum.to_json``)
    chunks/part-p000-HOST-PID-TOKEN-00000.npz
                           per-run records of a batch of finished runs, written by process 0
                           (of one or several) on HOST as PID; TOKEN is random, so no two
                           writers ever pick the same name
    runs.npz               all per-run records sorted by run index (at the end)
    summary.json           The summary (at the end)
    .lock                  while a scan writes: who holds the folder (pid, host, since when)

Every file is written to a temporary name (``.tmp-HOST-PID-TOKEN``) in the same
folder and renamed, so a killed scan leaves only complete files (and maybe a
temporary one, removed by the next scan of the folder once its writer is
gone). ``.npz`` members carry CRC-32 checksums, so a damaged file is detected
when it is read and reported, never used. A run's result depends only on
``fold_in(key, run)``, so resuming recomputes exactly the runs that no chunk
holds and ends with the per-run results of an uninterrupted scan; the chunks
are the record, ``runs.npz`` a merge of them that ``--resume`` rebuilds.

One writer per folder: a scan holds an advisory lock (``fcntl.flock`` on
``DIR/.lock``) for its whole run, and a second scan of the same folder is
refused with the holder's pid, host and start time. The kernel drops the lock
when its holder dies however it dies; the next scan takes the folder over and
says whose lock it found.

Several processes (``jax.distributed`` on a pod slice or several GPU hosts, or
independent jobs) can share one scan without collectives: process ``p`` of
``P`` runs the indices ``i % P == p`` on its own local devices and writes its
own chunks into ``DIR`` (a folder all of them see); process 0 holds the lock,
and when every run is on disk it writes ``runs.npz`` and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import re
import secrets
import socket
import stat
import struct
import time
import zipfile

import jax
import numpy as np
import scipy.stats
from jax.experimental import multihost_utils

from sclandscape import (
    census,
    compilation,
    hessian,
    interrupts,
    metadata,
    metrics,
    oblique,
    optim,
    optimum,
    precision,
    problems,
    scanner,
    streaming,
    verdict,
)
from sclandscape import progress as progress_lib


class ResultsError(ValueError):
    """A results folder that cannot be used as asked (exists, mismatched, corrupted, in use)."""


# --------------------------------------------------------------------------
# Atomic files and their leftovers

TEMP_PREFIX = ".tmp-"
#: This host in temporary-file names: no ``-`` (it separates the fields), at most 40 characters.
_HOST_TAG = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"
_TEMP_NAME = re.compile(r"\.tmp-([A-Za-z0-9_.]*)-([0-9]+)-[0-9a-f]+")
_OWN_TEMPS: set[str] = set()  # this process's temporary files while they are being written


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (created if missing).

    The file ends with the mode a plain ``open(path, "w")`` gives: ``0o666`` less
    the umask for a new file, the old file's mode when it replaces one.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f"{TEMP_PREFIX}{_HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}")
    _OWN_TEMPS.add(tmp)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(path).st_mode))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        _OWN_TEMPS.discard(tmp)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (``True`` when it exists but is not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def clean_temps(folder: str, *, sole_writer: bool) -> int:
    """Remove the temporary files in ``folder`` that no running write owns; returns how many.

    A temporary file of this host whose process is gone (or is this process,
    which is not writing it) is a leftover. Another host's cannot be checked:
    it is removed only when ``sole_writer`` (the caller holds the folder's lock
    and shares the scan with no other process).
    """
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if not name.startswith(TEMP_PREFIX):
                continue
            path = os.path.join(folder, name)
            m = _TEMP_NAME.fullmatch(name)
            if m and m.group(1) == _HOST_TAG:
                pid = int(m.group(2))
                stale = path not in _OWN_TEMPS if pid == os.getpid() else not _pid_alive(pid)
            else:
                stale = sole_writer
            if stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
    return removed


def abandon() -> None:
    """On an interrupt, just before the process exits: remove this process's temporary files and
    empty the records of the locks it holds (the kernel drops the locks themselves at exit)."""
    for tmp in list(_OWN_TEMPS):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    for lock in list(_HELD_LOCKS):
        lock.abandon()


def strict(obj):
    """``obj`` as strict JSON data: NaN and infinities become ``null`` (JSON has neither), NumPy values
    plain Python. A ``null`` number means "not established"; the record beside it says why
    (e.g. ``proof_reason`` for ``certified_radius``)."""
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` of ``strict(obj)``, refusing anything strict parsers reject."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def write_json(path: str, obj) -> None:
    write_atomic(path, (dumps(obj, indent=1) + "\n").encode())


def read_json(path: str, keys=()) -> dict:
    """The JSON object in ``path`` (which must hold every key of ``keys``).

    ``ResultsError`` (one line, naming the file) when it is missing, unreadable,
    not a JSON object, or lacks a key.
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ResultsError(f"unreadable {path}: {err}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path} is not a results file (a JSON {type(data).__name__}, not an object)")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ResultsError(f"{path} has no {missing[0]!r}")
    return data


def write_npz(path: str, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def read_npz(path: str, keys=None) -> dict:
    """The arrays of ``path`` (only ``keys`` when given: the waits read just ``run``).

    ``ResultsError`` (one line, naming the file) when it is unreadable, fails its
    checksums, or lacks one of ``keys``.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys or () if k not in data.files]
            if missing:
                raise ResultsError(f"{path} has no array {missing[0]!r}")
            return {k: data[k] for k in (data.files if keys is None else keys)}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, struct.error) as err:
        if isinstance(err, ResultsError):
            raise
        raise ResultsError(f"corrupted result file {path} ({err})") from None


def check_records(arrays: dict, path: str) -> dict:
    """Per-run arrays as one record table: an integer ``run`` vector without repeats, and every
    array with one row per run. ``ResultsError`` naming ``path`` otherwise; returns ``arrays``."""
    run = arrays.get("run")
    if run is None:
        raise ResultsError(f"{path} holds no 'run' array (not per-run records)")
    if run.ndim != 1 or run.dtype.kind not in "iu":
        raise ResultsError(f"{path}: 'run' must be a vector of run indices, got {run.dtype} {run.shape}")
    for name, value in arrays.items():
        if value.ndim < 1 or value.shape[0] != run.size:
            raise ResultsError(
                f"{path}: arrays of mismatched lengths ('run' has {run.size} rows, {name!r} has "
                f"{value.shape[0] if value.ndim else 'none'})"
            )
        if value.dtype.kind not in "iufbU":
            raise ResultsError(f"{path}: {name!r} has dtype {value.dtype}, not numbers or text")
    if np.unique(run).size != run.size:
        raise ResultsError(f"{path} records a run twice")
    return arrays


# --------------------------------------------------------------------------
# One writer per folder

LOCK_NAME = ".lock"
_HELD_LOCKS: set[FolderLock] = set()
#: ``flock`` is not available on this filesystem (some network filesystems): fall back to a lock file
#: created exclusively.
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process (it left no record)"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def _parse_holder(raw: bytes) -> dict | None:
    try:
        holder = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return {"pid": "?", "host": "?", "since": "?"} if raw.strip() else None
    return holder if isinstance(holder, dict) else None


class FolderLock:
    """The advisory lock that makes one process at a time the writer of a results folder.

    ``acquire()`` takes ``fcntl.flock`` on ``folder/.lock`` without waiting and
    writes the holder's pid, host and start time into it; a held lock raises
    ``ResultsError`` naming its holder. The kernel releases the lock when the
    holder exits, however it exits, so a lock is never stale in the sense of
    blocking; a record left behind by a killed holder is reported through
    ``previous`` when the next writer takes the folder over. ``release()``
    removes the file (checking it is still the one locked: a writer that
    opened the old file before the removal retries on the new one).

    On a filesystem without ``flock`` the file itself is the lock (created
    with ``O_EXCL``): a record of a dead process of this host is taken over,
    one of another host is refused with advice to remove the file.
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.previous: dict | None = None
        self._fd: int | None = None
        self._exclusive_file = False

    def __enter__(self) -> FolderLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def _record() -> bytes:
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode()

    def _refuse(self, holder: dict | None, advice: str = "") -> ResultsError:
        gone = ""
        if holder and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if not _pid_alive(holder["pid"]):
                gone = " (that process has exited; a process it started still holds the lock)"
        return ResultsError(
            f"{self.folder} is in use: {_describe(holder)} is writing it{gone}; "
            f"one scan at a time may write a results folder{advice}"
        )

    def acquire(self) -> FolderLock:
        for _ in range(100):  # retries only when the file was replaced between open and lock
            try:
                fd, created = (
                    os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666),
                    True,
                )
            except FileExistsError:
                try:
                    fd, created = os.open(self.path, os.O_RDWR | os.O_CLOEXEC), False
                except FileNotFoundError:
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse_holder(os.pread(fd, 4096, 0))
                os.close(fd)
                raise self._refuse(holder) from None
            except OSError as err:
                os.close(fd)
                if err.errno in _NO_FLOCK:
                    if created:
                        os.unlink(self.path)
                    return self._acquire_exclusive_file()
                raise
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                now = None
            mine = os.fstat(fd)
            if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)  # released and removed by its holder since we opened it: open the new one
                continue
            self.previous = _parse_holder(os.pread(fd, 4096, 0))
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._record(), 0)
            self._fd = fd
            _HELD_LOCKS.add(self)
            return self
        raise ResultsError(f"could not lock {self.path}: it keeps being replaced")

    def _acquire_exclusive_file(self) -> FolderLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                try:
                    with open(self.path, "rb") as f:
                        holder = _parse_holder(f.read(4096))
                except FileNotFoundError:
                    continue
                pid = holder.get("pid") if holder else None
                if holder and holder.get("host") == socket.gethostname() and isinstance(pid, int):
                    if not _pid_alive(pid):
                        self.previous = holder
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.path)
                        continue
                raise self._refuse(
                    holder, f" (this filesystem has no flock: if that process is gone, remove {self.path})"
                ) from None
            os.write(fd, self._record())
            self._fd, self._exclusive_file = fd, True
            _HELD_LOCKS.add(self)
            return self
        raise ResultsError(f"could not lock {self.path}: another process is taking it over")

    def release(self) -> None:
        """Remove the lock file and unlock (nothing when not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if self._exclusive_file or os.path.samestat(os.stat(self.path), os.fstat(self._fd)):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None
        _HELD_LOCKS.discard(self)

    def abandon(self) -> None:
        """Empty the record and leave the lock to the kernel (this process is about to exit)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if self._exclusive_file:
                os.unlink(self.path)
            else:
                os.ftruncate(self._fd, 0)


def lock_folder(folder: str) -> FolderLock:
    """Create ``folder`` if needed and lock it (``FolderLock.acquire``); use as a context manager."""
    os.makedirs(folder, exist_ok=True)
    return FolderLock(folder).acquire()


def _took_over(lock: FolderLock) -> str | None:
    """The note for a lock record left by a writer that did not release it, or ``None``."""
    if lock.previous is None:
        return None
    return f"took over {lock.folder} from {_describe(lock.previous)}, which stopped without releasing it"


# --------------------------------------------------------------------------
# Scan folders: identity, refusal, agreement


def _config(problem, settings, seed, n_inits, keep_embeddings) -> dict:
    """What makes two scans the same scan (``config.json`` adds ``global_loss``).

    ``settings.execution`` is recorded but is not part of the identity (``config_differences``).
    """
    return {
        "problem": problem.to_json(),
        "settings": settings.to_json(),
        "seed": int(seed),
        "n_inits": int(n_inits),
        "save_embeddings": bool(keep_embeddings),
    }


#: Entries of ``config.json`` that record a session rather than define the scan (not compared on resume).
SESSION_KEYS = ("global_loss", "provenance", "timing", "earlier_sessions")


def _identity(config: dict) -> dict:
    """``config`` without what a resume may change: ``SESSION_KEYS`` and ``settings.execution``.

    Settings are normalised through ``ScanSettings`` (older folders store them flat);
    raises ``ValueError`` when they do not describe scan settings.
    """
    out = {k: v for k, v in config.items() if k not in SESSION_KEYS}
    if "settings" in out:
        settings = scanner.ScanSettings.from_json(out["settings"]).to_json()
        out["settings"] = {group: v for group, v in settings.items() if group != "execution"}
    return out


def _differences(on_disk, given, path: str = "") -> list[str]:
    if isinstance(on_disk, dict) and isinstance(given, dict):
        out = []
        for key in list(on_disk) + [k for k in given if k not in on_disk]:
            where = f"{path}.{key}" if path else str(key)
            if key not in given:
                out.append(f"{where}: {json.dumps(on_disk[key])} on disk, absent here")
            elif key not in on_disk:
                out.append(f"{where}: absent on disk, {json.dumps(given[key])} given")
            else:
                out.extend(_differences(on_disk[key], given[key], where))
        return out
    if on_disk == given and isinstance(on_disk, bool) == isinstance(given, bool):
        return []
    return [f"{path}: {json.dumps(on_disk)} on disk, {json.dumps(given)} given"]


def config_differences(on_disk: dict, given: dict) -> list[str]:
    """Every field in which two scan (or sweep) configurations differ, as ``"path: a on disk, b given"``.

    ``global_loss`` and the ``execution`` group of ``settings`` (slots, chunking, the
    streaming path: they change results by rounding at most) are left out, so a
    resume may change them. Raises ``ValueError`` when ``on_disk`` is not a
    configuration (its settings are not scan settings).
    """
    if not isinstance(on_disk, dict):
        raise ValueError(f"not a configuration: a JSON {type(on_disk).__name__}")
    return _differences(_identity(on_disk), _identity(given))


def _read_config(out: str) -> dict:
    """``out/config.json``; raises ``ResultsError``."""
    return read_json(os.path.join(out, "config.json"))


def holds_results(folder: str) -> bool:
    """Whether ``folder`` holds anything but the scaffolding a writer leaves before its first
    result (the lock, temporary files, an empty ``chunks/``)."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return False
    for name in names:
        if name == LOCK_NAME or name.startswith(TEMP_PREFIX):
            continue
        path = os.path.join(folder, name)
        if name == "chunks" and os.path.isdir(path):
            if all(f.startswith(TEMP_PREFIX) for f in os.listdir(path)):
                continue
        return True
    return False


def _folder_error(out: str, config: dict, resume: bool) -> str | None:
    """Why ``out`` cannot take this scan, or ``None``; reads only."""
    if not holds_results(out):
        return None
    if not resume:
        return f"--out {out} exists and is not empty (use --resume to continue it)"
    if not os.path.exists(os.path.join(out, "config.json")):
        return f"cannot resume {out}: it holds files but no config.json (it is not a scan folder)"
    try:
        differences = config_differences(_read_config(out), config)
    except ValueError as err:
        return f"cannot resume {out}: {err}"
    if differences:
        return f"cannot resume {out}: its config.json differs from this scan's: {'; '.join(differences)}"
    return None


def _check_process(process) -> tuple[int, int]:
    """``(p, P)``, checked; under ``jax.distributed`` it can only be this process's own."""
    own = (jax.process_index(), jax.process_count())
    if process is None:
        return own
    try:
        p, count = (int(v) for v in process)
    except (TypeError, ValueError):
        p, count = -1, 0
    if not 0 <= p < count:
        raise ValueError(f"process must be (index, count) with 0 <= index < count, got {process!r}")
    if own[1] > 1 and (p, count) != own:
        raise ValueError(f"under jax.distributed process must be {own}, got {process!r}")
    return p, count


def _agree(error: str | None, config: dict, out: str) -> str | None:
    """Process 0's verdict on ``out``, on every process, and a check that all run one scan.

    One collective (all processes of ``jax.distributed``), so that a refusal stops
    every process at once instead of leaving the others waiting for runs that
    never come, and processes started with different settings are refused
    before any of them writes (their execution settings may differ).
    """
    identity = json.dumps(_identity(config), sort_keys=True)
    digest = hashlib.sha256(identity.encode()).digest()[:12]
    mine = np.concatenate([[int(error is not None)], np.frombuffer(digest, np.int32)]).astype(np.int32)
    every = np.asarray(multihost_utils.process_allgather(mine))
    if every[0, 0]:
        return error or f"process 0 refused --out {out} (see its message)"
    if np.any(every[:, 1:] != every[0, 1:]):
        return f"the processes sharing --out {out} were started with different scan settings"
    return None


def _wait(what: str, ready, timeout: float, poll: float = 0.5):
    """Poll ``ready()`` (a progress count, or ``True`` when done) until done.

    Gives up with a ``ResultsError`` once ``timeout`` seconds pass without progress,
    so a process that died elsewhere ends this one too (the folder stays resumable).
    """
    best, since = -1, time.monotonic()
    while True:
        state = ready()
        if state is True:
            return
        if state > best:
            best, since = state, time.monotonic()
        elif time.monotonic() - since > timeout:
            raise ResultsError(f"gave up after {timeout:.0f} s waiting for {what}; rerun with --resume")
        time.sleep(poll)


# --------------------------------------------------------------------------
# Chunks and their merge


#: The per-run fields every records file holds (``scanner.RECORD_FIELDS`` has more).
RUN_FIELDS = ("run", "loss", "status", "grad_norm", "cert_lambda", "cert_gap_bound")


def _read_run_file(path: str) -> dict:
    """A records file (chunk or ``runs.npz``), checked: ``check_records`` and ``RUN_FIELDS``."""
    arrays = check_records(read_npz(path), path)
    missing = [f for f in RUN_FIELDS if f not in arrays]
    if missing:
        raise ResultsError(f"{path} has no {missing[0]!r}")
    return arrays


def _chunk_paths(out: str) -> list[str]:
    folder = os.path.join(out, "chunks")
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("part-") and f.endswith(".npz")
    )


def _chunk_prefix(p: int) -> str:
    """``part-pPPP-HOST-PID-TOKEN-``: no other writer, on any host, at any time, picks it."""
    return f"part-p{p:03d}-{_HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}-"


def _runs_present(out: str, n_inits: int, seen: dict) -> int | bool:
    """How many of the runs ``0..n_inits-1`` the chunks hold (``True``: all); ``seen`` caches."""
    if os.path.exists(os.path.join(out, "runs.npz")):
        return True
    for path in _chunk_paths(out):
        if path not in seen:
            seen[path] = read_npz(path, keys=["run"])["run"]
    held = np.unique(np.concatenate([np.arange(0), *seen.values()]))
    count = int(np.sum((held >= 0) & (held < n_inits)))
    return True if count == n_inits else count


def _same_record(a: dict, i: int, b: dict, j: int) -> bool:
    """Whether row ``i`` of ``a`` and row ``j`` of ``b`` hold the same values (NaN equal to NaN)."""
    for name, column in a.items():
        nan_ok = column.dtype.kind == "f"
        if not np.array_equal(column[i], b[name][j], equal_nan=nan_ok):
            return False
    return True


@dataclasses.dataclass
class Merge:
    """The per-run records of a scan folder, merged from ``runs.npz`` and the chunks.

    ``runs``: the records sorted by run, each run once (empty dict when none);
    ``missing``: runs of ``0..n_inits-1`` that no file holds; ``duplicates``:
    identical copies dropped; ``notes``: what was repaired (a damaged
    ``runs.npz`` left out, damaged chunks whose runs other files hold).
    """

    runs: dict
    missing: np.ndarray
    duplicates: int
    notes: list


def merge_runs(out: str, n_inits: int | None = None, *, use_final: bool = True) -> Merge:
    """Merge the records of ``out``: a valid ``runs.npz`` that holds every run, else every chunk.

    Identical duplicates (a run written twice, e.g. by two writers of an older
    version that took no lock) are dropped; a run recorded twice with
    different values, a run outside ``0..n_inits-1``, chunks with different
    fields, or a damaged chunk whose runs no other file holds raise
    ``ResultsError`` saying which files to move away (their runs are
    recomputed by ``--resume``). A damaged ``runs.npz`` is left out (a note):
    it is a merge of the chunks and is rebuilt from them.
    """
    notes: list[str] = []
    final = os.path.join(out, "runs.npz")
    sources: list[tuple[str, dict]] = []
    if use_final and os.path.exists(final):
        try:
            sources.append((final, _read_run_file(final)))
        except ResultsError as err:
            notes.append(f"{err}; left out, it is rebuilt from the chunks")
    if sources and n_inits is not None and np.array_equal(sources[0][1]["run"], np.arange(n_inits)):
        return Merge(sources[0][1], np.zeros(0, np.int64), 0, notes)
    damaged = []
    for path in _chunk_paths(out):
        try:
            sources.append((path, _read_run_file(path)))
        except ResultsError as err:
            damaged.append(str(err))
    runs: dict = {}
    duplicates = 0
    if sources:
        fields = set(sources[0][1])
        for path, arrays in sources[1:]:
            if set(arrays) != fields:
                raise ResultsError(
                    f"{path} and {sources[0][0]} hold different fields ({sorted(set(arrays) ^ fields)}): "
                    f"they come from different scans; move the one that does not belong out of {out}"
                )
        run = np.concatenate([a["run"] for _, a in sources]).astype(np.int64)
        src = np.concatenate([np.full(a["run"].size, k) for k, (_, a) in enumerate(sources)])
        row = np.concatenate([np.arange(a["run"].size) for _, a in sources])
        if n_inits is not None and run.size and (run.min() < 0 or run.max() >= n_inits):
            bad = int(np.flatnonzero((run < 0) | (run >= n_inits))[0])
            raise ResultsError(
                f"{sources[src[bad]][0]} holds run {run[bad]}, outside this scan's 0..{n_inits - 1}: "
                f"move it out of {out}"
            )
        order = np.lexsort((src, run))
        ordered = run[order]
        keep = np.ones(order.size, bool)
        keep[1:] = ordered[1:] != ordered[:-1]
        conflicts = []
        for pos in np.flatnonzero(~keep):
            lead, copy = order[np.searchsorted(ordered, ordered[pos])], order[pos]
            (a_path, a), (b_path, b) = sources[src[lead]], sources[src[copy]]
            if not _same_record(a, row[lead], b, row[copy]):
                conflicts.append((int(ordered[pos]), a_path, b_path))
        if conflicts:
            i, a, b = conflicts[0]
            others = len({c[0] for c in conflicts}) - 1
            more = f" (and {others} more runs)" if others else ""
            raise ResultsError(
                f"run {i} is recorded with different results in {a} and {b}{more}: they were written by "
                "scans that did not compute the same runs; move both files away and rerun with "
                "--resume, which recomputes their runs"
            )
        chosen = order[keep]
        runs = {name: np.concatenate([a[name] for _, a in sources])[chosen] for name in fields}
        duplicates = int(np.sum(~keep))
    present = runs["run"] if runs else np.zeros(0, np.int64)
    missing = np.setdiff1d(np.arange(n_inits), present) if n_inits is not None else np.zeros(0, np.int64)
    if damaged:
        if n_inits is None or missing.size:
            raise ResultsError(
                f"{damaged[0]}; its runs can be recomputed: move it out of {os.path.join(out, 'chunks')} "
                "and rerun with --resume"
            )
        notes.append(f"{damaged[0]}; not needed, the other files hold every run")
    return Merge(runs, missing, duplicates, notes)


def load_runs(out: str) -> dict:
    """All per-run records in ``out`` (``runs.npz``, or the merged chunks, sorted by run index)."""
    n_inits = None
    with contextlib.suppress(ResultsError):
        n = _read_config(out).get("n_inits")
        n_inits = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None
    return merge_runs(out, n_inits).runs


def run_scan(
    problem: problems.Problem,
    n_inits: int,
    seed: int,
    settings: scanner.ScanSettings,
    out: str,
    *,
    resume: bool = False,
    keep_embeddings: bool = False,
    progress=None,
    process: tuple[int, int] | None = None,
    wait_timeout: float = 3600.0,
    log=None,
) -> dict:
    """Run (or resume) a scan into the folder ``out`` and return its summary.

    Refuses (``ResultsError``, nothing touched) an existing non-empty ``out``
    without ``resume``, a ``resume`` whose config differs from the one on disk
    (every differing field named; the ``execution`` settings may differ), and a
    folder another scan is writing (``FolderLock``; held for the whole run).
    ``progress(done, total, phase, detail)`` (or a callable of the first two or
    three of those; ``sclandscape.progress``) is called as this process's runs
    leave the first-order phase (``done``; the detail says how many are
    recorded) and at each phase change (``compiling``, ``first order``,
    ``polish``, ``classification``, ``writing``). Default (``None``): a display
    of its own (a bar in a terminal or notebook, lines in a log file;
    ``progress.resolve``); ``False``: silent;
    ``log(line)`` gets notes on what was repaired (leftover lock records,
    a damaged ``runs.npz`` rebuilt, duplicate runs dropped).

    ``process = (p, P)`` (default ``(jax.process_index(), jax.process_count())``)
    shares the scan among ``P`` processes: this one runs the indices ``i % P == p``
    and, once the chunks hold every run, all return the summary and process 0
    writes ``runs.npz`` and ``summary.json``. Only process 0 judges and locks
    ``out`` (the others would see the folder it creates): under ``jax.distributed``
    its verdict reaches all processes through one collective; otherwise the others
    wait for its ``config.json`` and require it to match. A wait with no progress
    for ``wait_timeout`` seconds raises ``ResultsError``.
    """
    with progress_lib.resolve(progress, "scan") as report:
        return _run_scan(
            problem, n_inits, seed, settings, out, resume, keep_embeddings, report, process, wait_timeout, log
        )


def _run_scan(
    problem, n_inits, seed, settings, out, resume, keep_embeddings, progress, process, wait_timeout, log
) -> dict:
    started = time.time()
    if isinstance(n_inits, bool) or int(n_inits) != n_inits or n_inits < 1:
        raise ValueError(f"n_inits must be an integer >= 1, got {n_inits!r}")
    seed = problems.check_seed(seed)
    p, count = _check_process(process)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ResultsError(f"--out {out} exists and is not a folder")
    config = _config(problem, settings, seed, n_inits, keep_embeddings)
    runs_here = len(range(p, int(n_inits), count))
    # A run that cannot fit the memory budget is refused before the folder exists (ValueError).
    scanner.plan(problem.n, problem.dim, settings, runs=runs_here, devices=jax.local_device_count())
    lock, created, error = None, False, None
    # Compile time against the rest (config.json's timing); the checks above take microseconds.
    watch = compilation.Stopwatch().start()
    try:
        if p == 0:
            error = _folder_error(out, config, resume)
            if error is None:
                created = not os.path.exists(out)
                try:
                    lock = lock_folder(out)
                    error = _folder_error(out, config, resume)  # again: another writer may have been first
                except ResultsError as err:
                    error = str(err)
        if count > 1 and jax.process_count() > 1:
            error = _agree(error, config, out)
        if error:
            raise ResultsError(error)
        if lock is not None and log and _took_over(lock):
            log(_took_over(lock))
        key = jax.random.key(seed)
        runner = scanner.Scanner(problem, key, settings, keep_embeddings=keep_embeddings, runs=runs_here)
        config_path = os.path.join(out, "config.json")
        chunks = os.path.join(out, "chunks")
        if p == 0:
            for folder in (out, chunks, os.path.join(out, "points")):
                clean_temps(folder, sole_writer=count == 1)
            session = {
                **config,
                "global_loss": runner.optimum.loss,
                "provenance": provenance(problem, settings, runner.slots, plan=runner.plan),
                "timing": {
                    "started": _iso(started),
                    "finished": None,
                    "wall_s": None,
                    "runs_computed": 0,
                    "compile_s": None,
                    "run_s": None,
                    "total_s": None,
                },
                "earlier_sessions": _earlier_sessions(config_path),
            }
            write_json(config_path, session)
            write_json(os.path.join(out, "optimum.json"), runner.optimum.to_json())
        elif jax.process_count() == 1:  # no collective: write only after process 0 has judged `out`
            _wait(f"{config_path} from process 0", lambda: os.path.exists(config_path), wait_timeout)
            try:
                differences = config_differences(_read_config(out), config)
            except ValueError as err:
                raise ResultsError(f"cannot use {out}: {err}") from None
            if differences:
                raise ResultsError(f"cannot join {out}: its config.json differs: {'; '.join(differences)}")
        os.makedirs(chunks, exist_ok=True)

        before = merge_runs(out, n_inits)
        for note in before.notes:
            if log:
                log(note)
        done = set(before.runs.get("run", np.array([], np.int64)).tolist())
        share = range(p, int(n_inits), count)
        todo = [i for i in share if i not in done]
        prefix = _chunk_prefix(p)
        finished = earlier = len(share) - len(todo)
        # The count shown: runs that have left the first-order phase (it moves as soon as runs finish,
        # whether or not a batch is complete); the detail says how many are recorded in chunks. The
        # interrupt line counts only the recorded ones.
        interrupts.progress(finished, len(share))
        if progress:
            progress(finished, len(share), "compiling" if todo else "writing")
            runner.on_phase = lambda phase, detail=None: progress(
                earlier + runner.moved,
                len(share),
                phase,
                f"{finished} recorded" if phase == "first order" else detail,
            )
        for seq, part in enumerate(runner.results(todo)):
            if progress:
                progress(earlier + runner.moved, len(share), "writing", f"{part['run'].size} runs")
            name = f"{prefix}{seq:05d}.npz"
            write_points(out, name, part.pop("points"))  # before the chunk: a chunk implies its points
            write_npz(os.path.join(chunks, name), part)
            finished += part["run"].size
            interrupts.progress(finished, len(share))
            if progress:
                progress(max(finished, earlier + runner.moved), len(share), None, f"{finished} recorded")
        if count > 1:
            seen: dict = {}
            _wait(
                f"the other processes' runs in {out}", lambda: _runs_present(out, n_inits, seen), wait_timeout
            )
        if progress:
            progress(finished, len(share), "writing", "runs.npz and summary.json")
        merged = merge_runs(out, n_inits)
        if merged.missing.size:
            raise ResultsError(
                f"{out}: no file holds runs {merged.missing[:5].tolist()}"
                f"{' ...' if merged.missing.size > 5 else ''} ({merged.missing.size} of {n_inits}); "
                "rerun with --resume to compute them"
            )
        if merged.duplicates and log and p == 0:
            log(f"{merged.duplicates} runs were recorded twice in {chunks} (identical copies, counted once)")
        runs = merged.runs
        points = merge_points(out, runs)
        inherit_point_fields(runs, points)
        runs["kind"] = classify_records(runs, runner.optimum.loss, settings)
        runs["status_name"] = status_names(runs["status"])
        summary = summarize(runs, runner.optimum.loss, settings, points, runner.optimum.rank)
        summary["attainable"] = problem.dim >= runner.optimum.rank
        summary["problem"] = problem.to_json()
        if p == 0:
            write_npz(os.path.join(out, "points.npz"), points)
            write_npz(os.path.join(out, "runs.npz"), runs)
            write_json(os.path.join(out, "summary.json"), summary)
            split = watch.to_json()  # compile_s counts loads from the compilation cache too
            session["timing"].update(
                finished=_iso(time.time()),
                wall_s=split["total_s"],
                runs_computed=finished - (len(share) - len(todo)),
                **split,
            )
            write_json(config_path, session)
        return summary
    finally:
        watch.stop()
        if lock is not None:
            lock.release()
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out)  # only when empty: a scan that stopped before writing anything


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(
    problem: problems.Problem,
    settings: scanner.ScanSettings,
    slots: int | None = None,
    *,
    plan: scanner.Plan | None = None,
) -> dict:
    """What a scan ran with: versions, devices, and the execution paths it takes (``config.json``).

    ``execution`` records the choices actually taken for this problem and
    settings: ``streaming`` (``scanner.streams``: the loss, gradient and
    certificate without the ``n x n`` matrix), the kernels of the first-order
    phase (``streaming.kernel_impl`` in the scan's dtype: ``"pallas"``,
    ``"jax"``; ``"dense"`` when not streaming) and of the float64 polish, the
    certificate (``"lanczos"`` when streaming, else the dense ``"eigvalsh"``),
    and ``slots`` (the concurrent runs after rounding to the device count);
    given the scanner's ``plan`` (``scanner.plan``), also where the slots came
    from (``slots_from``: ``"settings"`` or ``"memory_budget"``), the
    ``memory_budget`` and the estimated ``slot_bytes`` of one slot.
    """
    if plan is not None:
        slots = plan.slots
    stream = plan.stream if plan is not None else scanner.streams(problem.n, settings)
    first_order = np.float64 if settings.x64 else np.float32
    devices = jax.devices()
    return {
        "sclandscape": metadata.version(),
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "devices": {
            "platform": jax.default_backend(),
            "kind": devices[0].device_kind,
            "count": len(devices),
            "local_count": jax.local_device_count(),
            "processes": jax.process_count(),
            "float64_platform": precision.float64_device().platform,
        },
        "execution": {
            "streaming": bool(stream),
            "streaming_mode": settings.streaming,
            "first_order_dtype": np.dtype(first_order).name,
            "first_order_kernel": streaming.kernel_impl(first_order) if stream else "dense",
            "polish_kernel": streaming.kernel_impl(np.float64) if stream else "dense",
            "certificate": "lanczos" if stream else "eigvalsh",
            "slots": None if slots is None else int(slots),
            **(
                {}
                if plan is None
                else {
                    "slots_from": plan.slots_from,
                    "memory_budget": plan.memory_budget,
                    "slot_bytes": plan.slot_bytes,
                }
            ),
        },
    }


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


def _earlier_sessions(config_path: str) -> list:
    """The sessions recorded in an existing ``config.json`` (a resume keeps them), oldest first."""
    if not os.path.exists(config_path):
        return []
    try:
        old = read_json(config_path)
    except ResultsError:
        return []
    earlier = list(old.get("earlier_sessions", []))
    if "provenance" in old:
        earlier.append({"provenance": old["provenance"], "timing": old.get("timing")})
    return earlier


# --------------------------------------------------------------------------
# Distinct critical points


def write_points(out: str, name: str, points: dict) -> None:
    """The distinct points a batch of runs found (the ``Scanner``'s ``points``) into ``out/points/name``."""
    if len(points.get("loss", [])):
        write_npz(os.path.join(out, "points", name), points)


#: A run's fields that are its distinct point's verdict (``census.PointBook._inherit``): run: point field.
POINT_INHERITED = {
    "hess_lambda_min": "lambda_min",
    "hess_index": "index",
    "hess_n_zero": "n_zero",
    "hess_n_zero_predicted": "n_zero_predicted",
    "hess_tol": "tol",
    "strict_certified": "strict_certified",
    "certified_radius": "certified_radius",
    "lifted_index": "lifted_index",
}


def inherit_point_fields(runs: dict, points: dict) -> None:
    """Each run that reached a distinct point takes that merged point's verdict (``POINT_INHERITED``).

    Every session (a resumed scan, each process) judges its own copy of a
    point; the copies agree to rounding, not to the bit. A run judged in a
    later session would otherwise carry its session's copy (``hess_lambda_min``
    and ``hess_tol`` differing in the last bits from an uninterrupted scan);
    with the merged point's (the earliest session's copy, ``census.merge``)
    the runs of a scan interrupted and resumed equal those of the
    uninterrupted one. In place.
    """
    point = np.asarray(runs.get("point", np.full(runs["run"].size, -1)))
    rows = np.flatnonzero(point >= 0)
    if not rows.size or not len(points.get("loss", [])):
        return
    for field, source in POINT_INHERITED.items():
        if field in runs and source in points:
            values = np.array(runs[field], copy=True)
            values[rows] = np.asarray(points[source])[point[rows]].astype(values.dtype)
            runs[field] = values


def merge_points(out: str, runs: dict) -> dict:
    """Merge ``out/points/*.npz`` into one set of distinct points; renumber each run's ``point`` (in place).

    Points found by different processes or resumed sessions that are one
    critical point modulo the loss's symmetries are merged, and the points are
    numbered by loss (``census.merge_sessions``); each run's ``point`` then
    indexes the merged arrays. The result carries the problem (``labels``,
    ``counts``, ``tau``), so that ``points.npz`` can be classified on its own.
    """
    folder = os.path.join(out, "points")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npz")) if os.path.isdir(folder) else []
    parts = [read_npz(os.path.join(folder, f)) for f in files]
    parts = [p for p in parts if len(p.get("loss", []))]
    config = read_json(os.path.join(out, "config.json"))
    problem = problems.Problem.from_json(config["problem"])
    found = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    session = np.asarray(runs.get("session", np.zeros(runs["run"].size, np.int64)))
    point = np.asarray(runs.get("point", np.full(runs["run"].size, -1)))
    merged, runs["point"] = census.merge_sessions(found, point, session, problem.labels, problem.tau)
    if merged:
        merged.update(
            labels=np.asarray(problem.labels, np.int64),
            counts=np.asarray(problem.counts, np.int64),
            tau=np.float64(problem.tau),
        )
    return merged


# --------------------------------------------------------------------------
# Summaries


def classify_records(rec: dict, global_loss: float, settings: scanner.ScanSettings) -> np.ndarray:
    """Each run's kind as the scan recorded it (``ResultsError`` for records without one)."""
    if "kind" not in rec:
        raise ResultsError("the runs carry no 'kind' (written by an older version): rerun the scan")
    return np.asarray(rec["kind"]).astype("<U13")


#: Kinds grouped into distinct minima by ``summarize``.
MINIMA = ("global_min", "spurious_min", "local_min", "degenerate")

#: ``runs.npz``'s integer ``status`` -> name (``optim.Status``, lower case); summary.json's ``status_codes``.
STATUS_NAMES = {int(s): s.name.lower() for s in optim.Status}


def status_names(status) -> np.ndarray:
    """The name of each ``status`` code (``STATUS_NAMES``; a code it lacks is written as its number)."""
    codes = np.asarray(status).astype(np.int64)
    return np.array([STATUS_NAMES.get(int(c), str(int(c))) for c in codes.ravel()], dtype="<U16").reshape(
        codes.shape
    )


def binomial_upper_bound(count: int, trials: int, confidence: float = 0.95) -> float:
    r"""Clopper-Pearson exact one-sided upper confidence bound on a binomial proportion.

    ``count`` successes in ``trials`` independent trials, ``X ~ Binomial(N, p)``.
    The bound ``p_U(x)`` is the largest ``p`` under which seeing at most ``x``
    successes still has probability at least ``alpha = 1 - confidence``::

        P(X <= x; p_U) = alpha        (x < N),        p_U = 1   (x = N).

    Coverage: ``F(x; p) = P(X <= x; p)`` decreases in ``p``, so
    ``p_U(x) < p`` exactly when ``F(x; p) < alpha``; the outcomes ``x`` with
    ``F(x; p) < alpha`` form a lower tail of probability below ``alpha``, so
    ``P(p_U(X) >= p) >= 1 - alpha`` for every ``p`` (exact, conservative, no
    normal approximation). With
    ``P(X <= x; p) = 1 - I_p(x + 1, N - x)`` (regularised incomplete beta)
    the bound is the ``confidence`` quantile of ``Beta(x + 1, N - x)``. For
    ``x = 0`` the equation is ``(1 - p_U)^N = alpha``, so
    ``p_U = 1 - alpha^(1/N) <= -ln(alpha) / N``, which is ``2.996 / N`` at
    95%: the "rule of three" (``3 / N``).
    """
    if isinstance(trials, bool) or int(trials) != trials or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    if isinstance(count, bool) or int(count) != count or not 0 <= count <= trials:
        raise ValueError(f"count must be an integer in 0..{int(trials)}, got {count!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    x, n = int(count), int(trials)
    if x == n:
        return 1.0
    if x == 0:  # closed form, exact to rounding (the beta quantile agrees to ~1e-15)
        return float(-np.expm1(np.log1p(-confidence) / n))
    return float(scipy.stats.beta.ppf(confidence, x + 1, n - x))


def spurious_fraction(count: int, trials: int) -> dict:
    """``{"count", "runs", "observed", "upper_95"}``: runs ending at a spurious minimum, and the bound.

    ``upper_95`` is ``binomial_upper_bound(count, runs, 0.95)``: with 95%
    confidence, at most this fraction of random initialisations (the scan's
    distribution) ends at a spurious minimum.
    """
    return {
        "count": int(count),
        "runs": int(trials),
        "observed": int(count) / int(trials),
        "upper_95": binomial_upper_bound(count, trials, 0.95),
    }


def _point_entry(points: dict, p: int, count: int, global_loss: float) -> dict:
    """The summary's entry of distinct point ``p`` (``points.npz``'s index) reached by ``count`` runs."""

    def field(name, cast, default=None):
        return cast(points[name][p]) if name in points else default

    kind = str(points["kind"][p])
    fixed, total = field("relabel_stabilizer", int, 0), field("relabellings", int, 0)
    return {
        "point": p,
        "loss": float(points["loss"][p]),
        "gap": float(points["loss"][p] - global_loss),
        "count": count,
        "kind": kind,
        "decided_by": str(points["decided_by"][p]),
        "certified_global": kind == "global_min",
        "index": int(points["index"][p]),
        "strict_certified": bool(points["strict_certified"][p]),
        "certified_radius": float(points["certified_radius"][p]),
        "proof_reason": field("proof_reason", str, ""),
        "lifted_index": int(points["lifted_index"][p]),
        "lambda_min": field("lambda_min", float),
        "flat_dim": field("flat_dim", int, 0),
        "flat_scale": field("flat_scale", float, 0.0),
        "tolerances": {name: field(name, float) for name in ("tol", "tol_round", "tol_grad", "gap_tol")},
        "radius": field("refined_radius", float),
        "merged_points": field("merged_points", int, 1),
        # The point's orbit under relabelling of equal-size classes: relabellings / stabiliser.
        "relabel_orbit": total // fixed if fixed else None,
        "kinds": {kind: count},
    }


def _distinct_minima(rec: dict, kind: np.ndarray, points: dict | None, global_loss: float) -> list[dict]:
    """One entry per distinct minimum: the scan's distinct points (``point``), counted over runs."""
    entries = []
    point = np.asarray(rec.get("point", np.full(kind.size, -1)))
    if points is not None and len(points.get("loss", [])):
        for p in range(len(points["loss"])):
            members = point == p
            if members.any() and str(points["kind"][p]) in MINIMA:
                entries.append(_point_entry(points, p, int(members.sum()), global_loss))
    # Runs judged by the cheap tests alone (no representative point): one entry per kind.
    for name in MINIMA:
        alone = (kind == name) & (point < 0)
        if alone.any():
            losses = rec["loss"][alone]
            entries.append(
                {
                    "point": -1,
                    "loss": float(np.min(losses)),
                    "gap": float(np.min(losses) - global_loss),
                    "count": int(alone.sum()),
                    "kind": name,
                    "decided_by": ",".join(
                        sorted(set(np.asarray(rec.get("decided_by", kind))[alone].tolist()))
                    ),
                    "certified_global": name == "global_min",
                    "index": 0,
                    "strict_certified": False,
                    "certified_radius": None,
                    "proof_reason": "no representative point (judged by the gradient alone)",
                    "lifted_index": -1,
                    "kinds": {name: int(alone.sum())},
                }
            )
    entries.sort(key=lambda e: e["loss"])
    return entries


def summarize(
    rec: dict,
    global_loss: float,
    settings: scanner.ScanSettings,
    points: dict | None = None,
    global_rank=None,
) -> dict:
    """The summary: counts per kind and per deciding test, and the distinct minima.

    ``points``: the scan's distinct critical points (``merge_points``); each
    run's ``point`` field says which one it reached. When ``d < rank M*``
    (``global_rank``) ``L*`` is not attainable: the minima are ``local_min``
    and each gets its ``gap_to_lowest``, the difference to the lowest found.
    """
    kind = classify_records(rec, global_loss, settings)
    distinct = _distinct_minima(rec, kind, points, global_loss)
    lowest = min((e["loss"] for e in distinct), default=None)
    for e in distinct:
        e["gap_to_lowest"] = e["loss"] - lowest
    decided = np.asarray(rec.get("decided_by", np.full(kind.size, "")))
    counts = {k: int(np.sum(kind == k)) for k in metrics.KINDS}
    n_inits = int(rec["run"].size)
    extra = {}
    if "first_order_loss" in rec:  # adam / sgd scans: where the optimiser itself got, before the polish
        fo_gap = np.asarray(rec["first_order_loss"]) - global_loss
        extra["first_order"] = {
            "optimizer": settings.optimizer,
            "n_at_optimum": int(np.sum(np.abs(fo_gap) <= np.asarray(rec["first_order_gap_tol"]))),
            "median_grad_norm": float(np.median(rec["first_order_grad_norm"])),
            "median_gap": float(np.median(fo_gap)),
            "polished": bool(settings.polish),
        }
    summary = {
        "n_inits": n_inits,
        "global_loss": float(global_loss),
        "counts": counts,
        "spurious_fraction": spurious_fraction(counts["spurious_min"], n_inits) if n_inits else None,
        "decided_by": {d: int(np.sum(decided == d)) for d in verdict.DECIDERS if np.any(decided == d)},
        "distinct_minima": distinct,
        "best_loss": float(np.min(rec["loss"])) if rec["loss"].size else None,
        "lowest_minimum": lowest,
        "escapes": int(np.sum(rec.get("escapes", np.zeros(1)))),
        "status_counts": {
            STATUS_NAMES.get(int(s), str(s)): int(np.sum(rec["status"] == s))
            for s in np.unique(rec["status"])
        },
        "status_codes": {str(code): name for code, name in STATUS_NAMES.items()},
        "classification": (
            "every run: gradient, certificate and gap tests; runs they leave open: refined in float64 and "
            "grouped modulo rotations, reflections, sample permutations and relabellings; each distinct "
            "critical point: its float64 "
            "spectrum with the symmetry modes removed, the a-posteriori proof and (below rank M*) the "
            "lifting test; saddles escaped and continued (docs/maths.md §5)"
        ),
        "tolerances": {
            "tol": settings.tol,
            "gtol": settings.gtol_factor * settings.tol,
            "grouping": "derived per point (census.same_point): loss within both gap tolerances, then the "
            "aligned distance within both radii, or a flat path for flat sets",
        },
        **extra,
    }
    if global_rank is not None:
        summary["global_rank"] = int(global_rank)
    return summary


# --------------------------------------------------------------------------
# Loading a finished scan; embeddings and spectra of its points


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_summary(summary: dict, path: str) -> dict:
    """``summary`` (read from ``path``) has the shape ``summarize`` writes; else ``ResultsError``."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ResultsError(f"{path}: {what}")

    for key in ("n_inits", "global_loss", "counts", "distinct_minima"):
        need(key in summary, f"no {key!r}")
    need(_is_int(summary["n_inits"]) and summary["n_inits"] >= 1, "'n_inits' must be an integer >= 1")
    need(_is_number(summary["global_loss"]), "'global_loss' must be a number")
    counts = summary["counts"]
    need(
        isinstance(counts, dict) and all(_is_int(counts.get(k)) and counts[k] >= 0 for k in metrics.KINDS),
        f"'counts' must give a count >= 0 for each of {', '.join(metrics.KINDS)}",
    )
    minima = summary["distinct_minima"]
    entry = {
        "loss": _is_number,
        "gap": _is_number,
        "count": _is_int,
        "certified_global": lambda v: v in (True, False),
    }
    need(
        isinstance(minima, list)
        and all(isinstance(m, dict) and all(f(m.get(k)) for k, f in entry.items()) for m in minima),
        "'distinct_minima' must be a list of {loss, gap, count, certified_global}",
    )
    optional = {
        "best_loss": lambda v: v is None or _is_number(v),
        "grouping_tolerance": _is_number,
        "global_rank": lambda v: v is None or _is_int(v),
        "classification": lambda v: isinstance(v, str),
        "status_counts": lambda v: isinstance(v, dict) and all(_is_int(c) for c in v.values()),
    }
    for key, ok in optional.items():
        need(key not in summary or ok(summary[key]), f"{key!r} has the wrong type ({summary.get(key)!r})")
    return summary


def read_summary(path: str) -> dict:
    """A scan's ``summary.json``, checked (``check_summary``)."""
    return check_summary(read_json(path), path)


def _damaged_runs_hint(out: str, n_inits: int) -> str:
    """How a damaged or malformed ``runs.npz`` is repaired: from the chunks, by ``--resume``."""
    try:
        missing = merge_runs(out, n_inits, use_final=False).missing.size
    except ResultsError:
        return "rerun `sclandscape scan ... --resume` on this folder after moving away the files it names"
    held = "all" if not missing else f"{n_inits - missing} of"
    rest = "" if not missing else " and recomputes the rest"
    return (
        f"`sclandscape scan ... --resume` with this scan's arguments rebuilds it from the chunks, which hold "
        f"{held} {n_inits} runs{rest}"
    )


def load_scan(out: str) -> dict:
    """The pieces of a finished scan folder: ``config``, ``summary``, ``runs``, ``class_gram`` (M*).

    Checks structure as well as bytes (every file of the shape the scan writes,
    ``runs.npz`` with one row per run ``0..n_inits-1`` in every array). Raises
    ``ResultsError`` (one line naming the file and the problem) when ``out`` is
    not a finished scan.
    """
    if not os.path.isdir(out):
        raise ResultsError(f"{out} is not a folder")
    if not os.path.exists(os.path.join(out, "config.json")):
        raise ResultsError(f"{out} is not a scan results folder (no config.json)")
    for name in ("summary.json", "runs.npz"):
        if not os.path.exists(os.path.join(out, name)):
            raise ResultsError(
                f"{out} holds an unfinished scan (no {name}); finish it with `sclandscape scan ... --resume`"
            )
    config_path = os.path.join(out, "config.json")
    config = read_json(config_path, keys=("problem", "settings", "seed", "n_inits"))
    try:
        problem = problems.Problem.from_json(config["problem"])
        settings = scanner.ScanSettings.from_json(config["settings"])
        problems.check_seed(config["seed"])
        problems.check_integer("n_inits", config["n_inits"])
    except (TypeError, ValueError, KeyError) as err:
        raise ResultsError(f"{config_path} does not describe a scan: {err}") from None
    n_inits = config["n_inits"]
    summary_path = os.path.join(out, "summary.json")
    summary = read_summary(summary_path)
    runs_path = os.path.join(out, "runs.npz")
    try:
        runs = _read_run_file(runs_path)
        if not np.array_equal(runs["run"], np.arange(n_inits)):
            raise ResultsError(f"{runs_path} does not hold runs 0..{n_inits - 1} in order")
    except ResultsError as err:
        raise ResultsError(f"{err}: {_damaged_runs_hint(out, n_inits)}") from None
    if summary["n_inits"] != n_inits:
        raise ResultsError(f"{summary_path} counts {summary['n_inits']} runs, config.json {n_inits}")
    if "kind" not in runs:
        runs["kind"] = classify_records(runs, summary["global_loss"], settings)
    if "status_name" not in runs:  # a scan written before the names were stored
        runs["status_name"] = status_names(runs["status"])
    opt_path = os.path.join(out, "optimum.json")
    if os.path.exists(opt_path):
        try:
            class_gram = np.asarray(read_json(opt_path, keys=("class_gram",))["class_gram"], np.float64)
        except (TypeError, ValueError) as err:
            raise ResultsError(f"{opt_path}: 'class_gram' is not a matrix of numbers ({err})") from None
        if class_gram.shape != (problem.k, problem.k) or not np.all(np.isfinite(class_gram)):
            raise ResultsError(
                f"{opt_path}: 'class_gram' must be a finite {problem.k} x {problem.k} matrix, "
                f"got shape {class_gram.shape} (rerun the scan with --resume to rewrite it)"
            )
        opt_data = read_json(opt_path)
    else:
        opt_data = optimum.global_optimum(problem.counts, problem.tau).to_json()
    class_gram = np.asarray(opt_data["class_gram"], np.float64)
    points_path = os.path.join(out, "points.npz")
    points = read_npz(points_path) if os.path.exists(points_path) else {}
    return {
        "config": config,
        "summary": summary,
        "runs": runs,
        "points": points,
        "problem": problem,
        "settings": settings,
        "class_gram": class_gram,
        "optimum": opt_data,
    }


def embeddings(scan_data: dict, rows: list[int]) -> tuple[dict, list[str]]:
    """``{row: H}``: each run's saved embedding, else its distinct point's (stored at scan time); notes.

    A run without either (``not_converged``) is left out with a note. Nothing
    is ever re-optimised: a run's distinct point is the same critical point up
    to rotation and relabelling.
    """
    runs, points = scan_data["runs"], scan_data.get("points") or {}
    found, notes = {}, []
    for r in rows:
        p = int(np.asarray(runs.get("point", [-1] * (r + 1)))[r])
        if "H" in runs:
            found[r] = np.asarray(runs["H"][r])
        elif p >= 0 and "H" in points:
            found[r] = np.asarray(points["H"][p])
        else:
            notes.append(f"run {int(runs['run'][r])} has no stored embedding (its kind: {runs['kind'][r]})")
    return found, notes


def point_rows(scan_data: dict) -> list[int]:
    """One run row per distinct critical point of a loaded scan (``points.npz``): its lowest-loss member."""
    runs = scan_data["runs"]
    point = np.asarray(runs.get("point", np.full(len(runs["run"]), -1)))
    loss = np.asarray(runs["loss"])
    rows = []
    for p in np.unique(point[point >= 0]):
        members = np.flatnonzero(point == p)
        rows.append(int(members[np.argmin(loss[members])]))
    return rows


def minimum_rows(scan_data: dict) -> list[tuple[int | None, int, dict]]:
    """``(point, row, entry)`` per distinct minimum of the summary: its ``points.npz`` index and a run.

    The point index (by loss, ``census.merge``) is the one number of a minimum
    in the report, the figure names, ``slice --minimum``, ``path`` and
    ``hessian``; the run is the point's lowest-loss member. An entry of runs
    judged without a stored point (``point`` -1) has ``None`` and the
    lowest-loss run of its kind.
    """
    runs = scan_data["runs"]
    kind = np.asarray(runs["kind"]).astype(str)
    point = np.asarray(runs.get("point", np.full(kind.size, -1)))
    loss = np.asarray(runs["loss"])
    out = []
    for entry in scan_data["summary"]["distinct_minima"]:
        p = entry.get("point", -1)
        members = (
            np.flatnonzero(point == p) if p >= 0 else np.flatnonzero((kind == entry["kind"]) & (point < 0))
        )
        if members.size:
            out.append((p if p >= 0 else None, int(members[np.argmin(loss[members])]), entry))
    return out


def hessian_spectra(out: str, run_indices=None, *, progress=None) -> str:
    """Full Riemannian Hessian spectra into ``out/hessian/spectra.npz``: the distinct points, or chosen runs.

    Default: every distinct critical point of the scan (``points.npz``,
    stored at scan time). With ``run_indices``: those runs (their saved
    embeddings, or their distinct points'). Nothing is re-optimised; the
    spectra are computed in float64 (dense). The file holds ``runs`` (-1 for a
    point), ``points``, ``eigenvalues`` ``(r, n(d-1))`` ascending,
    ``n_zero_predicted``, ``kind``, ``index``, ``lambda_min``, ``tol`` and
    ``loss`` (the scan's verdict on each point); it is written atomically.
    ``progress``: as in ``run_scan`` (phases ``spectra``, ``writing``).
    Returns its path. Raises ``ValueError`` (one line) on bad input.
    """
    progress = progress_lib.adapt(progress) or (lambda *a: None)
    data = load_scan(out)
    runs, problem, points = data["runs"], data["problem"], data.get("points") or {}
    N = problem.n * (problem.dim - 1)
    if problem.dim < 2:
        raise ValueError(f"{out}: d = 1 has no tangent space (no Hessian)")
    if N > hessian.DENSE_MAX_DIM:
        raise ValueError(
            f"full spectra need n(d-1) <= {hessian.DENSE_MAX_DIM}, this scan has {N} "
            "(use sclandscape.hessian.lanczos_extremes / spectral_density)"
        )
    if run_indices is None:
        if not len(points.get("loss", [])):
            raise ValueError(f"{out}: the scan stored no distinct critical point (no converged run)")
        H = np.asarray(points["H"])
        chosen_runs = np.full(H.shape[0], -1, np.int64)
        chosen_points = np.arange(H.shape[0])
        fields = {
            f: np.asarray(points[f])
            for f in ("kind", "index", "lambda_min", "tol", "loss", "n_zero_predicted")
        }
    else:
        index_of = {int(i): r for r, i in enumerate(np.asarray(runs["run"]))}
        run_indices = [int(i) for i in run_indices]
        bad = [i for i in run_indices if i not in index_of]
        if not run_indices or bad:
            raise ValueError(f"runs must be indices of this scan (0..{len(index_of) - 1}), got {bad or '[]'}")
        rows = [index_of[i] for i in dict.fromkeys(run_indices)]
        found, notes = embeddings(data, rows)
        if notes:
            raise ValueError(f"{out}: {notes[0]}")
        H = np.stack([found[r] for r in rows])
        chosen_runs = np.asarray(runs["run"])[rows].astype(np.int64)
        chosen_points = np.asarray(runs.get("point", np.full(len(runs["run"]), -1)))[rows]
        fields = {
            "kind": np.asarray(runs["kind"])[rows],
            "index": np.asarray(runs["hess_index"])[rows],
            "lambda_min": np.asarray(runs["hess_lambda_min"])[rows],
            "tol": np.asarray(runs["hess_tol"])[rows],
            "loss": np.asarray(runs["loss"])[rows],
            "n_zero_predicted": np.asarray(runs["hess_n_zero_predicted"])[rows],
        }
    progress(0, H.shape[0], "spectra", f"dense, n(d-1) = {N}")
    with precision.float64():
        eigs = np.asarray(hessian.riemannian_hessian_eigs(H, problem.labels, problem.tau))
        if np.any(fields["n_zero_predicted"] < 0):  # runs judged without a spectrum: the symmetry count
            ranks = np.atleast_1d(np.asarray(oblique.numerical_rank(H)))
            fields["n_zero_predicted"] = np.array(
                [oblique.predicted_zero_modes(int(r), problem.dim) for r in ranks]
            )
    arrays = {
        "runs": chosen_runs,
        "points": np.asarray(chosen_points, np.int64),
        "eigenvalues": eigs.reshape(H.shape[0], N),
        "n_zero_predicted": np.asarray(fields["n_zero_predicted"], np.int64),
        "kind": np.asarray(fields["kind"]).astype("<U13"),
        "index": np.asarray(fields["index"], np.int64),
        "lambda_min": np.asarray(fields["lambda_min"], np.float64),
        "tol": np.asarray(fields["tol"], np.float64),
        "loss": np.asarray(fields["loss"], np.float64),
    }
    progress(H.shape[0], H.shape[0], "writing")
    path = os.path.join(out, "hessian", "spectra.npz")
    write_npz(path, arrays)
    return path
