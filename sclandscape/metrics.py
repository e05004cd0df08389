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
- ``invariants``/``same_point``/``deduplicate``: whether two critical points
  are one up to rotation and relabelling (the spectrum of ``G = H H^T`` and
  the class-mean products up to permutations of classes of equal size).

Functions act on one configuration. On NumPy arrays they compute with NumPy
(in the input's dtype); on JAX arrays and tracers with ``jax.numpy``
(jit/vmap-safe), imported only then, so ``plots`` and ``report`` (NumPy and
matplotlib only) share ``KINDS`` and the rule without importing JAX.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _xp(*arrays):
    """NumPy for NumPy inputs, ``jax.numpy`` as soon as one input is a JAX array or tracer."""
    if all(isinstance(a, np.ndarray | np.generic | float | int) for a in arrays):
        return np
    import jax.numpy as jnp

    return jnp


#: Largest number of count-preserving class permutations tried exhaustively by ``same_point``.
MAX_PERMUTATIONS = 40320

#: Every verdict a point can get, in the order figures and tables list them. ``local_min`` is a
#: local minimum where ``d < rank M*``: the relaxation's ``L*`` is not attainable there, so a
#: minimum above it is not "spurious" (the best point of dimension ``d`` may lie above ``L*``).
KINDS = ("global_min", "spurious_min", "local_min", "saddle", "degenerate", "not_converged")


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
# Distinct critical points up to rotation and relabelling


def invariants(H, labels) -> dict:
    """Rotation- and relabelling-invariant data of one point ``H`` ``(n, d)`` (NumPy, float64).

    ``spectrum``: eigenvalues of ``G = H H^T``, descending, the top ``min(n, d)``;
    ``class_mean_products``: ``<mu_a, mu_b>`` of the raw class means (``metrics``).
    """
    H = np.asarray(H, np.float64)
    H = H / np.linalg.norm(H, axis=1, keepdims=True)
    labels = np.asarray(labels)
    onehot = np.eye(int(labels.max()) + 1)[labels]
    # The nonzero eigenvalues of H H^T are those of H^T H (d x d, cheaper).
    spectrum = np.sort(np.linalg.eigvalsh(H.T @ H))[::-1][: min(H.shape)]
    return {"spectrum": spectrum, "class_mean_products": class_mean_products(H, onehot)}


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


def _gram_match(Ma, Mb, counts, perms) -> float:
    """``min_P max|Ma - P Mb P^T|`` over size-preserving class permutations (or an invariant proxy)."""
    if perms is not None:
        permuted = Mb[perms[:, :, None], perms[:, None, :]]
        return float(np.min(np.max(np.abs(permuted - Ma[None]), axis=(1, 2))))
    # Too many permutations: compare what no relabelling can change (per size block).
    worst = float(np.max(np.abs(np.linalg.eigvalsh(Ma) - np.linalg.eigvalsh(Mb))))
    sizes = np.asarray(counts)
    for m in np.unique(sizes):
        rows = sizes == m
        for a, b in ((Ma[rows], Mb[rows]), (np.diagonal(Ma)[rows], np.diagonal(Mb)[rows])):
            worst = max(worst, float(np.max(np.abs(np.sort(a, axis=None) - np.sort(b, axis=None)))))
    return worst


def same_point(
    inv_a: dict,
    inv_b: dict,
    loss_a: float,
    loss_b: float,
    counts,
    *,
    loss_rtol=1e-8,
    gram_atol=1e-5,
    perms=None,
) -> bool:
    """Whether two critical points are one up to rotation and relabelling (see the module docstring)."""
    if abs(loss_a - loss_b) > loss_rtol * max(1.0, abs(loss_a), abs(loss_b)):
        return False
    if np.max(np.abs(inv_a["spectrum"] - inv_b["spectrum"])) > gram_atol * max(1.0, inv_a["spectrum"][0]):
        return False
    return _gram_match(inv_a["class_mean_products"], inv_b["class_mean_products"], counts, perms) <= gram_atol


def deduplicate(H, losses, labels, counts, *, loss_rtol=1e-8, gram_atol=1e-5) -> np.ndarray:
    """Group of each point ``(m,)``: ``group[i] = j`` for the first point ``j`` equal to ``i`` (up to
    rotation and relabelling; ``same_point``). Points are compared in the given order."""
    perms = class_permutations(counts)
    invs = [invariants(h, labels) for h in np.asarray(H)]
    reps: list[int] = []
    group = np.empty(len(invs), np.int64)
    for i, inv in enumerate(invs):
        for j in reps:
            if same_point(
                inv,
                invs[j],
                float(losses[i]),
                float(losses[j]),
                counts,
                loss_rtol=loss_rtol,
                gram_atol=gram_atol,
                perms=perms,
            ):
                group[i] = j
                break
        else:
            reps.append(i)
            group[i] = i
    return group
