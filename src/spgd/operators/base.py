"""The Operator contract: y = A(x) + noise_sigma * n, n ~ N(0, I).

Random parts (masks, motion kernels, kernel codes) follow one rule, shared by every operator that has
them: image i of a batch draws its part from its own ``torch.Generator`` seeded with ``seed + i``. An image
restored alone with seed ``s + i`` therefore sees the same mask/kernel as inside a batch that starts at seed
``s``. Parts are drawn lazily for the batch shape first seen (or explicitly with ``prepare``), stored as
buffers (so ``state_dict`` saves them) and redrawn, from the same seeds, when the batch size or image size
changes. ``random_parts()`` returns them for saving next to the outputs.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import SpgdError
from .solvers import CG_ITERS, TIKHONOV_LAM, cg_pinv, cg_prox, tikhonov
from .spectral import svd_pinv, svd_prox


class Operator(nn.Module):
    """Base class of degradations. Subclasses implement `forward(x)` (noise-free A(x)).

    Subclassing is optional: any object with `forward`, `measure` and `noise_sigma` works.
    """

    #: whether the operator is linear in x (then it has `adjoint`)
    linear: bool = False

    def __init__(self, noise_sigma: float = 0.0):
        super().__init__()
        if not (isinstance(noise_sigma, (int, float)) and math.isfinite(noise_sigma) and noise_sigma >= 0):
            raise SpgdError(f"noise_sigma must be a finite number >= 0, got {noise_sigma!r}")
        self.noise_sigma = float(noise_sigma)

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def measure(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """A(x) plus Gaussian noise of std `noise_sigma` (drawn from `generator`)."""
        y = self.forward(x)
        if self.noise_sigma > 0:
            noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            y = y + self.noise_sigma * noise
        return y

    def prepare(self, batch_size: int, height: int, width: int) -> None:
        """Draw the random parts for this batch shape now (no-op for operators without any)."""

    def random_parts(self) -> Dict[str, Tensor]:
        """The operator's random parts (e.g. ``{"mask": ...}``), for saving alongside outputs."""
        return {}


