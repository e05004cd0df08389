r"""Symmetric constructions of critical points, their classification, deduplication and escape.

**Symmetric criticality** (Palais 1979): if a group ``K`` acts isometrically
on ``OB(n, d)`` and leaves ``L`` invariant, a critical point of ``L``
restricted to the fixed-point set ``Fix(K)`` is a critical point of ``L``.
The symmetries used here are sample permutations that preserve labels,
class swaps between classes of equal size, and reflections ``H -> H Q``:

- ``merge``: a partition of the classes into groups; every sample of a group
  sits on one point ``u_g`` in a ``d'``-dimensional coordinate subspace.
  Collapsing a class is the fixed set of its sample permutations; merging
  two classes of equal size the fixed set of their swap; ``d' < d`` the fixed
  set of the reflections of the other coordinates. So the construction is a
  fixed-point set (``symmetric = True``) when every group holds classes of
  one size; otherwise (e.g. a majority merged with a minority class) it is
  only a starting guess, and the critical-point finder moves off it.
- ``split``: class ``c`` split in two halves placed mirror-symmetrically,
  ``v`` and ``Q v`` with ``Q = diag(-1, 1, ..., 1)`` (antipodal when
  ``v = +-e_1``), every other class collapsed into the mirror ``e_1^perp``
  (with an odd ``n_c`` the left-over sample too): the fixed set of the
  involution "swap the halves, then reflect" together with the within-half
  and within-class permutations (``symmetric = True``).
- ``antipodal``: as ``split`` with the halves held at ``+-e_1``. Not a
  fixed-point set in general (``symmetric = False``): exactly critical when
  the other classes' configuration is balanced about the mirror (e.g.
  balanced classes), otherwise a starting guess for the finder.
- ``random``: no symmetry, the finder from a uniform random start.

Each construction is a *tie pattern*: free points ``X`` ``(p, d)`` (``p = k +
1``, rows masked to their subspace), an assignment of samples to points and a
mirror flag per sample; ``expand(X) = (rownormalise(X * mask))[assign]`` with
the mirrored rows reflected. The reduced problem ``min_X L(expand(X))`` is
solved by the scan's Riemannian L-BFGS, the result polished on the full
problem by ``critical.find_critical`` and classified by ``verdict.classify``
(dense spectrum, float64). All constructions of a problem run as one ``vmap``.

**Deduplication** modulo the loss's symmetry group: the census's rule
(``census.group_points``: losses within both gap tolerances, then the
distance after alignment over rotations, reflections, sample permutations
and relabellings within both points' radii, or a flat path for flat sets),
on the verdict's refined points.

**Escape.** From every saddle, ``hessian.escape_direction`` gives the unit
eigenvector ``v`` of the most negative eigenvalue; the scan's optimiser
(``scanner.solve_one``, float64, trust-region polish) runs from ``R_H(+t v)`` and
``R_H(-t v)`` (``t`` the step of a grid that lowers the loss most on that
side), and the endpoint is classified: which minimum the saddle leads to.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.core import progress as progress_lib
from sclandscape.explore import census, critical, scanner
from sclandscape.numerics import loss, oblique, optim
from sclandscape.numerics.optim import Status
from sclandscape.theory import hessian, metrics, optimum, verdict

#: Partitions of the classes are enumerated for at most this many classes.
MAX_CLASSES = 10


# --------------------------------------------------------------------------
# Constructions


@dataclasses.dataclass(frozen=True)
class Construction:
    """A symmetric subspace (or a random start) to look for a critical point in.

    Attributes:
      kind: ``"merge"``, ``"split"``, ``"antipodal"`` or ``"random"``.
      groups: ``merge``: the partition of the classes (tuples of class indices).
      split: ``split``: the class split in two mirror halves.
      subdim: ``d'``, the coordinate subspace the points live in (``<= d``).
      symmetric: the tie pattern is the fixed-point set of a symmetry of ``L``
        (so the reduced critical point is exactly critical for the full problem).
      seed: ``random``: the start's index.
    """

    kind: str
    groups: tuple[tuple[int, ...], ...] = ()
    split: int = -1
    subdim: int = 0
    symmetric: bool = False
    seed: int = 0

    @property
    def name(self) -> str:
        if self.kind == "merge":
            parts = "|".join(",".join(str(c) for c in g) for g in self.groups)
            return f"merge {parts} in d'={self.subdim}"
        if self.kind == "split":
            return f"split class {self.split} mirror-symmetric in d'={self.subdim}"
        if self.kind == "antipodal":
            return f"split class {self.split} antipodally in d'={self.subdim}"
        return f"random start {self.seed}"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "groups": [list(g) for g in self.groups],
            "split": self.split,
            "subdim": self.subdim,
            "symmetric": self.symmetric,
        }


def set_partitions(items: Sequence[int]) -> Iterator[tuple[tuple[int, ...], ...]]:
    """All partitions of ``items`` into non-empty groups (each group and the groups in order)."""
    items = list(items)
    if not items:
        yield ()
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield ((first,), *part)
        for i in range(len(part)):
            yield (*part[:i], (first, *part[i]), *part[i + 1 :])


def _canonical_partition(groups, counts) -> tuple:
    """The partition up to relabelling classes of equal size: sorted multiset of sorted group counts."""
    return tuple(sorted(tuple(sorted(counts[c] for c in g)) for g in groups))


def constructions(counts, dim: int, *, splits: bool = True) -> list[Construction]:
    """Merges over every partition of the classes (one per class of partitions equal up to
    relabelling classes of equal size) and subspace ``d' = 1 .. min(d, groups - 1)``, and a mirror
    split of each class (one per class size) in ``d' = 2 .. d``."""
    counts = problems.check_counts(counts)
    dim = problems.check_dim(dim)
    k = len(counts)
    if k > MAX_CLASSES:
        raise ValueError(
            f"symmetric constructions enumerate partitions of at most {MAX_CLASSES} classes, got {k}"
        )
    out, seen = [], set()
    for groups in set_partitions(range(k)):
        key = _canonical_partition(groups, counts)
        if key in seen:
            continue
        seen.add(key)
        symmetric = all(len({counts[c] for c in g}) == 1 for g in groups)
        groups = tuple(sorted(groups))
        for sub in range(1, min(dim, max(len(groups) - 1, 1)) + 1):
            out.append(Construction("merge", groups=groups, subdim=sub, symmetric=symmetric))
    if splits and dim >= 2:
        sizes = set()
        for c in range(k):
            if counts[c] in sizes:
                continue
            sizes.add(counts[c])
            for sub in range(2, dim + 1):
                out.append(Construction("split", split=c, subdim=sub, symmetric=True))
                out.append(Construction("antipodal", split=c, subdim=sub, symmetric=False))
    return out


