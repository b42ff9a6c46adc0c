"""Discrete-time diffusion models (DDPM-style, T timesteps) as VE denoisers D(x; sigma).

A DDPM-family network is trained on x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at integer t in [0, T-1].
Dividing by sqrt(abar_t) gives the variance-exploding form the samplers use, x = x0 + sigma eps with

    sigma_t = sqrt((1 - abar_t) / abar_t),

so a network of this family is a denoiser once (1) the sampler's sigma is mapped to a (fractional) timestep,
(2) the input is scaled back to the VP form, x_t = x / sqrt(1 + sigma^2), and (3) the network's output
(epsilon, v or x0) is converted to x0. This module holds those three pieces, reusable by any discrete-time
prior (pixel-space diffusers UNets, guided-diffusion cosine-schedule checkpoints, latent models):

- `DiscreteSchedule`: abar_t, sigma_t, and sigma <-> t by linear interpolation in log sigma between
  neighbouring timesteps (as k-diffusion's `DiscreteSchedule.sigma_to_t` / `t_to_sigma`);
- `prediction_to_x0`: x0 from an epsilon, v or sample prediction;
- `DiscreteTimePrior`: the Prior built from both around a network F(x_t, t).

References:
    Ho et al., "Denoising Diffusion Probabilistic Models", arXiv 2006.11239 (epsilon prediction).
    Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", arXiv 2202.00512 (v).
    Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", arXiv 2206.00364
    (VP <-> VE, Table 1); crowsonkb/k-diffusion `k_diffusion/external.py` (discrete-time wrappers).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import SpgdError
from ..tensors import append_dims
from .base import Prior, SigmaLike, frozen, sigma_as_batch

PREDICTIONS = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "cosine")
# abar of a zero-terminal-SNR schedule is 0 at t = T-1 (sigma infinite); it is replaced by this, as diffusers does.
_ABAR_FLOOR = 2.0**-24


def betas_for(schedule: str, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """The beta_t of a named schedule, float64 (T,).

    linear: beta_t evenly spaced from beta_start to beta_end (DDPM; guided-diffusion's "linear" is
    beta_start = 1e-4 * 1000 / T, beta_end = 0.02 * 1000 / T); scaled_linear: sqrt(beta)
    evenly spaced (Stable Diffusion); cosine / squaredcos_cap_v2: beta_t = min(1 - abar(t+1)/abar(t), 0.999),
    abar(t) = cos((t/T + 0.008) / 1.008 * pi/2)^2 (Nichol & Dhariwal 2021, arXiv 2102.09672).
    """
    if num_timesteps < 2:
        raise SpgdError(f"a discrete schedule needs at least 2 timesteps, got {num_timesteps}")
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
    if schedule in ("cosine", "squaredcos_cap_v2"):

        def abar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        T = num_timesteps
        return torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)], dtype=torch.float64)
    raise SpgdError(f"unknown beta schedule {schedule!r}; valid: {', '.join(BETA_SCHEDULES)}")


class DiscreteSchedule(nn.Module):
    """abar_t (t = 0..T-1) with sigma_t = sqrt((1 - abar_t) / abar_t) and the maps sigma <-> t.

    `sigma_to_t` interpolates t linearly in log sigma between the two neighbouring timesteps and clamps to
    [0, T-1]; at sigma = sigma_t it returns t exactly (up to float64 rounding). `t_to_sigma` is its inverse.
    """

    def __init__(self, alphas_cumprod: Tensor):
        super().__init__()
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        if abar.numel() < 2 or not torch.isfinite(abar).all() or (abar > 1).any() or (abar < 0).any():
            raise SpgdError("alphas_cumprod must be at least 2 finite values in [0, 1]")
        if (abar[1:] > abar[:-1]).any():
            raise SpgdError("alphas_cumprod must be non-increasing in t")
        positive = abar[abar > 0]
        if positive.numel() < abar.numel():  # zero terminal SNR: a finite sigma_max
            abar = torch.where(abar > 0, abar, torch.as_tensor(min(_ABAR_FLOOR, float(positive.min()) / 2)).to(abar))
        self.register_buffer("alphas_cumprod", abar, persistent=False)
        self.register_buffer("log_sigmas", (((1 - abar) / abar).sqrt()).log(), persistent=False)

    @classmethod
    def from_betas(cls, betas: Tensor) -> "DiscreteSchedule":
        return cls(torch.cumprod(1 - torch.as_tensor(betas, dtype=torch.float64), dim=0))

    @property
    def num_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    @property
    def sigmas(self) -> Tensor:
        return self.log_sigmas.exp()

    @property
    def sigma_min(self) -> float:
        return float(self.log_sigmas[0].exp())

    @property
    def sigma_max(self) -> float:
        return float(self.log_sigmas[-1].exp())

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """Fractional timesteps (same shape as sigma, float64) for noise levels sigma > 0."""
        log_sigma = sigma.to(self.log_sigmas).clamp(min=1e-30).log()
        ls = self.log_sigmas
        # index of the largest log sigma_t <= log sigma, kept one below the top so high = low + 1 exists
        low = (torch.searchsorted(ls, log_sigma.reshape(-1), right=True) - 1).clamp(0, ls.numel() - 2)
        low = low.reshape(log_sigma.shape)
        w = ((log_sigma - ls[low]) / (ls[low + 1] - ls[low])).clamp(0, 1)
        return low + w

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """Noise levels (float64) at fractional timesteps t in [0, T-1]."""
        t = t.to(self.log_sigmas).clamp(0, self.num_timesteps - 1)
        low = t.floor().long().clamp(max=self.num_timesteps - 2)
        w = t - low
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[low + 1]).exp()


def prediction_to_x0(prediction: str, out: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
    """x0 from a network output `out` at VE input x = x0 + sigma eps (sigma broadcastable to x).

    With abar = 1 / (1 + sigma^2) and the network's input x_t = sqrt(abar) x:
    epsilon: x0 = x - sigma eps; v_prediction (v = sqrt(abar) eps - sqrt(1 - abar) x0):
    x0 = sqrt(abar) x_t - sqrt(1 - abar) v = x / (1 + sigma^2) - sigma / sqrt(1 + sigma^2) v; sample: x0 = out.
    """
    if prediction == "epsilon":
        return x - sigma * out
    if prediction == "v_prediction":
        return x / (1 + sigma**2) - sigma / (1 + sigma**2).sqrt() * out
    if prediction == "sample":
        return out
    raise SpgdError(f"unknown prediction type {prediction!r}; valid: {', '.join(PREDICTIONS)}")


class DiscreteTimePrior(Prior):
    """D(x; sigma) for a discrete-time network F(x_t, t) (t a fractional timestep in [0, T-1]).

    D(x; sigma) = prediction_to_x0(F(x / sqrt(1 + sigma^2), t(sigma))[:, :C], x, sigma), where t(sigma) is
    `schedule.sigma_to_t` and C = `img_channels` (extra learned-variance channels are dropped). The sigma range
    is that of the schedule: [sigma_0, sigma_{T-1}]. Network weights are frozen; gradients reach x only.
    """

    def __init__(
        self,
        net: nn.Module | Callable[[Tensor, Tensor], Tensor],  # F(x_t, t) -> epsilon / v / x0 (+ variance)
        schedule: DiscreteSchedule,  # abar_t of the training process
        prediction: str = "epsilon",  # what F predicts: "epsilon", "v_prediction" or "sample"
        img_channels: int = 3,  # channels of x; the leading channels of F's output
        description: str = "",  # what was loaded (shown in repr and by `spgd models`)
    ):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise SpgdError(f"unknown prediction type {prediction!r}; valid: {', '.join(PREDICTIONS)}")
        self.net = frozen(net)
        self.schedule = schedule
        self.prediction = prediction
        self.img_channels = int(img_channels)
        self.description = description
        self.sigma_min = schedule.sigma_min
        self.sigma_max = schedule.sigma_max

    def train(self, mode: bool = True) -> "DiscreteTimePrior":
        super().train(mode)
        if isinstance(self.net, nn.Module):
            self.net.eval()  # a fixed prior: dropout stays off
        return self

    def denoise(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        if x.ndim >= 2 and x.shape[1] != self.img_channels:
            raise SpgdError(
                f"this prior models {self.img_channels}-channel images, got {x.shape[1]} channels "
                f"(shape {tuple(x.shape)})"
            )
        s = sigma_as_batch(sigma, x)
        t = self.schedule.sigma_to_t(s).to(torch.float32)
        s = append_dims(s, x.ndim)
        out = self.net((x / (1 + s**2).sqrt()).to(torch.float32), t)
        out = out[:, : self.img_channels].to(x.dtype)
        return prediction_to_x0(self.prediction, out, x, s)

    def extra_repr(self) -> str:
        head = f"{self.description}, " if self.description else ""
        return (
            f"{head}prediction={self.prediction}, T={self.schedule.num_timesteps}, "
            f"sigma=[{self.sigma_min:.4g}, {self.sigma_max:.4g}]"
        )
