"""Label distributions, problem definitions and input validation.

A problem is the data of docs/maths.md §1: class counts ``n_c >= 2`` (samples sorted by
class, so ``labels = [0]*n_0 + [1]*n_1 + ...``), the embedding dimension ``d``,
the temperature ``tau`` and the feasible set (unit sphere per row, or the
non-negative part of it for UFM+). Problems are frozen dataclasses so they can
be static ``jit`` arguments and are written as JSON beside every result.

Every input check of the package lives here (array inputs of the loss and
the Hessian, labels, batchings, and the validators the frozen settings
dataclasses call); each raises ``ValueError`` with a one-line message naming
the problem. NumPy only: importing this module does not import JAX.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence

import numpy as np

#: Reductions of the SC loss over anchors (the ``"sum"`` form is the project's convention).
REDUCTIONS = ("sum", "mean")


#: Smallest temperature: factors ``exp(1/tau)`` (the closed forms, the class-level program's
#: rescaling by ``exp(k / ((k-1) tau))``) overflow float64 below ``tau = 1/709.78 = 0.0014``;
#: ``0.002`` keeps ``1/tau <= 500`` (measured: 28 count vectors, ``k`` from 2 to 20, all solve there).
TAU_MIN = 0.002

#: Largest temperature. Why large ``tau`` is degenerate: expanding each anchor's log-sum-exp in
#: ``1/tau`` (Gram entries ``g`` in ``[-1, 1]``),
#:
#:     L(G) = n log(n - 1) + l1(G) / tau + l2(G) / tau^2 + O(tau^-3),
#:     l1(G) = sum_i [mean_{k != i} g_ik - mean_{j in P(i)} g_ij]   (linear in G),
#:
#: so the loss tends to ``n log(n - 1)`` and its whole range over the feasible set is at most
#: ``4 n / tau``: every configuration is nearly optimal. Worse, ``l1`` is minimised by *every*
#: configuration with collapsed classes whose class means have weighted centroid zero, a continuum
#: when ``k >= 4``; the optimum (the simplex ETF when balanced) is picked out of it only by
#: ``l2 / tau^2``, a relative ``c / tau^2`` of the loss (``c = 0.03`` between the ETF and the square
#: for four classes of five: measured 2.98e-6 at ``tau = 100``, 2.98e-8 at ``1e3``, 2.98e-10 at ``1e4``).
#: Float64 loss values (relative precision ``eps = 2.2e-16``) stop resolving that term at
#: ``tau ~ sqrt(c / eps) ~ 1e7``, and float32 ones (the scan's first-order phase) at ``tau ~ 500``
#: (the float64 polish finishes those runs). The class-level solve fails first: its curvature along
#: the continuum is ``1/tau`` of its curvature across it, and it stops reaching its KKT target
#: within its iteration budget from ``tau = 2e4`` (measured: four classes of five fail at ``2e4``;
#: 28 count vectors, ``k`` from 2 to 20, all solve at ``1e4``; on a quarter-decade grid the first
#: failures of 13 vectors are at ``1e5``; three classes never fail, their zero-centroid set is rigid).
#: ``1e3`` keeps a factor of 20 from the first failure; there the selecting term is already below
#: the scan's default relative loss tolerances (``gap_rtol = 1e-6``), so larger ``tau`` has nothing
#: left to show.
TAU_MAX = 1e3


def check_tau(tau) -> float:
    """Return ``tau`` as a float in ``[TAU_MIN, TAU_MAX]`` (see those constants for why), or raise."""
    try:
        value = float(tau)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"tau must be a positive finite number, got {tau!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"tau must be a positive finite number, got {tau!r}")
    if value < TAU_MIN:
        raise ValueError(
            f"tau must be >= {TAU_MIN:g}, got {tau!r} (exp(1/tau) overflows float64 below 0.0014)"
        )
    if value > TAU_MAX:
        raise ValueError(
            f"tau must be <= {TAU_MAX:g}, got {tau!r} (the loss tends to n log(n-1) and the term that "
            "picks the optimum shrinks like 1/tau^2: above 1000 it is below the scan's tolerances, "
            "and the class-level solve fails from ~2e4)"
        )
    return value


#: Seeds are integers in ``[0, SEED_MAX]``: the range in which ``jax.random.key(seed)`` gives the
#: same key with and without 64-bit mode (without it larger seeds wrap modulo ``2^32`` and negative
#: ones alias large ones), so a seed names the same runs in every process.
SEED_MAX = 2**32 - 1


def check_seed(seed) -> int:
    """Return ``seed`` as an int in ``[0, SEED_MAX]``, or raise (a bool or a float is refused)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in [0, {SEED_MAX}] (2^32 - 1), got {seed!r}")
    return int(seed)


