"""Priors: denoisers D(x, sigma) ~ E[x0 | x0 + sigma * eps = x], and how to load them."""

from .base import Prior, as_prior
from .checkpoint import load_prior, load_unet_checkpoint, save_unet
from .gaussian import GaussianPrior
from .precond import VPPrecond
from .unet import ARCHITECTURES, UNetModel

__all__ = [
    "ARCHITECTURES",
    "GaussianPrior",
    "Prior",
    "UNetModel",
    "VPPrecond",
    "as_prior",
    "load_prior",
    "load_unet_checkpoint",
    "save_unet",
]
