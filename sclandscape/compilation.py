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
"""

from __future__ import annotations

import os

ENV = "SCLANDSCAPE_CACHE_DIR"
OFF = ("", "off", "0", "false")


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
