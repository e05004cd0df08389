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

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sclandscape import certify, hessian, metrics, oblique, optim, optimum, precision, problems, streaming
from sclandscape import progress as progress_lib
from sclandscape.optim import Status

HESSIAN_MODES = ("auto", "all", "uncertified", "none")
STREAM_BLOCK = 128  # tiles of 128 x 128 per run: small enough for many runs under vmap
AUTO_HESSIAN_DIM = 256
LBFGS_MEMORY = 10


# --------------------------------------------------------------------------
# Settings


@dataclasses.dataclass(frozen=True)
class OptimiseSettings:
    """What each run does (part of a scan's identity).

    Attributes:
      tol: convergence tolerance on the Riemannian gradient norm (sum-form loss).
      max_steps: first-order steps allowed per run.
      polish: finish runs with the float64 polish (L-BFGS, then trust regions).
      polish_from: gradient norm at which the polish takes over.
      polish_patience: a run below ``10 * polish_from`` that has not halved its
        gradient norm for this many evaluations goes to the polish as well (a
        float32 gradient is rounding noise below ~1e-4 at small ``tau``).
      polish_steps: float64 L-BFGS evaluations that open the polish.
      polish_iters: trust-region iterations allowed in the polish after them.
      x64: run the first-order phase in float64 (the polish and the records
        always run in float64).
      optimizer: the first-order optimiser (``optim.OPTIMIZERS``): ``"lbfgs"``
        (Riemannian L-BFGS with one-evaluation Armijo steps, the default), or
        ``"adam"`` / ``"sgd"`` (optax, ``learning_rate``; ``momentum`` for sgd,
        heavy ball, 0 for none) on ``f(rownormalise(H))``, the rows
        re-normalised after every step (``optim.optax_steps``). Same stopping
        rule, status codes, polish and classification. Scans with adam or sgd
        also record, in float64, the loss, gradient norm and gap of the point
        the optimiser itself reached (``first_order_*``), before any polish;
        with ``polish=False`` the recorded point *is* that point.
      learning_rate, momentum: of adam / sgd (ignored by lbfgs, and not
        recorded in ``to_json`` for it, so that the default settings keep
        their identity).
    """

    tol: float = 1e-5
    max_steps: int = 5000
    polish: bool = True
    polish_from: float = 1e-4
    polish_patience: int = 50
    polish_steps: int = 100
    polish_iters: int = 200
    x64: bool = False
    optimizer: str = "lbfgs"
    learning_rate: float = 1e-2
    momentum: float = 0.9

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("tol", "polish_from", "learning_rate"),
            nonnegative=("momentum",),
            integers={"max_steps": 1, "polish_patience": 1, "polish_steps": 1, "polish_iters": 1},
            choices={"optimizer": optim.OPTIMIZERS},
        )
        if not self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")

    def to_json(self) -> dict:
        """The fields; ``learning_rate``/``momentum`` and ``optimizer`` only when it is not L-BFGS."""
        data = dataclasses.asdict(self)
        if self.optimizer == "lbfgs":
            for name in ("optimizer", "learning_rate", "momentum"):
                del data[name]
        return data


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """How converged runs are judged (part of a scan's identity).

    Attributes:
      cert_rtol: a run is certified global when its certificate's gap bound
        is at most ``cert_rtol * max(1, |L*|)``.
      gap_rtol: or when its loss is within ``gap_rtol * max(1, |L*|)`` of ``L*``.
      group_rtol: minima whose losses differ by less than
        ``group_rtol * max(1, |L*|)`` are grouped as one distinct minimum.
      hessian: which converged runs get their Riemannian Hessian spectrum
        (``hessian.classify``: saddles, index, degeneracy): ``"all"``,
        ``"uncertified"`` (the certificate alone proves the others global),
        ``"none"``, or ``"auto"`` = all when ``n(d-1) <= 256`` (dense and
        cheap), else uncertified.
    """

    cert_rtol: float = 1e-5
    gap_rtol: float = 1e-6
    group_rtol: float = 1e-5
    hessian: str = "auto"

    def __post_init__(self):
        problems.check_fields(
            self, positive=("cert_rtol", "gap_rtol", "group_rtol"), choices={"hessian": HESSIAN_MODES}
        )


