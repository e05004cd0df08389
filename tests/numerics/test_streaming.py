"""The streaming SC loss, gradient, HVP and certificate against the dense path (and NumPy)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import certificate_numpy, random_sphere, sc_loss_loop

import sclandscape as sc
from sclandscape.numerics import loss as loss_lib
from sclandscape.numerics import streaming
from sclandscape.theory import certify, hessian

# (counts, d, tau, block): a block that divides n, one that does not, one larger than n.
CASES = [
    ((5, 7, 3, 9, 2), 4, 0.3, 13),  # n = 26 = 2 * 13
    ((10, 10, 2, 2), 3, 1.0, 64),
    ((4, 2, 2, 6, 3), 8, 0.05, 5),
]


def shuffled_labels(rng, counts, gaps=True):
    """Shuffled labels; with ``gaps`` the class values are sparse (1, 4, 7, ...), as the library allows."""
    values = np.arange(len(counts)) * (3 if gaps else 1) + (1 if gaps else 0)
    return rng.permutation(np.repeat(values, counts))


def relerr(a, b, scale=0.0):
    """Largest entry error relative to the largest entry of ``b`` (or ``scale`` when larger)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), scale))


def dense_loss(labels, tau, reduction="sum"):
    return lambda h: sc.sc_loss(h, labels, tau, reduction=reduction)


@pytest.mark.parametrize("counts,d,tau,block", CASES)
def test_value_gradient_hvp_match_dense_float64(counts, d, tau, block):
    rng = np.random.default_rng(len(counts) + block)
    labels = shuffled_labels(rng, counts)
    # Off the sphere on purpose: the positive part must not assume |h_i| = 1.
    H = jnp.asarray(1.3 * rng.standard_normal((len(labels), d)))
    V = jnp.asarray(rng.standard_normal(H.shape))
    value, grad = streaming.value_and_grad(H, labels, tau, block=block)
    assert float(value) == pytest.approx(sc_loss_loop(H, labels, tau), rel=1e-12)
    assert float(value) == pytest.approx(float(sc.sc_loss(H, labels, tau)), rel=1e-12)
    assert relerr(grad, jax.grad(dense_loss(labels, tau))(H)) <= 1e-12
    dense_hvp = jax.jvp(jax.grad(dense_loss(labels, tau)), (H,), (V,))[1]
    assert relerr(streaming.hvp(H, labels, tau, V, block=block), dense_hvp) <= 1e-12


def test_riemannian_hvp_matches_dense():
    rng = np.random.default_rng(1)
    labels = shuffled_labels(rng, (6, 4, 5))
    H = jnp.asarray(random_sphere(rng, 15, 3))
    V = jnp.asarray(rng.standard_normal(H.shape))
    dense = jax.jit(lambda h, v: hessian.hvp(h, labels, 0.2)(v))(H, V)
    assert relerr(streaming.riemannian_hvp(H, labels, 0.2, V, block=4), dense) <= 1e-12
    apply = jax.jit(lambda h, v: hessian.hvp_operator(h, labels, 0.2, stream=True)(v))
    assert relerr(apply(H, V), dense) <= 1e-12


def test_row_hessian_blocks_match_dense():
    # The trust region's block-Jacobi preconditioner, off the sphere and with padding.
    rng = np.random.default_rng(11)
    H = jnp.asarray(1.2 * rng.standard_normal((23, 4)))
    got = jax.jit(lambda h: streaming.row_hessian_blocks_streaming(h, 0.2, block=8))(H)
    assert relerr(got, loss_lib.row_hessian_blocks(H, 0.2)) <= 1e-12


def test_mean_reduction():
    rng = np.random.default_rng(2)
    labels = shuffled_labels(rng, (6, 2, 4))
    H = jnp.asarray(random_sphere(rng, 12, 6))
    value, grad = streaming.value_and_grad(H, labels, 0.1, block=5, reduction="mean")
    dense_value, dense_grad = jax.value_and_grad(dense_loss(labels, 0.1, "mean"))(H)
    assert float(value) == pytest.approx(float(dense_value), rel=1e-12)
    assert relerr(grad, dense_grad) <= 1e-12
    V = jnp.asarray(rng.standard_normal(H.shape))
    dense_hvp = jax.jvp(jax.grad(dense_loss(labels, 0.1, "mean")), (H,), (V,))[1]
    assert relerr(streaming.hvp(H, labels, 0.1, V, block=5, reduction="mean"), dense_hvp) <= 1e-12


