"""Super-resolution: down-sampling by an integer factor, in one of three ways (`resize`):

- ``"bicubic"`` (the benchmark): MATLAB ``imresize``-style bicubic anti-aliased down-sampling, the same
  computation as the ``Resizer`` of DPS (``util/resizer.py``) that DPS, DAPS and SPGD use: the Keys cubic kernel
  (a = -0.5) stretched by 1/scale (anti-aliasing), weights normalised to sum 1 per output pixel, and symmetric
  (half-sample mirror) boundary handling. It is separable, so it is written as one weight matrix per axis:
  y = W_h x W_w^T, exact and fast, with the adjoint W_h^T y W_w;
- ``"average"``: the mean of each scale x scale block (DDRM's super-resolution);
- ``"kernel"`` (when a `kernel` is given): cross-correlate with the kernel (as every blur here does; DiffPIR and
  USRNet convolve, so pass their kernel flipped), then keep every scale-th pixel from the first,
  ``(k * x)[..., 0::s, 0::s]``, with periodic (``padding="circular"``: DiffPIR's and USRNet's model) or reflected
  boundaries. The kernel is used as given (not normalised; negative lobes allowed).

Capabilities (spgd.operators.capabilities): bicubic and block averaging have exact SVDs (DDRM's layout for the
block average, spgd.operators.spectral), a reflect-padded separable kernel too; the circular kernel model has its
prox and pseudo-inverse in closed form through the FFT (spgd.operators.fourier).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

import torch.nn.functional as F

from ..errors import SpgdError
from . import fourier
from .base import LinearOperator, check_channels, check_image
from .blur import _check_padding, blur, blur_adjoint, load_kernel
from .spectral import BlockAverageSVD, SeparableSVD, reflect_matrix, separable_factors

RESIZES = ("bicubic", "average", "kernel")


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's "bicubic")."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


def imresize_matrix(in_length: int, out_length: int, antialiasing: bool = True) -> Tensor:
    """The (out_length, in_length) float64 matrix of MATLAB-style bicubic resizing along one axis."""
    scale = out_length / in_length
    kernel_width = 4.0
    if antialiasing and scale < 1:
        kernel = lambda t: scale * _cubic(scale * t)  # noqa: E731 - stretched kernel
        kernel_width /= scale
    else:
        kernel = _cubic
    # output pixel centres in input coordinates (1-based, as MATLAB)
    out_coords = np.arange(1, out_length + 1, dtype=np.float64)
    shifted = out_coords - (out_length - in_length * scale) / 2
    match = shifted / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(match - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    fov = (left[:, None] + np.arange(taps)[None, :] - 1).astype(np.int64)  # 0-based input indices
    weights = kernel(match[:, None] - fov - 1)
    sums = weights.sum(axis=1, keepdims=True)
    sums[sums == 0] = 1.0
    weights = weights / sums
    # symmetric boundary: indices mirrored with period 2n (..., 1, 0 | 0, 1, ..., n-1 | n-1, ...)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    fov = mirror[np.mod(fov, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), fov.reshape(-1)), weights.reshape(-1))
    return torch.from_numpy(matrix)


class SuperResolution(LinearOperator):
    """Down-sampling by an integer factor (default x4: 256 -> 64); bicubic anti-aliased by default (see the module
    doc for `resize="average"` and the kernel model)."""

    def __init__(
        self,
        scale: int = 4,  # down-sampling factor; must divide the image height and width
        noise_sigma: float = 0.01,
        channels: Optional[int] = 3,
        resize: Optional[str] = None,  # "bicubic" (default), "average" (block means), "kernel" (needs kernel=)
        kernel=None,  # a blur kernel (k, k) for the kernel model: tensor, array or .npy / image file
        padding: str = "circular",  # the kernel model's boundaries: "circular" or "reflect"
    ):
        super().__init__(noise_sigma)
        if isinstance(scale, float) and scale.is_integer():
            scale = int(scale)
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise SpgdError(f"super-resolution scale must be a positive integer (2, 4, 8, ...), got {scale!r}")
        if resize is None:
            resize = "kernel" if kernel is not None else "bicubic"
        if resize not in RESIZES:
            raise SpgdError(f"resize must be one of {RESIZES}, got {resize!r}")
        if (resize == "kernel") != (kernel is not None):
            raise SpgdError('super-resolution with resize="kernel" needs kernel=, and a kernel needs resize="kernel"')
        self.scale, self.resize = scale, resize
        self.padding = _check_padding(padding)
        self.channels = check_channels(channels)
        if kernel is not None:
            k = load_kernel(kernel, signed=True)  # a resampling kernel may have negative lobes; used as given
            if k.ndim != 2:
                raise SpgdError(f"super-resolution takes one (k, k) kernel, got shape {tuple(k.shape)}")
            self.register_buffer("kernel", k)
        else:
            self.kernel = None
        self._matrices: Dict[Tuple[int, torch.device, torch.dtype], Tensor] = {}

    def _matrix(self, n: int, like: Tensor) -> Tensor:
        key = (n, like.device, like.dtype)
        if key not in self._matrices:
            self._matrices[key] = imresize_matrix(n, n // self.scale).to(device=like.device, dtype=like.dtype)
        return self._matrices[key]

    def _check_size(self, h: int, w: int) -> None:
        if h % self.scale or w % self.scale:
            raise SpgdError(
                f"super-resolution scale {self.scale} must divide the image size, got {h}x{w}; "
                f"use a size that is a multiple of {self.scale}"
            )

    def _transfer(self, h: int, w: int, like: Tensor) -> Tensor:
        return fourier.transfer_function(self.kernel.flip(-2, -1), h, w, like)  # correlation = flipped convolution

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, "SuperResolution", self.channels, self.scale, self.scale)
        self._check_size(x.shape[2], x.shape[3])
        s = self.scale
        if self.resize == "average":
            return F.avg_pool2d(x, s)
        if self.resize == "kernel":
            if self.padding == "circular":
                return fourier.apply(x, self._transfer(x.shape[2], x.shape[3], x), s)
            return blur(x, self.kernel)[..., 0::s, 0::s]
        wh, ww = self._matrix(x.shape[2], x), self._matrix(x.shape[3], x)
        return torch.einsum("ih,bchw,jw->bcij", wh, x, ww)

    def input_shape(self, y: Tensor) -> tuple:
        """Shape of the unknown image x for a measurement y (samplers start from noise of this shape)."""
        return (*y.shape[:-2], y.shape[-2] * self.scale, y.shape[-1] * self.scale)

    def adjoint(self, y: Tensor) -> Tensor:
        check_image(y, "SuperResolution.adjoint", self.channels)
        s = self.scale
        h, w = y.shape[2] * s, y.shape[3] * s
        if self.resize == "average":
            return F.interpolate(y, scale_factor=s, mode="nearest") / (s * s)
        if self.resize == "kernel":
            if self.padding == "circular":
                return fourier.apply_adjoint(y, self._transfer(h, w, y), s)
            return blur_adjoint(fourier.upsample_zeros(y, s), self.kernel)
        wh, ww = self._matrix(h, y), self._matrix(w, y)
        return torch.einsum("ih,bcij,jw->bchw", wh, y, ww)

    def pseudo_inverse(self, y: Tensor, lam: float = 0.0, iters: int = 0) -> Tensor:
        """The classical estimate: bicubic up-sampling (`lam` and `iters` do not apply)."""
        return self.upsample(y)

    def upsample(self, y: Tensor) -> Tensor:
        """Bicubic up-sampling of y by the same factor (a plain initial guess, not the adjoint)."""
        h, w = y.shape[2] * self.scale, y.shape[3] * self.scale
        uh = imresize_matrix(y.shape[2], h).to(device=y.device, dtype=y.dtype)
        uw = imresize_matrix(y.shape[3], w).to(device=y.device, dtype=y.dtype)
        return torch.einsum("ih,bchw,jw->bcij", uh, y, uw)

    # -- capabilities ----------------------------------------------------------------------------------------
    def _kernel_factors(self):
        if self.resize != "kernel" or self.padding != "reflect":
            return None
        return separable_factors(self.kernel)

    @property
    def svd_kind(self) -> str:  # type: ignore[override]
        if self.resize in ("bicubic", "average") or self._kernel_factors() is not None:
            return "exact"
        return ""

    @property
    def no_svd_reason(self) -> str:
        if self.padding == "circular":
            return "the circular kernel model's decomposition is Fourier-based, not offered as an SVD"
        return "its kernel is not separable"

    def svd(self, x_shape):
        """The exact SVD shared by the batch: DDRM's block-average layout, or the Kronecker product of the 1-D
        resizing matrices (bicubic, or a separable kernel with reflected boundaries followed by decimation)."""
        b, c, h, w = x_shape
        self._check_size(h, w)
        s = self.scale
        if self.resize == "average":
            return BlockAverageSVD(s, (c, h, w))
        if self.resize == "bicubic":
            return SeparableSVD(imresize_matrix(h, h // s), imresize_matrix(w, w // s), c)
        factors = self._kernel_factors()
        if factors is None:
            raise SpgdError(f"SuperResolution has no exact SVD here: {self.no_svd_reason}")
        col, row = factors
        return SeparableSVD(reflect_matrix(col, h)[0::s], reflect_matrix(row, w)[0::s], c)

    def prox(self, z: Tensor, y: Tensor, rho) -> Tensor:
        if not (self.resize == "kernel" and self.padding == "circular"):
            return super().prox(z, y, rho)
        rho_t = torch.as_tensor(rho, dtype=z.dtype, device=z.device).expand(z.shape[0])
        with torch.no_grad():
            return fourier.prox(z, y, self._transfer(z.shape[2], z.shape[3], z), self.scale, rho_t)

    def pinv(self, y: Tensor) -> Tensor:
        if self.resize == "average":  # A^+ = scale^2 A^T: each block mean copied to its block
            return F.interpolate(y, scale_factor=self.scale, mode="nearest")
        if not (self.resize == "kernel" and self.padding == "circular"):
            return super().pinv(y)
        h, w = y.shape[2] * self.scale, y.shape[3] * self.scale
        with torch.no_grad():
            return fourier.pinv(y, self._transfer(h, w, y), self.scale)

    @property
    def prox_kind(self) -> str:  # type: ignore[override]
        return "FFT (exact)" if self.resize == "kernel" and self.padding == "circular" else super().prox_kind

    @property
    def pinv_kind(self) -> str:  # type: ignore[override]
        if self.resize == "average":
            return "closed form"
        return "FFT (exact, truncated)" if self.resize == "kernel" and self.padding == "circular" else super().pinv_kind
