"""Continuation in tau of a spurious minimum (``sclandscape.explore.continuation``).

The points: the proven strict spurious minimum of counts 10,10,2,2, d = 5 at
tau = 0.02, and a point of its branch near the fold (tau = 0.0242281,
lambda_min = 4.8e-5), where the branch ends at tau_c = 0.0242310.
"""

import pathlib

import numpy as np
import pytest

from sclandscape.explore import continuation, critical
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
    d3 = continuation.soft_cubic(H, labels, tau, local.soft)

    start = np.asarray(oblique.retract(H, (-2.0 * lam / d3) * local.soft))
    saddle, s_local = continuation.newton_polish(start, labels, tau, continuation.PARTNER_NEWTON_STEPS)
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
    fit = continuation.diagnose_end(branch, labels)
    assert fit.kind == "fold", fit.reason
    width = branch.tau_fail - branch.tau_last
    assert branch.tau_last - 4 * width <= fit.fit["fold"]["tau_c"] <= branch.tau_fail + 4 * width
    assert fit.fit["exponent"] == pytest.approx(0.5, abs=0.05)


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
    family = continuation.follow_family(H0, labels, tau0, 0.03, settings, max_branches=2)
    first, ending = family.branches[0], family.endings[0]
    assert ending.kind == "fold", ending.reason
    assert first.tau_last < ending.fit["fold"]["tau_c"] + 4 * settings.min_step
    assert ending.partner["found"] and ending.partner["index"] == 1
    landing = family.landings[0]
    assert landing["kind"] == "spurious_min" and landing["strict_certified"]
    assert 0 < landing["loss_drop"] < ending.gap