def test_float32_matches_float64_dense():
    rng = np.random.default_rng(3)
    labels = shuffled_labels(rng, (10, 7, 12, 3))
    H64 = jnp.asarray(random_sphere(rng, 32, 5))
    H32 = H64.astype(jnp.float32)
    value, grad = streaming.value_and_grad(H32, labels, 0.2, block=12)
    assert value.dtype == grad.dtype == jnp.float32
    dense_value, dense_grad = jax.value_and_grad(dense_loss(labels, 0.2))(H64)
    assert float(value) == pytest.approx(float(dense_value), rel=1e-5)
    assert relerr(grad, dense_grad) <= 1e-5
    V = jnp.asarray(rng.standard_normal(H64.shape))
    dense_hvp = jax.jvp(jax.grad(dense_loss(labels, 0.2)), (H64,), (V,))[1]
    assert relerr(streaming.hvp(H32, labels, 0.2, V.astype(jnp.float32), block=12), dense_hvp) <= 1e-5


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_stable_at_small_tau(dtype):
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 5)
    H = jnp.asarray(random_sphere(rng, 15, 3), dtype)
    same = jnp.ones((15, 3), dtype) / jnp.sqrt(3.0).astype(dtype)
    V = jnp.asarray(rng.standard_normal((15, 3)), dtype)
    for h in (H, same):
        value, grad = streaming.value_and_grad(h, labels, 0.01, block=4)
        hv = streaming.hvp(h, labels, 0.01, V, block=4)
        assert np.isfinite(float(value))
        assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.isfinite(np.asarray(hv)))
        if dtype == jnp.float64:
            # At coincident points the gradient vanishes: compare on its natural scale n / tau.
            dense_value, dense_grad = jax.value_and_grad(dense_loss(labels, 0.01))(h)
            assert float(value) == pytest.approx(float(dense_value), rel=1e-12)
            assert relerr(grad, dense_grad, scale=15 / 0.01) <= 1e-12
            dense_hvp = jax.jvp(jax.grad(dense_loss(labels, 0.01)), (h,), (V,))[1]
            assert relerr(hv, dense_hvp, scale=15 / 0.01**2) <= 1e-12
    assert float(streaming.sc_loss_streaming(same, labels, 0.01, block=4)) == pytest.approx(
        15 * np.log(14), rel=1e-5
    )
    if dtype == jnp.float32:
        exact = sc_loss_loop(np.asarray(H, np.float64), labels, 0.01)
        assert float(streaming.sc_loss_streaming(H, labels, 0.01, block=4)) == pytest.approx(exact, rel=1e-5)


def test_anchor_without_positive_contributes_zero():
    # Traced labels skip the count check: a singleton class behaves as in ``anchor_losses``.
    rng = np.random.default_rng(5)
    labels = jnp.asarray([0, 0, 0, 5, 2, 2, 2, 2, 9])
    H = jnp.asarray(rng.standard_normal((9, 3)))
    stream = jax.jit(jax.value_and_grad(lambda h, y: streaming.streaming_loss(y, 0.4, block=4)(h)))
    dense = jax.jit(jax.value_and_grad(lambda h, y: jnp.sum(loss_lib.anchor_losses(h @ h.T, y, 0.4))))
    (v, g), (vd, gd) = stream(H, labels), dense(H, labels)
    assert float(v) == pytest.approx(float(vd), rel=1e-12)
    assert relerr(g, gd) <= 1e-12