def tie_pattern(construction: Construction, counts, dim: int):
    """``(assign (n,), mirror (n,), mask (k + 1, d))`` of a construction (see the module docstring)."""
    counts = problems.check_counts(counts)
    labels = problems.labels_from_counts(counts)
    k, n = len(counts), len(labels)
    p = k + 1
    mask = np.zeros((p, dim))
    mirror = np.zeros(n, bool)
    sub = construction.subdim
    if not 1 <= sub <= dim:
        raise ValueError(f"subdim must lie in 1..{dim}, got {sub}")
    mask[:, :sub] = 1.0
    if construction.kind == "merge":
        group_of = np.empty(k, np.int64)
        for g, members in enumerate(construction.groups):
            group_of[list(members)] = g
        if sorted(c for g in construction.groups for c in g) != list(range(k)):
            raise ValueError(f"groups {construction.groups} are not a partition of the {k} classes")
        assign = group_of[labels]
    elif construction.kind in ("split", "antipodal"):
        c = construction.split
        if not 0 <= c < k or sub < 2:
            raise ValueError(f"a split needs a class in 0..{k - 1} and subdim >= 2, got {c}, {sub}")
        assign = labels.copy()
        members = np.flatnonzero(labels == c)
        half = members.size // 2
        mirror[members[half : 2 * half]] = True
        if members.size % 2:
            assign[members[-1]] = k  # the odd sample: its own point, in the mirror
        hyper = np.ones(p, bool)
        hyper[c] = False
        mask[hyper, 0] = 0.0
        if construction.kind == "antipodal":
            mask[c, 1:] = 0.0  # the halves at +-e_1
    else:
        raise ValueError(f"no tie pattern for a {construction.kind!r} construction")
    return assign.astype(np.int32), mirror, mask


