import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from reference import gram_gradient, random_sphere, sc_loss_loop, supcon_reference

import sclandscape as sc
from sclandscape.numerics import loss as loss_mod

CASES = [
    # (counts, d, tau)
    ((5, 5, 5, 5), 3, 1.0),
    ((10, 10, 2, 2), 2, 0.5),
    ((2, 7, 3), 5, 0.1),
    ((4, 2, 2, 6, 3), 8, 2.0),
]


def shuffled_labels(rng, counts):
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


@pytest.mark.parametrize("counts,d,tau", CASES)
@pytest.mark.parametrize("normalise", [True, False])
def test_matches_numpy_reference(counts, d, tau, normalise):
    rng = np.random.default_rng(len(counts) * 7 + d)
    labels = shuffled_labels(rng, counts)
    H = random_sphere(rng, len(labels), d) if normalise else 1.3 * rng.standard_normal((len(labels), d))
    got = float(sc.sc_loss(jnp.asarray(H), labels, tau))
    assert got == pytest.approx(sc_loss_loop(H, labels, tau), rel=1e-12, abs=1e-10)


def test_gram_form_equals_embedding_form():
    rng = np.random.default_rng(1)
    labels = shuffled_labels(rng, (3, 4, 5))
    H = random_sphere(rng, 12, 4)
    assert float(sc.sc_loss_gram(H @ H.T, labels, 0.7)) == pytest.approx(
        float(sc.sc_loss(H, labels, 0.7)), abs=1e-12
    )
    # The diagonal of G does not enter.
    G = H @ H.T + np.diag(rng.standard_normal(12))
    assert float(sc.sc_loss_gram(G, labels, 0.7)) == pytest.approx(
        float(sc.sc_loss(H, labels, 0.7)), abs=1e-12
    )


@pytest.mark.parametrize("tau", [0.05, 0.5, 3.0])
def test_mean_reduction_is_supcon_reference(tau):
    rng = np.random.default_rng(2)
    labels = shuffled_labels(rng, (6, 2, 4))
    H = random_sphere(rng, 12, 6)
    got = float(sc.sc_loss(H, labels, tau, reduction="mean"))
    assert got == pytest.approx(supcon_reference(H, labels, tau, base_temperature=tau), rel=1e-12)
    assert got == pytest.approx(float(sc.sc_loss(H, labels, tau)) / 12, rel=1e-12)


def test_check_grads():
    rng = np.random.default_rng(3)
    labels = shuffled_labels(rng, (3, 4, 2))
    H = jnp.asarray(random_sphere(rng, 9, 3))
    check_grads(lambda h: sc.sc_loss(h, labels, 0.3), (H,), order=2, modes=("fwd", "rev"))
    G = H @ H.T
    check_grads(lambda g: sc.sc_loss_gram(g, labels, 0.3), (G,), order=2, modes=("fwd", "rev"))


def test_gradient_is_2FH_and_F_matches_formula():
    rng = np.random.default_rng(4)
    counts = (5, 2, 3)
    labels = shuffled_labels(rng, counts)
    H = random_sphere(rng, 10, 4)
    tau = 0.4
    F = np.asarray(sc.sc_gram_gradient(jnp.asarray(H @ H.T), labels, tau))
    np.testing.assert_allclose(F, gram_gradient(H @ H.T, labels, tau), atol=1e-12)
    grad = np.asarray(jax.grad(lambda h: sc.sc_loss(h, labels, tau))(jnp.asarray(H)))
    np.testing.assert_allclose(grad, 2 * F @ H, atol=1e-12)


