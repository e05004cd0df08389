"""TODO docstring"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import platform
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from sclandscape.core import compilation, interrupts, metadata, precision, problems
from sclandscape.core import progress as progress_lib
from sclandscape.explore import census, scanner
from sclandscape.folders import atomic, identity, merging, summaries
from sclandscape.numerics import streaming


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
    before any of them writes (their execution settings may differ).
    """
    key = json.dumps(identity.scan_identity(config), sort_keys=True)
    digest = hashlib.sha256(key.encode()).digest()[:12]
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
            raise atomic.ResultsError(
                f"gave up after {timeout:.0f} s waiting for {what}; rerun with --resume"
            )
        time.sleep(poll)


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
    log=None,
) -> dict:
    """Run (or resume) a scan into the folder ``out`` and return its summary.

    Refuses (``ResultsError``, nothing touched) an existing non-empty ``out``
    without ``resume``, a ``resume`` whose config differs from the one on disk
    (every differing field named; the ``execution`` settings may differ), and a
    folder another scan is writing (``FolderLock``; held for the whole run).
    ``progress(done, total, phase, detail)`` (or a callable of the first two or
    three of those; ``sclandscape.core.progress``) is called as this process's runs
    leave the first-order phase (``done``; the detail says how many are
    recorded) and at each phase change (``compiling``, ``first order``,
    ``polish``, ``classification``, ``writing``). Default (``None``): a display
    of its own (a bar in a terminal or notebook, lines in a log file;
    ``progress.resolve``); ``False``: silent;
    ``log(line)`` gets notes on what was repaired (leftover lock records,
    a damaged ``runs.npz`` rebuilt, duplicate runs dropped).

    ``process = (p, P)`` (default ``(jax.process_index(), jax.process_count())``)
    shares the scan among ``P`` processes: this one runs the indices ``i % P == p``
    and, once the chunks hold every run, all return the summary and process 0
    writes ``runs.npz`` and ``summary.json``. Only process 0 judges and locks
    ``out`` (the others would see the folder it creates): under ``jax.distributed``
    its verdict reaches all processes through one collective; otherwise the others
    wait for its ``config.json`` and require it to match. A wait with no progress
    for ``wait_timeout`` seconds raises ``ResultsError``.
    """
    with progress_lib.resolve(progress, "scan") as report:
        return _run_scan(
            problem, n_inits, seed, settings, out, resume, keep_embeddings, report, process, wait_timeout, log
        )


def _run_scan(
    problem, n_inits, seed, settings, out, resume, keep_embeddings, progress, process, wait_timeout, log
) -> dict:
    started = time.time()
    if isinstance(n_inits, bool) or int(n_inits) != n_inits or n_inits < 1:
        raise ValueError(f"n_inits must be an integer >= 1, got {n_inits!r}")
    seed = problems.check_seed(seed)
    p, count = _check_process(process)
    if os.path.exists(out) and not os.path.isdir(out):
        raise atomic.ResultsError(f"--out {out} exists and is not a folder")
    config = identity.scan_config(problem, settings, seed, n_inits, keep_embeddings)
    runs_here = len(range(p, int(n_inits), count))
    # A run that cannot fit the memory budget is refused before the folder exists (ValueError).
    scanner.plan(problem.n, problem.dim, settings, runs=runs_here, devices=jax.local_device_count())
    lock, created, error = None, False, None
    # Compile time against the rest (config.json's timing); the checks above take microseconds.
    watch = compilation.Stopwatch().start()
    try:
        if p == 0:
            error = identity.folder_error(out, config, resume)
            if error is None:
                created = not os.path.exists(out)
                try:
                    lock = atomic.lock_folder(out)
                    # again: another writer may have been first
                    error = identity.folder_error(out, config, resume)
                except atomic.ResultsError as err:
                    error = str(err)
        if count > 1 and jax.process_count() > 1:
            error = _agree(error, config, out)
        if error:
            raise atomic.ResultsError(error)
        if lock is not None and log and atomic.took_over(lock):
            log(atomic.took_over(lock))
        key = jax.random.key(seed)
        runner = scanner.Scanner(problem, key, settings, keep_embeddings=keep_embeddings, runs=runs_here)
        chunks = os.path.join(out, "chunks")
        session = _open_session(out, config, runner, problem, settings, started, (p, count), wait_timeout)
        os.makedirs(chunks, exist_ok=True)

        before = merging.merge_runs(out, n_inits)
        for note in before.notes:
            if log:
                log(note)
        done = set(before.runs.get("run", np.array([], np.int64)).tolist())
        share = range(p, int(n_inits), count)
        todo = [i for i in share if i not in done]
        finished = _compute(out, runner, share, todo, p, progress)
        if count > 1:
            seen: dict = {}
            _wait(
                f"the other processes' runs in {out}",
                lambda: merging.runs_present(out, n_inits, seen),
                wait_timeout,
            )
        if progress:
            progress(finished, len(share), "writing", "runs.npz and summary.json")
        runs, points, summary = _finish(out, n_inits, runner, problem, settings, log if p == 0 else None)
        if p == 0:
            atomic.write_npz(os.path.join(out, "points.npz"), points)
            atomic.write_npz(os.path.join(out, "runs.npz"), runs)
            atomic.write_json(os.path.join(out, "summary.json"), summary)
            split = watch.to_json()  # compile_s counts loads from the compilation cache too
            session["timing"].update(
                finished=_iso(time.time()),
                wall_s=split["total_s"],
                runs_computed=finished - (len(share) - len(todo)),
                **split,
            )
            atomic.write_json(os.path.join(out, "config.json"), session)
        return summary
    finally:
        watch.stop()
        if lock is not None:
            lock.release()
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out)  # only when empty: a scan that stopped before writing anything


