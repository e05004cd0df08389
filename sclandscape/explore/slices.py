r"""1-D and 2-D slices of the loss around a point of ``OB(n, d)`` along chosen tangent directions.

A slice evaluates ``L(R_H(a u))`` (1-D) or ``L(R_H(a u + b v))`` (2-D) on a
grid, with ``R_H(V) = rownormalise(H + V)`` the retraction and ``u, v`` unit
(Frobenius) tangent vectors at ``H``. Because the retraction is second order,
``d^2/da^2 L(R_H(a u))`` at ``a = 0`` is ``<Hess L(H)[u], u>`` at *any* ``H``
(the curve's acceleration is normal to the manifold, where the gradient has
no component), so the slice along a Hessian eigenvector bends like its
eigenvalue: the figures overlay that quadratic model.

**Directions** (``direction``): ``"eig:K"``, the eigenvector of the ``K``-th
smallest eigenvalue of the Riemannian Hessian restricted to the complement of
the symmetry modes ``{H Omega}`` (dense, ``n(d-1) <= hessian.DENSE_MAX_DIM``);
``"escape"``, the smallest one at any size (Lanczos with the symmetry modes
deflated above the dense size): at a saddle, the way down; ``"random"`` or
``"random:SEED"``, a Gaussian tangent vector with the symmetry modes projected
out; ``"towards"`` another point ``P`` (``toward(H, P, labels)``): ``P``
replaced by its closest copy (``paths.align``), then the inverse retraction
``v_i = p_i / <h_i, p_i> - h_i`` (defined when every ``<h_i, p_i> > 0``), so
that ``R_H(v) = P`` exactly and the slice passes through ``P`` at ``a = |v|``
(otherwise the tangent projection of ``P - H``, which does not reach it). The
second direction of a 2-D slice is made orthogonal to the first.

Slices of points of a finished scan (``scan_slice``) are written to
``DIR/slices/NAME.npz`` and ``.json`` and drawn to ``DIR/figures/NAME.{fmt}``.
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.explore import paths
from sclandscape.numerics import oblique, streaming
from sclandscape.theory import hessian

#: Grid points per axis by default (1-D; 2-D uses ``SURFACE_POINTS``).
LINE_POINTS = 101
SURFACE_POINTS = 41
DIRECTION_PATTERN = re.compile(r"^(eig:\d+|escape|random(:\d+)?|minimum:\d+|run:\d+)$")


def _unit(V):
    norm = float(jnp.linalg.norm(V))
    if not norm > 0:
        raise ValueError("the direction is zero at this point")
    return V / norm


def _without_symmetry(H, V):
    """``V`` with its components along the symmetry modes ``{H Omega}`` removed (``oblique``)."""
    Z, count = oblique.symmetry_basis(H)
    Z = Z[: int(count)]
    return V - jnp.tensordot(jnp.tensordot(Z, V, axes=((1, 2), (0, 1))), Z, axes=1)


def deflated_eigenpairs(H, labels, tau):
    """Eigenvalues (ascending) and unit ambient eigenvectors ``(N - s, n, d)`` of the Riemannian
    Hessian on the complement of the ``s`` symmetry modes (dense; float64)."""
    H = oblique.normalize_rows(jnp.asarray(H, jnp.float64))
    n, d = H.shape
    U = oblique.tangent_basis(H)
    M = np.asarray(hessian.hessian_matrix(H, jnp.asarray(labels), tau))
    Z, count = oblique.symmetry_basis(H)
    C = np.asarray(oblique.to_coordinates(U, Z[: int(count)])).reshape(int(count), -1)
    # Orthonormal basis of the complement of the symmetry modes' coordinates.
    _, _, Vt = np.linalg.svd(C, full_matrices=True) if C.size else (None, None, np.eye(M.shape[0]))
    W = Vt[int(count) :].T
    w, Y = np.linalg.eigh(W.T @ M @ W)
    vecs = (W @ Y).T.reshape(-1, n, d - 1)
    amb = np.asarray(oblique.to_ambient(U[None], vecs))
    return w, amb


def toward(H, P, labels) -> tuple[np.ndarray, float, bool]:
    """Unit tangent direction at ``H`` towards the closest copy of ``P``, the step that reaches it, and
    whether it is reached exactly (inverse retraction; module docstring). NumPy, float64."""
    H = np.asarray(H, np.float64)
    P, _ = paths.align(H, P, labels)
    cos = np.sum(H * P, axis=1)
    if np.all(cos > 0):
        V = P / cos[:, None] - H
        exact = True
    else:
        V = P - H - np.sum((P - H) * H, axis=1, keepdims=True) * H
        exact = False
    norm = float(np.linalg.norm(V))
    if not norm > 0:
        raise ValueError("the other point is this point up to rotation and relabelling")
    return V / norm, norm, exact


def direction(H, labels, tau, name: str, *, points: dict | None = None) -> dict:
    """The unit tangent direction ``name`` at ``H`` (module docstring) and what is known about it.

    ``points``: ``{name: P}`` for ``"minimum:M"`` / ``"run:J"`` (the other points). Returns
    ``{"name", "vector" (n, d), "eigenvalue" (or None), "distance" (the length of the step towards
    the other point), "reach" (that step when the slice passes through the point exactly, else None),
    "exact"}``. ``ValueError`` on an unknown or impossible direction.
    """
    if not DIRECTION_PATTERN.match(name):
        raise ValueError(f"bad direction {name!r} (eig:K, escape, random, random:SEED, minimum:M or run:J)")
    with precision.float64():
        H = oblique.normalize_rows(jnp.asarray(H, jnp.float64))
        n, d = H.shape
        N = n * (d - 1)
        out = {"name": name, "eigenvalue": None, "reach": None, "exact": None, "distance": None}
        if name.startswith("eig:") or name == "escape":
            k = int(name.split(":")[1]) if name.startswith("eig:") else 0
            if N <= hessian.DENSE_MAX_DIM:
                w, vecs = deflated_eigenpairs(H, labels, tau)
                if k >= w.size:
                    raise ValueError(
                        f"{name}: the Hessian has {w.size} eigenvalues without the symmetry modes"
                    )
                out["vector"], out["eigenvalue"] = vecs[k], float(w[k])
            elif k == 0:
                ext = hessian.lanczos_extremes(H, labels, tau, deflate_symmetry=True)
                out["vector"], out["eigenvalue"] = np.asarray(ext.vector_min), float(ext.lambda_min)
            else:
                raise ValueError(
                    f"{name}: eigenvectors beyond the smallest need n(d-1) <= {hessian.DENSE_MAX_DIM} "
                    f"(here {N}); use escape"
                )
        elif name.startswith("random"):
            seed = int(name.split(":")[1]) if ":" in name else 0
            V = oblique.project_tangent(H, jax.random.normal(jax.random.key(seed), H.shape, jnp.float64))
            out["vector"] = np.asarray(_unit(_without_symmetry(H, V)))
        else:
            if points is None or name not in points:
                raise ValueError(f"{name}: no such point given")
            V, length, exact = toward(np.asarray(H), points[name], labels)
            out["vector"], out["exact"], out["distance"] = V, exact, length
            out["reach"] = length if exact else None  # the step at which the slice passes through P
        out["vector"] = np.asarray(_unit(oblique.project_tangent(H, jnp.asarray(out["vector"]))))
    return out


@functools.partial(jax.jit, static_argnames="stream")
def _values(H, U, coeffs, labels, tau, stream):
    """``L(R_H(coeffs @ U))`` for every row of ``coeffs`` ``(m, k)``, ``U`` ``(k, n, d)``."""
    cost = streaming.loss_fn(labels, tau, stream=stream)

    def one(c):
        return cost(oblique.retract(H, jnp.tensordot(c, U, axes=1)))

    return jax.lax.map(one, coeffs, batch_size=64)


def slice_direction(H, labels, tau, name: str, *, points: dict | None = None) -> dict:
    """``direction(H, labels, tau, name)``: ``eig:K``, ``escape``, ``random[:SEED]``, ``minimum:M`` (with
    ``points``), as ``sclandscape slice --directions`` takes them."""
    return direction(H, labels, tau, name, points=points)


def loss_slice(H, labels, tau, vectors, grids) -> np.ndarray:
    """``L(R_H(sum_k a_k u_k))`` on the grid ``grids`` (one 1-d array per vector): shape of the grid.

    ``vectors``: ``(k, n, d)`` tangent directions (used as given). Float64.
    """
    problems.check_points(H, labels, tau)
    vectors = np.asarray(vectors, np.float64)
    if vectors.ndim != 3 or vectors.shape[1:] != np.shape(H) or len(grids) != vectors.shape[0]:
        raise ValueError("vectors must be (k, n, d) with one grid per vector")
    mesh = np.meshgrid(*[np.asarray(g, np.float64) for g in grids], indexing="ij")
    coeffs = np.stack([m.reshape(-1) for m in mesh], axis=1)
    with precision.float64():
        H = oblique.normalize_rows(jnp.asarray(H, jnp.float64))
        stream = streaming.use_streaming(H.shape[0])
        vals = _values(H, jnp.asarray(vectors), jnp.asarray(coeffs), jnp.asarray(labels), float(tau), stream)
    return np.asarray(vals).reshape(mesh[0].shape)


def grid(info: dict, extent: float | None, count: int) -> np.ndarray:
    """The default steps along a direction: ``extent`` either side, past the other point, or the
    quadratic model's unit change of the loss (at most pi), else [-1, 1]."""
    if extent is not None:
        return np.linspace(-extent, extent, count)
    if info.get("distance") is not None:  # towards the other point, a quarter of the way beyond each end
        return np.linspace(-0.25 * info["distance"], 1.25 * info["distance"], count)
    if info["eigenvalue"] is not None and info["eigenvalue"] != 0:
        # Where the quadratic model has changed the loss by one unit: sqrt(2 / |lambda|), at most pi.
        return np.linspace(-1, 1, count) * min(math.pi, math.sqrt(2 / abs(info["eigenvalue"])))
    return np.linspace(-1.0, 1.0, count)