def check_dim(dim) -> int:
    """Return the embedding dimension as an int, or raise if it is not >= 1."""
    if isinstance(dim, bool) or not float(dim).is_integer() or int(dim) < 1:
        raise ValueError(f"embedding dimension d must be an integer >= 1, got {dim!r}")
    return int(dim)


def check_counts(counts) -> tuple[int, ...]:
    """Validate class counts: at least two classes, each with at least 2 samples."""
    try:
        values = [float(c) for c in counts]
    except TypeError:
        raise ValueError(f"counts must be a sequence of integers, got {counts!r}") from None
    except ValueError:
        raise ValueError(f"counts must be integers, got {counts!r}") from None
    if len(values) < 2:
        raise ValueError(f"need at least 2 classes, got counts {list(counts)!r}")
    for c, v in enumerate(values):
        if not math.isfinite(v) or not v.is_integer():
            raise ValueError(f"class {c} has a non-integer count {counts[c]!r}")
        if v < 2:
            raise ValueError(
                f"class {c} has {int(v)} sample(s); every class needs >= 2 (an anchor needs a positive)"
            )
    return tuple(int(v) for v in values)


def check_labels(labels) -> np.ndarray:
    """Validate a concrete label vector and return it as an ``int`` NumPy array.

    Labels must be non-negative integers, and every class that occurs must
    occur at least twice. Absent class indices are allowed (they do not enter
    the loss).
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-d array, got shape {arr.shape}")
    if arr.size < 2:
        raise ValueError(f"need at least 2 samples, got {arr.size}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("labels must be integers")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
    if np.any(arr < 0):
        raise ValueError(f"labels must be non-negative, got min {arr.min()}")
    arr = arr.astype(np.int64)
    classes, counts = np.unique(arr, return_counts=True)
    lonely = classes[counts < 2]
    if lonely.size:
        raise ValueError(
            f"class {int(lonely[0])} has 1 sample; every class needs >= 2 (an anchor needs a positive)"
        )
    if classes.size < 2:
        raise ValueError("need at least 2 classes")
    return arr


def labels_from_counts(counts: Sequence[int]) -> np.ndarray:
    """Labels sorted by class: ``[0]*n_0 + [1]*n_1 + ...``."""
    counts = check_counts(counts)
    return np.repeat(np.arange(len(counts)), counts)


def counts_from_labels(labels) -> tuple[int, ...]:
    """Counts of classes ``0..max(labels)`` (absent classes are dropped)."""
    arr = check_labels(labels)
    return tuple(int(c) for c in np.bincount(arr) if c > 0)


def balanced_counts(k: int, m: int) -> tuple[int, ...]:
    """``k`` classes of ``m`` samples each."""
    if int(k) != k or k < 2:
        raise ValueError(f"need an integer number of classes k >= 2, got {k!r}")
    return check_counts([m] * int(k))


def step_counts(k_maj: int, k_min: int, n_min: int, R) -> tuple[int, ...]:
    """STEP imbalance: ``k_maj`` classes of ``R*n_min`` samples then ``k_min`` of ``n_min``."""
    for name, v in (("k_maj", k_maj), ("k_min", k_min)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    n_maj = float(R) * n_min
    if not math.isfinite(n_maj) or float(R) < 1 or not n_maj.is_integer():
        raise ValueError(f"R must be >= 1 with R*n_min an integer, got R={R!r}, n_min={n_min!r}")
    return check_counts([int(n_maj)] * int(k_maj) + [n_min] * int(k_min))


@dataclasses.dataclass(frozen=True)
class Problem:
    """One SC landscape: class counts, embedding dimension, temperature, feasible set.

    ``nonneg=True`` selects UFM+ (rows on the unit sphere and ``H >= 0``).
    """

    counts: tuple[int, ...]
    dim: int
    tau: float
    nonneg: bool = False

    def __post_init__(self):
        object.__setattr__(self, "counts", check_counts(self.counts))
        object.__setattr__(self, "dim", check_dim(self.dim))
        object.__setattr__(self, "tau", check_tau(self.tau))
        object.__setattr__(self, "nonneg", bool(self.nonneg))

    @classmethod
    def balanced(cls, k: int, m: int, dim: int, tau: float, nonneg: bool = False) -> Problem:
        return cls(balanced_counts(k, m), dim, tau, nonneg)

    @classmethod
    def step(cls, k_maj, k_min, n_min, R, dim, tau, nonneg: bool = False) -> Problem:
        return cls(step_counts(k_maj, k_min, n_min, R), dim, tau, nonneg)

    @property
    def n(self) -> int:
        return sum(self.counts)

    @property
    def k(self) -> int:
        return len(self.counts)

    @property
    def labels(self) -> np.ndarray:
        return labels_from_counts(self.counts)

    def to_json(self) -> dict:
        return {"counts": list(self.counts), "dim": self.dim, "tau": self.tau, "nonneg": self.nonneg}

    @classmethod
    def from_json(cls, data: dict) -> Problem:
        return cls(tuple(data["counts"]), data["dim"], data["tau"], data.get("nonneg", False))


# --------------------------------------------------------------------------
# Array inputs


def is_traced(*xs) -> bool:
    """Whether any of ``xs`` is a JAX tracer (its value is unknown: value checks are skipped)."""
    jax = sys.modules.get("jax")
    return jax is not None and any(isinstance(x, jax.core.Tracer) for x in xs)


def check_loss_inputs(H, labels, tau, reduction: str = "sum", *, gram: bool = False) -> None:
    """Shapes of ``H`` ``(n, d)`` (or ``G`` ``(n, n)``) and ``labels`` ``(n,)``; label and ``tau`` values.

    Values are checked only when concrete (a traced label vector or ``tau`` passes).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    shape = np.shape(H)
    what = "G" if gram else "H"
    if gram:
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"G must be a square (n, n) matrix, got shape {shape}")
    elif len(shape) != 2:
        raise ValueError(f"H must have shape (n, d), got shape {shape}")
    elif shape[1] < 1:
        raise ValueError(f"embedding dimension d must be >= 1, got H of shape {shape}")
    if np.ndim(labels) != 1 or np.shape(labels)[0] != shape[0]:
        raise ValueError(
            f"labels of shape {np.shape(labels)} do not match {what} of shape {shape} "
            "(need one label per row)"
        )
    if not is_traced(labels):
        check_labels(labels)
    if not is_traced(tau):
        check_tau(tau)


