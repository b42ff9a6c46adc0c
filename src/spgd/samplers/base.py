"""What every sampler shares: the result type, cost accounting, the guided denoiser call, per-sample failure,
and the start of a run (`Sampler.start_run`)."""

from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import SpgdError
from ..priors.base import Prior, as_prior
from ..tensors import append_dims

GeneratorLike = Union[None, torch.Generator, Sequence[torch.Generator]]
Callback = Callable[[dict], None]


@dataclass
class Stats:
    """Cost and health of one sampler run. Counts are per image (every image of a batch costs the same)."""

    denoiser_calls: int = 0  # forward passes of the prior, per image
    vjps: int = 0  # vector-Jacobian products through the prior, per image
    operator_grads: int = 0  # gradients of the data term through the operator alone (DAPS's Langevin), per image
    decoder_calls: int = 0  # VAE decoder forwards (latent priors: every likelihood term decodes), per image
    operator_solves: int = 0  # closed-form or iterative inverse-type operator applications (SVD projections,
    #                           data-proximal solves, pseudo-inverses: DDRM, DiffPIR, PiGDM), per image
    seconds: float = 0.0  # wall-clock seconds for the whole batch
    batch_size: int = 0
    peak_memory_bytes: Optional[int] = None  # CUDA: max allocated; CPU: process peak resident set
    peak_memory_kind: str = "none"
    failed: list = field(default_factory=list)  # per image: True if it diverged (see FailureTracker)
    failed_at_step: list = field(default_factory=list)  # per image: the outer step where it did, else None
    failure_reason: list = field(default_factory=list)  # per image: which divergence rule fired, else None
    verdict: list = field(default_factory=list)  # per image: spgd.verdict.Verdict of the result (spgd.restore/run_sampler)

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(self.batch_size, 1)

    def as_dict(self) -> dict:
        return {
            "denoiser_calls": self.denoiser_calls,
            "vjps": self.vjps,
            "operator_grads": self.operator_grads,
            "decoder_calls": self.decoder_calls,
            "operator_solves": self.operator_solves,
            "seconds": self.seconds,
            "seconds_per_image": self.seconds_per_image,
            "batch_size": self.batch_size,
            "peak_memory_bytes": self.peak_memory_bytes,
            "peak_memory_kind": self.peak_memory_kind,
            "failed": list(self.failed),
            "failed_at_step": list(self.failed_at_step),
            "failure_reason": list(self.failure_reason),
            "verdict": [v.as_dict() if hasattr(v, "as_dict") else v for v in self.verdict],
        }


@dataclass
class Result:
    """A sampler's output: the restored batch `x`, its `stats`, and optional `telemetry`."""

    x: Tensor
    stats: Stats
    telemetry: Optional[Any] = None
    latent: Optional[Tensor] = None  # latent priors: the sampler's final latent z (x = decode(z))


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
    """
    meter.stats.denoiser_calls += 1
    meter.stats.vjps += 1
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        x0_hat = prior.denoise(x, sigma)
        residual = operator.forward(x0_hat) - y
        loss = residual.pow(2).flatten(1).sum(1)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return x0_hat.detach(), grad.detach(), loss.detach()


def check_measurement(y: Tensor) -> None:
    if not torch.is_tensor(y):
        raise SpgdError(f"the measurement y must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim < 2:
        raise SpgdError(f"the measurement y must have a batch dimension (B, ...), got shape {tuple(y.shape)}")
    if not y.is_floating_point():
        raise SpgdError(
            f"the measurement y must be a floating-point tensor (float32 or float64, images in [-1, 1]), got "
            f"{y.dtype}; convert it, e.g. y.float() / 127.5 - 1 for 8-bit values"
        )
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

    def for_image(self, i: int) -> "NoiseSource":
        """The draws of image i alone, for samplers whose draws differ in shape between the images of a batch
        (DDRM with a mask per image): draws of shape (1, ...) from image i's own generator when there is one per
        sample (so image i gets the same numbers alone or in any batch), else from the shared generator or the
        user's `noise`, in the order they are asked for. Its draws count in this source's `draws` too."""
        generator = self.generator
        if generator is not None and not isinstance(generator, torch.Generator):
            generator = list(generator)[i]
        return _ImageNoise(generator, self.noise, parent=self)


class _ImageNoise(NoiseSource):
    """One image's share of a run's NoiseSource (see `NoiseSource.for_image`)."""

    def __init__(self, generator: GeneratorLike, noise: Optional[NoiseFn], parent: NoiseSource):
        super().__init__(generator, noise)
        self.parent = parent

    def __call__(self, shape: Sequence[int], device, dtype) -> Tensor:
        self.parent.draws += 1
        return super().__call__(shape, device, dtype)


def infer_x_shape(y: Tensor, operator, x_shape: Optional[Sequence[int]]) -> tuple:
    """The shape of the unknown x: given, or the operator's `input_shape(y)`, or y's own shape."""
    if x_shape is not None:
        return tuple(x_shape)
    fn = getattr(operator, "input_shape", None)
    if callable(fn):
        return tuple(fn(y))
    return tuple(y.shape)


# The divergence rule (every sampler, through FailureTracker.check). A sample has diverged when, at a check,
#   1. any of its values is non-finite (NaN or inf), or
#   2. the root-mean-square of its state exceeds `max_rms` (default 1e4). Images live in [-1, 1] and a state
#      at noise level sigma has an RMS of about sqrt(1 + sigma^2) (<= ~100 for the default sigma_max = 100),
#      so 1e4 is two orders of magnitude above anything a healthy run reaches; samplers with a larger
#      sigma_max pass a larger bound (SPGD and DAPS: `state_rms_bound`, 100 * sigma_max), or
#   3. at the last check (the result, sigma = 0), its RMS exceeds `max_result_rms` (default 1e3: a thousand
#      times the data range), or, when the sampler gives the measurement (`check_fit`), its data residual
#      RMS(A(x) - y) is both more than `residual_factor` (1e3) times the noise level and more than 10 times
#      RMS(y): no restoration of data in range fits that badly.
# Such a sample is frozen (set to 0), reported in Stats.failed / failed_at_step, and the batch goes on.
MAX_RMS = 1e4
MAX_RESULT_RMS = 1e3
RESIDUAL_FACTOR = 1e3


def state_rms_bound(sigma_max: float) -> float:
    """Rule 2's bound for a run that starts at noise level sigma_max: MAX_RMS, or 100 * sigma_max if larger."""
    return max(MAX_RMS, 100 * sigma_max)


