"""Progress of long commands: a live bar on a terminal or in a notebook, plain lines in a log file.

The callback protocol of the library's long entry points (``scan_study.run_scan``,
``sweep.run_sweep``, ``hessian_study.hessian_spectra``, ``report.plot_results``, the
``path``/``slice``/``curvature`` drivers) is::

    progress(done, total, phase=None, detail=None)

``done``/``total``: units finished so far and in all (runs of a scan, figures,
points); ``phase``: what is being done now (``"compiling"``, ``"first order"``,
``"polish"``, ``"classification"``, ``"writing"``, ...); ``detail``: a short
free text (e.g. how many runs have left the first-order phase). A callable that
takes only ``(done, total)`` or ``(done, total, phase)`` is accepted too
(``adapt``).

``Progress`` is the display: ``mode="auto"`` draws a bar redrawn in place when
the stream is a terminal or a Jupyter output, and otherwise (stderr redirected
to a file) writes one plain line at each phase change and at most every
``interval`` seconds, plus a heartbeat line every ``interval`` seconds while
nothing is reported (a long compilation stays visibly alive).

**ETA.** The rate is measured from the moment the first batch of units
finished to now, so the first batch (which carries the compilation) never
enters it: ``eta = (total - done) / ((done - d_1) / (t - t_1))`` where
``(t_1, d_1)`` is the first increase of ``done``. No ETA is shown until a
later increase has been seen at least ``MIN_WINDOW`` seconds after it (with
one batch in all, none is ever shown: it could not be estimated honestly). A
change of ``total``, or ``done`` going down (a new sweep cell), starts a new
measurement.

In ``lines`` mode every phase is logged the first time it is entered; the
cycle a scan repeats for every batch is then logged at most once per
``interval``, so a long scan's log stays short.

**Grace.** The command line's display (``display``) writes nothing in
``lines`` mode during its first ``GRACE`` seconds: a command that ends at
once (bad input, a one-second job) leaves only its own message, and a line
reported during the grace is written when it ends if the work goes on. A
display closed by an exception never claims ``finished``: it writes
``stopped: ...`` if it had written anything, and nothing otherwise.

This module imports nothing from the package (any layer may use it).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable

MODES = ("auto", "bar", "lines", "off")
BAR_WIDTH = 24
#: Shortest time window (s) a rate is measured over: batches that finish in one burst (a scan's
#: queue drained at once) would otherwise give a rate of thousands per second and an ETA of 0.
MIN_WINDOW = 1.0
#: Seconds the command line's display stays silent in ``lines`` mode (module docstring, "Grace").
GRACE = 1.0
#: Seconds after its count completed (and nothing more was reported) that a display never closed stops.
IDLE_STOP = 30.0
#: ``SCLANDSCAPE_PROGRESS``: ``off`` silences the default display of the Python API (``resolve``);
#: ``bar`` or ``lines`` force that mode.
ENV = "SCLANDSCAPE_PROGRESS"


def _format_seconds(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _is_notebook(stream) -> bool:
    """Whether ``stream`` is a Jupyter kernel's output stream (which honours ``\\r``)."""
    return type(stream).__module__.startswith("ipykernel")


