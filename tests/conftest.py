"""Tests run in float64: entry points and tests enable x64, the library never does."""

import os

# One persistent compilation cache per test session, in a temporary folder (never the user's home):
# shared by this process, the xdist workers it starts and every command line a test starts (they
# inherit the environment), so a program compiled once (a scan of a small problem, the class-level
# solve) is loaded by every later test and subprocess that needs it, as a user's second command is.
# A session started with the variable set uses that folder ("off" disables the cache).
if "SCLANDSCAPE_TEST_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="sclandscape-test-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["SCLANDSCAPE_TEST_CACHE"] = _cache
os.environ["SCLANDSCAPE_CACHE_DIR"] = os.environ["SCLANDSCAPE_TEST_CACHE"]
# The same folder for processes that use the library without the command line (notebook kernels,
# the processes of a distributed scan): JAX reads these when it starts.
if os.environ["SCLANDSCAPE_TEST_CACHE"] not in ("", "off"):
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["SCLANDSCAPE_TEST_CACHE"]
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from sclandscape.core import compilation  # noqa: E402

compilation.enable_cache()
