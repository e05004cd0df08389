"""Continuation in tau of a spurious minimum (``sclandscape.explore.continuation``).

The points: the proven strict spurious minimum of counts 10,10,2,2, d = 5 at
tau = 0.02, and a point of its branch near the fold (tau = 0.0242281,
lambda_min = 4.8e-5), where the branch ends at tau_c = 0.0242310; the arclength path through
that fold (checked against a finite-difference Hessian); the spread constructions of
``saddles.search_spurious``.
"""

import pathlib

import numpy as np
import pytest

from sclandscape.explore import arclength, continuation, critical, ends, families
from sclandscape.numerics import oblique
from sclandscape.theory import verdict

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"


def _load(name):
    z = np.load(DATA / name)
    return z["H"], z["labels"], float(z["tau"])


def test_short_continuation_stays_a_strict_minimum_and_matches_a_resolve():
    H0, labels, tau0 = _load("spurious_step_d5_tau0.02.npz")
    tau1 = 0.0203
    settings = continuation.ContinuationSettings(step=3e-4, classify=False)
    branch = continuation.continue_minimum(H0, labels, tau0, tau1, settings)
    assert branch.reached_end and branch.tau_last == tau1
    assert np.all(branch.index == 0) and np.all(branch.lambda_min > 0)
    end = branch.points[-1]
    verdict_end = verdict.classify(end, labels, tau1)
    assert verdict_end.kind == "spurious_min" and verdict_end.strict_certified

    # An independent re-solve: the unguarded corrector straight from the tau = 0.02 point (no
    # predictor, no guard, no Newton polish).
    direct = critical.find_critical(H0, labels, tau1, continuation.corrector_settings(settings, max_index=-1))
    assert critical.status_names(direct.status) == ["converged"]
    X, b = continuation.newton_polish(np.asarray(direct.x), labels, tau1, settings.newton_steps)
    a = continuation.analyse(end, labels, tau1)
    # Each point is within |grad| / lambda_min of the critical point (to first order; the two
    # lambda_min agree to far better than a factor 2).
    lam = min(continuation.lambda_min(a), continuation.lambda_min(b))
    tol = 2.0 * (float(a.grad_norm) + float(b.grad_norm)) / lam
    assert continuation.rotation_distance(end, X) <= tol
    # The losses then differ by at most |grad| times that distance, plus their rounding.
    assert abs(float(a.loss) - float(b.loss)) <= tol * max(
        float(a.grad_norm), float(b.grad_norm)
    ) + 1e-12 * abs(float(a.loss))


def test_index_guard_rejects_a_step_onto_a_saddle():
    H, labels, tau = _load("near_fold_step_d5.npz")
    local = continuation.analyse(H, labels, tau)
    lam = continuation.lambda_min(local)
    assert int(local.index) == 0 and lam > 0
    # The fold's partner: along the soft mode f ~ lam s^2/2 + D3 s^3/6, a saddle at s = -2 lam / D3.
    d3 = ends.soft_cubic(H, labels, tau, local.soft)

    start = np.asarray(oblique.retract(H, (-2.0 * lam / d3) * local.soft))
    saddle, s_local = continuation.newton_polish(start, labels, tau, ends.PARTNER_NEWTON_STEPS)
    gtol = continuation.ContinuationSettings().gtol
    assert float(s_local.grad_norm) <= continuation.corrector_gtol(saddle, labels, tau, gtol)
    assert int(s_local.index) == 1
    # Near a fold the two eigenvalues are opposite to leading order.
    assert continuation.lambda_min(s_local) == pytest.approx(-lam, rel=0.2)
    guarded = continuation.step(saddle, labels, tau, 0.0, local=s_local)
    assert not guarded.accepted and guarded.reason == "index"
    free = continuation.step(saddle, labels, tau, 0.0, local=s_local, max_index=-1)
    assert free.accepted
    with pytest.raises(ValueError, match="not a local minimum"):
        continuation.continue_minimum(saddle, labels, tau, tau + 1e-5)


