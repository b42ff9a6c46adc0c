"""The one-call entry point: restore a measurement with a prior and an operator."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from .samplers import make_sampler
from .samplers.base import GeneratorLike, Result


def restore(
    y: Tensor,
    operator,
    prior,
    method: str = "spgd",
    generator: GeneratorLike = None,
    callback=None,
    **settings,
) -> Result:
    """Restore x from y = A(x) + noise with `method` ("spgd", "spgd-official", ...) and sampler `settings`
    (steps, warmup_steps, lr, lr_min_ratio, beta, sigma_max, sigma_min, cosine, fresh_denoise, ...).

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
    sampler = make_sampler(method, **settings)
    return sampler.run(y, operator, prior, generator=generator, callback=callback)
