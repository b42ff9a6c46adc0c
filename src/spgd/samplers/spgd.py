"""SPGD: progressive likelihood warm-up with adaptive directional momentum (Wu et al., ACM MM 2025).

References:
    Wu et al., "Enhancing Diffusion Model Stability for Image Restoration via Gradient Management",
    arXiv:2507.06656.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from torch import Tensor

from ..errors import SpgdError
from ..tensors import append_dims
from .base import (
    Callback, GeneratorLike, NoiseFn, Result, RunSetup, Sampler, denoise, likelihood_grad, state_rms_bound,
)
from .schedule import RHO, SIGMA_MAX, SIGMA_MIN, karras_sigmas, linear_lr

COSINE_MODES = ("sample", "pixel")


def directional_cosine(g: Tensor, m: Tensor, mode: str = "sample", eps: float = 1e-12) -> Tensor:
    """Cosine between the new gradient g and the momentum m, one value per sample, shape (B,).

    "sample": over all of a sample's entries. "pixel": over the channel axis (dim 1) at each position, then
    averaged over positions (what the released code does); for (B, D) tensors both are the same.
    """
    if mode == "sample":
        g, m = g.flatten(1), m.flatten(1)
        return (g * m).sum(1) / (g.norm(dim=1) * m.norm(dim=1)).clamp_min(eps)
    if mode == "pixel":
        cos = (g * m).sum(1) / (g.norm(dim=1) * m.norm(dim=1)).clamp_min(eps)
        return cos.flatten(1).mean(1) if cos.ndim > 1 else cos
    raise SpgdError(f"cosine must be one of {COSINE_MODES}, got {mode!r}")


def adm_update(m: Tensor, g: Tensor, beta: float, cosine: str = "sample") -> tuple[Tensor, Tensor, Tensor]:
    """Adaptive directional momentum: m <- a*beta*m + (1 - a*beta)*g with a = (cos(g, m) + 1) / 2 per sample.

    Returns (new m, cosine (B,), alpha (B,)). Aligned gradients keep more history; opposed ones reset it.
    """
    c = directional_cosine(g, m, cosine)
    alpha = (c + 1) / 2
    w = append_dims(alpha * beta, g.ndim).to(g.dtype)
    return w * m + (1 - w) * g, c, alpha


@dataclass
class Warmup:
    """One level's warm-up (step 1): x^(N), x^(N-1) and the last x0_hat = D(x^(N-1); sigma_k), and per step j
    the loss (B,) and, for j >= 1, the ADM cosine and alpha (B,)."""

    x: Tensor
    x_prev: Tensor
    x0_hat: Tensor
    loss: list
    cosine: list
    alpha: list


def level_info(
    k: int, sigma: float, sigma_next: float, lr: float, x_level: Tensor, warm: Warmup, x: Tensor, x0_hat: Tensor,
    alive: Tensor,
) -> dict:
    """What SPGD hands its callback after level k (diagnostics' telemetry reads it)."""
    return {
        "step": k,
        "sigma": sigma,
        "sigma_next": sigma_next,
        "lr": lr,
        "x_level": x_level,  # x^(0), the state entering this level
        "x_warm": warm.x,  # x^(N), after the warm-up
        "x": x,  # the state passed to the next level
        "x0_hat": x0_hat,
        "loss": warm.loss,  # per warm-up step, each (B,)
        "cosine": warm.cosine,  # per warm-up step j >= 1, each (B,)
        "alpha": warm.alpha,
        "alive": alive,
    }


@dataclass
class SPGD(Sampler):
    """Stabilized Progressive Gradient Diffusion on the EDM/VE form x_t = x_0 + sigma * eps.

    For each noise level sigma_k of a Karras schedule (then 0), starting from x = sigma_max * eps:

    1. warm-up, j = 0..N-1: x0_hat = D(x^(j); sigma_k), g_j = grad ||A(x0_hat) - y||^2 through D,
       m_0 = g_0, m_j = a_j*beta*m_{j-1} + (1 - a_j*beta)*g_j, x^(j+1) = x^(j) - lr_k * m_j;
    2. denoise: x = x^(N) + (1 - sigma_{k+1}/sigma_k) * (D(x^(N); sigma_k) - x^(N))  (probability-flow Euler).

    With `use_momentum=False`, `fresh_denoise=False` and `cosine="pixel"` it is the authors' released code:
    warm-up steps use the raw g_j, and the denoise step reuses the last warm-up x0_hat (taken at x^(N-1)):
    x = x^(N) + (1 - sigma_{k+1}/sigma_k) * (D(x^(N-1); sigma_k) - x^(N-1)).
    """

    steps: int = 200  # K, annealing levels
    warmup_steps: int = 5  # N, likelihood steps per level
    lr: float = 1.0  # initial warm-up step size (per task: see presets)
    lr_min_ratio: float = 0.01  # lr decays linearly to lr * lr_min_ratio
    beta: float = 0.9  # momentum strength
    sigma_max: float = SIGMA_MAX
    sigma_min: float = SIGMA_MIN
    rho: float = RHO  # Karras schedule exponent
    cosine: str = "sample"  # "sample" (paper) or "pixel" (released code)
    fresh_denoise: bool = True  # evaluate D at x^(N) for the denoise step (paper) or reuse (released code)
    use_momentum: bool = True  # step with m_j (paper) or with the raw g_j (released code)
    check_every: int = 10  # how often (in outer steps) to look for diverged samples; each look syncs the host
    progress: bool = False  # tqdm progress bar

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise SpgdError(f"steps must be >= 1, got {self.steps}")
        if self.warmup_steps < 1:
            # N = 0 never takes a likelihood step: the measurement would be ignored (unconditional sampling)
            raise SpgdError(
                f"warmup_steps must be >= 1, got {self.warmup_steps}: with 0 the measurement is never used "
                "(plain unconditional sampling, no restoration); the smallest warm-up is method spgd-no-warmup "
                "(warmup_steps=1)"
            )
        if not 0 <= self.beta < 1:
            raise SpgdError(f"beta must be in [0, 1), got {self.beta}")
        if not self.lr > 0:
            raise SpgdError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.lr_min_ratio:
            raise SpgdError(f"lr_min_ratio must be > 0, got {self.lr_min_ratio}")
        if self.cosine not in COSINE_MODES:
            raise SpgdError(f"cosine must be one of {COSINE_MODES}, got {self.cosine!r}")
        karras_sigmas(self.steps, self.sigma_max, self.sigma_min, self.rho)  # validates the range

    def run(
        self, y: Tensor, operator, prior, generator: GeneratorLike = None, callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None, x_shape: Optional[Sequence[int]] = None, start_step: int = 0,
        noise: Optional[NoiseFn] = None,
    ) -> Result:
        """Restore x from y = A(x) + noise. `generator`: one torch.Generator, or one per sample (then each
        sample's result does not depend on the rest of the batch). `callback(info)` is called after each level
        with a dict (`level_info`); it is only built when a callback is given. `start_step` with `x_start`
        continues a run from level `start_step` (x_start is then the state entering that level). `noise(shape,
        dtype, device)` replaces the run's one random draw, the start x = sigma_max * noise (see `NoiseSource`)."""
        K = self.steps
        if not 0 <= start_step < K or (start_step and x_start is None):
            raise SpgdError(f"start_step must be in [0, {K}) and needs x_start when > 0, got {start_step}")
        sigmas = karras_sigmas(K, self.sigma_max, self.sigma_min, self.rho).tolist()
        lrs = linear_lr(self.lr, self.lr_min_ratio, K).tolist()
        run = self.start_run(y, operator, prior, generator, noise, x_start, x_shape, start_sigma=sigmas[0],
                             max_rms=state_rms_bound(self.sigma_max))  # the bound scales with the start's level
        x = run.x
        with run.meter:
            for k in run.progress(range(start_step, K)):
                sigma, sigma_next, lr_k = sigmas[k], sigmas[k + 1], lrs[k]
                sigma_d = run.prior_sigma(sigma)  # the prior is only asked inside its range
                x_level = x  # x^(0)
                # 1. progressive likelihood warm-up with adaptive directional momentum (buffer reset per level)
                warm = self.warmup(run, operator, y, x, sigma_d, lr_k)
                # 2. denoise: probability-flow ODE Euler step from sigma_k to sigma_{k+1}
                if self.fresh_denoise:
                    x0_hat = denoise(run.prior, warm.x, sigma_d, run.meter)
                    x_next = warm.x + (1 - sigma_next / sigma) * (x0_hat - warm.x)
                else:  # the released code: the last warm-up x0_hat, taken at x^(N-1)
                    x0_hat = warm.x0_hat
                    x_next = warm.x + (1 - sigma_next / sigma) * (x0_hat - warm.x_prev)
                x = run.tracker.check(run.tracker.freeze(x_next, warm.x), k, last=k == K - 1)
                if callback is not None:
                    callback(level_info(k, sigma, sigma_next, lr_k, x_level, warm, x, x0_hat, run.tracker.alive))
            return run.finish(x, y, operator, K - 1)

    def warmup(self, run: RunSetup, operator, y: Tensor, x: Tensor, sigma: float, lr: float) -> Warmup:
        """Step 1 at one level, from x^(0) = x: for j = 0..N-1, g_j = grad ||A(D(x^(j); sigma)) - y||^2, m_0 = g_0,
        m_j = adm_update(m_{j-1}, g_j), x^(j+1) = x^(j) - lr * m_j (the raw g_j with `use_momentum=False`)."""
        m = x0_hat = x_prev = None
        losses, cosines, alphas = [], [], []
        for _ in range(self.warmup_steps):
            x_prev = x
            x0_hat, g, loss = likelihood_grad(run.prior, operator, x, sigma, y, run.meter)
            if m is None:  # m_0 = g_0
                m = g
            else:
                m, c, a = adm_update(m, g, self.beta, self.cosine)
                cosines.append(c)
                alphas.append(a)
            losses.append(loss)
            x = run.tracker.freeze(x - lr * (m if self.use_momentum else g), x)
        return Warmup(x=x, x_prev=x_prev, x0_hat=x0_hat, loss=losses, cosine=cosines, alpha=alphas)