def _open_session(out, config, runner, problem, settings, started, process, wait_timeout) -> dict | None:
    """Process 0 starts this session's ``config.json`` (and writes ``optimum.json``); another process
    waits for it and checks that it describes the same scan. Returns the session record (process 0)."""
    p, count = process
    config_path = os.path.join(out, "config.json")
    chunks = os.path.join(out, "chunks")
    session = None
    if p == 0:
        for folder in (out, chunks, os.path.join(out, "points")):
            atomic.clean_temps(folder, sole_writer=count == 1)
        session = {
            **config,
            "global_loss": runner.optimum.loss,
            "provenance": provenance(problem, settings, runner.slots, plan=runner.plan),
            "timing": {
                "started": _iso(started),
                "finished": None,
                "wall_s": None,
                "runs_computed": 0,
                "compile_s": None,
                "run_s": None,
                "total_s": None,
            },
            "earlier_sessions": identity.earlier_sessions(config_path),
        }
        atomic.write_json(config_path, session)
        atomic.write_json(os.path.join(out, "optimum.json"), runner.optimum.to_json())
    elif jax.process_count() == 1:  # no collective: write only after process 0 has judged `out`
        _wait(f"{config_path} from process 0", lambda: os.path.exists(config_path), wait_timeout)
        try:
            differences = identity.config_differences(identity.read_config(out), config)
        except ValueError as err:
            raise atomic.ResultsError(f"cannot use {out}: {err}") from None
        if differences:
            raise atomic.ResultsError(f"cannot join {out}: its config.json differs: {'; '.join(differences)}")
    return session


def _compute(out, runner, share, todo, p, progress) -> int:
    """This process's runs ``todo`` of its ``share``, one chunk file per finished batch (its points
    first: a chunk implies its points). Returns the runs recorded (earlier sessions' included)."""
    chunks = os.path.join(out, "chunks")
    prefix = merging.chunk_prefix(p)
    finished = earlier = len(share) - len(todo)
    # The count shown: runs that have left the first-order phase (it moves as soon as runs finish,
    # whether or not a batch is complete); the detail says how many are recorded in chunks. The
    # interrupt line counts only the recorded ones.
    interrupts.progress(finished, len(share))
    if progress:
        progress(finished, len(share), "compiling" if todo else "writing")
        runner.on_phase = lambda phase, detail=None: progress(
            earlier + runner.moved,
            len(share),
            phase,
            f"{finished} recorded" if phase == "first order" else detail,
        )
    for seq, part in enumerate(runner.results(todo)):
        if progress:
            progress(earlier + runner.moved, len(share), "writing", f"{part['run'].size} runs")
        name = f"{prefix}{seq:05d}.npz"
        # the points before the chunk: a chunk implies its points
        merging.write_points(out, name, part.pop("points"))
        atomic.write_npz(os.path.join(chunks, name), part)
        finished += part["run"].size
        interrupts.progress(finished, len(share))
        if progress:
            progress(max(finished, earlier + runner.moved), len(share), None, f"{finished} recorded")
    return finished


