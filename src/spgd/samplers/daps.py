"""DAPS: Decoupled Annealing Posterior Sampling (Zhang et al., CVPR 2025), the method SPGD's code derives from.

References:
    Zhang, Chu, Berner, Meng, Anandkumar, Song, "Improving Diffusion Inverse Problem Solving with Decoupled
    Noise Annealing", arXiv:2407.01521.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from .base import (
    Callback,
    CostMeter,
    FailureTracker,
    GeneratorLike,
    Result,
    denoise,
    fresh_noise,
    infer_x_shape,
    initial_noise,
    prepare,
    progress,
)
from .schedule import karras_sigmas, linear_lr


@dataclass
class DAPS:
    """Per annealing level sigma_k (Karras schedule, then 0), from x_k:

    1. x0_hat: Euler solve of the probability-flow ODE from sigma_k to `ode_sigma_min` in `ode_steps` steps;
    2. Langevin on x0 started at x0_hat, `langevin_steps` steps of size lr_k (linear decay to lr*lr_min_ratio):
       x0 <- x0 + lr_k * (-grad ||A(x0) - y||^2 / tau^2 + (x0_hat - x0) / sigma_k^2) + sqrt(2 lr_k) * z
       (no backpropagation through the network);
    3. re-noise: x_{k+1} = x0 + sigma_{k+1} * z.

    Defaults are the paper's DAPS-1K pixel-space settings (200 levels x 5 ODE steps; 100 Langevin steps,
    lr 1e-4, tau 0.01; phase retrieval uses lr 5e-5: see presets).
    """

    steps: int = 200  # annealing levels
    ode_steps: int = 5  # Euler steps of the inner probability-flow ODE (denoiser calls per level)
    ode_sigma_min: float = 0.01
    langevin_steps: int = 100
    lr: float = 1e-4  # Langevin step size
    lr_min_ratio: float = 0.01
    tau: float = 0.01  # measurement noise scale of the Langevin likelihood
    sigma_max: float = 100.0
    sigma_min: float = 0.1
    rho: float = 7.0
    check_every: int = 10
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "ode_steps"):
            if getattr(self, name) < 1:
                raise SpgdError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.langevin_steps < 0:
            raise SpgdError(f"langevin_steps must be >= 0, got {self.langevin_steps}")
        if not (self.lr > 0 and self.tau > 0):
            raise SpgdError(f"lr and tau must be > 0, got lr={self.lr}, tau={self.tau}")
        karras_sigmas(self.steps, self.sigma_max, self.sigma_min, self.rho)

    def settings(self) -> dict:
        return asdict(self)

    def run(
        self,
        y: Tensor,
        operator,
        prior,
        generator: GeneratorLike = None,
        callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None,
        x_shape: Optional[Sequence[int]] = None,
    ) -> Result:
        prior = prepare(prior, y)
        shape = infer_x_shape(y, operator, x_shape)
        K = self.steps
        sigmas = karras_sigmas(K, self.sigma_max, self.sigma_min, self.rho).tolist()
        lrs = linear_lr(self.lr, self.lr_min_ratio, K).tolist()
        s_lo, s_hi = float(getattr(prior, "sigma_min", 0.0)), float(getattr(prior, "sigma_max", float("inf")))
        x = initial_noise(shape, sigmas[0], generator, y.device, y.dtype) if x_start is None else x_start.to(y)
        tracker = FailureTracker(shape[0], y.device, self.check_every)
        levels = progress(range(K), "daps", self.progress)

        with CostMeter(y.device, shape[0]) as meter:
            for k in levels:
                sigma, lr_k = sigmas[k], lrs[k]
                # 1. x0_hat from the probability-flow ODE, sigma_k -> ode_sigma_min
                sub = karras_sigmas(self.ode_steps, sigma, min(self.ode_sigma_min, sigma), self.rho).tolist()[:-1]
                sub.append(min(self.ode_sigma_min, sigma))
                z = x
                for s, s_next in zip(sub[:-1], sub[1:]):
                    d = denoise(prior, z, min(max(s, s_lo), s_hi), meter)
                    z = z + (1 - s_next / s) * (d - z)
                x0_hat = z
                # 2. Langevin dynamics on x0 | x_k, y (gradients of the operator only)
                x0 = x0_hat
                loss = None
                for _ in range(self.langevin_steps):
                    with torch.enable_grad():
                        v = x0.detach().requires_grad_(True)
                        loss = (operator.forward(v) - y).pow(2).flatten(1).sum(1)
                        (g,) = torch.autograd.grad(loss.sum(), v)
                    score = -g / self.tau**2 + (x0_hat - x0) / sigma**2
                    x0 = x0 + lr_k * score + (2 * lr_k) ** 0.5 * fresh_noise(x0, generator)
                # 3. re-noise to the next level
                x_new = x0 + sigmas[k + 1] * fresh_noise(x0, generator) if sigmas[k + 1] > 0 else x0
                x = tracker.check(tracker.freeze(x_new, x), k, last=k == K - 1)
                if callback is not None:
                    callback({"step": k, "sigma": sigma, "x": x, "x0_hat": x0_hat, "x0_y": x0,
                              "loss": [] if loss is None else [loss.detach()], "alive": tracker.alive})
            tracker.report(meter.stats)
        return Result(x=x, stats=meter.stats)
