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
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape import hessian, oblique, paths, plots, precision, problems, results, streaming
from sclandscape import progress as progress_lib

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


def _grid(info: dict, extent: float | None, count: int) -> np.ndarray:
    if extent is not None:
        return np.linspace(-extent, extent, count)
    if info.get("distance") is not None:  # towards the other point, a quarter of the way beyond each end
        return np.linspace(-0.25 * info["distance"], 1.25 * info["distance"], count)
    if info["eigenvalue"] is not None and info["eigenvalue"] != 0:
        # Where the quadratic model has changed the loss by one unit: sqrt(2 / |lambda|), at most pi.
        return np.linspace(-1, 1, count) * min(math.pi, math.sqrt(2 / abs(info["eigenvalue"])))
    return np.linspace(-1.0, 1.0, count)


def scan_slice(
    out: str,
    *,
    run: int | None = None,
    minimum: int | None = None,
    directions=("escape", "random"),
    surface: bool = False,
    extent: float | None = None,
    points: int | None = None,
    formats=("png",),
    progress=None,
) -> dict:
    """Slices of the loss around a point of the finished scan ``out``; written and drawn.

    The point: run ``run``, or the lowest-loss run of distinct minimum
    ``minimum`` (default: minimum 0, the lowest). ``directions``: names as
    ``direction``; ``"minimum:M"`` / ``"run:J"`` point towards another distinct
    minimum or run. ``surface``: one 2-D slice along exactly two directions
    (the second made orthogonal to the first), else one 1-D slice per
    direction. ``extent``: the grid runs over ``[-extent, extent]`` (default:
    from each direction: through the other point, or where the quadratic
    model changes the loss by one). Returns the record written to
    ``out/slices/NAME.json`` (``name``, ``point``, ``loss``, ``directions``,
    ``grids``, ``files``); the values are in ``out/slices/NAME.npz``.
    """
    data = results.load_scan(out)
    problem, runs_rec = data["problem"], data["runs"]
    if problem.dim < 2:
        raise ValueError("slices need d >= 2 (OB(n, 1) has no tangent space)")
    directions = [d.strip() for d in directions]
    if not directions or (surface and len(directions) != 2):
        raise ValueError("give one or more directions (exactly two for a surface)")
    for name in directions:
        if not DIRECTION_PATTERN.match(name):
            raise ValueError(
                f"bad direction {name!r} (eig:K, escape, random, random:SEED, minimum:M or run:J)"
            )
    if extent is not None and not (isinstance(extent, int | float) and 0 < extent < math.inf):
        raise ValueError(f"extent must be a positive number, got {extent!r}")
    count = points or (SURFACE_POINTS if surface else LINE_POINTS)
    if isinstance(count, bool) or not isinstance(count, int) or count < 3:
        raise ValueError(f"points must be an integer >= 3, got {count!r}")
    formats = tuple(formats)
    if any(f not in plots.FORMATS for f in formats):
        raise ValueError(f"formats must be values from {plots.FORMATS}, got {formats!r}")
    index_of = {int(i): r for r, i in enumerate(np.asarray(runs_rec["run"]))}
    reps = {p: r for p, r, _ in results.minimum_rows(data) if p is not None}

    def row_of_minimum(m):
        if m not in reps:
            raise ValueError(
                f"minimum must be the point index of one of the scan's minima {sorted(reps)}, got {m}"
            )
        return reps[m]

    def row_of_run(i):
        if i not in index_of:
            raise ValueError(f"run must be an index of this scan (0..{len(index_of) - 1}), got {i}")
        return index_of[i]

    if run is not None and minimum is not None:
        raise ValueError("give a run or a minimum, not both")
    row = (
        row_of_run(int(run))
        if run is not None
        else row_of_minimum(min(reps, default=0) if minimum is None else int(minimum))
    )
    others = {}
    for name in directions:
        if name.startswith("minimum:"):
            others[name] = row_of_minimum(int(name.split(":")[1]))
        elif name.startswith("run:"):
            others[name] = row_of_run(int(name.split(":")[1]))
    report = progress_lib.adapt(progress) or (lambda *a: None)
    report(
        0,
        len(directions),
        "embeddings",
        "saved" if "H" in runs_rec else "stored points",
    )
    found, notes = results.embeddings(data, sorted({row, *others.values()}))
    if notes:
        raise ValueError(f"{out}: {notes[0]}")
    H = found[row]
    labels, tau = problem.labels, problem.tau
    infos = []
    for k, name in enumerate(directions):
        report(k, len(directions), "directions", name)
        infos.append(direction(H, labels, tau, name, points={n: found[r] for n, r in others.items()}))
    point = int(runs_rec["run"][row])
    base = float(runs_rec["loss"][row])
    if surface:
        u, v = infos[0]["vector"], infos[1]["vector"]
        v = v - np.sum(u * v) * u
        infos[1]["vector"] = v / np.linalg.norm(v)
        infos[1]["orthogonalised"] = True
        grids = [_grid(info, extent, count) for info in infos]
        report(0, 1, "values", f"{count} x {count} grid")
        values = loss_slice(H, labels, tau, np.stack([u, infos[1]["vector"]]), grids)
        slices = [values]
    else:
        grids, slices = [], []
        for k, info in enumerate(infos):
            report(k, len(infos), "values", f"{info['name']}: {count} points")
            grids.append(_grid(info, extent, count))
            slices.append(loss_slice(H, labels, tau, info["vector"][None], [grids[-1]]))
    stem = re.sub(
        r"[^A-Za-z0-9_.-]+",
        "-",
        f"slice_run{point}_{'surface' if surface else 'lines'}_{'_'.join(directions)}",
    )
    record = {
        "name": stem,
        "point": point,
        "kind": str(runs_rec["kind"][row]),
        "loss": base,
        "global_loss": float(data["summary"]["global_loss"]),
        "surface": bool(surface),
        "directions": [
            {k: info[k] for k in ("name", "eigenvalue", "reach", "exact", "distance")}
            | {"orthogonalised": bool(info.get("orthogonalised"))}
            for info in infos
        ],
        "grids": [g.tolist() for g in grids],
        "files": [f"slices/{stem}.npz", f"slices/{stem}.json"] + [f"figures/{stem}.{fmt}" for fmt in formats],
    }
    report(len(directions), len(directions), "writing", stem)
    arrays = {"point": np.asarray(H), "directions": np.stack([i["vector"] for i in infos])}
    if surface:
        arrays["values"] = slices[0]
    else:
        arrays.update({f"values_{k}": s for k, s in enumerate(slices)})
    for k, g in enumerate(grids):
        arrays[f"grid_{k}"] = g
    results.write_npz(os.path.join(out, "slices", f"{stem}.npz"), arrays)
    fig = slice_figure(record, slices, problem.to_json())
    for fmt in formats:
        results.write_atomic(os.path.join(out, "figures", f"{stem}.{fmt}"), plots.figure_bytes(fig, fmt))
    results.write_json(os.path.join(out, "slices", f"{stem}.json"), record)
    return record


