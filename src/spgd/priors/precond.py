"""VP preconditioning (EDM, Karras et al. 2022, Table 1): an epsilon-prediction network as a denoiser D(x; sigma).

Networks trained here may instead use EDM's output scaling (`scaling="edm"`), which bounds the denoiser's error
at high noise: an epsilon network's D = x - sigma * F multiplies any error of F by sigma (100 at the top of the
samplers' schedule), and a small network cannot learn F to the ~1 % that needs.

References:
    Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", arXiv 2206.00364.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..errors import SpgdError
from ..tensors import append_dims
from .base import Prior, SigmaLike, frozen, sigma_as_batch
from .execution import NetworkRunner

SCALINGS = ("eps", "edm")


class VPPrecond(Prior):
    """D(x; sigma) = c_skip * x + c_out * F(c_in * x, c_noise) for a network F trained on the VP SDE.

    c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1), c_noise = (M - 1) * t(sigma), where
    sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) and t(sigma) its inverse. F predicts epsilon;
    when it also returns learned-variance channels (guided-diffusion `learn_sigma`), the first
    `img_channels` are used. By default the network runs in float32 with frozen weights; gradients reach x.

    `scaling="edm"` (networks trained by `spgd train`): c_skip = sd^2 / (sigma^2 + sd^2),
    c_out = -sigma * sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2) with sd = `sigma_data`, and the
    same c_noise. Its sign and its low-noise limit (c_skip -> 1, c_out -> -sigma) are those of the epsilon form,
    so an epsilon network is a good start for it; at high noise D -> -sd * F, bounded. `loss` is the training
    loss of that D (EDM's, lambda = 1 / c_out^2).

    How F runs (precision, channels_last, compile, compile_mode, param_grads: `configure`) is the business of
    `self.runner`, a `spgd.priors.execution.NetworkRunner`; none of it changes what D computes beyond rounding.
    """

    def __init__(
        self,
        net: nn.Module | Callable[[Tensor, Tensor], Tensor],  # F(x_in, t) -> epsilon, t in [0, M-1]
        img_channels: int = 3,  # channels of x; the leading channels of F's output
        beta_d: float = 19.9,  # extent of the linear beta schedule
        beta_min: float = 0.1,  # initial beta
        M: int = 1000,  # number of discrete timesteps the network was trained with
        epsilon_t: float = 1e-5,  # smallest t, fixing sigma_min
        scaling: str = "eps",  # "eps": D = x - sigma F (guided-diffusion/DPS checkpoints); "edm": see above
        sigma_data: float = 0.5,  # EDM's data standard deviation (scaling="edm" only)
        **execution: Any,  # precision, channels_last, compile, compile_mode, param_grads: see `configure`
    ):
        super().__init__()
        if scaling not in SCALINGS:
            raise SpgdError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        if not sigma_data > 0:
            raise SpgdError(f"sigma_data must be > 0, got {sigma_data}")
        self.net = frozen(net)
        self.img_channels = img_channels
        self.beta_d, self.beta_min, self.M, self.epsilon_t = beta_d, beta_min, M, epsilon_t
        self.scaling, self.sigma_data = scaling, float(sigma_data)
        self.sigma_min, self.sigma_max = float(self.sigma(epsilon_t)), float(self.sigma(1.0))
        self.runner = NetworkRunner(net)
        self.configure(**execution)

    def configure(
        self,
        precision: Optional[str] = None,  # "fp32", or "bf16": autocast for the network call only
        channels_last: Optional[bool] = None,  # NHWC memory format for the network
        compile: Optional[bool] = None,  # torch.compile the network (eager fallback with a warning)
        compile_mode: Optional[str] = None,  # "default", "reduce-overhead", "max-autotune", ..., "auto"
        param_grads: Optional[bool] = None,  # reference mode: parameter gradients too (the released code's cost)
    ) -> "VPPrecond":
        """Change how the network is run (None keeps a setting; see `spgd.priors.execution`); returns self."""
        self.runner.configure(precision, channels_last, compile, compile_mode, param_grads)
        return self

    def settings(self) -> dict:
        """The execution settings, as `configure` takes them."""
        return self.runner.settings()

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

    def scalings(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in) at noise levels s (any shape)."""
        if self.scaling == "edm":
            sd2 = self.sigma_data**2
            return sd2 / (s**2 + sd2), -s * self.sigma_data / (s**2 + sd2).sqrt(), 1 / (s**2 + sd2).sqrt()
        return s.new_ones(()), -s, 1 / (s**2 + 1).sqrt()  # c_skip = 1: a scalar, nothing per pixel

    def denoise(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        sigma = sigma_as_batch(sigma, x)
        c_skip, c_out, c_in = self.scalings(append_dims(sigma, x.ndim))
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        f = self.runner((c_in * x).to(torch.float32), c_noise.to(torch.float32))
        f = f[:, : self.img_channels].to(x.dtype)
        if self.scaling == "eps":
            return x + c_out * f  # c_skip = 1: kept exact, as the checkpoints' reference code computes it
        return c_skip * x + c_out * f

    def loss(self, x0: Tensor, sigma: Tensor, noise: Tensor) -> Tensor:
        """EDM's training loss at per-sample noise levels sigma (B,) and noise n like x0: the mean of
        lambda(sigma) (D(x0 + sigma n; sigma) - x0)^2 with lambda = 1 / c_out^2, i.e. the MSE of the network's own
        output against its target, equal weight at every sigma (for "eps": the epsilon MSE (F - n)^2)."""
        s = append_dims(sigma, x0.ndim)
        denoised = self.denoise(x0 + s * noise, sigma)
        c_out = self.scalings(s)[1]
        return ((denoised - x0) / c_out).square().mean()

    def ddpm_betas(self) -> Optional[Tensor]:
        """The discrete schedule the network was trained on, beta_t = (beta_min + beta_d * t / (M - 1)) / M for
        t = 0..M-1 (guided-diffusion's linear schedule, 1e-4 .. 0.02 for the defaults), float64 (M,); None for an
        EDM-scaled network, whose output is not an epsilon prediction at integer timesteps."""
        if self.scaling != "eps":
            return None
        return torch.linspace(self.beta_min / self.M, (self.beta_min + self.beta_d) / self.M, self.M, dtype=torch.float64)

    def ddpm_eps(self, x_t: Tensor, timestep: int) -> tuple[Tensor, Optional[Tensor]]:
        """The network's raw output at the DDPM state x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps and integer
        timestep t, as the DPS/guided-diffusion code queries it: (epsilon, v), where v (in [-1, 1] by training)
        interpolates the log-variance between the posterior's and beta_t when the checkpoint learned it
        (`learn_sigma`: 2 * img_channels outputs), else None."""
        c_noise = torch.full((x_t.shape[0],), float(timestep), dtype=torch.float32, device=x_t.device)
        f = self.runner(x_t.to(torch.float32), c_noise).to(x_t.dtype)
        c = self.img_channels
        return f[:, :c], (f[:, c : 2 * c] if f.shape[1] >= 2 * c else None)

    def extra_repr(self) -> str:
        sigmas = f"sigma=[{self.sigma_min:.4g}, {self.sigma_max:.4g}]"
        execution = self.runner.extra_repr()
        execution = f", {execution}" if execution else ""
        scaling = "" if self.scaling == "eps" else f", scaling=edm, sigma_data={self.sigma_data}"
        return f"beta_d={self.beta_d}, beta_min={self.beta_min}, M={self.M}{scaling}, {sigmas}{execution}"
