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

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import time
import zipfile

import jax
import numpy as np
from jax.experimental import multihost_utils

from sclandscape import hessian, metrics, optim, optimum, precision, problems, scanner
from sclandscape import progress as progress_lib


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


def _read_config(out: str) -> dict:
    """``out/config.json`` less ``global_loss``; raises ``OSError``/``ValueError``."""
    with open(os.path.join(out, "config.json")) as f:
        return {k: v for k, v in json.load(f).items() if k != "global_loss"}


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
    ``progress(done, total, phase, detail)`` (or a callable of the first two or
    three of those; ``sclandscape.progress``) is called as this process's runs
    finish and at each phase change (``compiling``, ``first order``,
    ``polish``, ``classification``, ``writing``).

    ``process = (p, P)`` (default ``(jax.process_index(), jax.process_count())``)
    shares the scan among ``P`` processes: this one runs the indices ``i % P == p``
    and, once the chunks hold every run, all return the summary and process 0
    writes ``runs.npz`` and ``summary.json``. Only process 0 judges ``out`` (the
    others would see the folder it creates): under ``jax.distributed`` its verdict
    reaches all processes through one collective; otherwise the others wait for
    its ``config.json`` and require it to match. A wait with no progress for
    ``wait_timeout`` seconds raises ``ResultsError``.
    """
    if int(n_inits) != n_inits or n_inits < 1:
        raise ValueError(f"n_inits must be an integer >= 1, got {n_inits!r}")
    progress = progress_lib.adapt(progress)
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
        write_json(config_path, {**config, "global_loss": runner.optimum.loss})
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
        runner.on_phase = lambda phase, detail=None: progress(finished, len(share), phase, detail)
    for part in runner.results(todo):
        if progress:
            progress(finished, len(share), "writing", f"{part['run'].size} runs")
        write_npz(os.path.join(out, "chunks", f"{prefix}{seq:05d}.npz"), part)
        seq += 1
        finished += part["run"].size
        if progress:
            progress(finished, len(share))
    if count > 1:
        seen: dict = {}
        _wait(f"the other processes' runs in {out}", lambda: _runs_present(out, n_inits, seen), wait_timeout)
    if progress:
        progress(finished, len(share), "writing", "runs.npz and summary.json")
    runs = load_runs(out)
    if not np.array_equal(runs["run"], np.arange(n_inits)):
        raise ResultsError(f"{out}: chunks do not hold runs 0..{n_inits - 1} exactly once")
    runs["kind"] = classify_records(runs, runner.optimum.loss, settings)
    summary = summarize(runs, runner.optimum.loss, settings)
    summary["global_rank"] = runner.optimum.rank
    summary["problem"] = problem.to_json()
    if p == 0:
        write_npz(os.path.join(out, "runs.npz"), runs)
        write_json(os.path.join(out, "summary.json"), summary)
    return summary


# --------------------------------------------------------------------------
# Summaries


def classify_records(rec: dict, global_loss: float, settings: scanner.ScanSettings) -> np.ndarray:
    """Each run's kind: the scan's own (Hessian and certificate) when recorded, else ``certificate_kinds``."""
    if "kind" in rec:
        return np.asarray(rec["kind"]).astype("<U13")
    return scanner.certificate_kinds(rec, global_loss, settings)


def _classification_note(rec: dict, settings: scanner.ScanSettings) -> str:
    checked = int(np.sum(np.asarray(rec.get("hess_index", np.array([-1]))) >= 0))
    if settings.hessian == "none" or "hess_index" not in rec:
        return "certificate only (saddles and degenerate points not separated from spurious minima)"
    return (
        f"certificate, and the Riemannian Hessian spectrum for {checked} runs "
        f"(hessian={settings.hessian!r}; certified runs without a spectrum are global minima)"
    )


def summarize(rec: dict, global_loss: float, settings: scanner.ScanSettings) -> dict:
    """The summary: counts per kind and the distinct minima grouped by loss."""
    kind = classify_records(rec, global_loss, settings)
    scale = max(1.0, abs(global_loss))
    minima = np.isin(kind, ("global_min", "spurious_min", "degenerate"))
    losses = rec["loss"][minima]
    cert = kind[minima] == "global_min"
    order = np.argsort(losses)
    groups = []
    tol = settings.group_rtol * scale
    for i in order:
        if groups and losses[i] - groups[-1]["_last"] <= tol:
            g = groups[-1]
        else:
            g = {"_members": [], "_cert": [], "_last": losses[i]}
            groups.append(g)
        g["_members"].append(losses[i])
        g["_cert"].append(cert[i])
        g["_last"] = losses[i]
    distinct = [
        {
            "loss": float(np.min(g["_members"])),
            "gap": float(np.min(g["_members"]) - global_loss),
            "count": len(g["_members"]),
            "certified_global": bool(np.all(g["_cert"])),
            "n_certified": int(np.sum(g["_cert"])),
        }
        for g in groups
    ]
    status_names = {int(s): s.name.lower() for s in optim.Status}
    extra = {}
    if "first_order_loss" in rec:  # adam / sgd scans: where the optimiser itself got, before the polish
        fo_gap = np.asarray(rec["first_order_loss"]) - global_loss
        extra["first_order"] = {
            "optimizer": settings.optimizer,
            "n_within_gap_rtol": int(np.sum(np.abs(fo_gap) <= settings.gap_rtol * scale)),
            "median_grad_norm": float(np.median(rec["first_order_grad_norm"])),
            "median_gap": float(np.median(fo_gap)),
            "polished": bool(settings.polish),
        }
    return {
        "n_inits": int(rec["run"].size),
        "global_loss": float(global_loss),
        "counts": {k: int(np.sum(kind == k)) for k in metrics.KINDS},
        "distinct_minima": distinct,
        "grouping_tolerance": tol,
        "best_loss": float(np.min(rec["loss"])) if rec["loss"].size else None,
        "status_counts": {
            status_names.get(int(s), str(s)): int(np.sum(rec["status"] == s))
            for s in np.unique(rec["status"])
        },
        "classification": _classification_note(rec, settings),
        "tolerances": {
            "tol": settings.tol,
            "cert_rtol": settings.cert_rtol,
            "gap_rtol": settings.gap_rtol,
            "group_rtol": settings.group_rtol,
            "scale": scale,
        },
        **extra,
    }


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
    opt_path = os.path.join(out, "optimum.json")
    if os.path.exists(opt_path):
        class_gram = np.asarray(read_json(opt_path)["class_gram"], np.float64)
    else:
        class_gram = optimum.global_optimum(problem.counts, problem.tau).class_gram
    return {
        "config": config,
        "summary": summary,
        "runs": runs,
        "problem": problem,
        "settings": settings,
        "class_gram": class_gram,
    }


def embeddings(scan_data: dict, rows: list[int]) -> tuple[dict, list[str]]:
    """``{row: H}`` for the given rows: saved, or recomputed from the seed; plus notes."""
    runs = scan_data["runs"]
    if "H" in runs:
        return {r: np.asarray(runs["H"][r]) for r in rows}, []
    if not rows:
        return {}, []
    problem, settings = scan_data["problem"], scan_data["settings"]
    # Same seed and settings, fewer slots: the same runs (to rounding), checked below.
    settings = dataclasses.replace(settings, slots=max(1, len(rows)))
    indices = [int(runs["run"][r]) for r in rows]
    with precision.float64():
        key = jax.random.key(int(scan_data["config"]["seed"]))
        runner = scanner.Scanner(problem, key, settings, keep_embeddings=True)
        parts = list(runner.results(indices))
    got = {int(i): (h, loss) for p in parts for i, h, loss in zip(p["run"], p["H"], p["loss"], strict=True)}
    tol = max(float(scan_data["summary"].get("grouping_tolerance", 0.0)), 1e-9)
    found, notes = {}, []
    for r, i in zip(rows, indices, strict=True):
        H, loss = got[i]
        if abs(loss - runs["loss"][r]) <= tol:
            found[r] = H
        else:
            notes.append(f"run {i} recomputed to L = {loss:.6f}, not the recorded {runs['loss'][r]:.6f}")
    return found, notes


def critical_representatives(runs: dict, tol: float) -> list[int]:
    """Rows of one run per distinct converged critical point: grouped by kind, then loss within ``tol``."""
    kind = np.asarray(runs["kind"]).astype(str)
    loss = np.asarray(runs["loss"])
    rows = []
    for k in metrics.KINDS:
        if k == "not_converged":
            continue
        sel = np.flatnonzero(kind == k)
        sel = sel[np.argsort(loss[sel], kind="stable")]
        last = None
        for r in sel:
            if last is None or loss[r] - last > tol:
                rows.append(int(r))
            last = loss[r]
    return rows


def hessian_spectra(out: str, run_indices=None, *, recompute: bool = True, progress=None) -> str:
    """Full Riemannian Hessian spectra of chosen runs of a finished scan, into ``out/hessian/spectra.npz``.

    ``run_indices`` default: one run per distinct converged critical point
    (per kind, losses grouped by the scan's grouping tolerance). Embeddings
    come from the scan (``--save-embeddings``) or are recomputed from the seed
    (checked against the recorded loss). Each point is classified again
    (``hessian.classify``, float64, dense). The file holds ``runs``,
    ``eigenvalues`` ``(r, n(d-1))`` ascending, ``n_zero_predicted``, ``kind``,
    ``index``, ``lambda_min``, ``tol`` and ``loss``; it is written atomically.
    Returns its path. Raises ``ValueError`` (one line) on bad input.
    ``progress``: as in ``run_scan`` (phases ``embeddings``, ``spectra``, ``writing``).
    """
    progress = progress_lib.adapt(progress) or (lambda *a: None)
    data = load_scan(out)
    runs, problem, settings = data["runs"], data["problem"], data["settings"]
    N = problem.n * (problem.dim - 1)
    if N > hessian.DENSE_MAX_DIM:
        raise ValueError(
            f"full spectra need n(d-1) <= {hessian.DENSE_MAX_DIM}, this scan has {N} "
            "(use sclandscape.hessian.lanczos_extremes / spectral_density)"
        )
    index_of = {int(i): r for r, i in enumerate(np.asarray(runs["run"]))}
    if run_indices is None:
        rows = critical_representatives(runs, float(data["summary"].get("grouping_tolerance", 0.0)))
        if not rows:
            raise ValueError(f"{out}: no converged run to take a spectrum of")
    else:
        run_indices = [int(i) for i in run_indices]
        bad = [i for i in run_indices if i not in index_of]
        if not run_indices or bad:
            raise ValueError(f"runs must be indices of this scan (0..{len(index_of) - 1}), got {bad or '[]'}")
        rows = [index_of[i] for i in dict.fromkeys(run_indices)]
    if "H" not in runs and not recompute:
        raise ValueError(f"{out}: the scan saved no embeddings (--save-embeddings) and recompute is off")
    progress(0, len(rows), "embeddings", "saved" if "H" in runs else "recomputed from the seed")
    found, notes = embeddings(data, rows)
    if notes:
        raise ValueError(f"{out}: {notes[0]}")
    H = np.stack([found[r] for r in rows])
    progress(0, len(rows), "spectra", f"dense, n(d-1) = {N}")
    with precision.float64():
        c = hessian.classify(
            H,
            problem.labels,
            problem.tau,
            global_loss=data["summary"]["global_loss"],
            settings=hessian.ClassifySettings(
                gtol=10 * settings.tol,
                cert_rtol=settings.cert_rtol,
                gap_rtol=settings.gap_rtol,
                method="dense",
            ),
        )
        eigs = np.asarray(hessian.riemannian_hessian_eigs(H, problem.labels, problem.tau))
    arrays = {
        "runs": np.asarray(runs["run"])[rows].astype(np.int64),
        "eigenvalues": eigs.reshape(len(rows), N),
        "n_zero_predicted": np.atleast_1d(np.asarray(c.n_zero_predicted, np.int64)),
        "kind": np.atleast_1d(np.asarray(c.kind)).astype("<U13"),
        "index": np.atleast_1d(np.asarray(c.index, np.int64)),
        "lambda_min": np.atleast_1d(np.asarray(c.lambda_min, np.float64)),
        "tol": np.atleast_1d(np.asarray(c.tol, np.float64)),
        "loss": np.atleast_1d(np.asarray(c.loss, np.float64)),
    }
    progress(len(rows), len(rows), "writing")
    path = os.path.join(out, "hessian", "spectra.npz")
    write_npz(path, arrays)
    return path