def expand(X, assign, mirror, mask):
    """``H`` ``(n, d)`` from the free points ``X`` ``(p, d)`` of a tie pattern."""
    Xn = oblique.normalize_rows(X * mask)
    H = Xn[assign]
    return H.at[:, 0].multiply(jnp.where(mirror, -1.0, 1.0).astype(H.dtype))


# --------------------------------------------------------------------------
# One construction: reduced minimisation, then the full-problem finder


@dataclasses.dataclass(frozen=True)
class ReducedSettings:
    """The reduced problem's L-BFGS: gradient tolerance and evaluation budget."""

    tol: float = 1e-9
    max_steps: int = 3000


def _reduced_minimise(X0, assign, mirror, mask, labels, tau, settings: ReducedSettings):
    """``min_X L(expand(X))`` by ``optim``'s L-BFGS driver: ``(X, |grad|, evaluations)``."""
    cost = lambda X: loss.sum_loss(expand(X, assign, mirror, mask), labels, tau)  # noqa: E731
    run = optim.lbfgs_minimise(cost, X0 * mask, tol=settings.tol, max_steps=settings.max_steps)
    return run.x, run.grad_norm, run.steps


def _construct_one(key, assign, mirror, mask, use_tie, labels, tau, reduced, crit):
    n, d = labels.shape[0], mask.shape[1]
    k1, k2 = jax.random.split(key)
    X0 = jax.random.normal(k1, mask.shape, mask.dtype)
    X, red_grad, red_steps = _reduced_minimise(X0, assign, mirror, mask, labels, tau, reduced)
    H_tied = expand(X, assign, mirror, mask)
    H_rand = oblique.normalize_rows(jax.random.normal(k1, (n, d), mask.dtype))
    H0 = jnp.where(use_tie, H_tied, H_rand)
    out = critical.find_critical_one(H0, labels, tau, crit, key=k2)
    return H0, jnp.where(use_tie, red_grad, jnp.nan), red_steps, out


@dataclasses.dataclass(frozen=True)
class CatalogueSettings:
    """Everything ``find_critical_points`` and ``catalogue`` do, with their tolerances (recorded).

    Attributes:
      restarts: random starts of each construction's reduced problem.
      random: critical-point finder runs from uniform random starts.
      reduced: the reduced problems' L-BFGS.
      critical: the full-problem critical-point finder.
      classify: the Hessian classification (``gtol`` judges convergence).
      escape: descend from both sides of every saddle's escape direction.
      descent: the scan settings of those descents.
      splits: include the mirror-split and antipodal-split constructions.
      escape_noise: Frobenius norm of a random tangent perturbation added to each descent's start:
        symmetric subspaces are invariant under the descent, so without it a descent from a saddle
        that lies in one can only end on a critical point of that subspace.
    """

    restarts: int = 1
    random: int = 0
    reduced: ReducedSettings = ReducedSettings()
    critical: critical.CriticalSettings = critical.CriticalSettings()
    classify: verdict.ClassifySettings = verdict.ClassifySettings(gtol=1e-8)
    escape: bool = True
    descent: scanner.ScanSettings = scanner.ScanSettings(tol=1e-9, x64=True, max_steps=5000)
    splits: bool = True
    escape_noise: float = 1e-6

    def __post_init__(self):
        problems.check_fields(
            self,
            nonnegative=("escape_noise",),
            integers={"restarts": 0, "random": 0},
        )

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "to_json"):
                value = value.to_json()
            elif dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            out[f.name] = value
        return out


def _run_constructions(problem, items, key, settings: CatalogueSettings):
    """Reduced solve + finder for every construction (one vmapped, jitted call)."""
    labels = jnp.asarray(problem.labels)
    k, d = problem.k, problem.dim
    patterns = []
    for c in items:
        if c.kind == "random":
            patterns.append(
                (np.zeros(problem.n, np.int32), np.zeros(problem.n, bool), np.ones((k + 1, d)), False)
            )
        else:
            patterns.append((*tie_pattern(c, problem.counts, d), True))
    assign = jnp.asarray(np.stack([p[0] for p in patterns]))
    mirror = jnp.asarray(np.stack([p[1] for p in patterns]))
    mask = jnp.asarray(np.stack([p[2] for p in patterns]), jnp.float64)
    use_tie = jnp.asarray(np.array([p[3] for p in patterns]))
    keys = jax.random.split(key, len(items))
    return _construct_batch(
        keys, assign, mirror, mask, use_tie, labels, problem.tau, settings.reduced, settings.critical
    )


