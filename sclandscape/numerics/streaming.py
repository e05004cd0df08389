r"""The SC loss, its gradient, Hessian-vector products and the certificate without the ``n x n`` matrix.

Same loss as ``sclandscape.numerics.loss.sc_loss`` (docs/maths.md §1; diagonal excluded,
positives averaged outside the log, ``"sum"`` or ``"mean"`` reduction, an
anchor with no positive contributes 0), for one ``H`` ``(n, d)``, in
``O(n d + block^2)`` memory. With ``X = H / sqrt(tau)`` (so that
``x_i . x_l = G_il / tau``), weights ``c_i`` (1, or ``1/n`` for the mean;
0 for an anchor without positive) and ``s_c = sum_{y_j = c} x_j``::

    L = sum_i c_i [ lse_i - (x_i . s_{y_i} - |x_i|^2) / (n_{y_i} - 1) ],
    lse_i = LSE_{l != i} (x_i . x_l).

The positive part is exact off the sphere too (``|x_i|^2`` is subtracted,
not assumed) and costs ``O(n d)``; plain autodiff handles it. Only
``Phi(X) = sum_i c_i lse_i`` needs the blocks:

- **value**: for each row block ``I``, a scan over column blocks ``J`` with an
  online (flash-attention style) log-sum-exp: running max ``m``, running sum
  ``s <- s e^{m - m'} + sum_J e^{x - m'}`` (diagonal and padding masked).
- **gradient** (``W = diag(c) P``, ``P`` the masked row softmax)::

      dPhi/dx_i = sum_l (W_il + W_li) x_l,

  computed block by block from the saved ``lse``, recomputing the softmax
  blocks: ``P_IJ = e^{X_IJ - lse_I}`` and ``(P_JI)^T = e^{X_IJ - lse_J}``
  (the logits are symmetric), so each row block only writes its own rows.
- **Hessian-vector product** (the JVP of the gradient along ``V``): the
  logit ``x_i . x_l`` moves by ``dx_il = x_i . v_l + v_i . x_l``, so
  ``dlse_i = sum_l P_il dx_il`` and ``dP_il = P_il (dx_il - dlse_i)`` (the
  softmax derivative), and the product rule on ``(W + W^T) X`` gives::

      d(dPhi/dx_i)[V] = sum_l (W_il + W_li) v_l
                        + sum_l (c_i P_il (dx_il - dlse_i) + c_l P_li (dx_il - dlse_l)) x_l

  (``dx`` is symmetric). In ``G`` terms this is ``nabla^2 L[V] = 2 (F V + dF H)``
  with ``dF`` the symmetrised ``dA = diag(c) dP / tau``.

  ``dlse`` comes from one sweep (the online log-sum-exp carried with its
  tangent ``t <- t e^{m - m'} + sum_J e^{x - m'} dx``, ``dlse = t / s``), then
  one sweep of the product above. ``Phi`` is a ``jax.custom_jvp`` whose
  tangent is ``<grad Phi, dX>`` (so reverse mode only transposes a dot
  product), ``lse`` and the gradient are ``custom_jvp`` s with the rules
  above: ``jax.grad``, ``jax.jvp``, ``jax.jvp(jax.grad(.))`` (the
  Riemannian HVP of ``oblique.riemannian_hvp``), ``jax.vmap`` and ``jit``
  all compose, and none of them ever forms an ``n x n`` array (the scan
  bodies are ``jax.checkpoint``-ed, so ``jax.linearize`` recomputes tiles
  instead of storing them).

**Certificate** (docs/maths.md §2). With ``F = (A + A^T)/2``, ``A = diag(has_pos)(P - Y+)/tau``
(``Y+`` is symmetric: ``(Y+ v)_i = (t_{y_i} - v_i)/(n_{y_i} - 1)`` with ``t``
the class sums of ``v``) and unit rows::

    S v = ((W + W^T) v - 2 Y+ v) / (2 tau) - delta * v,    delta_i = (F G)_ii = h_i . (F H)_i,

one sweep per product; ``F H`` is half the gradient. ``lambda_min(S)`` is the
smallest Ritz value of ``num_iter`` Lanczos steps (``linalg.lanczos``, full
reorthogonalisation): a Rayleigh quotient, so ``>= lambda_min(S)``; a value
``< 0`` proves ``S`` is not PSD, and ``S >= 0`` is a converged-Ritz estimate,
not a proof (the residual is returned by ``certify.dual_slack_extremes``).
``<S, G> = <F, G> - sum_i (F G)_ii G_ii = sum_i delta_i (1 - |h_i|^2)``
vanishes on the sphere up to rounding.

**Pallas.** ``impl="pallas"`` runs the value and gradient sweeps as fused
``jax.experimental.pallas`` kernels (grid over row blocks, a ``fori_loop``
over column blocks in the kernel); ``impl="interpret"`` runs the same kernels
in Pallas' interpreter (CPU tests). ``impl="auto"`` (default) picks Pallas
on a GPU in float32 when a small probe compiles and matches the pure-JAX
path, and pure JAX otherwise. Derivatives beyond the gradient (the JVP
rules) always run in pure JAX.

All functions act on one configuration; batch with ``jax.vmap``. Dtype
follows ``H``; nothing here enables x64.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sclandscape.core import problems
from sclandscape.core.settings import MODES
from sclandscape.numerics import loss, oblique

#: Default block size (rows and columns of one logits tile).
DEFAULT_BLOCK = 512
#: Entries of one ``n x n`` array above which ``use_streaming`` picks the streaming path.
DENSE_MAX_ENTRIES = 4096 * 4096
IMPLS = ("auto", "jax", "pallas", "interpret")
_PALLAS_MAX_BLOCK = 128


# --------------------------------------------------------------------------
# Blocks


def _num_blocks(n: int, block: int) -> int:
    return -(-n // block)


def _effective_block(n: int, block: int) -> int:
    """``block``, but no larger than ``n`` rounded up to a multiple of 8 (small ``n`` pads little)."""
    return max(1, min(int(block), -(-n // 8) * 8))


def _pad_rows(X, n_pad: int):
    return jnp.pad(X, ((0, n_pad - X.shape[0]), (0, 0))) if n_pad > X.shape[0] else X


def _pad_vec(c, n_pad: int):
    return jnp.pad(c, (0, n_pad - c.shape[0])) if n_pad > c.shape[0] else c


def _tile_mask(ib, jb, n: int, block: int):
    """``(block, block)`` mask of tile ``(ib, jb)``: off the diagonal, both indices ``< n`` (not padding)."""
    r = ib * block + jnp.arange(block)
    c = jb * block + jnp.arange(block)
    return (r[:, None] != c[None, :]) & (r[:, None] < n) & (c[None, :] < n)


def _tile(A, jb, block: int):
    """Rows ``jb*block : (jb+1)*block`` of ``A`` (``jb`` traced)."""
    return jax.lax.dynamic_slice_in_dim(A, jb * block, block, axis=0)


def _remat(body):
    """A scan body that ``linearize`` recomputes instead of storing (stacked tile residuals are ``n^2``)."""
    return jax.checkpoint(body, prevent_cse=False)


def _map_rows(fn, n_pad: int, block: int):
    """``concat_ib fn(ib)`` over the row blocks, one at a time (memory ``O(block^2)``)."""
    out = jax.lax.map(fn, jnp.arange(n_pad // block))
    return jax.tree.map(lambda a: a.reshape((n_pad,) + a.shape[2:]), out)


# --------------------------------------------------------------------------
# Pure-JAX sweeps (X is (n_pad, d) with n_pad a multiple of block; rows >= n are padding)


def _lse_sweep(X, n: int, block: int, dX=None):
    """``lse_i = LSE_{l != i, l < n} x_i . x_l`` (0 on padding rows); with ``dX`` also its tangent."""
    n_pad = X.shape[0]
    nb = n_pad // block
    tangent = dX is not None

    def row(ib):
        xi = _tile(X, ib, block)
        dxi = _tile(dX, ib, block) if tangent else None

        def col(carry, jb):
            m, s, t = carry
            xj = _tile(X, jb, block)
            logits = xi @ xj.T
            mask = _tile_mask(ib, jb, n, block)
            masked = jnp.where(mask, logits, -jnp.inf)
            # The running max is only a shift (lse does not depend on it).
            m_new = jax.lax.stop_gradient(jnp.maximum(m, jnp.max(masked, axis=1)))
            shift = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
            scale = jnp.exp(m - shift)
            e = jnp.exp(masked - shift[:, None])
            s = s * scale + jnp.sum(e, axis=1)
            if tangent:
                dlogits = dxi @ xj.T + xi @ _tile(dX, jb, block).T
                t = t * scale + jnp.sum(jnp.where(mask, e * dlogits, 0.0), axis=1)
            return (m_new, s, t), None

        zero = jnp.zeros((block,), X.dtype)
        init = (jnp.full((block,), -jnp.inf, X.dtype), zero, zero)
        (m, s, t), _ = jax.lax.scan(_remat(col), init, jnp.arange(nb))
        valid = ib * block + jnp.arange(block) < n
        shift = jnp.where(jnp.isfinite(m), m, 0.0)
        s_safe = jnp.where(valid, s, 1.0)
        lse = jnp.where(valid, shift + jnp.log(s_safe), 0.0)
        return (lse, jnp.where(valid, t / s_safe, 0.0)) if tangent else lse

    return _map_rows(row, n_pad, block)


def _softmax_tiles(lse, ib, jb, xi, xj, n: int, block: int):
    """``P_IJ`` and ``(P_JI)^T`` (the row softmaxes of rows ``ib`` and of rows ``jb``) and the logits."""
    logits = xi @ xj.T
    mask = _tile_mask(ib, jb, n, block)
    masked = jnp.where(mask, logits, -jnp.inf)
    p_row = jnp.exp(masked - _tile(lse, ib, block)[:, None])
    p_col = jnp.exp(masked - _tile(lse, jb, block)[None, :])
    return p_row, p_col, mask


def _sym_sweep(X, lse, c, R, n: int, block: int):
    """``(W + W^T) R`` with ``W = diag(c) P`` for any ``R`` ``(n_pad, r)``: one sweep."""
    n_pad = X.shape[0]
    nb = n_pad // block

    def row(ib):
        xi = _tile(X, ib, block)
        ci = _tile(c, ib, block)

        def col(acc, jb):
            xj = _tile(X, jb, block)
            p_row, p_col, _ = _softmax_tiles(lse, ib, jb, xi, xj, n, block)
            K = ci[:, None] * p_row + _tile(c, jb, block)[None, :] * p_col
            return acc + K @ _tile(R, jb, block), None

        acc, _ = jax.lax.scan(_remat(col), jnp.zeros((block, R.shape[1]), R.dtype), jnp.arange(nb))
        return acc

    return _map_rows(row, n_pad, block)


def _grad_jvp_sweep(X, lse, c, dX, dlse, dc, n: int, block: int):
    """The gradient ``(W + W^T) X`` and its JVP (module docstring) in one sweep."""
    n_pad = X.shape[0]
    nb = n_pad // block

    def row(ib):
        xi, dxi = _tile(X, ib, block), _tile(dX, ib, block)
        ci, dci, dlse_i = _tile(c, ib, block), _tile(dc, ib, block), _tile(dlse, ib, block)

        def col(carry, jb):
            g, dg = carry
            xj, dxj = _tile(X, jb, block), _tile(dX, jb, block)
            cj, dcj, dlse_j = _tile(c, jb, block), _tile(dc, jb, block), _tile(dlse, jb, block)
            p_row, p_col, mask = _softmax_tiles(lse, ib, jb, xi, xj, n, block)
            K = ci[:, None] * p_row + cj[None, :] * p_col
            dlogits = jnp.where(mask, dxi @ xj.T + xi @ dxj.T, 0.0)
            # d(c_i P_il) + d(c_l P_li) with dP_il = P_il (dx_il - dlse_i).
            D = K * dlogits + p_row * (dci - ci * dlse_i)[:, None] + p_col * (dcj - cj * dlse_j)[None, :]
            return (g + K @ xj, dg + K @ dxj + D @ xj), None

        zero = jnp.zeros((block, X.shape[1]), X.dtype)
        (g, dg), _ = jax.lax.scan(_remat(col), (zero, zero), jnp.arange(nb))
        return g, dg

    return _map_rows(row, n_pad, block)


# --------------------------------------------------------------------------
# Pallas kernels (value and gradient sweeps)


def _pallas_block(block: int) -> int:
    """Largest power of two ``<= min(block, 128)`` and ``>= 16`` (Triton tiles are powers of two)."""
    b = 16
    while b * 2 <= min(block, _PALLAS_MAX_BLOCK):
        b *= 2
    return b


def _pallas_pad_dim(X):
    """Zero columns up to a power of two ``>= 16`` (dot products unchanged)."""
    d = X.shape[1]
    d_pad = max(16, 1 << (d - 1).bit_length())
    return jnp.pad(X, ((0, 0), (0, d_pad - d))) if d_pad > d else X


def _pallas_lse(X, n: int, block: int, interpret: bool):
    from jax.experimental import pallas as pl

    n_pad, d = X.shape
    nb = n_pad // block

    def kernel(xi_ref, x_ref, out_ref):
        ib = pl.program_id(0)
        xi = xi_ref[...]

        def body(jb, carry):
            m, s = carry
            xj = x_ref[pl.ds(jb * block, block), :]
            logits = jax.lax.dot_general(xi, xj, (((1,), (1,)), ((), ())))
            masked = jnp.where(_tile_mask(ib, jb, n, block), logits, -jnp.inf)
            m_new = jnp.maximum(m, jnp.max(masked, axis=1))
            shift = jnp.where(m_new > -jnp.inf, m_new, 0.0)
            s = s * jnp.exp(m - shift) + jnp.sum(jnp.exp(masked - shift[:, None]), axis=1)
            return m_new, s

        init = (jnp.full((block,), -jnp.inf, xi.dtype), jnp.zeros((block,), xi.dtype))
        m, s = jax.lax.fori_loop(0, nb, body, init)
        valid = ib * block + jnp.arange(block) < n
        shift = jnp.where(m > -jnp.inf, m, 0.0)
        out_ref[...] = jnp.where(valid, shift + jnp.log(jnp.where(valid, s, 1.0)), 0.0)

    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((n_pad,), X.dtype),
        grid=(nb,),
        in_specs=[pl.BlockSpec((block, d), lambda i: (i, 0)), pl.BlockSpec((n_pad, d), lambda i: (0, 0))],
        out_specs=pl.BlockSpec((block,), lambda i: (i,)),
        interpret=interpret,
        name="sc_lse_forward",
    )(X, X)


def _pallas_grad(X, lse, c, n: int, block: int, interpret: bool):
    from jax.experimental import pallas as pl

    n_pad, d = X.shape
    nb = n_pad // block

    def kernel(xi_ref, li_ref, ci_ref, x_ref, l_ref, c_ref, out_ref):
        ib = pl.program_id(0)
        xi, li, ci = xi_ref[...], li_ref[...], ci_ref[...]

        def body(jb, acc):
            xj = x_ref[pl.ds(jb * block, block), :]
            lj = l_ref[pl.ds(jb * block, block)]
            cj = c_ref[pl.ds(jb * block, block)]
            logits = jax.lax.dot_general(xi, xj, (((1,), (1,)), ((), ())))
            masked = jnp.where(_tile_mask(ib, jb, n, block), logits, -jnp.inf)
            K = ci[:, None] * jnp.exp(masked - li[:, None]) + cj[None, :] * jnp.exp(masked - lj[None, :])
            return acc + jax.lax.dot_general(K, xj, (((1,), (0,)), ((), ())))

        out_ref[...] = jax.lax.fori_loop(0, nb, body, jnp.zeros((block, d), xi.dtype))

    row = pl.BlockSpec((block, d), lambda i: (i, 0))
    vec = pl.BlockSpec((block,), lambda i: (i,))
    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((n_pad, d), X.dtype),
        grid=(nb,),
        in_specs=[
            row,
            vec,
            vec,
            pl.BlockSpec((n_pad, d), lambda i: (0, 0)),
            pl.BlockSpec((n_pad,), lambda i: (0,)),
            pl.BlockSpec((n_pad,), lambda i: (0,)),
        ],
        out_specs=row,
        interpret=interpret,
        name="sc_lse_backward",
    )(X, lse, c, X, lse, c)


def _pallas_call_padded(fn, X, *vecs, n: int, block: int, interpret: bool):
    """Run a Pallas sweep on ``X`` re-padded to its own block (power of two) and width; slice back."""
    b = _pallas_block(block)
    n_pad = _num_blocks(n, b) * b
    Xp = _pallas_pad_dim(_pad_rows(X[:n], n_pad))
    out = fn(Xp, *(_pad_vec(v[:n], n_pad) for v in vecs), n, b, interpret)
    out = out[:n] if out.ndim == 1 else out[:n, : X.shape[1]]
    pad = [(0, X.shape[0] - n)] + [(0, 0)] * (out.ndim - 1)
    return jnp.pad(out, pad)


# --------------------------------------------------------------------------
# Differentiable core: lse, its gradient and Phi = sum_i c_i lse_i


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _lse(X, n: int, block: int, impl: str):
    if impl == "jax":
        return _lse_sweep(X, n, block)
    return _pallas_call_padded(_pallas_lse, X, n=n, block=block, interpret=impl == "interpret")


@_lse.defjvp
def _lse_jvp(n, block, impl, primals, tangents):
    (X,), (dX,) = primals, tangents
    return _lse_sweep(X, n, block, dX)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4, 5))
def _grad(X, lse, c, n: int, block: int, impl: str):
    """``dPhi/dX = (W + W^T) X``, ``W = diag(c) P`` (``lse`` must be ``_lse(X)``)."""
    if impl == "jax":
        return _sym_sweep(X, lse, c, X, n, block)
    return _pallas_call_padded(_pallas_grad, X, lse, c, n=n, block=block, interpret=impl == "interpret")


@_grad.defjvp
def _grad_jvp(n, block, impl, primals, tangents):
    X, lse, c = primals
    dX, dlse, dc = tangents
    return _grad_jvp_sweep(X, lse, c, dX, dlse, dc, n, block)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _phi(X, c, n: int, block: int, impl: str):
    """``Phi(X) = sum_i c_i lse_i``; its JVP is ``<grad, dX> + <lse, dc>`` (reverse mode transposes a dot)."""
    return jnp.dot(c, _lse(X, n, block, impl))


@_phi.defjvp
def _phi_jvp(n, block, impl, primals, tangents):
    (X, c), (dX, dc) = primals, tangents
    lse = _lse(X, n, block, impl)
    g = _grad(X, lse, c, n, block, impl)
    return jnp.dot(c, lse), jnp.vdot(g, dX) + jnp.dot(lse, dc)


# --------------------------------------------------------------------------
# The loss


def _class_index(labels):
    """Class ids ``0..k-1`` of arbitrary integer labels (sort based, jit-safe) and class counts ``(n,)``."""
    labels = jnp.asarray(labels)
    n = labels.shape[0]
    order = jnp.argsort(labels)
    ranked = labels[order]
    new = jnp.concatenate([jnp.ones((1,), jnp.int32), (ranked[1:] != ranked[:-1]).astype(jnp.int32)])
    cid = jnp.zeros((n,), jnp.int32).at[order].set(jnp.cumsum(new) - 1)
    counts = jax.ops.segment_sum(jnp.ones((n,), jnp.int32), cid, num_segments=n)
    return cid, counts


class _Terms(NamedTuple):
    X: jax.Array  # (n, d) H / sqrt(tau)
    cid: jax.Array  # (n,) class ids 0..k-1
    n_pos: jax.Array  # (n,) positives per anchor
    weight: jax.Array  # (n,) c_i: 1 or 1/n, 0 without positive


def _terms(H, labels, tau, reduction: str) -> _Terms:
    n = H.shape[0]
    cid, counts = _class_index(labels)
    n_pos = counts[cid] - 1
    w = 1.0 / n if reduction == "mean" else 1.0
    weight = jnp.where(n_pos > 0, w, 0.0).astype(H.dtype)
    return _Terms(H / jnp.sqrt(jnp.asarray(tau, H.dtype)), cid, n_pos, weight)


def _positive(t: _Terms):
    """``sum_{j in P(i)} x_i . x_j / (n_{y_i} - 1) = (x_i . s_{y_i} - |x_i|^2) / (n_{y_i} - 1)``."""
    sums = jax.ops.segment_sum(t.X, t.cid, num_segments=t.X.shape[0])
    dots = jnp.sum(t.X * sums[t.cid], axis=1) - jnp.sum(t.X * t.X, axis=1)
    return dots / jnp.maximum(t.n_pos, 1).astype(t.X.dtype)


def _loss_one(H, labels, tau, block: int, reduction: str, impl: str):
    """The SC loss of one ``H`` ``(n, d)`` (differentiable to second order, see module docstring)."""
    n = H.shape[0]
    block = _effective_block(n, block)
    if impl == "pallas" and H.dtype != jnp.float32:
        impl = "jax"  # the compiled kernels are float32 only (Triton has no float64 dot)
    t = _terms(H, labels, tau, reduction)
    n_pad = _num_blocks(n, block) * block
    phi = _phi(_pad_rows(t.X, n_pad), _pad_vec(t.weight, n_pad), n, block, impl)
    return phi - jnp.dot(t.weight, _positive(t))


# --------------------------------------------------------------------------
# Implementation choice


@functools.cache
def _pallas_works(backend: str) -> bool:
    """Compile and run the Pallas kernels on a small float32 problem against pure JAX (once per process)."""
    try:
        with jax.ensure_compile_time_eval():
            H = oblique.normalize_rows(jax.random.normal(jax.random.key(0), (200, 8), jnp.float32))
            labels = jnp.arange(200) % 7

            def run(impl):
                return jax.jit(jax.value_and_grad(lambda h: _loss_one(h, labels, 0.5, 64, "sum", impl)))(H)

            (v0, g0), (v1, g1) = run("jax"), run("pallas")
            return bool(jnp.allclose(v0, v1, rtol=1e-4) & jnp.allclose(g0, g1, rtol=1e-4, atol=1e-4))
    except Exception:  # any failure to lower or run means "not supported on this backend"
        return False


def _resolve_impl(impl: str) -> str:
    """``"auto"`` -> ``"pallas"`` on a GPU whose Pallas kernels pass the probe, else ``"jax"``.

    (``_loss_one`` still runs float64 inputs in pure JAX under ``"pallas"``.)
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    backend = jax.default_backend()
    return "pallas" if backend == "gpu" and _pallas_works(backend) else "jax"


