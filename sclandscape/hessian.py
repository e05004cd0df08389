r"""The Riemannian Hessian on ``OB(n, d)``: spectra, symmetry zero modes and classification.

For the sum-form SC loss ``L(H)`` of a single configuration ``H`` ``(n, d)``
(unit rows), with Euclidean gradient ``egrad = 2 F H`` and row multipliers
``mu_i = <egrad_i, h_i>``::

    Hess L(H)[V] = Proj_H(nabla^2 L(H)[V]) - diag(mu) V,      <v_i, h_i> = 0,

a symmetric operator on the tangent space of dimension ``N = n(d - 1)``.

**Coordinates.** ``oblique.tangent_basis`` gives per row an orthonormal basis
``U_i`` ``(d, d-1)`` of ``h_i^perp`` (the last ``d - 1`` columns of the
Householder reflector that maps ``h_i`` to ``-+e_1``); the tangent basis is
``B = blockdiag(U_1, ..., U_n)`` and coordinates ``c`` ``(n, d-1)`` map to
``V = c -> (U_i c_i)_i``. ``riemannian_hessian`` is ``B^T Hess B`` with rows
and columns ordered ``(i, k) -> i (d-1) + k``.

**Dense path (closed form).** With ``s = 1/tau``, ``P`` the masked row
softmax of ``s G`` (``P_ii = 0``), ``T_{il} = U_i^T h_l`` and
``dx_il = s (c_i.T_il + c_l.T_li)`` the variation of the logit ``s G_il``::

    c^T (B^T Hess B) c = 2 sum_il F_il <U_i c_i, U_l c_l> - sum_i mu_i |c_i|^2
                         + sum_i [ sum_l P_il dx_il^2 - (sum_l P_il dx_il)^2 ]

(the last bracket is the variance of the logit variations under anchor
``i``'s softmax: the Hessian of the log-sum-exp). It is assembled with
``O(n^2 d^3 + n N^2)`` work, one GEMM dominating, and checked in the tests
against forward-over-reverse autodiff, finite differences (a Taylor-slope
check) and NumPy.

**Matrix-free path.** ``hvp_operator`` is forward-over-reverse autodiff of
the loss (dense or streaming, ``streaming.loss_fn``), linearised once per
point, projected. ``lanczos_extremes`` runs ``linalg.lanczos`` with the
symmetry modes ``{H Omega}`` (``oblique.symmetry_basis``) deflated. Ritz
values are Rayleigh quotients, so ``theta_1 >= lambda_1`` (a Ritz value
``< -tol`` proves a negative eigenvalue) and ``#{theta < -tol}`` is a lower
bound on the index. ``spectral_density`` is stochastic Lanczos quadrature
(Ubaru, Chen & Saad, SIMAX 2017).

**Precision.** Everything follows the input dtype (``precision``);
``classify`` re-evaluates in float64 inside ``precision.float64()``.
Single-instance functions are pure and jit/vmap-safe; the public entry points
accept ``(n, d)`` or ``(runs, n, d)``.

**Threads (CPU).** jaxlib's ``eigh``/``svd`` call SciPy's OpenBLAS from XLA's
worker threads. With OpenBLAS's own threading on, batched or concurrent calls
oversubscribe the cores and can stall for minutes or deadlock (jax-ml/jax
#39292, OpenMathLib/OpenBLAS#5517); run with ``OPENBLAS_NUM_THREADS=1`` (set
before NumPy is imported), as ``benchmarks/hessian.py`` does.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape import certify, linalg, loss, metrics, oblique, optimum, precision, problems, streaming
from sclandscape.oblique import (
    map_points,
    predicted_zero_modes,
    symmetry_basis,
    tangent_basis,
    to_ambient,
    to_coordinates,
)

#: Above this tangent dimension ``n (d - 1)`` ``classify`` uses Lanczos instead of the dense path.
DENSE_MAX_DIM = 3000


# --------------------------------------------------------------------------
# Dense path


def _softmax_and_gradient(H, labels, tau):
    """``P`` (masked row softmax of ``G/tau``), ``F`` and the multipliers ``mu_i = <egrad_i, h_i>``."""
    n = H.shape[0]
    G = H @ H.T
    off = ~jnp.eye(n, dtype=bool)
    logits = G / tau
    lse = loss.masked_logsumexp(logits, off, axis=1)
    P = jnp.where(off, jnp.exp(jnp.where(off, logits - lse[:, None], 0.0)), 0.0)
    positive = off & (labels[:, None] == labels[None, :])
    Yp = positive / jnp.maximum(jnp.sum(positive, axis=1, keepdims=True), 1)
    A = (P - Yp) / tau
    F = 0.5 * (A + A.T)
    mu = 2 * jnp.sum(F * G, axis=1)
    return P, F, mu


def hessian_matrix(H, labels, tau):
    """``B^T Hess L(H) B`` ``(N, N)`` in closed form (module docstring); one instance."""
    H = oblique.normalize_rows(H)
    n, d = H.shape
    k = d - 1
    s = 1.0 / tau
    P, F, mu = _softmax_and_gradient(H, labels, tau)
    U = tangent_basis(H)
    T = jnp.einsum("adk,ld->alk", U, H)  # T[a, l] = U_a^T h_l (zero for l = a)
    Psym = P + P.T
    # 2 F (x) I in tangent coordinates, and the cross blocks s^2 (P_ab + P_ba) T_ab T_ba^T.
    M = 2 * jnp.einsum("ab,adk,bdl->akbl", F, U, U)
    M = M + s**2 * jnp.einsum("ab,abk,bal->akbl", Psym, T, T)
    # Diagonal blocks: s^2 sum_l (P_al + P_la) T_al T_al^T - mu_a I.
    diag = s**2 * jnp.einsum("al,alk,alm->akm", Psym, T, T) - mu[:, None, None] * jnp.eye(k, dtype=H.dtype)
    idx = jnp.arange(n)
    M = M.at[idx, :, idx, :].add(diag)
    # Minus sum_i (sum_l P_il dx_il)^2 = -|W c|^2, W[i, a] = s (delta_ia sum_l P_il T_il + P_ia T_ai).
    W = s * (P[:, :, None] * jnp.swapaxes(T, 0, 1))
    W = W.at[idx, idx, :].add(s * jnp.einsum("il,ilk->ik", P, T))
    W = W.reshape(n, n * k)
    M = M.reshape(n * k, n * k) - W.T @ W
    return 0.5 * (M + M.T)


def hessian_matrix_autodiff(H, labels, tau, batch_size: int = 64):
    """``B^T Hess B`` from ``hvp_operator`` on every basis vector (a check independent of the closed form)."""
    H = oblique.normalize_rows(H)
    n, d = H.shape
    k = d - 1
    U = tangent_basis(H)
    apply = hvp_operator(H, labels, tau)

    def column(index):
        a, j = index // k, index % k
        V = jnp.zeros_like(H).at[a].set(U[a, :, j])
        return to_coordinates(U, apply(V)).reshape(-1)

    M = jax.lax.map(column, jnp.arange(n * k), batch_size=batch_size)
    return 0.5 * (M + M.T)


def riemannian_hessian(H, labels, tau):
    """The Riemannian Hessian ``B^T Hess L(H) B`` ``(N, N)``, ``N = n(d-1)``, in ``tangent_basis`` coords.

    ``Hess L(H)[V] = Proj_H(nabla^2 L(H)[V]) - diag(<egrad_i, h_i>) V``
    (docs/maths.md §3), sum-form loss, rows of ``H`` normalised first. Symmetric;
    ``(runs, n, d)`` gives ``(runs, N, N)``. Dtype follows ``H``.
    """
    problems.check_points(H, labels, tau)
    return _riemannian_hessian(jnp.asarray(H), jnp.asarray(labels), tau)


@jax.jit
def _riemannian_hessian(H, labels, tau):
    return map_points(hessian_matrix, H, labels, tau)


def riemannian_hessian_eigs(H, labels, tau):
    """All ``n(d-1)`` eigenvalues of the Riemannian Hessian on the tangent space, ascending (docs/results.md).

    ``H`` ``(n, d)`` gives ``(N,)``; ``(runs, n, d)`` gives ``(runs, N)``.
    Dense (closed-form assembly and ``eigh``): practical up to ``N ~ 3000``.
    """
    problems.check_points(H, labels, tau)
    return _riemannian_hessian_eigs(jnp.asarray(H), jnp.asarray(labels), tau)


@jax.jit
def _riemannian_hessian_eigs(H, labels, tau):
    return map_points(lambda h, y, t: jnp.linalg.eigvalsh(hessian_matrix(h, y, t)), H, labels, tau)


# --------------------------------------------------------------------------
# Matrix-free path


def hvp_operator(H, labels, tau, *, stream: bool | None = None):
    """``V -> Hess L(H)[V]`` at one ``H`` (traced, no checks): forward-over-reverse, linearised once.

    ``stream`` (default ``streaming.use_streaming(n)``) takes the streaming
    loss, which never forms the ``n x n`` matrix. ``V`` is projected on the
    tangent space first, so the closure is the symmetric ``Proj Hess Proj``.
    """
    if stream is None:
        stream = streaming.use_streaming(H.shape[0])
    H = oblique.normalize_rows(H)
    egrad, linear = jax.linearize(jax.grad(streaming.loss_fn(labels, tau, stream=stream)), H)
    mu = jnp.sum(egrad * H, axis=-1, keepdims=True)

    def apply(V):
        V = oblique.project_tangent(H, V)
        return oblique.project_tangent(H, linear(V)) - mu * V

    return apply


def hvp(H, labels, tau):
    """``V -> Hess L(H)[V]`` for one ``H`` ``(n, d)``: forward-over-reverse, linearised once.

    ``V`` ``(n, d)`` is projected onto the tangent space first, so the
    closure is the symmetric operator ``Proj Hess Proj`` on ambient
    coordinates. jit/vmap-safe (build it inside the transformed function).
    """
    shape = problems.check_points(H, labels, tau)
    if len(shape) != 2:
        raise ValueError(f"hvp takes one configuration H (n, d), got shape {shape}; vmap it for runs")
    return hvp_operator(jnp.asarray(H), jnp.asarray(labels), tau)


class Extremes(NamedTuple):
    """Extreme Ritz pairs of one Lanczos run (all fields gain a leading runs axis when batched).

    ``lambda_min``/``vector_min``/``residual_min``: the smallest Ritz pair (of
    the operator with the symmetry modes deflated when asked);
    ``lambda_max``/``residual_max``: the largest; ``ritz_values`` all ``m``;
    ``n_hvp``: Hessian-vector products used (``m``); ``n_deflated``: symmetry
    modes removed.
    """

    lambda_min: jax.Array
    vector_min: jax.Array
    residual_min: jax.Array
    lambda_max: jax.Array
    residual_max: jax.Array
    ritz_values: jax.Array
    n_hvp: jax.Array
    n_deflated: jax.Array


def lanczos_steps(shape, deflate: bool, num_iter: int) -> int:
    """Lanczos steps for ``num_iter`` asked: capped at the tangent dimension left after deflation."""
    n, d = shape[-2:]
    room = n * (d - 1) - (d * (d - 1) // 2 if deflate else 0)
    return max(1, min(int(num_iter), room))


def _extremes(H, labels, tau, key, num_iter, deflate, rank_rtol):
    H = oblique.normalize_rows(H)
    apply = hvp_operator(H, labels, tau)
    Z, count = symmetry_basis(H, rank_rtol) if deflate else (None, jnp.zeros((), jnp.int32))
    k0, k1 = jax.random.split(key)
    v0 = jax.random.normal(k0, H.shape, H.dtype)
    project = lambda v: oblique.project_tangent(H, v)  # noqa: E731
    result = linalg.lanczos(apply, v0, num_iter, deflation=Z, project=project, key=k1)
    theta, S = jnp.linalg.eigh(linalg.tridiagonal(result))
    residual = jnp.abs(result.beta[-1] * S[-1])
    v = jnp.tensordot(S[:, 0], result.basis, axes=1)
    v = project(v) / jnp.linalg.norm(v)
    return Extremes(
        theta[0], v, residual[0], theta[-1], residual[-1], theta, jnp.asarray(num_iter), jnp.asarray(count)
    )


@functools.partial(jax.jit, static_argnames=("num_iter", "deflate"))
def _extremesmap_points(H, labels, tau, key, num_iter, deflate, rank_rtol):
    def one(h, labels, tau, k):
        return _extremes(h, labels, tau, k, num_iter, deflate, rank_rtol)

    return map_points(one, H, labels, tau, keys=key)


def lanczos_extremes(
    H, labels, tau, *, num_iter: int = 300, deflate_symmetry: bool = True, rank_rtol: float = 1e-6, key=None
) -> Extremes:
    """Smallest and largest eigenvalues of the Riemannian Hessian by Lanczos (matrix free).

    ``num_iter`` Hessian-vector products (capped at the tangent dimension left
    after deflation), full reorthogonalisation; with ``deflate_symmetry`` the
    symmetry modes ``{H Omega}`` (``symmetry_modes`` at ``rank_rtol``) are
    projected out, so ``lambda_min`` is the smallest non-symmetry eigenvalue
    at a critical point. ``H`` ``(n, d)`` or ``(runs, n, d)`` (one key split
    over runs). Residual norms bound the Ritz values' errors (``|theta -
    lambda| <= residual``).
    """
    shape = problems.check_points(H, labels, tau)
    key = jax.random.key(0) if key is None else key
    m = lanczos_steps(shape, deflate_symmetry, num_iter)
    return _extremesmap_points(jnp.asarray(H), jnp.asarray(labels), tau, key, m, deflate_symmetry, rank_rtol)


def _slq(H, labels, tau, key, num_iter, num_probes):
    H = oblique.normalize_rows(H)
    apply = hvp_operator(H, labels, tau)
    project = lambda v: oblique.project_tangent(H, v)  # noqa: E731

    def probe(k):
        k0, k1 = jax.random.split(k)
        v0 = project(jax.random.rademacher(k0, H.shape, H.dtype))
        result = linalg.lanczos(apply, v0, num_iter, project=project, key=k1)
        theta, S = jnp.linalg.eigh(linalg.tridiagonal(result))
        return theta, S[0] ** 2 / num_probes

    return jax.lax.map(probe, jax.random.split(key, num_probes))


@functools.partial(jax.jit, static_argnames=("num_iter", "num_probes"))
def _slqmap_points(H, labels, tau, key, num_iter, num_probes):
    return map_points(
        lambda h, labels, tau, k: _slq(h, labels, tau, k, num_iter, num_probes), H, labels, tau, keys=key
    )


def spectral_density(H, labels, tau, *, num_iter: int = 80, num_probes: int = 4, key=None):
    """Stochastic Lanczos quadrature of the spectral measure ``(1/N) sum_j delta(lambda - lambda_j)``.

    Each of ``num_probes`` Rademacher tangent probes ``v`` gives an
    ``m``-point Gauss quadrature ``v^T g(Hess) v / |v|^2 ~ sum_k (S_0k)^2
    g(theta_k)``. Returns ``(nodes, weights)`` of shape ``(num_probes, m)``
    (weights sum to 1 over both axes); evaluate with ``density_on_grid``.
    """
    shape = problems.check_points(H, labels, tau)
    if int(num_probes) != num_probes or num_probes < 1:
        raise ValueError(f"num_probes must be an integer >= 1, got {num_probes!r}")
    key = jax.random.key(0) if key is None else key
    m = lanczos_steps(shape, False, num_iter)
    return _slqmap_points(jnp.asarray(H), jnp.asarray(labels), tau, key, m, int(num_probes))


def density_on_grid(nodes, weights, grid, sigma):
    """Gaussian-broadened density ``sum_k w_k N(x; theta_k, sigma^2)`` on ``grid`` (integrates to 1)."""
    nodes = jnp.asarray(nodes).reshape(-1)
    weights = jnp.asarray(weights).reshape(-1)
    grid = jnp.asarray(grid)
    z = (grid[..., None] - nodes) / sigma
    return jnp.sum(weights * jnp.exp(-0.5 * z**2), axis=-1) / (sigma * math.sqrt(2 * math.pi))


# --------------------------------------------------------------------------
# Classification

METHODS = ("auto", "dense", "lanczos")


@dataclasses.dataclass(frozen=True)
class ClassifySettings:
    """Tolerances of ``classify`` (all explicit, returned with every result).

    Attributes:
      gtol: a point is ``not_converged`` when its Riemannian gradient norm
        (sum-form loss, absolute) exceeds ``gtol`` (the scan's default
        judgement, ``10 * ScanSettings.tol``).
      rtol, grad_factor: an eigenvalue is negative below ``-tol`` and zero
        within ``tol = max(rtol * max|lambda|, grad_factor * min(|grad|, gtol))``.
        The second term absorbs how far a not exactly critical point moves
        the zero modes (measured: ``~0.05-0.13 |grad|`` near global minima);
        capped at ``gtol`` so a far-from-critical point keeps its index.
      rank_rtol: numerical rank of ``H``: ``#{sigma_p > rank_rtol sigma_1}``.
      cert_rtol, gap_rtol: a local minimum is ``global_min`` when the
        certificate's gap bound is at most ``cert_rtol * max(1, |L*|)`` or its
        loss is within ``gap_rtol * max(1, |L*|)`` of ``L*`` (as ``scan``).
      method: ``"dense"``, ``"lanczos"`` or ``"auto"`` (dense when
        ``n(d-1) <= dense_max_dim``).
      num_iter: Lanczos steps (Hessian-vector products) per point.
    """

    gtol: float = 1e-4
    rtol: float = 1e-6
    grad_factor: float = 1.0
    rank_rtol: float = 1e-6
    cert_rtol: float = 1e-5
    gap_rtol: float = 1e-6
    method: str = "auto"
    dense_max_dim: int = DENSE_MAX_DIM
    num_iter: int = 300

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("gtol", "rtol", "rank_rtol", "cert_rtol", "gap_rtol"),
            nonnegative=("grad_factor",),
            integers={"dense_max_dim": 1, "num_iter": 1},
            choices={"method": METHODS},
        )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Classification:
    """What ``classify`` found (fields are scalars for one point, arrays over runs for a batch).

    ``kind`` in ``metrics.KINDS``; ``index`` = #eigenvalues ``< -tol`` (exact on the
    dense path; on the Lanczos path a lower bound, ``index_exact`` False);
    ``lambda_min`` the smallest eigenvalue once the ``n_zero_predicted``
    symmetry modes are removed, ``lambda_max`` the largest; ``n_zero`` the
    eigenvalues within ``tol`` of 0 (Lanczos: a lower bound, predicted plus
    near-zero Ritz values after deflation); ``rank`` of ``H``; ``eig_residual``
    the Lanczos residual bound on ``lambda_min`` (0 on the dense path);
    ``certified`` the certificate (or loss) test; ``degenerate_zeros`` whether
    more zeros than symmetry modes were seen (recorded even for a
    ``global_min``); ``settings`` the tolerances used.
    """

    kind: object
    index: object
    index_exact: bool
    lambda_min: object
    lambda_max: object
    tol: object
    n_zero: object
    n_zero_predicted: object
    rank: object
    degenerate_zeros: object
    grad_norm: object
    loss: object
    global_loss: float
    cert_lambda: object
    cert_gap_bound: object
    certified: object
    eig_residual: object
    method: str
    settings: ClassifySettings

    def to_json(self) -> dict:
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, ClassifySettings):
                value = value.to_json()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[field.name] = value
        return out


def _point_data(H, labels, tau, rank_rtol):
    H = oblique.normalize_rows(H)
    sigma = jnp.linalg.svd(H, compute_uv=False)
    stream = streaming.use_streaming(H.shape[0])
    value, egrad = jax.value_and_grad(streaming.loss_fn(labels, tau, stream=stream))(H)
    cert = certify.of_point(H, labels, tau, stream=stream)
    grad_norm = jnp.linalg.norm(oblique.riemannian_gradient(H, egrad))
    rank = oblique.rank_of_singular_values(sigma, rank_rtol)
    return value, grad_norm, rank, cert.lambda_min, cert.gap_bound


@jax.jit
def _classify_dense(H, labels, tau, rank_rtol):
    def one(h, labels, tau):
        eigs = jnp.linalg.eigvalsh(hessian_matrix(h, labels, tau))
        return _point_data(h, labels, tau, rank_rtol), eigs

    return map_points(one, H, labels, tau)


@functools.partial(jax.jit, static_argnames="num_iter")
def _classify_lanczos(H, labels, tau, key, rank_rtol, num_iter):
    def one(h, labels, tau, k):
        return _point_data(h, labels, tau, rank_rtol), _extremes(h, labels, tau, k, num_iter, True, rank_rtol)

    return map_points(one, H, labels, tau, keys=key)


def _unbatch(value, single):
    value = np.asarray(value)
    return value.item() if single else value


def classify(
    H, labels, tau, *, global_loss=None, settings: ClassifySettings = ClassifySettings(), key=None, x64=True
):
    """Classify critical points by their Riemannian Hessian and certificate (docs/maths.md §3).

    Rules, in order: ``not_converged`` if ``|grad| > gtol`` (or non-finite);
    ``saddle`` if some eigenvalue ``< -tol``; ``global_min`` if the
    certificate (or the loss) says globally optimal, even when there are more
    zero eigenvalues than symmetry modes (``degenerate_zeros`` records it);
    ``degenerate`` if there are; else ``spurious_min``. ``tol`` is relative to
    the spectrum's scale (``ClassifySettings``) and returned. ``L*`` is the
    relaxation's value, attained only when ``d >= rank M*``: below that no
    point reaches it and every local minimum is reported ``spurious_min``
    (read: not certified global).

    Args:
      H: ``(n, d)`` or ``(runs, n, d)``; rows are normalised.
      labels, tau: the problem.
      global_loss: ``L*`` (default: ``global_optimum`` of the label counts).
      settings: tolerances and method; the dense path builds the full
        ``n(d-1)`` Hessian, the Lanczos path uses ``settings.num_iter``
        Hessian-vector products with the symmetry modes deflated.
      key: PRNG key for Lanczos start vectors.
      x64: re-evaluate in float64 (float32 input included), inside
        ``precision.float64()``; ``x64=False`` classifies in ``H``'s own dtype.

    Returns a ``Classification``.
    """
    shape = problems.check_points(H, labels, tau)
    if not isinstance(settings, ClassifySettings):
        raise ValueError(f"settings must be a ClassifySettings, got {type(settings).__name__}")
    if x64:
        with precision.float64():
            return classify(H, labels, tau, global_loss=global_loss, settings=settings, key=key, x64=False)
    H = jnp.asarray(H)
    tau = problems.check_tau(tau)
    if global_loss is None:
        global_loss = optimum.global_optimum(problems.counts_from_labels(labels), tau).loss
    elif isinstance(global_loss, bool) or not isinstance(global_loss, int | float | np.floating):
        raise ValueError(f"global_loss must be a number, got {global_loss!r}")
    global_loss = float(global_loss)
    if not math.isfinite(global_loss):
        raise ValueError(f"global_loss must be finite, got {global_loss!r}")
    labels = jnp.asarray(labels)
    n, d = shape[-2:]
    N = n * (d - 1)
    method = settings.method
    if method == "auto":
        method = "dense" if N <= settings.dense_max_dim else "lanczos"
    single = len(shape) == 2

    if method == "dense":
        data, eigs = _classify_dense(H, labels, tau, settings.rank_rtol)
        eigs = np.asarray(eigs).reshape(-1, N)
    else:
        key = jax.random.key(0) if key is None else key
        m = lanczos_steps(shape, True, settings.num_iter)
        data, ext = _classify_lanczos(H, labels, tau, key, settings.rank_rtol, m)
        ritz_values = np.asarray(ext.ritz_values).reshape(-1, m)
    value, grad_norm, rank, cert_lambda, cert_gap = (np.asarray(x, np.float64).reshape(-1) for x in data)
    rank = rank.astype(np.int64)
    predicted = np.array([predicted_zero_modes(int(r), d) for r in rank], dtype=np.int64)

    if method == "dense":
        scale = np.max(np.abs(eigs), axis=1)
        tol = np.maximum(settings.rtol * scale, settings.grad_factor * np.minimum(grad_norm, settings.gtol))
        index = np.sum(eigs < -tol[:, None], axis=1)
        n_zero = np.sum(np.abs(eigs) <= tol[:, None], axis=1)
        rows = np.arange(eigs.shape[0])
        lambda_min = np.where(index > 0, eigs[:, 0], eigs[rows, np.minimum(predicted, N - 1)])
        lambda_max = eigs[:, -1]
        residual = np.zeros_like(lambda_min)
    else:
        lambda_min = np.asarray(ext.lambda_min, np.float64).reshape(-1)
        lambda_max = np.asarray(ext.lambda_max, np.float64).reshape(-1)
        scale = np.maximum(np.abs(lambda_min), np.abs(lambda_max))
        tol = np.maximum(settings.rtol * scale, settings.grad_factor * np.minimum(grad_norm, settings.gtol))
        index = np.sum(ritz_values < -tol[:, None], axis=1)
        n_zero = predicted + np.sum(np.abs(ritz_values) <= tol[:, None], axis=1)
        residual = np.asarray(ext.residual_min, np.float64).reshape(-1)

    loss_scale = max(1.0, abs(global_loss))
    finite = np.isfinite(value) & np.isfinite(grad_norm) & np.isfinite(lambda_min) & np.isfinite(lambda_max)
    converged = finite & (grad_norm <= settings.gtol)
    certified = (cert_gap <= settings.cert_rtol * loss_scale) | (
        np.abs(value - global_loss) <= settings.gap_rtol * loss_scale
    )
    extra = n_zero > predicted
    kind = metrics.decide_kinds(converged, certified, index, extra)

    def out(x):
        return _unbatch(x, single)

    return Classification(
        kind=out(kind),
        index=out(index),
        index_exact=method == "dense",
        lambda_min=out(lambda_min),
        lambda_max=out(lambda_max),
        tol=out(tol),
        n_zero=out(n_zero),
        n_zero_predicted=out(predicted),
        rank=out(rank),
        degenerate_zeros=out(extra),
        grad_norm=out(grad_norm),
        loss=out(value),
        global_loss=global_loss,
        cert_lambda=out(cert_lambda),
        cert_gap_bound=out(cert_gap),
        certified=out(certified),
        eig_residual=out(residual),
        method=method,
        settings=settings,
    )


# --------------------------------------------------------------------------
# Escape directions


class Escape(NamedTuple):
    """The most negative eigenvalue and its unit tangent eigenvector ``(n, d)`` (Frobenius norm 1)."""

    eigenvalue: jax.Array
    direction: jax.Array


def _escape_dense(H, labels, tau):
    H = oblique.normalize_rows(H)
    n, d = H.shape
    w, S = jnp.linalg.eigh(hessian_matrix(H, labels, tau))
    V = to_ambient(tangent_basis(H), S[:, 0].reshape(n, d - 1))
    return Escape(w[0], V / jnp.linalg.norm(V))


def escape_direction(H, labels, tau, *, method: str = "auto", num_iter: int = 300, key=None) -> Escape:
    """Unit tangent eigenvector of the most negative Hessian eigenvalue (a saddle's escape direction).

    Dense ``eigh`` when ``n(d-1) <= DENSE_MAX_DIM`` (``method="auto"``), else
    Lanczos with the symmetry modes deflated. Check it with ``escape_decrease``.
    ``(runs, n, d)`` batches.
    """
    shape = problems.check_points(H, labels, tau)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        method = "dense" if shape[-2] * (shape[-1] - 1) <= DENSE_MAX_DIM else "lanczos"
    if method == "lanczos":
        out = lanczos_extremes(H, labels, tau, num_iter=num_iter, key=key)
        return Escape(out.lambda_min, out.vector_min)
    return _escape_dense_jit(jnp.asarray(H), jnp.asarray(labels), tau)


@jax.jit
def _escape_dense_jit(H, labels, tau):
    return map_points(_escape_dense, H, labels, tau)


class EscapeCheck(NamedTuple):
    """``decrease = L(H) - L(R_H(step V))`` at the best ``step`` (signed) of the grid tried."""

    decrease: jax.Array
    step: jax.Array
    loss: jax.Array
    loss_after: jax.Array


@jax.jit
def _escape_decrease(H, labels, tau, V, steps):
    H = oblique.normalize_rows(H)
    V = oblique.project_tangent(H, V)
    V = V / jnp.linalg.norm(V)
    base = loss.sum_loss(H, labels, tau)
    signed = jnp.concatenate([steps, -steps])
    after = jax.vmap(lambda t: loss.sum_loss(oblique.retract(H, t * V), labels, tau))(signed)
    best = jnp.argmin(after)
    return EscapeCheck(base - after[best], signed[best], base, after[best])


def escape_decrease(H, labels, tau, V, *, steps=None) -> EscapeCheck:
    """How much a retraction step ``R_H(+-t V)`` along the unit tangent ``V`` lowers the loss.

    Tries ``t`` in ``steps`` (default ``2^0, 2^-1, ..., 2^-30``), both signs,
    and returns the largest decrease with its signed step; a positive
    ``decrease`` confirms ``V`` as a descent (escape) direction. One ``H``.
    """
    shape = problems.check_points(H, labels, tau)
    if len(shape) != 2 or np.shape(V) != shape:
        raise ValueError(f"H and V must both have shape (n, d); got {shape} and {np.shape(V)}")
    steps = 2.0 ** -np.arange(31) if steps is None else np.asarray(steps, dtype=float).reshape(-1)
    if steps.size == 0 or not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        raise ValueError("steps must be a non-empty list of positive finite step sizes")
    H = jnp.asarray(H)
    return _escape_decrease(H, jnp.asarray(labels), tau, jnp.asarray(V, H.dtype), jnp.asarray(steps, H.dtype))
