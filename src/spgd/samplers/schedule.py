"""Noise-level and step-size schedules shared by the samplers."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import SpgdError

# The noise levels of the SPGD and DAPS releases: a Karras schedule from SIGMA_MAX down to SIGMA_MIN, exponent RHO
SIGMA_MAX, SIGMA_MIN, RHO = 100.0, 0.1, 7.0


def karras_sigmas(steps: int, sigma_max: float = SIGMA_MAX, sigma_min: float = SIGMA_MIN, rho: float = RHO) -> Tensor:
    """Karras et al. (2022) schedule: `steps` levels from sigma_max down to sigma_min, then a final 0.

    sigma_i = (sigma_max^(1/rho) + i/(steps-1) * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0..steps-1.
    Returned in float64, shape (steps + 1,).
    """
    if steps < 1:
        raise SpgdError(f"steps must be >= 1, got {steps}")
    if not (sigma_max > 0 and sigma_min > 0 and sigma_max >= sigma_min):
        raise SpgdError(f"need sigma_max >= sigma_min > 0, got sigma_max={sigma_max}, sigma_min={sigma_min}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def ve_euler_factors(sigmas: Tensor) -> Tensor:
    """2 * sigma_k * (sigma_k - sigma_{k+1}): the score multiplier of a VE probability-flow Euler step (x2)."""
    return (2 * sigmas[:-1] * (sigmas[:-1] - sigmas[1:])).clamp_min(0)


def linear_lr(lr: float, lr_min_ratio: float, steps: int) -> Tensor:
    """lr_k = lr * (1 + (k/K) * (lr_min_ratio - 1)), k = 0..K-1 (float64, shape (K,))."""
    k = torch.arange(steps, dtype=torch.float64)
    return lr * (1 + (k / steps) * (lr_min_ratio - 1))
