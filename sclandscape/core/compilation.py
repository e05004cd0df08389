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
``sclandscape.core.compilation.enable_cache()`` yourself, before the first
compilation (JAX opens its cache once per process). Every program is cached,
however small or quick to compile (a scan compiles some dozens of them, each
under a second or two, which JAX would skip by default). Entries are keyed by
JAX on the program, its shapes, the devices and the JAX version; the folder
may be deleted at any time.

**Traced programs.** The persistent cache stores XLA's compiled code, not
the tracing and lowering that come before it: a warm scan still spent most
of its time tracing its biggest programs (the float64 polish alone: 1.2 s of
a 3.5 s scan). ``Program`` wraps a function as ``jax.jit`` does and, in the
same cache folder (``exports/``), keeps each traced and lowered program
(``jax.export``, serialised) under a key of its own: the program's name, the
static data it closes over (problem, settings), the shapes and dtypes of its
arguments, the JAX version, the backend and device count, the x64 flag and a
hash of the package's source. A later process loads it instead of tracing,
and XLA's compilation then comes from the persistent cache.

**The split.** ``Stopwatch`` measures the wall time of a block and the part of
it JAX spent compiling: tracing, lowering to MLIR and XLA compilation (or
loading from the cache), from ``jax.monitoring``'s time spans of those events.
Nested events (a jit traced inside another's trace) count once: the compile
time is the length of the union of the spans.
"""

from __future__ import annotations

import functools
import hashlib
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
#: The phases ``Stopwatch.phases`` reports, by event.
PHASES = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "xla_s",
}
#: JAX's duration event of a read from the persistent cache (a part of ``xla_s``).
CACHE_READ_EVENT = "/jax/compilation_cache/cache_retrieval_time_sec"

_EXPORTS: dict = {"dir": None}  # where ``Program`` keeps traced programs (``enable_cache`` sets it)


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

    _EXPORTS["dir"] = os.path.join(path, "exports")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path


@functools.cache
def source_hash() -> str:
    """A hash of the package's Python source: a traced program is only reused by the code that traced it."""
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]


def _signature(leaf) -> tuple:
    """Shape, dtype and weak type of one argument (a JAX or NumPy array, or a Python scalar)."""
    import jax.numpy as jnp

    return (tuple(jnp.shape(leaf)), str(jnp.result_type(leaf)), isinstance(leaf, int | float | complex))


def _register_namedtuples(classes) -> None:
    from jax import export

    for cls in classes:
        try:
            export.register_namedtuple_serialization(
                cls, serialized_name=f"{cls.__module__}.{cls.__qualname__}"
            )
        except ValueError:  # registered already (in this process)
            pass


