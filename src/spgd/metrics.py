"""Image-quality metrics: PSNR and SSIM (piq 0.8.0 definitions) and LPIPS from a local weights file.

PSNR and SSIM take images (B, C, H, W) in [0, 1] and return one value per image, shape (B,). They follow
the definitions of ``piq`` 0.8.0 (``piq.psnr`` and ``piq.ssim`` with their defaults and
``reduction='none'``), so numbers are comparable with papers that report piq values (DPS, DAPS, SPGD).

LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018,
arXiv 1801.03924) needs pretrained network weights. Nothing is downloaded: :class:`LPIPS` loads a file the
user gives, and :func:`lpips_or_reason` tells a report why LPIPS was not computed when no file is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spgd.errors import SpgdError

__all__ = ["psnr", "ssim", "LPIPS", "lpips_or_reason", "LPIPS_WEIGHTS_HELP"]

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


# ----------------------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------------------

LPIPS_WEIGHTS_HELP = (
    "LPIPS needs one weights file (or several, merged) holding both the backbone and the linear layers: "
    "the ImageNet backbone as saved by torchvision (vgg16-397923af.pth for 'vgg', alexnet-owt-7be5be79.pth "
    "for 'alex'; keys features.N.weight) and the LPIPS linear layers from the lpips package "
    "(lpips/weights/v0.1/vgg.pth or alex.pth; keys lin0.model.1.weight ... lin4.model.1.weight); "
    "a full lpips.LPIPS state_dict (keys net.sliceK.N.weight and lin*.model.1.weight) also works"
)

# Layer lists of torchvision's VGG16 / AlexNet `features`, as (kind, in, out, kernel, stride, padding);
# positions in the list are the torchvision indices (features.N), so their weights load by name.
_VGG16 = [
    ("conv", 3, 64), ("relu",), ("conv", 64, 64), ("relu",),  # 0-3   -> relu1_2
    ("pool",), ("conv", 64, 128), ("relu",), ("conv", 128, 128), ("relu",),  # 4-8 -> relu2_2
    ("pool",), ("conv", 128, 256), ("relu",), ("conv", 256, 256), ("relu",),
    ("conv", 256, 256), ("relu",),  # 9-15 -> relu3_3
    ("pool",), ("conv", 256, 512), ("relu",), ("conv", 512, 512), ("relu",),
    ("conv", 512, 512), ("relu",),  # 16-22 -> relu4_3
    ("pool",), ("conv", 512, 512), ("relu",), ("conv", 512, 512), ("relu",),
    ("conv", 512, 512), ("relu",),  # 23-29 -> relu5_3
]
_VGG16_TAPS = (3, 8, 15, 22, 29)
_VGG16_CHANNELS = (64, 128, 256, 512, 512)

_ALEX = [
    ("conv", 3, 64, 11, 4, 2), ("relu",),  # 0-1 -> relu1
    ("pool3",), ("conv", 64, 192, 5, 1, 2), ("relu",),  # 2-4 -> relu2
    ("pool3",), ("conv", 192, 384, 3, 1, 1), ("relu",),  # 5-7 -> relu3
    ("conv", 384, 256, 3, 1, 1), ("relu",),  # 8-9 -> relu4
    ("conv", 256, 256, 3, 1, 1), ("relu",),  # 10-11 -> relu5
]
_ALEX_TAPS = (1, 4, 7, 9, 11)
_ALEX_CHANNELS = (64, 192, 384, 256, 256)

_NETS = {
    "vgg": (_VGG16, _VGG16_TAPS, _VGG16_CHANNELS),
    "alex": (_ALEX, _ALEX_TAPS, _ALEX_CHANNELS),
}


def _build_features(spec: list[tuple]) -> nn.Sequential:
    """A torchvision-compatible `features` stack (parameter names features.N.weight / .bias)."""
    layers: list[nn.Module] = []
    for item in spec:
        if item[0] == "conv":
            cin, cout = item[1], item[2]
            k, s, p = item[3:] if len(item) > 3 else (3, 1, 1)
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
        elif item[0] == "relu":
            layers.append(nn.ReLU())
        elif item[0] == "pool":
            layers.append(nn.MaxPool2d(2, 2))
        else:  # AlexNet's overlapping pooling
            layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


def _slice_index(net: str) -> dict[int, int]:
    """torchvision feature index -> lpips slice number (1-based), from the tap positions."""
    taps = _NETS[net][1]
    out, start = {}, 0
    for k, end in enumerate(taps, start=1):
        for i in range(start, end + 1):
            out[i] = k
        start = end + 1
    return out


def _normalize_channels(t: Tensor, eps: float = 1e-10) -> Tensor:
    """Divide each feature vector (over channels) by its Euclidean norm, as lpips.normalize_tensor."""
    return t / (torch.sqrt((t**2).sum(dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity (Zhang et al. 2018, v0.1), from local weights only.

    d(x, y) = sum_l mean_{h,w} w_l . (phi_l(x) / |phi_l(x)| - phi_l(y) / |phi_l(y)|)^2

    where phi_l are backbone activations after an ImageNet scaling layer ((x - shift) / scale with
    shift = (-.030, -.088, -.188), scale = (.458, .448, .450)): VGG16 relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3 (``net="vgg"``, the variant of the SPGD/DAPS code), or AlexNet relu1..relu5 (``net="alex"``,
    the variant of DPS-family papers). w_l are the learned non-negative 1x1 "lin" weights. Reports must name
    the variant (:attr:`label`): the two give different numbers.

    Weights file format: ``torch.load(path, weights_only=True)`` must give a state_dict (a mapping of
    names to tensors). ``weights`` may be one path or a list of paths whose dicts are merged, e.g.
    ``[vgg16-397923af.pth, lpips/weights/v0.1/vgg.pth]``. Accepted keys:

    - backbone: torchvision names ``features.N.weight`` / ``features.N.bias`` (``classifier.*`` ignored),
      or the lpips package names ``net.sliceK.N.weight`` / ``.bias``;
    - linear layers: ``linL.model.1.weight`` (L = 0..4, shape (1, C_L, 1, 1)), or ``lins.L.model.1.weight``;
    - anything else (``scaling_layer.*``, ``classifier.*``) is ignored.

    To build a single file: ``sd = torch.load(backbone, weights_only=True); sd.update(torch.load(lin, weights_only=True)); torch.save(sd, out)``.

    Args:
        net: ``"vgg"`` or ``"alex"``.
        weights: path(s) of the weights file(s).
        normalize: inputs are in [0, 1] instead of [-1, 1].

    ``forward(x, ref)`` takes (B, 3, H, W) images and returns (B,) distances (0 for identical images).
    Parameters are frozen; the module is in eval mode.
    """

    def __init__(
        self,
        net: Literal["vgg", "alex"] = "vgg",
        weights: Union[str, Path, Sequence[Union[str, Path]], None] = None,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if net not in _NETS:
            raise SpgdError(f"LPIPS: unknown network {net!r}; choose 'vgg' or 'alex'")
        if weights is None:
            raise SpgdError(f"LPIPS ({net}) needs a local weights file; none was given. {LPIPS_WEIGHTS_HELP}")
        spec, taps, chans = _NETS[net]
        self.net = net
        self.normalize = normalize
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.features = _build_features(spec)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chans)
        self._taps = taps
        paths = [weights] if isinstance(weights, (str, Path)) else list(weights)
        self.weights_files = [Path(p) for p in paths]
        self._load(self.weights_files)
        self.requires_grad_(False)
        self.eval()

    @property
    def label(self) -> str:
        """Name for reports: ``lpips-vgg`` or ``lpips-alex``."""
        return f"lpips-{self.net}"

    def _load(self, paths: list[Path]) -> None:
        state: dict[str, Tensor] = {}
        for p in paths:
            if not p.is_file():
                raise SpgdError(f"LPIPS ({self.net}): weights file {p} not found. {LPIPS_WEIGHTS_HELP}")
            try:
                sd = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
                raise SpgdError(
                    f"LPIPS ({self.net}): cannot read {p} as a torch weights file ({type(e).__name__}: {e})"
                ) from None
            if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
                sd = sd["state_dict"]
            if not isinstance(sd, Mapping):
                raise SpgdError(f"LPIPS ({self.net}): {p} does not hold a state_dict (got {type(sd).__name__})")
            state.update({str(k).removeprefix("module."): v for k, v in sd.items() if isinstance(v, Tensor)})

        slice_of = _slice_index(self.net)
        mapped: dict[str, Tensor] = {}
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] == "features" and len(parts) == 3:
                mapped[key] = value
            elif parts[0] == "net" and len(parts) == 4 and parts[1].startswith("slice"):
                idx = int(parts[2])
                if slice_of.get(idx) == int(parts[1][5:]):
                    mapped[f"features.{idx}.{parts[3]}"] = value
            elif len(parts) == 4 and parts[0].startswith("lin") and parts[0][3:].isdigit() and parts[1:3] == [
                "model",
                "1",
            ]:
                mapped[f"lins.{parts[0][3:]}.{parts[3]}"] = value
            elif len(parts) == 5 and parts[0] == "lins" and parts[2:4] == ["model", "1"]:
                mapped[f"lins.{parts[1]}.{parts[4]}"] = value

        own = {k: v for k, v in self.state_dict().items() if k not in ("shift", "scale")}
        for k, v in own.items():
            if k in mapped and mapped[k].shape != v.shape:
                raise SpgdError(
                    f"LPIPS ({self.net}): {k} has shape {tuple(mapped[k].shape)} in the weights file, "
                    f"expected {tuple(v.shape)}; is this a file for the other network ('vgg' vs 'alex')?"
                )
        missing = [
            f"lin{k.split('.')[1]}.model.1.weight" if k.startswith("lins.") else k for k in own if k not in mapped
        ]
        if missing:
            shown = ", ".join(missing[:6]) + (f", ... ({len(missing)} in all)" if len(missing) > 6 else "")
            names = ", ".join(str(p) for p in paths)
            raise SpgdError(f"LPIPS ({self.net}): {names} lacks {shown}. {LPIPS_WEIGHTS_HELP}")
        for i in range(len(self.lins)):
            if (mapped[f"lins.{i}.weight"] < 0).any():
                raise SpgdError(
                    f"LPIPS ({self.net}): linear layer lin{i} has negative weights; LPIPS lin weights are "
                    "non-negative, so this is not an LPIPS weights file"
                )
        self.load_state_dict({k: mapped[k].float() for k in own} | {"shift": self.shift, "scale": self.scale})

    def _features(self, x: Tensor) -> list[Tensor]:
        h = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self._taps:
                out.append(h)
            if i == self._taps[-1]:
                break
        return out

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise SpgdError(f"LPIPS: expected RGB images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if x.shape != ref.shape:
            raise SpgdError(f"LPIPS: image and reference shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}")
        dtype = self.shift.dtype
        x, ref = x.to(dtype), ref.to(dtype)
        if self.normalize:
            x, ref = 2 * x - 1, 2 * ref - 1
        total = torch.zeros(x.shape[0], dtype=dtype, device=x.device)
        for lin, fx, fr in zip(self.lins, self._features(x), self._features(ref)):
            diff = (_normalize_channels(fx) - _normalize_channels(fr)) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total

    def extra_repr(self) -> str:
        return f"net={self.net!r}, normalize={self.normalize}"


def lpips_or_reason(
    net: Literal["vgg", "alex"] = "vgg",
    weights: Union[str, Path, Sequence[Union[str, Path]], None] = None,
    device: Union[str, torch.device, None] = None,
    normalize: bool = False,
) -> tuple[LPIPS | None, str]:
    """An :class:`LPIPS` module, or None and the sentence a report prints instead of LPIPS numbers.

    Returns ``(module, "LPIPS (vgg) from FILE")`` when the weights load, ``(None, "LPIPS not computed: no
    weights file given (--lpips-weights)")`` when ``weights`` is None, and ``(None, "LPIPS not computed:
    <why>")`` when the file is missing or wrong. An unknown ``net`` still raises SpgdError (a typo, not a
    missing file).
    """
    if net not in _NETS:
        raise SpgdError(f"LPIPS: unknown network {net!r}; choose 'vgg' or 'alex'")
    if weights is None or (not isinstance(weights, (str, Path)) and len(weights) == 0):
        return None, f"LPIPS ({net}) not computed: no weights file given (--lpips-weights)"
    try:
        module = LPIPS(net, weights, normalize=normalize)
    except SpgdError as e:
        return None, f"LPIPS ({net}) not computed: {e}"
    if device is not None:
        module = module.to(device)
    files = ", ".join(str(p) for p in module.weights_files)
    return module, f"LPIPS ({net}) from {files}"