def kernel_impl(dtype, impl: str = "auto") -> str:
    """The kernels the value and gradient sweeps of ``dtype`` run: ``"pallas"``, ``"interpret"``, ``"jax"``.

    ``impl`` is resolved as ``streaming_loss`` resolves it (``"auto"``: Pallas
    on a GPU whose kernels pass the probe, else pure JAX), and Pallas on a
    non-float32 input is pure JAX (the compiled kernels are float32 only), as
    the loss runs it. Callers record it (e.g. a scan's ``config.json``).
    """
    impl = _resolve_impl(impl)
    if impl == "pallas" and jnp.dtype(dtype) != jnp.float32:
        return "jax"
    return impl


def use_streaming(
    n: int, d: int | None = None, *, runs: int = 1, max_entries: int = DENSE_MAX_ENTRIES
) -> bool:
    """Whether a loss/gradient/Hessian/certificate at ``n`` samples should take the streaming path.

    The dense loss + gradient holds several ``n x n`` arrays per run (measured
    ~21 bytes per entry in float32: 0.5 GiB at ``n = 5000``, 7.8 GiB at
    ``20000``); streaming holds ``O(n d + block^2)`` and was never slower in
    ``benchmarks/streaming.py`` (equal at ``n <= 300``, 3-9x faster from
    ``n = 1000``). The rule: stream when ``runs * n^2 > max_entries``
    (default ``4096^2``, ~330 MiB of dense temporaries). ``d`` does not
    enter (both cost ``O(n^2 d)`` time; dense memory does not grow with
    ``d``); it is accepted so callers can pass the shape. Under ``vmap`` over
    ``runs`` the tiles take ``runs * block^2`` entries: pass a smaller
    ``block`` (e.g. 128 for 256 runs).
    """
    del d
    return runs * n * n > max_entries


