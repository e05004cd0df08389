"""The census: distances modulo the symmetry group, the spectrum tolerance, grouping of runs and points.

Each rule is checked against an independent computation: a brute-force
minimum over every within-class permutation and relabelling (orthogonal
Procrustes for each), a grid search of the self-consistent tolerance, and the
cyclic arrangement of classes on the circle, read off the angles.
"""

import itertools
import json
import math
import os

import jax
import numpy as np
import pytest
from reference import sc_loss_loop

import sclandscape as sc
from sclandscape.cli import commands as cli
from sclandscape.explore import census, scanner
from sclandscape.folders import atomic
from sclandscape.theory import metrics, verdict

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


def _random_point(rng, n, d):
    H = rng.standard_normal((n, d))
    return H / np.linalg.norm(H, axis=1, keepdims=True)


def _haar(rng, d):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


def _brute_force_distance(A, B, labels):
    """``min |A - P B Q|_F`` over every label-preserving row permutation with relabelling (exhaustive)."""
    counts = np.bincount(labels)
    members = [np.flatnonzero(labels == c) for c in range(counts.size)]
    best = math.inf
    for sigma in metrics.class_permutations(counts):
        for choice in itertools.product(*(itertools.permutations(members[s]) for s in sigma)):
            rows = np.empty(labels.size, np.int64)
            for c, image in enumerate(choice):
                rows[members[c]] = image
            Q = metrics.procrustes(B[rows], A)
            best = min(best, float(np.linalg.norm(A - B[rows] @ Q)))
    return best


@pytest.mark.parametrize("d", [2, 3])
def test_align_finds_the_brute_force_minimum(d):
    rng = np.random.default_rng(d)
    labels = np.array([0, 0, 0, 1, 1, 1])  # two classes of 3: 72 group elements (modulo O(d))
    for trial in range(6):
        A = _random_point(rng, 6, d)
        if trial % 2:  # a transformed copy with noise: the distance is that of the noise, or less
            rows = np.concatenate([rng.permutation(3) + 3, rng.permutation(3)])  # swap the classes too
            B = A[rows] @ _haar(rng, d) + 1e-3 * rng.standard_normal((6, d))
            B /= np.linalg.norm(B, axis=1, keepdims=True)
        else:  # unrelated points
            B = _random_point(rng, 6, d)
        al = metrics.align(A, B, labels)
        exact = _brute_force_distance(A, B, labels)
        assert al.distance == pytest.approx(exact, abs=1e-12)
        # The alignment is an explicit group element: it attains the distance it reports.
        np.testing.assert_allclose(np.linalg.norm(A - B[al.rows] @ al.Q), al.distance, atol=1e-12)
        np.testing.assert_allclose(al.Q.T @ al.Q, np.eye(d), atol=1e-12)
        assert sorted(al.rows[labels == 0]) in ([0, 1, 2], [3, 4, 5])


def _brute_force_tolerance(eigs, coeffs, tol_round, L3):
    """The smallest t >= tol_round with tol_round + L3 |A_>t^+ g| <= t, over every candidate t."""
    a = np.abs(eigs)
    candidates = sorted(set([tol_round] + a.tolist()))
    best = math.inf
    for t0 in candidates:
        for t in (t0, tol_round + L3 * math.sqrt(np.sum((coeffs[a > t0] / eigs[a > t0]) ** 2))):
            keep = a > t
            need = tol_round + L3 * math.sqrt(np.sum((coeffs[keep] / eigs[keep]) ** 2))
            if t >= tol_round and need <= t:
                best = min(best, t)
    return best


def test_spectrum_tolerance_is_the_smallest_self_consistent_one():
    rng = np.random.default_rng(0)
    for _ in range(200):
        N = int(rng.integers(1, 12))
        eigs = rng.choice([-1, 1], N) * 10.0 ** rng.uniform(-10, 1, N)
        coeffs = rng.standard_normal(N) * 10.0 ** rng.uniform(-14, -4)
        tol_round, L3 = 10.0 ** rng.uniform(-14, -8), 10.0 ** rng.uniform(0, 6)
        got = verdict.spectrum_tolerance(eigs, tol_round, L3, coeffs=coeffs)
        assert got.tol == pytest.approx(_brute_force_tolerance(eigs, coeffs, tol_round, L3), rel=1e-12)
        # Never above the spectrum's own scale (or the rounding); the zeros are the eigenvalues within it.
        assert got.tol <= max(tol_round, np.max(np.abs(eigs))) * (1 + 1e-15)
        assert got.zeros == int(np.sum(np.abs(eigs) <= got.tol))
        assert got.flat_scale == (np.max(np.abs(eigs)[np.abs(eigs) <= got.tol]) if got.zeros else 0.0)
    # A well-separated spectrum: the old rule, tol_round + L3 |A^+ g|, and no zero.
    eigs, coeffs = np.array([-2.0, 1.0, 3.0]), np.array([1e-9, 2e-9, 3e-9])
    got = verdict.spectrum_tolerance(eigs, 1e-13, 10.0, coeffs=coeffs)
    assert got.zeros == 0 and got.tol == pytest.approx(1e-13 + 10.0 * np.linalg.norm(coeffs / eigs))


def _arrangement(H, labels):
    """The cyclic order of the class mean angles on the circle, up to rotation, reflection and the swaps
    of the equal-size classes 0 <-> 1 and 2 <-> 3 (d = 2): "adjacent" or "alternating" big classes."""
    angles = np.arctan2(H[:, 1], H[:, 0])
    means = [np.angle(np.mean(np.exp(1j * angles[labels == c]))) for c in range(4)]
    order = list(np.argsort(means))
    gap = abs(order.index(0) - order.index(1))
    return "adjacent" if gap in (1, 3) else "alternating"


