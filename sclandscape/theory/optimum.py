r"""The global optimum: the class-level program (CLS) of the convex relaxation, and closed forms.

**Class-level program.** The relaxation ``min f(G)`` over the elliptope has a
unique collapsed solution ``G* = Y^T M* Y`` where ``M*`` (``k x k``, unit
diagonal, PSD) solves::

    (CLS)  min_M  g(M) = sum_c n_c log((n_c - 1) + sum_{c' != c} n_{c'} exp((M_cc' - 1)/tau))

``g`` is strictly convex in the off-diagonal entries (each row is a
log-sum-exp with a positive constant term), so ``M*`` is unique. The optimal
loss of the non-convex problem equals ``g(M*)`` whenever ``d >= rank M*``
(``rank M* <= k - 1``).

**Solver.** Burer-Monteiro: ``M = U U^T`` with ``U`` on the oblique manifold
``OB(k, k + 1)``, minimised by Riemannian trust regions with the exact
Hessian. Because ``p = k + 1`` exceeds every possible rank of ``U``, every
second-order critical point of the factored problem is rank deficient and is
therefore a global minimiser of the convex program (Journée, Bach, Absil &
Sepulchre, SIAM J. Optim. 2010, Thm. 7); the trust-region method converges
globally to second-order critical points and locally quadratically. The
result is then verified independently through its KKT residual (below); it
never relies on the convergence argument alone.

**KKT residual.** ``M*`` is accepted only when the relative KKT residual of
the class-level program (``certify.kkt_residual``: dual slack PSD and
complementary) is below ``kkt_tol``; the per-point certificate of the SC
loss itself lives in ``sclandscape.theory.certify``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from sclandscape.core import compilation, precision, problems
from sclandscape.numerics import loss, oblique, optim
from sclandscape.theory import metrics
from sclandscape.theory.certify import dual_slack, kkt_residual

# --------------------------------------------------------------------------
# The class-level program


def cls_objective(M, counts, tau):
    """``g(M)`` of the class-level program (only off-diagonal ``M`` entries enter)."""
    counts = jnp.asarray(counts, M.dtype)
    k = M.shape[0]
    off = ~jnp.eye(k, dtype=bool)
    weights = jnp.where(off, counts[None, :] * jnp.exp((M - 1.0) / tau), 0.0)
    return jnp.sum(counts * jnp.log(counts - 1.0 + jnp.sum(weights, axis=1)))


def _cls_scaled_objective(M, counts, tau):
    """``exp(s/tau) * (g(M) - sum_c n_c log(n_c - 1))`` with ``s = k/(k-1)``, computed in log space.

    Same minimiser as ``g``. At small ``tau`` the off-diagonal terms of ``g``
    are ``~exp(-s/tau)`` and vanish against the constant ``sum n_c log(n_c-1)``
    in floating point (at ``tau = 0.02`` they are ``1e-30`` of it); removing the
    constant and rescaling keeps the value, gradient and trust-region ratio at
    order one near the optimum. With ``x_c = sum_{c'} n_c' e^{(M_cc'-1)/tau}/(n_c-1)``
    and ``u = log x_c``, each class contributes ``n_c e^{s/tau} log1p(e^u)
    = n_c e^{u + s/tau} phi(u)``, ``phi(u) = e^{-u} log1p(e^u)``.
    """
    counts = jnp.asarray(counts, M.dtype)
    k = M.shape[0]
    shift = k / (k - 1) / tau
    off = ~jnp.eye(k, dtype=bool)
    lx = loss.masked_logsumexp((M - 1.0) / tau + jnp.log(counts)[None, :] + shift, off, axis=1)
    lx = lx - jnp.log(counts - 1.0)
    u = lx - shift
    small = u < -20.0
    u_big = jnp.where(small, 0.0, u)
    phi = jnp.where(small, 1.0 - 0.5 * jnp.exp(u), jnp.log1p(jnp.exp(u_big)) * jnp.exp(-u_big))
    return jnp.sum(counts * jnp.exp(lx) * phi)


def _cls_grad_sym(M, counts, tau):
    A = jax.grad(_cls_scaled_objective)(M, counts, tau)
    return 0.5 * (A + A.T)


def _solve_cls_body(counts, tau, U0, gtol, settings):
    cost = lambda U: _cls_scaled_objective(U @ U.T, counts, tau)  # noqa: E731
    gtol = gtol * jnp.linalg.norm(jax.grad(cost)(oblique.normalize_rows(U0)))
    result = optim.trust_region(cost, U0, settings, gtol=gtol)
    M = result.x @ result.x.T
    M = 0.5 * (M + M.T)
    F = _cls_grad_sym(M, counts, tau)
    return M, result, dual_slack(F, M), kkt_residual(F, M)


@functools.cache
def _solve_cls(settings: optim.TrustRegionSettings) -> compilation.Program:
    """One Burer-Monteiro solve at ``p = U0.shape[1]``: ``(counts, tau, U0, gtol) ->`` ``M``, solver
    result, ``S``, KKT residual (kept traced on disk: ``compilation.Program``)."""
    body = functools.partial(_solve_cls_body, settings=settings)
    return compilation.Program(body, "cls", settings, namedtuples=(optim.TrustRegionResult,))


@dataclasses.dataclass(frozen=True)
class GlobalOptimum:
    """The global optimum of the SC loss for given class counts and temperature.

    Attributes:
      loss: the optimal value ``L*`` (sum form), equal to the relaxation's optimum.
      class_gram: ``M*`` ``(k, k)``, the Gram matrix of the optimal class means.
      rank: numerical rank of ``M*`` (the optimum is attained iff ``d >= rank``).
      kkt_residual: relative KKT residual of ``M*`` (see ``kkt_residual``).
      counts, tau: the problem.
      method: how it was obtained; ``iterations``: solver iterations.
      loss_error: a bound on ``|loss - L*|`` for the exact ``L*``: the computed ``M*``
        is feasible, so its value is above ``L*`` by at most the class-level
        certificate ``k max(0, -lambda_min(S)) + |<S, M*>|`` (``value_gap_bound``),
        plus the rounding of the value (``eps (n (k + 2/tau + 2) + k |L*|)``).
    """

    loss: float
    class_gram: np.ndarray
    rank: int
    kkt_residual: float
    counts: tuple[int, ...]
    tau: float
    method: str = "cls-trust-region"
    iterations: int = 0
    loss_error: float = 0.0

    @property
    def labels(self) -> np.ndarray:
        return problems.labels_from_counts(self.counts)

    def gram(self) -> np.ndarray:
        """``G* = Y^T M* Y`` ``(n, n)`` for samples sorted by class."""
        labels = self.labels
        return self.class_gram[np.ix_(labels, labels)]

    def class_means(self, dim: int | None = None) -> np.ndarray:
        """Unit vectors ``(k, dim)`` whose Gram matrix is ``M*`` (``dim >= rank``, default ``rank``)."""
        dim = self.rank if dim is None else problems.check_dim(dim)
        if dim < self.rank:
            raise ValueError(f"dim={dim} is below rank(M*)={self.rank}: the optimum is not attained")
        w, V = np.linalg.eigh(self.class_gram)
        # Only the rank(M*) leading eigenpairs: the others are the solve's round-off, and their
        # square roots (~1e-8) would put the points off the optimum in the unused coordinates.
        w, V = w[::-1][: self.rank], V[:, ::-1][:, : self.rank]
        U = V * np.sqrt(np.maximum(w, 0.0))
        U = np.pad(U, ((0, 0), (0, dim - U.shape[1])))  # the coordinates beyond the rank are zero
        return U / np.linalg.norm(U, axis=1, keepdims=True)

    def embedding(self, dim: int | None = None) -> np.ndarray:
        """An optimal ``H*`` ``(n, dim)``: every sample at its class mean."""
        return self.class_means(dim)[self.labels]

    def to_json(self) -> dict:
        return {
            "loss": self.loss,
            "class_gram": self.class_gram.tolist(),
            "rank": self.rank,
            "kkt_residual": self.kkt_residual,
            "counts": list(self.counts),
            "tau": self.tau,
            "method": self.method,
            "iterations": self.iterations,
            "loss_error": self.loss_error,
        }


#: Numerical rank of ``M*``: ``oblique.rank_of_singular_values`` of its factor (``sqrt`` of the
#: eigenvalues) at this relative threshold. ``M*`` is accepted at a KKT residual of ``1e-10``; a factored
#: solution off by ``E`` in the factor carries spurious eigenvalues ``~|E|^2``, and ``|E| ~ 1e-5`` at that
#: residual, so eigenvalues below ``1e-6 w_max`` (factor singular values below ``1e-3``) are not resolved.
CLASS_RANK_RTOL = 1e-3


def _numerical_rank(M: np.ndarray) -> int:
    sigma = np.sqrt(np.maximum(np.linalg.eigvalsh(M)[::-1], 0.0))
    return int(oblique.rank_of_singular_values(sigma, CLASS_RANK_RTOL))


def value_gap_bound(M: np.ndarray, counts, tau: float) -> float:
    """``g(M) - g(M*) <= k max(0, -lambda_min(S)) + |<S, M>|`` for a feasible ``M`` (float64).

    ``S = F - Diag((F M)_ii)`` with ``F`` the symmetric gradient of the
    unscaled class-level objective ``g`` at ``M``: the certificate of
    ``docs/maths.md`` §2, one level up.
    """
    with precision.float64():
        Mj = jnp.asarray(M, jnp.float64)
        A = jax.grad(cls_objective)(Mj, jnp.asarray(counts, jnp.float64), tau)
        S = np.asarray(dual_slack(0.5 * (A + A.T), Mj))
    lam = float(np.linalg.eigvalsh(S)[0])
    return len(counts) * max(0.0, -lam) + abs(float(np.sum(S * M)))


def _cls_start(k: int) -> np.ndarray:
    """Simplex ETF in ``R^{k-1}`` plus a fixed small perturbation (deterministic)."""
    w, V = np.linalg.eigh(np.eye(k) - 1.0 / k)
    U = V[:, 1:] + 1e-3 * np.random.default_rng(0).standard_normal((k, k - 1))
    return U / np.linalg.norm(U, axis=1, keepdims=True)


def global_optimum(counts, tau, *, kkt_tol: float = 1e-10, max_iter: int = 200) -> GlobalOptimum:
    """Solve the class-level program (CLS) in float64 and verify its KKT residual.

    Riemannian staircase: solve the factored problem at ``p = k - 1`` (the
    generic rank of ``M*``, where the factored problem is non-degenerate and
    Newton steps converge fast); if the dual slack ``S`` then has a negative
    eigenvalue, append a column along its eigenvector and solve again with
    ``p + 1`` (up to ``p = k + 1``, where every local minimum is global).
    Every step of the staircase is one compiled program: the factor always has
    ``k + 1`` columns, those beyond ``p`` zero. Zero columns stay exactly zero
    (the Euclidean gradient ``2 A U`` and every Hessian-vector product of the
    trust region's Krylov space vanish in them), so the program solves the
    rank-``p`` problem, and one compilation per ``k`` serves every rank and
    every tolerance.
    Otherwise, while the KKT residual of ``M`` exceeds ``kkt_tol``, continue
    from the current point with a 100x tighter gradient tolerance.

    Args:
      counts: class sizes ``n_c >= 2`` (any number of classes ``k >= 2``).
      tau: temperature in ``[problems.TAU_MIN, problems.TAU_MAX]`` (why: see those constants).
      kkt_tol: target KKT residual (see ``kkt_residual``).
      max_iter: trust-region iterations per solve.

    Returns a ``GlobalOptimum``. Raises ``RuntimeError`` if the KKT residual
    does not reach ``max(kkt_tol, 1e-9)``.
    """
    counts = problems.check_counts(counts)
    tau = problems.check_tau(tau)
    k = len(counts)
    settings = optim.TrustRegionSettings(max_iter=max_iter, max_inner=1000)
    U = np.pad(_cls_start(k), ((0, 0), (0, 2)))  # p = k - 1 columns in use, of k + 1
    p = k - 1
    gtol = 1e-8
    iterations = 0
    with jax.enable_x64(True):
        c = jnp.asarray(counts, jnp.float64)
        for _ in range(12):
            M, result, S, kkt = _solve_cls(settings)(c, jnp.float64(tau), jnp.asarray(U), jnp.float64(gtol))
            iterations += int(result.iterations)
            kkt = float(kkt)
            w, V = np.linalg.eigh(np.asarray(S))
            if w[0] < -1e-10 * max(np.linalg.norm(np.asarray(S)), 1e-300) and p <= k:
                U = np.array(result.x)
                U[:, p] = 1e-2 * V[:, 0]  # the next column: along the slack's negative eigenvector
                p += 1
            elif kkt > kkt_tol:
                U, gtol = np.asarray(result.x), gtol / 100
            else:
                break
        M = np.asarray(M)
        value = float(cls_objective(jnp.asarray(M), c, tau))
        error = value_gap_bound(M, counts, tau) + float(np.finfo(np.float64).eps) * (
            sum(counts) * (k + 2 / tau + 2) + k * abs(value)
        )
    if not kkt <= max(kkt_tol, 1e-9):
        raise RuntimeError(
            f"CLS solve did not converge: KKT residual {kkt:.2e} (status {int(result.status)}, "
            f"{iterations} iterations) for k={k} classes, tau={tau}"
        )
    return GlobalOptimum(
        loss=value,
        class_gram=M,
        rank=_numerical_rank(M),
        kkt_residual=kkt,
        counts=counts,
        tau=tau,
        iterations=iterations,
        loss_error=error,
    )


# --------------------------------------------------------------------------
# Closed forms and reduced programs (independent cross-checks)


def balanced_optimum_loss(k: int, m: int, tau: float) -> float:
    """``L* = n log(m - 1 + (n - m) exp(-k / ((k - 1) tau)))`` at the simplex ETF."""
    counts = problems.balanced_counts(k, m)
    tau = problems.check_tau(tau)
    n = sum(counts)
    return n * math.log(m - 1 + (n - m) * math.exp(-k / ((k - 1) * tau)))


def simplex_etf(k: int) -> np.ndarray:
    """Class-mean Gram of the simplex ETF: ``1`` on the diagonal, ``-1/(k-1)`` off it."""
    return (k / (k - 1)) * np.eye(k) - 1.0 / (k - 1)


@dataclasses.dataclass(frozen=True)
class StepOptimum:
    """STEP optimum: block values ``alpha`` (maj-maj), ``beta`` (min-min), ``gamma`` (cross)."""

    loss: float
    alpha: float
    beta: float
    gamma: float
    class_gram: np.ndarray


def _step_value(alpha, beta, gamma, k_maj, k_min, n_maj, n_min, tau):
    e = lambda x: np.exp((x - 1.0) / tau)  # noqa: E731
    maj = n_maj * np.log(n_maj - 1 + (k_maj - 1) * n_maj * e(alpha) + k_min * n_min * e(gamma))
    mnr = n_min * np.log(n_min - 1 + (k_min - 1) * n_min * e(beta) + k_maj * n_maj * e(gamma))
    return k_maj * maj + k_min * mnr


def step_optimum(k_maj: int, k_min: int, n_min: int, R, tau: float) -> StepOptimum:
    """Solve the STEP reduced program (SciPy, independent of the CLS solver).

    ``M*`` is block-constant; PSD-ness of such a matrix is ``1 + (k_maj-1) alpha >= 0``,
    ``1 + (k_min-1) beta >= 0`` (with ``alpha, beta <= 1``) and
    ``gamma^2 k_maj k_min <= (1 + (k_maj-1) alpha)(1 + (k_min-1) beta)``. The
    objective decreases in ``gamma``, so ``gamma = -sqrt(ab / (k_maj k_min))``
    at the optimum; the remaining two-variable program stays convex (``-sqrt(ab)``
    is convex) and is solved with bounded L-BFGS-B from two starts.
    """
    counts = problems.step_counts(k_maj, k_min, n_min, R)
    tau = problems.check_tau(tau)
    n_maj = counts[0]
    lo_a = -1.0 / (k_maj - 1) if k_maj > 1 else 1.0
    lo_b = -1.0 / (k_min - 1) if k_min > 1 else 1.0

    def unpack(z):
        a, b = z
        gamma = -math.sqrt(max(0.0, (1 + (k_maj - 1) * a) * (1 + (k_min - 1) * b)) / (k_maj * k_min))
        return a, b, gamma

    def value(z):
        return _step_value(*unpack(z), k_maj, k_min, n_maj, n_min, tau)

    best = None
    for start in ((0.5 * (lo_a + 1), 0.5 * (lo_b + 1)), (0.9 * lo_a + 0.1, 0.9 * lo_b + 0.1)):
        res = optimize.minimize(
            value,
            np.array(start),
            method="L-BFGS-B",
            bounds=[(lo_a, 1.0), (lo_b, 1.0)],
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
        )
        if best is None or res.fun < best.fun:
            best = res
    a, b, g = unpack(best.x)
    M = np.empty((len(counts), len(counts)))
    M[:k_maj, :k_maj], M[k_maj:, k_maj:], M[:k_maj, k_maj:], M[k_maj:, :k_maj] = a, b, g, g
    np.fill_diagonal(M, 1.0)
    return StepOptimum(float(best.fun), float(a), float(b), float(g), M)


def nonneg_optimum_loss(counts, tau) -> float:
    """UFM+ optimum (orthogonal frame ``h_i.h_j = 1[y_i = y_j]``):
    ``sum_c n_c log(n_c - 1 + (n - n_c) exp(-1/tau))``. Attained iff ``d >= k``."""
    counts = problems.check_counts(counts)
    tau = problems.check_tau(tau)
    n = sum(counts)
    return float(sum(c * math.log(c - 1 + (n - c) * math.exp(-1.0 / tau)) for c in counts))


def nonneg_optimum_embedding(counts, dim: int) -> np.ndarray:
    """An optimal UFM+ point: class ``c`` at the basis vector ``e_c`` (needs ``dim >= k``)."""
    counts = problems.check_counts(counts)
    if problems.check_dim(dim) < len(counts):
        raise ValueError(f"the orthogonal frame needs dim >= k = {len(counts)}, got {dim}")
    return np.eye(dim)[problems.labels_from_counts(counts)]


# --------------------------------------------------------------------------
# STEP geometry over ratios and temperatures (data for ``maps.imbalance_geometry``)


def _nonempty(values, name: str) -> list:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must not be empty")
    return values


def step_geometry(
    ratios: Sequence, taus: Sequence, *, k_maj: int = 2, k_min: int = 2, n_min: int = 2, method: str = "cls"
) -> dict:
    """``alpha, beta, gamma`` of the STEP optimum ``M*`` for every ratio ``R`` and temperature.

    ``method="cls"`` takes ``M*`` from ``global_optimum`` (the
    class-level program, KKT-verified), ``"step"`` from the independent
    reduced program ``step_optimum``. Returns a dict with ``ratios``
    ``(m,)``, ``taus`` ``(t,)``, ``alpha``/``beta``/``gamma``/``loss`` ``(t, m)``
    and the STEP parameters.
    """
    ratios = [float(r) for r in _nonempty(ratios, "ratios")]
    taus = [problems.check_tau(t) for t in _nonempty(taus, "taus")]
    if method not in ("cls", "step"):
        raise ValueError(f"method must be 'cls' or 'step', got {method!r}")
    for R in ratios:
        problems.step_counts(k_maj, k_min, n_min, R)
    shape = (len(taus), len(ratios))
    out = {name: np.full(shape, np.nan) for name in ("alpha", "beta", "gamma", "loss")}
    for i, tau in enumerate(taus):
        for j, R in enumerate(ratios):
            if method == "cls":
                opt = global_optimum(problems.step_counts(k_maj, k_min, n_min, R), tau)
                M, value = opt.class_gram, opt.loss
            else:
                opt = step_optimum(k_maj, k_min, n_min, R, tau)
                M, value = opt.class_gram, opt.loss
            a, b, g = metrics.step_blocks(M, k_maj)
            out["alpha"][i, j], out["beta"][i, j], out["gamma"][i, j] = a, b, g
            out["loss"][i, j] = value
    return {
        "ratios": np.asarray(ratios),
        "taus": np.asarray(taus),
        **out,
        "k_maj": int(k_maj),
        "k_min": int(k_min),
        "n_min": int(n_min),
        "method": method,
    }