@dataclasses.dataclass(frozen=True)
class ExecutionSettings:
    """How the work is executed (may change on resume: results do not depend on it beyond rounding).

    Attributes:
      chunk_steps: first-order steps per dispatch between refills.
      slots: concurrent runs (rounded up to a multiple of the device count).
      streaming: loss, gradient, Hessian-vector products and certificate
        without the ``n x n`` matrix (``sclandscape.streaming``): ``"always"``,
        ``"never"``, or ``"auto"`` = when ``slots * n^2 > 4096^2``
        (``streaming.use_streaming``); the certificate is then a Lanczos
        estimate of ``lambda_min(S)`` instead of a dense ``eigvalsh``.
    """

    chunk_steps: int = 25
    slots: int = 256
    streaming: str = "auto"

    def __post_init__(self):
        problems.check_fields(
            self, integers={"chunk_steps": 1, "slots": 1}, choices={"streaming": streaming.MODES}
        )


_GROUPS = {"optimise": OptimiseSettings, "judge": JudgeSettings, "execution": ExecutionSettings}


@dataclasses.dataclass(frozen=True, init=False)
class ScanSettings:
    """A scan's settings: ``optimise``, ``judge`` and ``execution`` groups (recorded in ``config.json``).

    Built from the groups or from their fields by name, e.g.
    ``ScanSettings(tol=1e-9, x64=True, slots=64)``; every field of a group is
    also readable as an attribute (``settings.tol``). Hashable (a static
    ``jit`` argument).
    """

    optimise: OptimiseSettings
    judge: JudgeSettings
    execution: ExecutionSettings

    def __init__(self, optimise=None, judge=None, execution=None, **fields):
        given = {"optimise": optimise, "judge": judge, "execution": execution}
        for group, cls in _GROUPS.items():
            names = {f.name for f in dataclasses.fields(cls)}
            mine = {k: fields.pop(k) for k in list(fields) if k in names}
            value = given[group]
            if value is None:
                value = cls()
            elif not isinstance(value, cls):
                raise ValueError(f"{group} must be a {cls.__name__}, got {type(value).__name__}")
            object.__setattr__(self, group, dataclasses.replace(value, **mine) if mine else value)
        if fields:
            raise ValueError(f"unknown scan setting(s): {', '.join(sorted(fields))}")

    def __getattr__(self, name):
        if name in _GROUPS or name.startswith("__"):
            raise AttributeError(name)
        for group in _GROUPS:
            value = object.__getattribute__(self, group)
            if name in value.__dataclass_fields__:
                return getattr(value, name)
        raise AttributeError(f"ScanSettings has no setting {name!r}")

    def to_json(self) -> dict:
        return {
            group: getattr(self, group).to_json()
            if hasattr(getattr(self, group), "to_json")
            else dataclasses.asdict(getattr(self, group))
            for group in _GROUPS
        }

    @classmethod
    def from_json(cls, data: dict) -> ScanSettings:
        """From ``to_json``'s form (or the flat form of older folders)."""
        if not isinstance(data, dict):
            raise ValueError(f"scan settings must be a JSON object, got {type(data).__name__}")
        if any(group in data for group in _GROUPS):
            return cls(**{g: _GROUPS[g](**data[g]) for g in _GROUPS if g in data})
        return cls(**data)


# --------------------------------------------------------------------------
# One run


def initial_point(key, n: int, d: int, dtype=jnp.float32):
    """Run ``key``'s starting point: uniform on ``OB(n, d)`` (``oblique.random_point``)."""
    return oblique.random_point(key, n, d, dtype)


def run_key(key, run_index):
    """The key of run ``run_index``: ``fold_in(key, run_index)`` (independent of chunking and devices)."""
    return jax.random.fold_in(key, run_index)


def streams(n: int, settings: ScanSettings) -> bool:
    """Whether runs of ``n`` samples take the streaming path (``ExecutionSettings.streaming``)."""
    return streaming.choose(settings.streaming, n, runs=settings.slots)


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
    grad_norm: jax.Array
    cert_lambda: jax.Array
    cert_gap_bound: jax.Array
    spread: jax.Array  # within-class spread 1 - mean |mu_c| (metrics)
    nc1: jax.Array  # Papyan et al.'s NC1 tr(Sigma_W Sigma_B^+)/k (metrics)
    gram_dist: jax.Array


