import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import certificate_numpy, random_sphere, sc_loss_loop

import sclandscape as sc
from sclandscape.theory import certify, optimum


@pytest.mark.parametrize(
    "k,m,tau,expected",
    [(4, 5, 1.0, 41.473391), (10, 10, 0.1, 219.737402)],
)
def test_spec_balanced_examples(k, m, tau, expected):
    assert sc.balanced_optimum_loss(k, m, tau) == pytest.approx(expected, abs=1e-6)
    opt = sc.global_optimum((m,) * k, tau)
    assert opt.loss == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("k,m,tau", [(2, 3, 0.5), (3, 4, 0.05), (5, 2, 2.0), (7, 3, 0.3), (12, 4, 1.0)])
def test_cls_is_etf_when_balanced(k, m, tau):
    opt = sc.global_optimum((m,) * k, tau)
    assert opt.loss == pytest.approx(sc.balanced_optimum_loss(k, m, tau), rel=1e-12)
    np.testing.assert_allclose(opt.class_gram, optimum.simplex_etf(k), atol=1e-7)
    assert opt.rank == k - 1
    assert opt.kkt_residual <= 1e-9


def test_spec_step_example():
    ref = sc.step_optimum(2, 2, 2, 5, 1.0)
    assert ref.loss == pytest.approx(57.508222, abs=1e-6)
    assert (ref.alpha, ref.beta, ref.gamma) == pytest.approx((-0.77169, 0.27989, -0.27028), abs=1e-5)
    opt = sc.global_optimum(sc.step_counts(2, 2, 2, 5), 1.0)
    assert opt.loss == pytest.approx(57.508222, abs=1e-6)
    np.testing.assert_allclose(opt.class_gram, ref.class_gram, atol=1e-5)


@pytest.mark.parametrize(
    "k_maj,k_min,n_min,R,tau", [(3, 2, 3, 4, 0.5), (1, 3, 2, 10, 1.0), (4, 4, 2, 2, 0.2)]
)
def test_cls_matches_step_reduced_program(k_maj, k_min, n_min, R, tau):
    ref = sc.step_optimum(k_maj, k_min, n_min, R, tau)
    opt = sc.global_optimum(sc.step_counts(k_maj, k_min, n_min, R), tau)
    assert opt.loss == pytest.approx(ref.loss, rel=1e-10)
    np.testing.assert_allclose(opt.class_gram, ref.class_gram, atol=1e-5)


@pytest.mark.parametrize("tau", [0.02, 0.3, 1.0, 10.0])
def test_kkt_residual_random_counts(tau):
    rng = np.random.default_rng(int(tau * 100))
    counts = tuple(rng.integers(2, 40, size=15))
    opt = sc.global_optimum(counts, tau)
    assert opt.kkt_residual <= 1e-9
    assert opt.rank <= len(counts) - 1
    # The lifted n x n Gram matrix solves the full relaxation too.
    G = jnp.asarray(opt.gram())
    F = sc.sc_gram_gradient(G, opt.labels, tau)
    assert float(certify.kkt_residual(F, G)) <= 1e-8


def test_cls_is_a_lower_bound_for_random_points():
    rng = np.random.default_rng(11)
    counts = (6, 3, 2, 4)
    labels = np.repeat(np.arange(4), counts)
    for tau in (0.1, 1.0):
        opt = sc.global_optimum(counts, tau)
        for d in (1, 2, 3, 6):
            Hs = jnp.asarray(np.stack([random_sphere(rng, 15, d) for _ in range(50)]))
            losses = jax.vmap(lambda h, t=tau: sc.sc_loss(h, labels, t))(Hs)
            assert float(jnp.min(losses)) >= opt.loss - 1e-10


@pytest.mark.parametrize("counts,tau", [((10, 10, 2, 2), 1.0), ((3, 5, 4, 2, 6), 0.2), ((100, 2, 2), 1.0)])
def test_optimal_embedding_attains_optimum_and_is_certified(counts, tau):
    opt = sc.global_optimum(counts, tau)
    H = opt.embedding(opt.rank + 1)
    labels = opt.labels
    assert float(sc.sc_loss(H, labels, tau)) == pytest.approx(opt.loss, rel=1e-11)
    lam, gap = sc.certificate(jnp.asarray(H), labels, tau)
    assert float(lam) >= -1e-7 * len(labels)
    assert float(gap) <= 1e-6
    if opt.rank > 1:
        with pytest.raises(ValueError, match="rank"):
            opt.class_means(opt.rank - 1)


def test_minority_collapse_rank_deficient_optimum():
    # 1 huge class and 2 tiny ones: the minorities merge opposite the majority (rank 1).
    opt = sc.global_optimum((100, 2, 2), 1.0)
    assert opt.rank == 1
    assert opt.class_gram[1, 2] == pytest.approx(1.0, abs=1e-6)


def test_nonneg_orthogonal_frame():
    counts = (4, 3, 5)
    tau = 0.5
    labels = sc.labels_from_counts(counts)
    value = sc.nonneg_optimum_loss(counts, tau)
    H = optimum.nonneg_optimum_embedding(counts, 4)
    assert float(sc.sc_loss(H, labels, tau)) == pytest.approx(value, rel=1e-12)
    assert sc_loss_loop(H, labels, tau) == pytest.approx(value, rel=1e-12)
    # A lower bound over non-negative unit-norm points, and above the unconstrained optimum.
    rng = np.random.default_rng(12)
    Hs = np.abs(np.stack([random_sphere(rng, 12, 4) for _ in range(200)]))
    losses = jax.vmap(lambda h: sc.sc_loss(h, labels, tau))(jnp.asarray(Hs))
    assert float(jnp.min(losses)) >= value - 1e-10
    assert value > sc.global_optimum(counts, tau).loss
    with pytest.raises(ValueError, match="dim >= k"):
        optimum.nonneg_optimum_embedding(counts, 2)


