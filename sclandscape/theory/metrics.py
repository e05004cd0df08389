r"""Geometry of a configuration and the one classification rule (docs/maths.md §3, §4).

**Kinds.** ``KINDS`` is the one list of verdicts a point can get, and
``decide_kinds`` the one rule that turns the tests into a verdict (used by
``verdict.classify`` and by the scan's records).

**Geometry** of one ``H`` ``(n, d)`` with one-hot labels ``Y`` ``(n, k)``:

- class means ``mu_c = mean_{y_i = c} h_i``;
- ``class_mean_gram``: ``M(H)``, the Gram matrix of the *normalised* class
  means (what is compared with the optimum's ``M*``);
- ``class_mean_products``: ``<mu_a, mu_b>`` of the raw means (carries the
  within-class spread on its diagonal; the saddle catalogue's invariant);
- ``within_class_spread``: ``1 - mean_c |mu_c|`` (0 when every class is
  collapsed to a point);
- ``nc1``: Papyan, Han & Donoho's NC1 (PNAS 2020), ``tr(Sigma_W Sigma_B^+)/k``
  with ``Sigma_W`` the within-class and ``Sigma_B`` the between-class
  covariance of the rows (around the global mean);
- ``gram_distance``: ``|M - M*|_F / |M*|_F``;
- ``align``: the distance between two points modulo the loss's symmetry
  group (rotations and reflections, permutations of samples within a class,
  relabellings of equal-size classes), with ``procrustes``,
  ``alignment_rounding`` and ``relabel_stabilizer``; ``invariants``: what the
  whole group leaves unchanged (the spectrum of ``G = H H^T``), a sound
  filter before aligning. ``census`` decides with them which points are one.

Functions act on one configuration. On NumPy arrays they compute with NumPy
(in the input's dtype); on JAX arrays and tracers with ``jax.numpy``
(jit/vmap-safe), imported only then, so ``plots`` and ``report`` (NumPy and
matplotlib only) share ``KINDS`` and the rule without importing JAX.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np


def _xp(*arrays):
    """NumPy for NumPy inputs, ``jax.numpy`` as soon as one input is a JAX array or tracer."""
    if all(isinstance(a, np.ndarray | np.generic | float | int) for a in arrays):
        return np
    import jax.numpy as jnp

    return jnp


#: Largest number of count-preserving class permutations listed (and tried by ``align``).
MAX_PERMUTATIONS = 40320

#: Every verdict a point can get, in the order figures and tables list them. ``local_min`` is a
#: local minimum where ``d < rank M*``: the relaxation's ``L*`` is not attainable there, so a
#: minimum above it is not "spurious" (the best point of dimension ``d`` may lie above ``L*``).
KINDS = ("global_min", "spurious_min", "local_min", "saddle", "degenerate", "not_converged")
#: The tests that can decide a kind (``decided_by``), in the order ``verdict`` applies them.
DECIDERS = ("gradient", "certificate", "gap", "proof", "spectrum")


def class_means(H, onehot):
    """``(k, d)`` class means ``mu_c`` of the rows of ``H`` (``onehot`` ``(n, k)``)."""
    jnp = _xp(H, onehot)
    return (onehot.T @ H) / jnp.sum(onehot, axis=0)[:, None]


def class_mean_gram(H, onehot):
    """``M(H)``: the ``(k, k)`` Gram matrix of the normalised class means."""
    jnp = _xp(H, onehot)
    means = class_means(H, onehot)
    norms = jnp.linalg.norm(means, axis=1)
    unit = means / jnp.where(norms > 0, norms, 1.0)[:, None]
    return unit @ unit.T


def class_mean_products(H, onehot):
    """``<mu_a, mu_b>`` ``(k, k)`` of the raw class means (``|mu_c|^2`` on the diagonal)."""
    means = class_means(H, onehot)
    return means @ means.T


def within_class_spread(H, onehot):
    """``1 - mean_c |mu_c|``: 0 when every class is collapsed to one unit vector."""
    jnp = _xp(H, onehot)
    return 1.0 - jnp.mean(jnp.linalg.norm(class_means(H, onehot), axis=1))


def nc1(H, onehot):
    """Papyan et al.'s NC1 ``tr(Sigma_W Sigma_B^+) / k`` of the rows of ``H`` (0 at within-class collapse)."""
    jnp = _xp(H, onehot)
    n, k = onehot.shape
    means = class_means(H, onehot)
    centre = jnp.mean(H, axis=0)
    within = H - onehot @ means
    sigma_w = within.T @ within / n
    between = means - centre
    sigma_b = between.T @ between / k
    return jnp.trace(sigma_w @ jnp.linalg.pinv(sigma_b, hermitian=True)) / k


