"""Minimum-energy paths: alignment modulo symmetry, the string, and the saddle between two minima."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.cli import commands as cli
from sclandscape.explore import paths, scanner
from sclandscape.folders import atomic, merging, reading
from sclandscape.studies import paths as path_study
from sclandscape.studies import scan as scan_study
from sclandscape.theory import metrics


def _rotation(d, seed):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return Q


def test_align_undoes_rotations_and_label_preserving_permutations():
    counts = (3, 3, 2)
    labels = sc.labels_from_counts(counts)
    A = np.asarray(sc.global_optimum(counts, 1.0).embedding(3)) + 0.05 * np.random.default_rng(
        0
    ).standard_normal((8, 3))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    # Samples permuted within classes, classes 0 and 1 (equal sizes) swapped, a reflection-rotation.
    order = np.array([4, 3, 5, 2, 0, 1, 7, 6])
    Q = _rotation(3, 1) @ np.diag([1.0, 1.0, -1.0])
    B = A[order] @ Q
    assert np.linalg.norm(B - A) > 1.0
    aligned, dist = paths.align(A, B, labels)
    assert dist < 1e-12 and np.allclose(aligned, A, atol=1e-12)
    assert float(sc.sc_loss(aligned, labels, 1.0)) == pytest.approx(
        float(sc.sc_loss(B, labels, 1.0)), abs=1e-12
    )


def test_procrustes_is_the_best_rotation():
    A = np.random.default_rng(2).standard_normal((6, 3))
    Q = _rotation(3, 3)
    np.testing.assert_allclose(metrics.procrustes(A @ Q, A), Q.T, atol=1e-12)


def test_great_circles_and_resampling():
    rng = np.random.default_rng(4)
    A = rng.standard_normal((5, 3))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    B = rng.standard_normal((5, 3))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    B[0] = -A[0]  # antipodal: no unique great circle
    imgs = paths.great_circle_images(A, B, 9)
    np.testing.assert_array_equal(imgs[0], A)
    np.testing.assert_array_equal(imgs[-1], B)
    np.testing.assert_allclose(np.linalg.norm(imgs, axis=-1), 1.0, atol=1e-14)
    # Equal angle steps along every row's great circle: the angle to A grows linearly.
    # (atan2 of |a x b| and a.b: well conditioned at 0 and pi, unlike arccos)
    angles = np.arctan2(np.linalg.norm(np.cross(imgs, A[None]), axis=-1), np.sum(imgs * A[None], axis=-1))
    np.testing.assert_allclose(angles, np.linspace(0, 1, 9)[:, None] * angles[-1][None], atol=1e-10)
    assert angles[-1, 0] == pytest.approx(np.pi)
    # Resampling an unevenly spaced fine polygon along these great circles spaces the images evenly
    # in arc length: their chords (after the rotation alignment resample applies) are equal up to
    # chord-versus-arc differences, relatively phi^2 / 24 for a row turning by phi between images
    # (phi <= pi / 8 here: 6.4e-3), plus the fine polygon's own delta^2 / 24 (delta <= 4 pi / 200,
    # 1.7e-4): below 1e-2.
    fine = paths.great_circle_images(A, B, 201)
    keep = np.unique(np.concatenate([[0, 200], np.cumsum(rng.integers(1, 5, 100))]))
    even = paths.resample(fine[keep[keep <= 200]], 9)
    chords = np.linalg.norm(np.diff(even, axis=0), axis=(1, 2))
    assert np.ptp(chords) <= 1e-2 * chords.mean(), chords
    np.testing.assert_array_equal(even[0], A)
    np.testing.assert_allclose(np.linalg.norm(even, axis=-1), 1.0, atol=1e-14)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="images"):
        paths.PathSettings(images=2)
    with pytest.raises(ValueError, match="perp_rtol"):
        paths.PathSettings(perp_rtol=0)
    A = np.eye(3)[[0, 1, 2, 0]]
    with pytest.raises(ValueError, match="shapes"):
        paths.minimum_energy_path(A, np.ones((4, 2)), [0, 0, 1, 1], 1.0)
    with pytest.raises(ValueError, match="one minimum up to rotation"):
        paths.minimum_energy_path(A, -A, [0, 0, 1, 1], 1.0)


@pytest.fixture(scope="module")
def two_minima(tmp_path_factory):
    """d = 2 < k - 1: this imbalanced problem has two spurious minima (seed 0 finds both)."""
    out = str(tmp_path_factory.mktemp("paths") / "scan")
    problem = sc.Problem((4, 4, 2, 2), 2, 1.0)
    with jax.enable_x64(True):
        summary = scan_study.run_scan(
            problem, 16, 0, scanner.ScanSettings(tol=1e-9, x64=True, slots=16), out, keep_embeddings=True
        )
    assert len(summary["distinct_minima"]) == 2
    return out


def test_path_between_two_minima_crosses_an_index_one_saddle(two_minima, capsys):
    assert cli.main(["path", two_minima, "--quiet"]) == 0
    assert "connects" in capsys.readouterr().out
    state = json.load(open(f"{two_minima}/paths.json"))
    (e,) = state["paths"]
    scan = reading.load_scan(two_minima)
    runs, problem = scan["runs"], scan["problem"]
    low, high = (m["loss"] for m in scan["summary"]["distinct_minima"])
    assert (e["from_minimum"], e["to_minimum"]) == (0, 1)
    assert runs["loss"][e["from"]] == pytest.approx(low, abs=1e-9)
    assert runs["loss"][e["to"]] == pytest.approx(high, abs=1e-9)
    assert e["from_loss"] == pytest.approx(low, abs=1e-9) and e["to_loss"] == pytest.approx(high, abs=1e-9)
    assert e["barrier"] > 0 and e["barrier_reverse"] > 0
    assert e["barrier"] == pytest.approx(e["saddle_loss"] - e["from_loss"], abs=1e-12)
    assert e["saddle_kind"] == "saddle" and e["saddle_index"] == 1 and e["connects"]
    # Independent checks on the saddle written to disk: a critical point with one negative eigenvalue.
    arrays = atomic.read_npz(f"{two_minima}/{e['arrays']}")
    S = arrays["saddle"]
    labels = problem.labels
    egrad = jax.grad(lambda H: sc.sc_loss(H, labels, problem.tau))(jnp.asarray(S))
    assert float(jnp.linalg.norm(egrad - jnp.sum(egrad * S, 1, keepdims=True) * S)) <= 1e-9
    eigs = np.asarray(sc.riemannian_hessian_eigs(S, labels, problem.tau))
    scale = np.max(np.abs(eigs))
    assert np.sum(eigs < -1e-6 * scale) == 1  # rounding of eigvalsh is ~1e-15 * scale: far below
    assert float(sc.sc_loss(S, labels, problem.tau)) == pytest.approx(e["saddle_loss"], abs=1e-10)
    # The profile: from the lower minimum up and down to the other, with no dip (a dip would have
    # made the path cut or split there).
    loss = np.asarray(e["profile"]["loss"])
    top = int(np.argmax(loss))
    assert np.all(np.diff(loss[: top + 1]) > 0) and np.all(np.diff(loss[top:]) < 0)
    np.testing.assert_allclose(arrays["losses"], loss)
    assert os.path.exists(f"{two_minima}/figures/path_{e['from']}_{e['to']}.png")


def test_path_refuses_bad_requests(two_minima, tmp_path, capsys):
    runs = merging.load_runs(two_minima)
    same = np.flatnonzero(np.abs(runs["loss"] - runs["loss"].min()) < 1e-9)[:2]
    # One request through a real process (exit code and stderr as a user sees them), the rest in-process.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sclandscape.cli",
            "path",
            two_minima,
            "--quiet",
            "--runs",
            f"{same[0]},{same[1]}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "one minimum up to rotation and relabelling" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    for args, needle in (
        (["--runs", "1,2,3"], "--runs takes 2 run indices"),
        (["--runs", "0,999"], "runs must be indices of this scan"),
        (["--runs", "0,0"], "two different run indices"),
    ):
        assert cli.main(["path", two_minima, "--quiet", *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, (args, err)
    assert cli.main(["path", str(tmp_path), "--quiet"]) == 2


@pytest.mark.slow  # the demo's d = 2 scan (32 runs, n = 24) and its path: ~1 minute on two cores
def test_demo_d2_minima_are_joined_through_an_index_one_saddle(tmp_path):
    out = str(tmp_path / "scan")
    with jax.enable_x64(True):
        scan_study.run_scan(
            sc.Problem((10, 10, 2, 2), 2, 1.0),
            32,
            0,
            scanner.ScanSettings(tol=1e-9, x64=True, slots=32),
            out,
            keep_embeddings=True,
        )
        state = path_study.scan_paths(out)
    (e,) = state["paths"]
    assert e["from_loss"] == pytest.approx(57.712632, abs=1e-6) and e["to_loss"] == pytest.approx(
        58.024271, abs=1e-6
    )
    assert e["saddle_kind"] == "saddle" and e["saddle_index"] == 1 and e["connects"]
    assert e["barrier"] > 0 and e["barrier_reverse"] > 0


def test_paths_json_keeps_earlier_pairs(two_minima, capsys):
    """A second call for one pair replaces that pair's entry and keeps the others."""
    if not os.path.exists(f"{two_minima}/paths.json"):  # this test run on its own
        assert cli.main(["path", two_minima, "--quiet"]) == 0
    before = json.load(open(f"{two_minima}/paths.json"))["paths"]
    assert len(before) == 1
    entry = before[0]
    assert cli.main(["path", two_minima, "--runs", f"{entry['to']},{entry['from']}", "--quiet"]) == 0
    after = json.load(open(f"{two_minima}/paths.json"))["paths"]
    assert [(e["from"], e["to"]) for e in after] == [
        (entry["from"], entry["to"]),
        (entry["to"], entry["from"]),
    ]
    # The reverse path crosses the same saddle: the barriers swap.
    assert after[1]["saddle_loss"] == pytest.approx(entry["saddle_loss"], abs=1e-8)
    assert after[1]["barrier"] == pytest.approx(entry["barrier_reverse"], abs=1e-8)
