"""Results folders: atomic chunk files, resume, and the summary (SPEC §5).

Layout of ``DIR``::

    config.json            problem, settings, seed, n_inits, L* (written first)
    chunks/part-00000.npz  per-run records of a batch of finished runs
    runs.npz               all per-run records sorted by run index (at the end)
    summary.json           SPEC §5 summary (at the end)

Every file is written to a temporary name in the same folder and renamed, so
a killed scan leaves only complete files. ``.npz`` members carry CRC-32
checksums, so a damaged chunk is detected when it is read and reported,
never used. A run's result depends only on ``fold_in(key, run)``, so
resuming recomputes exactly the runs that no chunk holds and ends with the
per-run results of an uninterrupted scan.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile

import jax
import numpy as np

from sclandscape import problems
from sclandscape import scan as _scan


class ResultsError(ValueError):
    """A results folder that cannot be used as asked (exists, mismatched, corrupted)."""


def write_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, obj) -> None:
    write_atomic(path, (json.dumps(obj, indent=1) + "\n").encode())


def write_npz(path: str, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def read_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ResultsError(
            f"corrupted result file {path}: {err}; delete it and rerun with --resume"
        ) from None


def _config(problem, settings, seed, n_inits, keep_embeddings, global_loss) -> dict:
    return {
        "problem": problem.to_json(),
        "settings": settings.to_json(),
        "seed": int(seed),
        "n_inits": int(n_inits),
        "save_embeddings": bool(keep_embeddings),
        "global_loss": global_loss,
    }


def _chunk_paths(out: str) -> list[str]:
    folder = os.path.join(out, "chunks")
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("part-") and f.endswith(".npz")
    )


def load_runs(out: str) -> dict:
    """All per-run records in ``out`` (merged chunks, sorted by run index)."""
    final = os.path.join(out, "runs.npz")
    if os.path.exists(final):
        return read_npz(final)
    parts = [read_npz(p) for p in _chunk_paths(out)]
    if not parts:
        return {}
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(merged["run"])
    return {k: v[order] for k, v in merged.items()}


def run_scan(
    problem: problems.Problem,
    n_inits: int,
    seed: int,
    settings: _scan.ScanSettings,
    out: str,
    *,
    resume: bool = False,
    keep_embeddings: bool = False,
    progress=None,
) -> dict:
    """Run (or resume) a scan into the folder ``out`` and return its summary.

    Refuses (``ResultsError``, nothing touched) an existing non-empty ``out``
    without ``resume``, and a ``resume`` whose config differs from the one on disk.
    ``progress(done, total)`` is called as runs finish.
    """
    if int(n_inits) != n_inits or n_inits < 1:
        raise ValueError(f"n_inits must be an integer >= 1, got {n_inits!r}")
    exists = os.path.isdir(out) and os.listdir(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ResultsError(f"--out {out} exists and is not a folder")
    if exists and not resume:
        raise ResultsError(f"--out {out} exists and is not empty (use --resume to continue it)")
    key = jax.random.key(seed)
    scanner = _scan.Scanner(problem, key, settings, keep_embeddings=keep_embeddings)
    config = _config(problem, settings, seed, n_inits, keep_embeddings, scanner.optimum.loss)
    config_path = os.path.join(out, "config.json")
    if exists:
        try:
            with open(config_path) as f:
                on_disk = json.load(f)
        except (OSError, ValueError) as err:
            raise ResultsError(f"cannot resume {out}: unreadable config.json ({err})") from None
        if {k: v for k, v in on_disk.items() if k != "global_loss"} != {
            k: v for k, v in config.items() if k != "global_loss"
        }:
            raise ResultsError(f"cannot resume {out}: its config.json differs from this scan's settings")
    os.makedirs(os.path.join(out, "chunks"), exist_ok=True)
    write_json(config_path, config)
    write_json(os.path.join(out, "optimum.json"), scanner.optimum.to_json())

    done = load_runs(out).get("run", np.array([], np.int64))
    done_set = set(done.tolist())
    todo = [i for i in range(int(n_inits)) if i not in done_set]
    seq = len(_chunk_paths(out))
    finished = len(done_set)
    if progress:
        progress(finished, n_inits)
    for part in scanner.results(todo):
        write_npz(os.path.join(out, "chunks", f"part-{seq:05d}.npz"), part)
        seq += 1
        finished += part["run"].size
        if progress:
            progress(finished, n_inits)
    runs = load_runs(out)
    if not np.array_equal(runs["run"], np.arange(n_inits)):
        raise ResultsError(f"{out}: chunks do not hold runs 0..{n_inits - 1} exactly once")
    runs["kind"] = _scan.classify_records(runs, scanner.optimum.loss, settings)
    write_npz(os.path.join(out, "runs.npz"), runs)
    summary = _scan.summarize(runs, scanner.optimum.loss, settings)
    summary["global_rank"] = scanner.optimum.rank
    summary["problem"] = problem.to_json()
    write_json(os.path.join(out, "summary.json"), summary)
    return summary
