"""The Riemannian Hessian: closed form against autodiff, finite differences and NumPy; Lanczos
against dense; symmetry zero modes; a constructed saddle with a derived index; classification."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import merged_saddle as _merged_saddle
from reference import random_sphere, sc_loss_loop

from sclandscape.core import problems
from sclandscape.numerics import linalg, loss, oblique
from sclandscape.theory import hessian as hs
from sclandscape.theory import optimum


def _problem(counts, d, seed=0):
    labels = problems.labels_from_counts(counts)
    H = random_sphere(np.random.default_rng(seed), len(labels), d)
    return H, labels


def _loss(H, labels, tau):
    return loss.sum_loss(jnp.asarray(H), jnp.asarray(labels), tau)


def _rgrad(H, labels, tau):
    H = jnp.asarray(H)
    return oblique.riemannian_gradient(H, jax.grad(loss.sum_loss)(H, jnp.asarray(labels), tau))


def _random_tangent(H, seed):
    V = oblique.project_tangent(jnp.asarray(H), np.random.default_rng(seed).standard_normal(H.shape))
    return V / jnp.linalg.norm(V)


def _hess_apply(M, H, V):
    """Dense ``B^T Hess B`` applied to an ambient tangent ``V``, back in ambient coordinates."""
    U = oblique.tangent_basis(jnp.asarray(H))
    n, d = H.shape
    return oblique.to_ambient(U, (M @ oblique.to_coordinates(U, V).reshape(-1)).reshape(n, d - 1))


def _etf_point(k, m, d, tau):
    """The simplex ETF global optimum embedded in ``R^d`` (zero beyond its rank)."""
    opt = optimum.global_optimum((m,) * k, tau)
    return opt.embedding(d), opt


# --------------------------------------------------------------------------
# The dense Hessian


def test_tangent_basis_is_orthonormal_and_tangent():
    H, _ = _problem((3, 4), 5)
    H[0] = -np.eye(5)[0]  # a row on the Householder sign switch
    U = np.asarray(oblique.tangent_basis(jnp.asarray(H)))
    assert U.shape == (7, 5, 4)
    np.testing.assert_allclose(
        np.einsum("ndk,ndl->nkl", U, U), np.broadcast_to(np.eye(4), (7, 4, 4)), atol=1e-14
    )
    np.testing.assert_allclose(np.einsum("ndk,nd->nk", U, H), 0, atol=1e-14)


@pytest.mark.parametrize(
    "counts,d,tau",
    [
        ((2, 3), 3, 0.5),
        pytest.param((3, 3, 4), 4, 1.0, marks=pytest.mark.slow),
        pytest.param((5, 2, 2), 6, 0.2, marks=pytest.mark.slow),
    ],
)
def test_closed_form_matches_autodiff(counts, d, tau):
    """The closed-form assembly equals forward-over-reverse HVPs of numerics.loss on every basis vector."""
    H, labels = _problem(counts, d)
    M = np.asarray(hs.riemannian_hessian(H, labels, tau))
    M_ad = np.asarray(hs.hessian_matrix_autodiff(jnp.asarray(H), jnp.asarray(labels), tau))
    assert M.shape == (len(labels) * (d - 1),) * 2
    np.testing.assert_allclose(M, M.T, atol=0)
    np.testing.assert_allclose(M, M_ad, atol=1e-12 * np.abs(M).max())


def test_hessian_matches_finite_differences_of_gradient():
    """``Hess[V] ~ (Proj_H grad(R_H(tV)) - Proj_H grad(R_H(-tV))) / 2t`` with an O(t^2) error."""
    tau = 0.5
    H, labels = _problem((3, 4, 3), 4, seed=1)
    M = np.asarray(hs.riemannian_hessian(H, labels, tau))
    V = _random_tangent(H, 2)
    exact = np.asarray(_hess_apply(M, H, V))
    errors = []
    for t in (1e-2, 1e-3):
        plus = oblique.project_tangent(H, _rgrad(oblique.retract(H, t * V), labels, tau))
        minus = oblique.project_tangent(H, _rgrad(oblique.retract(H, -t * V), labels, tau))
        errors.append(np.linalg.norm((plus - minus) / (2 * t) - exact))
    assert errors[1] <= 1e-6 * np.linalg.norm(exact)
    assert errors[0] / errors[1] == pytest.approx(100, rel=0.1)  # second-order accurate


def test_taylor_remainder_slope_is_three():
    """pymanopt's check_hessian: along ``R_H(tV)`` (a second-order retraction) the error of the
    second-order model ``L + t<grad, V> + t^2/2 <V, Hess V>`` decays like ``t^3``."""
    tau = 0.7
    H, labels = _problem((4, 3, 3), 5, seed=3)
    M = np.asarray(hs.riemannian_hessian(H, labels, tau))
    V = _random_tangent(H, 4)
    g = np.asarray(_rgrad(H, labels, tau))
    curvature = float(np.sum(np.asarray(V) * np.asarray(_hess_apply(M, H, V))))
    f0 = float(_loss(H, labels, tau))
    ts = np.logspace(-4, -1, 13)
    errors = np.array(
        [
            abs(
                float(_loss(oblique.retract(H, t * V), labels, tau))
                - f0
                - t * np.sum(g * V)
                - t**2 / 2 * curvature
            )
            for t in ts
        ]
    )
    slope = np.polyfit(np.log10(ts), np.log10(errors), 1)[0]
    assert slope == pytest.approx(3.0, abs=0.1)
    # And dropping the Hessian term leaves a slope of 2: the curvature term is what the model needs.
    first = np.array(
        [abs(float(_loss(oblique.retract(H, t * V), labels, tau)) - f0 - t * np.sum(g * V)) for t in ts[:5]]
    )
    assert np.polyfit(np.log10(ts[:5]), np.log10(first), 1)[0] == pytest.approx(2.0, abs=0.1)


def test_against_numpy_finite_difference_hessian():
    """``B^T (nabla^2 L) B - diag(<egrad_i, h_i>)`` from central differences of the NumPy loop reference."""
    tau, h = 0.8, 1e-3
    H, labels = _problem((2, 3, 2), 3, seed=5)
    n, d = H.shape
    f = lambda x: sc_loss_loop(x.reshape(n, d), labels, tau)  # noqa: E731
    x0 = H.reshape(-1)
    E = np.eye(n * d) * h
    egrad = np.array([(f(x0 + e) - f(x0 - e)) / (2 * h) for e in E]).reshape(n, d)
    ehess = np.empty((n * d, n * d))
    for a in range(n * d):
        for b in range(a, n * d):
            ehess[a, b] = ehess[b, a] = (
                f(x0 + E[a] + E[b]) - f(x0 + E[a] - E[b]) - f(x0 - E[a] + E[b]) + f(x0 - E[a] - E[b])
            ) / (4 * h * h)
    U = np.asarray(oblique.tangent_basis(jnp.asarray(H)))
    B = np.zeros((n * d, n * (d - 1)))
    for i in range(n):
        B[i * d : (i + 1) * d, i * (d - 1) : (i + 1) * (d - 1)] = U[i]
    mu = np.sum(egrad * H, axis=1)
    expected = B.T @ ehess @ B - np.kron(np.diag(mu), np.eye(d - 1))
    M = np.asarray(hs.riemannian_hessian(H, labels, tau))
    np.testing.assert_allclose(M, expected, atol=2e-5 * np.abs(M).max())


def test_hvp_is_symmetric_and_matches_dense():
    tau = 0.4
    H, labels = _problem((3, 3, 3), 4, seed=6)
    apply = hs.hvp(H, labels, tau)
    U, V = _random_tangent(H, 7), _random_tangent(H, 8)
    assert float(jnp.sum(U * apply(V))) == pytest.approx(float(jnp.sum(apply(U) * V)), rel=1e-12)
    M = np.asarray(hs.riemannian_hessian(H, labels, tau))
    np.testing.assert_allclose(apply(V), _hess_apply(M, H, V), atol=1e-12)
    # Normal components of the input are ignored (the operator is Proj Hess Proj).
    np.testing.assert_allclose(apply(V + 3.0 * jnp.asarray(H)), apply(V), atol=1e-12)


# --------------------------------------------------------------------------
# Lanczos


@pytest.mark.parametrize("critical", [False, True])
def test_lanczos_extremes_match_dense(critical):
    tau = 0.5
    if critical:
        H, opt = _etf_point(3, 10, 5, tau)
        labels = opt.labels
    else:
        H, labels = _problem((10, 8, 12), 5, seed=9)
    eigs = np.asarray(hs.riemannian_hessian_eigs(H, labels, tau))
    scale = np.abs(eigs).max()
    out = hs.lanczos_extremes(H, labels, tau, num_iter=80, deflate_symmetry=False)
    assert float(out.lambda_min) == pytest.approx(eigs[0], abs=1e-8 * scale)
    assert float(out.lambda_max) == pytest.approx(eigs[-1], abs=1e-8 * scale)
    assert float(out.residual_min) <= 1e-8 * scale
    # The Ritz vector is a unit tangent eigenvector.
    v = out.vector_min
    assert float(jnp.linalg.norm(v)) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(oblique.project_tangent(jnp.asarray(H), v), v, atol=1e-12)
    if critical:
        # Deflating the symmetry modes leaves the smallest non-symmetry eigenvalue.
        rank = int(oblique.numerical_rank(H))
        predicted = oblique.predicted_zero_modes(rank, 5)
        deflated = hs.lanczos_extremes(H, labels, tau, num_iter=80)
        assert int(deflated.n_deflated) == predicted
        assert float(deflated.lambda_min) == pytest.approx(eigs[predicted], abs=1e-8 * scale)
        assert eigs[predicted] > 1e-3 * scale


def test_lanczos_full_length_recovers_whole_spectrum():
    """With ``m = N`` steps (restarts at exhausted invariant subspaces) every eigenvalue appears."""
    tau = 1.0
    H, opt = _etf_point(3, 3, 3, tau)  # a highly degenerate spectrum: Krylov spaces exhaust quickly
    labels = opt.labels
    eigs = np.asarray(hs.riemannian_hessian_eigs(H, labels, tau))
    out = hs.lanczos_extremes(H, labels, tau, num_iter=eigs.size, deflate_symmetry=False)
    np.testing.assert_allclose(np.asarray(out.ritz_values), eigs, atol=1e-10)


def test_spectral_density_moments():
    tau = 0.5
    H, labels = _problem((8, 8, 8), 6, seed=10)
    eigs = np.asarray(hs.riemannian_hessian_eigs(H, labels, tau))
    nodes, weights = hs.spectral_density(H, labels, tau, num_iter=40, num_probes=16)
    assert nodes.shape == weights.shape == (16, 40)
    assert float(jnp.sum(weights)) == pytest.approx(1.0, abs=1e-12)
    assert float(nodes.min()) >= eigs[0] - 1e-9 and float(nodes.max()) <= eigs[-1] + 1e-9
    # Hutchinson-type estimates of the first two spectral moments.
    mean, second = np.mean(eigs), np.mean(eigs**2)
    assert float(jnp.sum(weights * nodes)) == pytest.approx(mean, abs=0.05 * np.sqrt(second))
    assert float(jnp.sum(weights * nodes**2)) == pytest.approx(second, rel=0.1)
    grid = np.linspace(eigs[0] - 1, eigs[-1] + 1, 4001)
    density = np.asarray(hs.density_on_grid(nodes, weights, grid, 0.05))
    assert np.sum(density) * (grid[1] - grid[0]) == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------
# Symmetry zero modes


def test_predicted_zero_modes():
    assert oblique.predicted_zero_modes(2, 4) == 5
    assert oblique.predicted_zero_modes(4, 4) == 6
    assert oblique.predicted_zero_modes(1, 3) == 2
    assert oblique.predicted_zero_modes(9, 32) == 496 - 253


def test_etf_has_exactly_the_symmetry_zero_modes():
    """Simplex ETF, k = 3 classes of 4 in d = 4 (rank 2): 5 zero eigenvalues, the rest strictly positive."""
    tau = 1.0
    H, opt = _etf_point(3, 4, 4, tau)
    labels = opt.labels
    eigs = np.asarray(hs.riemannian_hessian_eigs(H, labels, tau))
    scale = np.abs(eigs).max()
    # The derived rounding bound of the computed Hessian (not a fraction of its scale) decides zero:
    # at the exact optimum (class_means keeps only rank(M*) components) the modes are rounding.
    Hj, yj = jnp.asarray(H), jnp.asarray(labels)
    M = hs.hessian_matrix(Hj, yj, tau)
    bound = float(hs.hessian_rounding_bound(Hj, yj, tau, M, hs.hessian_matrix(Hj, yj, tau, absolute=True)))
    assert int(oblique.numerical_rank(H)) == 2
    assert np.sum(np.abs(eigs) <= bound) == oblique.predicted_zero_modes(2, 4) == 5
    assert eigs[5] > bound and eigs[5] >= 0.1 * scale
    # The zero eigenspace is exactly {H Omega}: orthonormal, tangent, annihilated by the Hessian.
    modes, count = oblique.symmetry_modes(H)
    assert int(count) == 5
    Z = np.asarray(modes).reshape(modes.shape[0], -1)
    np.testing.assert_allclose(Z @ Z.T, np.diag([1.0] * 5 + [0.0]), atol=1e-14)
    M = np.asarray(M)
    for z in np.asarray(modes)[:5]:
        np.testing.assert_allclose(oblique.project_tangent(H, z), z, atol=1e-15)
        assert float(jnp.linalg.norm(_hess_apply(M, H, z))) <= bound


def test_symmetry_modes_full_rank_and_wide():
    H, _ = _problem((3, 3), 3)
    modes, count = oblique.symmetry_modes(H)
    assert int(count) == 3
    Hw, _ = _problem((2, 2), 6)  # n < d: rank 4, 15 - 1 modes
    modes, count = oblique.symmetry_modes(Hw)
    assert int(count) == oblique.predicted_zero_modes(4, 6) == 14
    Z = np.asarray(modes).reshape(15, -1)
    np.testing.assert_allclose(Z @ Z.T, np.diag([1.0] * 14 + [0.0]), atol=1e-13)


# --------------------------------------------------------------------------
# A constructed saddle: two of four balanced classes merged onto one point


@pytest.mark.slow  # ~15 s; test_verdict.py proves the same saddle in the fast suite
def test_merged_classes_saddle_index():
    """Derivation of the index. The swap sigma of classes 2 <-> 3 (sample j <-> j) is a symmetry of L
    fixing the point, so the tied critical point is critical for the full problem (symmetric
    criticality) and the Hessian splits into sigma-even (the tied problem's Hessian: PSD at its
    minimum) and sigma-odd parts. The odd tangent space {v_{3,j} = -v_{2,j} perp mu, classes 0, 1 at
    rest} is R^m (x) mu^perp = (trivial + standard of S_m) (x) (in-plane + (d-2) out-of-plane), four
    distinct irreducibles of S_m x O(d-2), so each is an eigenspace: multiplicities 1, d-2, m-1,
    (m-1)(d-2). The rigid splits (trivial) have closed-form curvature: along class 2 -> mu cos e +
    u sin e, class 3 -> mu cos e - u sin e, with x = mu.mu_0 = mu.mu_1, a^2 = (mu_0.u)^2 and
    Z_0 = (m-1)e^s + m e^{sy} + 2m e^{sx}, Z_2 = (2m-1)e^s + 2m e^{sx} (s = 1/tau),
        lambda(a^2) = [4 m e^{sx}(s^2 a^2 - s x)/Z_0 + 2(-4 s m e^s + 2 m e^{sx}(s^2 a^2 - s x))/Z_2] / 2,
    a^2 = 0 out of plane and 1 - x^2 in plane; the spread (standard) modes' signs come from second
    differences of the NumPy reference loss. index = sum of the multiplicities of negative ones."""
    m, d, tau = 4, 4, 0.5
    H, labels, cost, X = _merged_saddle(m, d, tau)
    s = 1 / tau
    G = H @ H.T
    x, y = G[0, 2 * m], G[0, m]
    # The point: collapsed classes, planar, mu_0 and mu_1 symmetric about mu = mu_2 = mu_3.
    np.testing.assert_allclose(G[2 * m : 3 * m, 3 * m :], 1.0, atol=1e-12)
    assert G[m, 2 * m] == pytest.approx(x, abs=1e-10) and int(oblique.numerical_rank(H)) == 2
    # Critical for the full problem; the tied problem's Hessian is PSD (a second-order point there).
    assert float(jnp.linalg.norm(_rgrad(H, labels, tau))) <= 1e-10
    egrad = jax.grad(cost)
    Xj = jnp.asarray(X)
    U = oblique.tangent_basis(Xj)
    column = lambda e: oblique.to_coordinates(  # noqa: E731
        U, oblique.riemannian_hvp(egrad, Xj, oblique.to_ambient(U, e.reshape(3 * m, d - 1)))
    ).reshape(-1)
    reduced = np.asarray(jax.jit(jax.vmap(column))(jnp.eye(3 * m * (d - 1))))
    assert np.linalg.eigvalsh(0.5 * (reduced + reduced.T))[0] >= -1e-9

    E = np.exp
    Z0 = (m - 1) * E(s) + m * E(s * y) + 2 * m * E(s * x)
    Z2 = (2 * m - 1) * E(s) + 2 * m * E(s * x)

    def lam(a2):
        anchor_0 = 4 * m * E(s * x) * (s * s * a2 - s * x) / Z0
        anchor_2 = 2 * (-4 * s * m * E(s) + 2 * m * E(s * x) * (s * s * a2 - s * x)) / Z2
        return (anchor_0 + anchor_2) / 2

    rigid_out, rigid_in = lam(0.0), lam(1 - x * x)

    mu = H[2 * m]
    u_in = H[0] - x * mu
    u_in /= np.linalg.norm(u_in)
    u_out = np.linalg.svd(H)[2][2]  # orthogonal to the plane of the means

    def odd(c, u):
        V = np.zeros_like(H)
        V[2 * m : 3 * m] = np.outer(c, u)
        V[3 * m :] = -np.outer(c, u)
        return V / np.linalg.norm(V)

    def second_difference(V, e=1e-3):
        f = lambda t: sc_loss_loop(np.asarray(oblique.retract(H, t * V)), labels, tau)  # noqa: E731
        return (f(e) + f(-e) - 2 * f(0.0)) / e**2

    spread = np.array([1.0, -1.0] + [0.0] * (m - 2))
    spread_in, spread_out = second_difference(odd(spread, u_in)), second_difference(odd(spread, u_out))
    assert second_difference(odd(np.ones(m), u_out)) == pytest.approx(rigid_out, rel=1e-5)
    assert second_difference(odd(np.ones(m), u_in)) == pytest.approx(rigid_in, rel=1e-5)
    multiplicities = np.array([1, d - 2, m - 1, (m - 1) * (d - 2)])
    curvatures = np.array([rigid_in, rigid_out, spread_in, spread_out])
    expected_index = int(np.sum(multiplicities[curvatures < 0]))
    assert expected_index == d - 1  # here: exactly the rigid splits of the merged pair

    eigs = np.asarray(hs.riemannian_hessian_eigs(H, labels, tau))
    M = np.asarray(hs.riemannian_hessian(H, labels, tau))
    for c, u, value in [(np.ones(m), u_in, rigid_in), (np.ones(m), u_out, rigid_out)]:
        V = odd(c, u)  # an eigenvector, with the closed-form eigenvalue
        np.testing.assert_allclose(_hess_apply(M, H, V), value * V, atol=1e-10)
    assert np.sum(np.isclose(eigs, rigid_out, atol=1e-9)) == d - 2
    assert np.sum(np.isclose(eigs, rigid_in, atol=1e-9)) == 1

    assert np.sum(eigs < -1e-8) == expected_index
    lowest = min(rigid_in, rigid_out)
    assert eigs[0] == pytest.approx(lowest, rel=1e-10)
    # Lanczos with the symmetry modes deflated sees the same smallest eigenvalue.
    lanczos = hs.lanczos_extremes(H, labels, tau, num_iter=40)
    assert float(lanczos.lambda_min) == pytest.approx(lowest, rel=1e-10)

    # The escape direction is the negative eigenvector and a retraction step along it lowers the loss.
    for method in ("dense", "lanczos"):
        escape = hs.escape_direction(H, labels, tau, method=method, num_iter=40)
        assert float(escape.eigenvalue) == pytest.approx(lowest, rel=1e-10)
        assert float(jnp.linalg.norm(escape.direction)) == pytest.approx(1.0, abs=1e-12)
        check = hs.escape_decrease(H, labels, tau, escape.direction)
        assert float(check.decrease) > 0 and float(check.loss_after) < float(check.loss)
    small = hs.escape_decrease(H, labels, tau, escape.direction, steps=[1e-3])
    # A small step follows the quadratic model: decrease ~ -lambda t^2 / 2.
    assert float(small.decrease) == pytest.approx(-lowest * 1e-6 / 2, rel=1e-2)


# --------------------------------------------------------------------------
# Invariances and batching


def test_eigenvalues_invariant_under_rotation():
    tau = 0.6
    H, labels = _problem((4, 3, 5), 4, seed=11)
    Q, _ = np.linalg.qr(np.random.default_rng(12).standard_normal((4, 4)))
    e1 = np.asarray(hs.riemannian_hessian_eigs(H, labels, tau))
    e2 = np.asarray(hs.riemannian_hessian_eigs(H @ Q, labels, tau))
    np.testing.assert_allclose(e1, e2, atol=1e-12 * np.abs(e1).max())


def test_batched_equals_loop():
    tau = 0.5
    labels = problems.labels_from_counts((3, 3, 2))
    rng = np.random.default_rng(13)
    Hs = np.stack([random_sphere(rng, 8, 4) for _ in range(3)])
    eigs = np.asarray(hs.riemannian_hessian_eigs(Hs, labels, tau))
    mats = np.asarray(hs.riemannian_hessian(Hs, labels, tau))
    assert eigs.shape == (3, 24) and mats.shape == (3, 24, 24)
    for r in range(3):
        np.testing.assert_allclose(eigs[r], hs.riemannian_hessian_eigs(Hs[r], labels, tau), atol=1e-13)
        np.testing.assert_allclose(mats[r], hs.riemannian_hessian(Hs[r], labels, tau), atol=1e-13)


@pytest.mark.slow  # ~12 s of compilation; the dense batch-vs-loop check above stays in the fast suite
def test_batched_lanczos_and_density_equal_loop():
    tau = 0.5
    labels = problems.labels_from_counts((3, 3, 2))
    rng = np.random.default_rng(13)
    Hs = np.stack([random_sphere(rng, 8, 4) for _ in range(3)])
    key = jax.random.key(3)
    batch = hs.lanczos_extremes(Hs, labels, tau, num_iter=12, key=key)
    keys = jax.random.split(key, 3)
    for r in range(3):
        one = hs.lanczos_extremes(Hs[r], labels, tau, num_iter=12, key=keys[r])
        np.testing.assert_allclose(batch.ritz_values[r], one.ritz_values, atol=1e-12)

    # The single-instance pieces are vmap-safe: Lanczos on the HVP closure, vmapped over runs.
    def alphas(h, k):
        project = lambda v: oblique.project_tangent(h, v)  # noqa: E731
        start = project(jnp.ones_like(h))
        return linalg.lanczos(hs.hvp(h, labels, tau), start, 10, project=project, key=k).alpha

    vmapped = jax.vmap(alphas)(jnp.asarray(Hs), keys)
    for r in range(3):
        np.testing.assert_allclose(vmapped[r], alphas(jnp.asarray(Hs[r]), keys[r]), atol=1e-12)
    nodes, weights = hs.spectral_density(Hs, labels, tau, num_iter=10, num_probes=2, key=key)
    assert nodes.shape == (3, 2, 10)
    np.testing.assert_allclose(
        nodes[1],
        hs.spectral_density(Hs[1], labels, tau, num_iter=10, num_probes=2, key=keys[1])[0],
        atol=1e-12,
    )


def test_single_compile_for_new_points():
    tau = 0.5
    H, labels = _problem((3, 3), 3, seed=14)
    hs.riemannian_hessian_eigs(H, labels, tau)
    before = hs._riemannian_hessian_eigs._cache_size()
    hs.riemannian_hessian_eigs(_problem((3, 3), 3, seed=15)[0], labels, 0.7)
    assert hs._riemannian_hessian_eigs._cache_size() == before


# --------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda H, y: hs.riemannian_hessian_eigs(H[:, :1], y, 1.0), "d >= 2"),
        (lambda H, y: hs.riemannian_hessian_eigs(H[None, None], y, 1.0), "shape"),
        (lambda H, y: hs.riemannian_hessian_eigs(H, y[:-1], 1.0), "labels"),
        (lambda H, y: hs.riemannian_hessian_eigs(H, y, -1.0), "tau"),
        (lambda H, y: hs.riemannian_hessian_eigs(np.where(H > 0.5, np.nan, H), y, 1.0), "non-finite"),
        (lambda H, y: hs.riemannian_hessian(np.zeros_like(H), y, 1.0), "zero row"),
        (lambda H, y: hs.riemannian_hessian(H.astype(int), y, 1.0), "floating"),
        (lambda H, y: hs.spectral_density(H, y, 1.0, num_probes=0), "num_probes"),
        (lambda H, y: hs.hvp(H[None], y, 1.0), "one configuration"),
        (lambda H, y: hs.escape_decrease(H, y, 1.0, H[:, :2]), "shape"),
        (lambda H, y: hs.escape_decrease(H, y, 1.0, H, steps=[0.0]), "steps"),
        (lambda H, y: hs.escape_direction(H, y, 1.0, method="power"), "method"),
        (lambda H, y: hs.lanczos_extremes(H, np.array([0, 0, 0, 1, 1, 2]), 1.0), "class 2"),
    ],
)
def test_bad_inputs_raise_value_error(call, match):
    H, labels = _problem((3, 3), 3)
    with pytest.raises(ValueError, match=match):
        call(H, labels)


# --------------------------------------------------------------------------
# Large: the Lanczos target


@pytest.mark.slow
def test_lanczos_n1000_d32_smallest_eigenvalue():
    """n = 1000, d = 32 (31,000 tangent dimensions): the smallest eigenvalue to 1e-6 relative within
    300 HVPs, against a 600-step run whose residual certifies it."""
    tau = 0.5
    rng = np.random.default_rng(18)
    labels = problems.labels_from_counts((100,) * 10)
    H = random_sphere(rng, 1000, 32)
    ref = hs.lanczos_extremes(H, labels, tau, num_iter=600)
    assert float(ref.residual_min) <= 1e-10 * abs(float(ref.lambda_min))
    out = hs.lanczos_extremes(H, labels, tau, num_iter=300)
    assert float(out.lambda_min) == pytest.approx(float(ref.lambda_min), rel=1e-6)


def test_riemannian_hessian_eigs_is_float64_with_x64_off():
    """The precision policy: the spectrum is computed in float64 whatever jax_enable_x64 says."""
    import subprocess
    import sys

    code = (
        "import jax, numpy as np\n"
        "import sclandscape as sc\n"
        "assert not jax.config.jax_enable_x64\n"
        "labels = sc.labels_from_counts((3, 3))\n"
        "H = np.random.default_rng(0).normal(size=(6, 3))\n"
        "H /= np.linalg.norm(H, axis=1, keepdims=True)\n"
        "e = sc.riemannian_hessian_eigs(H, labels, 0.5)\n"
        "with jax.enable_x64(True):\n"
        "    f = np.asarray(sc.riemannian_hessian_eigs(H, labels, 0.5))\n"
        "print(e.dtype, float(np.max(np.abs(np.asarray(e) - f))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    dtype, diff = out.split()
    assert dtype == "float64" and float(diff) == 0.0, out