def gram_distance(M, M_star):
    """``|M - M*|_F / |M*|_F``."""
    jnp = _xp(M, M_star)
    return jnp.linalg.norm(M - M_star) / jnp.linalg.norm(M_star)


def gap_tolerance(loss_rounding, loss_error, n: int, grad_norm):
    r"""``eps_gap = err(L(H)) + err(L*) + 2 sqrt(n) |grad L|`` (docs/maths.md §5, tests 2 and 3).

    What float64 resolves in the loss (``loss_rounding``: ``loss.rounding_bound``),
    the error of the computed ``L*`` (``GlobalOptimum.loss_error``), and what the
    residual gradient can account for (the first-order term ``<g Q, E>`` of the
    convexity bound, ``|E|_F <= 2 sqrt(n)``). Arrays broadcast.
    """
    return np.asarray(loss_rounding) + loss_error + 2.0 * math.sqrt(n) * np.asarray(grad_norm)


def decide_kinds(converged, certified, index=None, extra_zeros=None, *, attainable=True) -> np.ndarray:
    """The one classification rule, first match wins, as a ``<U13`` array over points.

    ``not_converged`` unless ``converged``; ``global_min`` when ``certified``
    (the certificate, or the loss at ``L*`` within what float64 and the
    residual gradient resolve: tested before the curvature, whose sign at a
    degenerate global minimum is rounding); ``saddle`` when the spectrum shows
    a negative eigenvalue beyond the symmetry modes (``index > 0``);
    ``degenerate`` when it has more zero eigenvalues than symmetry modes;
    else a local minimum: ``spurious_min`` when ``attainable`` (``d >= rank
    M*``), ``local_min`` otherwise. Without a spectrum (``index`` None) an
    uncertified converged point is a local minimum until its Hessian says
    otherwise.
    """
    converged = np.asarray(converged, bool)
    certified = np.asarray(certified, bool) & bool(attainable)
    index = np.zeros(converged.shape, np.int64) if index is None else np.asarray(index)
    extra = np.zeros(converged.shape, bool) if extra_zeros is None else np.asarray(extra_zeros, bool)
    minimum = "spurious_min" if attainable else "local_min"
    kind = np.where(
        ~converged,
        "not_converged",
        np.where(
            certified,
            "global_min",
            np.where(index > 0, "saddle", np.where(extra, "degenerate", minimum)),
        ),
    )
    return np.asarray(kind).astype("<U13")


