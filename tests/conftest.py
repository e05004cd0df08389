"""Tests run in float64: entry points and tests enable x64, the library never does."""

import os

# Tests never write a compilation cache into the user's home: off here and in every command line
# a test starts (they inherit the environment); tests/test_compilation.py turns it on in a tmp folder.
os.environ["SCLANDSCAPE_CACHE_DIR"] = "off"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