@pytest.mark.parametrize(
    "counts,tau,match",
    [
        ((5, 1), 1.0, "class 1 has 1"),
        ((5,), 1.0, "at least 2 classes"),
        ((3, 3), 0.0, "tau"),
        ((3, 2.5), 1.0, "non-integer"),
        ((3, 3), float("nan"), "tau"),
        ((3, 3), 1e-4, "tau must be >= 0.002"),
        ((5, 5, 5, 5), 1e10, "tau must be <= 1000"),  # the CLS solve fails above ~2e4 (problems.TAU_MAX)
    ],
)
def test_global_optimum_bad_input(counts, tau, match):
    with pytest.raises(ValueError, match=match):
        sc.global_optimum(counts, tau)


@pytest.mark.slow
@pytest.mark.parametrize("k", [50, 200])
@pytest.mark.parametrize("tau", [0.02, 0.1, 1.0, 10.0])
def test_kkt_residual_large_k(k, tau):
    rng = np.random.default_rng(k)
    opt = sc.global_optimum(tuple(rng.integers(2, 100, size=k)), tau)
    assert opt.kkt_residual <= 1e-9


# ---------------------------------------------------------------- certificate


def test_certificate_matches_numpy_and_batches():
    rng = np.random.default_rng(13)
    labels = rng.permutation(np.repeat(np.arange(3), [4, 3, 5]))
    Hs = np.stack([random_sphere(rng, 12, 3) for _ in range(4)])
    lam, gap = sc.certificate(jnp.asarray(Hs), labels, 0.5)
    for i in range(4):
        ref_lam, ref_gap = certificate_numpy(Hs[i], labels, 0.5)
        one = sc.certificate(jnp.asarray(Hs[i]), labels, 0.5)
        assert float(lam[i]) == pytest.approx(ref_lam, abs=1e-11)
        assert float(gap[i]) == pytest.approx(ref_gap, rel=1e-10)
        assert float(one[0]) == pytest.approx(float(lam[i]), abs=1e-12)


def test_gap_bound_is_valid_for_random_points():
    rng = np.random.default_rng(14)
    counts = (5, 2, 3)
    labels = sc.labels_from_counts(counts)
    for tau in (0.2, 1.0):
        L_star = sc.global_optimum(counts, tau).loss
        for d in (2, 3):
            Hs = jnp.asarray(np.stack([random_sphere(rng, 10, d) for _ in range(30)]))
            _, gap = sc.certificate(Hs, labels, tau)
            losses = jax.vmap(lambda h, t=tau: sc.sc_loss(h, labels, t))(Hs)
            assert np.all(np.asarray(losses) - L_star <= np.asarray(gap) + 1e-9)


def test_certificate_zero_at_simplex_etf():
    k, m, tau = 4, 3, 0.5
    opt = sc.global_optimum((m,) * k, tau)
    for d in (k - 1, k, k + 2):
        H = jnp.asarray(opt.embedding(d))
        lam, gap = sc.certificate(H, opt.labels, tau)
        assert abs(float(lam)) <= 1e-10
        assert float(gap) <= 1e-9


def _merged_pairs(k_half=2, m=3, d=3):
    """Classes {0..k_half-1} at +e1 and the rest at -e1: a critical point by symmetry."""
    labels = np.repeat(np.arange(2 * k_half), m)
    H = np.zeros((labels.size, d))
    H[:, 0] = np.where(labels < k_half, 1.0, -1.0)
    return H, labels


def test_certificate_negative_at_non_global_critical_point():
    H, labels = _merged_pairs()
    tau = 0.5
    Hj = jnp.asarray(H)
    egrad = jax.grad(lambda h: sc.sc_loss(h, labels, tau))(Hj)
    rgrad = egrad - jnp.sum(egrad * Hj, axis=1, keepdims=True) * Hj
    assert float(jnp.linalg.norm(rgrad)) <= 1e-12  # first-order critical
    L_star = sc.global_optimum((3,) * 4, tau).loss
    value = float(sc.sc_loss(H, labels, tau))
    assert value > L_star + 1.0
    lam, gap = sc.certificate(Hj, labels, tau)
    assert float(lam) < -0.1
    assert value - L_star <= float(gap)


def test_certificate_bad_input():
    with pytest.raises(ValueError, match="shape"):
        sc.certificate(np.ones((2, 3, 4, 5)), [0, 0, 1], 1.0)
    with pytest.raises(ValueError, match="do not match"):
        sc.certificate(np.ones((5, 2)), [0, 0, 1, 1], 1.0)


def test_embedding_has_the_asked_dimension_even_above_k():
    opt = sc.global_optimum((3, 4, 5), 0.5)
    for dim in (opt.rank, 3, 7):
        H = opt.embedding(dim)
        assert H.shape == (12, dim)
        np.testing.assert_allclose(np.linalg.norm(H, axis=1), 1.0)
        assert float(sc.sc_loss(H, opt.labels, 0.5)) == pytest.approx(opt.loss, abs=1e-9)