def _finish(out, n_inits, runner, problem, settings, log) -> tuple[dict, dict, dict]:
    """Merge every chunk into one record per run and one set of distinct points, and summarise."""
    chunks = os.path.join(out, "chunks")
    merged = merging.merge_runs(out, n_inits)
    if merged.missing.size:
        raise atomic.ResultsError(
            f"{out}: no file holds runs {merged.missing[:5].tolist()}"
            f"{' ...' if merged.missing.size > 5 else ''} ({merged.missing.size} of {n_inits}); "
            "rerun with --resume to compute them"
        )
    if merged.duplicates and log:
        log(f"{merged.duplicates} runs were recorded twice in {chunks} (identical copies, counted once)")
    runs = merged.runs
    points = merge_points(out, runs)
    inherit_point_fields(runs, points)
    runs["kind"] = summaries.classify_records(runs)
    runs["status_name"] = summaries.status_names(runs["status"])
    summary = summaries.summarize(runs, runner.optimum.loss, settings, points, runner.optimum.rank)
    summary["attainable"] = problem.dim >= runner.optimum.rank
    summary["problem"] = problem.to_json()
    return runs, points, summary


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(
    problem: problems.Problem,
    settings: scanner.ScanSettings,
    slots: int | None = None,
    *,
    plan: scanner.Plan | None = None,
) -> dict:
    """What a scan ran with: versions, devices, and the execution paths it takes (``config.json``).

    ``execution`` records the choices actually taken for this problem and
    settings: ``streaming`` (``scanner.streams``: the loss, gradient and
    certificate without the ``n x n`` matrix), the kernels of the first-order
    phase (``streaming.kernel_impl`` in the scan's dtype: ``"pallas"``,
    ``"jax"``; ``"dense"`` when not streaming) and of the float64 polish, the
    certificate (``"lanczos"`` when streaming, else the dense ``"eigvalsh"``),
    and ``slots`` (the concurrent runs after rounding to the device count);
    given the scanner's ``plan`` (``scanner.plan``), also where the slots came
    from (``slots_from``: ``"settings"`` or ``"memory_budget"``), the
    ``memory_budget`` and the estimated ``slot_bytes`` of one slot.
    """
    if plan is not None:
        slots = plan.slots
    stream = plan.stream if plan is not None else scanner.streams(problem.n, settings)
    first_order = np.float64 if settings.x64 else np.float32
    devices = jax.devices()
    return {
        "sclandscape": metadata.version(),
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
            **(
                {}
                if plan is None
                else {
                    "slots_from": plan.slots_from,
                    "memory_budget": plan.memory_budget,
                    "slot_bytes": plan.slot_bytes,
                }
            ),
        },
    }


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


#: A run's fields that are its point's verdict (``census.PointBook._inherit``): run field -> point field.
POINT_INHERITED = {
    "hess_lambda_min": "lambda_min",
    "hess_index": "index",
    "hess_n_zero": "n_zero",
    "hess_n_zero_predicted": "n_zero_predicted",
    "hess_tol": "tol",
    "strict_certified": "strict_certified",
    "certified_radius": "certified_radius",
    "lifted_index": "lifted_index",
}


def inherit_point_fields(runs: dict, points: dict) -> None:
    """Each run that reached a distinct point takes that merged point's verdict (``POINT_INHERITED``).

    Every session (a resumed scan, each process) judges its own copy of a
    point; the copies agree to rounding, not to the bit. A run judged in a
    later session would otherwise carry its session's copy (``hess_lambda_min``
    and ``hess_tol`` differing in the last bits from an uninterrupted scan);
    with the merged point's (the earliest session's copy, ``census.merge``)
    the runs of a scan interrupted and resumed equal those of the
    uninterrupted one. In place.
    """
    point = np.asarray(runs.get("point", np.full(runs["run"].size, -1)))
    rows = np.flatnonzero(point >= 0)
    if not rows.size or not len(points.get("loss", [])):
        return
    for field, source in POINT_INHERITED.items():
        if field in runs and source in points:
            values = np.array(runs[field], copy=True)
            values[rows] = np.asarray(points[source])[point[rows]].astype(values.dtype)
            runs[field] = values


def merge_points(out: str, runs: dict) -> dict:
    """Merge ``out/points/*.npz`` into one set of distinct points; renumber each run's ``point`` (in place).

    Points found by different processes or resumed sessions that are one
    critical point modulo the loss's symmetries are merged, and the points are
    numbered by loss (``census.merge_sessions``); each run's ``point`` then
    indexes the merged arrays. The result carries the problem (``labels``,
    ``counts``, ``tau``), so that ``points.npz`` can be classified on its own.
    """
    folder = os.path.join(out, "points")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npz")) if os.path.isdir(folder) else []
    parts = [atomic.read_npz(os.path.join(folder, f)) for f in files]
    parts = [p for p in parts if len(p.get("loss", []))]
    config = atomic.read_json(os.path.join(out, "config.json"))
    problem = problems.Problem.from_json(config["problem"])
    found = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    session = np.asarray(runs.get("session", np.zeros(runs["run"].size, np.int64)))
    point = np.asarray(runs.get("point", np.full(runs["run"].size, -1)))
    merged, runs["point"] = census.merge_sessions(found, point, session, problem.labels, problem.tau)
    if merged:
        merged.update(
            labels=np.asarray(problem.labels, np.int64),
            counts=np.asarray(problem.counts, np.int64),
            tau=np.float64(problem.tau),
        )
    return merged
