"""The discrete variance-preserving (DDPM) time axis shared by the samplers written on it (DDRM, DiffPIR, PiGDM,
RED-diff): the training schedule of a prior and its epsilon prediction at an integer timestep.

Those releases query an epsilon network at the DDPM state x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps and an
integer timestep t. A prior that offers that query (`ddpm_betas` and `ddpm_eps`, as `VPPrecond` does for epsilon
checkpoints) is asked exactly so. Any other prior (the analytic Gaussian prior, an EDM-scaled network, a callable)
gets the same loop on the linear DDPM schedule, with epsilon derived from its denoiser in the variance-exploding
form: x0_hat = D(x_t / sqrt(abar_t); sigma_t), sigma_t = sqrt((1 - abar_t) / abar_t) clipped to the prior's range,
and eps = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import RunSetup

#: the linear schedule of DDPM and of every release these samplers match: beta_t from 1e-4 to 0.02 over 1000 steps
LINEAR_BETAS = (1e-4, 0.02, 1000)


def training_betas(prior) -> Tensor:
    """The beta_t the prior was trained on, float64 (T,): its own (`ddpm_betas`) when it has them, else the linear
    schedule (LINEAR_BETAS)."""
    betas = getattr(prior, "ddpm_betas", lambda: None)()
    if betas is None:
        start, end, n = LINEAR_BETAS
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    return betas.to(torch.float64)


def has_timesteps(prior) -> bool:
    """Whether the prior is queried at integer DDPM timesteps (`ddpm_eps`) rather than through its denoiser."""
    return getattr(prior, "ddpm_betas", lambda: None)() is not None and callable(getattr(prior, "ddpm_eps", None))


def predict_eps(run: RunSetup, x_t: Tensor, t: int, abar: float) -> Tensor:
    """epsilon_hat(x_t, t) at the DDPM state x_t (one network call, counted). Differentiable in x_t: callers that
    need no graph wrap it in torch.no_grad()."""
    run.meter.stats.denoiser_calls += 1
    if has_timesteps(run.prior):
        return run.prior.ddpm_eps(x_t, int(t))[0]
    scale = abar**-0.5
    sigma = ((1 - abar) / abar) ** 0.5
    x0 = run.prior.denoise(x_t * scale, run.prior_sigma(sigma))
    return (x_t - abar**0.5 * x0) / (1 - abar) ** 0.5
