"""Results folders: atomic chunk files, resume, and the summary (docs/results.md).

Layout of ``DIR``::

    config.json            problem, settings, seed, n_inits, L* (written first)
    chunks/part-00000.npz  per-run records of a batch of finished runs
                           (``part-p001-00000.npz``: written by process 1 of several)
    runs.npz               all per-run records sorted by run index (at the end)
    summary.json           The summary (at the end)

Every file is written to a temporary name in the same folder and renamed, so
a killed scan leaves only complete files. ``.npz`` members carry CRC-32
checksums, so a damaged chunk is detected when it is read and reported,
never used. A run's result depends only on ``fold_in(key, run)``, so
resuming recomputes exactly the runs that no chunk holds and ends with the
per-run results of an uninterrupted scan.

The same reason lets several processes (``jax.distributed`` on a pod slice or
several GPU hosts, or independent jobs) share one scan without collectives:
process ``p`` of ``P`` runs the indices ``i % P == p`` on its own local devices
and writes its own chunks into ``DIR`` (a folder all of them see); when every
run is on disk, process 0 writes ``runs.npz`` and ``summary.json``.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import platform
import tempfile
import time
import zipfile

import jax
import numpy as np
import scipy.stats
from jax.experimental import multihost_utils

import sclandscape
from sclandscape import (
    hessian,
    metrics,
    oblique,
    optim,
    optimum,
    precision,
    problems,
    scanner,
    streaming,
    verdict,
)


class ResultsError(ValueError):
    """A results folder that cannot be used as asked (exists, mismatched, corrupted)."""


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (created if missing)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
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


def read_json(path: str) -> dict:
    """A JSON file of a results folder; ``ResultsError`` (one line) when missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ResultsError(f"unreadable {path}: {err}") from None


def write_npz(path: str, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def read_npz(path: str, keys=None) -> dict:
    """The arrays of ``path`` (only ``keys`` when given: the waits read just ``run``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in (data.files if keys is None else keys)}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ResultsError(
            f"corrupted result file {path}: {err}; delete it and rerun with --resume"
        ) from None


def _config(problem, settings, seed, n_inits, keep_embeddings) -> dict:
    """What makes two scans the same scan (``config.json`` adds ``global_loss``)."""
    return {
        "problem": problem.to_json(),
        "settings": settings.to_json(),
        "seed": int(seed),
        "n_inits": int(n_inits),
        "save_embeddings": bool(keep_embeddings),
    }


#: Entries of ``config.json`` that record a session rather than define the scan (not compared on resume).
SESSION_KEYS = ("global_loss", "provenance", "timing", "earlier_sessions")


def _read_config(out: str) -> dict:
    """``out/config.json`` less ``SESSION_KEYS``; raises ``OSError``/``ValueError``."""
    with open(os.path.join(out, "config.json")) as f:
        return {k: v for k, v in json.load(f).items() if k not in SESSION_KEYS}


def _folder_error(out: str, config: dict, resume: bool) -> str | None:
    """Why ``out`` cannot take this scan, or ``None``; reads only."""
    if not (os.path.isdir(out) and os.listdir(out)):
        return None
    if not resume:
        return f"--out {out} exists and is not empty (use --resume to continue it)"
    try:
        on_disk = _read_config(out)
    except (OSError, ValueError) as err:
        return f"cannot resume {out}: unreadable config.json ({err})"
    if on_disk != config:
        return f"cannot resume {out}: its config.json differs from this scan's settings"
    return None


def _check_process(process) -> tuple[int, int]:
    """``(p, P)``, checked; under ``jax.distributed`` it can only be this process's own."""
    own = (jax.process_index(), jax.process_count())
    if process is None:
        return own
    try:
        p, count = (int(v) for v in process)
    except (TypeError, ValueError):
        p, count = -1, 0
    if not 0 <= p < count:
        raise ValueError(f"process must be (index, count) with 0 <= index < count, got {process!r}")
    if own[1] > 1 and (p, count) != own:
        raise ValueError(f"under jax.distributed process must be {own}, got {process!r}")
    return p, count


def _agree(error: str | None, config: dict, out: str) -> str | None:
    """Process 0's verdict on ``out``, on every process, and a check that all run one scan.

    One collective (all processes of ``jax.distributed``), so that a refusal stops
    every process at once instead of leaving the others waiting for runs that
    never come, and processes started with different settings are refused
    before any of them writes.
    """
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).digest()[:12]
    mine = np.concatenate([[int(error is not None)], np.frombuffer(digest, np.int32)]).astype(np.int32)
    every = np.asarray(multihost_utils.process_allgather(mine))
    if every[0, 0]:
        return error or f"process 0 refused --out {out} (see its message)"
    if np.any(every[:, 1:] != every[0, 1:]):
        return f"the processes sharing --out {out} were started with different scan settings"
    return None


