"""The fast path for network priors: how the denoiser is run, and how large a batch fits.

A network prior (`VPPrecond`) is always run with frozen weights (no parameter gradients) and attention
through `scaled_dot_product_attention` (PyTorch picks its flash / memory-efficient kernels). The fast path
adds, for the network call only:

- bf16 autocast (`precision="bf16"`): convolutions and attention in bfloat16, GroupNorm and the output in
  float32; the sampler state, the likelihood and its gradient stay float32;
- `torch.compile` of the network (forward and, through AOTAutograd, its backward); a failure while
  compiling falls back to eager with a warning;
- with `compile_mode="reduce-overhead"`, CUDA graphs: each compiled graph is replayed as one launch, which is
  what pays at batch 1, where a step is bound by kernel-launch overhead rather than arithmetic;
  `compile_mode="auto"` uses them for CUDA batches of at most `GRAPH_MAX_BATCH` (4) images only;
- optionally channels-last (NHWC) memory format, off by default: whether it pays depends on the card and
  the cuDNN version (measure it with `spgd bench --channels-last on,off`).

`load_prior(..., fast=None)` turns the fast path on for CUDA devices and leaves it off elsewhere; `fast=False`
keeps the plain float32 eager network, `fast=True` asks for it on any device (bf16 autocast works on CPUs too,
but is rarely faster there). `reference(prior)` is the released code's configuration, for benchmarks.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Sequence, Union

import torch
from torch import Tensor

from ..errors import SpgdError
from .precond import COMPILE_MODES, PRECISIONS, VPPrecond

CPU_BATCH_SIZE = 4  # what auto_batch_size answers off CUDA (no free-memory measurement there)
MEMORY_FRACTION = 0.85  # share of free GPU memory auto_batch_size plans to fill


@dataclass(frozen=True)
class FastPath:
    """Execution settings of a network prior (see `VPPrecond.configure`)."""

    precision: str = "bf16"  # "fp32" or "bf16" (autocast for the network call only)
    channels_last: bool = False  # NHWC memory format for the network
    compile: bool = True  # torch.compile the network
    compile_mode: str = "default"  # "default", "reduce-overhead" (CUDA graphs), "max-autotune", ..., "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SpgdError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise SpgdError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")

    def as_dict(self) -> dict:
        return asdict(self)


EAGER_FP32 = FastPath(precision="fp32", channels_last=False, compile=False)

FastLike = Union[None, bool, FastPath, dict]


def resolve_fast(fast: FastLike, device: Union[str, torch.device, None]) -> FastPath:
    """The settings `fast` asks for on `device`: None = the environment variable SPGD_FAST if set (0/off or
    1/on; this is how the command line turns the fast path off), else the fast path on CUDA and float32 eager
    elsewhere; True/False = on/off; a FastPath or a dict of its fields = exactly those."""
    if isinstance(fast, FastPath):
        return fast
    if isinstance(fast, dict):
        unknown = sorted(set(fast) - set(FastPath.__dataclass_fields__))
        if unknown:
            valid = ", ".join(FastPath.__dataclass_fields__)
            raise SpgdError(f"unknown fast-path setting(s) {unknown}; valid: {valid}")
        return FastPath(**fast)
    if fast is None:
        env = os.environ.get("SPGD_FAST", "").strip().lower()
        if env in ("0", "off", "false", "no"):
            fast = False
        elif env in ("1", "on", "true", "yes"):
            fast = True
        else:
            dev = torch.device(device) if device is not None else torch.device("cpu")
            fast = dev.type == "cuda"
    if not isinstance(fast, bool):
        raise SpgdError(f"fast must be None, True, False, a FastPath or a dict, got {type(fast).__name__}")
    return FastPath() if fast else EAGER_FP32


def apply_fast(prior: Any, fast: FastLike = None, device: Union[str, torch.device, None] = None) -> Any:
    """Configure a network prior for `fast` (see `resolve_fast`; `device` defaults to the prior's own).
    Priors without a network (the analytic Gaussian prior, plain callables) are returned unchanged."""
    if not isinstance(prior, VPPrecond):
        return prior
    if device is None:
        device = _device_of(prior)
    settings = resolve_fast(fast, device)
    return prior.configure(
        precision=settings.precision,
        channels_last=settings.channels_last,
        compile=settings.compile,
        compile_mode=settings.compile_mode,
        param_grads=False,
    )


def reference(prior: VPPrecond) -> VPPrecond:
    """The released code's configuration: float32, eager, and the network's parameters requiring grad, so
    every likelihood gradient also computes (and accumulates) parameter gradients."""
    if not isinstance(prior, VPPrecond):
        raise SpgdError(f"reference mode needs a network prior (VPPrecond), got {type(prior).__name__}")
    return prior.configure(precision="fp32", channels_last=False, compile=False, param_grads=True)


def _device_of(prior: Any) -> torch.device:
    for t in list(prior.parameters()) + list(prior.buffers()):
        return t.device
    return torch.device("cpu")


def auto_batch_size(
    prior: Any,
    image_shape: Sequence[int],  # (C, H, W) of one image
    device: Union[str, torch.device, None] = None,
    max_batch: int = 64,
    fraction: float = MEMORY_FRACTION,
    sigma: float = 1.0,
) -> int:
    """The largest batch whose SPGD step (one forward + VJP through the prior) fits in `fraction` of the free
    GPU memory, at most `max_batch`.

    On CUDA it measures the peak memory (`torch.cuda.max_memory_allocated`) of one forward + VJP at batch 1
    and at batch 2, run eagerly with the prior's precision and memory format (a compiled network needs less,
    so the estimate errs on the safe side), and extrapolates linearly: peak(b) = fixed + b * per_image.
    Off CUDA no measurement is made and it returns `CPU_BATCH_SIZE` (4), capped at `max_batch`.
    """
    if max_batch < 1:
        raise SpgdError(f"max_batch must be >= 1, got {max_batch}")
    if not 0 < fraction <= 1:
        raise SpgdError(f"fraction must be in (0, 1], got {fraction}")
    dev = torch.device(device) if device is not None else _device_of(prior)
    if dev.type != "cuda":
        return min(CPU_BATCH_SIZE, max_batch)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    own = getattr(prior, "step_peak_bytes", None)  # a prior with its own step (latent: UNet + VAE decoder)
    peaks = {b: own(b, tuple(image_shape), dev, sigma) if callable(own) else
             _step_peak_bytes(prior, b, tuple(image_shape), dev, sigma) for b in (1, 2)}
    per_image = max(peaks[2] - peaks[1], 1)
    fixed = max(peaks[1] - per_image, 0)
    free, _total = torch.cuda.mem_get_info(dev)
    batch = int((fraction * free - fixed) // per_image)
    if batch < 1:
        warnings.warn(
            f"even a batch of 1 may not fit: {peaks[1] / 2**30:.2f} GiB per step, {free / 2**30:.2f} GiB free",
            stacklevel=2,
        )
    return max(1, min(batch, max_batch))


def _step_peak_bytes(prior: Any, batch: int, image_shape: tuple, dev: torch.device, sigma: float) -> int:
    """Extra peak bytes of one eager forward + VJP of the prior at `batch` (above what was allocated)."""
    x = torch.randn((batch, *image_shape), device=dev)
    torch.cuda.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    with torch.enable_grad():
        x.requires_grad_(True)
        x0 = _denoise_eager(prior, x, sigma)
        if getattr(prior, "param_grads", False):  # reference mode: a full backward, as in the sampler
            x0.square().sum().backward()
            prior.zero_grad(set_to_none=True)
        else:
            torch.autograd.grad(x0.square().sum(), x)
    del x0
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - base
    torch.cuda.empty_cache()
    return int(peak)


def _denoise_eager(prior: Any, x: Tensor, sigma: float) -> Tensor:
    if isinstance(prior, VPPrecond) and prior.use_compile:
        prior.use_compile = False
        try:
            return prior.denoise(x, sigma)
        finally:
            prior.use_compile = True
    denoise = getattr(prior, "denoise", prior)
    return denoise(x, sigma)


def describe(prior: Any) -> str:
    """A short label of how a prior's network runs: 'fp32 eager', 'bf16 compiled', 'reference', ..."""
    if not isinstance(prior, VPPrecond):
        return "analytic"
    if prior.param_grads:
        return "reference (fp32 eager, parameter gradients)"
    parts = [prior.precision, "compiled" if prior.use_compile else "eager"]
    if prior.use_compile and prior.compile_mode:
        parts.append(prior.compile_mode)
    if prior.channels_last:
        parts.append("channels-last")
    return " ".join(parts)


__all__ = [
    "CPU_BATCH_SIZE",
    "EAGER_FP32",
    "FastPath",
    "apply_fast",
    "auto_batch_size",
    "describe",
    "reference",
    "resolve_fast",
]
