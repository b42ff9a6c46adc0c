"""The one-call entry point: restore a measurement with a prior and an operator; `run_sampler` runs any sampler
on any prior, a latent one included."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from .errors import SpgdError
from .operators.latent import LatentOperator
from .priors.base import as_prior
from .priors.latent import LatentPrior
from .samplers import DPS, Classical, make_sampler
from .samplers.base import GeneratorLike, Result, check_measurement, infer_x_shape
from .verdict import FAILED, judge


def check_generator(generator, batch: int) -> None:
    """None, one torch.Generator, or one per sample; an SpgdError naming what was given otherwise."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, (list, tuple)) and all(isinstance(g, torch.Generator) for g in generator):
        if len(generator) != batch:
            raise SpgdError(f"got {len(generator)} generators for a batch of {batch}; give one per sample or one")
        return
    raise SpgdError(
        f"generator must be None, a torch.Generator or a list of them (one per sample), got {generator!r} "
        f"({type(generator).__name__}); for a seed use torch.Generator().manual_seed(SEED)"
    )


def check_operator(operator) -> None:
    """An operator needs a callable `forward(x)`: a plain function is not one."""
    if not callable(getattr(operator, "forward", None)):
        raise SpgdError(
            f"operator must be an object with forward(x) (and measure(x, generator), noise_sigma), got "
            f"{type(operator).__name__}; use spgd.make_operator(task, ...) or wrap your function in a class"
        )


def check_prior(prior, x_shape, device, dtype):
    """Call the prior once on one zero sample: it must take (x, sigma) and return x0_hat shaped like x."""
    probe = torch.zeros((1, *x_shape[1:]), device=device, dtype=dtype)
    try:
        prior = as_prior(prior)
        with torch.no_grad():
            out = prior.denoise(probe, 1.0)
    except SpgdError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here is a prior that does not fit the contract
        raise SpgdError(
            f"the prior must be callable as prior(x, sigma) (or have denoise(x, sigma)) and return x0_hat shaped "
            f"like x; calling it on a {tuple(probe.shape)} tensor failed: {type(e).__name__}: {e}"
        ) from None
    if not torch.is_tensor(out) or tuple(out.shape) != tuple(probe.shape):
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise SpgdError(f"the prior must return x0_hat shaped like x: given {tuple(probe.shape)}, it returned {got}")


def restore(
    y: Tensor,
    operator,
    prior,
    method: str = "spgd",
    generator: GeneratorLike = None,
    callback=None,
    noise=None,
    **settings,
) -> Result:
    """Restore x from y = A(x) + noise with `method` ("spgd", "spgd-official", "dps", "daps", ...) and sampler
    `settings` (steps, warmup_steps, lr, lr_min_ratio, beta, sigma_max, sigma_min, cosine, fresh_denoise, ...).
    `noise(shape, dtype, device)`, when given, replaces every random draw of the sampler, in its documented order.

    Example:
        >>> import torch, spgd
        >>> prior = spgd.load_prior("gaussian")
        >>> op = spgd.make_operator("gaussian_blur", kernel_size=9, std=1.5)
        >>> x = prior.sample((1, 3, 32, 32), torch.Generator().manual_seed(0))
        >>> y = op.measure(x, torch.Generator().manual_seed(1))
        >>> result = spgd.restore(y, op, prior, steps=20, warmup_steps=2, lr=1.0)
        >>> result.x.shape
        torch.Size([1, 3, 32, 32])
    """
    sampler = make_sampler(method, **settings)  # settings are checked by name and type here
    check_measurement(y)
    check_operator(operator)
    check_generator(generator, y.shape[0])
    shape = infer_x_shape(y, operator, None)
    latent = getattr(prior, "is_latent", False)  # a latent prior is probed, and run, on z (see run_sampler)
    check_prior(prior, prior.latent_shape(shape) if latent else shape, y.device, y.dtype)
    return run_sampler(sampler, y, operator, prior, generator=generator, callback=callback, noise=noise)


