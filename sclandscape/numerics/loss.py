r"""The supervised contrastive (SC) loss on unconstrained features (docs/maths.md §1).

For embeddings ``H`` of shape ``(n, d)`` (one row per sample), labels ``y`` and
temperature ``tau``, with ``G = H H^T`` and ``P(i) = {j != i : y_j = y_i}``::

    L(H) = sum_i [ LSE_{l != i}(G_il / tau) - 1/(n_{y_i} - 1) sum_{j in P(i)} G_ij / tau ]

This is Khosla et al.'s ``L_out`` summed over anchors, anchor excluded from
the denominator, positives averaged outside the log. ``reduction="mean"``
divides by ``n`` (the SupCon reference code with one view per sample and
``base_temperature == temperature``).

The loss depends on ``G`` through its off-diagonal entries only and is convex
in them (``sc_loss_gram``). Its gradient is ``dL/dG_il = (P_il - Y+_il)/tau``
with ``P`` the masked row softmax and ``Y+_il = 1[l in P(i)]/(n_{y_i} - 1)``;
``F = (A + A^T)/2`` of that matrix is ``sc_gram_gradient`` and
``grad_H L = 2 F H``.

All functions act on a single configuration; batch them with ``jax.vmap``.
Dtype follows the input (float32 or float64); nothing here enables x64.

Reference: P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020;
H. Behnia and C. Thrampoulidis, ISIT 2024.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import problems


def masked_logsumexp(x, mask, axis=-1):
    """``log sum_{mask} exp(x)`` along ``axis``, NaN-safe in value and gradient.

    Entries outside ``mask`` never enter the computation (not even as
    ``exp(-inf)``), so masked-out infinities or NaNs cannot leak into the
    gradient. A row with an empty mask returns ``-inf`` with zero gradient.
    """
    x_max = jnp.max(jnp.where(mask, x, -jnp.inf), axis=axis, keepdims=True)
    x_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(x_max), x_max, 0.0))
    shifted = jnp.where(mask, x - x_max, 0.0)
    total = jnp.sum(jnp.where(mask, jnp.exp(shifted), 0.0), axis=axis)
    empty = ~jnp.any(mask, axis=axis)
    out = jnp.squeeze(x_max, axis) + jnp.log(jnp.where(empty, 1.0, total))
    return jnp.where(empty, -jnp.inf, out)


def anchor_losses(G, labels, tau, valid=None):
    """Per-anchor SC terms ``(n,)`` from a Gram matrix ``G`` ``(n, n)``.

    ``valid`` (bool ``(n,)``, default all true) restricts the loss to a subset
    of samples (a mini-batch padded to a fixed size). An anchor whose class has
    no other valid member has no positive and contributes 0 (the SupCon
    reference code's convention); with every class of size >= 2 and all
    samples valid this never happens.
    """
    n = G.shape[0]
    if valid is None:
        valid = jnp.ones((n,), dtype=bool)
    pair = valid[:, None] & valid[None, :] & ~jnp.eye(n, dtype=bool)
    positive = pair & (labels[:, None] == labels[None, :])
    logits = G / tau
    n_pos = jnp.sum(positive, axis=1)
    lse = masked_logsumexp(logits, pair, axis=1)
    pos_mean = jnp.sum(jnp.where(positive, logits, 0.0), axis=1) / jnp.maximum(n_pos, 1)
    has_pos = valid & (n_pos > 0)
    return jnp.where(has_pos, jnp.where(has_pos, lse, 0.0) - pos_mean, 0.0)


def _reduce(terms, reduction, n):
    total = jnp.sum(terms)
    return total / n if reduction == "mean" else total


def sum_loss(H, labels, tau):
    """The sum-form SC loss of one ``H`` ``(n, d)``: the package's one dense cost (traced, no checks).

    ``sum_i [LSE_{l != i}(h_i.h_l/tau) - mean_{j in P(i)} h_i.h_j/tau]`` on ``G = H H^T``
    (rows are used as given; optimisers pass unit rows).
    """
    return jnp.sum(anchor_losses(H @ H.T, labels, tau))


def rounding_bound(H, labels, tau):
    r"""A bound on the float rounding error of ``sum_loss(H, labels, tau)`` (traced, no checks).

    To first order in the unit roundoff ``eps`` of ``H``'s dtype, with unit
    rows, ``n_c`` the size of anchor ``i``'s class and ``x_il = G_il / tau``
    (``docs/maths.md``, "Tolerances")::

        |dx_il|    <= (d + 1) eps / tau                      (a d-term dot product, a division)
        |dlse_i|   <= eps ((2d + 4)/tau + n + log n + |lse_i|) (logits, shift, exp, sum, log)
        |dpos_i|   <= eps (d + n_c + 1) / tau                (mean of n_c - 1 logits)
        |dL|       <= sum_i (|dlse_i| + |dpos_i| + eps |term_i|) + (n - 1) eps sum_i |term_i|

    A gap ``L(H) - L*`` below this (plus ``L*``'s own error) is rounding.
    """
    n, d = H.shape
    eps = jnp.finfo(H.dtype).eps
    G = H @ H.T
    off = ~jnp.eye(n, dtype=bool)
    positive = off & (labels[:, None] == labels[None, :])
    n_class = jnp.sum(positive, axis=1) + 1
    logits = G / tau
    lse = masked_logsumexp(logits, off, axis=1)
    term = anchor_losses(G, labels, tau)
    per_anchor = (2 * d + 4 + d + n_class + 1) / tau + n + jnp.log(n) + jnp.abs(lse) + jnp.abs(term)
    return eps * (jnp.sum(per_anchor) + (n - 1) * jnp.sum(jnp.abs(term)))


def rounding_bound_closed(n: int, d: int, tau, dtype):
    """``rounding_bound`` without logits: ``|lse_i| <= 1/tau + log n``, ``|term_i| <= 2/tau + log n``."""
    eps = jnp.finfo(dtype).eps
    lse, term = 1 / tau + jnp.log(n), 2 / tau + jnp.log(n)
    per_anchor = (3 * d + n + 5) / tau + n + jnp.log(n) + lse + term
    return eps * n * (per_anchor + (n - 1) * term)


def gradient_rounding_bound(H, labels, tau):
    r"""A bound on ``|grad L(H) computed - exact|_F`` in the dtype of ``H`` (one point, traced).

    ``grad_i = e_i - <e_i, h_i> h_i`` with ``e_i = 2 sum_l F_il h_l`` and
    ``F_il = (P_il + P_li - Y+_il - Y+_li) / (2 tau)``. Each ``P_il`` carries the
    softmax's relative error ``delta_P = eps ((3d + 5)/tau + n + 2 log n + 2)``
    (``certify.slack_rounding_bound``), so ``|dF_il| <= delta_P (P_il + P_li) / (2 tau)``
    plus the rounding of the difference, ``2 eps |F_il|``; the ``n``-term sum of
    ``d``-vectors adds ``(n + d) eps sum_l |F_il|``; the projection at most
    doubles the error of ``e_i`` and adds ``(d + 2) eps |e_i|``::

        err_i <= 2 [2 sum_l |dF_il| + 2 (n + d + 2) eps sum_l |F_il|] + (d + 2) eps |e_i|,

    and the bound is ``sqrt(sum_i err_i^2)``. At small ``tau`` it is ``~eps n / tau^2``:
    no method can be asked for a smaller gradient.
    """
    H = H / jnp.linalg.norm(H, axis=1, keepdims=True)
    n, d = H.shape
    eps = jnp.finfo(H.dtype).eps
    G = H @ H.T
    off = ~jnp.eye(n, dtype=bool)
    P = jax.nn.softmax(jnp.where(off, G / tau, -jnp.inf), axis=1)
    F = gram_gradient(G, labels, tau)
    delta_p = eps * ((3 * d + 5) / tau + n + 2 * math.log(n) + 2)
    dF = delta_p * (P + P.T) / (2 * tau)
    absF = jnp.sum(jnp.abs(F), axis=1)
    e = 2 * F @ H
    err = 2 * (2 * jnp.sum(dF, axis=1) + 2 * (n + d + 2) * eps * absF) + (d + 2) * eps * jnp.linalg.norm(
        e, axis=1
    )
    return jnp.sqrt(jnp.sum(err**2))


def gradient_rounding_bound_closed(n: int, d: int, tau, dtype):
    """``gradient_rounding_bound`` without the ``n x n`` matrix: ``sum_l |F_il| <= 2/tau``, ``|e_i| <= 4/tau``
    and every column sum of the softmax ``<= n - 1`` (so ``~n`` times the dense bound at worst)."""
    eps = jnp.finfo(dtype).eps
    delta_p = eps * ((3 * d + 5) / tau + n + 2 * math.log(n) + 2)
    err = 2 * (2 * delta_p * n / (2 * tau) + 4 * (n + d + 2) * eps / tau) + 4 * (d + 2) * eps / tau
    return jnp.sqrt(n) * err


def gram_gradient(G, labels, tau):
    """``F = (A + A^T)/2``, ``A_il = (P_il - Y+_il)/tau``, at one Gram matrix (traced, no checks)."""
    A = jax.grad(lambda g: jnp.sum(anchor_losses(g, labels, tau)))(G)
    return 0.5 * (A + A.T)


@functools.partial(jax.jit, static_argnames="reduction")
def _sc_loss_gram(G, labels, tau, reduction):
    return _reduce(anchor_losses(G, labels, tau), reduction, G.shape[0])


@functools.partial(jax.jit, static_argnames="reduction")
def _sc_loss(H, labels, tau, reduction):
    return _reduce(anchor_losses(H @ H.T, labels, tau), reduction, H.shape[0])


def sc_loss_gram(G, labels, tau, reduction: str = "sum"):
    """SC loss as the convex function ``f(G)`` of the off-diagonal Gram entries.

    Args:
      G: ``(n, n)`` Gram matrix (its diagonal is ignored).
      labels: ``(n,)`` non-negative integer labels, every class of size >= 2.
      tau: temperature ``> 0``.
      reduction: ``"sum"`` over anchors (the project's convention) or ``"mean"``.
    """
    problems.check_loss_inputs(G, labels, tau, reduction, gram=True)
    return _sc_loss_gram(G, jnp.asarray(labels), tau, reduction)


def sc_loss(H, labels, tau, reduction: str = "sum"):
    """SC loss ``L(H)`` of docs/maths.md §1 for one configuration ``H`` ``(n, d)``.

    ``L(H) = sum_i [LSE_{l != i}(h_i.h_l/tau) - mean_{j in P(i)} h_i.h_j/tau]``;
    ``reduction="mean"`` divides by ``n``. Unit-norm rows are the feasible set
    but are not enforced here, so the function is also usable off-manifold.
    jit- and vmap-safe; dtype follows ``H``.
    """
    problems.check_loss_inputs(H, labels, tau, reduction)
    return _sc_loss(H, jnp.asarray(labels), tau, reduction)


@jax.jit
def _sc_gram_gradient(G, labels, tau):
    return gram_gradient(G, labels, tau)


def sc_gram_gradient(G, labels, tau):
    """``F = (A + A^T)/2`` with ``A_il = (P_il - Y+_il)/tau``: the symmetric gradient of ``f(G)``.

    ``F`` has a zero diagonal (``f`` does not depend on ``G_ii``); the
    Euclidean gradient of ``L(H)`` is ``2 F H`` (sum reduction).
    """
    problems.check_loss_inputs(G, labels, tau, "sum", gram=True)
    return _sc_gram_gradient(G, jnp.asarray(labels), tau)


def row_hessian_blocks(H, tau):
    r"""The ``(n, d, d)`` diagonal blocks ``d^2 L / dh_i^2`` of the Euclidean Hessian of ``L(H)``.

    The positive terms are linear in ``G`` and contribute nothing; anchor
    ``i``'s log-sum-exp contributes the covariance of its contrasts under
    ``P_i``, and every other anchor ``a`` the term ``P_ai (1 - P_ai) h_a h_a^T``::

        B_i = (Cov_{l ~ P_i}(h_l) + sum_a P_ai (1 - P_ai) h_a h_a^T) / tau^2

    Full batch, sum reduction, every anchor with a positive (labels do not
    enter). ``O(n^2 d^2)``; the basis of the trust-region preconditioner.
    """
    n = H.shape[0]
    logits = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, (H @ H.T) / tau)
    P = jax.nn.softmax(logits, axis=1)
    mean = P @ H
    cov = jnp.einsum("il,ld,le->ide", P, H, H) - mean[:, :, None] * mean[:, None, :]
    other = jnp.einsum("ai,ad,ae->ide", P * (1 - P), H, H)
    return (cov + other) / tau**2


# --------------------------------------------------------------------------
# Mini-batch SC


def make_batches(labels, batch_size: int, seed: int = 0, bind: bool = False) -> np.ndarray:
    """A random batching of the samples, optionally with batch binding.

    Samples are shuffled and split into batches of ``batch_size`` (the last
    one may be shorter). With ``bind=True`` the first sample of every class is
    held out and appended to every batch (batch binding), so every class is
    present in every batch. Returns an int array ``(n_batches, width)``
    padded with ``-1``.
    """
    labels = problems.check_labels(labels)
    if int(batch_size) != batch_size or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}")
    rng = np.random.default_rng(seed)
    index = np.arange(labels.size)
    bound = np.array([index[labels == c][0] for c in np.unique(labels)]) if bind else np.array([], int)
    rest = rng.permutation(np.setdiff1d(index, bound))
    chunks = [rest[i : i + batch_size] for i in range(0, rest.size, batch_size)]
    width = max(len(c) for c in chunks) + bound.size
    out = np.full((len(chunks), width), -1, dtype=np.int64)
    for b, chunk in enumerate(chunks):
        row = np.concatenate([chunk, bound])
        out[b, : row.size] = row
    return out


def minibatch_sum_loss(H, labels, tau, batches, reduction: str = "sum"):
    """``sum_b L(H_{B_b})`` for ``batches`` ``(n_batches, width)`` padded with ``-1`` (traced, no checks).

    The package's one mini-batch body; ``reduction="mean"`` divides each batch's sum by its size.
    """

    def one_batch(index):
        valid = index >= 0
        safe = jnp.where(valid, index, 0)
        h = H[safe]
        terms = anchor_losses(h @ h.T, labels[safe], tau, valid)
        size = jnp.sum(valid)
        return jnp.sum(terms) / size if reduction == "mean" else jnp.sum(terms)

    return jnp.sum(jax.vmap(one_batch)(batches))


@functools.partial(jax.jit, static_argnames="reduction")
def _sc_loss_minibatch(H, labels, tau, batches, reduction):
    return minibatch_sum_loss(H, labels, tau, batches, reduction)


def sc_loss_minibatch(H, labels, tau, batches, reduction: str = "sum"):
    """Mini-batch SC loss: the sum over batches of the SC loss restricted to each batch.

    Args:
      H: ``(n, d)`` embeddings.
      labels: ``(n,)`` labels.
      tau: temperature.
      batches: int array ``(n_batches, width)`` of sample indices, ``-1`` as
        padding (see ``make_batches``). Within a batch an anchor whose class
        has no other member contributes 0.
      reduction: applied within each batch (``"mean"`` divides by its size).
    """
    problems.check_loss_inputs(H, labels, tau, reduction)
    if not problems.is_traced(batches):
        batches = problems.check_batches(batches, np.shape(H)[0])
    return _sc_loss_minibatch(H, jnp.asarray(labels), tau, jnp.asarray(batches), reduction)