def check_points(H, labels=None, tau=None, *, min_dim: int = 2) -> tuple[int, ...]:
    """Validate points ``H`` ``(n, d)`` or ``(runs, n, d)`` (and labels, tau); return its shape.

    ``d >= min_dim`` (2: the tangent space of ``OB(n, 1)`` is empty); concrete
    values must be finite floats with no zero row.
    """
    shape = tuple(np.shape(H))
    if len(shape) not in (2, 3):
        raise ValueError(f"H must have shape (n, d) or (runs, n, d), got {shape}")
    if shape[-1] < min_dim:
        raise ValueError(f"the tangent space of OB(n, d) is empty for d = {shape[-1]}; need d >= {min_dim}")
    if len(shape) == 3 and shape[0] < 1:
        raise ValueError(f"H has an empty runs axis, shape {shape}")
    if not is_traced(H):
        arr = np.asarray(H)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"H must be a floating-point array, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("H contains non-finite values")
        if np.any(np.linalg.norm(arr, axis=-1) == 0):
            raise ValueError("H has a zero row (not a point of OB(n, d))")
    if labels is not None:
        check_loss_inputs(np.empty(shape[-2:]), labels, tau, "sum")
    return shape


def check_batches(batches, n: int) -> np.ndarray:
    """A batching ``(n_batches, width)`` of sample indices in ``[0, n)``, padded with ``-1``."""
    arr = np.asarray(batches)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"batches must be a 2-d integer array (n_batches, width), got shape {arr.shape}")
    if np.any(arr < -1) or np.any(arr >= n):
        raise ValueError(f"batch indices must lie in [0, {n}) (or -1 for padding)")
    for b, row in enumerate(arr):
        kept = row[row >= 0]
        if np.unique(kept).size != kept.size:
            raise ValueError(f"batch {b} repeats a sample index")
    return arr


# --------------------------------------------------------------------------
# Settings fields (called from the ``__post_init__`` of the frozen settings dataclasses)


def check_positive(name: str, value) -> None:
    """``value`` is a finite number ``> 0`` (not a bool)."""
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0 < value < math.inf):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_nonnegative(name: str, value) -> None:
    """``value`` is a finite number ``>= 0`` (not a bool)."""
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def check_integer(name: str, value, minimum: int = 1) -> None:
    """``value`` is an ``int`` (or NumPy integer) ``>= minimum``; a bool or a float is refused."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(name: str, value, choices) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_fields(settings, *, positive=(), nonnegative=(), integers=(), choices=None) -> None:
    """Validate the named fields of a settings dataclass (``integers``: ``{name: minimum}``)."""
    for name in positive:
        check_positive(name, getattr(settings, name))
    for name in nonnegative:
        check_nonnegative(name, getattr(settings, name))
    for name, minimum in dict(integers).items():
        check_integer(name, getattr(settings, name), minimum)
    for name, options in (choices or {}).items():
        check_choice(name, getattr(settings, name), options)
