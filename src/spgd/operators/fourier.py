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


class CircularSVD:
    """The exact SVD of a circular convolution (no decimation) of (C, H, W) images with transfer function H (1, 1,
    H, W): a real orthonormal Fourier basis, in which A is block-diagonal with 2x2 blocks |H_k| R(arg H_k).

    Frequencies k come in conjugate pairs (k, -k); for each pair one representative (the smaller flat index) gives
    two coefficients sqrt(2) Re X_k and sqrt(2) Im X_k of the orthonormal DFT X = F(x), a self-conjugate frequency
    (k = -k) one, Re X_k. V^T x lists, per channel (channel-major), the real parts of the representatives in flat
    order, then the imaginary parts of the paired ones. U^T y is the same transform of y with every frequency turned
    back by the phase of H_k, so A x = U(|H| V^T x): s = |H_k| on both coefficients of k (zeros allowed).
    """

    def __init__(self, H: Tensor, x_shape):
        c, h, w = x_shape
        self.shape = (c, h, w)
        flat = torch.arange(h * w).reshape(h, w)
        conj = ((-torch.arange(h)) % h)[:, None] * w + ((-torch.arange(w)) % w)[None, :]
        rep = (flat <= conj).flatten()
        self.real_idx = rep.nonzero().flatten()  # representatives: their real parts
        paired = (flat < conj).flatten()
        self.imag_idx = paired.nonzero().flatten()  # representatives of true pairs: their imaginary parts
        self.scale_real = torch.where(paired[self.real_idx], 2.0**0.5, 1.0).to(torch.float64)
        self.conj_flat = conj.flatten()
        h_t = H.detach().reshape(h * w).to(torch.complex128)
        mag = h_t.abs()
        self.phase = torch.where(mag > 0, h_t / torch.where(mag > 0, mag, torch.ones_like(mag)), torch.ones_like(h_t))
        s = torch.cat([mag[self.real_idx], mag[self.imag_idx]])
        self._s = s.repeat(c)

    def singulars(self) -> Tensor:
        return self._s

    def _coefficients(self, spectrum: Tensor) -> Tensor:
        # spectrum (N, C, H*W) complex -> (N, C*D) real
        sc = self.scale_real.to(spectrum.real)
        re = spectrum[..., self.real_idx.to(spectrum.device)].real * sc.to(spectrum.device)
        im = spectrum[..., self.imag_idx.to(spectrum.device)].imag * 2.0**0.5
        return torch.cat([re, im], dim=-1).reshape(spectrum.shape[0], -1)

    def _spectrum(self, v: Tensor) -> Tensor:
        # (N, C*D) real -> (N, C, H*W) complex, Hermitian-symmetric
        c, h, w = self.shape
        n = v.shape[0]
        v = v.reshape(n, c, -1)
        nr = self.real_idx.numel()
        dev = v.device
        re = v[..., :nr] / self.scale_real.to(v).to(dev)
        im = v[..., nr:] / 2.0**0.5
        spec = torch.zeros(n, c, h * w, dtype=torch.complex128 if v.dtype == torch.float64 else torch.complex64,
                           device=dev)
        spec[..., self.real_idx.to(dev)] = re.to(spec.dtype)
        spec[..., self.imag_idx.to(dev)] += 1j * im.to(spec.dtype)
        partners = self.conj_flat[self.imag_idx].to(dev)  # the conjugates of the paired representatives
        spec[..., partners] = torch.conj(spec[..., self.imag_idx.to(dev)])
        return spec

    def _fft(self, x: Tensor) -> Tensor:
        c, h, w = self.shape
        return torch.fft.fft2(x.reshape(x.shape[0], c, h, w), norm="ortho").reshape(x.shape[0], c, h * w)

    def _ifft(self, spec: Tensor) -> Tensor:
        c, h, w = self.shape
        return torch.fft.ifft2(spec.reshape(spec.shape[0], c, h, w), norm="ortho").real

    def Vt(self, x: Tensor) -> Tensor:
        return self._coefficients(self._fft(x))

    def V(self, v: Tensor) -> Tensor:
        return self._ifft(self._spectrum(v))

    def Ut(self, y: Tensor) -> Tensor:
        spec = self._fft(y)
        return self._coefficients(spec * torch.conj(self.phase).to(spec))

    def U(self, u: Tensor) -> Tensor:
        spec = self._spectrum(u)
        return self._ifft(spec * self.phase.to(spec))
