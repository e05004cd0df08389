r"""Batched landscape scans: many Riemannian optimisations from random starts (SPEC §1-§3).

One run is a pure function of ``(key, problem, settings)``:

1. ``H0``: i.i.d. Gaussian rows normalised onto ``OB(n, d)``, drawn from
   ``fold_in(key, run_index)`` (so a run's result never depends on chunking,
   slot or device count).
2. First order: Riemannian L-BFGS (``manifold.lbfgs_armijo``, an optax
   transformation) on ``f(H) = L(rownormalise(H))``, the iterate
   re-normalised after every step. At a unit-norm ``H`` the Euclidean
   gradient of ``f`` *is* the Riemannian gradient (the Jacobian of row
   normalisation is the tangent projection) and ``rownormalise(H + u)`` *is*
   the retraction. The step size comes from Armijo backtracking done one
   evaluation per step (a rejected trial shrinks the step for the next one),
   so every run costs the same per step under ``vmap`` and none waits for
   another's line search; no tuning is needed from ``tau = 0.02`` to ``10``
   (measured, 10 classes of 10 in ``d = 16``, 256 runs to ``|grad| <= 1e-3``:
   median 56 evaluations at ``tau = 0.1``, 538 at ``0.02``, 27-40 at 1-10;
   12x faster than optax's zoom line search, which synchronised every run
   on the batch's slowest search, ~22 evaluations per step).
3. Polish, in float64: once ``|grad| <= polish_from`` (or, below ten times
   that, when float32 rounding stops progress: ``polish_patience``) the same
   L-BFGS continues in float64 for up to ``polish_steps`` evaluations (1e-4
   to 1e-9 takes <= 20 at ``tau = 0.1``), and what is left is finished by
   Riemannian trust regions with the exact Hessian (``manifold.trust_region``),
   which converge quadratically to ``|grad| <= tol``. The trust region is
   measured in a block-Jacobi metric (``manifold.block_preconditioner`` on
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

from sclandscape import hessian, manifold, optimum, problems, streaming
from sclandscape import loss as _loss
from sclandscape.manifold import Status

HESSIAN_MODES = ("auto", "all", "uncertified", "none")
STREAMING_MODES = ("auto", "always", "never")
STREAM_BLOCK = 128  # tiles of 128 x 128 per run: small enough for many runs under vmap
AUTO_HESSIAN_DIM = 256


@dataclasses.dataclass(frozen=True)
class ScanSettings:
    """How runs are optimised and judged (recorded in ``config.json``).

    Attributes:
      tol: convergence tolerance on the Riemannian gradient norm (sum-form loss).
      max_steps: first-order steps allowed per run.
      polish: finish runs with Riemannian trust regions (second order).
      polish_from: gradient norm at which the polish takes over.
      polish_patience: a run below ``10 * polish_from`` that has not halved its
        gradient norm for this many evaluations goes to the polish as well (a
        float32 gradient is rounding noise below ~1e-4 at small ``tau``).
      polish_steps: float64 L-BFGS evaluations that open the polish.
      polish_iters: trust-region iterations allowed in the polish after them.
      chunk_steps: first-order steps per dispatch between refills.
      slots: concurrent runs (rounded up to a multiple of the device count).
      x64: run the first-order phase in float64 (the polish and the records
        always run in float64).
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
      streaming: loss, gradient, Hessian-vector products and certificate
        without the ``n x n`` matrix (``sclandscape.streaming``): ``"always"``,
        ``"never"``, or ``"auto"`` = when ``slots * n^2 > 4096^2``
        (``streaming.use_streaming``); the certificate is then a Lanczos
        estimate of ``lambda_min(S)`` (100 steps) instead of a dense eigvalsh.
    """

    tol: float = 1e-5
    max_steps: int = 5000
    polish: bool = True
    polish_from: float = 1e-4
    polish_patience: int = 50
    polish_steps: int = 100
    polish_iters: int = 200
    chunk_steps: int = 25
    slots: int = 256
    x64: bool = False
    cert_rtol: float = 1e-5
    gap_rtol: float = 1e-6
    group_rtol: float = 1e-5
    hessian: str = "auto"
    streaming: str = "auto"

    def __post_init__(self):
        for name in ("tol", "polish_from", "cert_rtol", "gap_rtol", "group_rtol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.streaming not in STREAMING_MODES:
            raise ValueError(f"streaming must be one of {STREAMING_MODES}, got {self.streaming!r}")
        if self.hessian not in HESSIAN_MODES:
            raise ValueError(f"hessian must be one of {HESSIAN_MODES}, got {self.hessian!r}")
        for name in ("max_steps", "polish_patience", "polish_steps", "polish_iters", "chunk_steps", "slots"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------
# One run


def initial_point(key, n: int, d: int, dtype=jnp.float32):
    """Uniform on ``OB(n, d)``: normalised standard Gaussian rows."""
    return manifold.normalize_rows(jax.random.normal(key, (n, d), dtype))


def run_key(key, run_index):
    return jax.random.fold_in(key, run_index)


def _optimizer():
    return manifold.lbfgs_armijo(memory_size=10)


class FirstOrderState(NamedTuple):
    H: jax.Array  # the point evaluated next (a line-search trial); the last accepted one when finished
    opt_state: manifold.LBFGSArmijoState
    value: jax.Array  # at the last accepted point
    grad_norm: jax.Array  # Riemannian gradient norm there
    steps: jax.Array  # loss-and-gradient evaluations
    status: jax.Array  # -1 while running, else a Status (CONVERGED means "ready to polish")
    mark: jax.Array  # gradient norm at the last halving
    since: jax.Array  # evaluations since then


def streams(n: int, settings: ScanSettings) -> bool:
    """Whether runs of ``n`` samples take the streaming path (``ScanSettings.streaming``)."""
    if settings.streaming == "auto":
        return streaming.use_streaming(n, runs=settings.slots)
    return settings.streaming == "always"


def _loss_fn(labels, tau, stream: bool = False):
    """``H -> L(H)`` (sum form, ``H`` on the manifold): dense or streaming."""
    if stream:
        return streaming.streaming_loss(labels, tau, block=STREAM_BLOCK)
    return lambda X: jnp.sum(_loss.anchor_losses(X @ X.T, labels, tau))


def _cost_fn(labels, tau, stream: bool = False):
    loss = _loss_fn(labels, tau, stream)
    return lambda H: loss(manifold.normalize_rows(H))


def first_order_init(H, labels, tau) -> FirstOrderState:
    inf = jnp.asarray(jnp.inf, H.dtype)
    zero = jnp.zeros((), jnp.int32)
    return FirstOrderState(H, _optimizer().init(H), inf, inf, zero, -jnp.ones((), jnp.int32), inf, zero)


def first_order_steps(state: FirstOrderState, labels, tau, settings: ScanSettings, num_steps: int):
    """Advance one run by ``num_steps`` evaluations of L-BFGS with Armijo steps (frozen once finished).

    Every step costs one loss-and-gradient evaluation, in every run alike.
    """
    cost = _cost_fn(labels, tau, streams(labels.shape[0], settings))
    opt = _optimizer()
    switch = settings.polish_from if settings.polish else settings.tol
    switch = max(switch, settings.tol)

    def step(_, s: FirstOrderState):
        value, grad = jax.value_and_grad(cost)(s.H)
        updates, opt_state = opt.update(grad, s.opt_state, s.H, value=value)
        anchor = opt_state.x
        gnorm = jnp.linalg.norm(opt_state.grad)
        finite = jnp.isfinite(opt_state.value) & jnp.isfinite(gnorm)
        evals = s.steps + 1
        halved = gnorm <= s.mark / 2
        mark = jnp.where(halved, gnorm, s.mark)
        since = jnp.where(halved, 0, s.since + 1)
        stuck = settings.polish & (gnorm <= 10 * switch) & (since >= settings.polish_patience)
        status = manifold.run_status(
            finite, (gnorm <= switch) | stuck, opt_state.stalled, evals >= settings.max_steps
        )
        H = jnp.where(status == -1, manifold.normalize_rows(s.H + updates), anchor)
        # A finished run is frozen; its optimiser state may run on (never read again), so
        # the large L-BFGS memory is not copied by a select every step.
        running = s.status == -1
        keep = lambda new, old: jnp.where(running, new, old)  # noqa: E731
        return FirstOrderState(
            keep(H, s.H),
            opt_state,
            keep(opt_state.value, s.value),
            keep(gnorm, s.grad_norm),
            keep(evals, s.steps),
            keep(status, s.status),
            keep(mark, s.mark),
            keep(since, s.since),
        )

    return jax.lax.fori_loop(0, num_steps, step, state)


class PolishResult(NamedTuple):
    x: jax.Array
    status: jax.Array
    evals: jax.Array  # L-BFGS evaluations of the endgame
    iterations: jax.Array  # trust-region iterations after it


def polish(H, labels, tau, settings: ScanSettings) -> PolishResult:
    """Finish a run from ``H`` to ``|grad| <= tol`` (in ``H``'s dtype; the scan uses float64).

    First up to ``polish_steps`` evaluations of the same L-BFGS (cheap, and
    enough for moderate ``tau``: 1e-4 to 1e-9 in <= 20 evaluations at
    ``tau = 0.1``), then Riemannian trust regions with the exact Hessian for
    what is left (the narrow valleys of small ``tau``). A run the L-BFGS
    endgame converged leaves the trust region at once.
    """
    endgame = dataclasses.replace(settings, polish=False, max_steps=settings.polish_steps)
    state = first_order_init(H, labels, tau)
    state = jax.lax.while_loop(
        lambda s: s.status < 0, lambda s: first_order_steps(s, labels, tau, endgame, 1), state
    )
    stream = streams(labels.shape[0], settings)
    tr = manifold.TrustRegionSettings(gtol=settings.tol, max_iter=settings.polish_iters, max_inner=2000)
    cost = _loss_fn(labels, tau, stream)
    out = manifold.trust_region(cost, state.H, tr, preconditioner=_sc_preconditioner(tau, stream))
    bad = state.status == Status.NON_FINITE
    return PolishResult(
        jnp.where(bad, state.H, out.x), jnp.where(bad, state.status, out.status), state.steps, out.iterations
    )


def _sc_preconditioner(tau, stream: bool = False):
    if stream:
        blocks = lambda X: streaming.row_hessian_blocks_streaming(X, tau, block=STREAM_BLOCK)  # noqa: E731
    else:
        blocks = lambda X: _loss.row_hessian_blocks(X, tau)  # noqa: E731
    return lambda X, egrad: manifold.block_preconditioner(X, egrad, blocks(X))


def solve_one(H0, labels, tau, settings: ScanSettings):
    """One whole run from ``H0`` without batching: ``(H, steps, status, polish_evals, polish_iters)``.

    The same steps as the batched driver (first order until ``polish_from``,
    then the polish, here in ``H0``'s dtype); used to check loop == vmap.
    """
    state = first_order_init(H0, labels, tau)
    state = jax.lax.while_loop(
        lambda s: s.status < 0,
        lambda s: first_order_steps(s, labels, tau, settings, settings.chunk_steps),
        state,
    )
    zero = jnp.zeros((), jnp.int32)
    if not settings.polish:
        return state.H, state.steps, state.status, zero, zero
    out = polish(state.H, labels, tau, settings)
    ready = state.status == Status.CONVERGED
    return (
        jnp.where(ready, out.x, state.H),
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
    nc1: jax.Array
    gram_dist: jax.Array


def class_mean_gram(H, onehot):
    """Gram of the normalised class means ``(k, k)`` and the within-class spread ``1 - mean |mu_c|``."""
    means = (onehot.T @ H) / jnp.sum(onehot, axis=0)[:, None]
    norms = jnp.linalg.norm(means, axis=1)
    unit = means / jnp.where(norms > 0, norms, 1.0)[:, None]
    return unit @ unit.T, 1.0 - jnp.mean(norms)


def record(H, labels, tau, onehot, M_star, stream: bool = False) -> RunRecord:
    """Loss, Riemannian gradient norm, certificate, NC1 and ``|M(H) - M*|_F / |M*|_F`` of one run."""
    H = manifold.normalize_rows(H)
    value, egrad = jax.value_and_grad(_loss_fn(labels, tau, stream))(H)
    gnorm = jnp.linalg.norm(manifold.riemannian_gradient(H, egrad))
    if stream:
        cert = streaming._slack_extremes(H, labels, tau, jax.random.key(0), STREAM_BLOCK, 100)
        lam, gap = cert.lambda_min, cert.gap_bound
    else:
        lam, gap = optimum._certificate(H, labels, tau)
    M, nc1 = class_mean_gram(H, onehot)
    dist = jnp.linalg.norm(M - M_star) / jnp.linalg.norm(M_star)
    return RunRecord(value, gnorm, lam, gap, nc1, dist)


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


class Scanner:
    """Compiled pieces of a scan for one problem and settings (compiled once, reused per batch).

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
        if settings.x64 and not jax.config.jax_enable_x64:
            raise ValueError("x64 scans need float64 enabled (JAX_ENABLE_X64=1 or jax.config.update)")
        self.problem = problem
        self.settings = settings
        self.keep_embeddings = keep_embeddings
        self.key = key
        self.dtype = jnp.float64 if settings.x64 else jnp.float32
        self.sharding, self.n_devices = _device_mesh_sharding()
        self.slots = -(-settings.slots // self.n_devices) * self.n_devices
        self.optimum = optimum.global_optimum(problem.counts, problem.tau)
        self._initial = initial or (
            lambda k, i: initial_point(run_key(k, i), problem.n, problem.dim, self.dtype)
        )
        labels = problem.labels
        tau = problem.tau
        n_steps = settings.chunk_steps
        slot_labels = jnp.asarray(labels)

        def init_slots(indices):
            H = jax.vmap(lambda i: self._initial(key, i).astype(self.dtype))(indices)
            state = jax.vmap(first_order_init, in_axes=(0, None, None))(H, slot_labels, tau)
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
                state, slot_labels, tau, settings, n_steps
            )

        def finish(H):
            return jax.vmap(polish, in_axes=(0, None, None, None))(H, slot_labels, tau, settings)

        self._init_slots = jax.jit(init_slots, out_shardings=self.sharding)
        self._refill = jax.jit(refill, out_shardings=self.sharding, donate_argnums=0)
        self._advance = jax.jit(advance, out_shardings=self.sharding, donate_argnums=0)
        self._finish = jax.jit(finish)
        onehot = np.eye(problem.k)[labels]
        M_star = self.optimum.class_gram

        stream = streams(problem.n, settings)

        def records(H):
            return jax.vmap(functools.partial(record, stream=stream), in_axes=(0, None, None, None, None))(
                H, jnp.asarray(labels), tau, jnp.asarray(onehot), jnp.asarray(M_star)
            )

        self._records = jax.jit(records)

    def _indices(self, values) -> jax.Array:
        return jax.device_put(jnp.asarray(np.asarray(values, np.int32)), self.sharding)

    def results(self, run_indices: Iterable[int]) -> Iterator[dict]:
        pending = iter(run_indices)
        S = self.slots
        slot_run = np.full(S, -1, np.int64)
        first = [next(pending, -1) for _ in range(S)]
        slot_run[:] = first
        state = self._init_slots(self._indices(np.maximum(slot_run, 0)))
        queue: list[tuple] = []
        exhausted = False
        while True:
            active = slot_run >= 0
            if not active.any():
                break
            state = self._advance(state)
            status = np.asarray(state.status)
            finished = active & (status >= 0)
            if finished.any():
                idx = np.flatnonzero(finished)
                H = np.asarray(state.H)[idx]
                queue.append((slot_run[idx].copy(), H, np.asarray(state.steps)[idx], status[idx]))
                new = np.full(S, -1, np.int64)
                for j in idx:
                    nxt = -1 if exhausted else next(pending, -1)
                    exhausted = exhausted or nxt < 0
                    new[j] = nxt
                slot_run[idx] = new[idx]
                mask = np.zeros(S, bool)
                mask[idx[new[idx] >= 0]] = True
                state = self._refill(state, self._indices(np.maximum(new, 0)), jnp.asarray(mask))
            queued = sum(len(q[0]) for q in queue)
            if queued >= S or (queued and not (slot_run >= 0).any()):
                yield self._complete(queue)
                queue = []

    def _complete(self, queue) -> dict:
        runs = np.concatenate([q[0] for q in queue])
        H = np.concatenate([q[1] for q in queue]).astype(np.float64)
        steps = np.concatenate([q[2] for q in queue]).astype(np.int64)
        status = np.concatenate([q[3] for q in queue]).astype(np.int64)
        polish_iters = np.zeros_like(steps)
        polish_evals = np.zeros_like(steps)
        with jax.enable_x64(True):
            # The polish and the records run in float64 whatever the scan's dtype: near
            # convergence a float32 loss cannot resolve the trust-region ratio.
            if self.settings.polish:
                todo = np.flatnonzero(status == Status.CONVERGED)
                for start in range(0, todo.size, self.slots):
                    target = todo[start : start + self.slots]
                    out = self._finish(jnp.asarray(H[np.resize(target, self.slots)], jnp.float64))
                    H[target] = np.asarray(out.x)[: target.size]
                    status[target] = np.asarray(out.status)[: target.size]
                    polish_iters[target] = np.asarray(out.iterations)[: target.size]
                    polish_evals[target] = np.asarray(out.evals)[: target.size]
            # Records in blocks of ``slots`` (the last one padded), so one compilation serves all.
            parts = []
            for start in range(0, H.shape[0], self.slots):
                block = H[np.resize(np.arange(start, min(start + self.slots, H.shape[0])), self.slots)]
                out = self._records(jnp.asarray(block, jnp.float64))
                parts.append(
                    {
                        f: np.asarray(getattr(out, f))[: min(self.slots, H.shape[0] - start)]
                        for f in RunRecord._fields
                    }
                )
            rec = {f: np.concatenate([p[f] for p in parts]) for f in RunRecord._fields}
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
        if self.keep_embeddings:
            out["H"] = H.astype(np.float64)
        return {k: v[order] for k, v in out.items()}

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
        mode = self.settings.hessian
        if mode == "auto":
            mode = "all" if self.problem.n * (self.problem.dim - 1) <= AUTO_HESSIAN_DIM else "uncertified"
        if mode == "none" or self.problem.dim == 1:  # OB(n, 1) is a finite set: no tangent space
            return {"kind": kind, **fields}
        pick = kind != "not_converged" if mode == "all" else kind == "spurious_min"
        todo = np.flatnonzero(pick)
        labels = self.problem.labels
        with jax.enable_x64(True):
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


def scan(
    problem: problems.Problem,
    n_inits: int,
    key,
    settings: ScanSettings = ScanSettings(),
    *,
    keep_embeddings: bool = False,
) -> dict:
    """Optimise ``n_inits`` random initialisations of ``problem`` and return per-run records.

    Returns a dict of arrays ``(n_inits,)`` sorted by run index (``RECORD_FIELDS``, plus
    ``H`` ``(n_inits, n, d)`` when ``keep_embeddings``) and ``"kind"``, the
    classification (see ``classify_records``). For results on disk, resumable,
    use ``sclandscape.results.run_scan``.
    """
    if int(n_inits) != n_inits or n_inits < 1:
        raise ValueError(f"n_inits must be an integer >= 1, got {n_inits!r}")
    scanner = Scanner(problem, key, settings, keep_embeddings=keep_embeddings)
    parts = list(scanner.results(range(int(n_inits))))
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(merged["run"])
    merged = {k: v[order] for k, v in merged.items()}
    merged["kind"] = classify_records(merged, scanner.optimum.loss, settings)
    return merged


KINDS = ("global_min", "spurious_min", "saddle", "degenerate", "not_converged")


def certificate_kinds(rec: dict, global_loss: float, settings: ScanSettings) -> np.ndarray:
    """Classification from the gradient and the certificate alone.

    ``not_converged`` unless the status is ``CONVERGED`` and ``|grad| <= 10 tol``
    (re-checked in float64); then ``global_min`` when the certificate's gap
    bound is within ``cert_rtol`` or the loss within ``gap_rtol`` of ``L*``
    (relative to ``max(1, |L*|)``), else ``spurious_min`` (a saddle or a
    degenerate point until the Hessian says otherwise).
    """
    scale = max(1.0, abs(global_loss))
    converged = (rec["status"] == Status.CONVERGED) & (rec["grad_norm"] <= 10 * settings.tol)
    certified = (rec["cert_gap_bound"] <= settings.cert_rtol * scale) | (
        np.abs(rec["gap"]) <= settings.gap_rtol * scale
    )
    kind = np.where(converged, np.where(certified, "global_min", "spurious_min"), "not_converged")
    return kind.astype("<U13")


def classify_records(rec: dict, global_loss: float, settings: ScanSettings) -> np.ndarray:
    """Each run's kind: the scan's own (Hessian and certificate) when recorded, else ``certificate_kinds``."""
    if "kind" in rec:
        return np.asarray(rec["kind"]).astype("<U13")
    return certificate_kinds(rec, global_loss, settings)


def _classification_note(rec: dict, settings: ScanSettings) -> str:
    checked = int(np.sum(np.asarray(rec.get("hess_index", np.array([-1]))) >= 0))
    if settings.hessian == "none" or "hess_index" not in rec:
        return "certificate only (saddles and degenerate points not separated from spurious minima)"
    return (
        f"certificate, and the Riemannian Hessian spectrum for {checked} runs "
        f"(hessian={settings.hessian!r}; certified runs without a spectrum are global minima)"
    )


def summarize(rec: dict, global_loss: float, settings: ScanSettings) -> dict:
    """SPEC §5 summary: counts per kind and the distinct minima grouped by loss."""
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
    status_names = {int(s): s.name.lower() for s in Status}
    return {
        "n_inits": int(rec["run"].size),
        "global_loss": float(global_loss),
        "counts": {k: int(np.sum(kind == k)) for k in KINDS},
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
    }
