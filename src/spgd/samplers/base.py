"""What every sampler shares: the result type, cost accounting, the guided denoiser call, per-sample failure."""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from ..errors import SpgdError
from ..priors.base import Prior, append_dims, as_prior

GeneratorLike = Union[None, torch.Generator, Sequence[torch.Generator]]
Callback = Callable[[dict], None]


@dataclass
class Stats:
    """Cost and health of one sampler run. Counts are per image (every image of a batch costs the same)."""

    denoiser_calls: int = 0  # forward passes of the prior, per image
    vjps: int = 0  # vector-Jacobian products through the prior, per image
    operator_grads: int = 0  # gradients of the data term through the operator alone (DAPS's Langevin), per image
    seconds: float = 0.0  # wall-clock seconds for the whole batch
    batch_size: int = 0
    peak_memory_bytes: Optional[int] = None  # CUDA: max allocated; CPU: process peak resident set
    peak_memory_kind: str = "none"
    failed: list = field(default_factory=list)  # per image: True if it diverged (non-finite values)
    failed_at_step: list = field(default_factory=list)  # per image: the outer step where it did, else None

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(self.batch_size, 1)

    def as_dict(self) -> dict:
        return {
            "denoiser_calls": self.denoiser_calls,
            "vjps": self.vjps,
            "operator_grads": self.operator_grads,
            "seconds": self.seconds,
            "seconds_per_image": self.seconds_per_image,
            "batch_size": self.batch_size,
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_memory_kind": self.peak_memory_kind,
            "failed": list(self.failed),
            "failed_at_step": list(self.failed_at_step),
        }


@dataclass
class Result:
    """A sampler's output: the restored batch `x`, its `stats`, and optional `telemetry`."""

    x: Tensor
    stats: Stats
    telemetry: Optional[Any] = None


class CostMeter:
    """Counts denoiser forwards/VJPs and measures time and peak memory around a run."""

    def __init__(self, device: torch.device, batch_size: int):
        self.device = device
        self.stats = Stats(batch_size=batch_size)

    def __enter__(self) -> "CostMeter":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # work queued before the run is not the run's time
            torch.cuda.reset_peak_memory_stats(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats.seconds = time.perf_counter() - self._t0
        if self.device.type == "cuda":
            self.stats.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))
            self.stats.peak_memory_kind = "cuda_max_allocated"
        else:
            # ru_maxrss is in KiB on Linux; it is the process's peak, not this run's alone.
            self.stats.peak_memory_bytes = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
            self.stats.peak_memory_kind = "process_peak_rss"


def denoise(prior: Prior, x: Tensor, sigma: float, meter: CostMeter) -> Tensor:
    """D(x; sigma) without a graph."""
    meter.stats.denoiser_calls += 1
    with torch.no_grad():
        return prior.denoise(x, sigma)


def likelihood_grad(
    prior: Prior, operator, x: Tensor, sigma: float, y: Tensor, meter: CostMeter
) -> tuple[Tensor, Tensor, Tensor]:
    """x0_hat = D(x; sigma), loss_i = ||A(x0_hat_i) - y_i||^2 and grad_x sum_i loss_i (one VJP through D).

    Returns (x0_hat, grad, loss), all detached; loss has shape (B,). Because the loss is a sum of per-sample
    terms and the network treats samples independently, grad[i] depends on sample i alone.

    A prior with `param_grads=True` (the released code's configuration, see `VPPrecond`) gets a full
    `backward()` instead, which also accumulates the network's parameter gradients into their `.grad`:
    the same x-gradient at the released code's cost, for benchmarks.
    """
    meter.stats.denoiser_calls += 1
    meter.stats.vjps += 1
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        x0_hat = prior.denoise(x, sigma)
        residual = operator.forward(x0_hat) - y
        loss = residual.pow(2).flatten(1).sum(1)
        if getattr(prior, "param_grads", False):
            loss.sum().backward()
            grad = x.grad
        else:
            (grad,) = torch.autograd.grad(loss.sum(), x)
    return x0_hat.detach(), grad.detach(), loss.detach()


