"""PSNR and SSIM, the piq 0.8.0 definitions.

PSNR and SSIM take images (B, C, H, W) in [0, 1] and return one value per image, shape (B,). They follow
the definitions of ``piq`` 0.8.0 (``piq.psnr`` and ``piq.ssim`` with their defaults and
``reduction='none'``), so numbers are comparable with papers that report piq values (DPS, DAPS, SPGD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spgd.errors import SpgdError

__all__ = ["psnr", "ssim"]

_RANGE_TOL = 1e-3  # images may stray this far (relative to data_range) outside [0, data_range]


def _check_pair(x: Tensor, ref: Tensor, data_range: float, name: str) -> None:
    """Raise SpgdError unless x and ref are (B,C,H,W) tensors of one shape with values in [0, data_range]."""
    if not isinstance(x, Tensor) or not isinstance(ref, Tensor):
        raise SpgdError(f"{name}: expected two tensors, got {type(x).__name__} and {type(ref).__name__}")
    if x.dim() != 4:
        raise SpgdError(f"{name}: expected images of shape (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape != ref.shape:
        raise SpgdError(
            f"{name}: image and reference shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}"
        )
    if data_range <= 0:
        raise SpgdError(f"{name}: data_range must be positive, got {data_range}")
    tol = _RANGE_TOL * data_range
    for label, t in (("image", x), ("reference", ref)):
        if t.numel() == 0:
            raise SpgdError(f"{name}: {label} is empty (shape {tuple(t.shape)})")
        if not torch.isfinite(t).all():
            raise SpgdError(f"{name}: {label} contains non-finite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -tol or hi > data_range + tol:
            raise SpgdError(
                f"{name}: {label} values must lie in [0, {data_range:g}], got [{lo:.4g}, {hi:.4g}]; "
                "images in [-1, 1] must be mapped with spgd.io.to_unit first"
            )


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, one value per image, as ``piq.psnr`` (all channels, no greyscale).

    ``PSNR = -10 log10(mean_{c,h,w} (x/d - ref/d)^2 + 1e-8)`` with d = ``data_range``; the 1e-8 is piq's
    guard, so identical images give 80 dB rather than infinity.

    Args:
        x: restored images, (B, C, H, W) in [0, data_range].
        ref: ground truth, same shape.
        data_range: the value of white (1.0 for [0, 1] images, 255 for 8-bit values).

    Returns:
        (B,) float32 tensor.
    """
    _check_pair(x, ref, data_range, "psnr")
    x = x.to(torch.float32) / float(data_range)
    ref = ref.to(torch.float32) / float(data_range)
    mse = ((x - ref) ** 2).mean(dim=(1, 2, 3))
    return -10.0 * torch.log10(mse + 1e-8)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    """Normalised 2-D Gaussian window (size, size), computed in float32 as piq does."""
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2.0
    g = coords**2
    w = torch.exp(-(g[None, :] + g[:, None]) / (2.0 * sigma**2))
    return w / w.sum()


def ssim(
    x: Tensor,
    ref: Tensor,
    data_range: float = 1.0,
    kernel_size: int = 11,
    kernel_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    downsample: bool = True,
) -> Tensor:
    """Structural similarity (Wang et al. 2004), one value per image, as ``piq.ssim`` with its defaults.

    Images are divided by ``data_range``; if ``downsample``, both are average-pooled by
    f = max(1, round(min(H, W) / 256)). Local statistics use a Gaussian window (``kernel_size``,
    ``kernel_sigma``) applied per channel with no padding ("valid"), and

        SSIM map = (2 mu_x mu_y + C1) (2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

    with C1 = k1^2, C2 = k2^2. The map is averaged over pixels, then over channels (RGB is not converted
    to greyscale).

    Args:
        x: restored images, (B, C, H, W) in [0, data_range].
        ref: ground truth, same shape.
        data_range: the value of white.
        kernel_size: side of the Gaussian window (odd).
        kernel_sigma: standard deviation of the window, in pixels.
        k1, k2: stabilising constants.
        downsample: average-pool large images first, as piq (and skimage/TensorFlow comparisons) do.

    Returns:
        (B,) float32 tensor.
    """
    x, ref = _ssim_inputs(x, ref, data_range, kernel_size, downsample)
    return _ssim_per_image(x, ref, kernel_size, kernel_sigma, k1, k2)


def _ssim_inputs(
    x: Tensor, ref: Tensor, data_range: float, kernel_size: int, downsample: bool
) -> tuple[Tensor, Tensor]:
    """Both images checked, divided by ``data_range`` (float32) and, if ``downsample``, average-pooled by
    f = max(1, round(min(H, W) / 256)); SpgdError when they are smaller than the window."""
    _check_pair(x, ref, data_range, "ssim")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise SpgdError(f"ssim: kernel_size must be a positive odd number, got {kernel_size}")
    x = x.to(torch.float32) / float(data_range)
    ref = ref.to(torch.float32) / float(data_range)

    f = max(1, round(min(x.shape[-2:]) / 256))
    if f > 1 and downsample:
        x = F.avg_pool2d(x, kernel_size=f)
        ref = F.avg_pool2d(ref, kernel_size=f)
    h, w = x.shape[-2:]
    if h < kernel_size or w < kernel_size:
        raise SpgdError(
            f"ssim: images of {h}x{w} pixels (after down-sampling by {f}) are smaller than the "
            f"{kernel_size}x{kernel_size} window; use larger images or a smaller kernel_size"
        )
    return x, ref


def _ssim_per_image(x: Tensor, ref: Tensor, kernel_size: int, kernel_sigma: float, k1: float, k2: float) -> Tensor:
    """The SSIM map of two prepared images (Gaussian window per channel, "valid"), averaged per image: (B,)."""
    c = x.shape[1]
    window = _gaussian_window(kernel_size, kernel_sigma, x.device).expand(c, 1, kernel_size, kernel_size)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, window, groups=c)

    mu_x, mu_y = blur(x), blur(ref)
    mu_xx, mu_yy, mu_xy = mu_x**2, mu_y**2, mu_x * mu_y
    sigma_xx = blur(x * x) - mu_xx
    sigma_yy = blur(ref * ref) - mu_yy
    sigma_xy = blur(x * ref) - mu_xy

    c1, c2 = k1**2, k2**2
    cs = (2.0 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    ssim_map = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs
    return ssim_map.mean(dim=(-1, -2)).mean(dim=1)
