"""VP preconditioning (EDM, Karras et al. 2022, Table 1): an epsilon-prediction network as a denoiser D(x; sigma).

Networks trained here may instead use EDM's output scaling (`scaling="edm"`), which bounds the denoiser's error
at high noise: an epsilon network's D = x - sigma * F multiplies any error of F by sigma (100 at the top of the
samplers' schedule), and a small network cannot learn F to the ~1 % that needs.

References:
    Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", arXiv 2206.00364.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..errors import SpgdError
from .base import Prior, SigmaLike, append_dims, sigma_as_batch

PRECISIONS = ("fp32", "bf16")
SCALINGS = ("eps", "edm")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "auto")
# compile_mode "auto": CUDA graphs (torch.compile's "reduce-overhead") for CUDA batches of at most this many images,
# where a step is bound by kernel launches rather than arithmetic; the default mode for larger batches and off CUDA.
GRAPH_MAX_BATCH = 4
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the torch.compile modes that replay CUDA graphs


def autocast(device: torch.device, precision: str):
    """bf16 autocast on `device` for precision "bf16" (CUDA and CPU both support it); else nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class VPPrecond(Prior):
    """D(x; sigma) = c_skip * x + c_out * F(c_in * x, c_noise) for a network F trained on the VP SDE.

    c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1), c_noise = (M - 1) * t(sigma), where
    sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) and t(sigma) its inverse. F predicts epsilon;
    when it also returns learned-variance channels (guided-diffusion `learn_sigma`), the first
    `img_channels` are used. By default the network runs in float32 with frozen weights; gradients reach x.

    `scaling="edm"` (networks trained by `spgd train`): c_skip = sd^2 / (sigma^2 + sd^2),
    c_out = -sigma * sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2) with sd = `sigma_data`, and the
    same c_noise. Its sign and its low-noise limit (c_skip -> 1, c_out -> -sigma) are those of the epsilon form,
    so an epsilon network is a good start for it; at high noise D -> -sd * F, bounded.

    Execution settings (`configure`, or `spgd.priors.fast`), none of which changes what D computes beyond
    rounding: `precision="bf16"` runs the network call alone under bf16 autocast (its output is cast back, so
    the sampler state and the likelihood stay float32); `channels_last` stores the network's convolution
    weights and input in NHWC order; `compile` runs the network through `torch.compile` (a failure while
    compiling falls back to eager with a warning); `compile_mode` is torch.compile's mode, or "auto": CUDA graphs
    ("reduce-overhead") for CUDA batches of at most `GRAPH_MAX_BATCH` images and the default mode otherwise
    (`compile_mode_for`). `param_grads=True` is the released code's configuration,
    kept for benchmarks: the network's parameters require grad, so a likelihood gradient runs a full
    backward that also fills their `.grad` (see `spgd.samplers.base.likelihood_grad`).
    """

    def __init__(
        self,
        net: nn.Module | Callable[[Tensor, Tensor], Tensor],  # F(x_in, t) -> epsilon, t in [0, M-1]
        img_channels: int = 3,  # channels of x; the leading channels of F's output
        beta_d: float = 19.9,  # extent of the linear beta schedule
        beta_min: float = 0.1,  # initial beta
        M: int = 1000,  # number of discrete timesteps the network was trained with
        epsilon_t: float = 1e-5,  # smallest t, fixing sigma_min
        scaling: str = "eps",  # "eps": D = x - sigma F (guided-diffusion/DPS checkpoints); "edm": see above
        sigma_data: float = 0.5,  # EDM's data standard deviation (scaling="edm" only)
        precision: str = "fp32",  # "fp32", or "bf16": autocast for the network call only
        channels_last: bool = False,  # NHWC memory format for the network
        compile: bool = False,  # torch.compile the network (eager fallback with a warning)
        compile_mode: Optional[str] = None,  # None/"default", "reduce-overhead", "max-autotune", ..., "auto"
        param_grads: bool = False,  # reference mode: parameters require grad (the released code's cost)
    ):
        super().__init__()
        self.net = net
        if isinstance(net, nn.Module):
            net.requires_grad_(False)
            net.eval()
        self.img_channels = img_channels
        self.beta_d = beta_d
        self.beta_min = beta_min
        self.M = M
        self.epsilon_t = epsilon_t
        if scaling not in SCALINGS:
            raise SpgdError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        if not sigma_data > 0:
            raise SpgdError(f"sigma_data must be > 0, got {sigma_data}")
        self.scaling = scaling
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(self.sigma(epsilon_t))
        self.sigma_max = float(self.sigma(1.0))
        self.precision = "fp32"
        self.channels_last = False
        self.use_compile = False
        self.compile_mode: Optional[str] = None
        self.param_grads = False
        # The compiled networks (one per torch.compile mode in use) are kept out of the module tree so
        # state_dict() and .to() see the plain net.
        self.__dict__["_compiled_nets"] = {}
        self.configure(
            precision=precision,
            channels_last=channels_last,
            compile=compile,
            compile_mode=compile_mode,
            param_grads=param_grads,
        )

    def configure(
        self,
        precision: Optional[str] = None,
        channels_last: Optional[bool] = None,
        compile: Optional[bool] = None,
        compile_mode: Optional[str] = None,
        param_grads: Optional[bool] = None,
    ) -> "VPPrecond":
        """Change how the network is run (None keeps a setting); returns self. See the class docstring."""
        if precision is not None:
            if precision not in PRECISIONS:
                raise SpgdError(f"precision must be one of {PRECISIONS}, got {precision!r}")
            self.precision = precision
        net = self.net if isinstance(self.net, nn.Module) else None
        if channels_last is not None:
            changed = bool(channels_last) != self.channels_last
            self.channels_last = bool(channels_last)
            if net is not None and changed:
                net.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        if param_grads is not None:
            self.param_grads = bool(param_grads)
            if net is not None:
                net.requires_grad_(self.param_grads)
        if compile_mode is not None:
            if compile_mode not in COMPILE_MODES:
                raise SpgdError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
            self.compile_mode = None if compile_mode == "default" else compile_mode
            self.__dict__["_compiled_nets"] = {}  # recompiled on the next call with the new mode
        if compile is not None:
            self.use_compile = bool(compile)
            if not self.use_compile:
                self.__dict__["_compiled_nets"] = {}
        return self

    def settings(self) -> dict:
        """The execution settings, as `configure` takes them."""
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.use_compile,
            "compile_mode": self.compile_mode or "default",
            "param_grads": self.param_grads,
        }

    def sigma(self, t: float | Tensor) -> float | Tensor:
        """VP noise level at time t in [0, 1]."""
        if isinstance(t, Tensor):
            return ((0.5 * self.beta_d * t**2 + self.beta_min * t).exp() - 1).sqrt()
        return math.sqrt(math.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t))

    def sigma_inv(self, sigma: Tensor) -> Tensor:
        """Time t at which the VP noise level is sigma."""
        return ((self.beta_min**2 + 2 * self.beta_d * (1 + sigma**2).log()).sqrt() - self.beta_min) / self.beta_d

    def train(self, mode: bool = True) -> "VPPrecond":
        # The wrapped network stays in eval mode (dropout off): it is a fixed prior.
        super().train(mode)
        if isinstance(self.net, nn.Module):
            self.net.eval()
        return self

    def scalings(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in) at noise levels s (any shape)."""
        if self.scaling == "edm":
            sd2 = self.sigma_data**2
            return sd2 / (s**2 + sd2), -s * self.sigma_data / (s**2 + sd2).sqrt(), 1 / (s**2 + sd2).sqrt()
        return s.new_ones(()), -s, 1 / (s**2 + 1).sqrt()  # c_skip = 1: a scalar, nothing per pixel

    def denoise(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        sigma = sigma_as_batch(sigma, x)
        c_skip, c_out, c_in = self.scalings(append_dims(sigma, x.ndim))
        c_noise = (self.M - 1) * self.sigma_inv(sigma)
        f = self.run_net((c_in * x).to(torch.float32), c_noise.to(torch.float32))
        f = f[:, : self.img_channels].to(x.dtype)
        if self.scaling == "eps":
            return x + c_out * f  # c_skip = 1: kept exact, as the checkpoints' reference code computes it
        return c_skip * x + c_out * f

    def ddpm_betas(self) -> Optional[Tensor]:
        """The discrete schedule the network was trained on, beta_t = (beta_min + beta_d * t / (M - 1)) / M for
        t = 0..M-1 (guided-diffusion's linear schedule, 1e-4 .. 0.02 for the defaults), float64 (M,); None for an
        EDM-scaled network, whose output is not an epsilon prediction at integer timesteps."""
        if self.scaling != "eps":
            return None
        return torch.linspace(self.beta_min / self.M, (self.beta_min + self.beta_d) / self.M, self.M, dtype=torch.float64)

    def ddpm_eps(self, x_t: Tensor, timestep: int) -> tuple[Tensor, Optional[Tensor]]:
        """The network's raw output at the DDPM state x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps and integer
        timestep t, as the DPS/guided-diffusion code queries it: (epsilon, v), where v (in [-1, 1] by training)
        interpolates the log-variance between the posterior's and beta_t when the checkpoint learned it
        (`learn_sigma`: 2 * img_channels outputs), else None."""
        c_noise = torch.full((x_t.shape[0],), float(timestep), dtype=torch.float32, device=x_t.device)
        f = self.run_net(x_t.to(torch.float32), c_noise).to(x_t.dtype)
        c = self.img_channels
        return f[:, :c], (f[:, c : 2 * c] if f.shape[1] >= 2 * c else None)

    def compile_mode_for(self, x_in: Tensor) -> Optional[str]:
        """The torch.compile mode used for the network input `x_in` (None: the default mode). "auto" resolves
        to "reduce-overhead" (CUDA graphs) for CUDA batches of at most GRAPH_MAX_BATCH, else to None."""
        if self.compile_mode != "auto":
            return self.compile_mode
        small = x_in.device.type == "cuda" and x_in.shape[0] <= GRAPH_MAX_BATCH
        return "reduce-overhead" if small else None

    def run_net(self, x_in: Tensor, c_noise: Tensor, eager: bool = False) -> Tensor:
        """F(x_in, c_noise) as configured (precision, memory format, compiled or not); `eager` skips
        torch.compile. The output is float32 whatever the precision."""
        if self.channels_last and x_in.ndim == 4:
            x_in = x_in.contiguous(memory_format=torch.channels_last)
        mode = self.compile_mode_for(x_in)
        net = self.net if eager or not self.use_compile else self._compiled(mode)
        with autocast(x_in.device, self.precision):
            try:
                f = net(x_in, c_noise)
            except SpgdError:
                raise
            except Exception as e:  # noqa: BLE001 - a compiler failure must not end a restoration
                if net is self.net:
                    raise
                warnings.warn(f"torch.compile of the denoiser failed, running it eagerly: {_first_line(e)}")
                self.use_compile = False
                self.__dict__["_compiled_nets"] = {}
                f = self.net(x_in, c_noise)
        if net is not self.net and mode in GRAPH_MODES:
            f = f.clone()  # CUDA-graph outputs are overwritten by the next replay; the sampler keeps x0_hat
        return f.float()

    def _compiled(self, mode: Optional[str]) -> Callable[[Tensor, Tensor], Tensor]:
        compiled = self.__dict__["_compiled_nets"].get(mode)
        if compiled is None:
            try:
                kwargs = {} if mode is None else {"mode": mode}
                # dynamic=False: one specialised graph per batch shape (a restoration uses one or two)
                compiled = torch.compile(self.net, dynamic=False, **kwargs)
            except Exception as e:  # noqa: BLE001 - e.g. no compiler back end on this platform
                warnings.warn(f"torch.compile is not available here, running the denoiser eagerly: {_first_line(e)}")
                self.use_compile = False
                return self.net
            self.__dict__["_compiled_nets"][mode] = compiled
        return compiled

    def extra_repr(self) -> str:
        sigmas = f"sigma=[{self.sigma_min:.4g}, {self.sigma_max:.4g}]"
        plain = self.precision == "fp32" and not (self.use_compile or self.channels_last or self.param_grads)
        fast = "" if plain else (
            f", precision={self.precision}, channels_last={self.channels_last}, compile={self.use_compile}"
            f", param_grads={self.param_grads}"
        )
        scaling = "" if self.scaling == "eps" else f", scaling=edm, sigma_data={self.sigma_data}"
        return f"beta_d={self.beta_d}, beta_min={self.beta_min}, M={self.M}{scaling}, {sigmas}{fast}"