def _check(H, labels, tau, reduction, block):
    problems.check_loss_inputs(H, labels, tau, reduction)
    if int(block) != block or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")


# --------------------------------------------------------------------------
# Public entry points


@functools.partial(jax.jit, static_argnames=("block", "reduction", "impl"))
def _loss_jit(H, labels, tau, block, reduction, impl):
    return _loss_one(H, labels, tau, block, reduction, impl)


def sc_loss_streaming(
    H, labels, tau, *, block: int = DEFAULT_BLOCK, reduction: str = "sum", impl: str = "auto"
):
    """SC loss of one ``H`` ``(n, d)`` without forming ``H H^T`` (same value as ``sc_loss``).

    Args:
      H: ``(n, d)`` embeddings (any norms; unit rows are the feasible set).
      labels: ``(n,)`` integer labels (an anchor with no positive contributes 0).
      tau: temperature ``> 0``.
      block: rows/columns of one logits tile; ``n`` need not be a multiple.
      reduction: ``"sum"`` over anchors or ``"mean"``.
      impl: ``"auto"``, ``"jax"``, ``"pallas"`` or ``"interpret"`` (Pallas interpreter).

    Differentiable (``jax.grad``, and ``jax.jvp`` of the gradient for
    Hessian-vector products), jit- and vmap-safe. Inside your own transformed
    function call ``streaming_loss`` (no checks, static options).
    """
    _check(H, labels, tau, reduction, block)
    impl = _resolve_impl(impl)
    return _loss_jit(jnp.asarray(H), jnp.asarray(labels), tau, int(block), reduction, impl)