def test_rotation_and_relabelling_invariance():
    rng = np.random.default_rng(5)
    counts = (4, 3, 5)
    labels = np.repeat(np.arange(3), counts)
    H = random_sphere(rng, 12, 5)
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    base = float(sc.sc_loss(H, labels, 0.2))
    assert float(sc.sc_loss(H @ Q, labels, 0.2)) == pytest.approx(base, abs=1e-12)
    # Permute samples within each class: labels unchanged, rows moved.
    perm = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in range(3)])
    assert float(sc.sc_loss(H[perm], labels, 0.2)) == pytest.approx(base, abs=1e-12)
    # Renaming the classes does not change anything either.
    assert float(sc.sc_loss(H, (labels + 1) % 3 * 4, 0.2)) == pytest.approx(base, abs=1e-12)
    # A genuine change of labels does (so the test above can fail).
    other = labels.copy()
    other[[0, 5]] = other[[5, 0]]
    assert abs(float(sc.sc_loss(H, other, 0.2)) - base) > 1e-3


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_stable_at_small_tau_and_coincident_points(dtype):
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(3), 4)
    H = jnp.asarray(random_sphere(rng, 12, 3), dtype)
    same = jnp.ones((12, 3), dtype) / jnp.sqrt(3.0).astype(dtype)
    for h in (H, same):
        value, grad = jax.value_and_grad(lambda x: sc.sc_loss(x, labels, 0.01))(h)
        assert value.dtype == dtype
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
    # Coincident points: every logit equal, so each anchor's term is log(n - 1).
    assert float(sc.sc_loss(same, labels, 0.01)) == pytest.approx(12 * np.log(11), rel=1e-5)
    if dtype == jnp.float32:
        exact = sc_loss_loop(np.asarray(H, np.float64), labels, 0.01)
        assert float(sc.sc_loss(H, labels, 0.01)) == pytest.approx(exact, rel=1e-4)


def test_loop_vmap_jit_agree():
    rng = np.random.default_rng(7)
    labels = shuffled_labels(rng, (3, 3, 4))
    Hs = jnp.asarray(np.stack([random_sphere(rng, 10, 3) for _ in range(5)]))
    loop = np.array([float(sc.sc_loss(h, labels, 0.5)) for h in Hs])
    vmapped = jax.vmap(lambda h: sc.sc_loss(h, labels, 0.5))(Hs)
    jitted = jax.jit(jax.vmap(lambda h: sc.sc_loss(h, labels, 0.5)))(Hs)
    np.testing.assert_allclose(np.asarray(vmapped), loop, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(jitted), loop, rtol=1e-13)


def test_labels_may_be_traced():
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(2), 3)
    H = jnp.asarray(random_sphere(rng, 6, 2))
    f = jax.jit(lambda h, y, t: sc.sc_loss(h, y, t))
    assert float(f(H, jnp.asarray(labels), 0.5)) == pytest.approx(sc_loss_loop(H, labels, 0.5), rel=1e-12)


@pytest.mark.parametrize(
    "H_shape,labels,tau,reduction,match",
    [
        ((4, 2), [0, 0, 1, 1], 0.0, "sum", "tau"),
        ((4, 2), [0, 0, 1, 1], -1.0, "sum", "tau"),
        ((4, 2), [0, 0, 1, 1], float("nan"), "sum", "tau"),
        ((4, 2), [0, 0, 1, 1], float("inf"), "sum", "tau"),
        ((4, 0), [0, 0, 1, 1], 1.0, "sum", "dimension"),
        ((5, 2), [0, 0, 1, 1], 1.0, "sum", "do not match"),
        ((4, 2), [0, 0, 1, 2], 1.0, "sum", "class 1 has 1 sample"),
        ((4, 2), [0.0, 0.5, 1, 1], 1.0, "sum", "integers"),
        ((4, 2), [0, 0, -1, -1], 1.0, "sum", "non-negative"),
        ((4, 2), [0, 0, 1, 1], 1.0, "avg", "reduction"),
        ((4,), [0, 0, 1, 1], 1.0, "sum", "shape"),
    ],
)
def test_bad_input_raises_value_error(H_shape, labels, tau, reduction, match):
    with pytest.raises(ValueError, match=match):
        sc.sc_loss(np.ones(H_shape), np.asarray(labels), tau, reduction=reduction)


# ---------------------------------------------------------------- mini-batch


def test_single_full_batch_is_full_loss():
    rng = np.random.default_rng(9)
    labels = shuffled_labels(rng, (3, 4, 2))
    H = random_sphere(rng, 9, 3)
    batches = np.arange(9)[None, :]
    assert float(sc.sc_loss_minibatch(H, labels, 0.3, batches)) == pytest.approx(
        float(sc.sc_loss(H, labels, 0.3)), rel=1e-13
    )


