"""What the benchmark results were measured on (recorded in every results file)."""

import os
import platform

import jax


def machine_info() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
    }
