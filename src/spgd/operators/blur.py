"""Blur: y = k * x, per channel, with reflection padding (the benchmark's Gaussian and motion blur) or periodic
boundaries (``padding="circular"``, DiffPIR's blur).

The kernel is applied as a cross-correlation (as torch's ``conv2d`` and the reference code of DPS/SPGD do;
for symmetric kernels it is the same as a convolution) on the image reflection-padded by ``k // 2`` pixels
per side, so the output has the input's size. The adjoint is exact: the transposed correlation followed by
the adjoint of the reflection padding (the padded border folded back onto the pixels it was copied from).

Capabilities (spgd.operators.capabilities): a reflect-padded blur with a separable kernel (the Gaussian ones, any
rank-1 user kernel) has an exact SVD, the Kronecker product of two 1-D reflect-padded correlation matrices, which
gives DDRM its decomposition and DiffPIR/PiGDM their prox and pseudo-inverse; a circular blur has both in closed
form through the FFT (spgd.operators.fourier); any other blur (motion blur) solves them by conjugate gradients.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import SpgdError
from ..io import load_npy, numeric_array
from . import fourier
from .base import LinearOperator, SeededPartsMixin, check_channels, check_image
from .spectral import SeparableSVD, reflect_matrix, separable_factors

# ----------------------------------------------------------------------------------------------------------
# Stateless kernels


def _check_kernel_size(kernel_size: int) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise SpgdError(f"kernel_size must be an odd positive integer, got {kernel_size!r}")
    return kernel_size


def gaussian_kernel(kernel_size: int = 61, std: float = 3.0) -> Tensor:
    """The (k, k) Gaussian kernel of the benchmark, in float64.

    Equal to ``scipy.ndimage.gaussian_filter`` (truncate 4.0, mode "reflect") of a centred unit impulse,
    which is how DPS builds it: a sampled Gaussian of radius ``int(4 std + 0.5)``, normalised to sum 1,
    with any part beyond the k x k window folded back by the half-sample reflection.
    """
    _check_kernel_size(kernel_size)
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
        raise SpgdError(f"std of the Gaussian kernel must be a finite number > 0, got {std!r}")
    radius = int(4.0 * std + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * offsets**2 / std**2)
    weights /= weights.sum()
    n, c = kernel_size, kernel_size // 2
    # out[i] = sum_j weights[j] * impulse[reflect(i + j)]; the impulse sits at c
    idx = np.arange(n)[:, None] + offsets[None, :].astype(np.int64)
    idx = np.mod(idx, 2 * n)
    idx = np.where(idx >= n, 2 * n - 1 - idx, idx)
    profile = np.where(idx == c, weights[None, :], 0.0).sum(axis=1)
    return torch.from_numpy(np.outer(profile, profile))


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def _beta_1_30(g: torch.Generator) -> float:
    # inverse CDF of Beta(1, b): 1 - (1 - u)^(1/b)
    return 1.0 - (1.0 - _uniform(g)) ** (1.0 / 30.0)


def _beta_2_20(g: torch.Generator) -> float:
    # Gamma(2) / (Gamma(2) + Gamma(20)), the gammas as sums of unit exponentials
    e = -torch.log1p(-torch.rand(22, generator=g, dtype=torch.float64))
    return float(e[:2].sum() / e.sum())


def _triangular(g: torch.Generator, low: float, mode: float, high: float) -> float:
    u = _uniform(g)
    split = (mode - low) / (high - low)
    if u < split:
        return low + math.sqrt(u * (high - low) * (mode - low))
    return high - math.sqrt((1.0 - u) * (high - low) * (high - mode))


def _camera_shake_path(size: int, intensity: float, g: torch.Generator) -> Tensor:
    """Random camera-shake trajectory (complex points) on a (2 size)^2 canvas, as in the `motionblur` package.

    Step lengths ~ Beta(1, 30) scaled by (1 - intensity) and the canvas diagonal until the path reaches a
    random length; turning angles from a triangular law with random sign flips (jitter ~ Beta(2, 20));
    the path is centred on its mean point, rotated by a random angle and moved to the canvas centre.
    """
    eps = 1e-12
    canvas = 2 * size
    diagonal = math.sqrt(2.0) * canvas
    max_len = 0.75 * diagonal * (_uniform(g) + _uniform(g, 0.0, intensity))
    steps: list = []
    total = 0.0
    while total < max_len and len(steps) < 10_000:
        step = _beta_1_30(g) * (1.0 - intensity + eps) * diagonal
        if step < max_len:
            steps.append(step)
            total += step
    if not steps:  # pragma: no cover - only for a zero path length
        steps = [0.0]
    max_angle = _uniform(g, 0.0, intensity * math.pi)
    jitter = _beta_2_20(g)
    angles = [_uniform(g, -max_angle, max_angle)]
    while len(angles) < len(steps):
        angle = _triangular(g, 0.0, intensity * max_angle, max_angle + eps)
        sign = math.copysign(1.0, angles[-1]) if angles[-1] != 0 else 0.0
        angle *= -sign if _uniform(g) < jitter else sign
        angles.append(angle)
    increments = torch.polar(torch.tensor(steps, dtype=torch.float64), torch.tensor(angles, dtype=torch.float64))
    path = torch.cumsum(increments, 0)
    path = path - path.mean()
    rotation = _uniform(g, 0.0, math.pi)
    path = path * complex(math.cos(rotation), math.sin(rotation))
    return path + complex(canvas / 2, canvas / 2)


def _raster_polyline(path: Tensor, canvas: int, width: float) -> Tensor:
    """Anti-aliased rasterisation: coverage = clamp(width/2 + 1/2 - distance to the polyline, 0, 1)."""
    coords = torch.arange(canvas, dtype=torch.float64)
    px = torch.complex(coords[None, :].expand(canvas, canvas), coords[:, None].expand(canvas, canvas)).reshape(-1, 1)
    a = path[:-1][None, :] if path.numel() > 1 else path[None, :]
    b = path[1:][None, :] if path.numel() > 1 else path[None, :]
    ab = b - a
    denom = (ab.abs() ** 2).clamp_min(1e-24)
    t = (((px - a) * ab.conj()).real / denom).clamp(0.0, 1.0)
    dist = (px - (a + t * ab)).abs().min(dim=1).values
    return (width / 2 + 0.5 - dist).clamp(0.0, 1.0).reshape(canvas, canvas)


def motion_kernel(kernel_size: int = 61, intensity: float = 0.5, generator: Optional[torch.Generator] = None) -> Tensor:
    """A random (k, k) camera-shake kernel (float64, non-negative, sum 1) like DPS's `motionblur.Kernel`.

    The trajectory is drawn on a canvas twice the kernel size, rasterised as an anti-aliased line of width
    ``max(1, int(diagonal / 150))``, smoothed by a Gaussian of std ``max(1, int(diagonal / 100))``,
    averaged 2x2 down to k x k and normalised to sum 1. Written from the package's description, so the same
    seed gives a kernel of the same family, not the same pixels, as `motionblur`.
    """
    _check_kernel_size(kernel_size)
    if not (isinstance(intensity, (int, float)) and 0.0 <= intensity < 1.0):
        raise SpgdError(f"motion blur intensity must be in [0, 1), got {intensity!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    canvas = 2 * kernel_size
    diagonal = math.sqrt(2.0) * canvas
    path = _camera_shake_path(kernel_size, float(intensity), g)
    image = _raster_polyline(path, canvas, max(1.0, float(int(diagonal / 150))))
    blur_std = max(1, int(diagonal * 0.01))
    smooth = gaussian_kernel(2 * (3 * blur_std) + 1, blur_std)
    image = F.conv2d(F.pad(image[None, None], (3 * blur_std,) * 4), smooth[None, None])
    image = F.avg_pool2d(image, 2)[0, 0]
    total = image.sum()
    if total <= 0:  # pragma: no cover - the path always covers some pixel
        image = torch.zeros_like(image)
        image[kernel_size // 2, kernel_size // 2] = 1.0
        total = image.sum()
    return image / total


def _reflect_pad_adjoint(z: Tensor, pad: int, dim: int) -> Tensor:
    """Adjoint of reflection padding by `pad` along `dim` (fold the mirrored borders back)."""
    if pad == 0:
        return z
    n = z.shape[dim] - 2 * pad
    x = z.narrow(dim, pad, n).clone()
    left = z.narrow(dim, 0, pad).flip(dim)  # left[j] was copied from x[j + 1]
    right = z.narrow(dim, pad + n, pad).flip(dim)  # right reversed: was copied from x[n - 1 - pad + j]
    x.narrow(dim, 1, pad).add_(left)
    x.narrow(dim, n - 1 - pad, pad).add_(right)
    return x


def _grouped_weight(kernel: Tensor, batch: int, channels: int, x: Tensor) -> Tensor:
    k = kernel.to(device=x.device, dtype=x.dtype)
    if k.ndim == 2:
        k = k.expand(batch, *k.shape)
    elif k.shape[0] == 1:
        k = k.expand(batch, *k.shape[1:])
    return k[:, None].expand(batch, channels, *k.shape[1:]).reshape(batch * channels, 1, *k.shape[1:])


# Kernels wider than this are applied through FFTs: a 61x61 direct convolution costs ~30x more on a CPU.
FFT_MIN_KERNEL = 16


def _fft_kernel(kernel: Tensor, b: int, x: Tensor, shape: tuple) -> Tensor:
    """rfft2 of the kernel(s) zero-padded to `shape`, broadcastable to (B, C, ...)."""
    k = kernel.to(device=x.device, dtype=x.dtype)
    k = k.reshape(-1, 1, *k.shape[-2:])  # (1 or B, 1, kh, kw)
    return torch.fft.rfft2(k, s=shape)


def _correlate_valid_fft(xp: Tensor, kernel: Tensor) -> Tensor:
    """Valid cross-correlation of padded images xp (B, C, H+kh-1, W+kw-1) with the kernel, via FFT."""
    kh, kw = kernel.shape[-2:]
    hp, wp = xp.shape[-2:]
    spec = torch.fft.rfft2(xp) * _fft_kernel(kernel.flip(-2, -1), xp.shape[0], xp, (hp, wp))
    full = torch.fft.irfft2(spec, s=(hp, wp))  # circular convolution; the valid part has no wrap-around
    return full[..., kh - 1 :, kw - 1 :]


def _correlate_transpose_fft(y: Tensor, kernel: Tensor) -> Tensor:
    """Transpose of the valid cross-correlation: the full convolution of y with the kernel, via FFT."""
    kh, kw = kernel.shape[-2:]
    shape = (y.shape[-2] + kh - 1, y.shape[-1] + kw - 1)
    spec = torch.fft.rfft2(y, s=shape) * _fft_kernel(kernel, y.shape[0], y, shape)
    return torch.fft.irfft2(spec, s=shape)


def blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Per-channel cross-correlation of x (B, C, H, W) with kernel (k, k) or (B, k, k), reflection padded."""
    b, c, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    xp = F.pad(x.reshape(1, b * c, h, w), (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
    if max(kh, kw) >= FFT_MIN_KERNEL:
        return _correlate_valid_fft(xp.reshape(b, c, *xp.shape[-2:]), kernel)
    return F.conv2d(xp, _grouped_weight(kernel, b, c, x), groups=b * c).reshape(b, c, h, w)


def blur_adjoint(y: Tensor, kernel: Tensor) -> Tensor:
    """Exact adjoint of `blur`."""
    b, c, h, w = y.shape
    kh, kw = kernel.shape[-2:]
    if max(kh, kw) >= FFT_MIN_KERNEL:
        z = _correlate_transpose_fft(y, kernel).reshape(1, b * c, h + kh - 1, w + kw - 1)
    else:
        z = F.conv_transpose2d(y.reshape(1, b * c, h, w), _grouped_weight(kernel, b, c, y), groups=b * c)
    z = _reflect_pad_adjoint(z, kh // 2, 2)
    z = _reflect_pad_adjoint(z, kw // 2, 3)
    return z.reshape(b, c, h, w)


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def load_kernel(kernel: Union[Tensor, np.ndarray, str, Path], with_sums: bool = False, signed: bool = False):
    """A user kernel from a tensor/array or a .npy / image file, checked (2-D or (B,k,k), odd, >= 0),
    normalised to sum 1 (each per-image kernel separately), as float32. With `with_sums`, also the sums
    before normalisation (a list, one per kernel). With `signed` (a resampling kernel, e.g. bicubic with its
    negative lobes), negative taps are allowed and the kernel is kept as given (only its sum must be > 0)."""
    if isinstance(kernel, (str, Path)):
        path = Path(kernel)
        if not path.is_file():
            raise SpgdError(f"kernel file not found: {path}")
        if path.suffix.lower() == ".npy":
            kernel = load_npy(path, "kernel")
        else:
            try:
                with Image.open(path) as im:
                    kernel = np.asarray(im.convert("F"), dtype=np.float64)
            except Exception as err:  # noqa: BLE001 - any decoding failure is a bad user file
                raise SpgdError(f"cannot read kernel file {path} (.npy or an image such as .png): {err}") from err
    if isinstance(kernel, Tensor):
        if kernel.is_complex() or not (kernel.is_floating_point() or kernel.dtype in _INTEGER_DTYPES):
            raise SpgdError(f"a blur kernel must hold real numbers, got a tensor of dtype {kernel.dtype}")
        k = kernel.detach()
    else:
        k = torch.as_tensor(numeric_array(kernel, "the blur kernel").astype(np.float64))
    if k.ndim == 4 and k.shape[1] == 1:
        k = k[:, 0]
    if k.ndim not in (2, 3):
        raise SpgdError(f"a blur kernel must be 2-D (k, k) or per image (B, k, k), got shape {tuple(k.shape)}")
    k = k.to(torch.float64)
    if k.shape[-1] % 2 == 0 or k.shape[-2] % 2 == 0:
        raise SpgdError(f"a blur kernel must have odd height and width, got {tuple(k.shape[-2:])}")
    if not torch.isfinite(k).all() or (not signed and (k < 0).any()):
        raise SpgdError("a blur kernel must be finite" + ("" if signed else " and non-negative"))
    sums = k.sum(dim=(-2, -1), keepdim=True)
    if (sums <= 0).any():
        raise SpgdError("a blur kernel must have a positive sum")
    out = (k if signed else k / sums).to(torch.float32)
    return (out, sums.flatten().tolist()) if with_sums else out


# ----------------------------------------------------------------------------------------------------------
# Operators


PADDINGS = ("reflect", "circular")


def _check_padding(padding: str) -> str:
    if padding not in PADDINGS:
        raise SpgdError(f"padding must be one of {PADDINGS}, got {padding!r}")
    return padding


class _BlurBase(LinearOperator):
    """Shared forward/adjoint and capabilities; subclasses provide `_kernel_for(x)`."""

    def __init__(self, noise_sigma: float, channels: Optional[int], padding: str = "reflect"):
        super().__init__(noise_sigma)
        self.channels = check_channels(channels)
        self.padding = _check_padding(padding)

    def _kernel_for(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check(self, x: Tensor) -> None:
        check_image(x, type(self).__name__, self.channels)

    def _checked_kernel(self, x: Tensor) -> Tensor:
        self._check(x)
        k = self._kernel_for(x)
        kh, kw = k.shape[-2:]
        if kh > x.shape[2] or kw > x.shape[3]:
            raise SpgdError(
                f"{type(self).__name__}: kernel {kh}x{kw} is larger than the image {x.shape[2]}x{x.shape[3]}; "
                "use a kernel no larger than the image"
            )
        return k

    def _transfer(self, x: Tensor) -> Tensor:
        # correlation with k is convolution with k flipped
        k = self._checked_kernel(x)
        return fourier.transfer_function(k.flip(-2, -1), x.shape[-2], x.shape[-1], x)

    def forward(self, x: Tensor) -> Tensor:
        if self.padding == "circular":
            return fourier.apply(x, self._transfer(x), 1)
        return blur(x, self._checked_kernel(x))

    def adjoint(self, y: Tensor) -> Tensor:
        if self.padding == "circular":
            return fourier.apply_adjoint(y, self._transfer(y), 1)
        return blur_adjoint(y, self._checked_kernel(y))

    # -- capabilities ----------------------------------------------------------------------------------------
    def _separable_kernels(self) -> Optional[list]:
        """The (column, row) taps of each stored kernel when every one is separable, else None (cached until the
        kernels change)."""
        k = getattr(self, "kernel", None)
        if k is None:
            return None
        key = (k.data_ptr(), k._version, tuple(k.shape))
        cached = getattr(self, "_factors_cache", None)
        if cached is None or cached[0] != key:
            kernels = [k] if k.ndim == 2 else list(k)
            factors = [separable_factors(kk) for kk in kernels]
            cached = (key, None if any(f is None for f in factors) else factors)
            self._factors_cache = cached
        return cached[1]

    @property
    def svd_kind(self) -> str:  # type: ignore[override]
        if self.padding == "circular":  # any kernel: the real Fourier basis
            return "exact"
        return "exact" if self.padding == "reflect" and self._separable_kernels() is not None else ""

    @property
    def no_svd_reason(self) -> str:
        return "its kernel is not separable (a rank-1 kernel, outer(column, row), has one; padding='circular' " \
               "gives any kernel one)"

    def svd(self, x_shape) -> list:
        """The exact SVD of each image's blur: the Kronecker product of the 1-D reflect-padded matrices
        (spgd.operators.spectral.SeparableSVD), or, with circular padding, the real Fourier basis
        (spgd.operators.fourier.CircularSVD)."""
        b, c, h, w = x_shape
        if self.padding == "circular":
            like = torch.zeros((), dtype=torch.float64)
            H = self._transfer(like.new_zeros(b, c, h, w))
            svds = [fourier.CircularSVD(H[i], (c, h, w)) for i in range(H.shape[0])]
        else:
            factors = self._separable_kernels()
            if factors is None:
                raise SpgdError(f"{type(self).__name__} has no exact SVD: {self.no_svd_reason}")
            svds = [SeparableSVD(reflect_matrix(col, h), reflect_matrix(row, w), c) for col, row in factors]
        return svds * b if len(svds) == 1 else svds

    def prox(self, z: Tensor, y: Tensor, rho) -> Tensor:
        if self.padding != "circular":
            return super().prox(z, y, rho)
        rho_t = torch.as_tensor(rho, dtype=z.dtype, device=z.device).expand(z.shape[0])
        with torch.no_grad():
            return fourier.prox(z, y, self._transfer(z), 1, rho_t)

    def pinv(self, y: Tensor) -> Tensor:
        if self.padding != "circular":
            return super().pinv(y)
        with torch.no_grad():
            return fourier.pinv(y, self._transfer(y), 1)

    @property
    def prox_kind(self) -> str:  # type: ignore[override]
        return "FFT (exact)" if self.padding == "circular" else super().prox_kind

    @property
    def pinv_kind(self) -> str:  # type: ignore[override]
        return "FFT (exact, truncated)" if self.padding == "circular" else super().pinv_kind


class Blur(_BlurBase):
    """Blur with a user kernel: a tensor (k, k) shared by the batch or (B, k, k) per image, or a .npy /
    image file. The kernel is normalised to sum 1."""

    def __init__(
        self,
        kernel: Union[Tensor, np.ndarray, str, Path],
        noise_sigma: float = 0.01,
        channels: Optional[int] = 3,  # expected channels; None accepts any
        padding: str = "reflect",  # "reflect" or "circular" (periodic boundaries, DiffPIR's blur)
    ):
        super().__init__(noise_sigma, channels, padding)
        self.register_buffer("kernel", load_kernel(kernel))

    def _kernel_for(self, x: Tensor) -> Tensor:
        k = self.kernel
        if k.ndim == 3 and k.shape[0] not in (1, x.shape[0]):
            raise SpgdError(
                f"the blur kernel holds {k.shape[0]} per-image kernels (shape {tuple(k.shape)}) but the batch has "
                f"{x.shape[0]} image(s): give one (k, k) kernel shared by every image, or exactly one kernel per "
                f"image ({x.shape[0]}, k, k)"
            )
        return k

    def random_parts(self) -> dict:
        return {"kernel": self.kernel.detach().cpu()}


class GaussianBlur(_BlurBase):
    """Gaussian blur of the benchmark (kernel 61, std 3.0), reflection padded, per channel."""

    def __init__(
        self,
        kernel_size: int = 61,  # odd size of the square kernel
        std: float = 3.0,  # standard deviation in pixels
        noise_sigma: float = 0.01,
        channels: Optional[int] = 3,
        padding: str = "reflect",  # "reflect" (the benchmark) or "circular"
    ):
        super().__init__(noise_sigma, channels, padding)
        self.kernel_size = _check_kernel_size(kernel_size)
        self.std = std
        self.register_buffer("kernel", gaussian_kernel(kernel_size, std).to(torch.float32))

    def _kernel_for(self, x: Tensor) -> Tensor:
        return self.kernel

    def random_parts(self) -> dict:
        return {"kernel": self.kernel.detach().cpu()}


class MotionBlur(SeededPartsMixin, _BlurBase):
    """Motion blur of the benchmark (kernel 61, intensity 0.5): one random camera-shake kernel per image,
    image i drawn from seed ``seed + i``; or a given ``kernel`` ((k, k) shared or (B, k, k))."""

    _part_name = "kernel"

    def __init__(
        self,
        kernel_size: int = 61,  # odd size of the square kernel
        intensity: float = 0.5,  # in [0, 1): longer, more jittery paths when larger
        seed: int = 0,  # image i of a batch uses seed + i
        kernel: Optional[Union[Tensor, np.ndarray, str, Path]] = None,  # fixed kernel(s) instead of random ones
        noise_sigma: float = 0.01,
        channels: Optional[int] = 3,
        padding: str = "reflect",  # "reflect" (the benchmark) or "circular"
    ):
        super().__init__(noise_sigma, channels, padding)
        self.kernel_size = _check_kernel_size(kernel_size)
        if not (isinstance(intensity, (int, float)) and 0.0 <= intensity < 1.0):
            raise SpgdError(f"motion blur intensity must be in [0, 1), got {intensity!r}")
        self.intensity = float(intensity)
        explicit = None
        if kernel is not None:
            explicit = load_kernel(kernel)
            if explicit.ndim == 2:
                explicit = explicit[None]
            self.kernel_size = explicit.shape[-1]
        self._init_parts(seed, explicit)

    def _draw_part(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        return motion_kernel(self.kernel_size, self.intensity, generator).to(torch.float32)

    def _kernel_for(self, x: Tensor) -> Tensor:
        return self._parts(x.shape[0], x.shape[2], x.shape[3], x.device)