@functools.partial(jax.jit, static_argnames=("reduced", "crit"))
def _construct_batch(keys, assign, mirror, mask, use_tie, labels, tau, reduced, crit):
    return jax.vmap(_construct_one, in_axes=(0, 0, 0, 0, 0, None, None, None, None))(
        keys, assign, mirror, mask, use_tie, labels, tau, reduced, crit
    )


# --------------------------------------------------------------------------
# Invariants and deduplication


# --------------------------------------------------------------------------
# Escape from saddles


@jax.jit
def _escape_starts(H, V, labels, tau, steps, key, noise):
    """``R_H(s t V + noise)`` for each sign ``s`` with the grid step ``t`` that lowers ``L`` most on that
    side, ``noise`` a random tangent vector of norm ``noise``."""

    def side(h, v, sign, k):
        pts = jax.vmap(lambda t: oblique.retract(h, sign * t * v))(steps)
        losses = jax.vmap(lambda x: loss.sum_loss(x, labels, tau))(pts)
        x = pts[jnp.argmin(losses)]
        z = oblique.project_tangent(x, jax.random.normal(k, x.shape, x.dtype))
        return oblique.retract(x, noise * z / jnp.linalg.norm(z))

    def one(h, v, k):
        k1, k2 = jax.random.split(k)
        return jnp.stack([side(h, v, 1.0, k1), side(h, v, -1.0, k2)])

    return jax.vmap(one)(H, V, jax.random.split(key, H.shape[0]))


@functools.partial(jax.jit, static_argnames="settings")
def _descend(H0, labels, tau, settings):
    return jax.vmap(lambda h: scanner.solve_one(h, labels, tau, settings))(H0)


def descend_from_saddles(
    H, labels, tau, settings: CatalogueSettings, global_loss: float, *, key=None
) -> dict:
    """For saddles ``H`` ``(s, n, d)``: the escape eigenvalue and the endpoints from both sides.

    Returns arrays: ``eigenvalue`` ``(s,)``; ``H_end`` ``(s, 2, n, d)``; ``loss``, ``kind``,
    ``index``, ``status`` ``(s, 2)`` (side 0: ``+v``, side 1: ``-v``).
    """
    H = jnp.asarray(H, jnp.float64)
    s = H.shape[0]
    esc = hessian.escape_direction(H, labels, tau)
    steps = jnp.asarray(2.0 ** -np.arange(0, 16, 0.5), jnp.float64)
    key = jax.random.key(0) if key is None else key
    starts = _escape_starts(H, esc.direction, jnp.asarray(labels), tau, steps, key, settings.escape_noise)
    starts = starts.reshape((2 * s,) + H.shape[1:])
    out = _descend(starts, jnp.asarray(labels), tau, settings.descent)
    H_end = np.asarray(out[0])
    c = verdict.classify(H_end, labels, tau, global_loss=global_loss, settings=settings.classify)
    H_end = np.asarray(c.refined)
    shape = (s, 2)
    status = np.asarray(out[2]).reshape(shape)
    kind = np.where(status == Status.CONVERGED, np.asarray(c.kind).reshape(shape), "not_converged")
    return {
        "eigenvalue": np.asarray(esc.eigenvalue),
        "H_end": H_end.reshape(shape + H.shape[1:]),
        "loss": np.asarray(c.loss).reshape(shape),
        "kind": kind,
        "index": np.asarray(c.index).reshape(shape),
        "status": status,
        **{
            f: np.asarray(getattr(c, f)).reshape(shape)
            for f in ("gap_tol", "grad_norm", "sigma", "refined_radius")
        },
    }


# --------------------------------------------------------------------------
# The catalogue


def attempts(problem: problems.Problem, settings: CatalogueSettings) -> list[Construction]:
    """The constructions (each ``restarts`` times) and the random starts, in the order they are run."""
    items = [c for c in constructions(problem.counts, problem.dim, splits=settings.splits)]
    items = [c for c in items for _ in range(settings.restarts)]
    items += [Construction("random", seed=i) for i in range(settings.random)]
    return items