def record(H, labels, tau, onehot, M_star, stream: bool = False) -> RunRecord:
    """Loss, Riemannian gradient norm, certificate, within-class spread, NC1 and ``|M(H) - M*|_F/|M*|_F``."""
    H = oblique.normalize_rows(H)
    value, egrad = jax.value_and_grad(_loss_fn(labels, tau, stream))(H)
    gnorm = jnp.linalg.norm(oblique.riemannian_gradient(H, egrad))
    cert = certify.of_point(H, labels, tau, stream=stream, block=STREAM_BLOCK)
    dist = metrics.gram_distance(metrics.class_mean_gram(H, onehot), M_star)
    spread = metrics.within_class_spread(H, onehot)
    nc1 = metrics.nc1(H, onehot)
    return RunRecord(value, gnorm, cert.lambda_min, cert.gap_bound, spread, nc1, dist)


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
    "kind",
    "hess_lambda_min",
    "hess_index",
    "hess_n_zero",
    "hess_n_zero_predicted",
    "hess_tol",
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

    def __init__(self, problem: problems.Problem, key, settings: ScanSettings, initial, dtype, sharding):
        labels = jnp.asarray(problem.labels)
        tau = problem.tau

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

        onehot = jnp.asarray(np.eye(problem.k)[problem.labels])
        stream = streams(problem.n, settings)

        def records(H, M_star):
            one = functools.partial(record, stream=stream)
            return jax.vmap(one, in_axes=(0, None, None, None, None))(H, labels, tau, onehot, M_star)

        self.init_slots = jax.jit(init_slots, out_shardings=sharding)
        self.refill = jax.jit(refill, out_shardings=sharding, donate_argnums=0)
        self.advance = jax.jit(advance, out_shardings=sharding, donate_argnums=0)
        self.finish = jax.jit(finish)
        self.records = jax.jit(records)


