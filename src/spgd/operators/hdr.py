"""High dynamic range: y = clip(scale * x, -1, 1) (over-exposure saturates the bright and dark ends)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..errors import SpgdError
from .base import Operator, check_channels, check_image


class HighDynamicRange(Operator):
    """HDR task of the benchmark (scale 2). Non-linear: there is no adjoint."""

    def __init__(
        self,
        scale: float = 2.0,  # exposure gain before clipping to [-1, 1]
        noise_sigma: float = 0.05,
        channels: Optional[int] = 3,
    ):
        super().__init__(noise_sigma)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
            raise SpgdError(f"HDR scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self.channels = check_channels(channels)

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, "HighDynamicRange", self.channels)
        return torch.clamp(self.scale * x, -1.0, 1.0)
