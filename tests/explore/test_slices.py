"""Loss slices: eigen-directions bend like their eigenvalues, towards-directions reach the other point."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.cli import commands as cli
from sclandscape.explore import paths, scanner, slices
from sclandscape.folders import atomic, merging
from sclandscape.numerics import oblique
from sclandscape.studies import scan as scan_study

EPS = np.finfo(np.float64).eps


def _second_difference(H, labels, tau, u, h):
    f = slices.loss_slice(H, labels, tau, u[None], [np.array([-h, 0.0, h])])
    return (f[0] - 2 * f[1] + f[2]) / h**2, f


def test_deflated_eigenpairs_are_the_spectrum_without_the_symmetry_zeros():
    counts, d, tau = (3, 3, 3), 3, 1.0
    opt = sc.global_optimum(counts, tau)
    H = np.asarray(opt.embedding(d))  # a critical point: the symmetry modes are exact zero modes
    labels = opt.labels
    w, vecs = slices.deflated_eigenpairs(H, labels, tau)
    full = np.sort(np.asarray(sc.riemannian_hessian_eigs(H, labels, tau)))
    zeros = oblique.predicted_zero_modes(int(oblique.numerical_rank(H)), d)
    assert w.size == full.size - zeros
    # Remove `zeros` eigenvalues closest to 0 from the full spectrum: the rest is the deflated one.
    # (eigh's rounding is ~ eps * max|lambda| * N; 1e-10 * scale sits far above it.)
    rest = np.delete(full, np.argsort(np.abs(full))[:zeros])
    np.testing.assert_allclose(np.sort(w), rest, atol=1e-10 * np.max(np.abs(full)))
    # Eigenvectors: unit, tangent, orthogonal to the symmetry modes.
    Z, count = oblique.symmetry_modes(H)
    Z = np.asarray(Z)[: int(count)]
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=(1, 2)), 1.0, atol=1e-12)
    assert np.max(np.abs(np.sum(vecs * H[None], axis=-1))) < 1e-12
    assert np.max(np.abs(np.einsum("knd,jnd->kj", vecs, Z))) < 1e-10


def test_slices_along_eigenvectors_bend_like_their_eigenvalues():
    """d^2/dt^2 L(R_H(t u)) at 0 is <Hess u, u> at any H for a second-order retraction; at a random
    (non-critical) point too. The central difference's error is h^2/12 |f''''| (f'''' estimated from
    the slice itself, 5-point stencil at 0.05) plus rounding ~4 eps |f| / h^2."""
    labels = sc.labels_from_counts((4, 3, 3))
    tau = 0.5
    H = np.asarray(oblique.random_point(jax.random.key(5), 10, 3, jnp.float64))
    for name in ("eig:0", "eig:3", "escape"):
        info = slices.direction(H, labels, tau, name)
        u = info["vector"]
        g = np.array([-0.1, -0.05, 0.0, 0.05, 0.1])
        f5 = slices.loss_slice(H, labels, tau, u[None], [g])
        fourth = abs(f5[0] - 4 * f5[1] + 6 * f5[2] - 4 * f5[3] + f5[4]) / 0.05**4
        h = 1e-3
        est, f = _second_difference(H, labels, tau, u, h)
        bound = 2 * (h**2 / 12 * fourth + 4 * EPS * abs(f[1]) / h**2)
        assert abs(est - info["eigenvalue"]) <= bound, (name, est, info["eigenvalue"], bound)
    assert slices.direction(H, labels, tau, "escape")["eigenvalue"] == pytest.approx(
        slices.direction(H, labels, tau, "eig:0")["eigenvalue"], abs=1e-12
    )


def test_random_directions_are_unit_tangent_and_free_of_symmetry_modes():
    labels = sc.labels_from_counts((3, 3))
    H = np.asarray(oblique.random_point(jax.random.key(1), 6, 3, jnp.float64))
    u = slices.direction(H, labels, 1.0, "random:3")["vector"]
    v = slices.direction(H, labels, 1.0, "random:4")["vector"]
    assert np.linalg.norm(u) == pytest.approx(1.0, abs=1e-12) and not np.allclose(u, v)
    assert np.max(np.abs(np.sum(u * H, axis=1))) < 1e-12
    Z, count = oblique.symmetry_modes(H)
    assert np.max(np.abs(np.einsum("nd,jnd->j", u, np.asarray(Z)[: int(count)]))) < 1e-12


def test_towards_reaches_the_closest_copy_of_the_other_point():
    counts = (3, 3)
    labels = sc.labels_from_counts(counts)
    rng = np.random.default_rng(0)
    H = np.asarray(oblique.random_point(jax.random.key(2), 6, 3, jnp.float64))
    P = H + 0.3 * rng.standard_normal(H.shape)
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    moved = P[[4, 3, 5, 1, 0, 2]] @ Q  # relabelled classes, permuted samples, rotated
    V, reach, exact = slices.toward(H, moved, labels)
    assert exact
    target, _ = paths.align(H, moved, labels)
    np.testing.assert_allclose(np.asarray(oblique.retract(H, reach * V)), target, atol=1e-12)
    f = slices.loss_slice(H, labels, 1.0, V[None], [np.array([0.0, reach])])
    assert f[1] == pytest.approx(float(sc.sc_loss(moved, labels, 1.0)), abs=1e-12)
    with pytest.raises(ValueError, match="bad direction"):
        slices.direction(H, labels, 1.0, "sideways")
    with pytest.raises(ValueError, match="no such point"):
        slices.direction(H, labels, 1.0, "minimum:1")


@pytest.fixture(scope="module")
def benign(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("slices") / "scan")
    with jax.enable_x64(True):
        scan_study.run_scan(
            sc.Problem((3, 3, 3), 2, 1.0),
            4,
            0,
            scanner.ScanSettings(tol=1e-9, x64=True, slots=4),
            out,
            keep_embeddings=True,
        )
    return out


def test_slice_command_writes_values_around_the_lowest_minimum(benign, capsys):
    assert cli.main(["slice", benign, "--directions", "eig:0,random", "--points", "11", "--quiet"]) == 0
    capsys.readouterr()
    (name,) = [p.name[:-5] for p in os.scandir(f"{benign}/slices") if p.name.endswith(".json")]
    record = json.load(open(f"{benign}/slices/{name}.json"))
    arrays = atomic.read_npz(f"{benign}/slices/{name}.npz")
    runs = merging.load_runs(benign)
    assert record["point"] == int(np.argmin(runs["loss"])) and record["kind"] == "global_min"
    for k in range(2):
        values, grid = arrays[f"values_{k}"], arrays[f"grid_{k}"]
        assert values.shape == grid.shape == (11,)
        assert values[5] == pytest.approx(record["loss"], abs=1e-9)  # the grid is centred on the point
        assert np.all(values >= record["loss"] - 1e-9)  # a global minimum: nothing lower around it
    for path in record["files"]:
        assert os.path.exists(f"{benign}/{path}"), path


def test_surface_between_two_eigenvectors(benign, capsys):
    args = ["slice", benign, "--surface", "--directions", "eig:0,eig:1", "--points", "21", "--extent", "0.02"]
    assert cli.main(args + ["--quiet"]) == 0
    point = int(np.argmin(merging.load_runs(benign)["loss"]))
    name = f"slice_run{point}_surface_eig-0_eig-1"
    record = json.load(open(f"{benign}/slices/{name}.json"))
    z = atomic.read_npz(f"{benign}/slices/{name}.npz")["values"]
    assert z.shape == (21, 21)
    h, c = 0.002, 10
    # Second differences at the centre: lambda_0, lambda_1 and the mixed <Hess u, v> = 0 (orthogonal
    # eigenvectors). Error: h^2/12 |f| (f bounded by the grid's own fourth differences, which
    # include their rounding) plus rounding 4 eps |L| / h^2; twice that is allowed.
    axes = (z[:, c], z[c, :])
    fourth = max(abs(a[c - 2] - 4 * a[c - 1] + 6 * a[c] - 4 * a[c + 1] + a[c + 2]) / h**4 for a in axes)
    bound = 2 * (h**2 / 12 * fourth + 4 * EPS * abs(z[c, c]) / h**2)
    for a, d in zip(axes, record["directions"], strict=True):
        assert abs((a[c + 1] - 2 * a[c] + a[c - 1]) / h**2 - d["eigenvalue"]) <= bound
    mixed = (z[c + 1, c + 1] - z[c + 1, c - 1] - z[c - 1, c + 1] + z[c - 1, c - 1]) / (4 * h**2)
    assert abs(mixed) <= bound


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--surface", "--directions", "eig:0"], "exactly two"),
        (["--run", "99"], "run must be an index"),
        (["--run", "0", "--minimum", "0"], "not both"),
        (["--minimum", "5"], "minimum must be the point index of one of"),
        (["--directions", "eig:99"], "eigenvalues without the symmetry modes"),
        (["--directions", "up"], "bad direction"),
    ],
)
def test_slice_bad_input_exit_2(benign, args, needle, capsys):
    assert cli.main(["slice", benign, "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
