"""Circular convolution, optionally followed by s-fold decimation, in the Fourier domain: A x = S_s(k (*) x) with
periodic boundaries, where S_s keeps every s-th pixel from the first ([..., 0::s, 0::s]).

It is the degradation model of DiffPIR's scripts (and USRNet's), and it has closed forms for the data-proximal step
and the pseudo-inverse (spgd.operators.capabilities): with F the 2-D DFT, H = F(k) the transfer function and
mean_s the average of the s x s tiles of a spectrum (its aliased copies),

    argmin_x ||y - A x||^2 + rho ||x - z||^2 = F^-1[(R - conj(H) tile(mean_s(H R) / (mean_s(|H|^2) + rho))) / rho],
    R = conj(H) F(S_s^T y) + F(rho z)                    (Zhao et al. 2016, "Fast single image super-resolution
                                                          using a new analytical solution for l2-l2 problems")
    A^+ y = A^T F_low^-1[F_low(y) / mean_s(|H|^2)]       (A A^T is diagonal on the low-resolution spectrum)

The prox follows the arithmetic order of DiffPIR's `utils_sisr.data_solution` (yuanzhi-zhu/DiffPIR @ 111d26e), the
Woodbury form above, including the tile mean's summation order: its first steps divide a cancelling difference by a
rho of ~1e-7, where another order of the same sums changes the result at the 1e-3 level
(../shared/fixtures/reference-diffpir/README.md, "Float-order floor").
"""

from __future__ import annotations

import torch
from torch import Tensor

from .spectral import PINV_RCOND


def transfer_function(kernel: Tensor, height: int, width: int, like: Tensor) -> Tensor:
    """H (1 or B, 1, height, width) complex: the DFT of the convolution kernel(s) (k, k) or (B, k, k), zero-padded at
    the top-left corner and rolled so that the kernel's centre sits at pixel (0, 0)."""
    k = kernel.to(device=like.device, dtype=like.dtype)
    k = k.reshape(-1, 1, *k.shape[-2:])
    kh, kw = k.shape[-2:]
    padded = k.new_zeros(k.shape[0], 1, height, width)
    padded[..., :kh, :kw] = k
    padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))
    return torch.fft.fftn(padded, dim=(-2, -1))


def tile_mean(spectrum: Tensor, scale: int) -> Tensor:
    """The mean of the scale x scale tiles of a (..., H, W) spectrum, (..., H / scale, W / scale): tile (p, q) (rows
    p H / s..., columns q W / s...) stacked as entry q s + p, then averaged (data_solution's order)."""
    if scale == 1:
        return spectrum
    tiles = torch.stack(torch.chunk(spectrum, scale, dim=2), dim=4)
    tiles = torch.cat(torch.chunk(tiles, scale, dim=3), dim=4)
    return torch.mean(tiles, dim=-1)


def upsample_zeros(y: Tensor, scale: int) -> Tensor:
    """S^T y: y placed at [..., 0::scale, 0::scale] of a zero image `scale` times larger."""
    if scale == 1:
        return y
    out = y.new_zeros(*y.shape[:-2], y.shape[-2] * scale, y.shape[-1] * scale)
    out[..., 0::scale, 0::scale] = y
    return out


def apply(x: Tensor, H: Tensor, scale: int) -> Tensor:
    """A x = S(F^-1(H F(x)))."""
    out = torch.real(torch.fft.ifftn(H * torch.fft.fftn(x, dim=(-2, -1)), dim=(-2, -1)))
    return out[..., 0::scale, 0::scale] if scale > 1 else out


def apply_adjoint(y: Tensor, H: Tensor, scale: int) -> Tensor:
    """A^T y = F^-1(conj(H) F(S^T y))."""
    return torch.real(torch.fft.ifftn(torch.conj(H) * torch.fft.fftn(upsample_zeros(y, scale), dim=(-2, -1)), dim=(-2, -1)))


def prox(z: Tensor, y: Tensor, H: Tensor, scale: int, rho: Tensor) -> Tensor:
    """argmin_x ||y - A x||^2 + rho ||x - z||^2 per image (rho (B,)), in closed form (the module's formula)."""
    r = rho.reshape(-1, 1, 1, 1).to(z)
    Hc = torch.conj(H)
    R = Hc * torch.fft.fftn(upsample_zeros(y, scale), dim=(-2, -1)) + torch.fft.fftn(r * z, dim=(-2, -1))
    HR = tile_mean(H * R, scale)
    power = tile_mean(torch.pow(torch.abs(H), 2), scale)
    correction = (HR / (power + r)).repeat(1, 1, scale, scale)
    return torch.real(torch.fft.ifftn((R - Hc * correction) / r, dim=(-2, -1)))


def pinv(y: Tensor, H: Tensor, scale: int, rcond: float = PINV_RCOND) -> Tensor:
    """A^+ y, frequencies whose aliased power mean_s(|H|^2) is below (rcond * its largest square root)^2 taken as
    zero."""
    power = tile_mean(torch.pow(torch.abs(H), 2), scale)
    keep = power > (rcond**2) * power.amax(dim=(-2, -1), keepdim=True)
    fy = torch.fft.fftn(y, dim=(-2, -1))
    w = torch.where(keep, fy / torch.where(keep, power, torch.ones_like(power)), torch.zeros_like(fy))
    return apply_adjoint(torch.real(torch.fft.ifftn(w, dim=(-2, -1))), H, scale)
