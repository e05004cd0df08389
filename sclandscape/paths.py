r"""Minimum-energy paths between minima, their barriers and the saddles at their tops.

Two local minima ``A`` and ``B`` of the SC loss on ``OB(n, d)`` are joined by a
minimum-energy path (MEP): a curve along which the gradient is everywhere
parallel to the curve. Its highest point is a saddle of index 1 (for a
non-degenerate landscape), and ``L(saddle) - L(A)`` is the barrier a descent
from ``A`` must cross to reach ``B``.

**Symmetry.** ``L(P H Q) = L(H)`` for every ``Q in O(d)`` and every row
permutation ``P`` that maps the label partition onto itself (samples permuted
within a class, and classes of equal size relabelled). Paths are sought
modulo these: ``B`` is first replaced by its closest copy ``P B Q`` to ``A``
(``align``: for every size-preserving class relabelling, alternate the
orthogonal Procrustes rotation with a within-class assignment of samples,
and keep the closest), and after every step each image is rotated onto its
predecessor by orthogonal Procrustes (``Q = U V^T`` from ``H_{j+1}^T H_j = U
S V^T``), so that the chord lengths measure motion, not the rotation gauge.

**String method** (simplified; E, Ren & Vanden-Eijnden, J. Chem. Phys. 126,
164103, 2007). ``M + 1`` images, the endpoints fixed, start on the row-wise
great-circle interpolation from ``A`` to ``B``. One iteration moves every
interior image by a Riemannian gradient step ``H <- R_H(-dt grad L(H))``,
aligns the rotations, and redistributes the images at equal arc length
along the polygon (chordal distances, linear interpolation then row
normalisation). ``dt = 1 / lambda_max``, with ``lambda_max`` the largest
Riemannian Hessian eigenvalue over the initial images (Lanczos): half the
stability limit ``2 / lambda_max`` of gradient descent, so the step stays
stable where the curvature along the path grows by up to 2x. The string has
converged when the gradient component normal to the string, ``g_perp = g -
<g, t> t`` (``t`` the unit central-difference tangent), is at most
``perp_rtol`` times the largest gradient along the path at every interior
image.

**The saddle.** The highest image then climbs (climbing image:
``H <- R_H(-dt (g - 2 <g, t> t))``: uphill along the string, downhill across
it) until ``|g| <= climb_rtol`` times the force scale, and
``critical.find_critical`` (Levenberg-Marquardt on the gradient equation,
quadratic near a non-degenerate critical point) converges from there to
``|grad| <= CriticalSettings.gtol``. ``verdict.classify`` gives its kind and
index. As an independent check, descents (the scan's float64 L-BFGS and
polish) from both sides of its escape direction, started as
``saddles.descend_from_saddles`` starts them, must end at the two minima the
string joins (``connects``: their losses within ``connect_rtol``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape import (
    critical,
    hessian,
    metrics,
    oblique,
    plots,
    precision,
    problems,
    results,
    streaming,
    verdict,
)
from sclandscape import progress as progress_lib
from sclandscape.optim import Status

#: Frobenius distance (after ``align``) below which two points are one minimum. A run converged to
#: ``|grad| <= 1e-5`` (the scan's loosest tolerance) lies within ``|grad| / lambda`` of its minimum,
#: ``<= 1e-3`` where the smallest non-symmetry Hessian eigenvalue is ``>= 1e-2``; distinct minima
#: differ by rows turned through angles of order one.
SAME_POINT_ATOL = 1e-3


@dataclasses.dataclass(frozen=True)
class PathSettings:
    """Tolerances and limits of ``minimum_energy_path`` (recorded in ``paths.json``).

    Attributes:
      images: images on the string, the two endpoints included.
      max_iter: string iterations at most.
      perp_rtol: the string has converged when ``max |g_perp| <= perp_rtol * max |g|``
        over the interior images. A string of ``M`` segments is a discretised
        curve whose tangent estimate is off by ``O(1/M^2)`` of its curvature,
        so ``g_perp`` stalls at a few percent; 0.05 is above that floor at the
        default 17 images, and a loose string is enough because the saddle is
        refined to ``gtol`` by the climbing image and the critical-point finder.
      climb_iter: climbing-image iterations at most.
      climb_rtol: stop climbing at ``|g| <= climb_rtol * max |g|`` (the
        finder's Newton-like steps converge from there).
      check_every: iterations between convergence checks.
      critical: the critical-point finder refining the saddle.
      connect_rtol: ``connects`` when the two descents from the saddle end within
        ``connect_rtol * max(1, |L*|)`` of the endpoint losses (the scan's
        ``group_rtol``, with which its distinct minima were grouped).
    """

    images: int = 17
    max_iter: int = 4000
    perp_rtol: float = 0.05
    climb_iter: int = 2000
    climb_rtol: float = 1e-3
    check_every: int = 50
    critical: critical.CriticalSettings = critical.CriticalSettings()
    connect_rtol: float = 1e-5

    def __post_init__(self):
        problems.check_fields(
            self,
            positive=("perp_rtol", "climb_rtol", "connect_rtol"),
            integers={"images": 3, "max_iter": 1, "climb_iter": 0, "check_every": 1},
        )

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["critical"] = self.critical.to_json()
        return out


# --------------------------------------------------------------------------
# Alignment modulo O(d) and the label-preserving row permutations


def align(A, B, labels) -> tuple[np.ndarray, float]:
    """The copy ``P B Q`` of ``B`` closest to ``A`` found by ``metrics.align`` (rotations, reflections,
    within-class permutations, relabellings); the aligned ``B`` and its Frobenius distance to ``A``."""
    al = metrics.align(A, B, labels)
    return np.asarray(B, np.float64)[al.rows] @ al.Q, al.distance


def great_circle_images(A, B, count: int) -> np.ndarray:
    """``count`` images from ``A`` to ``B`` along each row's great circle at equal angle steps.

    Rows with ``<a_i, b_i> = -1`` (antipodal: no unique great circle) turn
    through a fixed perpendicular direction. NumPy, float64.
    """
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    cos = np.clip(np.sum(A * B, axis=1), -1.0, 1.0)
    theta = np.arccos(cos)
    W = B - cos[:, None] * A  # the direction of B in the tangent space of each row of A
    norm = np.linalg.norm(W, axis=1)
    flat = norm < 1e-12
    if flat.any():  # identical or antipodal rows: any unit perpendicular serves
        e = np.eye(A.shape[1])[np.argmin(np.abs(A[flat]), axis=1)]
        W[flat] = e - np.sum(e * A[flat], axis=1)[:, None] * A[flat]
        norm[flat] = np.linalg.norm(W[flat], axis=1)
    W = W / norm[:, None]
    s = np.linspace(0.0, 1.0, count)[:, None, None]
    images = np.cos(s * theta[None, :, None]) * A[None] + np.sin(s * theta[None, :, None]) * W[None]
    images = images / np.linalg.norm(images, axis=-1, keepdims=True)
    images[0], images[-1] = A, B
    return images


def _align_chain(images):
    """Rotate image ``j + 1`` onto image ``j`` for ``j = 0, 1, ...`` (image 0 stays)."""

    def body(prev, cur):
        U, _, Vt = jnp.linalg.svd(cur.T @ prev)
        new = cur @ (U @ Vt)
        return new, new

    _, rest = jax.lax.scan(body, images[0], images[1:])
    return jnp.concatenate([images[:1], rest])


def _reparametrise(images):
    """Images at equal arc length along the polygon through ``images`` (endpoints kept)."""
    m = images.shape[0] - 1
    seg = jnp.linalg.norm(images[1:] - images[:-1], axis=(1, 2))
    cum = jnp.concatenate([jnp.zeros((1,), images.dtype), jnp.cumsum(seg)])
    target = jnp.linspace(0.0, 1.0, m + 1, dtype=images.dtype) * cum[-1]
    idx = jnp.clip(jnp.searchsorted(cum, target, side="right") - 1, 0, m - 1)
    t = (target - cum[idx]) / jnp.where(seg[idx] > 0, seg[idx], 1.0)
    t = jnp.clip(t, 0.0, 1.0)[:, None, None]
    new = oblique.normalize_rows((1 - t) * images[idx] + t * images[idx + 1])
    return new.at[0].set(images[0]).at[-1].set(images[-1])


def _tangents(images):
    """Unit tangents of the string at the interior images (central differences, projected)."""
    diff = images[2:] - images[:-2]
    t = oblique.project_tangent(images[1:-1], diff)
    return t / jnp.maximum(jnp.linalg.norm(t, axis=(1, 2), keepdims=True), jnp.finfo(images.dtype).tiny)


def _value_and_rgrad(labels, tau):
    cost = streaming.loss_fn(labels, tau, stream=streaming.use_streaming(labels.shape[0]))

    def one(H):
        value, egrad = jax.value_and_grad(cost)(H)
        return value, oblique.riemannian_gradient(H, egrad)

    return jax.vmap(one)


@functools.partial(jax.jit, static_argnames="num_iter")
def _string_iterations(images, labels, tau, dt, num_iter):
    vg = _value_and_rgrad(labels, tau)

    def body(_, imgs):
        _, g = vg(imgs)
        moved = oblique.retract(imgs, -dt * g)
        moved = moved.at[0].set(imgs[0]).at[-1].set(imgs[-1])
        return _reparametrise(_align_chain(moved))

    return jax.lax.fori_loop(0, num_iter, body, images)


@jax.jit
def _string_state(images, labels, tau):
    """Losses of all images, ``|g|`` and ``|g_perp|`` at the interior ones."""
    values, g = _value_and_rgrad(labels, tau)(images)
    t = _tangents(images)
    gi = g[1:-1]
    perp = gi - jnp.sum(gi * t, axis=(1, 2), keepdims=True) * t
    return values, jnp.linalg.norm(gi, axis=(1, 2)), jnp.linalg.norm(perp, axis=(1, 2))


@functools.partial(jax.jit, static_argnames="num_iter")
def _climb(H, tangent, labels, tau, dt, gtol, num_iter):
    """Climbing image: ``H <- R_H(-dt (g - 2 <g, t> t))`` until ``|g| <= gtol`` or ``num_iter`` steps."""
    vg = _value_and_rgrad(labels, tau)

    def cond(s):
        return (s[2] > gtol) & (s[1] < num_iter)

    def body(s):
        H, it, _ = s
        _, g = vg(H[None])
        g = g[0]
        t = oblique.project_tangent(H, tangent)
        t = t / jnp.linalg.norm(t)
        step = g - 2 * jnp.sum(g * t) * t
        H = oblique.retract(H, -dt * step)
        _, g_new = vg(H[None])
        return H, it + 1, jnp.linalg.norm(g_new[0])

    _, g0 = vg(H[None])
    H, it, gnorm = jax.lax.while_loop(cond, body, (H, 0, jnp.linalg.norm(g0[0])))
    return H, it, gnorm


def _lambda_max(images, labels, tau) -> float:
    ext = hessian.lanczos_extremes(images, labels, tau, num_iter=60, deflate_symmetry=False)
    # Ritz values lie inside the spectrum; their residual bounds the gap to the true eigenvalue.
    return float(np.max(np.asarray(ext.lambda_max) + np.asarray(ext.residual_max)))


def aligned(points) -> np.ndarray:
    """``points`` with each rotated onto its predecessor (orthogonal Procrustes). NumPy, float64."""
    pts = [np.asarray(points[0], np.float64)]
    for P in points[1:]:
        P = np.asarray(P, np.float64)
        pts.append(P @ metrics.procrustes(P, pts[-1]))
    return np.stack(pts)


def resample(points, count: int) -> np.ndarray:
    """``count`` images at equal chordal arc length along the polygon through ``points`` (rotations
    aligned first, endpoints kept). NumPy, float64."""
    pts = aligned(points)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=(1, 2))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    target = np.linspace(0.0, cum[-1], count)
    idx = np.clip(np.searchsorted(cum, target, side="right") - 1, 0, len(pts) - 2)
    t = np.clip((target - cum[idx]) / np.where(seg[idx] > 0, seg[idx], 1.0), 0.0, 1.0)[:, None, None]
    out = (1 - t) * pts[idx] + t * pts[idx + 1]
    out = out / np.linalg.norm(out, axis=-1, keepdims=True)
    out[0], out[-1] = pts[0], pts[-1]
    return out


class _Landscape:
    """The compiled pieces of one problem's path search (float64) and its settings."""

    def __init__(self, labels, tau, global_loss, settings: PathSettings, report):
        from sclandscape import scanner

        self.labels = jnp.asarray(labels)
        self.labels_np = np.asarray(labels)
        self.tau = tau
        self.global_loss = float(global_loss)
        self.settings = settings
        self.report = report
        self.same = settings.connect_rtol * max(1.0, abs(self.global_loss))
        descent = scanner.ScanSettings(tol=1e-10, x64=True)
        self._descend = jax.jit(lambda h: scanner.solve_one(h, self.labels, tau, descent))

    def descend(self, H) -> tuple[np.ndarray, float, int]:
        """The minimum a float64 descent (the scan's L-BFGS and polish) reaches from ``H``."""
        X, _, status, *_ = self._descend(jnp.asarray(H, jnp.float64))
        return np.asarray(X), float(streaming.sc_loss_streaming(X, self.labels_np, self.tau)), int(status)

    def relax(self, images):
        """String iterations until ``g_perp`` is small (or ``max_iter``); ``(images, values, ...)``."""
        s = self.settings
        images = jnp.asarray(images)
        dt = 1.0 / _lambda_max(images, self.labels, self.tau)
        it, converged, dipped = 0, False, 0
        while True:
            values, gnorm, perp = (np.asarray(x) for x in _string_state(images, self.labels, self.tau))
            if not np.all(np.isfinite(values)):
                raise ValueError("the string left the finite range of the loss (non-finite values)")
            scale = float(np.max(gnorm))
            ratio = float(np.max(perp)) / scale if scale > 0 else 0.0
            self.report(it, s.max_iter, "string", f"|g_perp|/|g| = {ratio:.2g}")
            if ratio <= s.perp_rtol:
                converged = True
                break
            # A profile that has dipped below both neighbours of an image for DIP_CHECKS checks in a
            # row passes an intermediate minimum: stop and let ``chain`` cut or split there (the
            # kink at that minimum keeps g_perp from converging on one string anyway).
            dipped = dipped + 1 if _dips(values) else 0
            if it >= s.max_iter or dipped >= DIP_CHECKS:
                break
            steps = min(s.check_every, s.max_iter - it)
            images = _string_iterations(images, self.labels, self.tau, dt, steps)
            it += steps
        return {
            "images": np.asarray(images),
            "values": values.astype(np.float64),
            "converged": converged,
            "ratio": ratio,
            "iterations": it,
            "dt": dt,
            "scale": scale,
        }

    def chain(self, poly, depth: int = 0) -> list[dict]:
        """Relaxed strings between consecutive minima along the path through ``poly`` (module docstring)."""
        s = self.settings
        L_a, L_b = self.loss(poly[0]), self.loss(poly[-1])
        for _ in range(MAX_SPLITS):
            seg = self.relax(poly)
            images, values = seg["images"], seg["values"]
            dips = _dips(values)
            if not dips:
                return [seg]
            j = dips[0]
            self.report(0, 1, "intermediate minimum", f"descent from image {j}")
            M, L_m, status = self.descend(images[j])
            if status != Status.CONVERGED:
                return [seg]
            if abs(L_m - L_a) <= self.same:  # back in the start's basin: the loop before it is a detour
                poly = resample([M, *images[j + 1 :]], s.images)
            elif abs(L_m - L_b) <= self.same:  # already in the end's basin
                poly = resample([*images[:j], M], s.images)
            elif depth >= MAX_DEPTH:
                return [seg]
            else:
                first = self.chain(resample([*images[:j], M], s.images), depth + 1)
                second = self.chain(resample([M, *images[j + 1 :]], s.images), depth + 1)
                return first + second
        return [seg]

    def escape_starts(self, S) -> list[np.ndarray]:
        """``R_S(+-t v)``, ``v`` the escape direction, each side at the step of the grid ``2^-k/2``
        that lowers ``L`` most, plus a random tangent perturbation of norm ``ESCAPE_NOISE`` (as
        ``saddles.descend_from_saddles``: a descent cannot leave a symmetric subspace it starts in)."""
        v = np.asarray(hessian.escape_direction(S, self.labels_np, self.tau).direction)
        key = jax.random.key(0)
        starts = []
        for k, sign in enumerate((1.0, -1.0)):
            trials = [np.asarray(oblique.retract(S, sign * t * v)) for t in ESCAPE_STEPS]
            X = trials[int(np.argmin([self.loss(x) for x in trials]))]
            z = np.asarray(oblique.project_tangent(X, jax.random.normal(jax.random.fold_in(key, k), X.shape)))
            starts.append(np.asarray(oblique.retract(X, ESCAPE_NOISE * z / np.linalg.norm(z))))
        return starts

    def loss(self, H) -> float:
        return float(streaming.sc_loss_streaming(np.asarray(H), self.labels_np, self.tau))

    def saddle(self, seg: dict) -> dict:
        """The top of one relaxed string: climbing image, critical-point finder, classification, descents."""
        s = self.settings
        images, values = seg["images"], seg["values"]
        top = int(np.argmax(values[1:-1])) + 1
        self.report(0, 1, "climbing image", f"image {top} of {len(values) - 1}")
        tangent = _tangents(jnp.asarray(images))[top - 1]
        H_climb, climb_it, _ = _climb(
            jnp.asarray(images[top]),
            tangent,
            self.labels,
            self.tau,
            seg["dt"],
            s.climb_rtol * seg["scale"],
            s.climb_iter,
        )
        self.report(0, 1, "saddle refinement", "critical-point finder")
        crit = critical.find_critical(H_climb, self.labels_np, self.tau, s.critical)
        self.report(0, 1, "classification")
        c = verdict.classify(
            crit.x,
            self.labels_np,
            self.tau,
            global_loss=self.global_loss,
            settings=verdict.ClassifySettings(gtol=max(10 * s.critical.gtol, 1e-9), lift=False),
        )
        connects, descent = False, [math.nan, math.nan]
        if c.kind == "saddle":
            self.report(0, 1, "descents from the saddle", "both sides of its escape direction")
            ends = [self.descend(start) for start in self.escape_starts(np.asarray(crit.x))]
            descent = sorted(loss for _, loss, _ in ends)
            ok = all(status == Status.CONVERGED for *_, status in ends)
            targets = sorted([float(values[0]), float(values[-1])])
            connects = ok and all(abs(a - b) <= self.same for a, b in zip(descent, targets, strict=True))
        return {
            "H": np.asarray(crit.x),
            "loss": float(c.loss),
            "grad_norm": float(c.grad_norm),
            "status": Status(int(crit.status)).name.lower(),
            "kind": str(c.kind),
            "index": int(c.index),
            "lambda_min": float(c.lambda_min),
            "climb_iterations": int(climb_it),
            "top_image": top,
            "image_loss": float(values[top]),
            "connects": bool(connects),
            "descent_losses": descent,
        }


def _dips(values) -> list[int]:
    """Interior images lower than both neighbours."""
    return [j for j in range(1, len(values) - 1) if values[j] < values[j - 1] and values[j] < values[j + 1]]


#: Step sizes tried along a saddle's escape direction (as ``saddles.descend_from_saddles``).
ESCAPE_STEPS = 2.0 ** -np.arange(0, 16, 0.5)
#: Norm of the random tangent perturbation of each descent's start (``CatalogueSettings.escape_noise``).
ESCAPE_NOISE = 1e-6
#: Consecutive convergence checks showing a dip before a string stops to cut or split there.
DIP_CHECKS = 4
#: Rounds of "relax, find an intermediate minimum, cut or split" per string.
MAX_SPLITS = 6
#: Nesting of splits at new intermediate minima.
MAX_DEPTH = 3


def minimum_energy_path(
    A, B, labels, tau, *, global_loss=None, settings: PathSettings = PathSettings(), progress=None
) -> dict:
    """The minimum-energy path from minimum ``A`` to minimum ``B`` (each ``(n, d)``), and its saddles.

    Runs in float64. The string starts on the great circles from ``A`` to the
    closest copy of ``B`` (``align``) and is relaxed; where its energy profile
    dips (an image lower than both neighbours), a descent from there finds the
    minimum it passes: a copy of ``A`` (same loss within ``connect_rtol``)
    means the path left ``A``'s basin and came back, so the part before it is
    a detour and is cut; a copy of ``B`` cuts the part after it; a new minimum
    splits the path into two strings, each relaxed on its own. The path is then
    a chain of strings between consecutive minima, and the top of each is
    refined into a saddle (module docstring).

    Returns a dict: ``images`` ``(m, n, d)`` and ``losses`` ``(m,)`` of the
    whole chain, ``arclength`` (normalised chordal arc length), ``length``;
    ``segments`` (one per string: ``iterations``, ``converged``,
    ``perp_ratio``, and its ``saddle``: ``loss``, ``kind``, ``index``,
    ``grad_norm``, ``status``, ``connects``, ``descent_losses``, ...);
    ``intermediate_minima`` (their losses); the highest saddle's fields at
    the top level (``saddle``, ``saddle_loss``, ``saddle_index``,
    ``saddle_kind``, ``saddle_grad_norm``, ``saddle_status``,
    ``saddle_lambda_min``, ``saddle_position``, ``connects``,
    ``descent_losses``); ``barrier = L(saddle) - L(A)``, ``barrier_reverse =
    L(saddle) - L(B)``, ``path_max_loss``, ``converged`` (every string),
    ``distance`` (of the aligned endpoints). ``progress(done, total, phase,
    detail)`` hears the phases.
    """
    problems.check_points(A, labels, tau)
    problems.check_points(B, labels, tau)
    if np.shape(A) != np.shape(B) or np.ndim(A) != 2:
        raise ValueError(f"A and B must be two (n, d) points, got shapes {np.shape(A)} and {np.shape(B)}")
    if not isinstance(settings, PathSettings):
        raise ValueError(f"settings must be a PathSettings, got {type(settings).__name__}")
    report = progress_lib.adapt(progress) or (lambda *a: None)
    tau = problems.check_tau(tau)
    labels_np = np.asarray(labels)
    with precision.float64():
        if global_loss is None:
            from sclandscape import optimum

            global_loss = optimum.global_optimum(problems.counts_from_labels(labels_np), tau).loss
        land = _Landscape(labels_np, tau, global_loss, settings, report)
        A = np.asarray(oblique.normalize_rows(jnp.asarray(A, jnp.float64)))
        B = np.asarray(oblique.normalize_rows(jnp.asarray(B, jnp.float64)))
        report(0, 1, "alignment", "rotation, relabelling, within-class assignment")
        B, distance = align(A, B, labels_np)
        if distance <= SAME_POINT_ATOL:
            raise ValueError(
                f"the two points are one minimum up to rotation and relabelling (aligned distance "
                f"{distance:.1e}): there is no path to find"
            )
        segments = land.chain(great_circle_images(A, B, settings.images))
        tops = [land.saddle(seg) for seg in segments]
    parts, values = [], []
    for k, seg in enumerate(segments):
        keep = slice(0 if k == 0 else 1, None)  # consecutive strings share their minimum
        parts.append(seg["images"][keep])
        values.append(seg["values"][keep])
    images = aligned(np.concatenate(parts))
    values = np.concatenate(values)
    seg_len = np.linalg.norm(np.diff(images, axis=0), axis=(1, 2))
    arc = np.concatenate([[0.0], np.cumsum(seg_len)])
    best = int(np.argmax([t["loss"] for t in tops]))
    top = tops[best]
    offset = sum(len(seg["images"]) - 1 for seg in segments[:best])
    position = float(arc[offset + top["top_image"]] / arc[-1]) if arc[-1] > 0 else 0.0
    return {
        "images": images,
        "losses": values,
        "arclength": arc / arc[-1] if arc[-1] > 0 else arc,
        "length": float(arc[-1]),
        "segments": [
            {
                "iterations": seg["iterations"],
                "converged": seg["converged"],
                "perp_ratio": seg["ratio"],
                "dt": seg["dt"],
                "from_loss": float(seg["values"][0]),
                "to_loss": float(seg["values"][-1]),
                "saddle": {k: v for k, v in t.items() if k != "H"},
            }
            for seg, t in zip(segments, tops, strict=True)
        ],
        "intermediate_minima": [float(seg["values"][-1]) for seg in segments[:-1]],
        "converged": all(seg["converged"] for seg in segments),
        "distance": distance,
        "saddle": top["H"],
        "saddle_loss": top["loss"],
        "saddle_grad_norm": top["grad_norm"],
        "saddle_status": top["status"],
        "saddle_kind": top["kind"],
        "saddle_index": top["index"],
        "saddle_lambda_min": top["lambda_min"],
        "saddle_position": position,
        "connects": top["connects"],
        "descent_losses": top["descent_losses"],
        "barrier": top["loss"] - float(values[0]),
        "barrier_reverse": top["loss"] - float(values[-1]),
        "path_max_loss": float(np.max(values)),
        "global_loss": float(global_loss),
    }


# --------------------------------------------------------------------------
# A finished scan


def scan_paths(
    out: str,
    runs=None,
    *,
    settings: PathSettings = PathSettings(),
    max_pairs: int = 10,
    formats=("png",),
    progress=None,
) -> dict:
    """Minimum-energy paths between the distinct minima of the finished scan ``out``.

    ``runs``: two run indices (the path between them), or ``None``: every pair
    of the summary's distinct minima (lowest loss first, at most ``max_pairs``),
    each represented by its lowest-loss run. Embeddings are the runs' own
    (``--save-embeddings``) or their distinct points' (stored at scan time).

    Writes ``out/paths.json`` (``problem``, ``global_loss`` and ``paths``, which
    keeps the pairs computed by earlier calls and replaces those computed again:
    one entry per pair with ``from`` / ``to`` (run indices), ``from_minimum`` /
    ``to_minimum`` (the minima's point indices, as in ``points.npz`` and the
    report, or ``None``), ``from_loss``, ``to_loss``, ``barrier``, ``barrier_reverse``, ``saddle_loss``,
    ``saddle_index``, ``saddle_kind``, ``connects``, ..., ``segments``,
    ``settings`` and ``profile``: ``s``, ``loss`` along the string),
    ``out/paths/path_I_J.npz`` (images, losses, saddle) and
    ``out/figures/path_I_J.{fmt}``; all atomically. Returns ``paths.json``'s
    content with only this call's paths. ``ValueError`` (one line) on bad input.
    """
    data = results.load_scan(out)
    problem, runs_rec = data["problem"], data["runs"]
    if problem.dim < 2:
        raise ValueError("paths need d >= 2 (OB(n, 1) is a finite set)")
    if problem.nonneg:
        raise ValueError("paths of the non-negative (UFM+) problem are not supported")
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise ValueError(f"max_pairs must be an integer >= 1, got {max_pairs!r}")
    formats = tuple(formats)
    if any(f not in plots.FORMATS for f in formats):
        raise ValueError(f"formats must be values from {plots.FORMATS}, got {formats!r}")
    index_of = {int(i): r for r, i in enumerate(np.asarray(runs_rec["run"]))}
    kind = np.asarray(runs_rec["kind"]).astype(str)
    minimum_of = {r: m for m, r, _ in results.minimum_rows(data)}
    if runs is not None:
        runs = [int(i) for i in runs]
        if len(runs) != 2 or runs[0] == runs[1]:
            raise ValueError(f"give two different run indices, got {runs}")
        bad = [i for i in runs if i not in index_of]
        if bad:
            raise ValueError(f"runs must be indices of this scan (0..{len(index_of) - 1}), got {bad}")
        for i in runs:
            if kind[index_of[i]] not in results.MINIMA:
                raise ValueError(f"run {i} is {kind[index_of[i]]}, not a local minimum")
        pairs = [(index_of[runs[0]], index_of[runs[1]])]
    else:
        reps = [r for _, r, _ in results.minimum_rows(data)]
        if len(reps) < 2:
            raise ValueError(
                f"{out}: the scan found {len(reps)} distinct minimum(s); a path needs two "
                "(give --runs I,J for two runs of your choice)"
            )
        pairs = [(reps[i], reps[j]) for i in range(len(reps)) for j in range(i + 1, len(reps))][:max_pairs]
    report = progress_lib.adapt(progress) or (lambda *a: None)
    rows = sorted({r for pair in pairs for r in pair})
    report(0, len(pairs), "embeddings", "saved" if "H" in runs_rec else "stored points")
    found, notes = results.embeddings(data, rows)
    if notes:
        raise ValueError(f"{out}: {notes[0]}")
    global_loss = float(data["summary"]["global_loss"])
    entries, figures = [], []
    for p, (ra, rb) in enumerate(pairs):

        def inner(done, total, phase=None, detail=None, p=p):
            report(p, len(pairs), f"path {p + 1}/{len(pairs)}: {phase}", detail)

        res = minimum_energy_path(
            found[ra],
            found[rb],
            problem.labels,
            problem.tau,
            global_loss=global_loss,
            settings=settings,
            progress=inner,
        )
        i, j = int(runs_rec["run"][ra]), int(runs_rec["run"][rb])
        name = f"path_{i}_{j}"
        entry = {
            "from": i,
            "to": j,
            "from_minimum": minimum_of.get(ra),
            "to_minimum": minimum_of.get(rb),
            "from_loss": float(res["losses"][0]),
            "to_loss": float(res["losses"][-1]),
            **{
                k: res[k]
                for k in (
                    "barrier",
                    "barrier_reverse",
                    "saddle_loss",
                    "saddle_index",
                    "saddle_kind",
                    "saddle_grad_norm",
                    "saddle_status",
                    "saddle_lambda_min",
                    "saddle_position",
                    "path_max_loss",
                    "connects",
                    "descent_losses",
                    "converged",
                    "distance",
                    "length",
                    "segments",
                    "intermediate_minima",
                )
            },
            "arrays": f"paths/{name}.npz",
            "figures": [f"figures/{name}.{fmt}" for fmt in formats],
            "profile": {"s": res["arclength"].tolist(), "loss": res["losses"].tolist()},
        }
        entries.append(entry)
        report(p + 1, len(pairs), "writing", name)
        results.write_npz(
            os.path.join(out, entry["arrays"]),
            {
                "images": res["images"],
                "losses": res["losses"],
                "arclength": res["arclength"],
                "saddle": res["saddle"],
            },
        )
        fig = path_figure(entry, global_loss, problem.to_json())
        for fmt, rel in zip(formats, entry["figures"], strict=True):
            results.write_atomic(os.path.join(out, rel), plots.figure_bytes(fig, fmt))
            figures.append(rel)
    # Paths computed earlier (other pairs, other settings) stay; a pair computed again is replaced.
    path = os.path.join(out, "paths.json")
    earlier = results.read_json(path).get("paths", []) if os.path.exists(path) else []
    done = {(e["from"], e["to"]) for e in entries}
    kept = [e for e in earlier if (e.get("from"), e.get("to")) not in done]
    state = {
        "problem": problem.to_json(),
        "global_loss": global_loss,
        "paths": kept + [{**e, "settings": settings.to_json()} for e in entries],
    }
    results.write_json(path, state)
    return {**state, "paths": state["paths"][len(kept) :]}


def path_figure(entry: dict, global_loss: float, problem: dict, *, width: float = plots.COLUMN_WIDTH):
    """Loss along the path (normalised arc length), the endpoints, the refined saddle and ``L*``."""
    import matplotlib as mpl

    s = np.asarray(entry["profile"]["s"])
    loss = np.asarray(entry["profile"]["loss"])
    with mpl.rc_context(plots.STYLE):
        fig = plots.StyledFigure(figsize=(width, 0.7 * width), layout="constrained")
        ax = fig.subplots()
        ax.plot(s, loss, marker="o", markersize=2.5, color=plots.OKABE_ITO["blue"], label="string images")
        for x, y, name in ((0.0, loss[0], f"run {entry['from']}"), (1.0, loss[-1], f"run {entry['to']}")):
            style = plots.KIND_STYLE["spurious_min" if y - global_loss > 0 else "global_min"]
            ax.scatter([x], [y], color=style["color"], marker=style["marker"], s=30, zorder=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(0, -11), ha="center")
        style = plots.KIND_STYLE.get(entry["saddle_kind"], plots.KIND_STYLE["saddle"])
        ax.scatter(
            [entry["saddle_position"]],
            [entry["saddle_loss"]],
            color=style["color"],
            marker=style["marker"],
            s=30,
            zorder=4,
            label=f"{style['label']} (index {entry['saddle_index']}), refined",
        )
        ax.axhline(global_loss, color=plots.OKABE_ITO["black"], linestyle="--", linewidth=0.8, label="$L^*$")
        ax.set_xlabel("position along the path (normalised arc length)")
        ax.set_ylabel("loss $L(H)$")
        counts = ",".join(str(c) for c in problem["counts"])
        ax.set_title(
            f"counts {counts}, d={problem['dim']}, $\\tau$={problem['tau']:g}: "
            f"barrier {entry['barrier']:.3g} / {entry['barrier_reverse']:.3g}"
        )
        # below the axes: inside them a legend covers the profile, wherever its bump lies
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3)
    return fig