def check_measurement(y: Tensor) -> None:
    if not torch.is_tensor(y):
        raise SpgdError(f"the measurement y must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim < 2:
        raise SpgdError(f"the measurement y must have a batch dimension (B, ...), got shape {tuple(y.shape)}")
    bad = ~torch.isfinite(y.flatten(1)).all(1)
    if bad.any():
        idx = bad.nonzero().flatten().tolist()
        raise SpgdError(f"the measurement y has non-finite values (NaN or inf) in batch item(s) {idx}")


NoiseFn = Callable[[tuple, torch.dtype, torch.device], Tensor]


class NoiseSource:
    """Every standard-normal draw of one sampler run, in order.

    By default each draw comes from `generator`: one torch.Generator for the batch, or one per sample, in which
    case each sample's noise depends only on its own generator (a sample gets the same draws alone or inside a
    batch). A user's `noise(shape, dtype, device) -> Tensor` replaces every draw instead, in the order the sampler
    makes them, so that recorded draws can be replayed (see each sampler's `run` for its order).
    """

    def __init__(self, generator: GeneratorLike = None, noise: Optional[NoiseFn] = None):
        if noise is not None and not callable(noise):
            raise SpgdError(f"noise must be a callable noise(shape, dtype, device) -> Tensor, got {type(noise).__name__}")
        self.generator = generator
        self.noise = noise
        self.draws = 0  # how many tensors were handed out

    def __call__(self, shape: Sequence[int], device, dtype) -> Tensor:
        """A standard-normal tensor of `shape` (the whole batch)."""
        shape = tuple(shape)
        self.draws += 1
        if self.noise is not None:
            eps = self.noise(shape, dtype, torch.device(device))
            if not torch.is_tensor(eps) or tuple(eps.shape) != shape:
                got = tuple(eps.shape) if torch.is_tensor(eps) else type(eps).__name__
                raise SpgdError(f"noise(shape, dtype, device) returned {got} for draw {self.draws}, expected shape {shape}")
            return eps.to(device=device, dtype=dtype)
        generator = self.generator
        if generator is None or isinstance(generator, torch.Generator):
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)
        gens = list(generator)
        if len(gens) != shape[0]:
            raise SpgdError(f"got {len(gens)} generators for a batch of {shape[0]}; give one per sample or one in all")
        return torch.stack([torch.randn(shape[1:], generator=g, device=device, dtype=dtype) for g in gens])

    def like(self, x: Tensor) -> Tensor:
        """A standard-normal draw shaped like `x`."""
        return self(x.shape, x.device, x.dtype)


def infer_x_shape(y: Tensor, operator, x_shape: Optional[Sequence[int]]) -> tuple:
    """The shape of the unknown x: given, or the operator's `input_shape(y)`, or y's own shape."""
    if x_shape is not None:
        return tuple(x_shape)
    fn = getattr(operator, "input_shape", None)
    if callable(fn):
        return tuple(fn(y))
    return tuple(y.shape)


class FailureTracker:
    """Per-sample divergence handling: a sample whose state turns non-finite is frozen (set to 0 and no longer
    updated) and reported, so the rest of the batch finishes. Checked every `every` steps to avoid host syncs."""

    def __init__(self, batch_size: int, device, every: int = 10):
        self.every = max(int(every), 1)
        self.alive = torch.ones(batch_size, dtype=torch.bool, device=device)
        self.failed_at = [None] * batch_size

    def check(self, x: Tensor, k: int, last: bool = False) -> Tensor:
        if not last and (k + 1) % self.every:
            return x
        finite = torch.isfinite(x.flatten(1)).all(1)
        newly = self.alive & ~finite
        if newly.any():
            for i in newly.nonzero().flatten().tolist():
                self.failed_at[i] = k
            self.alive &= finite
        if not self.alive.all():
            x = torch.where(append_dims(self.alive, x.ndim), x, torch.zeros_like(x))
        return x

    def freeze(self, new: Tensor, old: Tensor) -> Tensor:
        """Keep dead samples where they are (cheap: skipped while all are alive is not knowable without a sync,
        so this is applied only after a failure was seen)."""
        if self.failed_at.count(None) == len(self.failed_at):
            return new
        return torch.where(append_dims(self.alive, new.ndim), new, old)

    def report(self, stats: Stats) -> None:
        stats.failed = [f is not None for f in self.failed_at]
        stats.failed_at_step = list(self.failed_at)


def progress(steps: range, desc: str, enabled: bool):
    """`steps`, wrapped in a tqdm bar when enabled (the library is quiet by default; the CLI turns it on)."""
    if not enabled:
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps, desc=desc, unit="step", leave=False)


def prepare(prior, y: Tensor) -> Prior:
    check_measurement(y)
    return as_prior(prior)


def fmt_sigma(s: float) -> str:
    return f"{s:.3g}" if math.isfinite(s) else str(s)
