"""VP preconditioning (EDM, Karras et al. 2022, Table 1): an epsilon-prediction network as a denoiser D(x; sigma).

References:
    Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", arXiv 2206.00364.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from .base import Prior, SigmaLike, append_dims, sigma_as_batch


class VPPrecond(Prior):
    """D(x; sigma) = c_skip * x + c_out * F(c_in * x, c_noise) for a network F trained on the VP SDE.

    c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1), c_noise = (M - 1) * t(sigma), where
    sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) and t(sigma) its inverse. F predicts epsilon;
    when it also returns learned-variance channels (guided-diffusion `learn_sigma`), the first
    `img_channels` are used. The network runs in float32 with frozen weights; gradients reach x.
    """

    def __init__(
        self,
        net: nn.Module | Callable[[Tensor, Tensor], Tensor],  # F(x_in, t) -> epsilon, t in [0, M-1]
        img_channels: int = 3,  # channels of x; the leading channels of F's output
        beta_d: float = 19.9,  # extent of the linear beta schedule
        beta_min: float = 0.1,  # initial beta
        M: int = 1000,  # number of discrete timesteps the network was trained with
        epsilon_t: float = 1e-5,  # smallest t, fixing sigma_min
    ):
        super().__init__()
        self.net = net
        if isinstance(net, nn.Module):
            net.requires_grad_(False)
            net.eval()
        self.img_channels = img_channels
        self.beta_d = beta_d
        self.beta_min = beta_min
        self.M = M
        self.epsilon_t = epsilon_t
        self.sigma_min = float(self.sigma(epsilon_t))
        self.sigma_max = float(self.sigma(1.0))

    def sigma(self, t: float | Tensor) -> float | Tensor:
        """VP noise level at time t in [0, 1]."""
        if isinstance(t, Tensor):
            return ((0.5 * self.beta_d * t**2 + self.beta_min * t).exp() - 1).sqrt()
        return math.sqrt(math.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t))

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        """Time t at which the VP noise level is sigma."""
        return ((self.beta_min**2 + 2 * self.beta_d * (1 + sigma**2).log()).sqrt() - self.beta_min) / self.beta_d

    def train(self, mode: bool = True) -> "VPPrecond":
        # The wrapped network stays in eval mode (dropout off): it is a fixed prior.
        super().train(mode)
        if isinstance(self.net, nn.Module):
            self.net.eval()
        return self

    def denoise(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        sigma = sigma_as_batch(sigma, x)
        s = append_dims(sigma, x.ndim)
        c_in = 1 / (s**2 + 1).sqrt()
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        f = self.net((c_in * x).to(torch.float32), c_noise.to(torch.float32))
        eps = f[:, : self.img_channels].to(x.dtype)
        return x - s * eps

    def extra_repr(self) -> str:
        sigmas = f"sigma=[{self.sigma_min:.4g}, {self.sigma_max:.4g}]"
        return f"beta_d={self.beta_d}, beta_min={self.beta_min}, M={self.M}, {sigmas}"