def streaming_loss(labels, tau, *, block: int = DEFAULT_BLOCK, reduction: str = "sum", impl: str = "auto"):
    """``H -> L(H)``: the streaming loss as a pure function to use inside ``jit``/``vmap``/``grad``.

    ``impl="auto"`` is resolved here, once (call it outside traced code).
    """
    problems.check_choice("reduction", reduction, problems.REDUCTIONS)
    impl = _resolve_impl(impl)
    return lambda H: _loss_one(H, labels, tau, int(block), reduction, impl)


@functools.partial(jax.jit, static_argnames=("block", "reduction", "impl"))
def _value_and_grad_jit(H, labels, tau, block, reduction, impl):
    return jax.value_and_grad(_loss_one)(H, labels, tau, block, reduction, impl)


def value_and_grad(H, labels, tau, *, block: int = DEFAULT_BLOCK, reduction: str = "sum", impl: str = "auto"):
    """``(L(H), grad_H L)`` by streaming: two sweeps (log-sum-exp, gradient), ``O(n d + block^2)`` memory.

    ``grad_H L = 2 F H`` (sum reduction) as in docs/maths.md §1. jit/vmap-safe.
    """
    _check(H, labels, tau, reduction, block)
    impl = _resolve_impl(impl)
    return _value_and_grad_jit(jnp.asarray(H), jnp.asarray(labels), tau, int(block), reduction, impl)