def _positional_arity(fn) -> int:
    """How many positional arguments ``fn`` accepts (a large number for ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume the full protocol
        return 4
    count = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return 4
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def adapt(progress: Callable | None) -> Callable | None:
    """``progress`` as a ``(done, total, phase, detail)`` callable (``None`` stays ``None``).

    Accepts callables of two (``done, total``), three (``+ phase``) or four
    positional arguments; raises ``ValueError`` for anything else.
    """
    if progress is None:
        return None
    if not callable(progress):
        raise ValueError(f"progress must be a callable progress(done, total, ...), got {progress!r}")
    arity = _positional_arity(progress)
    if arity >= 4:
        return progress
    if arity == 3:
        return lambda done, total, phase=None, detail=None: progress(done, total, phase)
    if arity == 2:
        return lambda done, total, phase=None, detail=None: progress(done, total)
    raise ValueError(
        "progress must accept (done, total), (done, total, phase) or (done, total, phase, detail)"
    )


class Progress:
    """A progress display; call it as ``progress(done, total, phase=None, detail=None)``.

    Args:
      label: names the command on every line (``"scan"``, ``"sweep"``, ...).
      stream: where to write (default ``sys.stderr``, looked up when writing).
      mode: ``"bar"`` (redrawn in place), ``"lines"`` (plain lines for a log
        file), ``"off"``, or ``"auto"``: bar on a terminal or in a notebook,
        lines otherwise.
      interval: seconds between plain lines (and heartbeat lines) in ``lines`` mode.
      unit: what ``done`` counts (``"runs"``).
      grace: seconds during which ``lines`` mode writes nothing (module docstring).

    Use as a context manager (or call ``close()``) so the last line is finished
    and the heartbeat stops. Thread-safe.
    """

    def __init__(
        self,
        label: str = "",
        *,
        stream=None,
        mode: str = "auto",
        interval: float = 10.0,
        unit="runs",
        grace: float = 0.0,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0, got {grace!r}")
        self.label = label
        self._stream = stream
        self.unit = unit
        self.interval = float(interval)
        self.grace = float(grace)
        self._pending = False  # a line was due during the grace
        self._wrote = False
        if mode == "auto":
            out = self.stream
            tty = getattr(out, "isatty", lambda: False)
            mode = "bar" if (_is_notebook(out) or tty()) else "lines"
        self.mode = mode
        self.start = time.monotonic()
        self.done: int | None = None
        self.total: int | None = None
        self.phase_name: str | None = None
        self.detail: str | None = None
        self._first: tuple[float, int] | None = None  # (t_1, d_1): the first increase of `done`
        self._base: int | None = None  # `done` when the current total was first seen
        self._rate: float | None = None
        self._last_line = -float("inf")
        self._last_call = self.start
        self._seen: set[str] = set()
        self._last_draw = -float("inf")
        self._width = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.closed = False
        #: Callables ``(done, total)`` told of every count, even when nothing is shown (``mode="off"``):
        #: the command line's interrupt line reports how far a command got.
        self.observers: list = []

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    # -- the callback -----------------------------------------------------

    def __call__(self, done=None, total=None, phase: str | None = None, detail: str | None = None) -> None:
        if done is not None and total is not None:
            for observer in self.observers:
                observer(int(done), int(total))
        if self.mode == "off" or self.closed:
            return
        with self._lock:
            now = time.monotonic()
            self._last_call = now
            changed_phase = phase is not None and phase != self.phase_name
            if done is not None and self.done is not None and int(done) < self.done:
                self._base, self._first, self._rate = None, None, None  # counting again (a new sweep cell)
            if total is not None and total != self.total:
                self.total, self._base, self._first, self._rate = int(total), None, None, None
            if done is not None:
                done = int(done)
                if self._base is None:
                    self._base = done
                elif done > (self.done if self.done is not None else done):
                    if self._first is None:
                        self._first = (now, done)
                    elif now - self._first[0] >= MIN_WINDOW and done > self._first[1]:
                        self._rate = (done - self._first[1]) / (now - self._first[0])
                self.done = done
            if phase is not None:
                self.phase_name = phase
                if changed_phase:
                    self.detail = None
            if detail is not None:
                self.detail = detail
            finished = self.total is not None and self.done is not None and self.done >= self.total
            if self.mode == "bar":
                if changed_phase or finished or now - self._last_draw >= 0.1:
                    self._draw(now)
            elif (changed_phase and phase not in self._seen) or now - self._last_line >= self.interval:
                # Every phase is logged the first time it is entered; after that a repeating cycle
                # (first order, polish, ... for every batch) is logged at most once per interval.
                self._line(now)
            if phase is not None:
                self._seen.add(phase)
            self._ensure_heartbeat()

    def phase(self, name: str, detail: str | None = None) -> None:
        """Announce a phase without changing the counts."""
        self(None, None, name, detail)

    def note(self, text: str) -> None:
        """A line of its own (kept above the bar), e.g. a finished sweep cell."""
        if self.mode == "off":
            return
        with self._lock:
            if self.mode == "bar" and self._width:
                self._write("\r" + " " * self._width + "\r")
                self._width = 0
            self._write(f"[{self.label}] {text}\n" if self.label else f"{text}\n")
            if self.mode == "bar" and not self.closed:
                self._draw(time.monotonic())

    # -- text -------------------------------------------------------------

    def eta(self) -> float | None:
        """Seconds left, or ``None`` until the rate can be measured (module docstring)."""
        if self._rate is None or self._rate <= 0 or self.total is None or self.done is None:
            return None
        return max(0, self.total - self.done) / self._rate

    def text(self, now: float | None = None) -> str:
        """The status: counts, phase, detail, elapsed time, rate and ETA when known."""
        now = time.monotonic() if now is None else now
        parts = []
        if self.total is not None and self.done is not None:
            parts.append(f"{self.done}/{self.total} {self.unit}")
        if self.phase_name:
            parts.append(self.phase_name + (f" ({self.detail})" if self.detail else ""))
        parts.append(f"elapsed {_format_seconds(now - self.start)}")
        eta = self.eta()
        if eta is not None and self.done is not None and self.total is not None and self.done < self.total:
            parts.append(f"{self._rate:.3g} {self.unit}/s, ETA {_format_seconds(eta)}")
        return ", ".join(parts)

    def _bar(self) -> str:
        if not self.total or self.done is None:
            return ""
        filled = int(BAR_WIDTH * min(self.done, self.total) / self.total)
        return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream never stops the computation
            pass

    def _draw(self, now: float) -> None:
        head = f"{self.label} " if self.label else ""
        line = head + self._bar() + self.text(now)
        pad = max(0, self._width - len(line))
        self._write("\r" + line + " " * pad)
        self._width = len(line)
        self._last_draw = now

    def _line(self, now: float) -> None:
        if now - self.start < self.grace:
            self._pending = True
            return
        head = f"[{self.label}] " if self.label else ""
        self._write(head + self.text(now) + "\n")
        self._wrote, self._pending = True, False
        self._last_line = now

    # -- heartbeat --------------------------------------------------------

    def _finished(self) -> bool:
        return self.total is not None and self.done is not None and self.done >= self.total

    def _ensure_heartbeat(self) -> None:
        if self._thread is None and not self.closed:
            self._thread = threading.Thread(target=self._beat, name="sclandscape-progress", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        # Beats while work is under way, the count complete or not (the last batch of a scan is still
        # polished and judged once every run has left the first-order phase); a display that is never
        # closed falls silent IDLE_STOP seconds after its count completed and nothing more came.
        period = 1.0 if self.mode == "bar" else self.interval
        while True:
            wait = period
            if self._pending:  # the line held back by the grace is written when it ends
                wait = min(wait, max(0.0, self.start + self.grace - time.monotonic()))
            if self._stop.wait(wait):
                return
            with self._lock:
                if self.closed or (self._finished() and time.monotonic() - self._last_call > IDLE_STOP):
                    self._thread = None
                    return
                now = time.monotonic()
                if self.mode == "bar":
                    self._draw(now)
                elif self._pending or now - self._last_line >= self.interval:
                    self._line(now)

    def close(self, message: str | None = None, *, failed: bool = False) -> None:
        """Finish the display (a last line with the final state, or ``message``); idempotent.

        ``failed``: the work stopped on an error, which its caller reports: the bar is erased, and a
        log gets ``stopped: ...`` only if it already holds lines of this display.
        """
        if self.closed:
            return
        self._stop.set()
        with self._lock:
            self.closed = True
            if self.mode == "off":
                return
            now = time.monotonic()
            if failed:
                if self.mode == "bar" and self._width:
                    self._write("\r" + " " * self._width + "\r")
                elif self.mode == "lines" and self._wrote:
                    head = f"[{self.label}] " if self.label else ""
                    self._write(head + "stopped: " + self.text(now) + "\n")
            elif self.mode == "bar":
                if self._width or message:
                    if message:
                        self._write("\r" + " " * self._width + "\r")
                        head = f"{self.label} " if self.label else ""
                        self._write(head + message + "\n")
                    else:
                        self._draw(now)
                        self._write("\n")
            else:
                head = f"[{self.label}] " if self.label else ""
                self._write(head + (message or "finished: " + self.text(now)) + "\n")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


@contextlib.contextmanager
def resolve(progress, label: str, unit: str = "runs"):
    """The ``progress`` argument of a long entry point of the Python API as a callable (or ``None``).

    ``None`` (the default): a display of its own, as ``tqdm.auto`` would (a bar in a notebook or a
    terminal, plain lines in a log file, ``GRACE`` seconds of silence in a log), closed when the work
    ends; ``$SCLANDSCAPE_PROGRESS=off`` silences it. ``False``: silent. A callable: ``adapt(progress)``
    (a ``Progress`` the caller opened is left open).
    """
    if progress is False:
        yield None
        return
    if progress is not None:
        yield adapt(progress)
        return
    mode = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        mode = "auto"
    shown = Progress(label, mode=mode, unit=unit, grace=GRACE)
    try:
        yield shown
    except BaseException:
        shown.close(failed=True)
        raise
    shown.close()


def display(label: str, *, quiet: bool = False, **kwargs) -> Progress:
    """The command line's display: ``Progress(label)`` on stderr with a ``GRACE`` second grace, or a
    silent one when ``quiet``."""
    kwargs.setdefault("grace", GRACE)
    return Progress(label, mode="off" if quiet else kwargs.pop("mode", "auto"), **kwargs)