@pytest.mark.slow  # ~25 s: a thousand corrector steps up to the fold
def test_branch_ends_at_the_fold():
    H, labels, tau = _load("near_fold_step_d5.npz")
    settings = continuation.ContinuationSettings(step=1e-6, max_step=1e-5, min_step=1e-8, classify=False)
    branch = continuation.continue_minimum(H, labels, tau, tau + 1e-5, settings)
    assert not branch.reached_end
    assert branch.tau_fail - branch.tau_last <= settings.min_step
    # lambda_min^2 is linear in tau towards a fold: its root lies at the bracket (within the
    # spread of the last points' fit, a few min_step).
    fit = ends.diagnose_end(branch, labels)
    assert fit.kind == "fold", fit.reason
    width = branch.tau_fail - branch.tau_last
    assert branch.tau_last - 4 * width <= fit.fit["fold"]["tau_c"] <= branch.tau_fail + 4 * width
    assert fit.fit["exponent"] == pytest.approx(0.5, abs=0.05)
    # The arclength vertex: at or above the last converged natural point, within its own bracket,
    # |dH/dtau| ~ (tau_c - tau)^(-1/2) with a steady prefactor, and the partner has index 1.
    assert branch.tau_last <= fit.tau_c and fit.bracket[0] <= fit.tau_c <= fit.bracket[1]
    assert fit.fit["tangent_exponent"] == pytest.approx(-0.5, abs=0.05)
    pre = np.asarray(fit.fit["prefactor"])
    assert pre.max() / pre.min() < 1.1
    assert fit.partner["found"] and fit.partner["index"] == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tau_end": 0.02}, "must differ"),
        ({"tau_end": -1.0}, "tau must be"),
        ({"H0": np.ones((2, 24, 5))}, "one point"),
        ({"settings": "fast"}, "ContinuationSettings"),
    ],
)
def test_bad_input_is_one_line_value_error(kwargs, message):
    H, labels, tau = _load("spurious_step_d5_tau0.02.npz")
    args = {"H0": H, "labels": labels, "tau_start": tau, "tau_end": 0.021} | kwargs
    with pytest.raises(ValueError, match=message) as info:
        continuation.continue_minimum(**args)
    assert "\n" not in str(info.value)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="min_step <= step <= max_step"):
        continuation.ContinuationSettings(step=1e-9, min_step=1e-7)
    with pytest.raises(ValueError, match="grow"):
        continuation.ContinuationSettings(grow=0.5)


@pytest.mark.slow
def test_stored_minimum_folds_and_its_family_falls_to_a_second_branch():
    """The first branch from tau = 0.02 (a minute): a fold, then a proven spurious minimum past it."""
    H0, labels, tau0 = _load("spurious_step_d5_tau0.02.npz")
    settings = continuation.ContinuationSettings(classify=False)
    family = families.follow_family(H0, labels, tau0, 0.03, settings, max_branches=2)
    first, ending = family.branches[0], family.endings[0]
    assert ending.kind == "fold", ending.reason
    assert first.tau_last < ending.fit["fold"]["tau_c"] + 4 * settings.min_step
    assert ending.partner["found"] and ending.partner["index"] == 1
    landing = family.landings[0]
    assert landing["kind"] == "spurious_min" and landing["strict_certified"]
    assert 0 < landing["loss_drop"] < ending.gap


# --------------------------------------------------------------------------
# Through the fold in arclength, checked against a finite-difference Hessian


def _tangent_frame(H):
    """Per row an orthonormal basis of ``h_i^perp`` ``(n, d, d-1)`` (NumPy)."""
    n, d = H.shape
    frame = np.empty((n, d, d - 1))
    for i, h in enumerate(H):
        q, _ = np.linalg.qr(np.column_stack([h, np.eye(d)]))
        frame[i] = q[:, 1:d]
    return frame


def _fd_hessian(H, labels, tau, h):
    """The Riemannian Hessian at a critical point by central differences of the Riemannian gradient.

    ``d/dt proj_{H(t)} grad L(H(t))`` at ``t = 0`` along ``H(t) = normalise(H + t V)``, taken in
    the tangent frame (at a critical point the connection term is ``|grad|``-small). Only the
    loss's automatic gradient is used, not the package's Hessian assembly.
    """
    import jax
    import jax.numpy as jnp

    from sclandscape import sc_loss

    grad = jax.jit(jax.grad(lambda X: sc_loss(X, labels, tau)))
    frame = _tangent_frame(H)
    n, d = H.shape
    N = n * (d - 1)

    def rgrad(X):
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        g = np.asarray(grad(jnp.asarray(X)))
        return g - np.sum(g * X, axis=1, keepdims=True) * X

    M = np.empty((N, N))
    for col in range(N):
        i, a = divmod(col, d - 1)
        V = np.zeros((n, d))
        V[i] = frame[i, :, a]
        diff = (rgrad(H + h * V) - rgrad(H - h * V)) / (2 * h)
        M[:, col] = np.einsum("nda,nd->na", frame, diff).reshape(N)
    M = 0.5 * (M + M.T)
    # The symmetry modes H Omega, in the frame, projected out.
    modes = []
    for p in range(d):
        for q in range(p + 1, d):
            Om = np.zeros((d, d))
            Om[p, q], Om[q, p] = 1.0, -1.0
            modes.append(np.einsum("nda,nd->na", frame, H @ Om).reshape(N))
    Q, _ = np.linalg.qr(np.stack(modes, 1))
    C = np.linalg.svd(np.eye(N) - Q @ Q.T)[0][:, : N - Q.shape[1]]
    return C.T @ M @ C


