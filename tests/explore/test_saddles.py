"""Symmetric constructions, deduplication, the saddle catalogue, its escapes and its CLI."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import sclandscape as sc
from sclandscape.cli import commands as cli
from sclandscape.core import problems
from sclandscape.explore import census, critical, saddles
from sclandscape.folders import atomic
from sclandscape.numerics import oblique
from sclandscape.theory import hessian, verdict

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


def test_constructions_enumerate_partitions_up_to_relabelling():
    assert len(list(saddles.set_partitions(range(4)))) == 15  # Bell(4)
    merges = [c for c in saddles.constructions((5, 5, 5, 5), 3) if c.kind == "merge"]
    # Integer partitions of 4 with d' = 1 .. min(d, groups - 1): 1 + 1 + 1 + 2 + 3.
    assert len(merges) == 8 and all(c.symmetric for c in merges)
    step = saddles.constructions((10, 10, 2, 2), 3, splits=False)
    assert any(not c.symmetric for c in step)  # a majority merged with a minority class
    assign, mirror, mask = saddles.tie_pattern(saddles.Construction("split", split=0, subdim=2), COUNTS, 2)
    H = np.asarray(
        saddles.expand(jnp.asarray(np.random.default_rng(0).standard_normal((4, 2))), assign, mirror, mask)
    )
    np.testing.assert_allclose(H[1] * [-1, 1], H[0])  # the mirrored half
    np.testing.assert_allclose(H[3:, 0], 0.0)  # the other classes in the mirror


def test_dedup_identifies_rotated_and_relabelled_copies():
    labels = _labels()
    rng = np.random.default_rng(3)
    # Two starts: the finder's compiled shape from the first test.
    out = critical.find_critical(oblique.normalize_rows(rng.standard_normal((2, 9, 2))), labels, TAU)
    H = np.asarray(out.x)[0]
    theta = 0.7
    Q = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) @ np.diag([1.0, -1.0])
    rows = np.concatenate([np.arange(3, 6), np.arange(0, 3)[::-1], np.arange(6, 9)])  # swap classes 0 and 1
    relabelled = H[rows]
    other = _merged_saddle()
    shuffled = H[np.concatenate([[2, 0, 1], np.arange(3, 9)])]  # samples permuted within class 0
    points = np.stack([H, H @ Q, relabelled @ Q.T, other, shuffled])
    np.testing.assert_array_equal(_groups(points, labels), [0, 0, 0, 3, 0])


def _groups(points, labels):
    """The census's groups of classified points (``census.group_points`` on the verdict's refined points)."""
    c = verdict.classify(points, labels, TAU, settings=verdict.ClassifySettings(gtol=1e-8))
    found = {f: np.asarray(getattr(c, f)) for f in census.MATCH_FIELDS}
    return census.group_points({"H": np.asarray(c.refined), **found}, labels, TAU)


@pytest.fixture(scope="module")
def catalogue_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("saddles") / "cat"
    args = ["saddles", "--counts", "3,3,3", "--dim", "2", "--tau", "1", "--random", "2", "--no-escape"]
    assert cli.main([*args, "--out", str(out)]) == 0
    return out


def test_cli_catalogue_files_and_order(catalogue_dir):
    summary = json.loads((catalogue_dir / "catalogue.json").read_text())
    data = atomic.read_npz(str(catalogue_dir / "critical_points.npz"))
    entries = summary["entries"]
    labels = _labels()
    assert data["H"].shape == (len(entries), 9, 2) and len(entries) >= 3
    assert (catalogue_dir / "saddles.png").stat().st_size > 0 and (catalogue_dir / "saddles.pdf").exists()
    losses = [e["loss"] for e in entries]
    assert losses == sorted(losses)
    for e, H in zip(entries, data["H"], strict=True):
        assert float(sc.sc_loss(H, labels, TAU)) == pytest.approx(e["loss"], abs=1e-9)
        assert e["grad_norm"] <= 1e-8
    assert entries[0]["kind"] == "global_min" and entries[0]["loss"] == pytest.approx(summary["global_loss"])
    # d >= k - 1: every other critical point is a strict saddle, and no two entries are the same point.
    assert all(e["kind"] == "saddle" and e["index"] >= 1 for e in entries[1:])
    np.testing.assert_array_equal(_groups(data["H"], labels), np.arange(len(entries)))


def test_symmetric_construction_is_critical_and_its_escape_lowers_the_loss(catalogue_dir):
    summary = json.loads((catalogue_dir / "catalogue.json").read_text())
    H = atomic.read_npz(str(catalogue_dir / "critical_points.npz"))["H"]
    labels = _labels()
    symmetric = [i for i, e in enumerate(summary["entries"]) if e["symmetric"] and e["kind"] == "saddle"]
    assert symmetric, "no symmetric construction gave a saddle"
    for i in symmetric:
        entry = summary["entries"][i]
        assert entry["grad_norm"] <= 1e-8 and entry["index"] >= 1
        esc = hessian.escape_direction(H[i], labels, TAU)
        check = hessian.escape_decrease(H[i], labels, TAU, esc.direction)
        assert float(esc.eigenvalue) < 0 and float(check.decrease) > 0
        assert entry["escape"] is None  # --no-escape


@pytest.mark.slow
def test_descents_from_both_sides_of_every_saddle_reach_the_global_minimum():
    problem = sc.Problem(COUNTS, 2, TAU)
    summary, H = saddles.catalogue(problem, settings=saddles.CatalogueSettings(random=2))
    assert H.shape == (len(summary["entries"]), 9, 2)
    for entry in summary["entries"][1:]:
        assert entry["kind"] == "saddle"
        for side in ("plus", "minus"):  # d >= k - 1: the escape leads to the global minimum
            assert entry["escape"][side]["kind"] == "global_min"
            assert entry["escape"][side]["entry"] == 0


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, catalogue_dir):
    out = tmp_path / "x"
    for args in (
        ["--counts", "3,3,3", "--dim", "1"],
        ["--counts", "3,1", "--dim", "2"],
        ["--counts", "3,3,3", "--dim", "2", "--random", "-1"],
        ["--counts", "3,3,3", "--dim", "2", "--tau", "0"],
    ):
        assert cli.main(["saddles", *args, "--out", str(out)]) == 2
        assert not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("sclandscape: error:") for line in err)
    before = sorted(p.name for p in catalogue_dir.iterdir())
    assert cli.main(["saddles", "--counts", "3,3,3", "--dim", "2", "--out", str(catalogue_dir)]) == 2
    assert sorted(p.name for p in catalogue_dir.iterdir()) == before


# --------------------------------------------------------------------------
# Variants
