"""spgd: diffusion-model image restoration with SPGD and its baselines."""

from . import metrics
from .api import restore
from .errors import SpgdError
from .operators import make_operator
from .priors import load_prior
from .samplers import make_sampler
from .samplers.base import Result, Stats

__version__ = "0.1.0"

__all__ = ["Result", "SpgdError", "Stats", "load_prior", "make_operator", "make_sampler", "metrics", "restore"]
