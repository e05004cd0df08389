r"""Hessian trace (Hutchinson) and spectral density (stochastic Lanczos quadrature) at any size.

Both are matrix free: they need only Hessian-vector products
(``hessian.hvp_operator``: forward-over-reverse autodiff of the dense or the
streaming loss), so they work where the dense spectrum (``n(d-1) <= 3000``)
does not.

**Trace.** With ``U`` the orthonormal tangent basis (``oblique.tangent_basis``)
and ``c`` a Rademacher vector of ``n(d-1)`` signs, ``v = U c`` is a tangent
vector with ``E[c c^T] = I``, so ``E[<v, Hess v>] = tr(U^T Hess U)``: the trace
of the Riemannian Hessian on the tangent space (Hutchinson, 1989). The
estimate is the mean over ``m`` probes and its standard error the sample
standard deviation over ``sqrt(m)``; for Rademacher probes the variance of one
probe is ``2 (|A|_F^2 - sum_i A_ii^2)`` in the tangent coordinates (the
diagonal is counted exactly), never more than Gaussian probes' ``2 |A|_F^2``.

**Density.** ``hessian.spectral_density`` (stochastic Lanczos quadrature,
Ubaru, Chen & Saad 2017): each of ``P`` Rademacher tangent probes gives an
``m``-point Gauss quadrature of the spectral measure ``(1/N) sum_j
delta(lambda - lambda_j)``; ``hessian.density_on_grid`` broadens the nodes by
Gaussians of width ``sigma = (theta_max - theta_min) / DENSITY_RESOLUTION``,
on a grid reaching ``3 sigma`` beyond the extreme nodes. With ``m >= N`` the
quadrature is exact: its nodes are eigenvalues.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import precision, problems
from sclandscape.numerics import oblique
from sclandscape.theory import hessian

#: Kernel width of the density, as a fraction of the spectral range covered by the nodes.
DENSITY_RESOLUTION = 200
#: Points of the density grid.
GRID_POINTS = 512


class TraceEstimate(NamedTuple):
    """``trace`` (mean of the probes), ``stderr`` (their standard deviation / sqrt(m)), ``samples``."""

    trace: float
    stderr: float
    samples: np.ndarray


@functools.partial(jax.jit, static_argnames="num_probes")
def _hutchinson(H, labels, tau, key, num_probes):
    H = oblique.normalize_rows(H)
    n, d = H.shape
    apply = hessian.hvp_operator(H, labels, tau)
    U = oblique.tangent_basis(H)

    def probe(k):
        v = oblique.to_ambient(U, jax.random.rademacher(k, (n, d - 1), H.dtype))
        return jnp.sum(v * apply(v))

    return jax.lax.map(probe, jax.random.split(key, num_probes))


def hutchinson_trace(H, labels, tau, *, num_probes: int = 64, key=None) -> TraceEstimate:
    """Hutchinson estimate of ``tr Hess L(H)`` on the tangent space (module docstring), float64.

    ``H`` ``(n, d)``; ``num_probes`` Hessian-vector products. Needs ``num_probes >= 2``
    (a standard error needs two samples).
    """
    shape = problems.check_points(H, labels, tau)
    if len(shape) != 2:
        raise ValueError(f"H must be one (n, d) configuration, got shape {shape}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 2:
        raise ValueError(f"num_probes must be an integer >= 2, got {num_probes!r}")
    key = jax.random.key(0) if key is None else key
    with precision.float64():
        samples = np.asarray(
            _hutchinson(jnp.asarray(H, jnp.float64), jnp.asarray(labels), float(tau), key, num_probes)
        )
    return TraceEstimate(float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(samples.size)), samples)


def density(H, labels, tau, *, num_iter: int = 80, num_probes: int = 4, key=None) -> dict:
    """Spectral density of the Riemannian Hessian at ``H`` by stochastic Lanczos quadrature, float64.

    Returns ``nodes``, ``weights`` (``(num_probes, m)``, summing to 1), ``grid``,
    ``density`` (integrating to 1 over the grid, up to the tails beyond it)
    and ``sigma`` (module docstring).
    """
    shape = problems.check_points(H, labels, tau)
    if len(shape) != 2:
        raise ValueError(f"H must be one (n, d) configuration, got shape {shape}")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 1:
        raise ValueError(f"num_iter must be an integer >= 1, got {num_iter!r}")
    with precision.float64():
        nodes, weights = hessian.spectral_density(
            jnp.asarray(H, jnp.float64), labels, tau, num_iter=num_iter, num_probes=num_probes, key=key
        )
        nodes, weights = np.asarray(nodes), np.asarray(weights)
        lo, hi = float(nodes.min()), float(nodes.max())
        sigma = max(hi - lo, abs(hi), 1e-12) / DENSITY_RESOLUTION
        grid = np.linspace(lo - 3 * sigma, hi + 3 * sigma, GRID_POINTS)
        values = np.asarray(hessian.density_on_grid(nodes, weights, grid, sigma))
    return {"nodes": nodes, "weights": weights, "grid": grid, "density": values, "sigma": sigma}


#: The public names (``sc.hessian_trace``, ``sc.hessian_density``): one call each, as in PyHessian.
hessian_trace = hutchinson_trace
hessian_density = density
