"""DDRM: Denoising Diffusion Restoration Models (Kawar et al., NeurIPS 2022), as the authors released it.

Matches `bahjat-kawar/ddrm` @ 32b6b3c (`functions/denoising.py`, `efficient_generalized_steps`; schedule and
timesteps from `runners/diffusion.py`) to float32 precision on a discrete-time epsilon network
(tests/samplers/test_ddrm.py replays the recorded runs of ../shared/fixtures/reference-ddrm/).

DDRM works in the spectral basis of the operator, A = U diag(s) V^T (the operator's `svd` capability,
`spgd.operators.capabilities`): spectral vectors V^T x have D entries, the first L paired with the singular values
s, the rest spanning the null space; U^T y has L entries. Each spectral entry of the next state is drawn from one
of three closed-form rules (null space / less noisy than y / noisier than y), so one step costs one network call
and one projection round trip V^T, V, and no gradient.

References:
    Kawar, Elad, Ermon, Song, "Denoising Diffusion Restoration Models", NeurIPS 2022, arXiv:2201.11793.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import ClassVar, Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from ..operators.capabilities import batch_svds, require
from . import vp
from .base import Callback, GeneratorLike, NoiseFn, Result, Sampler

ZERO_SINGULARS = ("after", "null")


def released_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """The timesteps the release visits, ascending: range(0, T, T // steps) (`Diffusion.sample_image`). This is
    `steps` timesteps when `steps` divides T, and more otherwise: T = 1000, steps = 15 gives skip 66 and the 16
    timesteps 0, 66, ..., 990."""
    return list(range(0, num_train_steps, num_train_steps // steps))


def alphas_cumprod_ext(train_betas: Tensor) -> Tensor:
    """abar_ext (T + 1,) float32 on the CPU: cumprod(1 - [0, beta_0, ..., beta_{T-1}]), the release's
    `compute_alpha` table (betas cast to float32 first, the product taken by torch on the CPU in float32), so that
    abar(t) = abar_ext[t + 1] and abar(-1) = 1."""
    betas = train_betas.detach().to("cpu", torch.float32)
    return torch.cumprod(1 - torch.cat([betas.new_zeros(1), betas]), 0)


@dataclass(frozen=True)
class DDRMSchedule:
    """The loop's timesteps, noisiest first: step i goes from t[i] to t_next[i] (t_next of the last step is -1),
    with abar[i] = abar(t[i]) and abar_next[i] = abar(t_next[i]), float32 (n,) on the CPU as the release uses them."""

    t: list[int]
    t_next: list[int]
    abar: Tensor
    abar_next: Tensor
    abar_ext: Tensor  # (T + 1,) the table they are read from

    @classmethod
    def released(cls, train_betas: Tensor, steps: int) -> "DDRMSchedule":
        ext = alphas_cumprod_ext(train_betas)
        seq = released_timesteps(len(train_betas), steps)
        t, t_next = seq[::-1], ([-1] + seq[:-1])[::-1]
        return cls(t, t_next, ext[torch.tensor(t) + 1], ext[torch.tensor(t_next) + 1], ext)


def _f32(x: Tensor) -> float:
    """A float32 scalar tensor as a Python float (exact), to multiply tensors on any device without a copy."""
    return float(x)


@dataclass
class DDRM(Sampler):
    """DDRM on the VP (DDPM) time axis, in the variance-exploding spectral variable v = V^T x_t / sqrt(abar_t).

    Set-up: s (L,) the singular values, Uy = U^T y (L,), sigma_0 = operator.noise_sigma (in [-1, 1] units, the
    release's runner doubles its --sigma_0 for the same reason), sigma(t) = sqrt(1 - abar_t) / sqrt(abar_t).

    Start (rule 0; skipped when `x_start` is given, which is then the first state itself): with z the run's first
    draw (shape of x) flattened row-major and used directly as a spectral vector, s_T = sigma(t_first),
    "large" = {k < L : s_k s_T > sigma_0}, inv_k = sigma_0 / s_k and u_k = Uy_k / s_k on the large entries (0
    elsewhere, and for k >= L), r_k = sqrt(max(s_T^2 - inv_k^2, 0)):

        x = V((u + r * z) / s_T)

    Step (t -> t'), abar = abar(t), abar' = abar(t') (1 at t' = -1), sigma' = sigma(t') (0 at the last step):

        eps    = eps_theta(x, t)
        x0_hat = (x - sqrt(1 - abar) eps) / sqrt(abar)                      (no clipping, as released)
        v0 = V^T x0_hat, e = V^T eps, c = eta sigma', c~ = sqrt(sigma'^2 - c^2)
        all k (null space):               v'_k = v0_k + c~ e_k + c zC_k
        after  (k < L, s_k sigma' < sigma_0): v'_k = v0_k + c~ (Uy_k - s_k v0_k) / sigma_0 + c zA_j
        before (k < L, s_k sigma' > sigma_0): v'_k = eta_b Uy_k / s_k + (1 - eta_b) v0_k
                                                   + sqrt(sigma'^2 - sigma_0^2 eta_b^2 / s_k^2) zB_k
        x' = sqrt(abar') V(v')

    (j numbers the "after" entries in ascending k; an entry with s_k sigma' = sigma_0 exactly keeps the null-space
    rule, as released.)

    Timesteps (`steps`, the release's `timesteps` argument): skip = T // steps and the timesteps range(0, T, skip)
    in reverse, T = the prior's training steps (1000): steps = 20 visits 20 timesteps, steps = 15 visits 16 (0, 66,
    ..., 990); `released_timesteps`. abar comes from the release's float32 table (`alphas_cumprod_ext`).

    Where the release differs from the paper (the default is the release):
    - zero singular values (k < L, s_k = 0) take the "after" rule, which adds c~ Uy_k / sigma_0 (scaled measurement
      noise) to a component A does not see; the paper puts them in the null space. `zero_singulars="null"` selects
      the paper's rule (then fewer "after" entries are drawn). Only operators with zero singular values inside the
      first L entries are affected (the release's deblurring H-functions).
    - the start is scaled by 1 / s_T where the paper's x_T = sqrt(abar_T) xbar_T has 1 / sqrt(1 + s_T^2) (a relative
      difference of 1 / (2 s_T^2) = 5e-5 at t = 950 of the linear schedule), and z is used as a spectral vector
      directly instead of as an image mapped by V^T (the same distribution, V being orthonormal).
    Measured effect (benchmarks/RESULTS.md section 8, `benchmarks/release_vs_paper.py`): `zero_singulars` changes
    nothing on the library's operators (identical outputs on Gaussian blur, 21.28 dB on the Gaussian problem and
    27.94 dB on four faces), which have no zero singular values.
    The release's null-space rule uses the network's V^T eps where the paper writes (V^T x_{t+1}/sqrt(abar_{t+1}) -
    v0) / sigma_{t+1}: the two are equal.

    Priors without integer timesteps (the Gaussian prior, EDM-scaled networks, callables) get eps from their
    denoiser (`vp.predict_eps`) on the linear DDPM schedule.

    Costs: one denoiser call per step; `operator_solves` counts one spectral projection round trip per step (V^T of
    x0_hat and eps, then V of v') and one for the start (U^T y and V of the first spectral vector; none when
    `x_start` is given).
    """

    needs: ClassVar[tuple[str, ...]] = ("svd",)  # operator capabilities (spgd.operators.capabilities)

    steps: int = 20  # the release's `timesteps`: timesteps range(0, T, T // steps) (see the class docstring)
    eta: float = 0.85  # eta_A = eta_C: the fresh-noise share of the null-space and "after" rules (released: 0.85)
    eta_b: float = 1.0  # eta_B: the weight of y on the "before" entries (released: 1.0)
    zero_singulars: str = "after"  # "after" (release) or "null" (paper): the rule of entries with s_k = 0
    check_every: int = 5
    progress: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise SpgdError(f"steps must be >= 1, got {self.steps}")
        for name in ("eta", "eta_b"):
            if not 0 <= getattr(self, name) <= 1:
                raise SpgdError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.zero_singulars not in ZERO_SINGULARS:
            raise SpgdError(f"zero_singulars must be one of {ZERO_SINGULARS}, got {self.zero_singulars!r}")
        if self.check_every < 1:
            raise SpgdError(f"check_every must be >= 1, got {self.check_every}")

    def schedule(self, prior=None) -> DDRMSchedule:
        """The release's timesteps and float32 abar table on the prior's training schedule (else the linear one)."""
        betas = vp.training_betas(prior)
        if self.steps > len(betas):
            raise SpgdError(f"steps must be <= the prior's {len(betas)} training steps, got {self.steps}")
        return DDRMSchedule.released(betas, self.steps)

    def run(
        self, y: Tensor, operator, prior, generator: GeneratorLike = None, callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None, x_shape: Optional[Sequence[int]] = None, noise: Optional[NoiseFn] = None,
    ) -> Result:
        """Restore x from y (in the operator's output form; U^T maps it to the spectral measurement).

        Random draws, in order (`noise` replays them): z, shape of x (the start, rule 0; none when `x_start` is
        given); then per step, when every image shares one SVD object (operator.svd returned one decomposition):
        C (B, D), A (B, n_after), B (B, L), of which only the "before" entries of B are used (A is (B, 0) while no
        entry is "after"); when the images have their own SVDs (e.g. a mask per image), for image 0, 1, ... in
        turn, from `run.draw.for_image(i)`: C (1, D), A (1, n_after_i), B (1, L_i). With one generator per image,
        image i gets the same numbers alone or in any batch either way.

        The callback gets, per step, "x_level" (the state before the step) and "x_warm": the prior part of the
        step, x - x_warm, is the step with the data rules removed (every entry takes the null-space rule with the
        same draw zC), so x_warm - x_level = sqrt(abar') V(v' - v'_null) is what y changed; "loss" holds
        ||U^T(A(x0_hat) - y)||^2 per image (the data misfit in U-space).
        """
        require(operator, "svd", "ddrm")
        sigma_0 = getattr(operator, "noise_sigma", None)
        if sigma_0 is None or not 0 <= float(sigma_0) < float("inf"):
            raise SpgdError(f"ddrm needs the operator's noise_sigma (>= 0, in [-1, 1] units), got {sigma_0!r}")
        sigma_0 = float(sigma_0)
        run = self.start_run(y, operator, prior, generator, noise, x_start, x_shape)
        sched = self.schedule(run.prior)
        n = len(sched.t)
        x = run.x
        svds = batch_svds(operator, x.shape, "ddrm")
        stats = run.meter.stats
        # the spectral groups: the whole batch with its one SVD (vectorised), or image by image
        if all(svd is svds[0] for svd in svds):
            groups = [_Group(svds[0], slice(0, x.shape[0]), run.draw, y)]
        else:
            groups = [_Group(svd, slice(i, i + 1), run.draw.for_image(i), y) for i, svd in enumerate(svds)]
        D = prod(x.shape[1:])
        with run.meter:
            if x_start is None:
                # rule 0: x_T from z and y (z taken as a spectral vector), scaled by 1 / s_T
                s_T = (1 - sched.abar[0]).sqrt() / sched.abar[0].sqrt()
                x = torch.cat([g.start(x[g.rows], s_T, sigma_0, D) for g in groups])
                stats.operator_solves += 1
            for i in run.progress(range(n)):
                a, a_next = sched.abar[i], sched.abar_next[i]
                x_level = x
                # eps = eps_theta(x_t, t); x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar), unclipped
                with torch.no_grad():
                    eps = vp.predict_eps(run, x, sched.t[i], float(a))
                x0_hat = (x - eps * _f32((1 - a).sqrt())) / _f32(a.sqrt())
                # the three rules in the spectral basis, then back: x' = sqrt(abar') V(v')
                coef = _Coefficients(a_next, self.eta, self.eta_b, sigma_0)
                parts = [g.step(x0_hat[g.rows], eps[g.rows], coef, self.zero_singulars, callback is not None)
                         for g in groups]
                stats.operator_solves += 1
                x_new = torch.cat([p[0] for p in parts]) * coef.sqrt_a_next
                x = run.tracker.check(run.tracker.freeze(x_new, x), i, last=i == n - 1)
                if callback is not None:
                    x_warm = x_level + torch.cat([p[1] for p in parts]) * coef.sqrt_a_next
                    callback({"step": i, "t": sched.t[i], "sigma": _f32((1 - a).sqrt() / a.sqrt()), "x": x,
                              "x0_hat": x0_hat, "x_level": x_level, "x_warm": x_warm,
                              "loss": [torch.cat([p[2] for p in parts])], "alive": run.tracker.alive})
            return run.finish(x, y, operator, n - 1)


class _Coefficients:
    """One step's scalars, computed in float32 as the release computes them (then exact Python floats)."""

    def __init__(self, a_next: Tensor, eta: float, eta_b: float, sigma_0: float):
        sigma_next = (1 - a_next).sqrt() / a_next.sqrt()  # sigma(t'), 0 at t' = -1
        c = sigma_next * eta
        self.sigma_next = _f32(sigma_next)
        self.sigma_next_sq = _f32(sigma_next**2)
        self.c = _f32(c)  # the fresh noise of the null-space and "after" rules
        self.c_tilde = _f32(torch.sqrt(sigma_next**2 - c**2))  # the share kept from eps / from y
        self.sqrt_a_next = _f32(a_next.sqrt())
        self.eta_b = eta_b
        self.sigma_0 = sigma_0


class _Group:
    """Images that share one SVD: their spectral measurement and the rules of DDRM on their spectral vectors."""

    def __init__(self, svd, rows: slice, draw, y: Tensor):
        self.svd, self.rows, self.draw = svd, rows, draw
        self.s = svd.singulars().to(y)  # (L,)
        self.s_host = self.s.to("cpu")  # the branch masks are made on the host: their sizes are draw shapes
        self.Uy = svd.Ut(y[rows])  # (N, L)
        self.L = self.s.shape[0]

    def start(self, z: Tensor, s_T: Tensor, sigma_0: float, D: int) -> Tensor:
        """Rule 0: V((u + r * z) / s_T)."""
        N, s = z.shape[0], self.s
        large = (self.s_host * s_T > sigma_0).nonzero().flatten().to(s.device)
        inv = s.new_zeros(D)
        inv[large] = sigma_0 / s[large]
        u = s.new_zeros(N, D)
        u[:, large] = self.Uy[:, large] / s[large]
        r = (_f32(s_T**2) - inv**2).clamp_min(0).sqrt()
        v = (u + r * z.reshape(N, -1)) / _f32(s_T)
        return self.svd.V(v).reshape(z.shape)

    def step(self, x0_hat: Tensor, eps: Tensor, k: _Coefficients, zero_singulars: str, want_split: bool):
        """V(v') and, when asked, V(v' - v'_null) (the data rules' part), and the U-space misfit (N,)."""
        N, s, Uy = x0_hat.shape[0], self.s, self.Uy
        v0, e = self.svd.Vt(x0_hat), self.svd.Vt(eps)
        Sv0 = v0[:, : self.L] * s
        before = self.s_host * k.sigma_next > k.sigma_0
        after = self.s_host * k.sigma_next < k.sigma_0
        if zero_singulars == "null":
            after &= self.s_host != 0
        before = before.nonzero().flatten().to(s.device)
        after = after.nonzero().flatten().to(s.device)
        # all entries (null space): v' = v0 + c~ e + c zC
        zC = self.draw(v0.shape, v0.device, v0.dtype)
        v_null = v0 + k.c_tilde * e + k.c * zC
        v = v_null.clone()
        # less noisy than y (after): v' = v0 + c~ (Uy - s v0) / sigma_0 + c zA
        zA = self.draw((N, after.numel()), v0.device, v0.dtype)
        v[:, after] = v0[:, after] + k.c_tilde * ((Uy - Sv0) / k.sigma_0)[:, after] + k.c * zA
        # noisier than y (before): v' = eta_b Uy / s + (1 - eta_b) v0 + d zB
        zB = self.draw(Uy.shape, v0.device, v0.dtype)
        d = torch.sqrt(k.sigma_next_sq - k.sigma_0**2 / s[before] ** 2 * (k.eta_b**2))
        v[:, before] = (Uy / s)[:, before] * k.eta_b + (1 - k.eta_b) * v0[:, before] + d * zB[:, before]
        shape = x0_hat.shape
        split = self.svd.V(v - v_null).reshape(shape) if want_split else None
        return self.svd.V(v).reshape(shape), split, (Uy - Sv0).pow(2).sum(1)
