"""Classical, prior-free restorations to compare diffusion methods against (no network involved).

- blur and other linear operators: Tikhonov deconvolution with the true operator,
  x = argmin ||A x - y||^2 + lam ||grad x||^2, solved by conjugate gradients on the normal equations
  (exact for reflect-padded blurs, unlike a circular Wiener filter);
- super-resolution: bicubic up-sampling;
- inpainting: biharmonic fill, the smoothest completion minimising ||Laplacian x||^2 with the kept pixels fixed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, ClassVar, Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError
from ..priors.base import append_dims
from .base import Callback, CostMeter, GeneratorLike, Result, check_measurement


def gradient_energy_grad(x: Tensor) -> Tensor:
    """D^T D x for forward differences D along the last two axes (a Neumann Laplacian, negated)."""
    out = torch.zeros_like(x)
    gy = x[..., 1:, :] - x[..., :-1, :]
    gx = x[..., :, 1:] - x[..., :, :-1]
    out[..., 1:, :] += gy
    out[..., :-1, :] -= gy
    out[..., :, 1:] += gx
    out[..., :, :-1] -= gx
    return out


def conjugate_gradient(apply: Callable[[Tensor], Tensor], b: Tensor, x0: Tensor, iters: int, tol: float = 1e-6) -> Tensor:
    """Solve apply(x) = b for a symmetric positive (semi-)definite `apply`, per sample of the batch."""
    x = x0.clone()
    r = b - apply(x)
    p = r.clone()
    rs = r.flatten(1).pow(2).sum(1)
    b_norm = b.flatten(1).pow(2).sum(1).clamp_min(1e-30)
    for _ in range(iters):
        ap = apply(p)
        alpha = rs / (p * ap).flatten(1).sum(1).clamp_min(1e-30)
        x = x + append_dims(alpha, x.ndim) * p
        r = r - append_dims(alpha, x.ndim) * ap
        rs_new = r.flatten(1).pow(2).sum(1)
        if bool((rs_new / b_norm).max() < tol**2):
            break
        p = r + append_dims(rs_new / rs.clamp_min(1e-30), x.ndim) * p
        rs = rs_new
    return x


@dataclass
class Classical:
    """Prior-free baseline: picks Tikhonov-CG, bicubic or biharmonic by the operator (see module docstring)."""

    lam: float = 0.002  # Tikhonov weight on ||grad x||^2 (best of 0.001-0.03 on the astronaut photo, blur tasks)
    iters: int = 100  # conjugate-gradient iterations (x5 for the biharmonic fill)
    progress: bool = False  # accepted for a uniform interface; nothing long enough to show
    stochastic: ClassVar[bool] = False  # the same result for every seed: no mean/uncertainty over samples

    def settings(self) -> dict:
        return asdict(self)

    def run(
        self,
        y: Tensor,
        operator,
        prior=None,
        generator: GeneratorLike = None,
        callback: Optional[Callback] = None,
        x_start: Optional[Tensor] = None,
        x_shape: Optional[Sequence[int]] = None,
        noise=None,  # accepted for the common interface: nothing here is random
    ) -> Result:
        from ..operators.base import LinearOperator
        from ..operators.inpaint import _Inpainting
        from ..operators.resize import SuperResolution

        check_measurement(y)
        with CostMeter(y.device, y.shape[0]) as meter:
            if isinstance(operator, SuperResolution):
                x = operator.upsample(y)
            elif isinstance(operator, _Inpainting):
                x = self._biharmonic(y, operator)
            elif isinstance(operator, LinearOperator):
                x = self._tikhonov(y, operator)
            else:
                raise SpgdError(
                    f"the classical baseline needs a linear operator (blur, super-resolution, inpainting, "
                    f"denoising), got {type(operator).__name__}"
                )
            x = x.clamp(-1, 1)
        meter.stats.failed = [False] * y.shape[0]
        meter.stats.failed_at_step = [None] * y.shape[0]
        return Result(x=x, stats=meter.stats)

    def _tikhonov(self, y: Tensor, op) -> Tensor:
        with torch.no_grad():
            b = op.adjoint(y)
            return conjugate_gradient(lambda v: op.adjoint(op.forward(v)) + self.lam * gradient_energy_grad(v), b, b, self.iters)

    def _biharmonic(self, y: Tensor, op) -> Tensor:
        with torch.no_grad():
            keep = op._mask_for(y).expand_as(y)
            free = 1 - keep
            known = y * keep
            bilap = lambda v: gradient_energy_grad(gradient_energy_grad(v))  # noqa: E731
            # unknowns u on the free pixels: minimise ||L (known + free*u)||^2
            apply = lambda u: free * bilap(free * u)  # noqa: E731
            b = -free * bilap(known)
            # start from the mean of the kept pixels, a better guess than 0 for CG
            mean = (known.flatten(2).sum(2) / keep.flatten(2).sum(2).clamp_min(1))[..., None, None]
            u = conjugate_gradient(apply, b, free * mean, self.iters * 5)
            return known + free * u
