"""The critical-point finder: Levenberg-Marquardt on the gradient equation, to saddles and minima."""

import jax
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.core import problems
from sclandscape.explore import critical
from sclandscape.numerics import oblique
from sclandscape.theory import optimum, verdict

COUNTS = (3, 3, 3)  # k = 3 classes of 3: d = 2 = k - 1 is the benign regime
TAU = 1.0


def _merged_saddle():
    """Classes 0 and 1 on one point, class 2 antipodal: collinear, hence critical; not the optimum."""
    u = np.array([1.0, 0.0])
    return np.array([u] * 6 + [-u] * 3)


def _labels():
    return problems.labels_from_counts(COUNTS)


# --------------------------------------------------------------------------
# The finder


def test_finder_converges_to_a_known_saddle_and_to_a_minimum_compiling_once():
    labels = _labels()
    rng = np.random.default_rng(0)
    S = _merged_saddle()
    opt = optimum.global_optimum(COUNTS, TAU)
    starts = np.stack(
        [
            oblique.normalize_rows(S + 0.03 * rng.standard_normal(S.shape)),
            oblique.normalize_rows(opt.embedding(2) + 0.05 * rng.standard_normal(S.shape)),
        ]
    )
    out = critical.find_critical(starts, labels, TAU)
    assert np.all(np.asarray(out.status) == sc.Status.CONVERGED)
    assert np.all(np.asarray(out.grad_norm) <= 1e-10)
    # The saddle it converges to is the merged one (up to rotation): same loss, rank 1, index >= 1.
    assert float(out.value[0]) == pytest.approx(float(sc.sc_loss(S, labels, TAU)), abs=1e-9)
    c = verdict.classify(np.asarray(out.x), labels, TAU, optimum_=opt)
    assert c.kind[0] == "saddle" and c.index[0] >= 1 and c.rank[0] == 1
    assert c.kind[1] == "global_min" and float(out.value[1]) == pytest.approx(opt.loss, abs=1e-9)
    # A second batch of the same shape reuses the compiled solve.
    before = critical._find_batch._cache_size()
    again = critical.find_critical(starts[::-1] + 0.0, labels, TAU, key=jax.random.key(1))
    assert critical._find_batch._cache_size() == before
    np.testing.assert_allclose(np.asarray(again.value), np.asarray(out.value)[::-1], atol=1e-9)


@pytest.mark.slow
def test_lanczos_model_agrees_with_dense():
    labels = _labels()
    H0 = oblique.normalize_rows(_merged_saddle() + 0.03 * np.random.default_rng(1).standard_normal((9, 2)))
    dense = critical.find_critical(H0, labels, TAU, critical.CriticalSettings(method="dense"))
    krylov = critical.find_critical(
        H0, labels, TAU, critical.CriticalSettings(method="lanczos", krylov_dim=9)
    )
    assert int(krylov.status) == sc.Status.CONVERGED and float(krylov.grad_norm) <= 1e-10
    assert float(krylov.value) == pytest.approx(float(dense.value), abs=1e-9)


@pytest.mark.slow
def test_finder_reports_failures_as_status():
    labels = _labels()
    H0 = np.random.default_rng(2).standard_normal((9, 2))
    out = critical.find_critical(H0, labels, TAU, critical.CriticalSettings(max_iter=1, method="dense"))
    assert int(out.status) in (sc.Status.MAX_STEPS, sc.Status.CONVERGED)
    with pytest.raises(ValueError, match="method"):
        critical.CriticalSettings(method="newton")


# --------------------------------------------------------------------------
# Constructions, deduplication, the CLI