def test_arclength_turns_at_the_fold_where_the_hessian_becomes_singular():
    """From tau = 0.0242281 (2.9e-6 below the fold): one turn, index 0 -> 1, tau_c bracketed.

    Independent truth: the finite-difference Hessian (on the orbit complement) is positive
    definite at the path's first point and has a negative eigenvalue at its last, each by more
    than the finite differences' error on that eigenvalue: truncation ``O(h^2)`` (Richardson: the
    error at ``h`` is a third of the change from ``2h``; three times that is allowed) plus
    rounding (the gradient's rounding bound over ``h``: each column is a difference quotient).
    So the Hessian is singular between them, and the turn lies between them too.
    """
    H, labels, tau = _load("near_fold_step_d5.npz")
    arc = arclength.follow_arclength(H, labels, tau)
    assert len(arc["turns"]) == 1, arc["stopped"]
    vertex = ends.fold_vertex(arc["turns"][0], 1.0)
    turn = arc["turns"][0]
    assert [int(turn["before"].b.index), int(turn["after"].b.index)] == [0, 1]
    assert [np.sign(p["lambda_crit"]) for p in vertex["straddle"]] == [1.0, -1.0]
    lo, hi = vertex["bracket"]
    # Narrower than the independent referee's resolution of a fold (+-1e-10).
    assert lo <= vertex["tau_c"] <= hi and hi - lo < 1e-10
    # The straddling points are converged (to the gradient's rounding floor, a few 1e-12 here).
    assert all(p["grad_norm"] < 1e-10 for p in vertex["straddle"])
    first, last = arc["points"][0], arc["points"][-1]
    assert first.s < arc["turns"][0]["lo"].s < last.s
    assert first.tau < vertex["tau_c"] and last.tau < vertex["tau_c"]
    for point, sign in ((first, 1.0), (last, -1.0)):
        h = 1e-5
        coarse = np.linalg.eigvalsh(_fd_hessian(point.H, labels, point.tau, 2 * h))[0]
        lam = np.linalg.eigvalsh(_fd_hessian(point.H, labels, point.tau, h))[0]
        tol = abs(coarse - lam) + float(point.b.grad_rounding) / h
        assert sign * lam > tol, (lam, tol)
        # The path's own eigenvalue agrees with the finite differences within that error.
        assert abs(float(np.min(point.b.eigs)) - lam) <= tol + float(point.b.bound)


# --------------------------------------------------------------------------
# The spread constructions (saddles.search_spurious)


def test_spread_start_scatters_the_chosen_classes_and_collapses_the_rest():
    from sclandscape.explore import saddles

    counts = (10, 10, 10, 10)
    pattern = saddles.SpreadPattern((0,), 0.1, 10.0, True, 5)
    X = saddles.spread_start(pattern, counts, 5)
    labels = np.repeat(np.arange(4), counts)
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0)
    norms = [np.linalg.norm(X[labels == c].mean(0)) for c in range(4)]
    # Collapsed classes: one point plus noise 1e-4 per coordinate (mean norm 1 - O(1e-8)).
    assert all(v > 1 - 1e-6 for v in norms[1:])
    assert norms[0] < 0.9
    # Held at the simplex: products -1/(k-1) = -1/3 up to the noise.
    means = np.stack([X[labels == c].mean(0) for c in (1, 2, 3)])
    off = (means @ means.T)[np.triu_indices(3, 1)]
    assert np.allclose(off, -1 / 3, atol=1e-3)
    with pytest.raises(ValueError, match="scattered classes"):
        saddles.spread_start(saddles.SpreadPattern((4,), 0.1, 1.0, False, 0), counts, 5)
    with pytest.raises(ValueError, match="simplex"):
        saddles.spread_start(pattern, counts, 2)


@pytest.mark.slow  # ~40 s: compiles the float64 descent and the verdict at n = 40
def test_spread_search_finds_the_balanced_spurious_minimum():
    """4 x 10, d = 5, tau = 0.02: the spurious minimum an independent float64 referee measured
    (L = 190.90645, 10 zero modes, lambda_min 4.37e-4, lambda_min(S) = -30.38) is reached from
    one of the default patterns, proven a strict local minimum and not global."""
    from sclandscape import global_optimum
    from sclandscape.explore import saddles

    counts = (10, 10, 10, 10)
    patterns = [p for p in saddles.spread_patterns(4) if p.name() == "scatter 0, t0 0.1, w 10, seed 2017"]
    assert len(patterns) == 1
    r = saddles.search_spurious(counts, 5, 0.02, patterns)
    assert len(r["distinct"]) == 1
    e = r["distinct"][0]
    assert e["kind"] == "spurious_min" and e["strict_certified"]
    # The referee's values, to the digits it quoted.
    assert e["loss"] == pytest.approx(190.90645, abs=5e-6)
    assert e["n_zero"] == e["n_zero_predicted"] == 10
    assert e["lambda_min"] == pytest.approx(4.37e-4, abs=5e-7)
    assert e["cert_lambda"] == pytest.approx(-30.38, abs=5e-3)
    assert e["gap"] == pytest.approx(e["loss"] - global_optimum(counts, 0.02).loss, abs=1e-9)


def test_arclength_bad_input_is_one_line_value_error():
    H, labels, tau = _load("near_fold_step_d5.npz")
    for kwargs, message in (
        ({"H0": np.ones((2,) + H.shape)}, "one point"),
        ({"settings": "fast"}, "ArclengthSettings"),
        ({"tau0": -1.0}, "tau"),
    ):
        args = {"H0": H, "labels": labels, "tau0": tau} | kwargs
        with pytest.raises(ValueError, match=message) as info:
            arclength.follow_arclength(**args)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="min_ds <= ds <= max_ds"):
        arclength.ArclengthSettings(ds=1.0)
