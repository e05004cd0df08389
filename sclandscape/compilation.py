"""Compilation: JAX's persistent compilation cache, and how much of a command's time was compiling.

**The cache.** ``enable_cache()`` points JAX's persistent compilation cache at
a folder, so that a second process running the same programs (the same
problem shapes, settings and JAX version) loads them from disk instead of
compiling them again. The folder is, in order:

1. ``$SCLANDSCAPE_CACHE_DIR`` when set (``off``, or empty, disables the cache);
2. ``$XDG_CACHE_HOME/sclandscape/jax``;
3. ``~/.cache/sclandscape/jax``.

The command line enables it for every command that runs JAX (``--no-cache``
disables it); the library never does on import, so from Python call
``sclandscape.compilation.enable_cache()`` yourself, before the first
compilation (JAX opens its cache once per process). Every program is cached,
however small or quick to compile (a scan compiles some dozens of them, each
under a second or two, which JAX would skip by default). Entries are keyed by
JAX on the program, its shapes, the devices and the JAX version; the folder
may be deleted at any time.

**The split.** ``Stopwatch`` measures the wall time of a block and the part of
it JAX spent compiling: tracing, lowering to MLIR and XLA compilation (or
loading from the cache), from ``jax.monitoring``'s time spans of those events.
Nested events (a jit traced inside another's trace) count once: the compile
time is the length of the union of the spans.
"""

from __future__ import annotations

import os
import threading
import time

ENV = "SCLANDSCAPE_CACHE_DIR"
OFF = ("", "off", "0", "false")

#: The ``jax.monitoring`` events whose time spans are compilation (JAX's names, stable since 0.4.x).
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def cache_dir(environ=None) -> str | None:
    """The cache folder the environment asks for (see the module docstring), or ``None`` for off."""
    env = os.environ if environ is None else environ
    if ENV in env:
        value = env[ENV].strip()
        return None if value.lower() in OFF else os.path.expanduser(value)
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sclandscape", "jax")


def enable_cache(path: str | None = None) -> str | None:
    """Point JAX's persistent compilation cache at ``path`` (default ``cache_dir()``); return the folder.

    Creates the folder, sets ``jax_compilation_cache_dir`` and lowers
    ``jax_persistent_cache_min_compile_time_secs`` to 0 and
    ``jax_persistent_cache_min_entry_size_bytes`` to -1 (no minimum), so that
    every program is cached. Returns ``None`` (and changes nothing) when the
    environment turns the cache off. Call it before the first compilation: a
    process keeps the folder its first cached compilation used. Raises
    ``OSError`` when the folder cannot be created.
    """
    path = cache_dir() if path is None else path
    if path is None:
        return None
    os.makedirs(path, exist_ok=True)
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


class Stopwatch:
    """The wall time of a ``with`` block, split: ``compile_s`` compiling, ``run_s`` the rest, ``total_s``.

    ``compile_s`` is the length of the union of the time spans JAX reports for
    ``COMPILE_EVENTS`` inside the block (on any thread), so nested events count
    once; ``run_s = total_s - compile_s`` is everything else (running the
    programs, NumPy, writing files). Readable while the block runs (the time
    so far) and after it.
    """

    def __init__(self):
        self._spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._start: float | None = None
        self._stop: float | None = None
        self._listening = False

    def _listen(self, event, start_time, end_time, **kwargs):
        del kwargs
        if event in COMPILE_EVENTS:
            with self._lock:
                self._spans.append((start_time, end_time))

    def start(self) -> Stopwatch:
        """Start (or restart) measuring; ``stop`` ends it (``with Stopwatch() as watch:`` does both)."""
        import jax.monitoring

        self.stop()
        self._spans, self._stop = [], None
        self._start = time.time()  # JAX stamps its spans with time.time()
        jax.monitoring.register_event_time_span_listener(self._listen)
        self._listening = True
        return self

    def stop(self) -> None:
        if not self._listening:
            return
        import jax.monitoring

        self._stop = time.time()
        jax.monitoring.unregister_event_time_span_listener(self._listen)
        self._listening = False

    def __enter__(self) -> Stopwatch:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def total_s(self) -> float:
        if self._start is None:
            return 0.0
        return (time.time() if self._stop is None else self._stop) - self._start

    @property
    def compile_s(self) -> float:
        if self._start is None:
            return 0.0
        stop = time.time() if self._stop is None else self._stop
        with self._lock:
            spans = sorted((max(a, self._start), min(b, stop)) for a, b in self._spans)
        total, reach = 0.0, self._start
        for a, b in spans:
            if b > reach:
                total += b - max(a, reach)
                reach = b
        return total

    @property
    def run_s(self) -> float:
        return max(self.total_s - self.compile_s, 0.0)

    def to_json(self) -> dict:
        """``{"compile_s", "run_s", "total_s"}`` (seconds)."""
        total, compiled = self.total_s, self.compile_s
        return {"compile_s": compiled, "run_s": max(total - compiled, 0.0), "total_s": total}
