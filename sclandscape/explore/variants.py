r"""Batched scans of the docs/maths.md §1.1 variants: mini-batch SC and non-negative features (UFM+).

**Mini-batch SC.** For a batching ``B = {B_1, ...}`` (``loss.make_batches``,
optionally with batch binding) the loss is ``L_B(H) = sum_b L(H_{B_b})``, the
SC loss of docs/maths.md §1 restricted to each batch (within a batch an anchor whose
class has no other member contributes 0). Every run minimises ``L_B`` on
``OB(n, d)``: Riemannian L-BFGS (``optim.lbfgs_minimise``, float64) to
``|grad L_B| <= tol``, then Riemannian trust regions with the exact Hessian of
``L_B`` where the L-BFGS budget ran out. The question is which point the
mini-batch objective selects: each run records the **full-batch** loss, its
gap to ``L*`` (``optimum.global_optimum``), the full-batch certificate and the
distance of the class-mean Gram to ``M*``; a run *reaches the full-batch
optimum* when its full-batch loss is within ``gap_rtol`` of ``L*`` or its
certificate proves it global. With one batch holding every sample ``L_B = L``
and this is an ordinary scan.

**UFM+.** Rows on the unit sphere *and* ``H >= 0``. Parameterised as
``H = rownormalise(X * X)`` with ``X`` on ``OB(n, d)`` (smooth, every ``X``
feasible, and ``H`` ranges over the whole non-negative part of the sphere);
the same L-BFGS minimises ``L(H(X))``. The parameterisation adds stationary
points (a zero entry of ``X`` has zero derivative), so a run is judged by the
KKT conditions of the constrained problem at ``H``: with ``r_i = grad_i L -
<grad_i L, h_i> h_i`` (the sphere's Riemannian gradient; the multiplier of
``h_i >= 0`` is ``-r_i`` on the zero entries), ``kkt = |r_ij|`` over entries
``h_ij > support_tol`` and ``max(0, -r_ij)`` over the others. The UFM+
optimum is the orthogonal frame (``optimum.nonneg_optimum_loss``, attained iff
``d >= k``); a run *reaches it* when its loss is within ``gap_rtol`` of that
value.

Runs are a ``vmap`` of one pure solve with bounded ``lax.while_loop``s and a
``Status`` per run, one jit per problem shape; records are float64. Starting
points are the scan's (``scanner.initial_point(fold_in(key, i))``), so a run
``i`` of a variant starts where run ``i`` of an x64 scan with the same seed
does.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.explore import scanner
from sclandscape.numerics import loss, oblique, optim
from sclandscape.numerics.optim import Status
from sclandscape.theory import certify, metrics, optimum


@dataclasses.dataclass(frozen=True)
class VariantSettings:
    """Optimisation and judgement of variant runs (frozen, recorded with results).

    Attributes:
      tol: gradient tolerance (sum-form loss, absolute) of the optimised objective.
      max_steps: L-BFGS evaluations per run.
      polish_iters: trust-region iterations after the L-BFGS (mini-batch only; 0 = none).
      gap_rtol: a run reaches an optimum when its loss is within ``gap_rtol * max(1, |L|)`` of it.
      cert_rtol: or (full batch) when its certificate's gap bound is within ``cert_rtol * max(1, |L*|)``.
      support_tol: UFM+ entries above this are the support in the KKT residual.
    """

    tol: float = 1e-9
    max_steps: int = 5000
    polish_iters: int = 200
    gap_rtol: float = 1e-6
    cert_rtol: float = 1e-5
    support_tol: float = 1e-6

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("tol", "gap_rtol", "cert_rtol", "support_tol"),
            integers={"max_steps": 1, "polish_iters": 0},
        )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------
# Objectives (one configuration)


def nonneg_point(X):
    """``H = rownormalise(X * X)``: a point of the non-negative part of ``OB(n, d)``."""
    return oblique.normalize_rows(X * X)


class Solve(NamedTuple):
    x: jax.Array  # the optimised variable (H, or X for UFM+)
    grad_norm: jax.Array  # of the optimised objective
    steps: jax.Array
    polish_iters: jax.Array
    status: jax.Array


def _lbfgs(cost, X0, settings: VariantSettings) -> Solve:
    """Riemannian L-BFGS on ``cost(rownormalise(X))`` to ``|grad| <= tol`` (one run, ``optim``'s driver)."""
    run = optim.lbfgs_minimise(cost, X0, tol=settings.tol, max_steps=settings.max_steps)
    zero = jnp.zeros((), jnp.int32)
    return Solve(run.x, run.grad_norm, run.steps, zero, run.status)


def _solve_minibatch(H0, labels, tau, batches, settings: VariantSettings) -> Solve:
    cost = lambda H: loss.minibatch_sum_loss(H, labels, tau, batches)  # noqa: E731
    out = _lbfgs(cost, H0, settings)
    if settings.polish_iters == 0:
        return out
    tr = optim.TrustRegionSettings(gtol=settings.tol, max_iter=settings.polish_iters, max_inner=2000)
    pol = optim.trust_region(cost, out.x, tr)
    todo = out.status == Status.MAX_STEPS
    return Solve(
        jnp.where(todo, pol.x, out.x),
        jnp.where(todo, pol.grad_norm, out.grad_norm),
        out.steps,
        jnp.where(todo, pol.iterations, 0),
        jnp.where(todo, pol.status, out.status),
    )


def _solve_nonneg(X0, labels, tau, settings: VariantSettings) -> Solve:
    return _lbfgs(lambda X: loss.sum_loss(nonneg_point(X), labels, tau), X0, settings)


# --------------------------------------------------------------------------
# Records


def _record(H, labels, tau, batches, onehot, M_star, support_tol):
    value, egrad = jax.value_and_grad(loss.sum_loss)(H, labels, tau)
    r = oblique.riemannian_gradient(H, egrad)
    kkt = jnp.linalg.norm(jnp.where(H > support_tol, r, jnp.minimum(r, 0.0)))
    cert = certify.dense(H, labels, tau)
    M = metrics.class_mean_gram(H, onehot)
    k = M.shape[0]
    return {
        "loss": value,
        "grad_norm": jnp.linalg.norm(r),
        "minibatch_loss": loss.minibatch_sum_loss(H, labels, tau, batches),
        "cert_lambda": cert.lambda_min,
        "cert_gap_bound": cert.gap_bound,
        "gram_dist": metrics.gram_distance(M, M_star),
        "frame_dist": jnp.linalg.norm(M - jnp.eye(k, dtype=H.dtype)) / math.sqrt(k),
        "spread": metrics.within_class_spread(H, onehot),
        "nc1": metrics.nc1(H, onehot),
        "kkt_nonneg": kkt,
        "min_entry": jnp.min(H),
        "row_norm_error": jnp.max(jnp.abs(jnp.linalg.norm(H, axis=1) - 1.0)),
    }


@functools.partial(jax.jit, static_argnames=("settings", "nonneg"))
def _run_batch(X0, labels, tau, batches, onehot, M_star, settings, nonneg):
    def one(x0):
        if nonneg:
            out = _solve_nonneg(x0, labels, tau, settings)
            H = nonneg_point(out.x)
        else:
            out = _solve_minibatch(x0, labels, tau, batches, settings)
            H = oblique.normalize_rows(out.x)
        return H, out, _record(H, labels, tau, batches, onehot, M_star, settings.support_tol)

    return jax.vmap(one)(X0)


def _check_runs(n_inits) -> int:
    problems.check_integer("n_inits", n_inits)
    return int(n_inits)


def _starts(problem: problems.Problem, n_inits: int, seed: int):
    key = jax.random.key(seed)
    return jnp.stack(
        [
            scanner.initial_point(scanner.run_key(key, i), problem.n, problem.dim, jnp.float64)
            for i in range(n_inits)
        ]
    )


def _run(problem, batches, n_inits, seed, settings, nonneg) -> dict:
    if not isinstance(problem, problems.Problem):
        raise ValueError(f"problem must be a sclandscape.Problem, got {type(problem).__name__}")
    if not isinstance(settings, VariantSettings):
        raise ValueError(f"settings must be a VariantSettings, got {type(settings).__name__}")
    n_inits = _check_runs(n_inits)
    opt = optimum.global_optimum(problem.counts, problem.tau)
    labels = problem.labels
    onehot = np.eye(problem.k)[labels]
    with precision.float64():
        X0 = _starts(problem, n_inits, seed)
        H, out, rec = _run_batch(
            X0,
            jnp.asarray(labels),
            problem.tau,
            jnp.asarray(batches),
            jnp.asarray(onehot),
            jnp.asarray(opt.class_gram),
            settings,
            nonneg,
        )
    records = {k: np.asarray(v, np.float64) for k, v in rec.items()}
    records.update(
        H=np.asarray(H, np.float64),
        status=np.asarray(out.status, np.int64),
        steps=np.asarray(out.steps, np.int64),
        polish_iters=np.asarray(out.polish_iters, np.int64),
        objective_grad_norm=np.asarray(out.grad_norm, np.float64),
    )
    scale = max(1.0, abs(opt.loss))
    records["gap"] = records["loss"] - opt.loss
    records["reaches_global"] = (np.abs(records["gap"]) <= settings.gap_rtol * scale) | (
        records["cert_gap_bound"] <= settings.cert_rtol * scale
    )
    records["global_loss"] = opt.loss
    return records


def minibatch_scan(
    problem: problems.Problem,
    batches,
    n_inits: int,
    *,
    seed: int = 0,
    settings: VariantSettings = VariantSettings(),
) -> dict:
    """Minimise the mini-batch SC loss from ``n_inits`` random starts (one ``vmap``).

    Args:
      problem: counts, ``d``, ``tau`` (``nonneg`` must be False).
      batches: ``(n_batches, width)`` sample indices padded with ``-1`` (``loss.make_batches``).
      n_inits, seed: run ``i`` starts at ``scanner.initial_point(fold_in(key(seed), i))``.
      settings: ``VariantSettings``.

    Returns per-run arrays ``(n_inits,)``: ``loss`` (full batch), ``minibatch_loss``, ``gap`` to
    ``L*``, ``grad_norm`` (full batch), ``objective_grad_norm`` (mini-batch), ``cert_lambda``,
    ``cert_gap_bound``, ``gram_dist`` (to ``M*``), ``frame_dist``, ``spread`` and ``nc1``
    (``metrics``), ``status``, ``steps``,
    ``polish_iters``, ``reaches_global`` (bool), and ``H`` ``(n_inits, n, d)``; ``global_loss``.
    """
    if problem.nonneg:
        raise ValueError("minibatch_scan optimises on the sphere; use nonneg_scan for UFM+")
    batches = problems.check_batches(batches, problem.n)
    return _run(problem, batches, n_inits, seed, settings, nonneg=False)


def nonneg_scan(
    problem: problems.Problem, n_inits: int, *, seed: int = 0, settings: VariantSettings = VariantSettings()
) -> dict:
    """Minimise the full-batch SC loss over UFM+ (``H >= 0``, unit rows) from ``n_inits`` random starts.

    ``H = rownormalise(X * X)`` with run ``i``'s ``X0`` the scan's starting point (module docstring).
    Returns the fields of ``minibatch_scan`` (with one full batch) plus ``kkt_nonneg`` (KKT residual
    of the constrained problem), ``min_entry``, ``row_norm_error``, ``nonneg_loss`` (the orthogonal
    frame's value, NaN when ``d < k``), ``nonneg_gap`` and ``reaches_nonneg`` (bool).
    """
    n_inits = _check_runs(n_inits)
    full = np.arange(problem.n)[None, :]
    rec = _run(problem, full, n_inits, seed, settings, nonneg=True)
    if problem.dim >= problem.k:
        target = optimum.nonneg_optimum_loss(problem.counts, problem.tau)
    else:
        target = math.nan
    rec["nonneg_loss"] = target
    rec["nonneg_gap"] = rec["loss"] - target
    rec["reaches_nonneg"] = np.abs(rec["nonneg_gap"]) <= settings.gap_rtol * max(1.0, abs(target))
    return rec


def outcome_rates(rec: dict) -> dict:
    """Fractions of runs by outcome (JSON-ready): converged, reaching ``L*``, reaching the UFM+ frame,
    and the distinct full-batch losses reached (rounded to 1e-6; the 20 lowest listed)."""
    n = rec["loss"].size
    status = rec["status"]
    losses, counts = np.unique(np.round(rec["loss"], 6), return_counts=True)
    out = {
        "n_inits": int(n),
        "global_loss": float(rec["global_loss"]),
        "converged": float(np.mean(status == Status.CONVERGED)),
        "reaches_global": float(np.mean(rec["reaches_global"])),
        "median_gap": float(np.median(rec["gap"])),
        "max_gap": float(np.max(rec["gap"])),
        "median_gram_dist": float(np.median(rec["gram_dist"])),
        "n_distinct_losses": int(losses.size),
        "distinct_losses": [{"loss": float(v), "count": int(c)} for v, c in zip(losses, counts, strict=True)][
            :20
        ],
    }
    if "reaches_nonneg" in rec:
        off = ~rec["reaches_nonneg"]
        out.update(
            max_kkt_nonneg_off_frame=float(np.max(rec["kkt_nonneg"][off])) if off.any() else None,
            nonneg_loss=float(rec["nonneg_loss"]),
            reaches_nonneg=float(np.mean(rec["reaches_nonneg"])),
            median_kkt_nonneg=float(np.median(rec["kkt_nonneg"])),
            median_frame_dist=float(np.median(rec["frame_dist"])),
        )
    return out