def rms(x: Tensor) -> Tensor:
    """Per-sample root-mean-square, shape (B,), computed in float64 (no overflow before inf)."""
    return x.detach().flatten(1).double().pow(2).mean(1).sqrt()


def divergence_rule() -> str:
    """The rule, in words (for records and messages)."""
    return (
        f"non-finite values, or state RMS > {MAX_RMS:g} (x100 sigma_max for SPGD), or result RMS > "
        f"{MAX_RESULT_RMS:g}, or data residual RMS > {RESIDUAL_FACTOR:g} x noise_sigma and > 10 x RMS(y)"
    )


RESIDUAL_REASON = f"data residual > {RESIDUAL_FACTOR:g} x noise level and > 10 x RMS(y)"


def residual_diverged(ax: Tensor, y: Tensor, noise_sigma: float) -> Tensor:
    """Rule 3's data-residual part, per sample (B,): RMS(A(x) - y) non-finite, or above both
    RESIDUAL_FACTOR * noise_sigma and 10 * RMS(y)."""
    res, ry = rms(ax - y), rms(y)
    bound = torch.maximum(RESIDUAL_FACTOR * torch.full_like(res, float(noise_sigma)), 10 * ry)
    return ~torch.isfinite(res) | (res > bound)


# a schedule may start above the prior's largest trained noise level (the prior is then asked at that level: the
# start is plain noise either way), but not by orders of magnitude: issue 28's sigma_max=1e30 ended 8 dB below the
# measurement, exit 0. Refused beyond SIGMA_MAX_FACTOR x the prior's sigma_max, or SIGMA_MAX_LIMIT for a prior
# without one (the analytic Gaussian prior).
SIGMA_MAX_FACTOR = 100.0
SIGMA_MAX_LIMIT = 1e4


def check_start_sigma(sigma_max: float, prior, method: str = "the sampler") -> None:
    """Refuse (SpgdError, one line) a schedule that starts at `sigma_max` far beyond the prior's noise range."""
    trained = float(getattr(prior, "sigma_max", math.inf) or math.inf)
    limit = SIGMA_MAX_FACTOR * trained if math.isfinite(trained) else SIGMA_MAX_LIMIT
    if not math.isfinite(sigma_max) or sigma_max > limit:
        where = (f"{SIGMA_MAX_FACTOR:g} x the largest noise level the prior was trained for ({trained:.4g})"
                 if math.isfinite(trained) else f"{SIGMA_MAX_LIMIT:g} (this prior has no trained range)")
        raise SpgdError(f"{method}: sigma_max={sigma_max:g} is beyond {where}: the schedule would start from noise "
                        f"the prior never saw; use sigma_max <= {limit:.4g} (the presets use 100)")


