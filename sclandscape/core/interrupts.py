"""The command line's interrupts: SIGINT and SIGTERM end any command with one line and exit 130 / 143.

Why not Python's default (``KeyboardInterrupt``): it is raised in the main
thread at the next bytecode, wherever that is. Inside the import of JAX or
a compilation that can be a callback of XLA's (``_xla_gc_callback``), which
swallows it and lets the command run on to exit 0, or a half-built XLA
object, whose teardown at exit can crash (exit -11).

So ``run`` executes the command on a worker thread with both signals blocked
(the threads XLA starts inherit that mask) while the main thread only waits
for it, and takes the signals. On one it removes this process's temporary
files (``atomic.abandon``), leaves the results folder's lock to the kernel,
prints one line (``interrupted after N of M runs; rerun with --resume``) and
ends the process at once with ``os._exit(128 + signum)``: nothing is raised
inside JAX, nothing is torn down, and every file on disk is complete, so the
folder resumes as it stands. A second signal while the first is handled
ends the process immediately. When the process is the command line,
``sclandscape/__init__.py`` calls ``defer`` before it imports JAX, so a
signal during that import is recorded and answered when the command starts.

No JAX, NumPy or ``sclandscape`` import here: the package imports this first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CAUGHT: list[int] = []  # signals received while a command (or the package import before it) runs
#: What the interrupt line reports: runs done and in all, what they are, how to go on.
_STATE = {"done": None, "total": None, "what": "runs", "hint": "", "drawn": False}


def invoked_as_command() -> bool:
    """Whether this process is the command line (``sclandscape ...`` or ``python -m sclandscape.cli``)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if "-m" in argv and argv[argv.index("-m") + 1 : argv.index("-m") + 2] == ["sclandscape.cli"]:
        return True
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == "sclandscape"


def _handler(signum, frame) -> None:
    """Record a signal; a second one ends the process at once."""
    if _CAUGHT:
        os._exit(128 + _CAUGHT[0])
    _CAUGHT.append(signum)


def defer() -> None:
    """Record SIGINT/SIGTERM instead of raising ``KeyboardInterrupt`` (``run`` answers them)."""
    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, _handler)


def expect(hint: str, what: str = "runs") -> None:
    """Set how the interrupt line ends (``hint``: how to go on) and what ``progress`` counts."""
    _STATE.update(done=None, total=None, what=what, hint=hint, drawn=False)


def progress(done: int, total: int, *, drawn: bool | None = None) -> None:
    """Record ``done`` of ``total`` (``drawn``: a progress bar is on the terminal's last line; ``None``
    leaves it as it was). A scan records here the runs its chunks hold (``studies.scan.run_scan``)."""
    _STATE.update(done=done, total=total)
    if drawn is not None:
        _STATE["drawn"] = drawn


def drawn(flag: bool) -> None:
    """Whether a progress bar is on the terminal's last line (the interrupt line then starts afresh)."""
    _STATE["drawn"] = bool(flag)


def message() -> str:
    """The interrupt line, e.g. ``interrupted after 12 of 40 runs; rerun with --resume``."""
    done, total = _STATE["done"], _STATE["total"]
    after = f" after {done} of {total} {_STATE['what']}" if done is not None else ""
    return f"interrupted{after}; {_STATE['hint']}" if _STATE["hint"] else f"interrupted{after}"


def _stop(signum: int) -> None:
    """End the process after an interrupt: one line, exit ``128 + signum``, nothing half-written."""
    # Loaded only if the command got that far; a module still being imported (the worker thread is
    # inside its import) has written nothing, and has no ``abandon`` yet.
    abandon = getattr(sys.modules.get("sclandscape.folders.atomic"), "abandon", None)
    if abandon is not None:
        abandon()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        lead = "\n" if _STATE["drawn"] else ""
        print(f"{lead}sclandscape: {message()}", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def run(func, args):
    """``func(args)`` on a worker thread whose signals are blocked, the main thread taking them.

    Returns what ``func`` returns and re-raises what it raises. Called off the
    main thread (where signal handlers cannot be set), it just calls ``func``.
    """
    if threading.current_thread() is not threading.main_thread():
        return func(args)
    box: dict = {}

    def work():
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            box["result"] = func(args)
        except BaseException as err:  # re-raised on the main thread
            box["error"] = err

    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        if _CAUGHT:  # during the package import or the argument parsing
            _stop(_CAUGHT[0])
        worker = threading.Thread(target=work, name="sclandscape-command", daemon=True)
        worker.start()
        while worker.is_alive() and not _CAUGHT:
            worker.join(0.1)
        if _CAUGHT:
            _stop(_CAUGHT[0])
        if "error" in box:
            raise box["error"]
        return box["result"]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