class LinearOperator(Operator):
    """A linear degradation; subclasses add `adjoint(y)` (A^T y).

    Every linear operator offers the `prox` and `pinv` capabilities (spgd.operators.capabilities): from its SVD when
    it has one (a subclass defining `svd(x_shape)` with a non-empty `svd_kind`), else by conjugate gradients;
    families with a cheaper closed form (masks, circular convolutions) override them.
    """

    linear = True
    svd_kind = ""  # "exact" where `svd` gives an exact decomposition (DDRM asks for it)

    def adjoint(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def pseudo_inverse(self, y: Tensor, lam: float = TIKHONOV_LAM, iters: int = CG_ITERS) -> Tensor:
        """A prior-free estimate of x from y (deepinv's `A_dagger`): Tikhonov least squares by conjugate
        gradients (spgd.operators.solvers.tikhonov); families with a better classical answer override it.
        (The Moore-Penrose pseudo-inverse is `pinv`.)"""
        return tikhonov(self, y, lam, iters)

    def _svds(self, x_shape) -> Optional[list]:
        if not self.svd_kind:
            return None
        svd = self.svd(tuple(x_shape))  # type: ignore[attr-defined]
        return list(svd) if isinstance(svd, (list, tuple)) else [svd] * int(x_shape[0])

    def _x_shape(self, y: Tensor) -> tuple:
        fn = getattr(self, "input_shape", None)
        return tuple(fn(y)) if callable(fn) else tuple(y.shape)

    def prox(self, z: Tensor, y: Tensor, rho) -> Tensor:
        """argmin_x ||y - A x||^2 + rho ||x - z||^2 per image (rho: a float or a (B,) tensor): exact from the SVD
        where the operator has one, else conjugate gradients (see `prox_kind`)."""
        rho_t = torch.as_tensor(rho, dtype=z.dtype, device=z.device).expand(z.shape[0])
        svds = self._svds(z.shape)
        with torch.no_grad():
            if svds is not None:
                return svd_prox(svds, z, y, rho_t)
            return cg_prox(self, z, y, rho_t)

    def pinv(self, y: Tensor) -> Tensor:
        """The pseudo-inverse A^+ y: exact from the SVD where the operator has one (singular values below
        spgd.operators.spectral.PINV_RCOND of the largest taken as zero), else conjugate gradients on the normal
        equations from 0 (see `pinv_kind`)."""
        x_shape = self._x_shape(y)
        svds = self._svds(x_shape)
        with torch.no_grad():
            if svds is not None:
                return svd_pinv(svds, y, x_shape)
            return cg_pinv(self, y, x_shape)

    @property
    def prox_kind(self) -> str:
        return "SVD (exact)" if self.svd_kind else "conjugate gradients (approximate)"

    @property
    def pinv_kind(self) -> str:
        return "SVD (exact, truncated)" if self.svd_kind else "conjugate gradients (approximate)"


class SeededPartsMixin:
    """Per-image random parts stored in the buffer named `_part_name`, drawn from seeds ``seed + i``.

    Subclasses set `_part_name`, call `_init_parts(seed, explicit)` and implement
    ``_draw_part(generator, height, width) -> Tensor`` (one image's part, on the CPU) and, where the part
    depends on the image size, ``_part_fits(part, height, width) -> bool``.
    """

    _part_name: str = "part"

    def _init_parts(self, seed: int, explicit: Optional[Tensor]) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SpgdError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self._explicit = explicit is not None
        self.register_buffer(self._part_name, explicit)  # type: ignore[attr-defined]

    def _draw_part(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        raise NotImplementedError  # pragma: no cover

    def _part_fits(self, part: Tensor, height: int, width: int) -> bool:
        return True

    def prepare(self, batch_size: int, height: int, width: int) -> None:
        self._parts(batch_size, height, width, None)

    def _parts(self, batch_size: int, height: int, width: int, device: Optional[torch.device]) -> Tensor:
        part = getattr(self, self._part_name)
        if self._explicit:
            if part.shape[0] not in (1, batch_size):
                raise SpgdError(
                    f"the given {self._part_name} holds {part.shape[0]} per-image entries but the batch has "
                    f"{batch_size} images; give 1 (shared) or {batch_size}"
                )
        elif part is None or part.shape[0] != batch_size or not self._part_fits(part, height, width):
            parts = [
                self._draw_part(torch.Generator().manual_seed(self.seed + i), height, width)
                for i in range(batch_size)
            ]
            part = torch.stack(parts)
            setattr(self, self._part_name, part)  # a registered buffer stays a buffer
        if device is not None and part.device != device:
            part = part.to(device)
            setattr(self, self._part_name, part)
        return part

    def random_parts(self) -> Dict[str, Tensor]:
        part = getattr(self, self._part_name)
        return {} if part is None else {self._part_name: part.detach().cpu()}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # A part not drawn yet is a None buffer, which nn.Module would not load into: make room first.
        key = prefix + self._part_name
        if key in state_dict and getattr(self, self._part_name) is None:
            self._buffers[self._part_name] = torch.empty_like(state_dict[key])  # type: ignore[attr-defined]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]


def check_image(
    x: Tensor, name: str, channels: Optional[int] = None, min_height: int = 1, min_width: int = 1
) -> None:
    """Raise SpgdError unless x is a (B, C, H, W) floating tensor with the expected channels and size."""
    if not isinstance(x, Tensor):
        raise SpgdError(f"{name} expects a torch.Tensor image batch (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise SpgdError(f"{name} expects images of shape (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise SpgdError(f"{name} expects a floating-point tensor, got {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise SpgdError(f"{name} expects {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.shape[2] < min_height or x.shape[3] < min_width:
        raise SpgdError(
            f"{name} needs images of at least {min_height}x{min_width} pixels, "
            f"got {x.shape[2]}x{x.shape[3]}"
        )


def check_channels(channels: Optional[int]) -> Optional[int]:
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise SpgdError(f"channels must be a positive integer or None (any), got {channels!r}")
    return channels


def adjointness_error(
    op: LinearOperator,
    x_shape: Sequence[int],
    dtype: torch.dtype = torch.float64,
    device: Optional[torch.device] = None,
    seed: int = 0,
) -> float:
    """Dot-product test: |<A x, y> - <x, A^T y>| / (||A x|| ||y||) on random x and y.

    Close to machine precision for a correct adjoint (Cauchy-Schwarz bounds the normaliser from below
    by each inner product, so the value is a relative error).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(x_shape), generator=g, dtype=dtype).to(device)
    ax = op.forward(x)
    y = torch.randn(ax.shape, generator=g, dtype=dtype).to(device)
    aty = op.adjoint(y)
    lhs = torch.sum(ax * y)
    rhs = torch.sum(x * aty)
    scale = ax.norm() * y.norm()
    if scale == 0:
        scale = x.norm() * aty.norm()
    if scale == 0:
        return 0.0
    return float((lhs - rhs).abs() / scale)
