"""The one-call entry point: restore a measurement with a prior and an operator."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .errors import SpgdError
from .priors.base import as_prior
from .priors.latent import run_sampler
from .samplers import make_sampler
from .samplers.base import GeneratorLike, Result, check_measurement, infer_x_shape


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
    latent = getattr(prior, "is_latent", False)  # a latent prior is probed, and run, on z (spgd.priors.latent)
    check_prior(prior, prior.latent_shape(shape) if latent else shape, y.device, y.dtype)
    return run_sampler(sampler, y, operator, prior, generator=generator, callback=callback, noise=noise)
