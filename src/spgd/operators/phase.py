"""Fourier phase retrieval: y = |F pad((x + 1) / 2)|, the amplitude of the centred orthonormal 2-D DFT."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SpgdError
from .base import Operator, check_channels, check_image


def phase_retrieval(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Map x from [-1, 1] to [0, 1], zero-pad by (pad_h, pad_w) per side, |fftshift(fft2(., "ortho"))|."""
    x01 = (x + 1.0) / 2.0
    padded = F.pad(x01, (pad_w, pad_w, pad_h, pad_h))
    spectrum = torch.fft.fftshift(torch.fft.fft2(padded, norm="ortho"), dim=(-2, -1))
    return spectrum.abs()


class PhaseRetrieval(Operator):
    """Phase retrieval of the benchmark (oversampling 2.0: 256 -> 384 after padding 64 px per side).

    The padding per side is ``int(oversample / 8 * size)`` (the reference code's rule, there with size 256).
    Non-linear: there is no adjoint.
    """

    def __init__(
        self,
        oversample: float = 2.0,  # padding per side is oversample / 8 of the image size
        noise_sigma: float = 0.05,
        channels: Optional[int] = 3,
    ):
        super().__init__(noise_sigma)
        if isinstance(oversample, bool) or not isinstance(oversample, (int, float)) or not (
            math.isfinite(oversample) and oversample >= 0
        ):
            raise SpgdError(f"phase retrieval oversample must be a finite number >= 0, got {oversample!r}")
        self.oversample = float(oversample)
        self.channels = check_channels(channels)

    def padding(self, height: int, width: int) -> tuple:
        """Zero padding (per side) for an image of this size."""
        return int(self.oversample / 8.0 * height), int(self.oversample / 8.0 * width)

    def input_shape(self, y: Tensor) -> tuple:
        """Shape of the unknown image x for a measurement y: the size n with n + 2 * padding(n) = y's size."""

        def unpadded(m: int) -> int:
            for n in range(m, 0, -1):
                if n + 2 * int(self.oversample / 8.0 * n) == m:
                    return n
            raise SpgdError(f"no image size gives a phase-retrieval measurement of size {m} at oversample {self.oversample}")

        return (*y.shape[:-2], unpadded(y.shape[-2]), unpadded(y.shape[-1]))

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, "PhaseRetrieval", self.channels)
        return phase_retrieval(x, *self.padding(x.shape[2], x.shape[3]))