def test_vmap_over_runs_and_jvp_of_the_loss():
    rng = np.random.default_rng(6)
    labels = shuffled_labels(rng, (3, 3, 4))
    Hs = jnp.asarray(np.stack([random_sphere(rng, 10, 3) for _ in range(4)]))
    f = jax.jit(jax.vmap(jax.value_and_grad(streaming.streaming_loss(labels, 0.5, block=3))))
    values, grads = f(Hs)
    dense_values, dense_grads = jax.vmap(jax.value_and_grad(dense_loss(labels, 0.5)))(Hs)
    np.testing.assert_allclose(np.asarray(values), np.asarray(dense_values), rtol=1e-12)
    assert relerr(grads, dense_grads) <= 1e-12
    # Forward mode on the loss itself (the custom JVP is <grad, V>).
    V = Hs[::-1]
    jvp = jax.jit(
        jax.vmap(lambda h, v: jax.jvp(streaming.streaming_loss(labels, 0.5, block=3), (h,), (v,))[1])
    )
    np.testing.assert_allclose(
        np.asarray(jvp(Hs, V)), np.asarray(jnp.sum(dense_grads * V, axis=(1, 2))), rtol=1e-11
    )


def _etf_point(k=4, m=5):
    """Collapsed simplex ETF (the global optimum for balanced classes, docs/maths.md §2.4) in ``d = k``."""
    labels = np.repeat(np.arange(k), m)
    H = np.eye(k)[labels] - 1.0 / k
    return jnp.asarray(H / np.linalg.norm(H, axis=1, keepdims=True)), labels


def test_certificate_matches_dense():
    # Runs of one size: the global optimum (S is PSD, bound ~0), a random point, and the same
    # random point by the single-run entry; all against the dense certificate and NumPy.
    rng = np.random.default_rng(7)
    H_opt, labels = _etf_point()
    H = jnp.asarray(random_sphere(rng, 20, 4))
    out = certify.dual_slack_extremes(jnp.stack([H_opt, H]), labels, 0.5, block=8, num_iter=20)
    lam_d, gap_d = sc.certificate(jnp.stack([H_opt, H]), labels, 0.5)
    assert abs(float(out.lambda_min[0])) <= 1e-10 and float(out.gap_bound[0]) <= 1e-8
    assert float(out.lambda_min[1]) == pytest.approx(float(lam_d[1]), rel=1e-10)
    assert float(out.gap_bound[1]) == pytest.approx(float(gap_d[1]), rel=1e-10)
    assert float(out.lambda_min[1]) == pytest.approx(certificate_numpy(H, labels, 0.5)[0], rel=1e-10)
    assert float(out.lambda_min[1]) < 0 and float(out.residual[1]) <= 1e-8
    # Fewer Lanczos steps than n: a Rayleigh quotient, never below lambda_min(S).
    lam, gap = certify.certificate_streaming(H, labels, 0.5, block=8, num_iter=8)
    assert float(lam_d[1]) - 1e-10 <= float(lam) < 0
    assert float(gap) == pytest.approx(20 * -float(lam), rel=1e-6)


def _hlo_has_square(compiled, n):
    return re.search(rf"\[{n},{n}\]", compiled.as_text()) is not None


def test_no_n_by_n_buffer_is_materialised():
    n, d, block = 4096, 8, 256
    labels = jnp.arange(n) % 16
    H = jax.ShapeDtypeStruct((n, d), jnp.float32)
    square = n * n * 4
    cost = streaming.streaming_loss(labels, 0.1, block=block, impl="jax")
    programs = {
        "value_and_grad": jax.value_and_grad(cost),
        "hvp": lambda h: jax.jvp(jax.grad(cost), (h,), (h,))[1],
        "linearize": lambda h: jax.linearize(jax.grad(cost), h)[1](h),
    }
    for name, fn in programs.items():
        compiled = jax.jit(fn).lower(H).compile()
        assert compiled.memory_analysis().temp_size_in_bytes < square / 8, name
        assert not _hlo_has_square(compiled, n), name
    # The detector works: the dense path holds several n x n buffers.
    dense = jax.jit(jax.value_and_grad(lambda h: jnp.sum(loss_lib.anchor_losses(h @ h.T, labels, 0.1))))
    compiled = dense.lower(H).compile()
    assert compiled.memory_analysis().temp_size_in_bytes > square and _hlo_has_square(compiled, n)
    # The certificate's S v, too.
    op = jax.eval_shape(lambda h: streaming.slack_operator(h, labels, 0.1, block), H)
    v = jax.ShapeDtypeStruct((n,), jnp.float32)
    matvec = jax.jit(lambda o, x: streaming.slack_matvec(o, x, 0.1, n, block)).lower(op, v).compile()
    assert matvec.memory_analysis().temp_size_in_bytes < square / 8
    assert not _hlo_has_square(matvec, n)


