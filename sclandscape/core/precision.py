"""The precision and placement policy, in one place.

**What runs in which precision.**

- The differentiable building blocks (``loss``, ``streaming``, ``oblique``,
  ``linalg``, ``optim``, the spectra of ``hessian``, ``certificate``, the
  critical-point finder) follow the dtype of their input: float32 in, float32
  out; float64 in, float64 out. They never switch precision themselves.
- Every *decision* is taken in float64: the class-level program
  (``optimum.global_optimum``), classification and its proofs
  (``verdict.classify``), the certificate inside a verdict, the scan's polish
  and records, the variants' records and the saddle catalogue. Those entry
  points enter ``float64()`` themselves, convert their inputs, and return
  NumPy float64 arrays. A user never has to flip a global flag to get a
  correct verdict.
- The scan's first-order phase runs in float32 by default (fast on every
  accelerator; ``x64=True`` runs it in float64); a float32 run hands over to
  the float64 polish once float32 rounding stops its progress.

**Who switches.** Only ``float64()`` below, a scoped ``jax.enable_x64(True)``.
The library never changes the global ``jax_enable_x64`` flag on import; the
command line and the tests set it once at start-up for convenience.

**Where float64 runs.** ``float64_device()``: the default device, except on a
TPU, whose float64 is emulated and slow, where it is the host CPU. The
float32 first-order phase stays on the accelerator (sharded over all local
devices); the float64 work of a scan (polish, records, classification of the
distinct points) is placed on ``float64_device()``.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp


def x64_enabled() -> bool:
    """Whether float64 arrays can be created here (globally or inside ``float64()``)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.dtype("float64")


@contextlib.contextmanager
def float64():
    """A scope in which JAX creates and computes float64 arrays (``jax.enable_x64(True)``)."""
    with jax.enable_x64(True):
        yield


def float64_device():
    """Where float64 work runs: the default device, or the host CPU when that is a TPU."""
    device = jax.local_devices()[0]
    if device.platform == "tpu":
        return jax.local_devices(backend="cpu")[0]
    return device


def float64_placement():
    """A context placing new arrays and computations on ``float64_device()`` (a no-op off TPUs)."""
    device = float64_device()
    if device == jax.local_devices()[0]:
        return contextlib.nullcontext()
    return jax.default_device(device)