class Scanner:
    """A scan of one problem: slot scheduling over the compiled ``_Programs``.

    ``results(run_indices)`` yields dicts of per-run arrays (``RECORD_FIELDS``,
    plus ``H`` when ``keep_embeddings``) as batches of runs finish.
    """

    def __init__(
        self,
        problem: problems.Problem,
        key,
        settings: ScanSettings,
        *,
        keep_embeddings=False,
        initial: Callable | None = None,
    ):
        if problem.nonneg:
            raise ValueError("scans of the non-negative (UFM+) problem are not supported yet")
        self.problem = problem
        self.settings = settings
        self.keep_embeddings = keep_embeddings
        #: ``on_phase(phase, detail)``, called as the scan moves between phases (``progress``).
        self.on_phase: Callable[[str, str | None], None] | None = None
        self._batches = 0
        self.key = key
        self.dtype = jnp.float64 if settings.x64 else jnp.float32
        self.sharding, self.n_devices = _device_mesh_sharding()
        self.slots = -(-settings.slots // self.n_devices) * self.n_devices
        self.optimum = optimum.global_optimum(problem.counts, problem.tau)
        self._initial = initial or (
            lambda k, i: initial_point(run_key(k, i), problem.n, problem.dim, self.dtype)
        )
        if settings.x64:
            with precision.float64():
                self._programs = _Programs(problem, key, settings, self._initial, self.dtype, self.sharding)
        else:
            self._programs = _Programs(problem, key, settings, self._initial, self.dtype, self.sharding)

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
        advanced = moved = 0
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

    def _records(self, H) -> dict:
        M_star = jnp.asarray(self.optimum.class_gram, jnp.float64)
        parts = self._blocks(lambda block: self._programs.records(block, M_star), H, np.arange(H.shape[0]))
        return {f: np.concatenate([getattr(p, f) for p in parts]) for f in RunRecord._fields}

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
                first = self._records(H)
            # The first batch also compiles the polish and the records (no separate phase: they
            # compile when first called).
            note = f"{runs.size} runs" + ("" if self._batches else "; the first batch compiles it")
            self._batches += 1
            self._phase("polish", note)
            polish_iters, polish_evals = self._polish(H, status)
            self._phase("classification", note)
            rec = self._records(H)
        order = np.argsort(runs)
        out = {
            "run": runs,
            "steps": steps,
            "polish_evals": polish_evals,
            "polish_iters": polish_iters,
            "status": status,
            "gap": rec["loss"] - self.optimum.loss,
            **rec,
        }
        out.update(self._hessian_kinds(H, out))
        if first is not None:
            out["first_order_loss"] = first["loss"]
            out["first_order_grad_norm"] = first["grad_norm"]
            out["first_order_gap"] = first["loss"] - self.optimum.loss
        if self.keep_embeddings:
            out["H"] = H.astype(np.float64)
        return {k: v[order] for k, v in out.items()}

    def _spectrum_rows(self, kind) -> np.ndarray:
        """Which runs get a Hessian spectrum (``JudgeSettings.hessian``)."""
        mode = self.settings.hessian
        if mode == "auto":
            mode = "all" if self.problem.n * (self.problem.dim - 1) <= AUTO_HESSIAN_DIM else "uncertified"
        if mode == "none" or self.problem.dim == 1:  # OB(n, 1) is a finite set: no tangent space
            return np.zeros(0, np.int64)
        return np.flatnonzero(kind != "not_converged" if mode == "all" else kind == "spurious_min")

    def _hessian_kinds(self, H, rec) -> dict:
        """``kind`` of every run, and the Hessian fields where the spectrum was computed.

        The certificate decides first (``certificate_kinds``); the runs that
        ``settings.hessian`` selects among the converged ones are classified
        by their spectrum in float64 (``hessian.classify``), which separates
        saddles (with their index) and degenerate points from minima. Fields
        of runs without a spectrum: NaN and -1.
        """
        kind = certificate_kinds(rec, self.optimum.loss, self.settings)
        size = kind.size
        fields = {
            "hess_lambda_min": np.full(size, np.nan),
            "hess_index": np.full(size, -1, np.int64),
            "hess_n_zero": np.full(size, -1, np.int64),
            "hess_n_zero_predicted": np.full(size, -1, np.int64),
            "hess_tol": np.full(size, np.nan),
        }
        todo = self._spectrum_rows(kind)
        labels = self.problem.labels
        for start in range(0, todo.size, self.slots):
            target = todo[start : start + self.slots]
            c = hessian.classify(
                H[np.resize(target, self.slots)],
                labels,
                self.problem.tau,
                global_loss=self.optimum.loss,
                settings=self.hessian_settings,
            )
            m = target.size
            kind[target] = np.asarray(c.kind)[:m]
            fields["hess_lambda_min"][target] = np.asarray(c.lambda_min)[:m]
            fields["hess_index"][target] = np.asarray(c.index)[:m]
            fields["hess_n_zero"][target] = np.asarray(c.n_zero)[:m]
            fields["hess_n_zero_predicted"][target] = np.asarray(c.n_zero_predicted)[:m]
            fields["hess_tol"][target] = np.asarray(c.tol)[:m]
        return {"kind": kind, **fields}

    @property
    def hessian_settings(self) -> hessian.ClassifySettings:
        s = self.settings
        return hessian.ClassifySettings(gtol=10 * s.tol, cert_rtol=s.cert_rtol, gap_rtol=s.gap_rtol)


def certificate_kinds(rec: dict, global_loss: float, settings: ScanSettings) -> np.ndarray:
    """Kinds from the gradient and the certificate alone (``metrics.decide_kinds`` without a spectrum).

    Converged: status ``CONVERGED`` and ``|grad| <= 10 tol`` (re-checked in
    float64). Certified: the certificate's gap bound within ``cert_rtol`` or
    the loss within ``gap_rtol`` of ``L*`` (relative to ``max(1, |L*|)``).
    """
    scale = max(1.0, abs(global_loss))
    converged = (rec["status"] == Status.CONVERGED) & (rec["grad_norm"] <= 10 * settings.tol)
    certified = (rec["cert_gap_bound"] <= settings.cert_rtol * scale) | (
        np.abs(rec["gap"]) <= settings.gap_rtol * scale
    )
    return metrics.decide_kinds(converged, certified)


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
    d)`` when ``keep_embeddings``). For results on disk, resumable, use
    ``sclandscape.results.run_scan``. ``progress``: as ``run_scan``'s
    (``sclandscape.progress``; e.g. ``sclandscape.Progress("scan")``).
    """
    problems.check_integer("n_inits", n_inits)
    report = progress_lib.adapt(progress)
    scanner = Scanner(problem, key, settings, keep_embeddings=keep_embeddings)
    done, total = 0, int(n_inits)
    if report:
        report(done, total)
        scanner.on_phase = lambda phase, detail=None: report(done, total, phase, detail)
    parts = []
    for part in scanner.results(range(total)):
        parts.append(part)
        done += part["run"].size
        if report:
            report(done, total)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(merged["run"])
    return {k: v[order] for k, v in merged.items()}