def slice_figure(record: dict, slices, problem: dict, *, width: float = plots.COLUMN_WIDTH):
    """1-D slices (one curve per direction, with the quadratic model of eigen-directions) or a 2-D
    contour map, relative to the point's loss; ``L*`` where it is in range."""
    import matplotlib as mpl

    base = record["loss"]
    title = f"run {record['point']} ({record['kind']}), L = {base:.6g}"
    with mpl.rc_context(plots.STYLE):
        fig = plots.StyledFigure(figsize=(width, 0.8 * width), layout="constrained")
        ax = fig.subplots()
        if record["surface"]:
            a, b = (np.asarray(g) for g in record["grids"])
            z = np.asarray(slices[0]) - base
            cs = ax.contourf(a, b, z.T, levels=20, cmap="viridis")
            ax.contour(a, b, z.T, levels=[0.0], colors=plots.OKABE_ITO["black"], linewidths=0.6)
            ax.plot([0], [0], marker="+", color="white", markersize=8)
            fig.colorbar(cs, ax=ax, label="$L - L(H)$")
            d0, d1 = record["directions"]
            ax.set_xlabel(f"along {d0['name']}")
            ax.set_ylabel(f"along {d1['name']}" + (" (orthogonalised)" if d1["orthogonalised"] else ""))
        else:
            for k, (info, grid, values) in enumerate(
                zip(record["directions"], record["grids"], slices, strict=True)
            ):
                color = plots.SERIES_COLORS[k % len(plots.SERIES_COLORS)]
                t = np.asarray(grid)
                label = info["name"] + (
                    f" ($\\lambda$ = {info['eigenvalue']:.3g})" if info["eigenvalue"] is not None else ""
                )
                ax.plot(t, np.asarray(values) - base, color=color, label=label)
                if info["eigenvalue"] is not None:
                    ax.plot(t, 0.5 * info["eigenvalue"] * t**2, ":", color=color, linewidth=0.8)
                if info["reach"] is not None:
                    ax.axvline(info["reach"], color=color, linestyle="--", linewidth=0.6)
            ax.axhline(0.0, color=plots.OKABE_ITO["grey"], linewidth=0.5)
            ax.set_xlabel("step along the direction (Frobenius norm)")
            ax.set_ylabel("$L(R_H(t\\,u)) - L(H)$")
            ax.legend(loc="best", title="dotted: $\\frac{1}{2}\\lambda t^2$")
        counts = ",".join(str(c) for c in problem["counts"])
        ax.set_title(f"counts {counts}, d={problem['dim']}, $\\tau$={problem['tau']:g}: {title}")
    return fig
