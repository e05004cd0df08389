import numpy as np
import pytest

import sclandscape as sc
from sclandscape.core import problems


def test_constructors():
    assert sc.balanced_counts(3, 4) == (4, 4, 4)
    assert sc.step_counts(2, 3, 2, 5) == (10, 10, 2, 2, 2)
    assert sc.step_counts(1, 1, 4, 2.5) == (10, 4)
    np.testing.assert_array_equal(sc.labels_from_counts((2, 3)), [0, 0, 1, 1, 1])
    assert problems.counts_from_labels([1, 0, 1, 0, 3, 3]) == (2, 2, 2)


def test_problem_dataclass_round_trip_and_hashable():
    p = sc.Problem.step(2, 2, 2, 5, dim=3, tau=0.5)
    assert (p.n, p.k, p.counts) == (24, 4, (10, 10, 2, 2))
    assert sc.Problem.from_json(p.to_json()) == p
    assert hash(p) == hash(sc.Problem((10, 10, 2, 2), 3, 0.5))
    assert p.labels.shape == (24,)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: sc.Problem((3, 3), 0, 1.0), "dimension"),
        (lambda: sc.Problem((3, 3), 2.5, 1.0), "dimension"),
        (lambda: sc.Problem((3, 3), 2, -1.0), "tau"),
        (lambda: sc.Problem((3, 1), 2, 1.0), "class 1 has 1"),
        (lambda: sc.Problem((3,), 2, 1.0), "at least 2 classes"),
        (lambda: sc.balanced_counts(1, 4), "k >= 2"),
        (lambda: sc.step_counts(2, 2, 3, 1.5), "R"),
        (lambda: sc.step_counts(2, 2, 3, 0.5), "R"),
        (lambda: sc.step_counts(0, 2, 3, 2), "k_maj"),
        (lambda: problems.check_labels([[0, 1]]), "1-d"),
        (lambda: problems.check_labels(["a", "b"]), "integers"),
        (lambda: problems.check_labels([0, 0, 0]), "at least 2 classes"),
        (lambda: problems.check_counts("ab"), "integers"),
    ],
)
def test_validation_messages(call, match):
    with pytest.raises(ValueError, match=match):
        call()