@pytest.mark.parametrize(
    "dtype,block", [(jnp.float32, 16), pytest.param(jnp.float64, 40, marks=pytest.mark.slow)]
)
def test_pallas_interpret_matches_pure_jax(dtype, block):
    # 33 rows: padding in both cases (the kernels tile by 16 and by 32 here).
    rng = np.random.default_rng(9)
    labels = shuffled_labels(rng, (9, 11, 7, 6))
    H = jnp.asarray(1.1 * rng.standard_normal((33, 5)), dtype)
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    v_jax, g_jax = streaming.value_and_grad(H, labels, 0.3, block=block, impl="jax")
    v_pl, g_pl = streaming.value_and_grad(H, labels, 0.3, block=block, impl="interpret")
    assert float(v_pl) == pytest.approx(float(v_jax), rel=tol)
    assert relerr(g_pl, g_jax) <= tol
    if dtype == jnp.float64:
        # Under vmap, and the HVP (the JVP rules are pure JAX whatever computes the primal).
        cost = streaming.streaming_loss(labels, 0.3, block=block, impl="interpret")
        Hs = jnp.stack([H, -0.5 * H])
        grads = jax.jit(jax.vmap(jax.grad(cost)))(Hs)
        assert relerr(grads, jax.vmap(jax.grad(dense_loss(labels, 0.3)))(Hs)) <= tol
        hv = jax.jit(lambda h, v: jax.jvp(jax.grad(cost), (h,), (v,))[1])(H, H[::-1])
        assert relerr(hv, jax.jvp(jax.grad(dense_loss(labels, 0.3)), (H,), (H[::-1],))[1]) <= tol


def test_auto_impl_on_cpu_is_pure_jax():
    if jax.default_backend() == "cpu":
        assert streaming._resolve_impl("auto") == "jax"
    assert streaming._resolve_impl("interpret") == "interpret"


def test_use_streaming_rule():
    assert not streaming.use_streaming(1000, 32)
    assert streaming.use_streaming(20_000, 32)
    assert streaming.use_streaming(1000, 32, runs=256)
    assert streaming.use_streaming(100, 3, max_entries=100)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"block": 0}, "block"),
        ({"block": 2.5}, "block"),
        ({"reduction": "max"}, "reduction"),
        ({"impl": "x"}, "impl"),
    ],
)
def test_bad_input(kwargs, match):
    H = np.eye(4, 2)
    with pytest.raises(ValueError, match=match):
        streaming.sc_loss_streaming(H, [0, 0, 1, 1], 0.5, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="labels"):
        streaming.value_and_grad(np.ones((4, 2)), [0, 0, 1], 0.5)
    with pytest.raises(ValueError, match="V must"):
        streaming.hvp(np.ones((4, 2)), [0, 0, 1, 1], 0.5, np.ones((4, 3)))
    with pytest.raises(ValueError, match="num_iter"):
        certify.certificate_streaming(np.ones((4, 2)), [0, 0, 1, 1], 0.5, num_iter=0)


@pytest.mark.slow
def test_large_n_matches_dense_and_certifies():
    rng = np.random.default_rng(10)
    counts = (300,) * 8
    labels = shuffled_labels(rng, counts)
    H = jnp.asarray(random_sphere(rng, sum(counts), 16))
    value, grad = streaming.value_and_grad(H, labels, 0.1, block=512)
    dense_value, dense_grad = jax.value_and_grad(dense_loss(labels, 0.1))(H)
    assert float(value) == pytest.approx(float(dense_value), rel=1e-12)
    assert relerr(grad, dense_grad) <= 1e-12
    H_opt, labels_opt = _etf_point(k=8, m=300)
    lam, gap = certify.certificate_streaming(H_opt, labels_opt, 0.1, num_iter=60)
    assert abs(float(lam)) <= 1e-8 and float(gap) <= 1e-6
    assert float(sc.sc_loss(H_opt, labels_opt, 0.1)) == pytest.approx(
        sc.balanced_optimum_loss(8, 300, 0.1), rel=1e-12
    )
