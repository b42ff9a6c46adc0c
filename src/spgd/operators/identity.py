"""Denoising: A = identity, y = x + noise (the simplest task; also handy in tests)."""

from __future__ import annotations

from torch import Tensor

from .base import LinearOperator


class Denoising(LinearOperator):
    """y = x + N(0, noise_sigma^2). Works on tensors of any shape."""

    def __init__(self, noise_sigma: float = 0.05):
        super().__init__(noise_sigma)

    def forward(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        return y

