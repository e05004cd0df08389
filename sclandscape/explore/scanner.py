r"""Batched landscape scans: many Riemannian optimisations from random starts (docs/maths.md §1-§3).

One run is a pure function of ``(key, problem, settings)``:

1. ``H0``: i.i.d. Gaussian rows normalised onto ``OB(n, d)``, drawn from
   ``fold_in(key, run_index)`` (so a run's result never depends on chunking,
   slot or device count).
2. First order: Riemannian L-BFGS (``optim.lbfgs_steps`` around
   ``optim.lbfgs_armijo``, an optax transformation) on ``f(H) =
   L(rownormalise(H))``, the iterate re-normalised after every step. At a
   unit-norm ``H`` the Euclidean gradient of ``f`` *is* the Riemannian
   gradient and ``rownormalise(H + u)`` *is* the retraction. The step size
   comes from Armijo backtracking done one
   evaluation per step (a rejected trial shrinks the step for the next one),
   so every run costs the same per step under ``vmap`` and none waits for
   another's line search; no tuning is needed from ``tau = 0.02`` to ``10``
   (measured, 10 classes of 10 in ``d = 16``, 256 runs to ``|grad| <= 1e-3``:
   median 56 evaluations at ``tau = 0.1``, 538 at ``0.02``, 27-40 at 1-10;
   12x faster than optax's zoom line search, which synchronised every run
   on the batch's slowest search, ~22 evaluations per step). Or, to ask
   whether the optimisers networks are trained with reach ``L*``, optax's
   adam or sgd on the same ``f`` (``OptimiseSettings.optimizer``,
   ``optim.optax_steps``).
3. Polish, in float64: once ``|grad| <= polish_from`` (or, below ten times
   that, when float32 rounding stops progress: ``polish_patience``) the same
   L-BFGS continues in float64 for up to ``polish_steps`` evaluations (1e-4
   to 1e-9 takes <= 20 at ``tau = 0.1``), and what is left is finished by
   Riemannian trust regions with the exact Hessian (``optim.trust_region``),
   which converge quadratically to ``|grad| <= tol``. The trust region is
   measured in a block-Jacobi metric (``optim.block_preconditioner`` on
   ``loss.row_hessian_blocks``): at small ``tau`` the within-class geometry is
   stiff while the class-level motion is exponentially flat, a narrow curved
   valley in which a round trust region crawls. Measured at ``tau = 0.02``
   (10 classes of 10, ``d = 16``, 16 runs from ``|grad| <= 1e-3``): all reach
   ``1e-5`` in a median of 34 iterations (115 inner), against 1 of 16 within
   200 iterations with the row scaling. ``1e-9`` is not reached there: the
   landscape is flat to float64 precision near the collapsed optimum.

Each run ends with a ``Status`` (converged, max steps, non-finite, stalled),
carried as data. Thousands of runs are a ``vmap`` of this, iterated in fixed
blocks of ``chunk_steps`` steps: finished slots are harvested and refilled
with new runs between blocks, so stragglers never set the pace, and the slot
axis is sharded over all local devices. Records are computed in float64.

Settings come in three groups (``ScanSettings``): what is optimised
(``OptimiseSettings``), how runs are judged (``JudgeSettings``) and how the
work is executed (``ExecutionSettings``: slots, chunking, the
dense/streaming path). The last group never changes a run's result beyond
rounding, so a resumed scan may change it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sclandscape.core import compilation, precision, problems
from sclandscape.core import progress as progress_lib
from sclandscape.core.settings import ScanSettings
from sclandscape.explore import census
from sclandscape.numerics import loss, oblique, optim, streaming
from sclandscape.numerics.optim import Status
from sclandscape.theory import certify, metrics, optimum

STREAM_BLOCK = 128  # tiles of 128 x 128 per run: small enough for many runs under vmap
LBFGS_MEMORY = 10
MAX_SLOTS = 256  # slots chosen from the memory budget never exceed this (small problems)
GIB = 1 << 30
#: The default memory budget's ceiling: the slots' peak, on top of the ~0.5 GB a process of JAX holds.
MAX_DEFAULT_BUDGET = 2 * GIB


# --------------------------------------------------------------------------
# Settings


# --------------------------------------------------------------------------
# How many slots


def default_memory_budget() -> int:
    """``min(MAX_DEFAULT_BUDGET, a quarter of physical memory)``: the slots' budget when none is given.

    2 GiB: the slot estimate is set by the float64 polish, which a slot
    reaches only once its run converges; until then a slot holds about a
    quarter of it (measured at n = 5,000, d = 32).
    """
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (or not these names) here
        return MAX_DEFAULT_BUDGET
    return int(min(MAX_DEFAULT_BUDGET, physical // 4)) if physical > 0 else MAX_DEFAULT_BUDGET


def slot_bytes(n: int, d: int, *, stream: bool, x64: bool = False) -> int:
    """Bytes one slot holds at its peak (an estimate from XLA's buffer sizes, rounded up).

    A slot keeps its first-order state for the whole scan (the iterate, its
    gradient and the ``LBFGS_MEMORY`` history pairs: ~24 ``(n, d)`` arrays in
    the first-order dtype, counted twice for a step's input and output), plus
    the largest temporaries of one phase: the first-order step (dense: ~3
    ``n x n`` arrays in its dtype; streaming: ~24 ``(n, d)`` arrays and the
    ``STREAM_BLOCK`` tiles), the float64 polish (dense: ~48 bytes per ``n x n``
    entry for the trust region's Hessian-vector products; both paths: the
    ``(n, d, d)`` block preconditioner, its factors and the conjugate-gradient
    vectors, ~``n d (320 + 20 d)`` bytes) and the float64 records (dense: the
    certificate's ``eigvalsh``, ~40 bytes per entry). Measured with
    ``memory_analysis()`` of the compiled programs at ``n`` = 500 to 4000,
    ``d`` = 8 and 32, to within ~25% (over rather than under).
    """
    itemsize = 8 if x64 else 4
    nd = n * d
    state = 2 * 24 * itemsize * nd
    polish = nd * (320 + 20 * d)
    if stream:
        tiles = 8 * 8 * STREAM_BLOCK**2
        return int(state + max(24 * itemsize * nd, polish) + tiles)
    return int(state + max(3.25 * itemsize * n * n, 48 * n * n + polish, 40 * n * n))


class Plan(NamedTuple):
    """How a scan executes: ``slots``, the ``stream`` path, and the memory that decided them."""

    slots: int
    stream: bool
    slot_bytes: int  # ``slot_bytes`` on the path taken
    memory_budget: int
    slots_from: str  # "settings" (given) or "memory_budget" (chosen)


def plan(n: int, d: int, settings: ScanSettings, *, runs: int | None = None, devices: int = 1) -> Plan:
    """The slots and the dense/streaming path of a scan of ``runs`` runs (``None``: not known).

    Given ``slots`` are kept; otherwise as many as ``memory_budget`` holds at
    ``slot_bytes`` each (at least one per device, at most ``MAX_SLOTS``), on
    the dense path when that many dense slots fit and ``streaming.choose``
    keeps them dense, else on the streaming path. Either way never more than
    ``runs`` (more slots would only hold copies of nothing), and rounded up to
    a multiple of ``devices``; the path is then ``streaming.choose`` at that
    slot count, as every compiled program sees it (``streams``).

    A chosen plan whose one slot per device does not fit the budget even on
    the streaming path is refused up front (``ValueError`` naming the
    estimate): the scan would otherwise be killed for memory mid-run.
    """
    budget = settings.memory_budget or default_memory_budget()
    cap = MAX_SLOTS if runs is None else max(int(runs), 1)

    def rounded(count: int) -> int:
        return -(-max(min(count, cap), 1) // devices) * devices

    if settings.slots is not None:
        slots, source = rounded(settings.slots), "settings"
    else:
        source = "memory_budget"
        cap = min(cap, MAX_SLOTS)
        dense = budget // slot_bytes(n, d, stream=False, x64=settings.x64)
        if settings.streaming == "never" or (
            settings.streaming == "auto" and dense >= 1 and not streaming.choose("auto", n, rounded(dense))
        ):
            slots = rounded(dense)
        else:
            one = slot_bytes(n, d, stream=True, x64=settings.x64)
            if one * devices > budget:
                raise ValueError(
                    f"one run of n={n}, d={d} needs ~{one / GIB:.2g} GiB per device (streaming path), more "
                    f"than the memory budget of {budget / GIB:.2g} GiB for {devices} device(s): raise "
                    "--memory-budget (or give --slots) if the machine has the memory"
                )
            slots = rounded(budget // one)
    stream = streaming.choose(settings.streaming, n, runs=slots)
    return Plan(slots, stream, slot_bytes(n, d, stream=stream, x64=settings.x64), int(budget), source)


# --------------------------------------------------------------------------
# One run


def initial_point(key, n: int, d: int, dtype=jnp.float32):
    """Run ``key``'s starting point: uniform on ``OB(n, d)`` (``oblique.random_point``)."""
    return oblique.random_point(key, n, d, dtype)


def run_key(key, run_index):
    """The key of run ``run_index``: ``fold_in(key, run_index)`` (independent of chunking and devices)."""
    return jax.random.fold_in(key, run_index)


def streams(n: int, settings: ScanSettings) -> bool:
    """Whether runs of ``n`` samples take the streaming path (``ExecutionSettings.streaming``).

    With ``slots=None`` (not chosen yet) it assumes ``MAX_SLOTS`` runs, as
    callers that vmap ``solve_one`` over batches of their own (``saddles``,
    ``paths``) always have; a ``Scanner`` compiles its programs with the slots
    it chose (``plan``) written into the settings.
    """
    return streaming.choose(settings.streaming, n, runs=settings.slots or MAX_SLOTS)


def _loss_fn(labels, tau, stream: bool):
    return streaming.loss_fn(labels, tau, stream=stream, block=STREAM_BLOCK)


def _switch(settings: ScanSettings) -> float:
    """The gradient norm at which the first-order phase hands over (to the polish, or ends)."""
    return max(settings.polish_from if settings.polish else settings.tol, settings.tol)


def _transform(settings: ScanSettings):
    return optim.optax_transform(settings.optimizer, settings.learning_rate, settings.momentum)


def first_order_init(H, labels, tau, settings: ScanSettings | None = None):
    """A fresh first-order run from ``H``: an ``optim.LBFGSRun`` (default), or an ``optim.OptaxRun``
    for ``settings.optimizer`` adam / sgd (``labels`` and ``tau`` for symmetry with the steps)."""
    del labels, tau
    if settings is not None and settings.optimizer != "lbfgs":
        return optim.optax_init(H, _transform(settings))
    return optim.lbfgs_init(H, LBFGS_MEMORY)


def first_order_steps(state, labels, tau, settings: ScanSettings, num_steps: int):
    """Advance one run by ``num_steps`` evaluations of its optimiser (frozen once finished).

    L-BFGS with Armijo steps by default, adam / sgd (``optim.optax_steps``) when
    ``settings.optimizer`` says so. ``CONVERGED`` here means "ready to polish"
    (``|grad| <= polish_from``, or float32 rounding has stopped the progress,
    ``polish_patience``).
    """
    cost = _loss_fn(labels, tau, streams(labels.shape[0], settings))
    if settings.optimizer != "lbfgs":
        return optim.optax_steps(
            cost,
            state,
            num_steps,
            _transform(settings),
            tol=_switch(settings),
            max_steps=settings.max_steps,
            patience=settings.polish_patience if settings.polish else 0,
        )
    return optim.lbfgs_steps(
        cost,
        state,
        num_steps,
        tol=_switch(settings),
        max_steps=settings.max_steps,
        memory=LBFGS_MEMORY,
        patience=settings.polish_patience if settings.polish else 0,
    )


class PolishResult(NamedTuple):
    x: jax.Array
    status: jax.Array
    evals: jax.Array  # L-BFGS evaluations of the endgame
    iterations: jax.Array  # trust-region iterations after it


def _preconditioner(tau, stream: bool):
    blocks = streaming.row_blocks_fn(tau, stream=stream, block=STREAM_BLOCK)
    return lambda X, egrad: optim.block_preconditioner(X, egrad, blocks(X))


def polish(H, labels, tau, settings: ScanSettings) -> PolishResult:
    """Finish a run from ``H`` to ``|grad| <= tol`` (in ``H``'s dtype; the scan uses float64).

    First up to ``polish_steps`` evaluations of the same L-BFGS (cheap, and
    enough for moderate ``tau``: 1e-4 to 1e-9 in <= 20 evaluations at
    ``tau = 0.1``), then Riemannian trust regions with the exact Hessian for
    what is left (the narrow valleys of small ``tau``). A run the L-BFGS
    endgame converged leaves the trust region at once.
    """
    stream = streams(labels.shape[0], settings)
    cost = _loss_fn(labels, tau, stream)
    state = optim.lbfgs_minimise(
        cost, H, tol=settings.tol, max_steps=settings.polish_steps, memory=LBFGS_MEMORY
    )
    tr = optim.TrustRegionSettings(gtol=settings.tol, max_iter=settings.polish_iters, max_inner=2000)
    out = optim.trust_region(cost, state.x, tr, preconditioner=_preconditioner(tau, stream))
    bad = state.status == Status.NON_FINITE
    return PolishResult(
        jnp.where(bad, state.x, out.x), jnp.where(bad, state.status, out.status), state.steps, out.iterations
    )


#: Trust regions that take a run's float64 gradient to its rounding floor before the census
#: compares it with other runs (``refine``; ``gtol`` is replaced by the floor).
REFINE = optim.TrustRegionSettings(gtol=1e-300, max_iter=200, max_inner=2000, min_reduction=1e-14)


def refine(H, labels, tau, settings: ScanSettings):
    """``H`` minimised further in its dtype (float64 in a scan), down to what it resolves in the gradient.

    Trust regions with ``gtol`` twice the gradient's rounding bound
    (``loss.gradient_rounding_bound``; the closed form on the streaming path):
    below it a gradient is rounding, and steps accepted on rounding noise only
    wander. ``(H, iterations)``: the end point, or ``H`` itself where that
    has the smaller gradient (or the end is not finite). The census compares
    refined runs: copies of one critical point are then as close as float64
    resolves, not as close as the scan's tolerance left them.
    """
    n, d = H.shape
    stream = streams(n, settings)
    cost = _loss_fn(labels, tau, stream)
    if stream:
        floor = loss.gradient_rounding_bound_closed(n, d, tau, H.dtype)
    else:
        floor = loss.gradient_rounding_bound(H, labels, tau)
    tr = dataclasses.replace(REFINE, max_iter=settings.polish_iters)
    out = optim.trust_region(cost, H, tr, gtol=2 * floor, preconditioner=_preconditioner(tau, stream))
    before = jnp.linalg.norm(oblique.riemannian_gradient(H, jax.grad(cost)(H)))
    keep = (out.status == Status.NON_FINITE) | ~(out.grad_norm <= before)
    return jnp.where(keep, H, out.x), out.iterations


def solve_one(H0, labels, tau, settings: ScanSettings):
    """One whole run from ``H0`` without batching: ``(H, steps, status, polish_evals, polish_iters)``.

    The same steps as the batched driver (first order until ``polish_from``,
    then the polish, here in ``H0``'s dtype); used to check loop == vmap.
    """
    state = first_order_init(H0, labels, tau, settings)
    state = jax.lax.while_loop(
        lambda s: s.status < 0,
        lambda s: first_order_steps(s, labels, tau, settings, settings.chunk_steps),
        state,
    )
    zero = jnp.zeros((), jnp.int32)
    if not settings.polish:
        return state.x, state.steps, state.status, zero, zero
    out = polish(state.x, labels, tau, settings)
    ready = state.status == Status.CONVERGED
    return (
        jnp.where(ready, out.x, state.x),
        state.steps,
        jnp.where(ready, out.status, state.status),
        jnp.where(ready, out.evals, 0),
        jnp.where(ready, out.iterations, 0),
    )


# --------------------------------------------------------------------------
# Records (float64)


class RunRecord(NamedTuple):
    loss: jax.Array
    loss_rounding: jax.Array  # loss.rounding_bound: what float64 resolves in the loss
    grad_norm: jax.Array
    cert_lambda: jax.Array
    cert_gap_bound: jax.Array
    cert_rounding: jax.Array  # certify.slack_rounding_bound
    linear_bound: jax.Array  # <F, G - G*> (certify.linear_gap_bound); NaN on the streaming path
    linear_rounding: jax.Array
    spread: jax.Array  # within-class spread 1 - mean |mu_c| (metrics)
    nc1: jax.Array  # Papyan et al.'s NC1 tr(Sigma_W Sigma_B^+)/k (metrics)
    gram_dist: jax.Array


def record(H, labels, tau, onehot, M_star, stream: bool = False, certificate: bool = True) -> RunRecord:
    """Loss (and its rounding bound), Riemannian gradient norm, certificate, geometry of one run.

    ``certificate=False`` (runs that did not converge: the gradient test
    judges them) leaves the certificate fields NaN: on the streaming path the
    certificate is a Lanczos estimate of ``O(n^2 d)`` per step, most of the
    cost of a large scan's records.
    """
    H = oblique.normalize_rows(H)
    value, egrad = jax.value_and_grad(_loss_fn(labels, tau, stream))(H)
    gnorm = jnp.linalg.norm(oblique.riemannian_gradient(H, egrad))
    nan = jnp.full((), jnp.nan, H.dtype)
    if certificate:
        cert = certify.of_point(H, labels, tau, stream=stream, block=STREAM_BLOCK)
    else:
        cert = certify.Certificate(*(nan,) * len(certify.Certificate._fields))
    if stream:  # no n x n array: the closed-form bounds (|lse_i| <= 1/tau + log n)
        n, d = H.shape
        rounding, linear, linear_rounding = loss.rounding_bound_closed(n, d, tau, H.dtype), nan, nan
    elif not certificate:
        rounding, linear, linear_rounding = loss.rounding_bound(H, labels, tau), nan, nan
    else:
        rounding = loss.rounding_bound(H, labels, tau)
        linear, linear_rounding = certify.linear_gap_bound(H, labels, tau, onehot @ M_star @ onehot.T)
    dist = metrics.gram_distance(metrics.class_mean_gram(H, onehot), M_star)
    spread = metrics.within_class_spread(H, onehot)
    nc1 = metrics.nc1(H, onehot)
    return RunRecord(
        value,
        rounding,
        gnorm,
        cert.lambda_min,
        cert.gap_bound,
        cert.rounding,
        linear,
        linear_rounding,
        spread,
        nc1,
        dist,
    )


# --------------------------------------------------------------------------
# The batched driver


RECORD_FIELDS = (
    "run",
    "loss",
    "grad_norm",
    "steps",
    "polish_evals",
    "polish_iters",
    "status",
    "gap",
    "cert_lambda",
    "cert_gap_bound",
    "spread",
    "nc1",
    "gram_dist",
    "loss_rounding",
    "cert_rounding",
    "linear_bound",
    "linear_rounding",
    "kind",
    "decided_by",
    "escapes",
    "point",
    "point_distance",
    "point_tol",
    "gap_tol",
    "refine_iters",
    "session",
    "hess_lambda_min",
    "hess_index",
    "hess_n_zero",
    "hess_n_zero_predicted",
    "hess_tol",
    "strict_certified",
    "certified_radius",
    "lifted_index",
)


def _device_mesh_sharding():
    devices = np.array(jax.local_devices())
    mesh = jax.sharding.Mesh(devices, ("runs",))
    return NamedSharding(mesh, P("runs")), len(devices)


class _Programs:
    """The compiled pieces of a scan for one problem and settings (each compiled once).

    ``init_slots``/``refill``/``advance``: the first-order phase on the
    sharded slot axis; ``finish``: the float64 polish of a block of ``slots``
    runs; ``records``: their float64 records.
    """

    def __init__(
        self, problem: problems.Problem, key, settings: ScanSettings, initial, dtype, sharding, *, seed=None
    ):
        labels = jnp.asarray(problem.labels)
        tau = problem.tau
        # The starting points close over the key and ``initial``: kept on disk only when both are
        # named (``seed``: the key's data, for the default starts).
        exportable = seed is not None and settings.optimizer == "lbfgs"

        def init_slots(indices):
            H = jax.vmap(lambda i: initial(key, i).astype(dtype))(indices)
            state = jax.vmap(first_order_init, in_axes=(0, None, None, None))(H, labels, tau, settings)
            # optax initialises some scalars as weakly typed; make them strong so that
            # the state from init and from a step have one signature (one compilation).
            return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), state)

        def refill(state, indices, mask):
            fresh = init_slots(indices)
            return jax.tree.map(
                lambda new, old: jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                fresh,
                state,
            )

        def advance(state):
            return jax.vmap(first_order_steps, in_axes=(0, None, None, None, None))(
                state, labels, tau, settings, settings.chunk_steps
            )

        def finish(H):
            return jax.vmap(polish, in_axes=(0, None, None, None))(H, labels, tau, settings)

        descent = dataclasses.replace(settings, x64=True)

        def refined(H):
            return jax.vmap(refine, in_axes=(0, None, None, None))(H, labels, tau, settings)

        def descend(H):  # a whole float64 run from each escaped saddle
            return jax.vmap(solve_one, in_axes=(0, None, None, None))(H, labels, tau, descent)

        onehot = jnp.asarray(np.eye(problem.k)[problem.labels])
        stream = streams(problem.n, settings)

        def records(H, M_star, certificate=True):
            one = functools.partial(record, stream=stream, certificate=certificate)
            return jax.vmap(one, in_axes=(0, None, None, None, None))(H, labels, tau, onehot, M_star)

        # Every program is kept traced on disk (compilation.Program): tracing took most of a warm
        # scan (the polish alone 1.2 s of 3.5 s). The first-order state of optax's optimisers holds
        # optax's own named tuples: those programs are jitted as usual.
        static = (problem.to_json(), settings.to_json(), bool(stream), str(jnp.dtype(dtype)))

        def program(fn, name, *namedtuples, **jit_kwargs):
            if not exportable and name in ("init", "refill", "advance"):
                return jax.jit(fn, **jit_kwargs)
            keyed = static + ((seed,) if name in ("init", "refill") else ())
            return compilation.Program(fn, f"scan-{name}", keyed, namedtuples=namedtuples, **jit_kwargs)

        state = (optim.LBFGSRun, optim.LBFGSArmijoState)
        self.init_slots = program(init_slots, "init", *state, out_shardings=sharding)
        self.refill = program(refill, "refill", *state, out_shardings=sharding, donate_argnums=0)
        self.advance = program(advance, "advance", *state, out_shardings=sharding, donate_argnums=0)

        self.finish = program(finish, "polish", PolishResult)
        self.descend = program(descend, "descend")
        self.refine = program(refined, "refine")
        self.records = program(records, "records", RunRecord)
        self.gradient_records = program(
            functools.partial(records, certificate=False), "gradient-records", RunRecord
        )


class Scanner:
    """A scan of one problem: slot scheduling over the compiled ``_Programs``.

    ``results(run_indices)`` yields dicts of per-run arrays (``RECORD_FIELDS``,
    plus ``H`` when ``keep_embeddings``) as batches of runs finish. ``runs``:
    how many runs it will be given, if known, so that it holds no more slots
    than that (``plan``).
    """

    def __init__(
        self,
        problem: problems.Problem,
        key,
        settings: ScanSettings,
        *,
        keep_embeddings=False,
        initial: Callable | None = None,
        runs: int | None = None,
    ):
        if problem.nonneg:
            raise ValueError("scans of the non-negative (UFM+) problem are not supported yet")
        self.problem = problem
        self.settings = settings
        self.keep_embeddings = keep_embeddings
        #: ``on_phase(phase, detail)``, called as the scan moves between phases (``progress``).
        self.on_phase: Callable[[str, str | None], None] | None = None
        #: Runs of the current ``results`` call that have left the first-order phase (the progress count).
        self.moved = 0
        self._batches = 0
        self.key = key
        self.dtype = jnp.float64 if settings.x64 else jnp.float32
        self.sharding, self.n_devices = _device_mesh_sharding()
        #: The slots and path of this scan (``plan``; ``runs``: how many runs it will do, if known).
        self.plan = plan(problem.n, problem.dim, settings, runs=runs, devices=self.n_devices)
        self.slots = self.plan.slots
        # The compiled programs see the slots chosen (and so the path ``streams`` picks for them).
        compiled = dataclasses.replace(settings.execution, slots=self.slots)
        compiled = ScanSettings(settings.optimise, settings.judge, compiled)
        self.optimum = optimum.global_optimum(problem.counts, problem.tau)
        # Names this scanner's points in results files shared by processes and resumed sessions.
        # Grows with the start time (microseconds, then 8 random bits): the earliest session's copy of a
        # point is the one a merge keeps (``census.merge``), the copy an uninterrupted scan has.
        self.session = (time.time_ns() // 1000) << 8 | os.urandom(1)[0]
        self._initial = initial or (
            lambda k, i: initial_point(run_key(k, i), problem.n, problem.dim, self.dtype)
        )
        seed = None if initial is not None else np.asarray(jax.random.key_data(key)).tolist()
        with precision.float64() if settings.x64 else contextlib.nullcontext():
            self._programs = _Programs(
                problem, key, compiled, self._initial, self.dtype, self.sharding, seed=seed
            )
        #: The distinct critical points and the judging of finished runs (``census.PointBook``).
        self.book = census.PointBook(
            problem,
            self.optimum,
            settings,
            self.session,
            descend=self._descend,
            records=self._records,
            refine=self._refine,
        )

    @property
    def points(self) -> list[dict]:
        """The distinct critical points judged so far (``census.PointBook.points``)."""
        return self.book.points

    def _phase(self, name: str, detail: str | None = None) -> None:
        if self.on_phase is not None:
            self.on_phase(name, detail)

    def _indices(self, values) -> jax.Array:
        return jax.device_put(jnp.asarray(np.asarray(values, np.int32)), self.sharding)

    def results(self, run_indices: Iterable[int]) -> Iterator[dict]:
        if self.settings.x64:
            with precision.float64():
                yield from self._results(run_indices)
        else:
            yield from self._results(run_indices)

    def _results(self, run_indices: Iterable[int]) -> Iterator[dict]:
        programs = self._programs
        pending = iter(run_indices)
        S = self.slots
        slot_run = np.full(S, -1, np.int64)
        first = [next(pending, -1) for _ in range(S)]
        slot_run[:] = first
        self._phase("compiling")
        state = programs.init_slots(self._indices(np.maximum(slot_run, 0)))
        queue: list[tuple] = []
        exhausted = False
        advanced = moved = self.moved = 0  # moved: runs of this call that have left the first order
        while True:
            active = slot_run >= 0
            if not active.any():
                break
            state = programs.advance(state)
            status = np.asarray(state.status)
            finished = active & (status >= 0)
            advanced += 1
            if advanced == 1 or finished.any():
                moved += int(finished.sum())
                self.moved = moved
                self._phase("first order", f"{moved} runs past it")
            if finished.any():
                idx = np.flatnonzero(finished)
                H = np.asarray(state.x)[idx]
                queue.append((slot_run[idx].copy(), H, np.asarray(state.steps)[idx], status[idx]))
                new = np.full(S, -1, np.int64)
                for j in idx:
                    nxt = -1 if exhausted else next(pending, -1)
                    exhausted = exhausted or nxt < 0
                    new[j] = nxt
                slot_run[idx] = new[idx]
                mask = np.zeros(S, bool)
                mask[idx[new[idx] >= 0]] = True
                state = programs.refill(state, self._indices(np.maximum(new, 0)), jnp.asarray(mask))
            queued = sum(len(q[0]) for q in queue)
            if queued >= S or (queued and not (slot_run >= 0).any()):
                yield self._complete(queue)
                queue = []
                if (slot_run >= 0).any():
                    self._phase("first order", f"{moved} runs past it")

    def _blocks(self, fn, H, rows):
        """``fn`` on ``H[rows]`` in blocks of ``slots`` (the last padded: one compilation serves all)."""
        parts = []
        for start in range(0, rows.size, self.slots):
            target = rows[start : start + self.slots]
            out = fn(jnp.asarray(H[np.resize(target, self.slots)], jnp.float64))
            parts.append(jax.tree.map(lambda a, m=target.size: np.asarray(a)[:m], out))
        return parts

    def _polish(self, H, status):
        """Float64 polish of the runs ready for it (``H``, ``status`` updated); evaluations, iterations."""
        polish_iters = np.zeros(status.shape, np.int64)
        polish_evals = np.zeros(status.shape, np.int64)
        if not self.settings.polish:
            return polish_iters, polish_evals
        todo = np.flatnonzero(status == Status.CONVERGED)
        blocks = self._blocks(self._programs.finish, H, todo)
        for start, out in zip(range(0, todo.size, self.slots), blocks, strict=True):
            target = todo[start : start + self.slots]
            H[target] = out.x
            status[target] = out.status
            polish_iters[target] = out.iterations
            polish_evals[target] = out.evals
        return polish_iters, polish_evals

    def _descend(self, H):
        """A whole float64 run from each row of ``H`` (escaped saddles), in blocks of ``slots``."""
        parts = self._blocks(self._programs.descend, H, np.arange(H.shape[0]))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(5))

    def _refine(self, H):
        """``refine`` of each row of ``H`` (float64), in blocks of ``slots``: ``(H, iterations)``."""
        parts = self._blocks(self._programs.refine, H, np.arange(H.shape[0]))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _records(self, H, status=None) -> dict:
        """Float64 ``RunRecord`` fields of each row of ``H``: the certificate only where ``status`` (when
        given) is ``CONVERGED`` (the others are judged by their gradient; their certificate is NaN)."""
        M_star = jnp.asarray(self.optimum.class_gram, jnp.float64)
        rows = np.arange(H.shape[0])
        full = rows if status is None else rows[np.asarray(status) == Status.CONVERGED]
        out = {f: np.full(H.shape[0], np.nan) for f in RunRecord._fields}
        for program, subset in ((self._programs.records, full), (self._programs.gradient_records, None)):
            if subset is None:
                subset = np.setdiff1d(rows, full)
            if not subset.size:
                continue
            parts = self._blocks(lambda block, program=program: program(block, M_star), H, subset)
            for f in RunRecord._fields:
                out[f][subset] = np.concatenate([getattr(p, f) for p in parts])
        # Why cert_lambda is what it is: the path that computed it, or why there is none.
        computed = "lanczos" if self.plan.stream else "dense"
        out["cert_method"] = np.full(H.shape[0], "not computed: not converged", "<U27")
        out["cert_method"][full] = computed
        return out

    def _complete(self, queue) -> dict:
        runs = np.concatenate([q[0] for q in queue])
        H = np.concatenate([q[1] for q in queue]).astype(np.float64)
        steps = np.concatenate([q[2] for q in queue]).astype(np.int64)
        status = np.concatenate([q[3] for q in queue]).astype(np.int64)
        with precision.float64():
            # The polish and the records run in float64 whatever the scan's dtype: near
            # convergence a float32 loss cannot resolve the trust-region ratio.
            first = None
            if self.settings.optimizer != "lbfgs":  # the optimiser's own point, before any polish
                first = self._records(H, status)
            # The first batch also compiles the polish and the records (no separate phase: they
            # compile when first called).
            note = f"{runs.size} runs" + ("" if self._batches else "; the first batch compiles it")
            self._batches += 1
            self._phase("polish", note)
            polish_iters, polish_evals = self._polish(H, status)
            self._phase("classification", note)
            rec = self._records(H, status)
            out = {
                "run": runs,
                "steps": steps,
                "polish_evals": polish_evals,
                "polish_iters": polish_iters,
                "status": status,
                **rec,
            }
            new_points = self.book.judge(H, out)
        out["gap"] = out["loss"] - self.optimum.loss
        if first is not None:
            out["first_order_loss"] = first["loss"]
            out["first_order_grad_norm"] = first["grad_norm"]
            out["first_order_gap"] = first["loss"] - self.optimum.loss
            # The gap tolerance of verdict.classify, at the optimiser's own point.
            out["first_order_gap_tol"] = metrics.gap_tolerance(
                first["loss_rounding"], self.optimum.loss_error, self.problem.n, first["grad_norm"]
            )
        if self.keep_embeddings:
            out["H"] = H.astype(np.float64)
        order = np.argsort(runs)
        out = {k: v[order] for k, v in out.items()}
        out["points"] = new_points
        return out


def scan(
    problem: problems.Problem,
    n_inits: int,
    key,
    settings: ScanSettings = ScanSettings(),
    *,
    keep_embeddings: bool = False,
    progress=None,
) -> dict:
    """Optimise ``n_inits`` random initialisations of ``problem`` and return per-run records.

    Returns a dict of arrays ``(n_inits,)`` sorted by run index
    (``RECORD_FIELDS``, with each run's ``kind``, plus ``H`` ``(n_inits, n,
    d)`` when ``keep_embeddings``), and ``points``: the distinct critical
    points found (a dict of arrays, ``H`` and the ``verdict`` fields), which
    each run's ``point`` indexes. For results on disk, resumable, use
    ``sclandscape.studies.scan.run_scan``. ``progress``: as ``run_scan``'s
    (default: a display of its own, ``sclandscape.core.progress.resolve``; ``False`` for none).
    """
    problems.check_integer("n_inits", n_inits)
    with progress_lib.resolve(progress, "scan") as report:
        return _scan(problem, n_inits, key, settings, keep_embeddings, report)


def _scan(problem, n_inits, key, settings, keep_embeddings, report) -> dict:
    scanner = Scanner(problem, key, settings, keep_embeddings=keep_embeddings, runs=int(n_inits))
    done, total = 0, int(n_inits)
    if report:  # the count: runs that have left the first-order phase (it moves from the first chunk)
        report(0, total, "compiling")
        scanner.on_phase = lambda phase, detail=None: report(
            scanner.moved, total, phase, f"{done} recorded" if phase == "first order" else detail
        )
    parts = []
    for part in scanner.results(range(total)):
        parts.append(part)
        done += part["run"].size
        if report:
            report(max(done, scanner.moved), total, None, f"{done} recorded")
    points = [p.pop("points") for p in parts]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(merged["run"])
    out = {k: v[order] for k, v in merged.items()}
    found = {k: np.concatenate([p[k] for p in points]) for k in points[0]}
    out["points"], out["point"] = census.merge_sessions(
        found, out["point"], out["session"], problem.labels, problem.tau
    )
    return out
