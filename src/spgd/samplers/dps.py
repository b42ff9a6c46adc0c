"""DPS: Diffusion Posterior Sampling (Chung et al., ICLR 2023), on any denoiser D(x; sigma).

References:
    Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy Inverse Problems",
    arXiv:2209.14687.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from ..priors.base import append_dims
from .base import (
    Callback,
    CostMeter,
    FailureTracker,
    GeneratorLike,
    Result,
    fresh_noise,
    infer_x_shape,
    initial_noise,
    prepare,
    progress,
)


def ddpm_alphas_cumprod(num_train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """abar_t of the linear DDPM schedule (Ho et al. 2020) the DPS/guided-diffusion checkpoints use (float64)."""
    betas = torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


@dataclass
class DPS:
    """Ancestral DDPM sampling with one measurement-gradient step per step.

    In VP form x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, the denoiser is queried as
    x0_hat = D(x_t / sqrt(abar_t); sigma_t) with sigma_t = sqrt((1 - abar_t) / abar_t). Each step:

        x'_{t-1} = mu_t(x_t, clip(x0_hat)) + sqrt(beta~_t) z        (DDPM posterior q(x_{t-1} | x_t, x0))
        x_{t-1}  = x'_{t-1} - lr * grad_{x_t} ||y - A(x0_hat)||       (per sample)

    The gradient of the norm (not its square) is the squared-norm gradient divided by the residual norm, the
    step-size normalisation of DPS, per sample. `steps` < 1000 respaces the schedule as guided-diffusion does.
    Differences from the released DPS code: the variance is the fixed posterior variance beta~_t, not the
    checkpoint's learned range (our priors expose only the mean), and t <-> sigma go through the denoiser's own
    preconditioning.
    """

    steps: int = 1000  # DDPM steps (respaced from 1000 training steps)
    lr: float = 1.0  # zeta', the step size before division by the residual norm (per task: presets)
    clip_denoised: bool = True  # clamp x0_hat to [-1, 1] as the DPS code does (images only)
    check_every: int = 50
    progress: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise SpgdError(f"steps must be in [1, 1000] for DPS, got {self.steps}")
        if not self.lr >= 0:
            raise SpgdError(f"lr must be >= 0, got {self.lr}")

    def settings(self) -> dict:
        return asdict(self)

    def schedule(self) -> tuple[list[float], list[float]]:
        """(abar_t, abar_prev) for the respaced timesteps, from the noisiest to t = 0."""
        abar_all = ddpm_alphas_cumprod()
        idx = torch.linspace(0, 999, self.steps).round().long().unique()
        abar = abar_all[idx]
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        return abar.flip(0).tolist(), abar_prev.flip(0).tolist()

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
        abars, abar_prevs = self.schedule()
        x = initial_noise(shape, 1.0, generator, y.device, y.dtype) if x_start is None else x_start.to(y)
        tracker = FailureTracker(shape[0], y.device, self.check_every)
        n = len(abars)
        steps = progress(range(n), "dps", self.progress)

        with CostMeter(y.device, shape[0]) as meter:
            for i in steps:
                abar, abar_prev = abars[i], abar_prevs[i]
                beta = 1 - abar / abar_prev
                sigma = ((1 - abar) / abar) ** 0.5
                meter.stats.denoiser_calls += 1
                meter.stats.vjps += 1
                with torch.enable_grad():
                    xt = x.detach().requires_grad_(True)
                    x0_hat = prior.denoise(xt / abar**0.5, sigma)
                    if self.clip_denoised:
                        x0_hat = x0_hat.clamp(-1, 1)
                    norm = (y - operator.forward(x0_hat)).flatten(1).norm(dim=1)
                    (grad,) = torch.autograd.grad(norm.sum(), xt)
                x0_hat = x0_hat.detach()
                # DDPM posterior mean and variance of x_{t-1} given x_t and x0_hat
                c0 = abar_prev**0.5 * beta / (1 - abar)
                ct = (1 - beta) ** 0.5 * (1 - abar_prev) / (1 - abar)
                x_prev = c0 * x0_hat + ct * x.detach()
                if i < n - 1:
                    var = beta * (1 - abar_prev) / (1 - abar)
                    x_prev = x_prev + var**0.5 * fresh_noise(x_prev, generator)
                x_new = x_prev - self.lr * grad
                x = tracker.check(tracker.freeze(x_new, x), i, last=i == n - 1)
                if callback is not None:
                    callback({"step": i, "sigma": sigma, "x": x, "x0_hat": x0_hat, "loss": [norm.detach() ** 2],
                              "alive": tracker.alive})
            tracker.report(meter.stats)
        return Result(x=x, stats=meter.stats)
