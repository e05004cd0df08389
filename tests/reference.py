"""Slow, obviously correct NumPy references (loops over anchors, float64).

These are written straight from the formulas of docs/maths.md §1-§2 and share no code
with the library.
"""

import jax.numpy as jnp
import numpy as np


def sc_loss_loop(H, labels, tau):
    """L(H) = sum_i [ log sum_{l != i} exp(h_i.h_l/tau) - mean_{j in P(i)} h_i.h_j/tau ]."""
    H = np.asarray(H, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(labels)
    total = 0.0
    for i in range(n):
        others = [o for o in range(n) if o != i]
        positives = [j for j in others if labels[j] == labels[i]]
        logits = np.array([H[i] @ H[o] / tau for o in others])
        top = logits.max()
        lse = top + np.log(np.sum(np.exp(logits - top)))
        total += lse - np.mean([H[i] @ H[j] / tau for j in positives])
    return total


def supcon_reference(H, labels, temperature, base_temperature):
    """The SupCon reference semantics (Khosla et al.'s code) for one view per sample, NumPy."""
    H = np.asarray(H, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1, 1)
    n = H.shape[0]
    mask = (labels == labels.T).astype(np.float64)
    logits = H @ H.T / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    logits_mask = 1.0 - np.eye(n)
    mask = mask * logits_mask
    exp_logits = np.exp(logits) * logits_mask
    log_prob = logits - np.log(exp_logits.sum(axis=1, keepdims=True))
    mean_log_prob_pos = (mask * log_prob).sum(axis=1) / mask.sum(axis=1)
    return float(np.mean(-(temperature / base_temperature) * mean_log_prob_pos))


def gram_gradient(G, labels, tau):
    """F = (A + A^T)/2, A = (P - Y+)/tau with P the row softmax over l != i."""
    G = np.asarray(G, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(labels)
    A = np.zeros((n, n))
    for i in range(n):
        logits = np.array([G[i, o] / tau if o != i else -np.inf for o in range(n)])
        p = np.exp(logits - logits.max())
        p /= p.sum()
        same = (labels == labels[i]) & (np.arange(n) != i)
        A[i] = (p - same / same.sum()) / tau
    return 0.5 * (A + A.T)


def certificate_numpy(H, labels, tau):
    """(lambda_min(S), n max(0, -lambda_min) + |<S, G>|), S = F - Diag((F G)_ii)."""
    H = np.asarray(H, dtype=np.float64)
    H = H / np.linalg.norm(H, axis=1, keepdims=True)
    G = H @ H.T
    F = gram_gradient(G, labels, tau)
    S = F - np.diag(np.diag(F @ G))
    lam = np.linalg.eigvalsh(S)[0]
    return lam, len(labels) * max(0.0, -lam) + abs(np.sum(S * G))


def random_sphere(rng, n, d):
    H = rng.standard_normal((n, d))
    return H / np.linalg.norm(H, axis=1, keepdims=True)


def merged_saddle(m, d, tau):
    """Classes 2 and 3 of four balanced classes tied sample by sample (``h_{3,j} = h_{2,j}``) and the
    loss minimised over that subspace (the 3-point problem ``X -> L(X[index])`` on ``OB(3m, d)``)."""
    from sclandscape.core import problems
    from sclandscape.numerics import loss, optim

    labels = problems.labels_from_counts((m,) * 4)
    index = np.concatenate([np.arange(3 * m), np.arange(2 * m, 3 * m)])

    cost = lambda X: loss.sum_loss(X[index], jnp.asarray(labels), tau)  # noqa: E731
    angles = np.array([0.3, 2.2, 4.0])  # collapsed classes in a plane, otherwise generic
    X0 = np.pad(
        np.stack([np.cos(angles), np.sin(angles)], 1)[np.repeat(np.arange(3), m)], ((0, 0), (0, d - 2))
    )
    result = optim.trust_region(cost, jnp.asarray(X0), optim.TrustRegionSettings(gtol=1e-12))
    assert int(result.status) == optim.Status.CONVERGED
    return np.asarray(result.x)[index], labels, cost, np.asarray(result.x)
