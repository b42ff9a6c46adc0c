"""DPS: Diffusion Posterior Sampling (Chung et al., ICLR 2023), as the authors released it.

Matches `DPS2022/diffusion-posterior-sampling` @ effbde7 (`p_sample_loop` with the `ps` conditioning) to float32
precision on a discrete-time epsilon network (tests/samplers/test_baselines.py replays the recorded runs of
../shared/fixtures/reference-dps-daps/). Per-task step sizes: the `[methods.dps]` sections of the presets.

References:
    Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy Inverse Problems",
    arXiv:2209.14687.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from .base import Callback, GeneratorLike, NoiseFn, Result, RunSetup, Sampler

VARIANCES = ("learned_range", "fixed_small")


def respaced_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """The training timesteps a `steps`-step sampler keeps, ascending: guided-diffusion's `space_timesteps` with
    one section (a running sum of the stride (T-1)/(steps-1), rounded)."""
    if steps >= num_train_steps:
        return list(range(num_train_steps))
    stride = (num_train_steps - 1) / (steps - 1) if steps > 1 else 1.0
    kept, cur = [], 0.0
    for _ in range(steps):
        kept.append(round(cur))
        cur += stride
    return kept


@dataclass(frozen=True)
class DDPMSchedule:
    """The respaced DDPM process in loop order (noisiest first): float64 lists, one entry per step."""

    timesteps: list[int]  # the training timestep the network is given
    abar: list[float]
    abar_prev: list[float]
    beta: list[float]
    log_var_clipped: list[float]  # log of the posterior variance, its t = 0 entry replaced by the next one

    @classmethod
    def respaced(cls, train_betas: Tensor, steps: int) -> "DDPMSchedule":
        """Respace a training schedule (betas, float64 (T,)) to `steps` steps as guided-diffusion's
        `SpacedDiffusion` does: the kept timesteps' abar, new betas 1 - abar_t / abar_prev, and abar recomputed
        as their cumulative product."""
        abar_train = torch.cumprod(1 - train_betas.to(torch.float64), 0)
        kept = respaced_timesteps(len(train_betas), steps)
        prev = torch.cat([abar_train.new_ones(1), abar_train[kept][:-1]])
        beta = 1 - abar_train[kept] / prev
        abar = torch.cumprod(1 - beta, 0)
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        var = beta * (1 - abar_prev) / (1 - abar)
        log_var = torch.log(torch.cat([var[1:2], var[1:]])) if len(var) > 1 else torch.log(beta)
        flip = lambda t: t.flip(0).tolist()  # noqa: E731
        return cls(kept[::-1], flip(abar), flip(abar_prev), flip(beta), flip(log_var))

    def sigma(self, i: int) -> float:
        """Step i's noise level in the VE form, sqrt((1 - abar) / abar)."""
        return ((1 - self.abar[i]) / self.abar[i]) ** 0.5


def _f32(c: float) -> float:
    """A coefficient rounded to float32 before it multiplies, as the released code casts its tables."""
    return float(torch.tensor(c, dtype=torch.float32))