def _wait(what: str, ready, timeout: float, poll: float = 0.5):
    """Poll ``ready()`` (a progress count, or ``True`` when done) until done.

    Gives up with a ``ResultsError`` once ``timeout`` seconds pass without progress,
    so a process that died elsewhere ends this one too (the folder stays resumable).
    """
    best, since = -1, time.monotonic()
    while True:
        state = ready()
        if state is True:
            return
        if state > best:
            best, since = state, time.monotonic()
        elif time.monotonic() - since > timeout:
            raise ResultsError(f"gave up after {timeout:.0f} s waiting for {what}; rerun with --resume")
        time.sleep(poll)


def _chunk_paths(out: str) -> list[str]:
    folder = os.path.join(out, "chunks")
    if not os.path.isdir(folder):
        return []
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("part-") and f.endswith(".npz")
    )


def _next_seq(out: str, prefix: str) -> int:
    """One past the highest ``prefix{seq}.npz`` chunk: a deleted chunk leaves a gap, never a clash."""
    names = (os.path.basename(p)[len(prefix) : -len(".npz")] for p in _chunk_paths(out))
    return max((int(n) for n in names if n.isdigit()), default=-1) + 1


def _runs_present(out: str, n_inits: int, seen: dict) -> int | bool:
    """How many of the runs ``0..n_inits-1`` the chunks hold (``True``: all); ``seen`` caches."""
    if os.path.exists(os.path.join(out, "runs.npz")):
        return True
    for path in _chunk_paths(out):
        if path not in seen:
            seen[path] = read_npz(path, keys=["run"])["run"]
    held = np.unique(np.concatenate([np.arange(0), *seen.values()]))
    count = int(np.sum((held >= 0) & (held < n_inits)))
    return True if count == n_inits else count


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
    settings: scanner.ScanSettings,
    out: str,
    *,
    resume: bool = False,
    keep_embeddings: bool = False,
    progress=None,
    process: tuple[int, int] | None = None,
    wait_timeout: float = 3600.0,
) -> dict:
    """Run (or resume) a scan into the folder ``out`` and return its summary.

    Refuses (``ResultsError``, nothing touched) an existing non-empty ``out``
    without ``resume``, and a ``resume`` whose config differs from the one on disk.
    ``progress(done, total)`` is called as this process's runs finish.

    ``process = (p, P)`` (default ``(jax.process_index(), jax.process_count())``)
    shares the scan among ``P`` processes: this one runs the indices ``i % P == p``
    and, once the chunks hold every run, all return the summary and process 0
    writes ``runs.npz`` and ``summary.json``. Only process 0 judges ``out`` (the
    others would see the folder it creates): under ``jax.distributed`` its verdict
    reaches all processes through one collective; otherwise the others wait for
    its ``config.json`` and require it to match. A wait with no progress for
    ``wait_timeout`` seconds raises ``ResultsError``.
    """
    started, clock = time.time(), time.monotonic()
    if int(n_inits) != n_inits or n_inits < 1:
        raise ValueError(f"n_inits must be an integer >= 1, got {n_inits!r}")
    p, count = _check_process(process)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ResultsError(f"--out {out} exists and is not a folder")
    config = _config(problem, settings, seed, n_inits, keep_embeddings)
    error = _folder_error(out, config, resume) if p == 0 else None
    if count > 1 and jax.process_count() > 1:
        error = _agree(error, config, out)
    if error:
        raise ResultsError(error)
    key = jax.random.key(seed)
    runner = scanner.Scanner(problem, key, settings, keep_embeddings=keep_embeddings)
    config_path = os.path.join(out, "config.json")
    if p == 0:
        os.makedirs(os.path.join(out, "chunks"), exist_ok=True)
        session = {
            **config,
            "global_loss": runner.optimum.loss,
            "provenance": provenance(problem, settings, runner.slots),
            "timing": {"started": _iso(started), "finished": None, "wall_s": None, "runs_computed": 0},
            "earlier_sessions": _earlier_sessions(config_path),
        }
        write_json(config_path, session)
        write_json(os.path.join(out, "optimum.json"), runner.optimum.to_json())
    elif jax.process_count() == 1:  # no collective: write only after process 0 has judged `out`
        _wait(f"{config_path} from process 0", lambda: os.path.exists(config_path), wait_timeout)
        try:
            on_disk = _read_config(out)
        except (OSError, ValueError) as err:
            raise ResultsError(f"cannot use {out}: unreadable config.json ({err})") from None
        if on_disk != config:
            raise ResultsError(f"cannot join {out}: its config.json differs from this scan's settings")
    os.makedirs(os.path.join(out, "chunks"), exist_ok=True)

    done = set(load_runs(out).get("run", np.array([], np.int64)).tolist())
    share = range(p, int(n_inits), count)
    todo = [i for i in share if i not in done]
    prefix = "part-" if count == 1 else f"part-p{p:03d}-"
    seq = _next_seq(out, prefix)
    finished = len(share) - len(todo)
    if progress:
        progress(finished, len(share))
    for part in runner.results(todo):
        name = f"{prefix}{seq:05d}.npz"
        write_points(out, name, part.pop("points"))  # before the chunk: a chunk implies its points
        write_npz(os.path.join(out, "chunks", name), part)
        seq += 1
        finished += part["run"].size
        if progress:
            progress(finished, len(share))
    if count > 1:
        seen: dict = {}
        _wait(f"the other processes' runs in {out}", lambda: _runs_present(out, n_inits, seen), wait_timeout)
    runs = load_runs(out)
    if not np.array_equal(runs["run"], np.arange(n_inits)):
        raise ResultsError(f"{out}: chunks do not hold runs 0..{n_inits - 1} exactly once")
    runs["kind"] = classify_records(runs, runner.optimum.loss, settings)
    runs["status_name"] = status_names(runs["status"])
    points = merge_points(out, runs, settings)
    summary = summarize(runs, runner.optimum.loss, settings, points, runner.optimum.rank)
    summary["attainable"] = problem.dim >= runner.optimum.rank
    summary["problem"] = problem.to_json()
    if p == 0:
        write_npz(os.path.join(out, "points.npz"), points)
        write_npz(os.path.join(out, "runs.npz"), runs)
        write_json(os.path.join(out, "summary.json"), summary)
        session["timing"].update(
            finished=_iso(time.time()),
            wall_s=time.monotonic() - clock,
            runs_computed=finished - (len(share) - len(todo)),
        )
        write_json(config_path, session)
    return summary


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(problem: problems.Problem, settings: scanner.ScanSettings, slots: int | None = None) -> dict:
    """What a scan ran with: versions, devices, and the execution paths it takes (``config.json``).

    ``execution`` records the choices actually taken for this problem and
    settings: ``streaming`` (``scanner.streams``: the loss, gradient and
    certificate without the ``n x n`` matrix), the kernels of the first-order
    phase (``streaming.kernel_impl`` in the scan's dtype: ``"pallas"``,
    ``"jax"``; ``"dense"`` when not streaming) and of the float64 polish, the
    certificate (``"lanczos"`` when streaming, else the dense ``"eigvalsh"``),
    and ``slots`` (the concurrent runs after rounding to the device count).
    """
    stream = scanner.streams(problem.n, settings)
    first_order = np.float64 if settings.x64 else np.float32
    devices = jax.devices()
    return {
        "sclandscape": sclandscape.__version__,
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "devices": {
            "platform": jax.default_backend(),
            "kind": devices[0].device_kind,
            "count": len(devices),
            "local_count": jax.local_device_count(),
            "processes": jax.process_count(),
            "float64_platform": precision.float64_device().platform,
        },
        "execution": {
            "streaming": bool(stream),
            "streaming_mode": settings.streaming,
            "first_order_dtype": np.dtype(first_order).name,
            "first_order_kernel": streaming.kernel_impl(first_order) if stream else "dense",
            "polish_kernel": streaming.kernel_impl(np.float64) if stream else "dense",
            "certificate": "lanczos" if stream else "eigvalsh",
            "slots": None if slots is None else int(slots),
        },
    }


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


