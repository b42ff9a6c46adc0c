"""Denoising: A = identity, y = x + noise (the simplest task; also handy in tests)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LinearOperator
from .spectral import IdentitySVD


class Denoising(LinearOperator):
    """y = x + N(0, noise_sigma^2). Works on tensors of any shape."""

    def __init__(self, noise_sigma: float = 0.05):
        super().__init__(noise_sigma)

    def forward(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        return y

    # capabilities (spgd.operators.capabilities), all in closed form
    svd_kind = "exact"
    prox_kind = "closed form"
    pinv_kind = "closed form"

    def svd(self, x_shape) -> IdentitySVD:
        return IdentitySVD(tuple(x_shape)[1:])

    def prox(self, z: Tensor, y: Tensor, rho) -> Tensor:
        """argmin_x ||y - x||^2 + rho ||x - z||^2 = (y + rho z) / (1 + rho)."""
        r = torch.as_tensor(rho, dtype=z.dtype, device=z.device).reshape(-1, *([1] * (z.ndim - 1)))
        return (y + r * z) / (1 + r)

    def pinv(self, y: Tensor) -> Tensor:
        return y

