r"""The verdict on a point: global minimum, spurious or local minimum, saddle, degenerate, not converged.

One rule (``metrics.decide_kinds``), applied to tests taken in float64 in
this order, the first that decides wins and is recorded as ``decided_by``
(``docs/maths.md`` §5 derives every tolerance):

1. ``gradient``: ``|grad L| > gtol`` (or a NaN) -> ``not_converged``.
2. ``certificate`` (only when ``d >= rank M*``, where ``L*`` is attainable):
   the convexity bound ``L(H) - L* <= min(gap_bound, <F, G - G*>)`` plus its
   rounding is within the *gap tolerance* -> ``global_min``.
3. ``gap`` (same condition): ``|L(H) - L*|`` within the gap tolerance
   ``eps_gap = err(L(H)) + err(L*) + 2 sqrt(n) |grad L|`` (what float64 can
   resolve in the loss, and what the residual gradient can account for) ->
   ``global_min``, whatever round-off curvature the point carries (at small
   ``tau`` a collapsed class makes the loss locally quartic: its Hessian is
   ``e^{-1/tau}``-small and its sign is rounding).
4. ``proof``: for a converged point that is not global, the a-posteriori
   argument of ``proof`` (a refined critical point within ``certified_radius``
   and the inertia of its Hessian on the orbit complement) -> ``saddle`` with
   its index, or a strict local minimum: ``spurious_min`` (``d >= rank M*``)
   or ``local_min`` (``d < rank M*``: there is no global reference).
5. ``spectrum``: otherwise, the eigenvalues of the Hessian with the symmetry
   modes ``{H Omega}`` projected out, against the smallest self-consistent
   ``tol >= tol_round + tol_grad(tol)`` (``spectrum_tolerance``): the rounding
   bound of the computed Hessian, and how far the residual gradient can move
   an eigenvalue (``L3`` times the Newton step along the eigenvalues above
   ``tol``; never more than the spectrum's own scale). An eigenvalue
   below ``-tol`` -> ``saddle``; one within ``tol`` of zero -> ``degenerate``;
   all above ``tol`` -> ``spurious_min`` / ``local_min``.

Below ``rank M*`` each local minimum also gets the **lifting test**: padded
with a zero column, it is a critical point of the ``d + 1`` problem, and a
minimum that is not the global one of the relaxation must be a saddle there
(the new directions carry the dual slack ``S``); the lifted index is reported.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import compilation, precision, problems
from sclandscape.numerics import loss, oblique, optim, streaming
from sclandscape.theory import certify, hessian, metrics, optimum, proof

METHODS = hessian.METHODS
DECIDERS = metrics.DECIDERS


@dataclasses.dataclass(frozen=True)
class ClassifySettings:
    """What ``classify`` does (recorded with every result). Its tolerances are derived, not set.

    Attributes:
      gtol: a point is ``not_converged`` when its Riemannian gradient norm
        (sum-form loss, absolute) exceeds ``gtol`` (a scan passes ``10 * tol``).
      method: ``"dense"`` (closed-form Hessian and ``eigh``), ``"lanczos"``
        (Hessian-vector products, the symmetry modes deflated; Ritz values, so
        the index is a lower bound and no proof is attempted), or ``"auto"``
        (dense when ``n(d-1) <= dense_max_dim``).
      num_iter: Lanczos steps per point.
      rank_rtol: numerical rank of ``H`` (``oblique.RANK_RTOL``).
      prove: attempt the a-posteriori proof for converged points that are not global.
      lift: run the lifting test on local minima below ``rank M*``.
    """

    gtol: float = 1e-4
    method: str = "auto"
    dense_max_dim: int = hessian.DENSE_MAX_DIM
    num_iter: int = 300
    rank_rtol: float = oblique.RANK_RTOL
    prove: bool = True
    lift: bool = True

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("gtol", "rank_rtol"),
            integers={"dense_max_dim": 1, "num_iter": 1},
            choices={"method": METHODS},
        )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


#: The per-point fields of a ``Classification`` (arrays over points when batched).
FIELDS = (
    "kind",
    "decided_by",
    "index",
    "n_zero",
    "n_zero_predicted",
    "lambda_min",
    "lambda_max",
    "tol",
    "tol_round",
    "tol_grad",
    "flat_dim",
    "flat_scale",
    "sigma",
    "critical_distance",
    "refined_radius",
    "rank",
    "degenerate_zeros",
    "grad_norm",
    "loss",
    "gap",
    "gap_tol",
    "cert_lambda",
    "cert_gap_bound",
    "cert_linear_bound",
    "certified",
    "strict_certified",
    "certified_radius",
    "proof_reason",
    "lifted_index",
    "symmetry_coupling",
    "eig_residual",
)


@dataclasses.dataclass(frozen=True)
class Classification:
    """What ``classify`` found: the fields of ``FIELDS`` (scalars for one point, arrays over a batch).

    - ``kind`` (``metrics.KINDS``) and ``decided_by`` (``DECIDERS``);
    - ``index``: negative eigenvalues beyond the symmetry modes (certified
      when ``decided_by == "proof"``; a lower bound on the Lanczos path);
      ``n_zero``: zero eigenvalues, the ``n_zero_predicted`` symmetry modes
      (removed as a subspace) plus those of the complement within ``tol``;
      ``lambda_min``: the smallest eigenvalue beyond the symmetry modes;
    - ``tol``: the eigenvalue tolerance (``spectrum_tolerance``: the smallest
      ``t >= tol_round + tol_grad(t)``), its parts ``tol_round`` (rounding)
      and ``tol_grad`` (the residual gradient), ``flat_dim`` (eigenvalues
      within ``tol`` beyond the symmetry modes) and ``flat_scale`` (the
      largest of them in modulus), ``sigma`` (the smallest resolved
      ``|lambda|``); after a closed proof, the proof's error budget;
    - ``critical_distance``: a critical point lies within this of the given
      point (the proof's radius, or ``2 |A^+ g|`` to first order when the
      spectrum decided with no zero; ``inf`` otherwise); ``refined_radius``:
      the same from ``refined``;
    - ``gap = loss - L*`` and ``gap_tol``, the gap tolerance of test 3;
    - the certificate: ``cert_lambda`` (``lambda_min(S)``), ``cert_gap_bound``
      (solver-free) and ``cert_linear_bound`` (``<F, G - G*>``, NaN when
      ``L*`` is not attainable); ``certified``: test 2 passed;
    - ``strict_certified``/``certified_radius``/``proof_reason``: the proof;
    - ``lifted_index``: the index of the point padded to ``d + 1`` (the
      lifting test; -1 when not run);
    - ``symmetry_coupling``: ``|Hess Z|_F`` of the symmetry modes ``Z`` (0 at
      an exact critical point: a diagnostic of the residual gradient).

    ``global_loss``, ``global_loss_error``, ``global_rank``, ``attainable``
    (``d >= rank M*``), ``index_exact``, ``method`` and ``settings`` describe
    the whole call.
    """

    kind: object
    decided_by: object
    index: object
    n_zero: object
    n_zero_predicted: object
    lambda_min: object
    lambda_max: object
    tol: object
    tol_round: object
    tol_grad: object
    flat_dim: object
    flat_scale: object
    sigma: object
    critical_distance: object
    refined_radius: object
    rank: object
    degenerate_zeros: object
    grad_norm: object
    loss: object
    gap: object
    gap_tol: object
    cert_lambda: object
    cert_gap_bound: object
    cert_linear_bound: object
    certified: object
    strict_certified: object
    certified_radius: object
    proof_reason: object
    lifted_index: object
    symmetry_coupling: object
    eig_residual: object
    global_loss: float
    global_loss_error: float
    global_rank: int
    attainable: bool
    index_exact: bool
    method: str
    settings: ClassifySettings
    #: The point each verdict is about, ``(n, d)`` or ``(runs, n, d)``: the proof's refined critical
    #: point (float64) where a proof closed, else the given point normalised; a critical point lies
    #: within ``refined_radius`` of it (``inf`` where flat directions leave that open).
    refined: np.ndarray | None = None

    def to_json(self) -> dict:
        out = {}
        for field in dataclasses.fields(self):
            if field.name == "refined":  # an array of points, not a verdict field
                continue
            value = getattr(self, field.name)
            if isinstance(value, ClassifySettings):
                value = value.to_json()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, np.generic):
                value = value.item()
            out[field.name] = value
        return out

    def point(self, i: int) -> dict:
        """The per-point fields of point ``i`` of a batch as a JSON-ready dict."""
        out = {}
        for name in FIELDS:
            value = np.asarray(getattr(self, name))
            value = value.reshape(-1)[i] if value.ndim else value
            out[name] = value.item() if isinstance(value, np.generic | np.ndarray) else value
        return out


# --------------------------------------------------------------------------
# The float64 data of one point


class PointData(NamedTuple):
    """Everything the rules need about one point (traced; a leading axis when batched)."""

    loss: jax.Array
    loss_rounding: jax.Array
    grad_norm: jax.Array
    rank: jax.Array
    n_sym: jax.Array
    sigma_rank: jax.Array  # the smallest singular value of H counted in its rank
    cert: certify.Certificate
    linear_bound: jax.Array
    linear_rounding: jax.Array
    eigs: jax.Array  # (N,) the spectrum on the orbit complement ascending, then +inf for the symmetry slots
    tol_round: jax.Array
    grad_coeff: jax.Array  # (N,) the gradient's coordinates in the eigenbasis (as ``eigs``)
    hess_norm: jax.Array  # |Hess|_F
    coupling: jax.Array  # |Hess Z|_F


def _dense_one(H, labels, tau, G_star, rank_rtol, vectors: bool):
    """``PointData`` of one ``H`` on the dense path (and, with ``vectors``, the eigenvectors and basis)."""
    H = oblique.normalize_rows(H)
    n, d = H.shape
    N = n * (d - 1)
    value, egrad = jax.value_and_grad(loss.sum_loss)(H, labels, tau)
    grad = oblique.riemannian_gradient(H, egrad)
    sigma = jnp.linalg.svd(H, compute_uv=False)
    rank = oblique.rank_of_singular_values(sigma, rank_rtol)
    sigma_rank = jnp.min(jnp.where(jnp.arange(sigma.shape[0]) < rank, sigma, jnp.inf))
    cert = certify.dense(H, labels, tau)
    linear, linear_rounding = certify.linear_gap_bound(H, labels, tau, G_star)
    M = hessian.hessian_matrix(H, labels, tau)
    M_abs = hessian.hessian_matrix(H, labels, tau, absolute=True)
    U = oblique.tangent_basis(H)
    Z, count = oblique.symmetry_basis(H, rank_rtol)
    Zc = oblique.to_coordinates(U[None], Z).reshape(Z.shape[0], N)  # orthonormal rows (or zero)
    sym = Zc.T @ Zc  # the projector on the symmetry modes
    P = jnp.eye(N, dtype=H.dtype) - sym
    shift = 2.0 * jnp.linalg.norm(M) + 1.0
    # The symmetry modes are moved to `shift` (above every eigenvalue of M): the rest is the
    # spectrum of M on their orthogonal complement, exactly (P M P and sym commute).
    w, V = jnp.linalg.eigh(P @ M @ P + shift * sym)
    complement = w < 0.5 * shift
    eigs = jnp.where(complement, w, jnp.inf)
    coeff = V.T @ oblique.to_coordinates(U, grad).reshape(N)
    data = PointData(
        value,
        loss.rounding_bound(H, labels, tau),
        jnp.linalg.norm(grad),
        rank,
        count,
        sigma_rank,
        cert,
        linear,
        linear_rounding,
        eigs,
        hessian.hessian_rounding_bound(H, labels, tau, M, M_abs),
        coeff,
        jnp.linalg.norm(M),
        jnp.linalg.norm(M @ Zc.T),
    )
    return (data, w, V, U) if vectors else data


def _dense_points(H, labels, tau, G_star, rank_rtol):
    return oblique.map_points(lambda h: _dense_one(h, labels, tau, G_star, rank_rtol, True), H)


#: ``(H, labels, tau, G*, rank_rtol) -> (PointData, w, V, U)`` per point, kept traced on disk.
_DENSE = compilation.Program(_dense_points, "verdict-dense", namedtuples=(PointData, certify.Certificate))


def _dense_batch(H, labels, tau, G_star, rank_rtol):
    """``PointData``, eigenvalues, eigenvectors and tangent bases of the points ``H`` (float64, dense)."""
    return _DENSE(H, labels, jnp.float64(tau), G_star, jnp.float64(rank_rtol))


def _lanczos_one(H, labels, tau, key, num_iter, rank_rtol):
    H = oblique.normalize_rows(H)
    stream = streaming.use_streaming(H.shape[0])
    value, egrad = jax.value_and_grad(streaming.loss_fn(labels, tau, stream=stream))(H)
    grad = oblique.riemannian_gradient(H, egrad)
    sigma = jnp.linalg.svd(H, compute_uv=False)
    rank = oblique.rank_of_singular_values(sigma, rank_rtol)
    cert = certify.of_point(H, labels, tau, stream=stream)
    ext = hessian.extremes_one(H, labels, tau, key, num_iter, True, rank_rtol)
    return value, jnp.linalg.norm(grad), rank, cert, ext


@functools.partial(jax.jit, static_argnames="num_iter")
def _lanczos_batch(H, labels, tau, key, num_iter, rank_rtol):
    return oblique.map_points(lambda h, k: _lanczos_one(h, labels, tau, k, num_iter, rank_rtol), H, keys=key)


# --------------------------------------------------------------------------
# The rule


#: Riemannian trust regions that take a minimum's float64 gradient to its rounding floor before a proof.
POLISH = optim.TrustRegionSettings(gtol=1e-300, max_iter=200, min_reduction=1e-14)


@functools.partial(jax.jit, static_argnames="settings")
def _polish(H, labels, tau, settings):
    cost = lambda X: loss.sum_loss(X, labels, tau)  # noqa: E731
    return optim.trust_region(cost, H, settings).x


def _polish_minimum(H: np.ndarray, labels, tau) -> np.ndarray:
    """``H`` minimised further in float64 (``POLISH``: until the trust region stalls at rounding)."""
    with precision.float64():
        return np.asarray(_polish(jnp.asarray(H, jnp.float64), labels, jnp.float64(tau), POLISH))


def _local(H: np.ndarray, *, labels, tau, G, rank_rtol) -> proof.Local:
    """The float64 dense analysis of one point, as ``proof.Local`` (its Newton step included)."""
    n, d = H.shape
    one = _dense_batch(jnp.asarray(H[None], jnp.float64), labels, tau, G, rank_rtol)
    data, w, V, U = (jax.tree.map(lambda a: np.asarray(a)[0], part) for part in one)
    complement = np.isfinite(data.eigs)
    order = np.argsort(w)  # eigh's order: the complement's eigenvalues first, then the shifted modes
    Vc, wc = V[:, order][:, : int(np.sum(complement))], w[order][: int(np.sum(complement))]

    def step(g):
        c = np.einsum("ndk,nd->nk", U, g).reshape(-1)
        y = Vc @ ((Vc.T @ c) / wc)
        return -np.einsum("ndk,nk->nd", U, y.reshape(n, d - 1))

    return proof.Local(
        data.eigs[complement],
        float(data.tol_round),
        float(data.hess_norm),
        float(data.grad_norm),
        float(data.sigma_rank),
        step,
    )


def _lift(H: np.ndarray) -> np.ndarray:
    """``[H, 0]``: the point as a critical point of the ``d + 1`` problem (same loss, same gradient)."""
    return np.concatenate([H, np.zeros(H.shape[:-1] + (1,))], axis=-1)


def classify(
    H,
    labels,
    tau,
    *,
    optimum_: optimum.GlobalOptimum | None = None,
    global_loss=None,
    settings: ClassifySettings = ClassifySettings(),
    key=None,
) -> Classification:
    """The verdict on each point (module docstring), computed in float64 inside ``precision.float64()``.

    Args:
      H: ``(n, d)`` or ``(runs, n, d)``; rows are normalised. ``d >= 2``.
      labels, tau: the problem.
      optimum_: the problem's ``optimum.GlobalOptimum`` (default: solved here);
        it gives ``L*``, its error, ``rank M*`` and ``G*``.
      global_loss: an explicit ``L*`` instead (then ``L*``'s error is taken as
        its rounding and ``G*`` as unknown: no linear certificate bound).
      settings: ``ClassifySettings``.
      key: PRNG key for Lanczos start vectors.

    Returns a ``Classification``. Bad input raises ``ValueError``.
    """
    shape = problems.check_points(H, labels, tau)
    if not isinstance(settings, ClassifySettings):
        raise ValueError(f"settings must be a ClassifySettings, got {type(settings).__name__}")
    tau = problems.check_tau(tau)
    counts = problems.counts_from_labels(labels)
    if global_loss is not None:
        if isinstance(global_loss, bool) or not isinstance(global_loss, int | float | np.floating):
            raise ValueError(f"global_loss must be a number, got {global_loss!r}")
        if not math.isfinite(float(global_loss)):
            raise ValueError(f"global_loss must be finite, got {global_loss!r}")
    with precision.float64():
        if optimum_ is None:
            optimum_ = optimum.global_optimum(counts, tau)
        return _classify(
            np.asarray(H, np.float64), np.asarray(labels), tau, shape, optimum_, global_loss, settings, key
        )


class SpectrumTolerance(NamedTuple):
    """The eigenvalue tolerance of test 5 and its terms (``spectrum_tolerance``)."""

    tol: float  # eigenvalues with |lambda| <= tol are zero
    tol_round: float  # what float64 resolves in the computed spectrum
    tol_grad: float  # L3 |A_>tol^+ g|: how far the residual gradient moves a resolved eigenvalue
    zeros: int  # eigenvalues within tol (beyond the symmetry modes): the flat dimension
    flat_scale: float  # the largest |lambda| called zero (0 when none)
    sigma: float  # the smallest |lambda| beyond tol (inf when none)
    newton: float  # |A_>tol^+ g|: the distance to the critical point along the resolved directions


def spectrum_tolerance(
    eigs, tol_round: float, L3: float, *, coeffs=None, grad_norm=None
) -> SpectrumTolerance:
    r"""The smallest self-consistent zero tolerance of a spectrum on the orbit complement (maths §5).

    With ``A_>t`` the Hessian restricted to its eigenvalues above ``t`` in
    modulus, the residual gradient ``g`` lies within ``|A_>t^+ g|`` of a
    critical point along those directions (first order), and an eigenvalue
    moves by at most ``L3`` times that distance. The tolerance is the smallest

        t >= tol_round   with   tol_round + L3 |A_>t^+ g| <= t,

    so an eigenvalue is resolved only when it is larger than what the
    displacement it implies can move it. Eigenvalues within ``t`` carry no
    Newton step: the gradient term never exceeds the spectrum's own scale, and
    ``t <= max(tol_round, max |lambda|)`` always. ``coeffs``: the gradient's
    coordinates in the eigenbasis (dense path); without them (Lanczos: Ritz
    values only) ``|A_>t^+ g| <= |g| / min_{|lambda| > t} |lambda|``.
    """
    eigs = np.asarray(eigs, np.float64).reshape(-1)
    a = np.abs(eigs)
    order = np.argsort(a)
    a = a[order]
    N = a.size
    with np.errstate(divide="ignore", invalid="ignore"):
        if coeffs is not None:
            q = (np.asarray(coeffs, np.float64).reshape(-1)[order] / a) ** 2
            tail = np.sqrt(np.concatenate([np.cumsum(q[::-1])[::-1], [0.0]]))
        else:
            tail = np.concatenate([float(grad_norm) / a, [0.0]])
    for m in range(N + 1):
        newton = float(tail[m]) if math.isfinite(tail[m]) else math.inf
        t = max(tol_round + L3 * newton, float(a[m - 1]) if m else 0.0, tol_round)
        if m == N or t < a[m]:
            return SpectrumTolerance(
                t,
                tol_round,
                L3 * newton,
                m,
                float(a[m - 1]) if m else 0.0,
                float(a[m]) if m < N else math.inf,
                newton,
            )
    raise AssertionError("unreachable: m = N always returns")


def first_tests(
    loss_value,
    loss_rounding,
    grad_norm,
    cert_bound,
    linear_bound,
    *,
    n,
    gtol,
    L_star,
    L_err,
    attainable,
    ok=True,
):
    """Tests 1-3 on arrays (or scalars): ``(converged, certified, at_gap, gap_tol)`` (module docstring).

    ``cert_bound``: the solver-free bound plus its rounding (``gap_bound + n
    err(lambda_min(S))``); ``linear_bound``: ``<F, G - G*>`` plus its rounding
    (NaN when unknown); ``ok``: the run's own status allows convergence.
    ``at_gap`` excludes points the certificate already decided.
    """
    g = np.asarray(grad_norm, np.float64)
    value = np.asarray(loss_value, np.float64)
    gap_tol = metrics.gap_tolerance(loss_rounding, L_err, n, g)
    converged = np.asarray(ok) & np.isfinite(value) & (g <= gtol)
    linear = np.where(np.isnan(linear_bound), np.inf, linear_bound)
    certified = bool(attainable) & converged & (np.minimum(cert_bound, linear) <= gap_tol)
    at_gap = bool(attainable) & converged & ~certified & (np.abs(value - L_star) <= gap_tol)
    return converged, certified, at_gap, gap_tol


class _Reference(NamedTuple):
    """What one call judges against: ``L*``, its error, ``G*`` (or None), attainability, ``L3``."""

    L_star: float
    L_err: float
    G_star: np.ndarray | None
    attainable: bool
    L3: float


def _spectral_data(H, labels, tau, method, settings, ref: _Reference, key) -> list[dict]:
    """Per point: loss, gradient, rank, certificate, the spectrum and its tolerance (float64)."""
    runs, n, d = H.shape
    N = n * (d - 1)
    eps = float(np.finfo(np.float64).eps)
    jl = jnp.asarray(labels)
    points = []
    if method == "dense":
        # One point at a time through one compiled program per (n, d): the proof needs the
        # eigenvectors anyway, and a batch would compile a second program per batch size.
        G_arg = jnp.asarray(np.zeros((n, n)) if ref.G_star is None else ref.G_star, jnp.float64)
        for r in range(runs):
            one = _dense_batch(jnp.asarray(H[r : r + 1]), jl, tau, G_arg, settings.rank_rtol)
            data = jax.tree.map(lambda a: np.asarray(a)[0], one[0])
            finite = np.isfinite(data.eigs)
            eigs = data.eigs[finite]
            points.append(
                {
                    "loss": float(data.loss),
                    "grad_norm": float(data.grad_norm),
                    "loss_rounding": float(data.loss_rounding),
                    "rank": int(data.rank),
                    "n_sym": int(data.n_sym),
                    "cert": jax.tree.map(float, data.cert),
                    "linear": float(data.linear_bound) if ref.G_star is not None else math.nan,
                    "linear_rounding": float(data.linear_rounding) if ref.G_star is not None else math.nan,
                    "eigs": eigs,
                    "spectrum": spectrum_tolerance(
                        eigs, float(data.tol_round), ref.L3, coeffs=data.grad_coeff[finite]
                    ),
                    "coupling": float(data.coupling),
                    "residual": 0.0,
                }
            )
        return points
    key = jax.random.key(0) if key is None else key
    m = hessian.lanczos_steps(H.shape, True, settings.num_iter)
    value, gnorm, rank, cert, ext = jax.tree.map(
        np.asarray, _lanczos_batch(jnp.asarray(H), jl, tau, key, m, settings.rank_rtol)
    )
    for r in range(runs):
        eigs = np.asarray(ext.ritz_values[r])
        scale = float(np.max(np.abs(eigs))) if eigs.size else 0.0
        tol_round = (N + 4 * n + 8 / tau) * eps * scale * math.sqrt(N)
        v = float(value[r])
        points.append(
            {
                "loss": v,
                "grad_norm": float(gnorm[r]),
                "loss_rounding": 8 * eps * (abs(v) + n * n / tau),  # no closed form here: a generous bound
                "rank": int(rank[r]),
                "n_sym": oblique.predicted_zero_modes(int(rank[r]), d),
                "cert": jax.tree.map(lambda a, r=r: float(a[r]), cert),
                "linear": math.nan,
                "linear_rounding": math.nan,
                "eigs": eigs,
                "spectrum": spectrum_tolerance(eigs, tol_round, ref.L3, grad_norm=float(gnorm[r])),
                "coupling": math.nan,
                "residual": float(ext.residual_min[r]),
            }
        )
    return points


def _prove(H, labels, tau, eigs, settings, G_arg) -> proof.Proof:
    """The a-posteriori proof of one converged non-global point (maths §5, test 4)."""
    jl = jnp.asarray(labels)
    given = H / np.linalg.norm(H, axis=1, keepdims=True)
    analyse = functools.partial(_local, labels=jl, tau=tau, G=G_arg, rank_rtol=settings.rank_rtol)
    result = proof.prove(given, labels, tau, analyse)
    if not result.closed and eigs.size and float(np.min(eigs)) > 0:
        # A minimum by its float64 spectrum whose Newton refinement could not start (a gradient
        # left by the scan's tolerance, outside Newton's basin at small tau): minimise further
        # in float64 and prove from there. The critical point then lies within the distance
        # moved plus the proof's radius of the given point.
        polished = _polish_minimum(given, jl, tau)
        retry = proof.prove(polished, labels, tau, analyse)
        if retry.closed:
            moved = float(np.linalg.norm(polished - given))
            result = retry._replace(radius=retry.radius + moved)
    return result


def _judge_point(
    H, data: dict, labels, tau, method, settings, ref: _Reference, G_arg
) -> tuple[dict, np.ndarray]:
    """The verdict fields of one point (tests in order, the first that decides wins) and its refined point."""
    n = H.shape[0]
    spec: SpectrumTolerance = data["spectrum"]
    eigs = data["eigs"]
    cert = data["cert"]
    value, g = data["loss"], data["grad_norm"]
    finite = bool(np.all(np.isfinite(eigs)))
    *tests, gap_tol = first_tests(
        value,
        data["loss_rounding"],
        g,
        cert.gap_bound + n * cert.rounding,
        data["linear"] + data["linear_rounding"],
        n=n,
        gtol=settings.gtol,
        L_star=ref.L_star,
        L_err=ref.L_err,
        attainable=ref.attainable,
        ok=finite,
    )
    converged, certified, at_gap = (bool(x) for x in tests)
    tol, tol_round, tol_grad, zeros = spec.tol, spec.tol_round, spec.tol_grad, spec.zeros
    index = int(np.sum(eigs < -tol))
    distance = 2.0 * spec.newton if zeros == 0 else math.inf
    refined = H / np.linalg.norm(H, axis=1, keepdims=True)
    refined_radius = distance
    strict, radius, reason, lambda_proof = False, math.inf, "not attempted", None
    if not converged:
        decided = "gradient"
    elif certified:
        decided = "certificate"
    elif at_gap:
        decided = "gap"
    else:
        decided = "spectrum"
        if method == "dense" and settings.prove:
            result = _prove(H, labels, tau, eigs, settings, G_arg)
            reason = result.reason
            if math.isfinite(result.lambda_min):
                lambda_proof = result.lambda_min
            if result.closed:
                decided = "proof"
                index, zeros, tol = result.index, 0, result.eigenvalue_error
                tol_round, tol_grad = result.eigenvalue_error, 0.0
                radius = distance = result.radius
                refined, refined_radius = result.point, result.point_radius
                strict = result.index == 0
    kind = str(
        metrics.decide_kinds(
            [converged], [certified or at_gap], [index], [zeros > 0], attainable=ref.attainable
        )[0]
    )
    beyond = np.sort(eigs)
    lambda_min = float(beyond[0]) if beyond.size else math.nan
    if decided == "proof":
        lambda_min = lambda_proof  # at the refined critical point
    values = {
        "kind": kind,
        "decided_by": decided,
        "index": index,
        "n_zero": data["n_sym"] + zeros,
        "n_zero_predicted": data["n_sym"],
        "lambda_min": lambda_min,
        "lambda_max": float(beyond[-1]) if beyond.size else math.nan,
        "tol": tol,
        "tol_round": tol_round,
        "tol_grad": tol_grad,
        "flat_dim": zeros,
        "flat_scale": spec.flat_scale if zeros else 0.0,
        "sigma": spec.sigma,
        "critical_distance": distance if converged else math.inf,
        "refined_radius": refined_radius if converged else math.inf,
        "rank": data["rank"],
        "degenerate_zeros": zeros > 0,
        "grad_norm": g,
        "loss": value,
        "gap": value - ref.L_star,
        "gap_tol": float(gap_tol),
        "cert_lambda": cert.lambda_min,
        "cert_gap_bound": cert.gap_bound,
        "cert_linear_bound": data["linear"],
        "certified": certified,
        "strict_certified": strict,
        "certified_radius": radius,
        "proof_reason": reason,
        "lifted_index": -1,
        "symmetry_coupling": data["coupling"],
        "eig_residual": data["residual"],
    }
    return values, refined


def _classify(H, labels, tau, shape, opt, global_loss, settings, key) -> Classification:
    single = len(shape) == 2
    Hb = H[None] if single else H
    runs, (n, d) = Hb.shape[0], shape[-2:]
    N = n * (d - 1)
    eps = float(np.finfo(np.float64).eps)
    method = settings.method
    if method == "auto":
        method = "dense" if N <= settings.dense_max_dim else "lanczos"
    if global_loss is None:
        # G* is n x n: only the dense path uses it (3.2 GB at n = 20,000, where Lanczos runs).
        ref = _Reference(
            opt.loss, opt.loss_error, opt.gram() if method == "dense" else None, d >= opt.rank, 0.0
        )
    else:
        L_star = float(global_loss)
        ref = _Reference(L_star, 8 * eps * max(1.0, abs(L_star)), None, d >= opt.rank, 0.0)
    ref = ref._replace(L3=proof.third_derivative_bound(n, tau))
    G_arg = jnp.asarray(np.zeros((n, n)) if ref.G_star is None else ref.G_star, jnp.float64)
    out = {name: [None] * runs for name in FIELDS}
    refined = np.empty_like(Hb)
    for r, data in enumerate(_spectral_data(Hb, labels, tau, method, settings, ref, key)):
        values, refined[r] = _judge_point(Hb[r], data, labels, tau, method, settings, ref, G_arg)
        for name in FIELDS:
            out[name][r] = values[name]
    kinds = np.asarray(out["kind"])
    lift = [r for r in range(runs) if kinds[r] == "local_min"] if settings.lift else []
    if lift:
        lifted = _classify(
            _lift(Hb[lift]),
            labels,
            tau,
            (len(lift), n, d + 1),
            opt,
            global_loss,
            dataclasses.replace(settings, lift=False),
            key,
        )
        for j, r in enumerate(lift):
            out["lifted_index"][r] = int(np.asarray(lifted.index).reshape(-1)[j])

    arrays = {name: np.asarray(values) for name, values in out.items()}
    arrays["kind"] = arrays["kind"].astype("<U13")
    arrays["decided_by"] = arrays["decided_by"].astype("<U11")

    def unbatch(a):
        return a.reshape(-1)[0].item() if single else a

    return Classification(
        **{name: unbatch(arrays[name]) for name in FIELDS},
        global_loss=float(ref.L_star),
        global_loss_error=float(ref.L_err),
        global_rank=int(opt.rank),
        attainable=bool(ref.attainable),
        index_exact=method == "dense",
        method=method,
        settings=settings,
        refined=refined[0] if single else refined,
    )
