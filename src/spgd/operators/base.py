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
from .solvers import CG_ITERS, TIKHONOV_LAM, tikhonov


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
    """A linear degradation; subclasses add `adjoint(y)` (A^T y)."""

    linear = True

    def adjoint(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def pseudo_inverse(self, y: Tensor, lam: float = TIKHONOV_LAM, iters: int = CG_ITERS) -> Tensor:
        """A prior-free estimate of x from y (deepinv's `A_dagger`): Tikhonov least squares by conjugate
        gradients (spgd.operators.solvers.tikhonov); families with a better classical answer override it."""
        return tikhonov(self, y, lam, iters)


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
