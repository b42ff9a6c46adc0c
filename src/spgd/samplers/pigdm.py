"""ΠGDM: pseudoinverse-guided diffusion models (Song, Vahdat, Mardani, Kautz, ICLR 2023), as people run it.

There is no official ΠGDM code. This matches the implementation that is used, `NVlabs/RED-diff` @ 66482f2
(`algos/pgdm.py`, `PGDM.initialize` and `PGDM.sample`, with `awd` True, `cond_awd` False, `mcg` False and no
classifier), to float32 precision: tests/samplers/test_pigdm.py replays the recorded runs of
../shared/fixtures/reference-reddiff-pigdm/. The same file holds the time grid that RED-diff shares
(`skip_schedule`, `alphas_table`).

References:
    Song, Vahdat, Mardani, Kautz, "Pseudoinverse-Guided Diffusion Models for Inverse Problems", ICLR 2023,
    https://openreview.net/forum?id=9_gsMA8MRKQ.
    Mardani, Song, Kautz, Vahdat, "A Variational Perspective on Solving Inverse Problems with Diffusion Models"
    (the repository of the implementation), arXiv:2305.04391.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from ..operators.capabilities import require
from . import vp
from .base import Callback, GeneratorLike, NoiseFn, Result, Sampler


def alphas_table(prior) -> Tensor:
    """abar as the RED-diff repository tabulates it, float32 (T + 1,): cumprod(1 - [0, beta_1..beta_T]) with the
    betas cast to float32 first, computed on the CPU (torch accumulates a CPU cumprod in double and rounds each
    entry, so a float32-accumulated product differs in the last bits). abar(t) = table[t + 1], abar(-1) = 1."""
    betas = vp.training_betas(prior).cpu()
    return torch.cumprod(1 - torch.cat([betas.new_zeros(1), betas]).float(), 0)


@dataclass(frozen=True)
class SkipSchedule:
    """The iterations of a RED-diff-repository sampler, in loop order (noisiest first)."""

    t: list[int]  # the network's integer timestep
    s: list[int]  # the next (less noisy) timestep, -1 after t = 0
    abar_t: list[float]  # abar(t), float32 values
    abar_s: list[float]  # abar(s), float32 values (1 at s = -1)

    def sigma(self, i: int) -> float:
        """Iteration i's noise level in the VE form, sqrt((1 - abar_t) / abar_t)."""
        return ((1 - self.abar_t[i]) / self.abar_t[i]) ** 0.5


