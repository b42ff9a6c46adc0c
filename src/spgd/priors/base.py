"""The Prior contract: a denoiser D(x, sigma) ~ E[x0 | x0 + sigma * eps = x]."""

from __future__ import annotations

import math
import numbers
from typing import Callable, Union

import torch
from torch import Tensor, nn

from ..errors import SpgdError

SigmaLike = Union[float, Tensor]

# The class a class-conditional network (ADM or diffusers) is conditioned on when none is given. Why class 0:
# guided-diffusion's class-conditional networks were trained without label dropout, so they have no
# unconditional mode and some label must be given; the first class is a fixed, reproducible choice with no
# claim to suit a given image. Pass the class of your image (`class_label=`, `--class-label`).
DEFAULT_CLASS_LABEL = 0


def frozen(net):
    """`net` as a fixed prior's network: eval mode (no dropout) and no parameter gradients; a plain callable is
    returned as it is."""
    if isinstance(net, nn.Module):
        net.requires_grad_(False)
        net.eval()
    return net


def sigma_as_batch(sigma: SigmaLike, x: Tensor) -> Tensor:
    """A float or (B,)/(1,) tensor of noise levels as a (B,) tensor on x's device and dtype."""
    if isinstance(sigma, numbers.Real):
        # A fill on the device: torch.as_tensor(float, device="cuda") would copy from the host and wait for
        # the GPU (a host synchronisation at every denoiser call of the sampler loop).
        return torch.full((x.shape[0],), float(sigma), dtype=x.dtype, device=x.device)
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    elif s.shape == (1,):
        s = s.expand(x.shape[0])
    return s.reshape(x.shape[0])


class Prior(nn.Module):
    """Base class of priors. Subclasses implement `denoise(x, sigma)`.

    `sigma_min`/`sigma_max` give the noise range the prior was built or trained for; samplers clip to it.
    """

    sigma_min: float = 0.0
    sigma_max: float = math.inf

    def denoise(self, x: Tensor, sigma: SigmaLike) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        return self.denoise(x, sigma)


class CallablePrior(Prior):
    """Wraps any callable f(x, sigma) -> x0_hat so it can be used where a Prior is expected."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]):
        super().__init__()
        self.fn = fn

    def denoise(self, x: Tensor, sigma: SigmaLike) -> Tensor:
        return self.fn(x, sigma_as_batch(sigma, x))


def prior_channels(prior) -> int | None:
    """The image channels a prior models (1 = grayscale, 3 = RGB), or None where it does not say."""
    c = getattr(prior, "img_channels", None)
    return int(c) if isinstance(c, int) else None


def as_prior(obj) -> Prior:
    """Accept a Prior, any object with a `denoise(x, sigma)` method, or any callable f(x, sigma)."""
    if isinstance(obj, Prior) or callable(getattr(obj, "denoise", None)):
        return obj
    if callable(obj):
        return CallablePrior(obj)
    raise SpgdError(f"a prior must have denoise(x, sigma) or be a callable f(x, sigma), got {type(obj).__name__}")