def find_critical_points(
    problem: problems.Problem, *, seed: int = 0, settings: CatalogueSettings = CatalogueSettings()
) -> dict:
    """Run every construction and random start; the per-attempt results (NumPy, float64).

    Returns ``attempts`` (list of ``Construction``), ``H0`` (the construction's point),
    ``H`` (after the finder), ``reduced_grad_norm``, ``status``, ``iterations``, ``moved``
    (``|G - G0|_max`` between the two) and the classification fields ``loss``, ``grad_norm``,
    ``kind``, ``index``, ``lambda_min``, ``n_zero``, ``n_zero_predicted``, ``rank``, ``cert_lambda``.
    """
    if problem.dim < 2:
        raise ValueError("critical points on OB(n, 1) are a finite set; need --dim >= 2")
    items = attempts(problem, settings)
    if not items:
        raise ValueError("nothing to run: no constructions and no random starts")
    opt = optimum.global_optimum(problem.counts, problem.tau)
    with precision.float64():
        H0, red_grad, red_steps, res = _run_constructions(problem, items, jax.random.key(seed), settings)
        c = verdict.classify(
            np.asarray(res.x), problem.labels, problem.tau, optimum_=opt, settings=settings.classify
        )
        H = np.asarray(c.refined)  # the proof's refined critical point where a proof closed
    H0 = np.asarray(H0)
    status = np.asarray(res.status)
    kind = np.where(status == Status.CONVERGED, np.asarray(c.kind), "not_converged").astype("<U13")
    G0 = np.einsum("rid,rjd->rij", H0, H0)
    G = np.einsum("rid,rjd->rij", H, H)
    return {
        "attempts": items,
        "H0": H0,
        "H": H,
        "reduced_grad_norm": np.asarray(red_grad),
        "reduced_steps": np.asarray(red_steps),
        "status": status,
        "iterations": np.asarray(res.iterations),
        "evals": np.asarray(res.evals),
        "moved": np.max(np.abs(G - G0), axis=(1, 2)),
        "loss": np.asarray(c.loss),
        "grad_norm": np.asarray(c.grad_norm),
        "kind": kind,
        "index": np.asarray(c.index),
        "lambda_min": np.asarray(c.lambda_min),
        "n_zero": np.asarray(c.n_zero),
        "n_zero_predicted": np.asarray(c.n_zero_predicted),
        "rank": np.asarray(c.rank),
        "cert_lambda": np.asarray(c.cert_lambda),
        **{f: np.asarray(getattr(c, f)) for f in ("gap_tol", "sigma", "refined_radius")},
        "global_loss": opt.loss,
        "global_rank": opt.rank,
    }


def _endpoint(loss, kind, index, status, global_loss, match) -> dict:
    return {
        "loss": float(loss),
        "gap": float(loss - global_loss),
        "kind": str(kind),
        "index": int(index),
        "status": Status(int(status)).name.lower(),
        "entry": match,
    }


