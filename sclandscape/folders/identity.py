"""TODO docstring"""

from __future__ import annotations

import json
import os

from sclandscape.core.settings import ScanSettings
from sclandscape.folders import atomic


def scan_config(problem, settings, seed, n_inits, keep_embeddings) -> dict:
    """What makes two scans the same scan (``config.json`` adds ``global_loss``).

    ``settings.execution`` is recorded but is not part of the identity (``config_differences``).
    """
    return {
        "problem": problem.to_json(),
        "settings": settings.to_json(),
        "seed": int(seed),
        "n_inits": int(n_inits),
        "save_embeddings": bool(keep_embeddings),
    }


#: Entries of ``config.json`` that record a session rather than define the scan (not compared on resume).
SESSION_KEYS = ("global_loss", "provenance", "timing", "earlier_sessions")


def scan_identity(config: dict) -> dict:
    """``config`` without what a resume may change: ``SESSION_KEYS`` and ``settings.execution``.

    Settings are normalised through ``ScanSettings`` (older folders store them flat);
    raises ``ValueError`` when they do not describe scan settings.
    """
    out = {k: v for k, v in config.items() if k not in SESSION_KEYS}
    if "settings" in out:
        settings = ScanSettings.from_json(out["settings"]).to_json()
        out["settings"] = {group: v for group, v in settings.items() if group != "execution"}
    return out


def _differences(on_disk, given, path: str = "") -> list[str]:
    if isinstance(on_disk, dict) and isinstance(given, dict):
        out = []
        for key in list(on_disk) + [k for k in given if k not in on_disk]:
            where = f"{path}.{key}" if path else str(key)
            if key not in given:
                out.append(f"{where}: {json.dumps(on_disk[key])} on disk, absent here")
            elif key not in on_disk:
                out.append(f"{where}: absent on disk, {json.dumps(given[key])} given")
            else:
                out.extend(_differences(on_disk[key], given[key], where))
        return out
    if on_disk == given and isinstance(on_disk, bool) == isinstance(given, bool):
        return []
    return [f"{path}: {json.dumps(on_disk)} on disk, {json.dumps(given)} given"]


def config_differences(on_disk: dict, given: dict) -> list[str]:
    """Every field in which two scan (or sweep) configurations differ, as ``"path: a on disk, b given"``.

    ``global_loss`` and the ``execution`` group of ``settings`` (slots, chunking, the
    streaming path: they change results by rounding at most) are left out, so a
    resume may change them. Raises ``ValueError`` when ``on_disk`` is not a
    configuration (its settings are not scan settings).
    """
    if not isinstance(on_disk, dict):
        raise ValueError(f"not a configuration: a JSON {type(on_disk).__name__}")
    return _differences(scan_identity(on_disk), scan_identity(given))


def read_config(out: str) -> dict:
    """``out/config.json``; raises ``ResultsError``."""
    return atomic.read_json(os.path.join(out, "config.json"))


def holds_results(folder: str) -> bool:
    """Whether ``folder`` holds anything but the scaffolding a writer leaves before its first
    result (the lock, temporary files, an empty ``chunks/``)."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return False
    for name in names:
        if name == atomic.LOCK_NAME or name.startswith(atomic.TEMP_PREFIX):
            continue
        path = os.path.join(folder, name)
        if name == "chunks" and os.path.isdir(path):
            if all(f.startswith(atomic.TEMP_PREFIX) for f in os.listdir(path)):
                continue
        return True
    return False


def folder_error(out: str, config: dict, resume: bool) -> str | None:
    """Why ``out`` cannot take this scan, or ``None``; reads only."""
    if not holds_results(out):
        return None
    if not resume:
        return f"--out {out} exists and is not empty (use --resume to continue it)"
    if not os.path.exists(os.path.join(out, "config.json")):
        return f"cannot resume {out}: it holds files but no config.json (it is not a scan folder)"
    try:
        differences = config_differences(read_config(out), config)
    except ValueError as err:
        return f"cannot resume {out}: {err}"
    if differences:
        return f"cannot resume {out}: its config.json differs from this scan's: {'; '.join(differences)}"
    return None


def earlier_sessions(config_path: str) -> list:
    """The sessions recorded in an existing ``config.json`` (a resume keeps them), oldest first."""
    if not os.path.exists(config_path):
        return []
    try:
        old = atomic.read_json(config_path)
    except atomic.ResultsError:
        return []
    earlier = list(old.get("earlier_sessions", []))
    if "provenance" in old:
        earlier.append({"provenance": old["provenance"], "timing": old.get("timing")})
    return earlier
