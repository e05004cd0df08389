"""Tests run in float64: entry points and tests enable x64, the library never does."""

import jax

jax.config.update("jax_enable_x64", True)