def catalogue(
    problem: problems.Problem,
    *,
    seed: int = 0,
    settings: CatalogueSettings = CatalogueSettings(),
    progress=None,
):
    """The distinct critical points found from every construction and random start.

    Returns ``(summary, H)``: ``summary`` is the content of ``catalogue.json`` (``problem``,
    ``global_loss``, ``settings``, counts of attempts, and ``entries``, one per distinct converged
    critical point in ascending loss: ``loss``, ``gap``, ``kind``, ``index``, ``lambda_min``,
    ``n_zero`` / ``n_zero_predicted``, ``rank``, ``grad_norm``, ``construction`` (the symmetric
    construction that reached it, else the first attempt), ``symmetric``, ``constructions`` (all
    attempts that reached it), ``count``, ``moved``, ``class_mean_products`` and, for saddles, ``escape``:
    the eigenvalue and the endpoint of a descent from each side (``plus``, ``minus``: loss, gap,
    kind, index and the matching ``entry`` id when the endpoint is in the catalogue)); ``H`` is
    ``(entries, n, d)`` in catalogue order. ``progress(done, total, phase, detail)``
    (``sclandscape.core.progress``) hears the phases ``critical points``, ``deduplication``
    and ``escape descents``.
    """
    progress = progress_lib.adapt(progress) or (lambda *a: None)
    progress(
        None, None, "critical points", f"{len(attempts(problem, settings))} attempts: finder, classification"
    )
    found = find_critical_points(problem, seed=seed, settings=settings)
    progress(None, None, "deduplication")
    L_star = found["global_loss"]
    ok = np.flatnonzero(found["kind"] != "not_converged")
    # Sort by loss, then prefer symmetric constructions, then those the finder moved least.
    items = found["attempts"]
    order = sorted(
        ok.tolist(),
        key=lambda i: (
            round(float(found["loss"][i]), 9),
            not items[i].symmetric,
            items[i].kind == "random",
            float(found["moved"][i]),
        ),
    )
    labels, counts = problem.labels, problem.counts
    group = census.group_points(
        {k: found[k][order] for k in ("H",) + census.MATCH_FIELDS}, labels, problem.tau
    )
    reps = [order[g] for g in sorted(set(group.tolist()))]
    members = {order[g]: [order[i] for i in np.flatnonzero(group == g)] for g in set(group.tolist())}
    reps.sort(key=lambda i: (float(found["loss"][i]), int(found["index"][i])))
    H = found["H"][reps] if reps else np.zeros((0, problem.n, problem.dim))
    entries = []
    for e, i in enumerate(reps):
        who = members[i]
        entries.append(
            {
                "id": e,
                "loss": float(found["loss"][i]),
                "gap": float(found["loss"][i] - L_star),
                "kind": str(found["kind"][i]),
                "index": int(found["index"][i]),
                "lambda_min": float(found["lambda_min"][i]),
                "n_zero": int(found["n_zero"][i]),
                "n_zero_predicted": int(found["n_zero_predicted"][i]),
                "rank": int(found["rank"][i]),
                "grad_norm": float(found["grad_norm"][i]),
                "cert_lambda": float(found["cert_lambda"][i]),
                "construction": items[i].name,
                "construction_detail": items[i].to_json(),
                "symmetric": bool(any(items[j].symmetric for j in who)),
                "constructions": sorted({items[j].name for j in who}),
                "count": len(who),
                "moved": float(found["moved"][i]),
                "class_mean_products": np.round(
                    metrics.invariants(found["H"][i], labels)["class_mean_products"], 10
                ).tolist(),
                "escape": None,
            }
        )

    def found_point(i):
        return {f: found[f][i] for f in census.MATCH_FIELDS}

    saddles = [e for e, entry in enumerate(entries) if entry["kind"] == "saddle"]
    if settings.escape and saddles:
        progress(None, None, "escape descents", f"{len(saddles)} saddles, both sides")
        with precision.float64():
            desc = descend_from_saddles(
                H[saddles], labels, problem.tau, settings, L_star, key=jax.random.key(seed + 1)
            )
        perms = metrics.class_permutations(counts)
        known = [census.point_entry(H[e], labels, found_point(reps[e])) for e in range(len(entries))]

        def match(s, side):
            end = census.point_entry(
                desc["H_end"][s, side], labels, {f: desc[f][s, side] for f in census.MATCH_FIELDS}
            )
            for e, entry in enumerate(known):
                if census.same_point(end, entry, labels, problem.tau, perms=perms)[0]:
                    return e
            return None

        for s, e in enumerate(saddles):
            sides = {}
            for side, name in enumerate(("plus", "minus")):
                sides[name] = _endpoint(
                    desc["loss"][s, side],
                    desc["kind"][s, side],
                    desc["index"][s, side],
                    desc["status"][s, side],
                    L_star,
                    match(s, side),
                )
            entries[e]["escape"] = {"eigenvalue": float(desc["eigenvalue"][s]), **sides}
    status_counts = {
        name: int(np.sum(found["status"] == s)) for s, name in ((int(s), s.name.lower()) for s in Status)
    }
    summary = {
        "problem": problem.to_json(),
        "global_loss": L_star,
        "global_rank": found["global_rank"],
        "seed": int(seed),
        "settings": settings.to_json(),
        "n_attempts": len(items),
        "n_converged": int(ok.size),
        "attempt_status": status_counts,
        "kinds": {k: sum(e["kind"] == k for e in entries) for k in metrics.KINDS},
        "entries": entries,
    }
    return summary, H


