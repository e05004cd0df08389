"""TODO docstring"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets

import numpy as np

from sclandscape.folders import atomic, identity

#: The per-run fields every records file holds (``scanner.RECORD_FIELDS`` has more).
RUN_FIELDS = ("run", "loss", "status", "grad_norm", "cert_lambda", "cert_gap_bound")


def read_run_file(path: str) -> dict:
    """A records file (chunk or ``runs.npz``), checked: ``check_records`` and ``RUN_FIELDS``."""
    arrays = atomic.check_records(atomic.read_npz(path), path)
    missing = [f for f in RUN_FIELDS if f not in arrays]
    if missing:
        raise atomic.ResultsError(f"{path} has no {missing[0]!r}")
    return arrays


def chunk_paths(out: str) -> list[str]:
    folder = os.path.join(out, "chunks")
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("part-") and f.endswith(".npz")
    )


def chunk_prefix(p: int) -> str:
    """``part-pPPP-HOST-PID-TOKEN-``: no other writer, on any host, at any time, picks it."""
    return f"part-p{p:03d}-{atomic.HOST_TAG}-{os.getpid()}-{secrets.token_hex(4)}-"


def runs_present(out: str, n_inits: int, seen: dict) -> int | bool:
    """How many of the runs ``0..n_inits-1`` the chunks hold (``True``: all); ``seen`` caches."""
    if os.path.exists(os.path.join(out, "runs.npz")):
        return True
    for path in chunk_paths(out):
        if path not in seen:
            seen[path] = atomic.read_npz(path, keys=["run"])["run"]
    held = np.unique(np.concatenate([np.arange(0), *seen.values()]))
    count = int(np.sum((held >= 0) & (held < n_inits)))
    return True if count == n_inits else count


def _same_record(a: dict, i: int, b: dict, j: int) -> bool:
    """Whether row ``i`` of ``a`` and row ``j`` of ``b`` hold the same values (NaN equal to NaN)."""
    for name, column in a.items():
        nan_ok = column.dtype.kind == "f"
        if not np.array_equal(column[i], b[name][j], equal_nan=nan_ok):
            return False
    return True


@dataclasses.dataclass
class Merge:
    """The per-run records of a scan folder, merged from ``runs.npz`` and the chunks.

    ``runs``: the records sorted by run, each run once (empty dict when none);
    ``missing``: runs of ``0..n_inits-1`` that no file holds; ``duplicates``:
    identical copies dropped; ``notes``: what was repaired (a damaged
    ``runs.npz`` left out, damaged chunks whose runs other files hold).
    """

    runs: dict
    missing: np.ndarray
    duplicates: int
    notes: list


def merge_runs(out: str, n_inits: int | None = None, *, use_final: bool = True) -> Merge:
    """Merge the records of ``out``: a valid ``runs.npz`` that holds every run, else every chunk.

    Identical duplicates (a run written twice, e.g. by two writers of an older
    version that took no lock) are dropped; a run recorded twice with
    different values, a run outside ``0..n_inits-1``, chunks with different
    fields, or a damaged chunk whose runs no other file holds raise
    ``ResultsError`` saying which files to move away (their runs are
    recomputed by ``--resume``). A damaged ``runs.npz`` is left out (a note):
    it is a merge of the chunks and is rebuilt from them.
    """
    notes: list[str] = []
    final = os.path.join(out, "runs.npz")
    sources: list[tuple[str, dict]] = []
    if use_final and os.path.exists(final):
        try:
            sources.append((final, read_run_file(final)))
        except atomic.ResultsError as err:
            notes.append(f"{err}; left out, it is rebuilt from the chunks")
    if sources and n_inits is not None and np.array_equal(sources[0][1]["run"], np.arange(n_inits)):
        return Merge(sources[0][1], np.zeros(0, np.int64), 0, notes)
    damaged = []
    for path in chunk_paths(out):
        try:
            sources.append((path, read_run_file(path)))
        except atomic.ResultsError as err:
            damaged.append(str(err))
    runs: dict = {}
    duplicates = 0
    if sources:
        fields = set(sources[0][1])
        for path, arrays in sources[1:]:
            if set(arrays) != fields:
                raise atomic.ResultsError(
                    f"{path} and {sources[0][0]} hold different fields ({sorted(set(arrays) ^ fields)}): "
                    f"they come from different scans; move the one that does not belong out of {out}"
                )
        run = np.concatenate([a["run"] for _, a in sources]).astype(np.int64)
        src = np.concatenate([np.full(a["run"].size, k) for k, (_, a) in enumerate(sources)])
        row = np.concatenate([np.arange(a["run"].size) for _, a in sources])
        if n_inits is not None and run.size and (run.min() < 0 or run.max() >= n_inits):
            bad = int(np.flatnonzero((run < 0) | (run >= n_inits))[0])
            raise atomic.ResultsError(
                f"{sources[src[bad]][0]} holds run {run[bad]}, outside this scan's 0..{n_inits - 1}: "
                f"move it out of {out}"
            )
        order = np.lexsort((src, run))
        ordered = run[order]
        keep = np.ones(order.size, bool)
        keep[1:] = ordered[1:] != ordered[:-1]
        conflicts = []
        for pos in np.flatnonzero(~keep):
            lead, copy = order[np.searchsorted(ordered, ordered[pos])], order[pos]
            (a_path, a), (b_path, b) = sources[src[lead]], sources[src[copy]]
            if not _same_record(a, row[lead], b, row[copy]):
                conflicts.append((int(ordered[pos]), a_path, b_path))
        if conflicts:
            i, a, b = conflicts[0]
            others = len({c[0] for c in conflicts}) - 1
            more = f" (and {others} more runs)" if others else ""
            raise atomic.ResultsError(
                f"run {i} is recorded with different results in {a} and {b}{more}: they were written by "
                "scans that did not compute the same runs; move both files away and rerun with "
                "--resume, which recomputes their runs"
            )
        chosen = order[keep]
        runs = {name: np.concatenate([a[name] for _, a in sources])[chosen] for name in fields}
        duplicates = int(np.sum(~keep))
    present = runs["run"] if runs else np.zeros(0, np.int64)
    missing = np.setdiff1d(np.arange(n_inits), present) if n_inits is not None else np.zeros(0, np.int64)
    if damaged:
        if n_inits is None or missing.size:
            raise atomic.ResultsError(
                f"{damaged[0]}; its runs can be recomputed: move it out of {os.path.join(out, 'chunks')} "
                "and rerun with --resume"
            )
        notes.append(f"{damaged[0]}; not needed, the other files hold every run")
    return Merge(runs, missing, duplicates, notes)


def load_runs(out: str) -> dict:
    """All per-run records in ``out`` (``runs.npz``, or the merged chunks, sorted by run index)."""
    n_inits = None
    with contextlib.suppress(atomic.ResultsError):
        n = identity.read_config(out).get("n_inits")
        n_inits = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None
    return merge_runs(out, n_inits).runs


def write_points(out: str, name: str, points: dict) -> None:
    """The distinct points a batch of runs found (the ``Scanner``'s ``points``) into ``out/points/name``."""
    if len(points.get("loss", [])):
        atomic.write_npz(os.path.join(out, "points", name), points)