def _hvp_one(H, labels, tau, V, block, reduction):
    grad = jax.grad(_loss_one)
    return jax.jvp(lambda h: grad(h, labels, tau, block, reduction, "jax"), (H,), (V,))[1]


@functools.partial(jax.jit, static_argnames=("block", "reduction"))
def _hvp_jit(H, labels, tau, V, block, reduction):
    return _hvp_one(H, labels, tau, V, block, reduction)


def hvp(H, labels, tau, V, *, block: int = DEFAULT_BLOCK, reduction: str = "sum"):
    """Euclidean Hessian-vector product ``nabla^2 L(H)[V]`` ``(n, d)`` by streaming (module docstring)."""
    _check(H, labels, tau, reduction, block)
    if np.shape(V) != np.shape(H):
        raise ValueError(f"V must have the shape of H {np.shape(H)}, got {np.shape(V)}")
    return _hvp_jit(jnp.asarray(H), jnp.asarray(labels), tau, jnp.asarray(V), int(block), reduction)


def _riemannian_hvp_one(H, labels, tau, V, block):
    H = oblique.normalize_rows(H)
    V = oblique.project_tangent(H, V)
    egrad = jax.grad(lambda h: _loss_one(h, labels, tau, block, "sum", "jax"))
    return oblique.riemannian_hvp(egrad, H, V)