# --------------------------------------------------------------------------
# Spread constructions: a search for spurious minima with scattered classes


@dataclasses.dataclass(frozen=True)
class SpreadPattern:
    """A start with ``scattered`` classes spread over their samples and the others collapsed.

    The collapsed classes' points and the scattered samples are spread together by
    descending a repulsion energy ``sum_{a<b} w_a w_b exp((u_a . u_b - 1) / t0)`` on the
    sphere (``w = collapsed_weight`` for a collapsed class's point, 1 for a scattered
    sample; with ``simplex`` the collapsed points are held at vertices of the simplex
    ETF of ``k`` classes). ``t0`` sets how far the repulsion reaches: small ``t0`` only
    separates nearest neighbours (a spread close to a packing), large ``t0`` pushes
    every point away from all others.
    """

    scattered: tuple
    t0: float
    collapsed_weight: float
    simplex: bool
    seed: int

    def name(self) -> str:
        s = "+".join(str(c) for c in self.scattered)
        simplex = ", simplex" if self.simplex else ""
        return f"scatter {s}, t0 {self.t0:g}, w {self.collapsed_weight:g}{simplex}, seed {self.seed}"

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"scattered": list(self.scattered), "name": self.name()}


def _simplex(k: int, d: int, rng) -> np.ndarray:
    """``k`` unit vectors with products ``-1/(k-1)`` in ``R^d`` (``d >= k - 1``), randomly rotated."""
    E = np.eye(k) - 1.0 / k
    U, s, _ = np.linalg.svd(E)
    B = U[:, : k - 1] * s[: k - 1]
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X = np.zeros((k, d))
    X[:, : k - 1] = B
    return X @ Q


def spread_start(pattern: SpreadPattern, counts, dim: int, *, steps: int = 2000) -> np.ndarray:
    """The start ``(n, d)`` of ``pattern`` (``SpreadPattern``) for class ``counts`` at ``dim``."""
    counts = tuple(int(c) for c in counts)
    k = len(counts)
    if not pattern.scattered or any(not 0 <= c < k for c in pattern.scattered):
        raise ValueError(f"scattered classes must be in 0..{k - 1}, got {pattern.scattered!r}")
    if pattern.simplex and dim < k - 1:
        raise ValueError(f"a simplex of {k} classes needs d >= {k - 1}, got {dim}")
    rng = np.random.default_rng(pattern.seed)
    labels = np.repeat(np.arange(k), counts)
    collapsed = [c for c in range(k) if c not in pattern.scattered]
    sizes = [counts[c] for c in pattern.scattered]
    p = len(collapsed) + sum(sizes)
    P = rng.standard_normal((p, dim))
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    fixed = 0
    if pattern.simplex and collapsed:
        P[: len(collapsed)] = _simplex(k, dim, rng)[collapsed]
        fixed = len(collapsed)
    w = np.r_[np.full(len(collapsed), float(pattern.collapsed_weight)), np.ones(sum(sizes))]
    W = np.outer(w, w)
    np.fill_diagonal(W, 0.0)
    for _ in range(steps):  # normalised projected gradient steps (a start, not an optimum)
        E = W * np.exp((P @ P.T - 1.0) / pattern.t0)
        g = E @ P / pattern.t0
        g -= np.sum(g * P, axis=1, keepdims=True) * P
        g[:fixed] = 0.0
        P = P - 2e-3 * g / (np.abs(g).max() + 1e-300)
        P /= np.linalg.norm(P, axis=1, keepdims=True)
    X = np.zeros((labels.size, dim))
    for i, c in enumerate(collapsed):
        X[labels == c] = P[i]
    at = len(collapsed)
    for c, m in zip(pattern.scattered, sizes, strict=True):
        X[labels == c] = P[at : at + m]
        at += m
    # A little noise: off the fixed set of the collapsed classes' permutations.
    X += 1e-4 * rng.standard_normal(X.shape)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def spread_patterns(
    k: int, *, seeds: int = 4, pairs_seeds: int = 2, t0s=(0.05, 0.1, 0.2), weights=(10.0, 1.0)
) -> list[SpreadPattern]:
    """The default search: one class scattered (``t0s`` x ``weights`` x simplex or free x
    ``seeds``), and two classes scattered (``t0s`` x ``weights`` x ``pairs_seeds``, free).
    ``weights``: of a collapsed class's point against a scattered sample's 1 (10: the class
    size of 4 x 10, a collapsed class repels as its 10 samples would). With equal class sizes
    one choice of scattered classes stands for all (relabelling)."""
    out = []
    for t0 in t0s:
        for weight in weights:
            for simplex in (False, True):
                out += [SpreadPattern((0,), t0, weight, simplex, 1000 * i + 17) for i in range(seeds)]
            if k > 2:
                out += [SpreadPattern((0, 1), t0, weight, False, 1000 * i + 29) for i in range(pairs_seeds)]
    return out


