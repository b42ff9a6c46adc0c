"""RED-diff: regularisation by denoising diffusion (Mardani, Song, Kautz, Vahdat, ICLR 2024), as released.

Matches `NVlabs/RED-diff` @ 66482f2 (`algos/reddiff.py`, `REDDIFF.initialize` and `REDDIFF.sample`, with `awd`
True, `cond_awd` False, `denoise_term_weight` "linear" and no classifier) to float32 precision:
tests/samplers/test_reddiff.py replays the recorded runs of ../shared/fixtures/reference-reddiff-pigdm/.

References:
    Mardani, Song, Kautz, Vahdat, "A Variational Perspective on Solving Inverse Problems with Diffusion Models",
    arXiv:2305.04391.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from . import vp
from .base import Callback, GeneratorLike, NoiseFn, Result, Sampler, check_measurement, infer_x_shape
from .pigdm import skip_schedule

#: the release's Adam (`torch.optim.Adam(..., betas=(0.9, 0.99))`, eps and amsgrad at torch's defaults); fixed
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.99  # the release's value; its comment names 0.999 (torch's default) as the original
ADAM_EPS = 1e-8
OUTPUTS = ("x0_pred", "mu")


def adam_step(mu: Tensor, m: Tensor, v: Tensor, g: Tensor, k: int, lr: float) -> tuple[Tensor, Tensor, Tensor]:
    """Step k (1, 2, ...) of Adam on mu with gradient g and moments m, v, entry by entry (so per sample), in the
    arithmetic of torch's single-tensor Adam: m <- m + (1 - b1)(g - m), v <- b2 v + (1 - b2) g g, denom =
    sqrt(v) / sqrt(1 - b2^k) + eps, mu <- mu - lr / (1 - b1^k) * m / denom (bias corrections in float64).
    Returns (mu, m, v)."""
    m = torch.lerp(m, g, 1 - ADAM_BETA1)
    v = torch.addcmul(v * ADAM_BETA2, g, g, value=1 - ADAM_BETA2)
    step_size = lr / (1 - ADAM_BETA1**k)
    denom = v.sqrt() / math.sqrt(1 - ADAM_BETA2**k) + ADAM_EPS
    return torch.addcdiv(mu, m, denom, value=-step_size), m, v


@dataclass
class REDDiff(Sampler):
    """Adam on the mean mu of a Gaussian q(x0 | y) = N(mu, sigma_x0^2 I), one step per timestep of the skip grid,
    as `algos/reddiff.py` runs it.

    Start: mu = A+y (`operator.pinv(y)`; the release's `initialize`); an operator without `pinv` starts from
    mu = 0 (a mid-grey image), and `x_start` replaces either. Then per iteration, with a = abar(t) (the float32
    table of `pigdm.alphas_table`) and per image:

        x0_pred = mu + sigma_x0 n0,    x_t = sqrt(a) x0_pred + sqrt(1 - a) n_t      (n0, n_t standard normal)
        eps     = sg[eps_theta(x_t, t)]                                             (no gradient through it)
        loss    = w mean_x((eps - n_t) x0_pred) + obs_weight mean_y((y - A(x0_pred))^2) / 2,
                  w = lam sqrt(1 - a) / sqrt(a)                                     (`denoise_term_weight` linear)
        mu      <- Adam step on d loss / d mu  (lr, betas (0.9, 0.99), eps 1e-8, fixed; see `adam_step`)

    The means are over each image's own entries and the losses are summed over the batch, so each image's
    gradient and Adam moments are its own. Output (`output`): "x0_pred" (the release's: the last iteration's
    x0_pred, i.e. mu BEFORE the last Adam step plus sigma_x0 n0) or "mu" (the paper's: mu after the last step).

    Where the release differs from the paper:
    - it returns the last x0_pred, not mu (`output="mu"` gives the paper's; 0.9-2 % apart on the fixtures; measured
      in benchmarks/RESULTS.md section 8: the release's output is 0.03-0.14 dB better on blur and inpainting);
    - both loss terms are means over entries, the data term weighted by `obs_weight` rather than 1 / (2 sigma_v^2).
    Release choices to know (kept): Adam's beta2 = 0.99 (its comment names torch's 0.999 as the original; 0.5-1 %
    apart on the fixtures), the start mu = A+y, and `sigma_x0` (0 in its config, 1e-4 in its inpainting command).

    `steps` counts as the repository's `num_steps` (`pigdm.skip_schedule`: 15 gives 16 iterations). Two draws per
    iteration, n0 then n_t; none for the start. Costs per iteration: one network call without a graph
    (`denoiser_calls`; `vjps` stays 0) and one gradient through the operator (`operator_grads`); plus one A+ at the
    start (`operator_solves`) when it is used. A prior without integer timesteps gets eps from its denoiser
    (`vp.predict_eps`).
    """

    steps: int = 50  # the repository's num_steps (its default 50); iterations = len(range(0, 1000, 1000 // steps))
    lr: float = 0.1  # Adam's step size (the release's config: 0.1; its commands: inpainting 0.25, deblurring 0.5)
    lam: float = 0.25  # lambda, the release's grad_term_weight: weight of the denoising (regulariser) term
    obs_weight: float = 1.0  # v, the weight of the data term
    sigma_x0: float = 0.0  # std of the perturbation x0_pred = mu + sigma_x0 n0 (the release's inpainting: 1e-4)
    output: str = "x0_pred"  # "x0_pred" (release: the last loss input) or "mu" (paper: mu after the last step)
    check_every: int = 10
    progress: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise SpgdError(f"steps must be in [1, 1000] for reddiff, got {self.steps}")
        if not self.lr > 0:
            raise SpgdError(f"lr must be > 0, got {self.lr}")
        for name in ("lam", "obs_weight", "sigma_x0"):
            if not getattr(self, name) >= 0:
                raise SpgdError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.output not in OUTPUTS:
            raise SpgdError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.check_every < 1:
            raise SpgdError(f"check_every must be >= 1, got {self.check_every}")

    def run(
        self, y: Tensor, operator, prior, generator: GeneratorLike = None, callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None, x_shape: Optional[Sequence[int]] = None, noise: Optional[NoiseFn] = None,
    ) -> Result:
        """Restore x from y. Random draws, in order (`noise` replays them), each shaped like x: n0 then n_t per
        iteration (n0 is drawn even when sigma_x0 = 0); the start draws nothing.

        The callback gets, per iteration: "x_level" (mu before the step), "x" (mu after it), "x_warm" = x minus
        the move Adam would have made from the same moments with the denoising gradient alone (so x - x_warm is
        that prior move and x_warm - x_level the rest, the data term's share; Adam is not additive, so this is a
        split, not a sum of two steps), "x0_hat" (x0_pred, the loss input) and "loss" [data term, denoising
        term] (B,) each, unweighted.
        """
        check_measurement(y)
        solves = 0
        if x_start is None:
            if callable(getattr(operator, "pinv", None)):
                x_start, solves = operator.pinv(y), 1  # the release's start, mu = A+y
            else:
                x_start = torch.zeros(infer_x_shape(y, operator, x_shape), dtype=y.dtype, device=y.device)
        run = self.start_run(y, operator, prior, generator, noise, x_start, x_shape)
        sched = skip_schedule(run.prior, self.steps)
        n = len(sched.t)
        stats = run.meter.stats
        stats.operator_solves += solves
        mu = run.x.detach()
        m, v = torch.zeros_like(mu), torch.zeros_like(mu)  # Adam's moments, per entry
        with run.meter:
            for i in run.progress(range(n)):
                a = torch.tensor(sched.abar_t[i], dtype=torch.float32)
                sqrt_a, sqrt_1ma = float(a.sqrt()), float((1 - a).sqrt())
                w = float(self.lam * ((1 - a).sqrt() / a.sqrt()))  # lambda * sigma_t / alpha_t ("linear")
                # the sample from q(x0 | y) and its noisy version at t
                n0 = run.draw.like(mu)
                n_t = run.draw.like(mu)
                with torch.enable_grad():
                    mu_ = mu.detach().requires_grad_(True)
                    x0_pred = mu_ + self.sigma_x0 * n0
                    x_t = sqrt_a * x0_pred + sqrt_1ma * n_t
                    # the network, without a graph (its epsilon is a constant of the loss)
                    with torch.no_grad():
                        eps = vp.predict_eps(run, x_t.detach(), sched.t[i], sched.abar_t[i])
                    # the per-image loss: w * denoising term + v * data term
                    loss_noise = ((eps - n_t) * x0_pred).flatten(1).mean(1)
                    loss_obs = (y - operator.forward(x0_pred)).pow(2).flatten(1).mean(1) / 2
                    loss = w * loss_noise + self.obs_weight * loss_obs
                    (g,) = torch.autograd.grad(loss.sum(), mu_)
                stats.operator_grads += 1
                x0_pred, x_level = x0_pred.detach(), mu
                # one Adam step
                mu_new, m_new, v_new = adam_step(mu, m, v, g, i + 1, self.lr)
                if callback is not None:  # the move with the denoising gradient alone, from the same moments
                    g_prior = w * (eps - n_t) / eps[0].numel()
                    prior_move = adam_step(mu, m, v, g_prior, i + 1, self.lr)[0] - mu
                m, v = m_new, v_new
                mu = run.tracker.freeze(mu_new, mu)
                mu = run.tracker.check(mu, i) if i < n - 1 else mu  # the last check is on the output, below
                if callback is not None:
                    callback({"step": i, "sigma": sched.sigma(i), "t": sched.t[i], "x_level": x_level,
                              "x_warm": mu - prior_move, "x": mu, "x0_hat": x0_pred,
                              "loss": [loss_obs.detach(), loss_noise.detach()], "alive": run.tracker.alive})
            # the release returns the last x0_pred (mu before the last step); the paper returns mu
            x = run.tracker.check(x0_pred if self.output == "x0_pred" else mu, n - 1, last=True)
            return run.finish(x, y, operator, n - 1)
