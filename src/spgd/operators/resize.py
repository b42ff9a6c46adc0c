"""Super-resolution: bicubic anti-aliased down-sampling, MATLAB ``imresize`` style.

The same computation as the ``Resizer`` of DPS (``util/resizer.py``) that DPS, DAPS and SPGD use: the
Keys cubic kernel (a = -0.5) stretched by 1/scale (anti-aliasing), weights normalised to sum 1 per output
pixel, and symmetric (half-sample mirror) boundary handling. It is separable, so it is written as one
weight matrix per axis: y = W_h x W_w^T, exact and fast, with the adjoint W_h^T y W_w.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import SpgdError
from .base import LinearOperator, check_channels, check_image


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
    """Down-sampling by an integer factor (default x4: 256 -> 64) with the bicubic anti-aliased resize."""

    def __init__(
        self,
        scale: int = 4,  # down-sampling factor; must divide the image height and width
        noise_sigma: float = 0.01,
        channels: Optional[int] = 3,
    ):
        super().__init__(noise_sigma)
        if isinstance(scale, float) and scale.is_integer():
            scale = int(scale)
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise SpgdError(f"super-resolution scale must be a positive integer (2, 4, 8, ...), got {scale!r}")
        self.scale = scale
        self.channels = check_channels(channels)
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

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, "SuperResolution", self.channels, self.scale, self.scale)
        self._check_size(x.shape[2], x.shape[3])
        wh, ww = self._matrix(x.shape[2], x), self._matrix(x.shape[3], x)
        return torch.einsum("ih,bchw,jw->bcij", wh, x, ww)

    def input_shape(self, y: Tensor) -> tuple:
        """Shape of the unknown image x for a measurement y (samplers start from noise of this shape)."""
        return (*y.shape[:-2], y.shape[-2] * self.scale, y.shape[-1] * self.scale)

    def adjoint(self, y: Tensor) -> Tensor:
        check_image(y, "SuperResolution.adjoint", self.channels)
        h, w = y.shape[2] * self.scale, y.shape[3] * self.scale
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