def skip_schedule(prior, steps: int) -> SkipSchedule:
    """The repository's `get_timesteps`: skip = T // steps and t in range(0, T, skip), reversed, with s the entry
    before t (-1 after 0). The number of iterations is len(range(0, T, skip)): `steps` when it divides T, else
    more (T = 1000, steps = 15: skip 66, 16 iterations 990, 924, ..., 66, 0)."""
    table = alphas_table(prior)
    T = len(table) - 1
    if not 1 <= steps <= T:
        raise SpgdError(f"steps must be in [1, {T}] (the prior's training timesteps), got {steps}")
    ts = list(range(0, T, T // steps))
    t = ts[::-1]
    s = ([-1] + ts[:-1])[::-1]
    return SkipSchedule(t, s, table[[k + 1 for k in t]].tolist(), table[[k + 1 for k in s]].tolist())


def _f32(x: Tensor) -> float:
    return float(x.to(torch.float32))


@dataclass
class PiGDM(Sampler):
    """DDIM steps on the skip grid t -> s with pseudoinverse guidance, as `algos/pgdm.py` runs them.

    Start: x_T = sqrt(abar_T) A+y + sqrt(1 - abar_T) z (T the first timestep of the grid). Then per iteration, with
    a_t = abar(t), a_s = abar(s) and every coefficient computed in float32 from the float32 abar table:

        c1      = eta sqrt((1 - a_t/a_s)(1 - a_s)/(1 - a_t)),   c2 = sqrt(1 - a_s - c1^2)
        eps     = eps_theta(x_t, t),   x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
        g       = d/dx_t sum(sg[A+y - A+(A x0_hat)] * x0_hat)                     (one VJP through the network)
        if the operator offers `observed(x)` (a mask m: 1 where y fixes x directly, as in inpainting):
            x0_hat <- x0_hat (1 - m) + (A+y) m,   g <- g (1 - m)                 (the release's inpainting branch)
        x_s     = sqrt(a_s) x0_hat + c1 z + c2 eps + sqrt(a_s) sqrt(a_t) guidance_scale g

    At the last iteration s = -1, a_s = 1, so c1 = c2 = 0 and its draw has no effect (it is still drawn).

    The operator must offer `pinv(y)` (A+; `spgd.operators.capabilities`). The inpainting branch is chosen by the
    optional operator method `observed(x) -> Tensor`: a 0/1 mask broadcastable to x, 1 on the entries of x that y
    measures directly (where A+A is the identity), 0 elsewhere (where A+A is zero). The release switches it on by
    the degradation's name (`'in2' in deg`); here any operator that offers `observed` gets it, and `project=False`
    turns it off.

    Where the release differs from the paper:
    - the guidance is always the paper's noiseless form, A+y - A+A x0_hat, whatever the measurement noise (the
      paper's noisy form weights the residual by (r_t^2 A A^T + sigma_y^2 I)^-1);
    - the inpainting projection of x0_hat onto y and the masking of g are the release's own (`project=False`
      runs without them: 8.8e-2 rel-L2 away from the release on the inpainting fixture; measured in
      benchmarks/RESULTS.md section 8: the release's projection is 0.48 dB better on four faces at 30 steps, 0.07 dB
      on the Gaussian problem at 1000).
    Release choices to know (kept): the guidance weight sqrt(a_s) sqrt(a_t) `grad_term_weight` (its `awd`
    branch), the start from the noised pseudo-inverse, and eta = 1 in its commands (its config says 0).

    `steps` counts as the repository's `num_steps` (see `skip_schedule`: 15 gives 16 iterations). Costs per
    iteration: one network call and one VJP through it (`denoiser_calls`, `vjps`), one A+ (`operator_solves`),
    plus one A+y at the start. A prior without integer timesteps gets eps from its denoiser (`vp.predict_eps`).
    """

    needs: ClassVar[tuple[str, ...]] = ("pinv",)  # operator capabilities (spgd.operators.capabilities)

    steps: int = 50  # the repository's num_steps (its default 50); iterations = len(range(0, 1000, 1000 // steps))
    eta: float = 1.0  # DDIM stochasticity in [0, 1] (the released commands use 1.0)
    guidance_scale: float = 1.0  # the release's grad_term_weight: the weight of the guidance g
    project: bool = True  # the release's inpainting branch for operators with `observed(x)`; False = the paper's
    check_every: int = 10
    progress: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise SpgdError(f"steps must be in [1, 1000] for pigdm, got {self.steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise SpgdError(f"eta must be in [0, 1], got {self.eta}")
        if not self.guidance_scale >= 0:
            raise SpgdError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.check_every < 1:
            raise SpgdError(f"check_every must be >= 1, got {self.check_every}")

    def run(
        self, y: Tensor, operator, prior, generator: GeneratorLike = None, callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None, x_shape: Optional[Sequence[int]] = None, noise: Optional[NoiseFn] = None,
    ) -> Result:
        """Restore x from y. Random draws, in order (`noise` replays them), each shaped like x: the start's z
        (not drawn when `x_start` is given: it is x_T itself), then one per iteration, the last one included.

        The callback gets, per iteration: "x_level" (x_t), "x_warm" = x_t + the data part of the move (the
        guidance step, plus sqrt(a_s) times the projection's change of x0_hat), "x" (x_s; x - x_warm is the
        DDIM step from the network's own x0_hat), "x0_hat" (as used in the update), and "loss" [||A+y -
        A+A x0_hat||^2] (B,).
        """
        require(operator, "pinv", "pigdm")
        run = self.start_run(y, operator, prior, generator, noise, x_start, x_shape)
        sched = skip_schedule(run.prior, self.steps)
        n = len(sched.t)
        stats = run.meter.stats
        observed = getattr(operator, "observed", None) if self.project else None
        with run.meter:
            # A+y, used at every iteration (the release recomputes it each time; it does not change)
            pinv_y = operator.pinv(y)
            stats.operator_solves += 1
            x = run.x
            if x_start is None:
                if tuple(pinv_y.shape) != tuple(x.shape):
                    raise SpgdError(
                        f"pigdm: {type(operator).__name__}.pinv(y) has shape {tuple(pinv_y.shape)}, but x has shape "
                        f"{tuple(x.shape)}; give x_shape or an operator whose pinv returns x's shape"
                    )
                a_T = torch.tensor(sched.abar_t[0], dtype=torch.float32)
                x = _f32(a_T.sqrt()) * pinv_y + _f32((1 - a_T).sqrt()) * x  # x_T from A+y and the first draw z
            m = observed(pinv_y) if callable(observed) else None
            for i in run.progress(range(n)):
                a_t = torch.tensor(sched.abar_t[i], dtype=torch.float32)
                a_s = torch.tensor(sched.abar_s[i], dtype=torch.float32)
                c1_t = ((1 - a_t / a_s) * (1 - a_s) / (1 - a_t)).sqrt() * self.eta
                c1, c2 = _f32(c1_t), _f32(((1 - a_s) - c1_t**2).clamp_min(0).sqrt())
                coeff = _f32(a_s.sqrt() * a_t.sqrt() * self.guidance_scale)
                # network: eps(x_t, t) and x0_hat, with the pseudoinverse guidance g as a VJP through it
                with torch.enable_grad():
                    x_t = x.detach().requires_grad_(True)
                    eps = vp.predict_eps(run, x_t, sched.t[i], sched.abar_t[i])
                    x0_hat = (x_t - eps * _f32((1 - a_t).sqrt())) / _f32(a_t.sqrt())
                    with torch.no_grad():
                        mat = pinv_y - operator.pinv(operator.forward(x0_hat))  # A+y - A+A x0_hat, a constant
                    (g,) = torch.autograd.grad((mat * x0_hat).sum(), x_t)
                stats.vjps += 1
                stats.operator_solves += 1
                x0_hat, eps, x_level = x0_hat.detach(), eps.detach(), x
                x0_raw = x0_hat
                # the release's inpainting branch: y on the observed entries, no guidance there
                if m is not None:
                    x0_hat = x0_hat * (1 - m) + pinv_y * m
                    g = g * (1 - m)
                # DDIM step t -> s with the guidance
                z = run.draw.like(x)
                x_new = _f32(a_s.sqrt()) * x0_hat + c1 * z + c2 * eps + g * coeff
                x = run.tracker.check(run.tracker.freeze(x_new, x), i, last=i == n - 1)
                if callback is not None:
                    data = g * coeff + _f32(a_s.sqrt()) * (x0_hat - x0_raw)
                    callback({"step": i, "sigma": sched.sigma(i), "t": sched.t[i], "x_level": x_level,
                              "x_warm": x_level + data, "x": x, "x0_hat": x0_hat,
                              "loss": [mat.flatten(1).pow(2).sum(1)], "alive": run.tracker.alive})
            return run.finish(x, y, operator, n - 1)