#: The descent of ``search_spurious`` (as ``families.descend``).
SPREAD_DESCENT = scanner.ScanSettings(tol=1e-10, x64=True, max_steps=50000)


def search_spurious(
    counts,
    dim: int,
    tau: float,
    patterns: Sequence[SpreadPattern],
    *,
    extra: Sequence[tuple[str, np.ndarray]] = (),
    descent: scanner.ScanSettings | None = None,
) -> dict:
    """Descend (float64, the scan's optimiser) from every pattern's start and from ``extra``
    ``(name, H)`` starts, judge every end with ``verdict.classify``, and group the ends that are
    not global minima modulo the symmetry group (``census.group_points`` on the verdict's
    refined points).

    Returns ``{"starts", "names", "kind", "loss", "status", "distinct": [{loss, gap, kind,
    strict_certified, lambda_min, n_zero, count, names, class_mean_norms, H}, ...] by loss,
    "global_loss"}``.
    """
    counts = tuple(int(c) for c in counts)
    labels = np.repeat(np.arange(len(counts)), counts)
    problems.check_tau(tau)
    if descent is None:  # families.descend's settings: float64, to 1e-10
        descent = SPREAD_DESCENT
    names = [p.name() for p in patterns] + [n for n, _ in extra]
    starts = [spread_start(p, counts, dim) for p in patterns] + [np.asarray(h, np.float64) for _, h in extra]
    if not starts:
        raise ValueError("search_spurious needs at least one pattern or extra start")
    with precision.float64(), precision.float64_placement():
        out = _descend(jnp.asarray(np.stack(starts)), jnp.asarray(labels), jnp.asarray(float(tau)), descent)
    H_end, status = np.asarray(out[0]), np.asarray(out[2])
    c = verdict.classify(H_end, labels, tau)
    kind = np.where(status == Status.CONVERGED, np.asarray(c.kind), "not_converged")
    refined = np.asarray(c.refined)
    keep = np.flatnonzero((kind != "global_min") & (kind != "not_converged"))
    distinct = []
    if keep.size:
        fields = {f: np.asarray(getattr(c, f))[keep] for f in census.MATCH_FIELDS}
        fields["kind"] = kind[keep]
        group = census.group_points({"H": refined[keep], **fields}, labels, tau)
        for g in sorted(set(group.tolist())):
            members = keep[group == g]
            i = int(members[0])
            distinct.append(
                {
                    "loss": float(c.loss[i]),
                    "gap": float(c.gap[i]),
                    "kind": str(kind[i]),
                    "strict_certified": bool(c.strict_certified[i]),
                    "decided_by": str(c.decided_by[i]),
                    "lambda_min": float(c.lambda_min[i]),
                    "n_zero": int(c.n_zero[i]),
                    "n_zero_predicted": int(c.n_zero_predicted[i]),
                    "cert_lambda": float(c.cert_lambda[i]),
                    "count": int(members.size),
                    "names": [names[j] for j in members],
                    # |class mean| per class: 1 for a collapsed class, below it for a scattered one.
                    "class_mean_norms": [
                        float(np.linalg.norm(refined[i][labels == c].mean(0))) for c in range(len(counts))
                    ],
                    "H": refined[i],
                }
            )
        distinct.sort(key=lambda e: e["loss"])
    return {
        "counts": list(counts),
        "dim": int(dim),
        "tau": float(tau),
        "starts": len(starts),
        "names": names,
        "kind": kind.tolist(),
        "loss": np.asarray(c.loss).tolist(),
        "status": status.tolist(),
        "global_loss": float(c.global_loss),
        "distinct": distinct,
    }
