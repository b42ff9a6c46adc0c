"""Inpainting: y = mask * x, mask 1 where a pixel is kept, 0 where it is missing (shared by the channels).

As in the reference code, missing pixels are zero in y (x * mask); the operator is its own adjoint.
Masks are drawn per image (image i from seed ``seed + i``) or given explicitly with ``mask=``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..errors import SpgdError
from .solvers import CG_ITERS, biharmonic_fill
from .base import LinearOperator, SeededPartsMixin, check_channels, check_image
from .spectral import MaskSVD


def box_mask(
    height: int, width: int, box: Tuple[int, int], margin: Tuple[int, int], generator: torch.Generator
) -> Tensor:
    """A (1, H, W) mask with one box of zeros at a uniform random position at least `margin` from the border."""
    bh, bw = box
    mh, mw = margin
    top = int(torch.randint(mh, height - mh - bh + 1, (), generator=generator))
    left = int(torch.randint(mw, width - mw - bw + 1, (), generator=generator))
    mask = torch.ones(1, height, width)
    mask[:, top : top + bh, left : left + bw] = 0.0
    return mask


def random_mask(height: int, width: int, drop: float, generator: torch.Generator) -> Tensor:
    """A (1, H, W) mask with exactly ``int(drop * H * W)`` pixels set to 0, chosen uniformly."""
    n = height * width
    mask = torch.ones(n)
    mask[torch.randperm(n, generator=generator)[: int(n * drop)]] = 0.0
    return mask.reshape(1, height, width)


def _as_mask(mask: Union[Tensor, Sequence]) -> Tensor:
    m = torch.as_tensor(mask).detach().to(torch.float32)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4:
        raise SpgdError(
            f"an inpainting mask must be (H, W), (B, H, W) or (B, 1|C, H, W), got shape {tuple(m.shape)}"
        )
    if not torch.isfinite(m).all() or (m < 0).any() or (m > 1).any():
        raise SpgdError("an inpainting mask must hold values in [0, 1] (1 = kept pixel, 0 = missing)")
    return m


def _pair(value: Union[int, Sequence[int]], name: str, minimum: int) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        pair: tuple = (value, value)
    else:
        pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair):
        raise SpgdError(f"{name} must be an integer >= {minimum} or a pair (height, width) of them, got {value!r}")
    return pair  # type: ignore[return-value]


class _Inpainting(SeededPartsMixin, LinearOperator):
    _part_name = "mask"

    def __init__(self, noise_sigma: float, seed: int, mask: Optional[Tensor], channels: Optional[int]):
        super().__init__(noise_sigma)
        self.channels = check_channels(channels)
        self._init_parts(seed, None if mask is None else _as_mask(mask))

    def _part_fits(self, part: Tensor, height: int, width: int) -> bool:
        return tuple(part.shape[-2:]) == (height, width)

    def _mask_for(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        check_image(x, name, self.channels)
        mask = self._parts(x.shape[0], x.shape[2], x.shape[3], x.device)
        if tuple(mask.shape[-2:]) != tuple(x.shape[-2:]) or mask.shape[1] not in (1, x.shape[1]):
            raise SpgdError(f"{name}: mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}")
        return mask.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return x * self._mask_for(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self._mask_for(y)

    def pseudo_inverse(self, y: Tensor, lam: float = 0.0, iters: int = CG_ITERS) -> Tensor:
        """The classical estimate: biharmonic fill of the missing pixels (5 x `iters` CG steps; `lam` does not
        apply)."""
        return biharmonic_fill(y, self._mask_for(y).expand_as(y), iters * 5)

    # capabilities (spgd.operators.capabilities): all in closed form
    svd_kind = "exact"
    prox_kind = "closed form"
    pinv_kind = "closed form"

    def svd(self, x_shape) -> list:
        """DDRM's inpainting SVD of each image (spgd.operators.spectral.MaskSVD); one object when the batch shares
        its mask."""
        b, c, h, w = x_shape
        mask = self._parts(b, h, w, None).detach().cpu()
        if mask.shape[0] == 1:
            return [MaskSVD(mask[0], c)] * b
        return [MaskSVD(mask[i], c) for i in range(b)]

    def prox(self, z: Tensor, y: Tensor, rho) -> Tensor:
        """argmin_x ||y - m x||^2 + rho ||x - z||^2 = (m y + rho z) / (m^2 + rho), per pixel."""
        m = self._mask_for(z)
        r = torch.as_tensor(rho, dtype=z.dtype, device=z.device).reshape(-1, 1, 1, 1)
        return (m * y + r * z) / (m * m + r)

    def observed(self, x: Tensor) -> Tensor:
        """1 on the entries of x that y measures directly (A^+ A = I there), 0 elsewhere: PiGDM's release projects
        x0_hat onto y there and masks its guidance (spgd.samplers.pigdm)."""
        return (self._mask_for(x) > 0).to(x.dtype)

    def pinv(self, y: Tensor) -> Tensor:
        """A^+ y: y / m where m > 0 (y itself there for a 0/1 mask), 0 on the missing pixels."""
        m = self._mask_for(y)
        return torch.where(m > 0, y / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(y))


class InpaintingBox(_Inpainting):
    """Box inpainting of the benchmark: one 128x128 box per image at a random position, 16 px from the border."""

    def __init__(
        self,
        box_size: Union[int, Sequence[int]] = 128,  # box side, or (height, width)
        margin: Union[int, Sequence[int]] = 16,  # minimum distance of the box to the image border
        seed: int = 0,  # image i of a batch uses seed + i
        mask: Optional[Tensor] = None,  # a fixed mask instead (1 = kept)
        noise_sigma: float = 0.05,
        channels: Optional[int] = 3,
    ):
        box, gap = _pair(box_size, "box_size", 1), _pair(margin, "margin", 0)
        super().__init__(noise_sigma, seed, mask, channels)
        self.box_size, self.margin = box, gap

    def _draw_part(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        (bh, bw), (mh, mw) = self.box_size, self.margin
        if bh + 2 * mh > height or bw + 2 * mw > width:
            raise SpgdError(
                f"InpaintingBox: a {bh}x{bw} box with margin {mh}x{mw} does not fit a {height}x{width} image; "
                f"need box + 2 * margin <= image size"
            )
        return box_mask(height, width, self.box_size, self.margin, generator)


class InpaintingRandom(_Inpainting):
    """Random inpainting of the benchmark: a fraction `drop` (default 80 %) of the pixels missing."""

    def __init__(
        self,
        drop: float = 0.8,  # fraction of missing pixels, in [0, 1)
        seed: int = 0,  # image i of a batch uses seed + i
        mask: Optional[Tensor] = None,  # a fixed mask instead (1 = kept)
        noise_sigma: float = 0.01,
        channels: Optional[int] = 3,
    ):
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0.0 <= drop < 1.0:
            raise SpgdError(f"drop (fraction of missing pixels) must be in [0, 1), got {drop!r}")
        super().__init__(noise_sigma, seed, mask, channels)
        self.drop = float(drop)

    def _draw_part(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        return random_mask(height, width, self.drop, generator)
