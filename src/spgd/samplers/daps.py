"""DAPS: Decoupled Annealing Posterior Sampling (Zhang et al., CVPR 2025), as its authors released it.

`release="2024"` (method `daps`) is the code of the paper, `zhangbingliang2019/DAPS` @ 25471a8; `release="2025"`
(method `daps-2025`) the current rewrite @ 098df6b. Both match the recorded runs of
../shared/fixtures/reference-dps-daps/ to float32 precision (tests/samplers/test_baselines.py). Per-task Langevin step
sizes: the `[methods.daps]` / `[methods.daps-2025]` sections of the presets.

References:
    Zhang, Chu, Berner, Meng, Anandkumar, Song, "Improving Diffusion Inverse Problem Solving with Decoupled
    Noise Annealing", arXiv:2407.01521.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from .base import Callback, GeneratorLike, NoiseFn, Result, Sampler, denoise, state_rms_bound
from .schedule import RHO, SIGMA_MAX, SIGMA_MIN, karras_sigmas, linear_lr

RELEASES = ("2024", "2025")


@dataclass
class DAPS(Sampler):
    """Per annealing level sigma_k (a Karras schedule, then 0), from the state x_k:

    1. x0_hat: Euler steps of the probability-flow ODE dx/dsigma = (x - D(x; s)) / s on `ode_steps` Karras levels
       s_0 = sigma_k > ... > s_{n-1} = `ode_sigma_min`, x <- x + (s_{i+1} - s_i) (x - D(x; s_i)) / s_i;
       2024: then one more step to s = 0, i.e. x0_hat = D(x; ode_sigma_min) (`ode_steps` calls in all);
       2025: `ode_steps` steps on `ode_steps` + 1 levels, ending at ode_sigma_min (no final jump);
    2. Langevin on x0 from x0_hat, `langevin_steps` steps of size lr_k (gradients of the operator only):
       x0 <- x0 - lr_k (w grad ||A(x0) - y||^2 / tau^2 + (x0 - x0_hat) / sigma_k^2) + sqrt(2 lr_k) z,
       w = 1/2 (2024: gradient descent on ||A x0 - y||^2 / (2 tau^2) + ||x0 - x0_hat||^2 / (2 sigma_k^2)) or
       w = 1 (2025);
    3. re-noise: x_{k+1} = x0 + sigma_{k+1} z.

    Schedules. 2024: `steps` Karras levels sigma_max -> sigma_min, then 0; lr_k = lr (1 + k/K (lr_min_ratio - 1)).
    2025: K + 1 Karras levels with the last (sigma_min) dropped, then 0; lr_k = lr (1 + k/(K+1) (lr_min_ratio - 1)).
    Defaults are the paper's DAPS-1K pixel-space settings: 200 levels x 5 ODE steps, 100 Langevin steps, tau 0.01.
    """

    steps: int = 200  # annealing levels K
    ode_steps: int = 5  # denoiser calls per level (Euler steps of the inner probability-flow ODE)
    ode_sigma_min: float = 0.01
    langevin_steps: int = 100
    lr: float = 1e-4  # Langevin step size (per task: the presets' [methods.daps])
    lr_min_ratio: float = 0.01
    tau: float = 0.01  # measurement noise scale of the Langevin likelihood
    sigma_max: float = SIGMA_MAX
    sigma_min: float = SIGMA_MIN
    rho: float = RHO
    release: str = "2024"  # "2024" (the paper's code) or "2025" (the current release)
    check_every: int = 10
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "ode_steps"):
            if getattr(self, name) < 1:
                raise SpgdError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.langevin_steps < 0:
            raise SpgdError(f"langevin_steps must be >= 0, got {self.langevin_steps}")
        if not (self.lr > 0 and self.tau > 0 and self.ode_sigma_min > 0):
            raise SpgdError(f"lr, tau and ode_sigma_min must be > 0, got {self.lr}, {self.tau}, {self.ode_sigma_min}")
        if self.release not in RELEASES:
            raise SpgdError(f"release must be one of {RELEASES}, got {self.release!r}")
        karras_sigmas(self.steps, self.sigma_max, self.sigma_min, self.rho)

    def annealing_sigmas(self) -> list[float]:
        """sigma_0 .. sigma_{K-1}, then 0 (float64)."""
        K = self.steps
        if self.release == "2024":
            return karras_sigmas(K, self.sigma_max, self.sigma_min, self.rho).tolist()
        return karras_sigmas(K + 1, self.sigma_max, self.sigma_min, self.rho).tolist()[:K] + [0.0]

    def ode_sigmas(self, sigma: float) -> list[float]:
        """The inner ODE's levels from sigma: 2024 ends with 0 (the jump to D(x; ode_sigma_min)), 2025 at
        ode_sigma_min. Below ode_sigma_min a level is one jump, x0_hat = D(x; sigma)."""
        if sigma <= self.ode_sigma_min:
            return [sigma, 0.0]
        if self.release == "2024":
            return karras_sigmas(self.ode_steps, sigma, self.ode_sigma_min, self.rho).tolist()
        return karras_sigmas(self.ode_steps + 1, sigma, self.ode_sigma_min, self.rho).tolist()[:-1]

    def langevin_lrs(self) -> list[float]:
        """lr_k, k = 0..K-1: the linear decay over K levels (2024) or over K + 1 (2025, its last level unused)."""
        K = self.steps
        return linear_lr(self.lr, self.lr_min_ratio, K if self.release == "2024" else K + 1).tolist()[:K]

    def run(
        self, y: Tensor, operator, prior, generator: GeneratorLike = None, callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None, x_shape: Optional[Sequence[int]] = None, noise: Optional[NoiseFn] = None,
    ) -> Result:
        """Restore x from y. Random draws, in order (`noise` replays them): the start x = sigma_0 z, then per
        level `langevin_steps` Langevin draws and one re-noise draw (drawn at the last level too, where it is
        multiplied by sigma_K = 0)."""
        sigmas, lrs = self.annealing_sigmas(), self.langevin_lrs()
        data_weight = 0.5 if self.release == "2024" else 1.0
        run = self.start_run(y, operator, prior, generator, noise, x_start, x_shape, start_sigma=sigmas[0],
                             max_rms=state_rms_bound(self.sigma_max))  # the bound scales with the start's level
        x = run.x
        with run.meter:
            for k in run.progress(range(self.steps)):
                sigma, lr_k = sigmas[k], lrs[k]
                x_level = x
                # 1. x0_hat from the probability-flow ODE, sigma_k -> ode_sigma_min (2024: -> 0)
                ode = self.ode_sigmas(sigma)
                z = x
                for s, s_next in zip(ode[:-1], ode[1:]):
                    d = denoise(run.prior, z, run.prior_sigma(s), run.meter)
                    z = d if s_next == 0 else z + (s_next - s) * (z - d) / s
                x0_hat = z
                # 2. Langevin dynamics on x0 | x_k, y (gradients of the operator only, no network)
                x0, loss = x0_hat, None
                for _ in range(self.langevin_steps):
                    with torch.enable_grad():
                        v = x0.detach().requires_grad_(True)
                        loss = (operator.forward(v) - y).pow(2).flatten(1).sum(1)
                        (g,) = torch.autograd.grad(loss.sum(), v)
                    run.meter.stats.operator_grads += 1
                    x0 = x0 - lr_k * (data_weight * g / self.tau**2 + (x0 - x0_hat) / sigma**2)
                    x0 = x0 + (2 * lr_k) ** 0.5 * run.draw.like(x0)
                # 3. re-noise to the next level
                x_new = x0 + sigmas[k + 1] * run.draw.like(x0)
                x = run.tracker.check(run.tracker.freeze(x_new, x), k, last=k == self.steps - 1)
                if callback is not None:  # data part of the move: Langevin's x0_y - x0_hat; prior part: the rest
                    callback({"step": k, "sigma": sigma, "x": x, "x0_hat": x0_hat, "x0_y": x0, "x_level": x_level,
                              "x_warm": x_level + (x0 - x0_hat),
                              "loss": [] if loss is None else [loss.detach()], "alive": run.tracker.alive})
            return run.finish(x, y, operator, self.steps - 1)
