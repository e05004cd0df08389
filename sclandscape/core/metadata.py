"""The installed package's version (imports nothing from the package; any module and ``__init__`` use it)."""

from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    """The version of the installed distribution, or ``"0+unknown"`` in a source tree never installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _distribution_version

    try:
        return _distribution_version("sclandscape")
    except PackageNotFoundError:
        return "0+unknown"