class Program:
    """``jax.jit(fn)`` whose traced and lowered form is kept on disk (module docstring, "Traced programs").

    ``fn`` takes and returns arrays (pytrees of them); what it closes over is
    named by ``static`` (any ``repr``-stable data: a problem's labels and
    ``tau``, frozen settings), which enters the key. ``namedtuples``: the
    ``NamedTuple`` classes in its arguments and outputs (registered for
    serialisation); ``jit_kwargs``: as ``jax.jit``'s (shardings travel with
    the exported program, donation is applied to its call). With
    no cache folder (``enable_cache`` not called, or the cache off) it is
    plain ``jax.jit``. A program that cannot be exported or read back (a
    damaged file, an unsupported primitive) falls back to ``jax.jit`` too:
    the cache is an optimisation, never a condition.
    """

    def __init__(self, fn, name: str, static=(), *, namedtuples=(), **jit_kwargs):
        self.fn, self.name, self.static = fn, name, static
        self.namedtuples = tuple(namedtuples)
        self.jit_kwargs = jit_kwargs  # e.g. out_shardings, donate_argnums: as jax.jit's
        self._jit = None
        self._loaded: dict = {}

    def _key(self, args) -> str:
        import jax

        leaves, tree = jax.tree.flatten(args)
        shapes = [_signature(a) for a in leaves]
        devices = jax.devices()
        parts = (
            self.name,
            repr(self.static),
            repr(tree),
            repr(shapes),
            jax.__version__,
            devices[0].platform,
            devices[0].device_kind,
            len(devices),
            bool(jax.config.jax_enable_x64),
            source_hash(),
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    def _exported(self, args):
        import jax
        from jax import export

        folder = _EXPORTS["dir"]
        key = self._key(args)
        path = os.path.join(folder, f"{self.name}-{key}.bin")
        _register_namedtuples(self.namedtuples)
        if os.path.exists(path):
            try:
                with open(path, "rb") as f:
                    return self._call(export.deserialize(bytearray(f.read())))
            except Exception:  # noqa: BLE001 - a damaged or foreign file: trace again
                pass
        exported = export.export(jax.jit(self.fn, **self.jit_kwargs))(*args)
        os.makedirs(folder, exist_ok=True)
        temp = f"{path}.{os.getpid()}.tmp"
        with open(temp, "wb") as f:
            f.write(exported.serialize())
        os.replace(temp, path)  # atomic: a reader sees the whole file or none
        return self._call(exported)

    def _call(self, exported):
        import jax

        return jax.jit(exported.call, donate_argnums=self.jit_kwargs.get("donate_argnums", ()))

    def cache_size(self) -> int:
        """How many programs (argument signatures) this has traced or loaded in this process."""
        return len(self._loaded) + (self._jit._cache_size() if self._jit is not None else 0)

    def __call__(self, *args):
        import jax

        if _EXPORTS["dir"] is None:
            if self._jit is None:
                self._jit = jax.jit(self.fn, **self.jit_kwargs)
            return self._jit(*args)
        leaves, tree = jax.tree.flatten(args)
        signature = (tree, tuple(_signature(a) for a in leaves), bool(jax.config.jax_enable_x64))
        program = self._loaded.get(signature)
        if program is None:
            try:
                program = self._exported(args)
            except Exception:  # noqa: BLE001 - not exportable here: jit as usual
                program = jax.jit(self.fn, **self.jit_kwargs)
            self._loaded[signature] = program
        return program(*args)


class Stopwatch:
    """The wall time of a ``with`` block, split: ``compile_s`` compiling, ``run_s`` the rest, ``total_s``.

    ``compile_s`` is the length of the union of the time spans JAX reports for
    ``COMPILE_EVENTS`` inside the block (on any thread), so nested events count
    once; ``run_s = total_s - compile_s`` is everything else (running the
    programs, NumPy, writing files). ``phases()`` splits ``compile_s`` into
    tracing (``trace_s``), lowering to MLIR (``lower_s``) and XLA (``xla_s``:
    compiling, or loading from the persistent cache, of which ``cache_read_s``
    is the reading). Readable while the block runs (the time so far) and after.
    """

    def __init__(self):
        self._spans: list[tuple[str, float, float]] = []
        self._cache_read = 0.0
        self._lock = threading.Lock()
        self._start: float | None = None
        self._stop: float | None = None
        self._listening = False

    def _listen(self, event, start_time, end_time, **kwargs):
        del kwargs
        if event in COMPILE_EVENTS:
            with self._lock:
                self._spans.append((event, start_time, end_time))

    def _listen_duration(self, event, duration, **kwargs):
        del kwargs
        if event == CACHE_READ_EVENT:
            with self._lock:
                self._cache_read += duration

    def start(self) -> Stopwatch:
        """Start (or restart) measuring; ``stop`` ends it (``with Stopwatch() as watch:`` does both)."""
        import jax.monitoring

        self.stop()
        self._spans, self._cache_read, self._stop = [], 0.0, None
        self._start = time.time()  # JAX stamps its spans with time.time()
        jax.monitoring.register_event_time_span_listener(self._listen)
        jax.monitoring.register_event_duration_secs_listener(self._listen_duration)
        self._listening = True
        return self

    def stop(self) -> None:
        if not self._listening:
            return
        import jax.monitoring as monitoring

        self._stop = time.time()
        monitoring.unregister_event_time_span_listener(self._listen)
        monitoring.unregister_event_duration_listener(self._listen_duration)
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

    def _union(self, events=COMPILE_EVENTS) -> float:
        if self._start is None:
            return 0.0
        stop = time.time() if self._stop is None else self._stop
        with self._lock:
            spans = sorted((max(a, self._start), min(b, stop)) for e, a, b in self._spans if e in events)
        total, reach = 0.0, self._start
        for a, b in spans:
            if b > reach:
                total += b - max(a, reach)
                reach = b
        return total

    @property
    def compile_s(self) -> float:
        return self._union()

    @property
    def run_s(self) -> float:
        return max(self.total_s - self.compile_s, 0.0)

    def phases(self) -> dict:
        """``{"trace_s", "lower_s", "xla_s", "cache_read_s"}``: the parts of ``compile_s`` (seconds)."""
        out = {name: self._union((event,)) for event, name in PHASES.items()}
        with self._lock:
            out["cache_read_s"] = self._cache_read
        return out

    def to_json(self) -> dict:
        """``{"compile_s", "run_s", "total_s"}`` and the ``phases`` (seconds)."""
        total, compiled = self.total_s, self.compile_s
        return {"compile_s": compiled, "run_s": max(total - compiled, 0.0), "total_s": total, **self.phases()}
