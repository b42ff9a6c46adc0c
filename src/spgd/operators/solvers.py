"""Prior-free estimates for linear operators (deepinv's `A_dagger` role): a Tikhonov-regularised least-squares
solve by conjugate gradients that works for any operator with `forward` and `adjoint`, and the pieces it and
the operators' own `pseudo_inverse` methods are built from."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..tensors import append_dims

TIKHONOV_LAM = 0.002  # weight on ||grad x||^2 (best of 0.001-0.03 on the astronaut photo, blur tasks)
CG_ITERS = 100  # conjugate-gradient iterations


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


def tikhonov(op, y: Tensor, lam: float = TIKHONOV_LAM, iters: int = CG_ITERS) -> Tensor:
    """x = argmin ||A x - y||^2 + lam ||grad x||^2 for a linear `op` (forward and adjoint), by conjugate gradients
    on the normal equations (exact for reflect-padded blurs, unlike a circular Wiener filter)."""
    with torch.no_grad():
        b = op.adjoint(y)
        return conjugate_gradient(lambda v: op.adjoint(op.forward(v)) + lam * gradient_energy_grad(v), b, b, iters)


#: the capabilities' iterative solves (operators without a closed form): relative residual tolerance, iterations
PROX_TOL, PROX_ITERS = 1e-6, 200
PINV_ITERS = 50


def cg_prox(op, z: Tensor, y: Tensor, rho: Tensor) -> Tensor:
    """argmin_x ||y - A x||^2 + rho ||x - z||^2 per image by conjugate gradients on (A^T A + rho) x = A^T y + rho z,
    from z, to relative residual PROX_TOL or PROX_ITERS iterations (rho: (B,), > 0)."""
    r = append_dims(rho, z.ndim)
    b = op.adjoint(y) + r * z
    return conjugate_gradient(lambda v: op.adjoint(op.forward(v)) + r * v, b, z, PROX_ITERS, PROX_TOL)


def cg_pinv(op, y: Tensor, x_shape) -> Tensor:
    """An approximate pseudo-inverse: conjugate gradients on A^T A x = A^T y from 0 (the iterates stay in the range
    of A^T, so they approach the minimum-norm solution), PINV_ITERS iterations at most."""
    b = op.adjoint(y)
    return conjugate_gradient(lambda v: op.adjoint(op.forward(v)), b, torch.zeros(x_shape, dtype=y.dtype, device=y.device),
                              PINV_ITERS)


def biharmonic_fill(y: Tensor, keep: Tensor, iters: int) -> Tensor:
    """The smoothest completion of the pixels where `keep` is 1: minimises ||Laplacian x||^2 with them fixed."""
    with torch.no_grad():
        free = 1 - keep
        known = y * keep
        bilap = lambda v: gradient_energy_grad(gradient_energy_grad(v))  # noqa: E731
        # unknowns u on the free pixels: minimise ||L (known + free*u)||^2
        apply = lambda u: free * bilap(free * u)  # noqa: E731
        b = -free * bilap(known)
        # start from the mean of the kept pixels, a better guess than 0 for CG
        mean = (known.flatten(2).sum(2) / keep.flatten(2).sum(2).clamp_min(1))[..., None, None]
        u = conjugate_gradient(apply, b, free * mean, iters)
        return known + free * u