def step_blocks(M, k_maj: int) -> tuple[float, float, float]:
    """``(alpha, beta, gamma)`` of a class-mean Gram under STEP (classes ``0..k_maj-1`` majority).

    Means of the off-diagonal majority-majority entries (``alpha``),
    minority-minority entries (``beta``) and the cross block (``gamma``); NaN
    for a block that has no off-diagonal entries (one class of that kind).
    For ``M*`` the blocks are constant (block-constant: the STEP optimum).
    """
    M = np.asarray(M, np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be a square matrix, got shape {M.shape}")
    k = M.shape[0]
    if isinstance(k_maj, bool) or int(k_maj) != k_maj or not 1 <= k_maj < k:
        raise ValueError(f"k_maj must be an integer in 1..{k - 1}, got {k_maj!r}")
    k_maj = int(k_maj)
    off = ~np.eye(k, dtype=bool)
    maj = np.zeros(k, bool)
    maj[:k_maj] = True
    a = M[np.outer(maj, maj) & off]
    b = M[np.outer(~maj, ~maj) & off]
    g = M[np.outer(maj, ~maj)]
    return (
        float(a.mean()) if a.size else math.nan,
        float(b.mean()) if b.size else math.nan,
        float(g.mean()),
    )


# --------------------------------------------------------------------------
# Distance modulo the loss's symmetry group


def class_permutations(counts) -> np.ndarray | None:
    """All permutations of the classes that preserve their sizes ``(P, k)``, or ``None`` if more than
    ``MAX_PERMUTATIONS``."""
    counts = list(counts)
    blocks: dict[int, list[int]] = {}
    for c, m in enumerate(counts):
        blocks.setdefault(m, []).append(c)
    total = math.prod(math.factorial(len(b)) for b in blocks.values())
    if total > MAX_PERMUTATIONS:
        return None
    perms = []
    for choice in itertools.product(*(itertools.permutations(b) for b in blocks.values())):
        perm = np.arange(len(counts))
        for block, image in zip(blocks.values(), choice, strict=True):
            perm[block] = image
        perms.append(perm)
    return np.array(perms)


class Alignment(NamedTuple):
    """The best alignment found of ``B`` onto ``A`` (``align``)."""

    distance: float  # |A - B[rows] Q|_F: an upper bound on the distance modulo the symmetry group
    Q: np.ndarray  # (d, d) orthogonal (rotations and reflections)
    rows: np.ndarray  # (n,) the row of B matched with each row of A (within classes, after relabel)
    relabel: np.ndarray  # (k,) class c of A is matched with class relabel[c] of B


def procrustes(A, B) -> np.ndarray:
    """``Q in O(d)`` minimising ``|A Q - B|_F`` (orthogonal Procrustes): ``U V^T`` of ``A^T B = U S V^T``."""
    U, _, Vt = np.linalg.svd(np.asarray(A).T @ np.asarray(B))
    return U @ Vt


def _haar(rng, d: int) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _relabel_candidates(A, B, onehot, counts, perms, within) -> list[np.ndarray]:
    """Size-preserving relabellings worth aligning, best class-mean match first.

    A relabelling is kept when the class-mean products ``<mu_a, mu_b>`` of ``A``
    and of ``B`` relabelled agree within what a distance ``within`` allows:
    each mean moves by at most ``within / sqrt(n_c)``, so a product by at most
    ``2 w + w^2`` with ``w = within / sqrt(min n_c)`` (``within=None``: all).
    Without ``perms`` (too many to list) one relabelling, from a linear
    assignment of each block of equal-size classes on their sorted products.
    """
    Ca, Cb = class_mean_products(A, onehot), class_mean_products(B, onehot)
    if perms is not None:
        perms = np.asarray(perms)
    if perms is None:
        from scipy.optimize import linear_sum_assignment

        sigma = np.arange(len(counts))
        sizes = np.asarray(counts)
        for m in np.unique(sizes):
            block = np.flatnonzero(sizes == m)
            fa = np.sort(Ca[block], axis=1)
            fb = np.sort(Cb[block], axis=1)
            cost = np.abs(fa[:, None, :] - fb[None, :, :]).sum(axis=2) + np.abs(
                np.diag(Ca)[block][:, None] - np.diag(Cb)[block][None, :]
            )
            _, cols = linear_sum_assignment(cost)
            sigma[block] = block[cols]
        return [sigma]
    mismatch = np.max(np.abs(Cb[perms[:, :, None], perms[:, None, :]] - Ca[None]), axis=(1, 2))
    order = np.argsort(mismatch, kind="stable")
    if within is None:
        return [perms[i] for i in order]
    w = float(within) / math.sqrt(float(np.min(counts)))
    return [perms[i] for i in order if mismatch[i] <= 2.0 * w + w * w + 1e-12]


def _starts(means_a, means_b, rng, restarts: int):
    """Starting rotations: the Procrustes rotation of the class means and its ambiguous variants.

    With ``U S V^T`` the SVD of ``means_b^T means_a``, the directions whose
    singular value is below half the largest are weakly fixed by the means (at
    most ``k`` of the ``d`` are fixed at all): every sign pattern on the
    (at most four) weakest, then ``restarts`` random rotations of the weak
    subspace.
    """
    U, s, Vt = np.linalg.svd(means_b.T @ means_a)
    d = s.size
    weak = np.flatnonzero(s < 0.5 * s[0]) if s[0] > 0 else np.arange(d)
    yield U @ Vt
    flips = weak[-4:]
    for pattern in itertools.product((1.0, -1.0), repeat=flips.size):
        if all(p > 0 for p in pattern):
            continue
        sign = np.ones(d)
        sign[flips] = pattern
        yield (U * sign) @ Vt
    if weak.size > 1:
        for _ in range(restarts):
            R = np.eye(d)
            R[np.ix_(weak, weak)] = _haar(rng, weak.size)
            yield U @ R @ Vt


def _align_classes(A, B, members_a, members_b, Q, max_iter: int):
    """Alternate assignments within classes and Procrustes from ``Q``: ``(distance, Q, rows)``."""
    from scipy.optimize import linear_sum_assignment

    rows = np.empty(A.shape[0], np.int64)
    previous = None
    for _ in range(max_iter):
        BQ = B @ Q
        for ia, ib in zip(members_a, members_b, strict=True):
            _, cols = linear_sum_assignment(-(A[ia] @ BQ[ib].T))
            rows[ia] = ib[cols]
        if previous is not None and np.array_equal(rows, previous):
            break
        previous = rows.copy()
        Q = procrustes(B[rows], A)
    return float(np.linalg.norm(A - B[rows] @ Q)), Q, rows


def align(A, B, labels, *, perms=None, within=None, restarts: int = 4, max_iter: int = 50) -> Alignment:
    r"""Align ``B`` onto ``A`` modulo the SC loss's symmetry group; the distance found and the alignment.

    The group: ``H -> P H Q`` with ``Q`` in ``O(d)`` (rotations and
    reflections) and ``P`` a permutation of the samples that maps classes to
    classes of the same size (within-class permutations and relabellings of
    equal-size classes). The distance ``min_{P, Q} |A - P B Q|_F`` is sought by
    alternating an assignment of the rows within each class (``scipy``'s
    linear assignment, exact for a given ``Q``) and orthogonal Procrustes
    (exact for given rows), for each candidate relabelling
    (``_relabel_candidates``), started from the Procrustes alignment of the
    count-weighted class means and from ``restarts`` further random rotations
    (the means leave the rotation of their orthogonal complement open). Each
    alternation only lowers the distance, and the result is attained by an
    explicit group element: it is an **upper bound** on the true distance
    (a match is never spurious; a miss would split one point in two).

    ``perms``: the relabellings to try, ``(P, k)`` (default
    ``class_permutations(counts)``; ``[np.arange(k)]`` fixes the labels); ``within``: stop at the
    first alignment closer than this, and skip relabellings that cannot come
    that close. Costs ``O(iterations (sum_c n_c^3 + n d^2))`` per start.
    """
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    k = counts.size
    onehot = np.eye(k)[labels]
    if perms is None:
        perms = class_permutations(counts)
    members = [np.flatnonzero(labels == c) for c in range(k)]
    weights = np.sqrt(counts)[:, None]
    rng = np.random.default_rng(0)
    d = A.shape[1]
    best = Alignment(math.inf, np.eye(d), np.arange(A.shape[0]), np.arange(k))
    for sigma in _relabel_candidates(A, B, onehot, counts, perms, within):
        members_b = [members[s] for s in sigma]
        means_a = weights * class_means(A, onehot)
        means_b = weights * class_means(B, onehot)[sigma]
        for Q0 in _starts(means_a, means_b, rng, restarts):
            dist, Q, rows = _align_classes(A, B, members, members_b, Q0, max_iter)
            if dist < best.distance:
                best = Alignment(dist, Q, rows, np.asarray(sigma))
            if within is not None and best.distance <= within:
                return best
    return best


def alignment_rounding(n: int, d: int) -> float:
    """What float64 resolves in ``align``'s distance: ``4 (d + 2) eps sqrt(n)``.

    ``B Q`` carries ``d``-term sums on unit rows and ``Q`` is orthogonal to
    ``~d eps``: each row of ``A - B Q`` is off by ``(d + 2) eps``, the norm over
    ``n`` rows by ``sqrt(n)`` times that; the factor 4 covers the SVD.
    """
    return 4.0 * (d + 2) * float(np.finfo(np.float64).eps) * math.sqrt(n)


def relabel_stabilizer(X, labels, radius: float, *, perms=None) -> tuple[int, int]:
    """``(stabilizer, relabellings)``: how many size-preserving class relabellings map ``X`` to itself.

    A relabelling ``sigma`` fixes the point when ``X`` and ``X`` relabelled by
    ``sigma`` (classes ``c`` and ``sigma(c)`` exchanged, within-class order and
    ``O(d)`` free) are within ``radius`` (``align``). The point's orbit under
    relabelling has ``relabellings / stabilizer`` distinct members: the runs of
    a scan reach any of them. ``(0, 0)`` when there are too many to list.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if perms is None:
        perms = class_permutations(counts)
    if perms is None:
        return 0, 0
    fixed = 0
    for sigma in perms:
        if align(X, X, labels, perms=[np.asarray(sigma)], within=radius).distance <= radius:
            fixed += 1
    return fixed, len(perms)


def invariants(H, labels) -> dict:
    """Rotation- and relabelling-invariant data of one point ``H`` ``(n, d)`` (NumPy, float64).

    ``spectrum``: eigenvalues of ``G = H H^T``, descending, the top ``min(n, d)``
    (``|lambda(G_A) - lambda(G_B)| <= 2 sqrt(n) D`` for points a distance ``D``
    apart modulo the group: a sound filter before ``align``);
    ``class_mean_products``: ``<mu_a, mu_b>`` of the raw class means.
    """
    H = np.asarray(H, np.float64)
    H = H / np.linalg.norm(H, axis=1, keepdims=True)
    labels = np.asarray(labels)
    onehot = np.eye(int(labels.max()) + 1)[labels]
    # The nonzero eigenvalues of H H^T are those of H^T H (d x d, cheaper).
    spectrum = np.sort(np.linalg.eigvalsh(H.T @ H))[::-1][: min(H.shape)]
    return {"spectrum": spectrum, "class_mean_products": class_mean_products(H, onehot)}
