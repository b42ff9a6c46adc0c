"""DiffPIR: Denoising Diffusion Models for Plug-and-Play Image Restoration (Zhu et al., CVPR-W 2023), as released.

Matches `yuanzhi-zhu/DiffPIR` @ 111d26e (`main_ddpir_deblur.py`, `main_ddpir_inpainting.py`, `main_ddpir_sisr.py`:
the `generate_mode='DiffPIR'`, `model_output_type='pred_xstart'`, `sub_1_analytic=True` branch, `skip_type='quad'`,
`iter_num_U=1`) on a discrete-time epsilon network; tests/samplers/test_diffpir.py replays the recorded runs of
../shared/fixtures/reference-diffpir/. The data step is the operator's `prox` capability
(spgd.operators.capabilities): the release's FFT solve (`utils_sisr.data_solution`) for circular blur and
kernel-then-decimate super-resolution, and its closed form for inpainting.

Kernels: the release's blur and SR kernels are convolution kernels (`utils_sisr.p2o`, the FFT of the kernel rolled to
the origin); the library's `blur` / `super_resolution` kernels are correlation kernels (as F.conv2d), so a release
kernel that is not symmetric (its x4 bicubic one) is given to them flipped, `kernel.flip(-2, -1)`.

Per-task settings of the release scripts: deblur lam 7, zeta 0.3, 100 steps; inpainting lam 1, zeta 1, 20 steps;
x4 super-resolution lam 2 .. 12 (swept), zeta 0.25, 100 steps.

References:
    Zhu, Zhang, Liang, Cao, Wen, Timofte, Van Gool, "Denoising Diffusion Models for Plug-and-Play Image
    Restoration", CVPR Workshops 2023, arXiv:2305.08995.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import SpgdError
from ..operators.capabilities import require
from . import vp
from .base import Callback, GeneratorLike, NoiseFn, Result, Sampler

STARTS = ("y", "noise")

#: the release's floor on the measurement noise level, in its [0, 1] image units (`sigma = max(0.001, ...)`)
SIGMA_FLOOR = 0.001


def quad_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """The release's `skip_type='quad'` timesteps t_0 > ... > t_{n-1} = 0 of an n-step run on T training steps:
    seq_j = int(sqrt(linspace(0, T^2, n))_j) (numpy float64), seq_{n-1} -= 1, t_j = T - 1 - seq_j. The last one is
    the release's `seq[-1] - 1` hack that lands the run on t = 0.

    >>> quad_timesteps(1000, 15)
    [999, 732, 622, 537, 465, 402, 345, 292, 244, 198, 154, 113, 74, 36, 0]
    """
    seq = [int(s) for s in np.sqrt(np.linspace(0, num_train_steps**2, steps))]
    seq[-1] -= 1
    return [num_train_steps - 1 - s for s in seq]


@dataclass(frozen=True)
class DiffPIRTables:
    """The release's tables over the T training steps.

    The loop's schedule is float32 as the scripts compute it in numpy/torch: beta (float32 linspace), abar =
    np.cumprod(1 - beta) (a sequential float32 product), a = sqrt(abar), b = sqrt(1 - abar), r = b / a. The
    network's x0_hat coefficients c1 = sqrt(1 / abar'), c2 = sqrt(1 / abar' - 1) are guided-diffusion's float64
    ones (its `SpacedDiffusion` over all T steps: beta'_t = 1 - abar_t / abar_{t-1}, abar' = cumprod(1 - beta')).
    """

    beta: Tensor  # float32 (T,)
    a: Tensor  # float32 sqrt(abar_t)
    b: Tensor  # float32 sqrt(1 - abar_t)
    r: Tensor  # float32 b / a: the noise level of x_t / a_t (the release's `reduced_alpha_cumprod`)
    c1: Tensor  # float64 sqrt(1 / abar'_t)
    c2: Tensor  # float64 sqrt(1 / abar'_t - 1)
    abar64: Tensor  # float64 abar'_t (what a prior without integer timesteps is asked at)

    @classmethod
    def from_betas(cls, train_betas: Tensor) -> "DiffPIRTables":
        """Both tables from the prior's training betas (float64 (T,), `vp.training_betas`)."""
        beta64 = train_betas.detach().to("cpu", torch.float64).numpy()
        # the loop's float32 schedule: numpy's cumprod is a plain sequential float32 product (torch's CPU cumprod
        # accumulates float32 in double, which is not what the release ran). The square roots are numpy's, correctly
        # rounded: torch's CPU sqrt goes through MKL, whose last bit depends on the processor (the fixtures' a, b
        # differ from correctly rounded ones by one float32 ulp in about a fifth of the entries)
        beta = beta64.astype(np.float32)
        abar = np.cumprod(np.float32(1.0) - beta, axis=0)
        a, b = np.sqrt(abar), np.sqrt(np.float32(1.0) - abar)
        # guided-diffusion's float64 table, respaced over every training step
        abar_train = np.cumprod(1.0 - beta64, axis=0)
        beta_resp = 1.0 - abar_train / np.concatenate([[1.0], abar_train[:-1]])
        abar_resp = np.cumprod(1.0 - beta_resp, axis=0)
        return cls(
            beta=torch.from_numpy(beta), a=torch.from_numpy(a), b=torch.from_numpy(b), r=torch.from_numpy(b / a),
            c1=torch.from_numpy(np.sqrt(1.0 / abar_resp)), c2=torch.from_numpy(np.sqrt(1.0 / abar_resp - 1)),
            abar64=torch.from_numpy(abar_resp),
        )

    def rho(self, lam: float, sigma: float) -> Tensor:
        """rho_t = lam sigma^2 / r_t^2 (float32 (T,)), as the release computes it in torch (a Python float over a
        float32 tensor: the reciprocal of r_t^2 times lam sigma^2)."""
        return (lam * sigma**2) / self.r**2

    def nearest(self, level: float) -> int:
        """argmin_t |r_t - level| (the release's `find_nearest`, in float32)."""
        return int(torch.argmin(torch.abs(self.r - level)))


@dataclass
class DiffPIR(Sampler):
    """DiffPIR as the release runs it. With n = `steps`, the quad timesteps t_0 = T-1 > ... > t_{n-1} = 0
    (`quad_timesteps`), the release's float32 tables a_t, b_t, r_t = b_t/a_t, beta_t and guided-diffusion's float64
    c1_t, c2_t (`DiffPIRTables`), and sigma = max(0.001, noise_sigma / 2), per step i = 0 .. n-1 at t = t_i:

        x0_hat = clamp(f32(c1_t) x - f32(c2_t) eps(x, t), -1, 1)                (the network's x0 estimate)
        -- steps i < n-1 only --
        x0_hat <- prox(x0_hat, y, rho_t),  rho_t = lam sigma^2 / r_t^2          (the data step, one solve)
                 prox(z, y, rho) = argmin_x ||y - A x||^2 + rho ||x - z||^2
        eps_hat = (x - a_t x0_hat) / b_t
        eta_s   = eta b_t' / b_t sqrt(beta_t),  t' = t_{i+1}
        x <- a_t' x0_hat + sqrt(1 - zeta) (sqrt(b_t'^2 - eta_s^2) eps_hat + eta_s n_eta) + (sqrt(zeta) b_t') n

    At the last step (t = 0) the network is evaluated and its output discarded, as the release does (the call is
    counted): the result is x after step n-2, the state at t = 0.

    Start (unless `x_start` is given; z is the run's first draw, shaped like x):
    - y shaped like x (blur, inpainting, denoising): y is its own pseudo-measurement image. With t_y = argmin_t
      |r_t - noise_sigma| (the timestep whose noise matches y's) and s = a_{T-1} / a_{t_y}:
      x_T = s y + sqrt(b_{T-1}^2 - s^2 b_{t_y}^2) z (float32 0-d arithmetic as released). For inpainting the missing
      pixels of y are used as given (the release's y has -1 there, the library operator's 0).
    - y of another shape (super-resolution): x_T = a_{T-1} u + b_{T-1} z with u the operator's own up-sampling of y,
      `operator.pseudo_inverse(y)` (the library's x4 operator: bicubic) or else `operator.pinv(y)`, counted as one
      operator solve. The release up-samples with OpenCV's INTER_CUBIC resize, which is not reimplemented here:
      pass x_start to reproduce its start.

    Units. The release measures sigma_n on [0, 1] images (its `noise_level_img`; y is noised with std
    2 sigma_n on [-1, 1]) while r_t is a noise level of [-1, 1] images, so its rho_t = lam sigma_n^2 / r_t^2 mixes
    the two: in consistent [-1, 1] units (sigma = noise_sigma) its lam acts as lam / 4. We keep the release's
    convention (sigma = noise_sigma / 2) so that its published lam values mean what they meant. The state and y
    stay in [-1, 1]: the release's FFT data step works on u = x0_hat / 2 + 1/2 and y in [0, 1], which gives the
    same minimiser for any A with A 1 = 1 (a blur kernel summing to 1, with or without decimation), because
    then ||(2y-1) - A(2u-1)||^2 = 4 ||y - A u||^2 and ||(2u-1) - (2u0-1)||^2 = 4 ||u - u0||^2.

    Release versus paper (Algorithm 1 of arXiv:2305.08995):
    - start: the paper samples x_T ~ N(0, I) (`start="noise"`); the release starts from y noised to t = T-1
      (above, `start="y"`, the default);
    - rho_t in mixed units (lam / 4 in consistent units, above), and sigma floored at 0.001 (noise-free inpainting);
    - eta (a DDIM-like split of the fresh noise, default 0 = the paper's update) is the release's addition, and
      two standard-normal draws are made per step even when eta = 0;
    - x0_hat is clipped to [-1, 1] before the data step (guided-diffusion's `clip_denoised`);
    - the quad schedule ends at t = 0 by the `seq[-1] - 1` hack, and the t = 0 network call is made and discarded,
      so a run of n steps costs n network calls for n - 1 data steps;
    - measured (benchmarks/RESULTS.md section 8): `start` changes nothing that shows, y's weight at t = T-1 being
      sqrt(abar) = 6e-3 (outputs 4e-7 to 4e-5 relative apart, the same PSNR to 0.01 dB on blur and inpainting);
    - c1, c2 come from guided-diffusion's float64 tables while the rest of the loop uses the script's float32
      ones (they differ in the last float32 bits).

    Callback per step: "step", "t", "sigma" (r_t), "sigma_next" (r_t', 0 at the last step), "x" (state after the
    step), "x0_hat" (the network's clipped x0), "x0_y" (after the data step), "x_level" (state before the step),
    "x_warm", "loss" ([||A x0_hat - y||^2] per sample: one operator forward, made only for the callback) and
    "alive". The step is not a sum of a data move and a prior move, so "x_warm" reports as the data part the
    difference the data step makes to the new state, same noise: x_warm - x_level = (a_t' - sqrt(1 - zeta)
    sqrt(b_t'^2 - eta_s^2) a_t / b_t) (x0_y - x0_hat); x - x_warm is the move the step makes without the data step.
    """

    needs: ClassVar[tuple[str, ...]] = ("prox",)  # operator capabilities (spgd.operators.capabilities)

    steps: int = 100  # n: timesteps visited, the last (t = 0) included: n network calls, n - 1 data steps
    lam: float = 7.0  # lambda: weight of the data term, rho_t = lam sigma^2 / r_t^2 (released: per task)
    zeta: float = 0.3  # zeta in [0, 1]: share of fresh noise in the re-noise step (released: per task)
    eta: float = 0.0  # eta in [0, 1]: DDIM-like stochasticity inside the deterministic part (released: 0)
    start: str = "y"  # "y": x_T from y noised to t = T-1 (the release); "noise": x_T = z ~ N(0, I) (the paper)
    check_every: int = 10
    progress: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.steps <= 1000:
            raise SpgdError(f"steps must be in [2, 1000] for DiffPIR (the t = 0 step included), got {self.steps}")
        if not (self.lam > 0 and math.isfinite(self.lam)):
            raise SpgdError(f"lam must be a finite number > 0, got {self.lam}")
        if not 0 <= self.zeta <= 1:
            raise SpgdError(f"zeta must be in [0, 1], got {self.zeta}")
        if not 0 <= self.eta <= 1:
            raise SpgdError(f"eta must be in [0, 1], got {self.eta}")
        if self.start not in STARTS:
            raise SpgdError(f"start must be one of {STARTS}, got {self.start!r}")

    def tables(self, prior=None) -> DiffPIRTables:
        """The release's tables for the prior's training schedule (`vp.training_betas`)."""
        return DiffPIRTables.from_betas(vp.training_betas(prior))

    def timesteps(self, num_train_steps: int = 1000) -> list[int]:
        if self.steps > num_train_steps:
            raise SpgdError(f"steps must be <= the prior's {num_train_steps} training steps, got {self.steps}")
        return quad_timesteps(num_train_steps, self.steps)

    def run(
        self, y: Tensor, operator, prior, generator: GeneratorLike = None, callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None, x_shape: Optional[Sequence[int]] = None, noise: Optional[NoiseFn] = None,
    ) -> Result:
        """Restore x from y (images in [-1, 1]). Random draws, in order (`noise` replays them): the start's z
        (shaped like x; none when `x_start` is given), then per step i < n-1 two draws shaped like x, n_eta then n
        (made even when eta = 0); the last step draws nothing."""
        require(operator, "prox", "diffpir")
        run = self.start_run(y, operator, prior, generator, noise, x_start, x_shape)
        tab = self.tables(run.prior)
        ts = self.timesteps(len(tab.beta))
        n = len(ts)
        dev = run.x.device
        a, b, beta, c1, c2 = (v.to(dev) for v in (tab.a, tab.b, tab.beta, tab.c1.float(), tab.c2.float()))
        noise_sigma = float(getattr(operator, "noise_sigma", 0.0) or 0.0)
        sigma = max(SIGMA_FLOOR, noise_sigma / 2)  # the release's [0, 1]-unit noise level (see the docstring)
        rho = tab.rho(self.lam, sigma)
        s1 = math.sqrt(1 - self.zeta)  # a float64 scalar in the release (np.sqrt)
        with run.meter:
            x = run.x
            if x_start is None and self.start == "y":  # x_T from y and the start draw z = run.x
                x = self.start_from_y(x, y, operator, tab, a, b, noise_sigma, run.meter.stats)
            for i in run.progress(range(n)):
                t, x_level = ts[i], x
                # x0_hat = clamp(c1_t x - c2_t eps(x, t), -1, 1): guided-diffusion's p_sample "pred_xstart"
                with torch.no_grad():
                    eps = vp.predict_eps(run, x, t, float(tab.abar64[t]))
                x0_hat = (c1[t] * x - c2[t] * eps).clamp(-1, 1)
                if i == n - 1:  # t = 0: the release evaluates the network and discards its output
                    x_new, x0_y, warm = x, x0_hat, x
                else:
                    t_next = ts[i + 1]
                    # data step: x0_y = argmin ||y - A x||^2 + rho_t ||x - x0_hat||^2, in [-1, 1] units (the
                    # release solves it on [0, 1] images: the same minimiser when A 1 = 1, e.g. a kernel summing to 1,
                    # as both terms scale by 4), written as the release's x0 + guidance_scale (x0_p - x0) with
                    # guidance_scale 1, which is not always bitwise x0_p
                    x0_p = operator.prox(x0_hat, y, float(rho[t]))
                    run.meter.stats.operator_solves += 1
                    x0_y = x0_hat + (x0_p - x0_hat)
                    # re-noise to t': eps_hat from the corrected x0, fresh noise weighted by zeta (0-d float32 tensors
                    # in the release's order of operations)
                    eps_hat = (x - a[t] * x0_y) / b[t]
                    eta_s = self.eta * b[t_next] / b[t] * torch.sqrt(beta[t])
                    B = torch.sqrt(b[t_next] ** 2 - eta_s**2)
                    c_fresh = math.sqrt(self.zeta) * b[t_next]
                    n_eta = run.draw.like(x)
                    n_fresh = run.draw.like(x)
                    x_new = a[t_next] * x0_y + s1 * (B * eps_hat + eta_s * n_eta) + c_fresh * n_fresh
                    warm = x_level + (a[t_next] - s1 * B * a[t] / b[t]) * (x0_y - x0_hat)
                x = run.tracker.check(run.tracker.freeze(x_new, x), i, last=i == n - 1)
                if callback is not None:
                    with torch.no_grad():
                        loss = (operator.forward(x0_hat) - y).pow(2).flatten(1).sum(1)
                    callback({"step": i, "t": t, "sigma": float(tab.r[t]),
                              "sigma_next": 0.0 if i == n - 1 else float(tab.r[ts[i + 1]]), "x": x,
                              "x0_hat": x0_hat, "x0_y": x0_y, "x_level": x_level, "x_warm": warm, "loss": [loss],
                              "alive": run.tracker.alive})
            return run.finish(x, y, operator, n - 1)

    def start_from_y(self, z: Tensor, y: Tensor, operator, tab: DiffPIRTables, a: Tensor, b: Tensor,
                     noise_sigma: float, stats) -> Tensor:
        """x_T from the start draw z (see the class docstring): y noised from its own level t_y to T - 1 when y is
        shaped like x, else the operator's up-sampling of y noised to T - 1."""
        T = len(tab.beta)
        if tuple(y.shape) == tuple(z.shape):
            t_y = tab.nearest(noise_sigma)  # the release's find_nearest(r, 2 sigma_n), sigma_n in [0, 1] units
            s = a[T - 1] / a[t_y]
            return s * y + torch.sqrt(b[T - 1] ** 2 - s**2 * b[t_y] ** 2) * z
        up = getattr(operator, "pseudo_inverse", None)
        up = up if callable(up) else getattr(operator, "pinv", None)
        if not callable(up):
            raise SpgdError(
                f"diffpir starts from the operator's up-sampling of y when y {tuple(y.shape)} is not shaped like x "
                f"{tuple(z.shape)}; {type(operator).__name__} has neither pseudo_inverse(y) nor pinv(y): pass x_start"
            )
        with torch.no_grad():
            u = up(y)
        stats.operator_solves += 1
        if tuple(u.shape) != tuple(z.shape):
            raise SpgdError(
                f"{type(operator).__name__}'s up-sampling of y has shape {tuple(u.shape)}, x has {tuple(z.shape)}"
            )
        return a[T - 1] * u + b[T - 1] * z