@dataclass
class DPS(Sampler):
    """Ancestral DDPM sampling with one measurement-gradient step per step (Algorithm 1 of the paper):

        x0_hat   = clip(sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps(x_t, t), -1, 1)
        x'_{t-1} = mu_t(x_t, x0_hat) + exp(logvar_t / 2) z                 (no noise at the last step)
        x_{t-1}  = x'_{t-1} - lr * grad_{x_t} ||y - A(x0_hat)||             (per sample; the released `scale`)

    The norm is not squared (DPS's step-size normalisation), and its gradient runs through the network and the
    clip. `steps` < 1000 respaces the schedule as guided-diffusion does. `variance="learned_range"` (the released
    configuration) interpolates logvar_t between the posterior's and log beta_t with the checkpoint's extra output
    channels; `"fixed_small"` uses the posterior variance.

    The network is queried at the integer training timestep when the prior offers it (`ddpm_betas` and
    `ddpm_eps`, as `VPPrecond` does for epsilon checkpoints). Any other prior (the analytic Gaussian prior, an EDM-
    scaled network, a callable) gets the same loop on the linear DDPM schedule with x0_hat = D(x_t / sqrt(abar_t);
    sigma_t), sigma_t = sqrt((1 - abar_t) / abar_t) clipped to the prior's range, and the fixed variance.
    """

    steps: int = 1000  # DDPM steps (respaced from the training steps; released: 1000)
    lr: float = 1.0  # the released `scale` zeta (per task: the presets' [methods.dps])
    variance: str = "learned_range"  # "learned_range" (released) or "fixed_small"
    clip_denoised: bool = True  # clamp x0_hat to [-1, 1] as the released code does (images only)
    check_every: int = 50
    progress: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise SpgdError(f"steps must be in [1, 1000] for DPS, got {self.steps}")
        if not self.lr >= 0:
            raise SpgdError(f"lr must be >= 0, got {self.lr}")
        if self.variance not in VARIANCES:
            raise SpgdError(f"variance must be one of {VARIANCES}, got {self.variance!r}")

    def schedule(self, prior=None) -> DDPMSchedule:
        """The respaced schedule: the prior's own training schedule when it has one, else the linear one."""
        betas = getattr(prior, "ddpm_betas", lambda: None)()
        if betas is None:
            betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        if self.steps > len(betas):
            raise SpgdError(f"steps must be <= the prior's {len(betas)} training steps, got {self.steps}")
        return DDPMSchedule.respaced(betas, self.steps)

    def run(
        self, y: Tensor, operator, prior, generator: GeneratorLike = None, callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None, x_shape: Optional[Sequence[int]] = None, noise: Optional[NoiseFn] = None,
    ) -> Result:
        """Restore x from y. Random draws, in order (`noise` replays them): x_T, then one ancestral draw per step
        except the last."""
        run = self.start_run(y, operator, prior, generator, noise, x_start, x_shape)
        discrete = getattr(run.prior, "ddpm_betas", lambda: None)() is not None
        sched = self.schedule(run.prior)
        n = len(sched.timesteps)
        x = run.x
        with run.meter:
            for i in run.progress(range(n)):
                # x0_hat = clip(sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps(x_t, t)) and grad_{x_t} ||y - A(x0_hat)||
                x0_hat, v, norm, grad = self.denoise_with_grad(run, operator, y, x, sched, i, discrete)
                # x'_{t-1} = mu_t(x_t, x0_hat) + exp(logvar_t / 2) z  (no noise at the last step)
                x_prev = self.ancestral_step(run, x0_hat, v, x, sched, i)
                # x_{t-1} = x'_{t-1} - lr * grad
                x_level = x
                x = run.tracker.check(run.tracker.freeze(x_prev - self.lr * grad, x), i, last=i == n - 1)
                if callback is not None:  # data part of the move: -lr grad; prior part: the ancestral step
                    callback({"step": i, "sigma": sched.sigma(i), "x": x, "x0_hat": x0_hat, "x_level": x_level,
                              "x_warm": x_level - self.lr * grad, "loss": [norm.detach() ** 2],
                              "alive": run.tracker.alive})
            return run.finish(x, y, operator, n - 1)

    def denoise_with_grad(
        self, run: RunSetup, operator, y: Tensor, x: Tensor, sched: DDPMSchedule, i: int, discrete: bool
    ) -> tuple[Tensor, Optional[Tensor], Tensor, Tensor]:
        """Step i's x0_hat (clipped), the network's variance channels (discrete priors, else None), the residual
        norm ||y - A(x0_hat)|| (B,) and its gradient with respect to x_t (through the network and the clip)."""
        abar = sched.abar[i]
        run.meter.stats.denoiser_calls += 1
        run.meter.stats.vjps += 1
        with torch.enable_grad():
            xt = x.detach().requires_grad_(True)
            v = None
            if discrete:
                eps, v = run.prior.ddpm_eps(xt, sched.timesteps[i])
                x0_hat = _f32((1 / abar) ** 0.5) * xt - _f32((1 / abar - 1) ** 0.5) * eps
            else:
                x0_hat = run.prior.denoise(xt * _f32((1 / abar) ** 0.5), run.prior_sigma(sched.sigma(i)))
            if self.clip_denoised:
                x0_hat = x0_hat.clamp(-1, 1)
            norm = (y - operator.forward(x0_hat)).flatten(1).norm(dim=1)
            (grad,) = torch.autograd.grad(norm.sum(), xt)
        return x0_hat.detach(), v, norm, grad

    def ancestral_step(
        self, run: RunSetup, x0_hat: Tensor, v: Optional[Tensor], x: Tensor, sched: DDPMSchedule, i: int
    ) -> Tensor:
        """x'_{t-1} from the DDPM posterior q(x_{t-1} | x_t, x0_hat): its mean, plus (but at the last step) a draw
        with the learned per-pixel variance (from the variance channels v) or the fixed one."""
        abar, abar_prev, beta = sched.abar[i], sched.abar_prev[i], sched.beta[i]
        c0 = _f32(beta * abar_prev**0.5 / (1 - abar))
        ct = _f32((1 - abar_prev) * (1 - beta) ** 0.5 / (1 - abar))
        x_prev = c0 * x0_hat + ct * x.detach()
        if i == len(sched.timesteps) - 1:
            return x_prev
        log_var = _f32(sched.log_var_clipped[i])
        if self.variance == "learned_range" and v is not None:  # per pixel, from the network's variance channels
            frac = (v.detach() + 1) / 2
            std = torch.exp(0.5 * (frac * _f32(math.log(beta)) + (1 - frac) * log_var))
        else:  # a number: no tensor is made (or copied to the device) for it
            std = _f32(math.exp(0.5 * log_var))
        return x_prev + std * run.draw.like(x_prev)