def _classified(H, labels, tau, prove=True):
    c = verdict.classify(H, labels, tau, settings=verdict.ClassifySettings(gtol=1e-4, prove=prove))
    return c, {"H": np.asarray(c.refined), **{f: np.asarray(getattr(c, f)) for f in census.MATCH_FIELDS}}


def test_flat_sets_are_one_entry_per_connected_component():
    # Three runs of 10,10,2,2, d = 2, tau = 0.02: every eigenvalue beyond the rotation mode is below
    # what the residual gradient resolves (a flat set); two runs share an arrangement of the classes.
    data = np.load(os.path.join(DATA, "flat_step_d2_tau0.02.npz"))
    H, labels, tau = data["H"], data["labels"], float(data["tau"])
    arrangements = [_arrangement(h, labels) for h in H]
    assert arrangements[0] == arrangements[1] != arrangements[2]
    c, points = _classified(H, labels, tau, prove=False)  # no proof closes on a flat set (and it is slow)
    assert list(c.kind) == ["degenerate"] * 3 and list(c.flat_dim) == [23] * 3
    # The tolerance is the spectrum's own scale, not a gradient term of 1e6.
    np.testing.assert_array_equal(c.tol, c.flat_scale)
    assert np.all(c.tol <= np.abs(c.lambda_max) * (1 + 1e-12)) and np.all(c.tol < 1e-3)
    np.testing.assert_array_equal(census.group_points(points, labels, tau), [0, 0, 2])
    # Across the arrangements the straight path climbs far above the loss's resolution.
    flat, excess = census.flat_path(H[0], H[2], labels, tau, float(np.max(c.loss)) + 1e-8)
    assert not flat and excess > 1.0


def test_copies_of_a_point_are_one_modulo_the_whole_group():
    data = np.load(os.path.join(DATA, "local_minima_step_d2_tau1.npz"))
    H, labels = data["H"][0], data["labels"]
    rng = np.random.default_rng(5)
    rows = np.arange(labels.size)
    for c in range(4):  # permute within every class and exchange the equal-size classes
        rows[labels == c] = rng.permutation(np.flatnonzero(labels == [1, 0, 3, 2][c]))
    reflected = H[rows] @ np.diag([1.0, -1.0]) @ _haar(rng, 2)
    assert sc_loss_loop(reflected, labels, 1.0) == pytest.approx(sc_loss_loop(H, labels, 1.0), abs=1e-10)
    _, points = _classified(np.stack([H, reflected, data["H"][1]]), labels, 1.0)
    np.testing.assert_array_equal(census.group_points(points, labels, 1.0), [0, 0, 2])


@pytest.fixture(scope="module")
def float32_scan():
    # tau = 5, d = 2: float32 first order used to report each of the two minima several times.
    problem = sc.Problem((10, 10, 2, 2), 2, 5.0)
    return problem, scanner.scan(problem, 12, jax.random.key(0), keep_embeddings=True)


def test_float32_runs_are_counted_once_per_minimum(float32_scan):
    problem, out = float32_scan
    points, labels = out["points"], problem.labels
    assert sorted(set(out["kind"])) == ["local_min"]
    assert out["point"].min() >= 0 and len(points["loss"]) <= 2
    np.testing.assert_array_equal(np.diff(points["loss"]) > 0, True)  # numbered by loss
    assert points["count"].sum() == 12
    # Independent check, with invariants of the whole group (the spectrum of G = H H^T, and the loss of
    # the NumPy reference): members of one point agree to float64 precision, the points do not.
    spectra = np.array([np.linalg.eigvalsh(h.T @ h) for h in out["H"]])
    losses = np.array([sc_loss_loop(h, labels, 5.0) for h in out["H"]])
    for p in range(len(points["loss"])):
        members = out["point"] == p
        assert np.ptp(spectra[members], axis=0).max() < 1e-9
        assert np.ptp(losses[members]) < 1e-10
    if len(points["loss"]) == 2:
        assert abs(np.diff(points["loss"])[0]) > 1e-3
    # Every run's distance to its point's representative is within the tolerance recorded for it.
    rep = {p: out["H"][np.flatnonzero(out["point"] == p)[0]] for p in range(len(points["loss"]))}
    for r in range(12):
        d = metrics.align(rep[out["point"][r]], out["H"][r], labels).distance
        assert d <= 2e-8


def test_outputs_are_strict_json_and_points_npz_classifies(tmp_path, capsys):
    out = str(tmp_path / "scan")
    args = ["scan", "--counts", "3,3,3", "--dim", "2", "--tau", "1", "--inits", "4", "--quiet"]
    assert cli.main([*args, "--out", out]) == 0

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    for name in ("summary.json", "config.json", "optimum.json"):
        json.loads(open(os.path.join(out, name)).read(), parse_constant=refuse)
    points = atomic.read_npz(os.path.join(out, "points.npz"))
    assert {"labels", "counts", "tau"} <= set(points)
    capsys.readouterr()
    assert cli.main(["classify", os.path.join(out, "points.npz"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert [p["kind"] for p in report["points"]] == [str(k) for k in points["kind"]]
    assert atomic.dumps({"r": math.inf, "x": [np.float64("nan"), 1.0]}) == '{"r": null, "x": [null, 1.0]}'


def test_relabelling_stabilizer_counts_equivalent_classes():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), [3, 3, 2, 2])
    H = _random_point(rng, 10, 3)
    assert metrics.relabel_stabilizer(H, labels, 1e-9) == (1, 4)  # a generic point: only the identity
    H[8:10] = H[6:8]  # class 3 a copy of class 2: exchanging them is a symmetry of the point
    assert metrics.relabel_stabilizer(H, labels, 1e-9) == (2, 4)
