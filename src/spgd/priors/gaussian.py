"""An analytic prior: a stationary Gaussian image model with a power-law spectrum, and its exact denoiser.

x = mu + U z, where the colour-decorrelated channels z_c are independent stationary Gaussian fields whose
power spectrum (variance of each orthonormal 2-D DFT coefficient) is P_c(f) ∝ (|f|^2 + f0^2)^(-a_c/2),
scaled so that the per-pixel variance of z_c is v_c. Natural photos follow a ≈ 2 (Field 1987). Because the
model is Gaussian, E[x0 | x0 + sigma*eps = x] is the Wiener filter mu + U F^-1[P/(P+sigma^2) F(U^T(x-mu))].
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from ..tensors import append_dims
from .base import Prior, SigmaLike, sigma_as_batch

# Opponent-colour basis (luminance, red-green, yellow-blue): orthonormal rows.
_OPPONENT = [
    [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
    [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
    [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
]


def _radial_frequency(h: int, w: int, device, dtype) -> Tensor:
    fy = torch.fft.fftfreq(h, device=device, dtype=dtype)
    fx = torch.fft.fftfreq(w, device=device, dtype=dtype)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # cycles per pixel, (H, W)


class GaussianPrior(Prior):
    """Stationary Gaussian prior on (B, C, H, W) images, any H and W; exact MMSE denoiser."""

    def __init__(
        self,
        mean: Sequence[float] = (0.0, 0.0, 0.0),  # per-channel mean, in [-1, 1] units
        basis: Optional[Sequence[Sequence[float]]] = None,  # (C, C) orthonormal colour basis, rows = components
        variance: Sequence[float] = (0.3, 0.01, 0.01),  # per-pixel variance of each component
        exponent: Sequence[float] = (2.0, 2.0, 2.0),  # power-law exponent a of each component
        f0: float = 1.0 / 256,  # low-frequency cut-off (cycles/pixel), keeps P finite at f = 0
    ):
        super().__init__()
        c = len(mean)
        basis = _OPPONENT if basis is None and c == 3 else basis
        if basis is None:
            basis = torch.eye(c).tolist()
        if not (len(variance) == len(exponent) == c and len(basis) == c):
            raise SpgdError(f"mean, basis, variance and exponent must all have {c} channels")
        if min(variance) <= 0:
            raise SpgdError(f"variances must be > 0, got {list(variance)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.float64))
        self.register_buffer("variance", torch.tensor(variance, dtype=torch.float64))
        self.register_buffer("exponent", torch.tensor(exponent, dtype=torch.float64))
        self.f0 = float(f0)
        self._cache: dict = {}

    @classmethod
    def default(cls) -> "GaussianPrior":
        """Generic natural-photo settings: 1/f^2 spectra, most variance in luminance."""
        return cls()

    @classmethod
    def gray(cls) -> "GaussianPrior":
        """One channel: the luminance component of `default()` (variance 0.3 over sqrt(3)-scaled grey, 0.1)."""
        return cls(mean=(0.0,), variance=(0.1,), exponent=(2.0,))

    def spectrum(self, h: int, w: int, device=None, dtype=torch.float64) -> Tensor:
        """P_c on the (H, W) DFT grid, shape (C, H, W), normalised so mean_f P_c = v_c (per-pixel variance)."""
        key = (h, w, str(device), dtype)
        if key not in self._cache:
            f = _radial_frequency(h, w, device, torch.float64)
            shape = (f[None] ** 2 + self.f0**2) ** (-self.exponent.to(device)[:, None, None] / 2)
            p = shape / shape.mean(dim=(1, 2), keepdim=True) * self.variance.to(device)[:, None, None]
            self._cache[key] = p.to(dtype)
        return self._cache[key]

    def _to_components(self, x: Tensor) -> Tensor:
        mu = self.mean.to(x)[None, :, None, None]
        return torch.einsum("dc,bchw->bdhw", self.basis.to(x), x - mu)

    def _from_components(self, z: Tensor) -> Tensor:
        mu = self.mean.to(z)[None, :, None, None]
        return torch.einsum("dc,bdhw->bchw", self.basis.to(z), z) + mu

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.mean.numel():
            raise SpgdError(
                f"GaussianPrior expects (B, {self.mean.numel()}, H, W) images, got shape {tuple(x.shape)}"
            )

    def denoise(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        self._check(x)
        s2 = append_dims(sigma_as_batch(sigma, x) ** 2, 4)
        p = self.spectrum(x.shape[-2], x.shape[-1], x.device, x.dtype)[None]
        z = torch.fft.fft2(self._to_components(x), norm="ortho")
        z = torch.fft.ifft2(z * (p / (p + s2)), norm="ortho").real
        return self._from_components(z)

    def posterior_mean(self, y: Tensor, transfer: Tensor, noise_sigma: float) -> Tensor:
        """Exact E[x | y] for y = h ⊛ x + noise with a circular convolution whose DFT is `transfer` (H, W),
        the same for every channel: X = M + P H* (Y - H M) / (|H|^2 P + s^2) per component."""
        self._check(y)
        p = self.spectrum(y.shape[-2], y.shape[-1], y.device, y.dtype)[None]
        mean_img = self.mean.to(y)[None, :, None, None].expand_as(y)
        yz = torch.fft.fft2(self._to_components(y), norm="ortho")
        mz = torch.fft.fft2(self._to_components(mean_img), norm="ortho")
        h = transfer.to(yz.dtype)
        xz = mz + p * h.conj() * (yz - h * mz) / (h.abs() ** 2 * p + noise_sigma**2)
        return self._from_components(torch.fft.ifft2(xz, norm="ortho").real)

    def sample(self, shape: Sequence[int], generator: Optional[torch.Generator] = None, device=None) -> Tensor:
        """Draw images from the prior, shape (B, C, H, W)."""
        b, c, h, w = shape
        p = self.spectrum(h, w, device, torch.float32)[None]
        white = torch.randn((b, c, h, w), generator=generator, device=device)
        z = torch.fft.ifft2(torch.fft.fft2(white, norm="ortho") * p.sqrt(), norm="ortho").real
        return self._from_components(z)

    @classmethod
    def fit(cls, images: Iterable[Tensor], f0: float = 1.0 / 256) -> "GaussianPrior":
        """Fit mean, colour basis (PCA), per-component variance and spectral exponent to (C, H, W) or
        (B, C, H, W) images in [-1, 1]. The exponent is a least-squares line through the log-log power spectrum."""
        imgs = [im if im.ndim == 4 else im[None] for im in images]
        if not imgs:
            raise SpgdError("GaussianPrior.fit needs at least one image")
        pix = torch.cat([im.double().permute(1, 0, 2, 3).flatten(1) for im in imgs], dim=1)  # (C, n)
        mean = pix.mean(1)
        cov = torch.cov(pix)
        evals, evecs = torch.linalg.eigh(cov)
        order = evals.argsort(descending=True)
        basis = evecs[:, order].T  # rows are components
        prior = cls(mean.tolist(), basis.tolist(), evals[order].clamp_min(1e-6).tolist(), [2.0] * len(mean), f0)
        exps = []
        for ci in range(len(mean)):
            xs, ys = [], []
            for im in imgs:
                z = prior._to_components(im.double())[:, ci]
                pw = torch.fft.fft2(z - z.mean(dim=(-2, -1), keepdim=True), norm="ortho").abs().pow(2).mean(0)
                f = _radial_frequency(z.shape[-2], z.shape[-1], None, torch.float64)
                keep = f > 0
                xs.append(torch.log(f[keep] ** 2 + f0**2) / 2)
                ys.append(torch.log(pw[keep] + 1e-12))
            xv, yv = torch.cat(xs), torch.cat(ys)
            slope = ((xv - xv.mean()) * (yv - yv.mean())).sum() / ((xv - xv.mean()) ** 2).sum()
            exps.append(float(-slope))
        prior.exponent.copy_(torch.tensor(exps, dtype=torch.float64))
        prior._cache.clear()
        return prior