def _earlier_sessions(config_path: str) -> list:
    """The sessions recorded in an existing ``config.json`` (a resume keeps them), oldest first."""
    if not os.path.exists(config_path):
        return []
    try:
        old = read_json(config_path)
    except ResultsError:
        return []
    earlier = list(old.get("earlier_sessions", []))
    if "provenance" in old:
        earlier.append({"provenance": old["provenance"], "timing": old.get("timing")})
    return earlier


# --------------------------------------------------------------------------
# Distinct critical points


def write_points(out: str, name: str, points: dict) -> None:
    """The distinct points a batch of runs found (the ``Scanner``'s ``points``) into ``out/points/name``."""
    if len(points.get("loss", [])):
        write_npz(os.path.join(out, "points", name), points)


def merge_points(out: str, runs: dict, settings) -> dict:
    """Merge ``out/points/*.npz`` into one set of distinct points; renumber each run's ``point`` (in place).

    Points found by different processes or resumed sessions that are one
    point up to rotation and relabelling (``metrics.same_point``: losses
    within both points' gap tolerances, invariants within ``group_atol``)
    are merged; each run's ``point`` then indexes the merged arrays.
    """
    folder = os.path.join(out, "points")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npz")) if os.path.isdir(folder) else []
    parts = [read_npz(os.path.join(folder, f)) for f in files]
    parts = [p for p in parts if len(p.get("loss", []))]
    if not parts:
        runs["point"] = np.full(runs["run"].size, -1, np.int64)
        return {}
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    config = read_json(os.path.join(out, "config.json"))
    problem = problems.Problem.from_json(config["problem"])
    labels, counts = problem.labels, problem.counts
    invariants = [metrics.invariants(h, labels) for h in merged["H"]]
    perms = metrics.class_permutations(counts)
    keep: list[int] = []
    image = np.empty(merged["loss"].size, np.int64)
    for i in range(merged["loss"].size):
        for j, rep in enumerate(keep):
            close = (
                abs(merged["loss"][i] - merged["loss"][rep]) <= merged["gap_tol"][i] + merged["gap_tol"][rep]
            )
            if (
                close
                and str(merged["kind"][i]) == str(merged["kind"][rep])
                and metrics.same_point(
                    invariants[i],
                    invariants[rep],
                    0.0,
                    0.0,
                    counts,
                    gram_atol=settings.group_atol,
                    perms=perms,
                )
            ):
                image[i] = j
                break
        else:
            image[i] = len(keep)
            keep.append(i)
    lookup = {
        (int(s), int(loc)): int(image[i])
        for i, (s, loc) in enumerate(zip(merged["session"], merged["local"], strict=True))
    }
    point = np.asarray(runs.get("point", np.full(runs["run"].size, -1)))
    session = np.asarray(runs.get("session", np.zeros(runs["run"].size, np.int64)))
    runs["point"] = np.array(
        [lookup.get((int(s), int(p)), -1) if p >= 0 else -1 for s, p in zip(session, point, strict=True)],
        np.int64,
    )
    out_points = {k: v[keep] for k, v in merged.items() if k not in ("session", "local")}
    out_points["count"] = np.bincount(runs["point"][runs["point"] >= 0], minlength=len(keep)).astype(np.int64)
    return out_points