def latent_sampler(sampler: Any, prior: LatentPrior) -> Any:
    """The sampler as it runs on `prior`'s latents: DPS without the [-1, 1] clip of z0_hat (latents have no such
    range); an annealing start above the prior's sigma_max lowered to it, with a warning."""
    if isinstance(sampler, DPS):
        return dataclasses.replace(sampler, clip_denoised=False) if sampler.clip_denoised else sampler
    top = getattr(sampler, "sigma_max", None)
    if isinstance(top, float) and dataclasses.is_dataclass(sampler) and top > prior.sigma_max * (1 + 1e-9):
        warnings.warn(
            f"sigma_max={top:g} is above this latent prior's largest noise level {prior.sigma_max:.4g}: "
            f"starting at {prior.sigma_max:.4g} instead (pass --set sigma_max=... to choose)",
            stacklevel=3,
        )
        return dataclasses.replace(sampler, sigma_max=prior.sigma_max)
    return sampler


def run_sampler(sampler: Any, y: Tensor, operator: Any, prior: Any, generator: Any = None,
                x_shape: Optional[Sequence[int]] = None, **kwargs: Any):
    """sampler.run(y, operator, prior, ...) for any prior; for a latent prior (`spgd.priors.latent`) the run is
    on z:

        z_hat = sampler.run(y, LatentOperator(operator, codec), prior, x_shape=latent shape), x_hat = decode(z_hat),

    and the Result holds x_hat (`x`, images), z_hat (`latent`) and Stats.decoder_calls (the decodes of the run,
    the final one included, per image). Diverged samples are 0 in x as in z. A prior-free sampler (classical) and
    a pixel prior run unchanged. `x_shape` is the image shape (default: the operator's input_shape(y))."""
    if not getattr(prior, "is_latent", False) or isinstance(sampler, Classical):
        return judged(sampler.run(y, operator, prior, generator=generator, x_shape=x_shape, **kwargs), y, operator)
    image_shape = infer_x_shape(y, operator, x_shape)
    lat_op = LatentOperator(operator, prior.codec, image_shape)
    run = latent_sampler(sampler, prior)
    before = prior.codec.decoder_calls
    result = run.run(y, lat_op, prior, generator=generator, x_shape=lat_op.input_shape(y), **kwargs)
    with torch.no_grad():
        x = prior.decode(result.x)
    if result.stats.failed and any(result.stats.failed):
        dead = torch.tensor(result.stats.failed, device=x.device).reshape(-1, *([1] * (x.ndim - 1)))
        x = torch.where(dead, torch.zeros_like(x), x)
    result.stats.decoder_calls = prior.codec.decoder_calls - before
    return judged(Result(x=x, stats=result.stats, telemetry=result.telemetry, latent=result.x), y, operator)


def judged(result: Result, y: Tensor, operator: Any) -> Result:
    """The result with each image judged against its measurement (spgd.verdict): Stats.verdict, and a garbage
    result (saturated, far outside the image range, fitting worse than a blank image) marked failed with the
    reason in Stats.failed / failure_reason. The images are left as they are."""
    x = result.x
    if not torch.is_tensor(x) or x.ndim != y.ndim or x.shape[0] != y.shape[0]:
        return result
    stats = result.stats
    verdicts = judge(x, y, operator)
    n = len(verdicts)
    failed = list(stats.failed) if len(stats.failed) == n else [False] * n
    reasons = list(stats.failure_reason) if len(stats.failure_reason) == n else [None] * n
    at = list(stats.failed_at_step) if len(stats.failed_at_step) == n else [None] * n
    for i, v in enumerate(verdicts):
        if v.failed and not failed[i]:
            failed[i], reasons[i] = True, v.reason
        elif failed[i] and not v.failed:  # the sampler's own rule fired (diverged; the sample was set to 0)
            verdicts[i] = dataclasses.replace(v, status=FAILED, reason=reasons[i] or "diverged")
    stats.failed, stats.failure_reason, stats.failed_at_step, stats.verdict = failed, reasons, at, verdicts
    return result
