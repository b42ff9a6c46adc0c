"""Exact singular value decompositions of the benchmark's linear operators (the `svd` capability, DDRM), and the
data-proximal solve and pseudo-inverse every SVD gives (the `prox` and `pinv` capabilities, DiffPIR and PiGDM).

Each class below is one image's (or a batch's shared) A = U diag(s) V^T in the layout of
`spgd.operators.capabilities.SVD`: spectral vectors V^T x of D entries, the first L paired with the singular values.
The bases are fixed, not just "an" SVD: DDRM's recorded noise is spectral, so a run can be replayed only in the same
basis. Where DDRM's release defines the operator (inpainting, 4x4 block averaging, denoising), the layout is the
release's (bahjat-kawar/ddrm @ 32b6b3c, functions/svd_replacement.py, checked against the stored bases of
../shared/fixtures/reference-ddrm/ in tests/operators/test_spectral.py); separable operators (bicubic resizing,
reflect-padded separable blurs) use the Kronecker product of their 1-D SVDs.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import SpgdError

#: singular values below PINV_RCOND * max(s) count as zero in the pseudo-inverse: the threshold DDRM's release
#: applies to its deblurring H-functions (functions/svd_replacement.py, ZERO = 3e-2); without one a blur's tiny
#: singular values would multiply the measurement noise by up to 1e10
PINV_RCOND = 3e-2


class _Cached:
    """Matrices built once in float64 on the CPU, handed out per (device, dtype)."""

    def __init__(self, **tensors: Tensor):
        self._base = tensors
        self._cache: Dict[Tuple[torch.device, torch.dtype], Dict[str, Tensor]] = {}

    def get(self, like: Tensor) -> Dict[str, Tensor]:
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = {k: v.to(device=like.device, dtype=like.dtype) for k, v in self._base.items()}
        return self._cache[key]


class IdentitySVD:
    """A = I (denoising): U = V = I, s = 1, spectral vectors the row-major flattening of x."""

    def __init__(self, x_shape: Sequence[int]):
        self.shape = tuple(x_shape)

    def singulars(self) -> Tensor:
        return torch.ones(_numel(self.shape))

    def Vt(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def V(self, v: Tensor) -> Tensor:
        return v.reshape(v.shape[0], *self.shape)

    Ut = Vt
    U = V


class MaskSVD:
    """A = diag(m) on the pixels of a (C, H, W) image (inpainting), in DDRM's layout.

    The image is read as DDRM's interleaved vector xq[C p + c] = x[c, p] (p = W row + col). V^T x lists the
    observed entries (m > 0) of xq in ascending order, then the missing ones channel by channel (all of channel 0
    in pixel order, then channel 1, ...): for a mask shared by the channels this is the release's `Inpainting`
    H-function built from `missing_indices` = cat(3 P, 3 P + 1, 3 P + 2). U^T y lists y's observed entries in the
    same order; s = m there (1 for a 0/1 mask).
    """

    def __init__(self, mask: Tensor, channels: int):
        m = mask.detach().to("cpu", torch.float64)
        if m.ndim != 3 or m.shape[0] not in (1, channels):
            raise SpgdError(f"MaskSVD needs a (1 or {channels}, H, W) mask, got shape {tuple(m.shape)}")
        m = m.expand(channels, *m.shape[1:])
        self.shape = (channels, m.shape[1], m.shape[2])
        mq = m.permute(1, 2, 0).reshape(-1)  # interleaved: entry C p + c
        observed = (mq > 0).nonzero().flatten()
        missing = (m.reshape(channels, -1) == 0).nonzero()  # (c, p) rows, channel-major, pixels ascending
        missing = missing[:, 1] * channels + missing[:, 0]
        self.order = torch.cat([observed, missing])  # spectral entry k <- xq[order[k]]
        self.observed = observed
        self._s = mq[observed]

    def singulars(self) -> Tensor:
        return self._s.to(torch.float32)

    def _interleave(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape).permute(0, 2, 3, 1).reshape(x.shape[0], -1)

    def _deinterleave(self, xq: Tensor) -> Tensor:
        c, h, w = self.shape
        return xq.reshape(xq.shape[0], h, w, c).permute(0, 3, 1, 2)

    def Vt(self, x: Tensor) -> Tensor:
        return self._interleave(x)[:, self.order.to(x.device)]

    def V(self, v: Tensor) -> Tensor:
        xq = torch.empty_like(v)
        xq[:, self.order.to(v.device)] = v
        return self._deinterleave(xq)

    def Ut(self, y: Tensor) -> Tensor:
        return self._interleave(y)[:, self.observed.to(y.device)]

    def U(self, u: Tensor) -> Tensor:
        yq = u.new_zeros(u.shape[0], _numel(self.shape))
        yq[:, self.observed.to(u.device)] = u
        return self._deinterleave(yq)


def block_average_basis(scale: int) -> tuple[Tensor, Tensor, Tensor]:
    """(U, s, V) of the 1 x scale^2 averaging row, as DDRM's `SuperResolution` H-function takes it from
    `torch.svd(ones(1, scale^2) / scale^2, some=False)` in float32 on the CPU (its signs and null-space basis are
    part of the layout: V's first column is -1/scale, U = -1, s = 1/scale)."""
    u, s, v = torch.svd(torch.ones(1, scale * scale) / (scale * scale), some=False)
    return u, s, v


class BlockAverageSVD:
    """A = the mean of each scale x scale block, per channel (DDRM's `SuperResolution`, e.g. 4x4: 64 -> 16).

    Block m = (c, i, j), channel-major, holds the patch P[scale a + b] = x[c, scale i + a, scale j + b] and its
    coefficients w_m = V1^T P_m (V1 from `block_average_basis`). V^T x lists w_m[0] for every block (the L = C H W /
    scale^2 entries with s = 1/scale), then w_m[1:] block after block. U^T y = U1 y (U1 = -1), y read channel-major.
    """

    def __init__(self, scale: int, x_shape: Sequence[int]):
        c, h, w = x_shape
        if h % scale or w % scale:
            raise SpgdError(f"block averaging by {scale} needs a size divisible by it, got {h}x{w}")
        self.scale, self.shape = scale, (c, h, w)
        self.blocks = c * (h // scale) * (w // scale)
        u, s, v = block_average_basis(scale)
        self._s = float(s[0])
        self._u, self._v = u, v

    def singulars(self) -> Tensor:
        return torch.full((self.blocks,), self._s)

    def _patches(self, x: Tensor) -> Tensor:
        c, h, w = self.shape
        s = self.scale
        p = x.reshape(x.shape[0], c, h // s, s, w // s, s).permute(0, 1, 2, 4, 3, 5)
        return p.reshape(x.shape[0], self.blocks, s * s)

    def Vt(self, x: Tensor) -> Tensor:
        wm = self._patches(x) @ self._v.to(x)
        return torch.cat([wm[..., 0], wm[..., 1:].reshape(x.shape[0], -1)], dim=1)

    def V(self, v: Tensor) -> Tensor:
        n, (c, h, w), s = v.shape[0], self.shape, self.scale
        wm = torch.cat([v[:, : self.blocks, None], v[:, self.blocks :].reshape(n, self.blocks, s * s - 1)], dim=2)
        p = (wm @ self._v.to(v).T).reshape(n, c, h // s, w // s, s, s).permute(0, 1, 2, 4, 3, 5)
        return p.reshape(n, c, h, w)

    def Ut(self, y: Tensor) -> Tensor:
        return self._u.to(y)[0, 0] * y.reshape(y.shape[0], -1)

    def U(self, u: Tensor) -> Tensor:
        c, h, w = self.shape
        return (self._u.to(u)[0, 0] * u).reshape(u.shape[0], c, h // self.scale, w // self.scale)


class SeparableSVD:
    """A X_c = M_h X_c M_w^T per channel (bicubic resizing, reflect-padded separable blurs): the Kronecker product of
    the 1-D SVDs M = U diag(s) V^T (full V).

    T_c = V_h^T X_c V_w; V^T x lists T_c[:h', :w'] of every channel (channel-major, row-major: the L entries with
    s = s_h[i] s_w[j]), then the remaining entries of every channel (the null space). U^T y lists U_h^T Y_c U_w.
    """

    def __init__(self, m_h: Tensor, m_w: Tensor, channels: int):
        uh, sh, vh = torch.linalg.svd(m_h.to(torch.float64), full_matrices=True)
        uw, sw, vw = torch.linalg.svd(m_w.to(torch.float64), full_matrices=True)
        self.out = (m_h.shape[0], m_w.shape[0])
        self.shape = (channels, m_h.shape[1], m_w.shape[1])
        if min(self.out) > min(self.shape[1:]) or self.out[0] > self.shape[1] or self.out[1] > self.shape[2]:
            raise SpgdError("SeparableSVD needs 1-D matrices with no more rows than columns")
        self._s = torch.outer(sh, sw).reshape(-1).repeat(channels)  # float64: exact in float64 checks too
        rest = torch.ones(self.shape[1:], dtype=torch.bool)
        rest[: self.out[0], : self.out[1]] = False
        self._mats = _Cached(uh=uh, uw=uw, vh=vh.T, vw=vw.T)
        self._rest = rest

    def singulars(self) -> Tensor:
        return self._s

    def Vt(self, x: Tensor) -> Tensor:
        m = self._mats.get(x)
        t = torch.einsum("hi,nchw,wj->ncij", m["vh"], x.reshape(x.shape[0], *self.shape), m["vw"])
        hp, wp = self.out
        head = t[:, :, :hp, :wp].reshape(x.shape[0], -1)
        tail = t[:, :, self._rest.to(x.device)].reshape(x.shape[0], -1)
        return torch.cat([head, tail], dim=1)

    def V(self, v: Tensor) -> Tensor:
        m = self._mats.get(v)
        n, (c, h, w), (hp, wp) = v.shape[0], self.shape, self.out
        t = v.new_zeros(n, c, h, w)
        L = c * hp * wp
        t[:, :, :hp, :wp] = v[:, :L].reshape(n, c, hp, wp)
        t[:, :, self._rest.to(v.device)] = v[:, L:].reshape(n, c, -1)
        return torch.einsum("hi,ncij,wj->nchw", m["vh"], t, m["vw"])

    def Ut(self, y: Tensor) -> Tensor:
        m = self._mats.get(y)
        hp, wp = self.out
        y = y.reshape(y.shape[0], self.shape[0], hp, wp)
        return torch.einsum("hi,nchw,wj->ncij", m["uh"], y, m["uw"]).reshape(y.shape[0], -1)

    def U(self, u: Tensor) -> Tensor:
        m = self._mats.get(u)
        hp, wp = self.out
        t = u.reshape(u.shape[0], self.shape[0], hp, wp)
        return torch.einsum("hi,ncij,wj->nchw", m["uh"], t, m["uw"])


# ----------------------------------------------------------------------------------------------------------
# what an SVD gives: the data-proximal solve and the pseudo-inverse


def _per_image(svds: Sequence, fn, *tensors: Tensor) -> Tensor:
    """fn(svd, *tensors) for the whole batch when it shares one SVD, else image by image."""
    if all(s is svds[0] for s in svds):
        return fn(svds[0], *tensors)
    return torch.cat([fn(s, *(t[i : i + 1] for t in tensors)) for i, s in enumerate(svds)])


def svd_prox(svds: Sequence, z: Tensor, y: Tensor, rho: Tensor) -> Tensor:
    """argmin_x ||y - A x||^2 + rho ||x - z||^2 per image from A's SVD: V[(s U^T y + rho V^T z) / (s^2 + rho)] on the
    L observed spectral entries, V^T z kept on the null space. rho: (B,) tensor."""

    def one(svd, z, y, rho):
        s = svd.singulars().to(z)
        vz, uy = svd.Vt(z), svd.Ut(y)
        r = rho.reshape(-1, 1).to(z)
        L = s.numel()
        head = (s * uy + r * vz[:, :L]) / (s * s + r)
        return svd.V(torch.cat([head, vz[:, L:]], dim=1))

    return _per_image(svds, one, z, y, rho)


def svd_pinv(svds: Sequence, y: Tensor, x_shape: Sequence[int], rcond: float = PINV_RCOND) -> Tensor:
    """A^+ y = V[diag(1/s) U^T y; 0] per image (x_shape: the batch of unknowns), singular values below
    rcond * max(s) taken as zero."""
    d = _numel(x_shape[1:])

    def one(svd, y):
        s = svd.singulars().to(y)
        keep = s > rcond * s.abs().max()
        head = torch.where(keep, svd.Ut(y) / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        tail = head.new_zeros(head.shape[0], d - s.numel())
        return svd.V(torch.cat([head, tail], dim=1))

    return _per_image(svds, one, y)


def _numel(shape: Sequence[int]) -> int:
    out = 1
    for n in shape:
        out *= int(n)
    return out


def reflect_matrix(taps: Tensor, n: int) -> Tensor:
    """The (n, n) float64 matrix of 1-D cross-correlation with `taps` (odd length) on a signal reflection-padded by
    len(taps) // 2 (torch's "reflect": the edge sample is not repeated), i.e. one axis of a separable blur."""
    k = taps.to(torch.float64).flatten()
    r = k.numel() // 2
    if r >= n:
        raise SpgdError(f"a kernel of {k.numel()} taps is too wide for a reflect-padded axis of {n} pixels")
    idx = torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None, :]
    idx = idx.abs()
    idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)
    m = torch.zeros(n, n, dtype=torch.float64)
    m.scatter_add_(1, idx, k.expand(n, -1).clone())
    return m


def separable_factors(kernel: Tensor, rtol: float = 1e-6):
    """(column taps, row taps) with kernel = outer(col, row), if the 2-D kernel is separable to `rtol` (its second
    singular value at most rtol times the first), else None."""
    k = kernel.detach().to("cpu", torch.float64)
    u, s, vh = torch.linalg.svd(k)
    if s.numel() > 1 and s[1] > rtol * s[0]:
        return None
    col, row = u[:, 0] * s[0].sqrt(), vh[0] * s[0].sqrt()
    if col.sum() < 0:  # the factors of a non-negative kernel are both positive or both negative
        col, row = -col, -row
    return col, row