# --------------------------------------------------------------------------
# Summaries


def classify_records(rec: dict, global_loss: float, settings: scanner.ScanSettings) -> np.ndarray:
    """Each run's kind as the scan recorded it (``ResultsError`` for records without one)."""
    if "kind" not in rec:
        raise ResultsError("the runs carry no 'kind' (written by an older version): rerun the scan")
    return np.asarray(rec["kind"]).astype("<U13")


#: Kinds grouped into distinct minima by ``summarize``.
MINIMA = ("global_min", "spurious_min", "local_min", "degenerate")

#: ``runs.npz``'s integer ``status`` -> name (``optim.Status``, lower case); summary.json's ``status_codes``.
STATUS_NAMES = {int(s): s.name.lower() for s in optim.Status}


def status_names(status) -> np.ndarray:
    """The name of each ``status`` code (``STATUS_NAMES``; a code it lacks is written as its number)."""
    codes = np.asarray(status).astype(np.int64)
    return np.array([STATUS_NAMES.get(int(c), str(int(c))) for c in codes.ravel()], dtype="<U16").reshape(
        codes.shape
    )


def binomial_upper_bound(count: int, trials: int, confidence: float = 0.95) -> float:
    r"""Clopper-Pearson exact one-sided upper confidence bound on a binomial proportion.

    ``count`` successes in ``trials`` independent trials, ``X ~ Binomial(N, p)``.
    The bound ``p_U(x)`` is the largest ``p`` under which seeing at most ``x``
    successes still has probability at least ``alpha = 1 - confidence``::

        P(X <= x; p_U) = alpha        (x < N),        p_U = 1   (x = N).

    Coverage: ``F(x; p) = P(X <= x; p)`` decreases in ``p``, so
    ``p_U(x) < p`` exactly when ``F(x; p) < alpha``; the outcomes ``x`` with
    ``F(x; p) < alpha`` form a lower tail of probability below ``alpha``, so
    ``P(p_U(X) >= p) >= 1 - alpha`` for every ``p`` (exact, conservative, no
    normal approximation). With
    ``P(X <= x; p) = 1 - I_p(x + 1, N - x)`` (regularised incomplete beta)
    the bound is the ``confidence`` quantile of ``Beta(x + 1, N - x)``. For
    ``x = 0`` the equation is ``(1 - p_U)^N = alpha``, so
    ``p_U = 1 - alpha^(1/N) <= -ln(alpha) / N``, which is ``2.996 / N`` at
    95%: the "rule of three" (``3 / N``).
    """
    if isinstance(trials, bool) or int(trials) != trials or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    if isinstance(count, bool) or int(count) != count or not 0 <= count <= trials:
        raise ValueError(f"count must be an integer in 0..{int(trials)}, got {count!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    x, n = int(count), int(trials)
    if x == n:
        return 1.0
    if x == 0:  # closed form, exact to rounding (the beta quantile agrees to ~1e-15)
        return float(-np.expm1(np.log1p(-confidence) / n))
    return float(scipy.stats.beta.ppf(confidence, x + 1, n - x))


def spurious_fraction(count: int, trials: int) -> dict:
    """``{"count", "runs", "observed", "upper_95"}``: runs ending at a spurious minimum, and the bound.

    ``upper_95`` is ``binomial_upper_bound(count, runs, 0.95)``: with 95%
    confidence, at most this fraction of random initialisations (the scan's
    distribution) ends at a spurious minimum.
    """
    return {
        "count": int(count),
        "runs": int(trials),
        "observed": int(count) / int(trials),
        "upper_95": binomial_upper_bound(count, trials, 0.95),
    }


def _distinct_minima(rec: dict, kind: np.ndarray, points: dict | None, global_loss: float) -> list[dict]:
    """One entry per distinct minimum: the scan's distinct points (``point``), counted over runs."""
    entries = []
    point = np.asarray(rec.get("point", np.full(kind.size, -1)))
    if points is not None and len(points.get("loss", [])):
        for p in range(len(points["loss"])):
            members = point == p
            if not members.any() or str(points["kind"][p]) not in MINIMA:
                continue
            entries.append(
                {
                    "point": p,
                    "loss": float(points["loss"][p]),
                    "gap": float(points["loss"][p] - global_loss),
                    "count": int(members.sum()),
                    "kind": str(points["kind"][p]),
                    "decided_by": str(points["decided_by"][p]),
                    "certified_global": str(points["kind"][p]) == "global_min",
                    "index": int(points["index"][p]),
                    "strict_certified": bool(points["strict_certified"][p]),
                    "certified_radius": float(points["certified_radius"][p]),
                    "lifted_index": int(points["lifted_index"][p]),
                    "kinds": {str(points["kind"][p]): int(members.sum())},
                }
            )
    # Runs judged by the cheap tests alone (no representative point): one entry per kind.
    for name in MINIMA:
        alone = (kind == name) & (point < 0)
        if alone.any():
            losses = rec["loss"][alone]
            entries.append(
                {
                    "point": -1,
                    "loss": float(np.min(losses)),
                    "gap": float(np.min(losses) - global_loss),
                    "count": int(alone.sum()),
                    "kind": name,
                    "decided_by": ",".join(
                        sorted(set(np.asarray(rec.get("decided_by", kind))[alone].tolist()))
                    ),
                    "certified_global": name == "global_min",
                    "index": 0,
                    "strict_certified": False,
                    "certified_radius": float("inf"),
                    "lifted_index": -1,
                    "kinds": {name: int(alone.sum())},
                }
            )
    entries.sort(key=lambda e: e["loss"])
    return entries


def summarize(
    rec: dict,
    global_loss: float,
    settings: scanner.ScanSettings,
    points: dict | None = None,
    global_rank=None,
) -> dict:
    """The summary: counts per kind and per deciding test, and the distinct minima.

    ``points``: the scan's distinct critical points (``merge_points``); each
    run's ``point`` field says which one it reached. When ``d < rank M*``
    (``global_rank``) ``L*`` is not attainable: the minima are ``local_min``
    and each gets its ``gap_to_lowest``, the difference to the lowest found.
    """
    kind = classify_records(rec, global_loss, settings)
    distinct = _distinct_minima(rec, kind, points, global_loss)
    lowest = min((e["loss"] for e in distinct), default=None)
    for e in distinct:
        e["gap_to_lowest"] = e["loss"] - lowest
    decided = np.asarray(rec.get("decided_by", np.full(kind.size, "")))
    counts = {k: int(np.sum(kind == k)) for k in metrics.KINDS}
    n_inits = int(rec["run"].size)
    summary = {
        "n_inits": n_inits,
        "global_loss": float(global_loss),
        "counts": counts,
        "spurious_fraction": spurious_fraction(counts["spurious_min"], n_inits) if n_inits else None,
        "decided_by": {d: int(np.sum(decided == d)) for d in verdict.DECIDERS if np.any(decided == d)},
        "distinct_minima": distinct,
        "best_loss": float(np.min(rec["loss"])) if rec["loss"].size else None,
        "lowest_minimum": lowest,
        "escapes": int(np.sum(rec.get("escapes", np.zeros(1)))),
        "status_counts": {
            STATUS_NAMES.get(int(s), str(s)): int(np.sum(rec["status"] == s))
            for s in np.unique(rec["status"])
        },
        "status_codes": {str(code): name for code, name in STATUS_NAMES.items()},
        "classification": (
            "every run: gradient, certificate and gap tests; each distinct critical point: its float64 "
            "spectrum with the symmetry modes removed, the a-posteriori proof and (below rank M*) the "
            "lifting test; saddles escaped and continued (docs/maths.md §5)"
        ),
        "tolerances": {
            "tol": settings.tol,
            "gtol": settings.gtol_factor * settings.tol,
            "group_atol": settings.group_atol,
        },
    }
    if global_rank is not None:
        summary["global_rank"] = int(global_rank)
    return summary


# --------------------------------------------------------------------------
# Loading a finished scan; embeddings and spectra of its points


def load_scan(out: str) -> dict:
    """The pieces of a finished scan folder: ``config``, ``summary``, ``runs``, ``class_gram`` (M*).

    Raises ``ResultsError`` (one line) when ``out`` is not a finished scan.
    """
    if not os.path.isdir(out):
        raise ResultsError(f"{out} is not a folder")
    if not os.path.exists(os.path.join(out, "config.json")):
        raise ResultsError(f"{out} is not a scan results folder (no config.json)")
    for name in ("summary.json", "runs.npz"):
        if not os.path.exists(os.path.join(out, name)):
            raise ResultsError(
                f"{out} holds an unfinished scan (no {name}); finish it with `sclandscape scan ... --resume`"
            )
    config = read_json(os.path.join(out, "config.json"))
    summary = read_json(os.path.join(out, "summary.json"))
    runs = read_npz(os.path.join(out, "runs.npz"))
    for key in ("problem", "settings", "seed", "n_inits"):
        if key not in config:
            raise ResultsError(f"{out}/config.json has no {key!r}")
    for key in ("global_loss", "counts", "distinct_minima"):
        if key not in summary:
            raise ResultsError(f"{out}/summary.json has no {key!r}")
    missing = [
        f for f in ("run", "loss", "status", "grad_norm", "cert_lambda", "cert_gap_bound") if f not in runs
    ]
    if missing:
        raise ResultsError(f"{out}/runs.npz has no {missing[0]!r}")
    try:
        problem = problems.Problem.from_json(config["problem"])
        settings = scanner.ScanSettings.from_json(config["settings"])
    except (TypeError, ValueError, KeyError) as err:
        raise ResultsError(f"{out}/config.json does not describe a scan: {err}") from None
    if "kind" not in runs:
        runs["kind"] = classify_records(runs, summary["global_loss"], settings)
    if "status_name" not in runs:  # a scan written before the names were stored
        runs["status_name"] = status_names(runs["status"])
    opt_path = os.path.join(out, "optimum.json")
    if os.path.exists(opt_path):
        opt_data = read_json(opt_path)
    else:
        opt_data = optimum.global_optimum(problem.counts, problem.tau).to_json()
    class_gram = np.asarray(opt_data["class_gram"], np.float64)
    points_path = os.path.join(out, "points.npz")
    points = read_npz(points_path) if os.path.exists(points_path) else {}
    return {
        "config": config,
        "summary": summary,
        "runs": runs,
        "points": points,
        "problem": problem,
        "settings": settings,
        "class_gram": class_gram,
        "optimum": opt_data,
    }


def embeddings(scan_data: dict, rows: list[int]) -> tuple[dict, list[str]]:
    """``{row: H}``: each run's saved embedding, else its distinct point's (stored at scan time); notes.

    A run without either (``not_converged``) is left out with a note. Nothing
    is ever re-optimised: a run's distinct point is the same critical point up
    to rotation and relabelling.
    """
    runs, points = scan_data["runs"], scan_data.get("points") or {}
    found, notes = {}, []
    for r in rows:
        p = int(np.asarray(runs.get("point", [-1] * (r + 1)))[r])
        if "H" in runs:
            found[r] = np.asarray(runs["H"][r])
        elif p >= 0 and "H" in points:
            found[r] = np.asarray(points["H"][p])
        else:
            notes.append(f"run {int(runs['run'][r])} has no stored embedding (its kind: {runs['kind'][r]})")
    return found, notes


def hessian_spectra(out: str, run_indices=None) -> str:
    """Full Riemannian Hessian spectra into ``out/hessian/spectra.npz``: the distinct points, or chosen runs.

    Default: every distinct critical point of the scan (``points.npz``,
    stored at scan time). With ``run_indices``: those runs (their saved
    embeddings, or their distinct points'). Nothing is re-optimised; the
    spectra are computed in float64 (dense). The file holds ``runs`` (-1 for a
    point), ``points``, ``eigenvalues`` ``(r, n(d-1))`` ascending,
    ``n_zero_predicted``, ``kind``, ``index``, ``lambda_min``, ``tol`` and
    ``loss`` (the scan's verdict on each point); it is written atomically.
    Returns its path. Raises ``ValueError`` (one line) on bad input.
    """
    data = load_scan(out)
    runs, problem, points = data["runs"], data["problem"], data.get("points") or {}
    N = problem.n * (problem.dim - 1)
    if problem.dim < 2:
        raise ValueError(f"{out}: d = 1 has no tangent space (no Hessian)")
    if N > hessian.DENSE_MAX_DIM:
        raise ValueError(
            f"full spectra need n(d-1) <= {hessian.DENSE_MAX_DIM}, this scan has {N} "
            "(use sclandscape.hessian.lanczos_extremes / spectral_density)"
        )
    if run_indices is None:
        if not len(points.get("loss", [])):
            raise ValueError(f"{out}: the scan stored no distinct critical point (no converged run)")
        H = np.asarray(points["H"])
        chosen_runs = np.full(H.shape[0], -1, np.int64)
        chosen_points = np.arange(H.shape[0])
        fields = {
            f: np.asarray(points[f])
            for f in ("kind", "index", "lambda_min", "tol", "loss", "n_zero_predicted")
        }
    else:
        index_of = {int(i): r for r, i in enumerate(np.asarray(runs["run"]))}
        run_indices = [int(i) for i in run_indices]
        bad = [i for i in run_indices if i not in index_of]
        if not run_indices or bad:
            raise ValueError(f"runs must be indices of this scan (0..{len(index_of) - 1}), got {bad or '[]'}")
        rows = [index_of[i] for i in dict.fromkeys(run_indices)]
        found, notes = embeddings(data, rows)
        if notes:
            raise ValueError(f"{out}: {notes[0]}")
        H = np.stack([found[r] for r in rows])
        chosen_runs = np.asarray(runs["run"])[rows].astype(np.int64)
        chosen_points = np.asarray(runs.get("point", np.full(len(runs["run"]), -1)))[rows]
        fields = {
            "kind": np.asarray(runs["kind"])[rows],
            "index": np.asarray(runs["hess_index"])[rows],
            "lambda_min": np.asarray(runs["hess_lambda_min"])[rows],
            "tol": np.asarray(runs["hess_tol"])[rows],
            "loss": np.asarray(runs["loss"])[rows],
            "n_zero_predicted": np.asarray(runs["hess_n_zero_predicted"])[rows],
        }
    with precision.float64():
        eigs = np.asarray(hessian.riemannian_hessian_eigs(H, problem.labels, problem.tau))
        if np.any(fields["n_zero_predicted"] < 0):  # runs judged without a spectrum: the symmetry count
            ranks = np.atleast_1d(np.asarray(oblique.numerical_rank(H)))
            fields["n_zero_predicted"] = np.array(
                [oblique.predicted_zero_modes(int(r), problem.dim) for r in ranks]
            )
    arrays = {
        "runs": chosen_runs,
        "points": np.asarray(chosen_points, np.int64),
        "eigenvalues": eigs.reshape(H.shape[0], N),
        "n_zero_predicted": np.asarray(fields["n_zero_predicted"], np.int64),
        "kind": np.asarray(fields["kind"]).astype("<U13"),
        "index": np.asarray(fields["index"], np.int64),
        "lambda_min": np.asarray(fields["lambda_min"], np.float64),
        "tol": np.asarray(fields["tol"], np.float64),
        "loss": np.asarray(fields["loss"], np.float64),
    }
    path = os.path.join(out, "hessian", "spectra.npz")
    write_npz(path, arrays)
    return path
