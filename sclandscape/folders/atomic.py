"""TODO docstring"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import io
import json
import math
import os
import re
import secrets
import socket
import stat
import struct
import zipfile

import numpy as np


class ResultsError(ValueError):
    """A results folder that cannot be used as asked (exists, mismatched, corrupted, in use)."""


TEMP_PREFIX = ".tmp-"


#: This host in temporary-file names: no ``-`` (it separates the fields), at most 40 characters.
HOST_TAG = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40] or "host"


_TEMP_NAME = re.compile(r"\.tmp-([A-Za-z0-9_.]*)-([0-9]+)-[0-9a-f]+")


_OWN_TEMPS: set[str] = set()  # this process's temporary files while they are being written


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (created if missing).

    The file ends with the mode a plain ``open(path, "w")`` gives: ``0o666`` less
    the umask for a new file, the old file's mode when it replaces one.
    """
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f"{TEMP_PREFIX}{HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}")
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
            if m and m.group(1) == HOST_TAG:
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


def took_over(lock: FolderLock) -> str | None:
    """The note for a lock record left by a writer that did not release it, or ``None``."""
    if lock.previous is None:
        return None
    return f"took over {lock.folder} from {_describe(lock.previous)}, which stopped without releasing it"