@functools.partial(jax.jit, static_argnames=("block",))
def _riemannian_hvp_jit(H, labels, tau, V, block):
    return _riemannian_hvp_one(H, labels, tau, V, block)


def riemannian_hvp(H, labels, tau, V, *, block: int = DEFAULT_BLOCK):
    """``Hess L(H)[V] = Proj_H(nabla^2 L[V]) - diag(<egrad_i, h_i>) V`` on ``OB(n, d)``, streaming.

    Rows of ``H`` are normalised and ``V`` is projected on the tangent space
    first (the symmetric operator ``Proj Hess Proj``, as ``hessian.hvp``).
    Sum-form loss.
    """
    _check(H, labels, tau, "sum", block)
    if np.shape(V) != np.shape(H):
        raise ValueError(f"V must have the shape of H {np.shape(H)}, got {np.shape(V)}")
    return _riemannian_hvp_jit(jnp.asarray(H), jnp.asarray(labels), tau, jnp.asarray(V), int(block))


# --------------------------------------------------------------------------
# Row blocks of the Euclidean Hessian (the trust region's preconditioner)


def row_hessian_blocks_streaming(H, tau, *, block: int = DEFAULT_BLOCK):
    r"""``loss.row_hessian_blocks`` without the ``n x n`` softmax: ``(n, d, d)`` blocks ``d^2 L / dh_i^2``.

    ``B_i = (Cov_{l ~ P_i}(h_l) + sum_a P_ai (1 - P_ai) h_a h_a^T) / tau^2``
    (full batch, every anchor, labels do not enter), accumulated tile by tile
    as ``P_IJ [H_J, H_J (x) H_J]`` and ``(P_JI (1 - P_JI))^T (H_J (x) H_J)``:
    ``O(n^2 d^2)`` time as the dense version, ``O(n d^2 + block (block + d^2))``
    memory. No checks; for use inside transformed code (one ``H``).
    """
    n, d = H.shape
    block = _effective_block(n, block)
    n_pad = _num_blocks(n, block) * block
    scale = jnp.sqrt(jnp.asarray(tau, H.dtype))
    X = _pad_rows(H / scale, n_pad)
    Hp = _pad_rows(H, n_pad)
    outer = (Hp[:, :, None] * Hp[:, None, :]).reshape(n_pad, d * d)
    lse = _lse_sweep(X, n, block)

    def row(ib):
        xi = _tile(X, ib, block)

        def col(carry, jb):
            mean, s1, s2 = carry
            p_row, p_col, _ = _softmax_tiles(lse, ib, jb, xi, _tile(X, jb, block), n, block)
            hj, oj = _tile(Hp, jb, block), _tile(outer, jb, block)
            return (mean + p_row @ hj, s1 + p_row @ oj, s2 + (p_col * (1.0 - p_col)) @ oj), None

        zeros = (jnp.zeros((block, d), H.dtype), jnp.zeros((block, d * d), H.dtype))
        (mean, s1, s2), _ = jax.lax.scan(
            _remat(col), (zeros[0], zeros[1], zeros[1]), jnp.arange(n_pad // block)
        )
        cov = (s1 + s2).reshape(block, d, d) - mean[:, :, None] * mean[:, None, :]
        return cov / jnp.asarray(tau, H.dtype) ** 2

    return _map_rows(row, n_pad, block)[:n]


# --------------------------------------------------------------------------
# Certificate


class SlackOperator(NamedTuple):
    """What ``S v`` needs at one ``H``: the padded scaled rows, ``lse``, weights, classes and ``delta``."""

    X: jax.Array  # (n_pad, d)
    lse: jax.Array  # (n_pad,)
    weight: jax.Array  # (n_pad,) 1 with a positive, else 0
    cid: jax.Array  # (n,)
    n_pos: jax.Array  # (n,)
    delta: jax.Array  # (n,) (F G)_ii
    inner_SG: jax.Array  # <S, G>


def slack_operator(H, labels, tau, block: int = DEFAULT_BLOCK) -> SlackOperator:
    """What ``slack_matvec`` needs at one ``H`` (rows normalised): one value and one gradient sweep."""
    H = oblique.normalize_rows(H)
    n = H.shape[0]
    block = _effective_block(n, block)
    value_grad = jax.grad(lambda h: _loss_one(h, labels, tau, block, "sum", "jax"))
    FH = 0.5 * value_grad(H)  # grad L = 2 F H
    t = _terms(H, labels, tau, "sum")
    n_pad = _num_blocks(n, block) * block
    X = _pad_rows(t.X, n_pad)
    lse = _lse(X, n, block, "jax")
    delta = jnp.sum(FH * H, axis=1)  # (F G)_ii = sum_l F_il h_l . h_i
    # <S, G> = <F, G> - sum_i (F G)_ii G_ii: zero on the sphere up to rounding.
    inner = jnp.sum(delta * (1.0 - jnp.sum(H * H, axis=1)))
    return SlackOperator(X, lse, _pad_vec(t.weight, n_pad), t.cid, t.n_pos, delta, inner)


def slack_matvec(op: SlackOperator, v, tau, n: int, block: int = DEFAULT_BLOCK):
    """``S v`` for ``v`` ``(n,)``: one sweep (``(W + W^T) v``) plus ``O(n)`` class sums."""
    block = _effective_block(n, block)
    n_pad = op.X.shape[0]
    Wv = _sym_sweep(op.X, op.lse, op.weight, _pad_rows(v[:, None], n_pad), n, block)[:n, 0]
    class_sums = jax.ops.segment_sum(v, op.cid, num_segments=n)
    Yv = jnp.where(op.n_pos > 0, (class_sums[op.cid] - v) / jnp.maximum(op.n_pos, 1).astype(v.dtype), 0.0)
    return (Wv - 2 * Yv) / (2 * tau) - op.delta * v


# --------------------------------------------------------------------------
# The dense/streaming dispatch (the one place that chooses; callers record the choice)


def choose(mode: str, n: int, runs: int = 1) -> bool:
    """Whether to stream: ``"always"``, ``"never"``, or ``use_streaming(n, runs=runs)`` for ``"auto"``."""
    problems.check_choice("streaming", mode, MODES)
    if mode == "auto":
        return use_streaming(n, runs=runs)
    return mode == "always"


def loss_fn(labels, tau, *, stream: bool, block: int = DEFAULT_BLOCK):
    """``H -> L(H)`` (sum form, rows as given): ``loss.sum_loss``, or the streaming loss."""
    if stream:
        return streaming_loss(labels, tau, block=block)
    return lambda H: loss.sum_loss(H, labels, tau)


def row_blocks_fn(tau, *, stream: bool, block: int = DEFAULT_BLOCK):
    """``H -> (n, d, d)`` diagonal blocks of the Euclidean Hessian (``loss.row_hessian_blocks``)."""
    if stream:
        return lambda H: row_hessian_blocks_streaming(H, tau, block=block)
    return lambda H: loss.row_hessian_blocks(H, tau)


__all__ = [
    "DEFAULT_BLOCK",
    "MODES",
    "choose",
    "hvp",
    "kernel_impl",
    "loss_fn",
    "riemannian_hvp",
    "row_blocks_fn",
    "row_hessian_blocks_streaming",
    "sc_loss_streaming",
    "slack_matvec",
    "slack_operator",
    "streaming_loss",
    "use_streaming",
    "value_and_grad",
]