def _minibatch_reference(H, labels, tau, batches, reduction="sum"):
    total = 0.0
    for row in batches:
        idx = row[row >= 0]
        keep = [i for i in idx if np.sum(labels[idx] == labels[i]) >= 2]  # anchors with a positive
        lab = labels[idx]
        h = H[idx]
        part = 0.0
        for a in keep:
            pos = np.flatnonzero(idx == a)[0]
            others = [b for b in range(len(idx)) if b != pos]
            logits = np.array([h[pos] @ h[b] / tau for b in others])
            positives = [h[pos] @ h[b] / tau for b in others if lab[b] == lab[pos]]
            part += np.log(np.sum(np.exp(logits))) - np.mean(positives)
        total += part / len(idx) if reduction == "mean" else part
    return total


@pytest.mark.parametrize("bind", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_minibatch_matches_reference(bind, reduction):
    rng = np.random.default_rng(10)
    labels = shuffled_labels(rng, (6, 5, 3, 2))
    H = random_sphere(rng, 16, 4)
    batches = sc.make_batches(labels, 5, seed=3, bind=bind)
    got = float(sc.sc_loss_minibatch(H, labels, 0.5, batches, reduction=reduction))
    assert got == pytest.approx(_minibatch_reference(H, labels, 0.5, batches, reduction), rel=1e-12)


def test_make_batches_partition_and_binding():
    labels = np.repeat(np.arange(4), [6, 5, 3, 2])
    plain = sc.make_batches(labels, 4, seed=0)
    kept = plain[plain >= 0]
    assert sorted(kept.tolist()) == list(range(16))
    bound = sc.make_batches(labels, 4, seed=0, bind=True)
    for row in bound:
        idx = row[row >= 0]
        assert set(labels[idx]) == {0, 1, 2, 3}  # every class present in every batch
        assert np.unique(idx).size == idx.size
    # The bound samples are exactly one per class and appear in every batch.
    common = set.intersection(*[set(r[r >= 0].tolist()) for r in bound])
    assert sorted(labels[list(common)].tolist()) == [0, 1, 2, 3]


def test_minibatch_bad_batches():
    labels = np.repeat(np.arange(2), 3)
    H = np.ones((6, 2)) / np.sqrt(2)
    with pytest.raises(ValueError, match="repeats"):
        sc.sc_loss_minibatch(H, labels, 1.0, np.array([[0, 0, 1]]))
    with pytest.raises(ValueError, match="lie in"):
        sc.sc_loss_minibatch(H, labels, 1.0, np.array([[0, 6]]))
    with pytest.raises(ValueError, match="batch_size"):
        sc.make_batches(labels, 1)


def test_masked_logsumexp_empty_rows_are_safe():
    x = jnp.array([[1.0, 2.0], [jnp.inf, jnp.nan]])
    mask = jnp.array([[True, True], [False, False]])
    out = loss_mod.masked_logsumexp(x, mask)
    assert float(out[0]) == pytest.approx(np.log(np.exp(1) + np.exp(2)))
    assert float(out[1]) == -np.inf
    g = jax.grad(lambda v: jnp.sum(jnp.where(mask.any(1), loss_mod.masked_logsumexp(v, mask), 0.0)))(x)
    assert np.all(np.isfinite(np.asarray(g)))


def test_row_hessian_blocks_are_the_diagonal_blocks_of_the_hessian():
    labels = sc.labels_from_counts((3, 4, 2))
    H = jnp.asarray(random_sphere(np.random.default_rng(3), 9, 4))
    for tau in (0.3, 2.0):
        loss = lambda X, t=tau: jnp.sum(loss_mod.anchor_losses(X @ X.T, jnp.asarray(labels), t))  # noqa: E731
        full = jax.hessian(loss)(H)
        diag = jnp.stack([full[i, :, i, :] for i in range(9)])
        np.testing.assert_allclose(loss_mod.row_hessian_blocks(H, tau), diag, rtol=1e-10, atol=1e-12)