class FailureTracker:
    """Per-sample divergence handling (the rule above): a diverged sample is frozen (set to 0 and no longer
    updated) and reported, so the rest of the batch finishes. Checked every `every` steps to avoid host syncs;
    a healthy sample's values are never changed, so its result is the same alone or in any batch."""

    def __init__(
        self,
        batch_size: int,
        device,
        every: int = 10,
        max_rms: float = MAX_RMS,
        max_result_rms: float = MAX_RESULT_RMS,
    ):
        self.every = max(int(every), 1)
        self.max_rms = float(max_rms)
        self.max_result_rms = float(max_result_rms)
        self.alive = torch.ones(batch_size, dtype=torch.bool, device=device)
        self.failed_at = [None] * batch_size
        self.reason: list = [None] * batch_size

    def _kill(self, bad: Tensor, k, reason: str) -> None:
        newly = self.alive & bad
        if newly.any():
            for i in newly.nonzero().flatten().tolist():
                self.failed_at[i] = k
                self.reason[i] = reason
            self.alive &= ~bad

    def check(self, x: Tensor, k: int, last: bool = False) -> Tensor:
        if not last and (k + 1) % self.every:
            return x
        finite = torch.isfinite(x.flatten(1)).all(1)
        self._kill(~finite, k, "non-finite values")
        size = rms(torch.where(append_dims(finite, x.ndim), x, torch.zeros_like(x)))
        self._kill(size > self.max_rms, k, f"values far outside the data range (RMS > {self.max_rms:g})")
        if last:
            self._kill(size > self.max_result_rms, k, f"result far outside the data range (RMS > {self.max_result_rms:g})")
        return self._zero_dead(x)

    def check_fit(self, x: Tensor, y: Tensor, operator, k) -> Tensor:
        """Rule 3's data-residual part on the result x (call after the last `check`)."""
        with torch.no_grad():
            ay = operator.forward(x)
        if ay.shape != y.shape:
            return x
        bad = residual_diverged(ay, y, float(getattr(operator, "noise_sigma", 0.0) or 0.0))
        self._kill(bad.to(self.alive.device), k, RESIDUAL_REASON)
        return self._zero_dead(x)

    def _zero_dead(self, x: Tensor) -> Tensor:
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
        stats.failure_reason = list(self.reason)


@dataclass
class RunSetup:
    """What a sampler's run starts with (see `Sampler.start_run`); the loop and its result come from the sampler."""

    prior: Prior
    x: Tensor  # the start state
    draw: NoiseSource  # every standard-normal draw of the run, the start's included
    tracker: FailureTracker
    meter: CostMeter  # entered by the sampler around its loop
    sigma_lo: float  # the prior's sigma range
    sigma_hi: float
    desc: str  # the progress bar's label
    show_progress: bool

    def prior_sigma(self, sigma: float) -> float:
        """sigma clipped to the prior's range: the prior is only asked inside it."""
        return min(max(sigma, self.sigma_lo), self.sigma_hi)

    def progress(self, steps: range):
        """`steps`, wrapped in a tqdm bar when enabled (the library is quiet by default; the CLI turns it on)."""
        if not self.show_progress:
            return steps
        return tqdm(steps, desc=self.desc, unit="step", leave=False)

    def finish(self, x: Tensor, y: Tensor, operator, last_step: int) -> Result:
        """The result of the loop's last state x: the divergence rule's data-residual check on it, the failures
        reported in the stats."""
        x = self.tracker.check_fit(x, y, operator, last_step)  # a result that fits y absurdly badly diverged too
        self.tracker.report(self.meter.stats)
        return Result(x=x, stats=self.meter.stats)


class Sampler:
    """Base of the samplers, each a dataclass of its settings. The diffusion samplers (those with `check_every`
    and `progress` settings) begin each run with `start_run`."""

    def settings(self) -> dict:
        """The settings as a plain dict (what run records store)."""
        return asdict(self)

    def start_run(
        self, y: Tensor, operator, prior, generator: GeneratorLike, noise: Optional[NoiseFn],
        x_start: Optional[Tensor], x_shape: Optional[Sequence[int]], start_sigma: float = 1.0,
        max_rms: float = MAX_RMS,
    ) -> RunSetup:
        """What every diffusion sampler's run starts with: y checked, the prior accepted (`as_prior`), the shape
        of x (`infer_x_shape`), the start state x = start_sigma * z (the run's first draw) unless `x_start` is
        given, the divergence tracker (state bound `max_rms`, checked every `check_every` steps), the cost meter,
        the prior's sigma range (default [0, inf)) and a progress bar labelled with the sampler's name."""
        check_measurement(y)
        prior = as_prior(prior)
        check_start_sigma(start_sigma, prior, type(self).__name__.lower())
        shape = infer_x_shape(y, operator, x_shape)
        draw = NoiseSource(generator, noise)
        x = start_sigma * draw(shape, y.device, y.dtype) if x_start is None else x_start.to(y)
        return RunSetup(
            prior=prior,
            x=x,
            draw=draw,
            tracker=FailureTracker(shape[0], y.device, self.check_every, max_rms=max_rms),
            meter=CostMeter(y.device, shape[0]),
            sigma_lo=float(getattr(prior, "sigma_min", 0.0)),
            sigma_hi=float(getattr(prior, "sigma_max", float("inf"))),
            desc=type(self).__name__.lower(),
            show_progress=self.progress,
        )
