"""Classical, prior-free restorations to compare diffusion methods against (no network involved): the operator's
`pseudo_inverse` (spgd.operators.solvers), with no knowledge of operator classes.

- blur and other linear operators (a user's own with `adjoint` included): Tikhonov deconvolution with the true operator,
  x = argmin ||A x - y||^2 + lam ||grad x||^2, solved by conjugate gradients on the normal equations
  (exact for reflect-padded blurs, unlike a circular Wiener filter);
- super-resolution: bicubic up-sampling;
- inpainting: biharmonic fill, the smoothest completion minimising ||Laplacian x||^2 with the kept pixels fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from ..operators.solvers import CG_ITERS, TIKHONOV_LAM, tikhonov
from .base import Callback, CostMeter, GeneratorLike, Result, Sampler, check_measurement


@dataclass
class Classical(Sampler):
    """Prior-free baseline: the operator's own `pseudo_inverse(y, lam, iters)` (bicubic for super-resolution,
    biharmonic fill for inpainting, Tikhonov-CG for other linear operators); an operator without one but with
    an `adjoint` (a user's own linear operator) gets the Tikhonov-CG solve."""

    lam: float = TIKHONOV_LAM  # Tikhonov weight on ||grad x||^2 (best of 0.001-0.03 on the astronaut photo, blur tasks)
    iters: int = CG_ITERS  # conjugate-gradient iterations (x5 for the biharmonic fill)
    progress: bool = False  # accepted for a uniform interface; nothing long enough to show
    stochastic: ClassVar[bool] = False  # the same result for every seed: no mean/uncertainty over samples
    needs: ClassVar[tuple[str, ...]] = ("linear",)  # adjoint or pseudo_inverse (spgd.samplers.catalog)

    def run(
        self, y: Tensor, operator, prior=None, generator: GeneratorLike = None, callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None, x_shape: Optional[Sequence[int]] = None,
        noise=None,  # accepted for the common interface: nothing here is random
    ) -> Result:
        check_measurement(y)
        with CostMeter(y.device, y.shape[0]) as meter:
            x = self.estimate(y, operator).clamp(-1, 1)
        meter.stats.failed = [False] * y.shape[0]
        meter.stats.failed_at_step = [None] * y.shape[0]
        return Result(x=x, stats=meter.stats)

    def estimate(self, y: Tensor, operator) -> Tensor:
        """The operator's pseudo-inverse of y, or the Tikhonov-CG solve for an operator with only an adjoint."""
        with torch.no_grad():
            if callable(getattr(operator, "pseudo_inverse", None)):
                return operator.pseudo_inverse(y, lam=self.lam, iters=self.iters)
            if callable(getattr(operator, "adjoint", None)):
                return tikhonov(operator, y, self.lam, self.iters)
        raise SpgdError(
            f"the classical baseline needs a linear operator (with `adjoint` or `pseudo_inverse`: blur, "
            f"super-resolution, inpainting, denoising, or your own), got {type(operator).__name__}"
        )
