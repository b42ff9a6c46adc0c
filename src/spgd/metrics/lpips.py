"""LPIPS as each code base computes it: the ``lpips`` package (AlexNet, VGG) and ``piq.LPIPS`` (VGG).

LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018,
arXiv 1801.03924, v0.1) is

    d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (phi_l(x) / |phi_l(x)| - phi_l(y) / |phi_l(y)|)_c^2

with phi_l backbone activations (normalised over channels, eps 1e-10) and w_l learned non-negative weights.
Papers print numbers of three different implementations, which differ by more than the gaps they report:

========== ================== ============================================ ==========================
variant    label              computed as                                   reproduces
========== ================== ============================================ ==========================
``alex``   ``lpips-alex``     ``lpips.LPIPS(net='alex')``: scaling layer,   DPS-family tables (the
                              AlexNet relu1..5, max pooling                 lpips package default)
``vgg``    ``lpips-vgg``      ``lpips.LPIPS(net='vgg')``: scaling layer,    DPS's evaluation script
                              VGG16 relu1_2..relu5_3, max pooling
``piq-vgg`` ``piq-lpips-vgg`` ``piq.LPIPS(replace_pooling=True)``: ImageNet the SPGD and DAPS code
                              mean/std, VGG16 with *average* pooling, piq's
                              own weights file ``lpips_weights.pt``
========== ================== ============================================ ==========================

The lpips package maps [-1, 1] images through its scaling layer ((x - shift) / scale, shift = (-.030, -.088,
-.188), scale = (.458, .448, .450)); piq takes [0, 1] images and uses (x - mean) / std with the ImageNet
mean (.485, .456, .406) and std (.229, .224, .225), and it replaces every max-pooling of VGG16 by a 2x2
average pooling (``replace_pooling=True``), so its deeper features, and its numbers, are different.

Nothing is downloaded: the weights are the files each code base itself downloads, which a user already has
(see :func:`weights_help`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Union

import torch
from torch import Tensor, nn

from spgd.errors import SpgdError
from spgd.io import torch_load_reason

__all__ = [
    "BACKBONES", "LPIPS", "LPIPS_VARIANTS", "LPIPS_WEIGHTS_HELP", "Backbone", "build_features", "lpips_or_reason",
    "slice_numbers", "weights_help",
]

WeightsArg = Union[str, Path, Sequence[Union[str, Path]], None]

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



class Backbone(NamedTuple):
    """A torchvision feature stack: its layer list, the indices LPIPS reads, and their channel counts."""

    layers: list[tuple]
    taps: tuple[int, ...]
    channels: tuple[int, ...]


BACKBONES = {
    "vgg": Backbone(_VGG16, _VGG16_TAPS, _VGG16_CHANNELS),
    "alex": Backbone(_ALEX, _ALEX_TAPS, _ALEX_CHANNELS),
}

_LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # lpips.pretrained_networks ScalingLayer, for [-1, 1] input
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)  # piq.perceptual IMAGENET_MEAN / IMAGENET_STD, for [0, 1] input
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class _Variant:
    backbone: str  # key of BACKBONES
    label: str  # the column name in every table
    pooling: str  # "max" (lpips package) or "avg" (piq, replace_pooling=True)
    input_norm: str  # "lpips": scaling layer on [-1, 1]; "imagenet": (x01 - mean) / std
    heads: str  # "lpips": lin*.model.1.weight state_dict; "piq": a list of five (1, C, 1, 1) tensors
    backbone_file: str
    heads_file: str
    reproduces: str


LPIPS_VARIANTS: dict[str, _Variant] = {
    "alex": _Variant(
        "alex", "lpips-alex", "max", "lpips", "lpips", "alexnet-owt-7be5be79.pth (torchvision)",
        "lpips/weights/v0.1/alex.pth (inside the installed lpips package)",
        "lpips.LPIPS(net='alex'): the DPS-family tables",
    ),
    "vgg": _Variant(
        "vgg", "lpips-vgg", "max", "lpips", "lpips", "vgg16-397923af.pth (torchvision)",
        "lpips/weights/v0.1/vgg.pth (inside the installed lpips package)",
        "lpips.LPIPS(net='vgg'): DPS's evaluation script",
    ),
    "piq-vgg": _Variant(
        "vgg", "piq-lpips-vgg", "avg", "imagenet", "piq", "vgg16-397923af.pth (torchvision)",
        "lpips_weights.pt (piq's LPIPS weights, from its v0.4.0 release; torch hub keeps it in "
        "~/.cache/torch/hub/checkpoints/)",
        "piq.LPIPS(replace_pooling=True): the SPGD and DAPS code",
    ),
}


def weights_help(net: str) -> str:
    """Which files the variant ``net`` loads, and where a user finds them."""
    v = LPIPS_VARIANTS[net]
    return (
        f"LPIPS '{net}' ({v.reproduces}) loads two files, given together: the backbone {v.backbone_file}, "
        "which torch hub keeps in ~/.cache/torch/hub/checkpoints/ (keys features.N.weight), and the heads "
        + v.heads_file
        + (" (a list of five (1, C, 1, 1) tensors)" if v.heads == "piq" else " (keys lin0.model.1.weight ...)")
        + "; a full lpips.LPIPS state_dict (net.sliceK.N.weight, lin*.model.1.weight) also works for "
        "'vgg' and 'alex'"
    )


LPIPS_WEIGHTS_HELP = "; ".join(weights_help(n) for n in LPIPS_VARIANTS)


def _check_net(net: str) -> _Variant:
    if net not in LPIPS_VARIANTS:
        raise SpgdError(f"LPIPS: unknown variant {net!r}; choose one of {', '.join(map(repr, LPIPS_VARIANTS))}")
    return LPIPS_VARIANTS[net]


def build_features(spec: list[tuple], pooling: str = "max") -> nn.Sequential:
    """A torchvision-compatible `features` stack (parameter names features.N.weight / .bias).

    ``pooling="avg"`` turns VGG's 2x2 max-poolings into 2x2 average poolings, as piq's ``replace_pooling``.
    """
    layers: list[nn.Module] = []
    for item in spec:
        if item[0] == "conv":
            cin, cout = item[1], item[2]
            k, s, p = item[3:] if len(item) > 3 else (3, 1, 1)
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
        elif item[0] == "relu":
            layers.append(nn.ReLU())
        elif item[0] == "pool":
            layers.append(nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2))
        else:  # AlexNet's overlapping pooling
            layers.append(nn.AvgPool2d(3, 2) if pooling == "avg" else nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers)


def slice_numbers(net: str) -> dict[int, int]:
    """torchvision feature index -> lpips slice number (1-based), from the tap positions."""
    taps = BACKBONES[net].taps
    out, start = {}, 0
    for k, end in enumerate(taps, start=1):
        for i in range(start, end + 1):
            out[i] = k
        start = end + 1
    return out


def _normalize_channels(t: Tensor, eps: float = 1e-10) -> Tensor:
    """Divide each feature vector (over channels) by its Euclidean norm (lpips.normalize_tensor, piq EPS)."""
    return t / (torch.sqrt((t**2).sum(dim=1, keepdim=True)) + eps)


def _read(paths: list[Path], net: str) -> tuple[dict[str, Tensor], list[Tensor] | None]:
    """Merge the state_dicts of ``paths``; a file holding a list of tensors is piq's heads file."""
    state: dict[str, Tensor] = {}
    heads: list[Tensor] | None = None
    for p in paths:
        if not p.is_file():
            raise SpgdError(f"LPIPS ({net}): weights file {p} not found. {weights_help(net)}")
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
            raise SpgdError(
                f"LPIPS ({net}): cannot read {p} as a torch weights file: {torch_load_reason(e, p)}. {weights_help(net)}"
            ) from None
        if isinstance(sd, (list, tuple)) and sd and all(isinstance(t, Tensor) for t in sd):
            heads = [t for t in sd]
            continue
        if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
            sd = sd["state_dict"]
        if not isinstance(sd, Mapping):
            raise SpgdError(
                f"LPIPS ({net}): {p} holds neither a state_dict nor a list of tensors (got {type(sd).__name__}). "
                + weights_help(net)
            )
        state.update({str(k).removeprefix("module."): v for k, v in sd.items() if isinstance(v, Tensor)})
    return state, heads


def _map_names(state: dict[str, Tensor], slice_of: dict[int, int]) -> tuple[dict[str, Tensor], bool]:
    """torchvision (``features.N.*``) and lpips.LPIPS (``net.sliceK.N.*``, ``linL.model.1.*``, ``lins.L.model.1.*``)
    names -> this module's (``features.N.*``, ``lins.L.*``); and whether the lpips package's heads were there."""
    mapped: dict[str, Tensor] = {}
    has_lpips_heads = False
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and len(parts) == 3:
            mapped[key] = value
        elif parts[0] == "net" and len(parts) == 4 and parts[1].startswith("slice"):
            idx = int(parts[2])
            if slice_of.get(idx) == int(parts[1][5:]):
                mapped[f"features.{idx}.{parts[3]}"] = value
        elif len(parts) == 4 and parts[0].startswith("lin") and parts[0][3:].isdigit() and parts[1:3] == ["model", "1"]:
            mapped[f"lins.{parts[0][3:]}.{parts[3]}"] = value
            has_lpips_heads = True
        elif len(parts) == 5 and parts[0] == "lins" and parts[2:4] == ["model", "1"]:
            mapped[f"lins.{parts[1]}.{parts[4]}"] = value
            has_lpips_heads = True
    return mapped, has_lpips_heads


class LPIPS(nn.Module):
    """LPIPS of one code base (see the module docstring for the variants), from local weights only.

    Args:
        net: ``"alex"`` or ``"vgg"`` (the lpips package) or ``"piq-vgg"`` (piq, ``replace_pooling=True``).
        weights: path(s) of the weights files, merged: the torchvision backbone and the variant's heads,
            e.g. ``[vgg16-397923af.pth, lpips_weights.pt]`` for ``"piq-vgg"``. Backbone keys:
            ``features.N.weight`` (torchvision; ``classifier.*`` ignored) or ``net.sliceK.N.weight`` (an
            lpips.LPIPS state_dict). Heads: ``linL.model.1.weight`` / ``lins.L.model.1.weight`` (lpips
            package, shape (1, C_L, 1, 1)) or, for piq, a file holding a list of five tensors of C_L values.
        normalize: inputs are in [0, 1] instead of [-1, 1] (for every variant; piq's [0, 1] convention is
            applied inside).

    ``forward(x, ref)`` takes (B, 3, H, W) images and returns (B,) distances (0 for identical images).
    Parameters are frozen; the module is in eval mode. :attr:`label` names the variant in reports.
    """

    def __init__(self, net: str = "vgg", weights: WeightsArg = None, normalize: bool = False) -> None:
        super().__init__()
        variant = _check_net(net)
        if weights is None:
            raise SpgdError(f"LPIPS ({net}) needs local weights files; none was given. {weights_help(net)}")
        spec, taps, chans = BACKBONES[variant.backbone]
        self.net = net
        self.variant = variant
        self.normalize = normalize
        if variant.input_norm == "lpips":
            shift, scale = _LPIPS_SHIFT, _LPIPS_SCALE
        else:  # (x01 - mean) / std = (x - (2 mean - 1)) / (2 std) for x = 2 x01 - 1 in [-1, 1]
            shift = tuple(2 * m - 1 for m in _IMAGENET_MEAN)
            scale = tuple(2 * s for s in _IMAGENET_STD)
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1))
        self.features = build_features(spec, variant.pooling)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chans)
        self._taps = taps
        paths = [weights] if isinstance(weights, (str, Path)) else list(weights)
        self.weights_files = [Path(p) for p in paths]
        self._load(self.weights_files)
        self.requires_grad_(False)
        self.eval()

    @property
    def label(self) -> str:
        """Name for reports: ``lpips-alex``, ``lpips-vgg`` or ``piq-lpips-vgg``."""
        return self.variant.label

    def _load(self, paths: list[Path]) -> None:
        """Fill backbone and heads from the weights files; SpgdError for a file of another layout or network."""
        net, v = self.net, self.variant
        state, piq_heads = _read(paths, net)
        names = ", ".join(str(p) for p in paths)
        mapped, has_lpips_heads = _map_names(state, slice_numbers(v.backbone))
        if v.heads == "piq":
            mapped.update(self._piq_heads(piq_heads, names, has_lpips_heads))
        elif piq_heads is not None:
            raise SpgdError(
                f"LPIPS ({net}): one of {names} is a list of tensors, piq's LPIPS heads file, which "
                f"the piq-vgg variant uses; '{net}' needs the lpips package's heads. {weights_help(net)}"
            )
        own = {k: val for k, val in self.state_dict().items() if k not in ("shift", "scale")}
        self._check_mapped(mapped, own, names)
        self.load_state_dict({k: mapped[k].float() for k in own} | {"shift": self.shift, "scale": self.scale})

    def _piq_heads(self, heads: list[Tensor] | None, names: str, has_lpips_heads: bool) -> dict[str, Tensor]:
        """piq's five head tensors as this module's ``lins.L.weight`` entries, checked by count and size."""
        net = self.net
        if heads is None:
            found = " (found the lpips package's lin*.model.1.weight heads, which are for 'vgg')" if (
                has_lpips_heads) else ""
            raise SpgdError(f"LPIPS ({net}): {names} lacks piq's heads file{found}. {weights_help(net)}")
        if len(heads) != len(self.lins):
            raise SpgdError(
                f"LPIPS ({net}): piq's heads file holds {len(heads)} tensors, expected {len(self.lins)} "
                f"(one per layer relu1_2 ... relu5_3). {weights_help(net)}"
            )
        out = {}
        for i, (t, lin) in enumerate(zip(heads, self.lins)):
            if t.numel() != lin.weight.numel():
                raise SpgdError(
                    f"LPIPS ({net}): piq head {i} has {t.numel()} values, expected {lin.weight.numel()} "
                    f"(shape {tuple(lin.weight.shape)}). {weights_help(net)}"
                )
            out[f"lins.{i}.weight"] = t.reshape(lin.weight.shape)
        return out

    def _check_mapped(self, mapped: dict[str, Tensor], own: dict[str, Tensor], names: str) -> None:
        """SpgdError unless `mapped` has every tensor of `own` in its shape, with non-negative heads."""
        net = self.net
        for k, val in own.items():
            if k in mapped and mapped[k].shape != val.shape:
                raise SpgdError(
                    f"LPIPS ({net}): {k} has shape {tuple(mapped[k].shape)} in the weights file, "
                    f"expected {tuple(val.shape)}; is this a file for the other network ('vgg' vs 'alex')?"
                )
        missing = [
            f"lin{k.split('.')[1]}.model.1.weight" if k.startswith("lins.") else k for k in own if k not in mapped
        ]
        if missing:
            shown = ", ".join(missing[:6]) + (f", ... ({len(missing)} in all)" if len(missing) > 6 else "")
            raise SpgdError(f"LPIPS ({net}): {names} lacks {shown}. {weights_help(net)}")
        for i in range(len(self.lins)):
            if (mapped[f"lins.{i}.weight"] < 0).any():
                raise SpgdError(
                    f"LPIPS ({net}): linear layer lin{i} has negative weights; LPIPS lin weights are "
                    "non-negative, so this is not an LPIPS weights file"
                )

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
            total = total + lin(diff).mean(dim=(1, 2, 3))  # sum_c w_c d_c, then the mean over pixels
        return total

    def extra_repr(self) -> str:
        return f"net={self.net!r}, label={self.label!r}, normalize={self.normalize}"


def lpips_or_reason(
    net: str = "vgg",
    weights: WeightsArg = None,
    device: Union[str, torch.device, None] = None,
    normalize: bool = False,
) -> tuple[LPIPS | None, str]:
    """An :class:`LPIPS` module, or None and the sentence a report prints instead of LPIPS numbers.

    Returns ``(module, "LPIPS (vgg) from FILE")`` when the weights load, ``(None, "LPIPS not computed: no
    weights file given (--lpips-weights)")`` when ``weights`` is None, and ``(None, "LPIPS not computed:
    <why>")`` when the file is missing or wrong. An unknown ``net`` still raises SpgdError (a typo, not a
    missing file).
    """
    _check_net(net)
    if weights is None or (not isinstance(weights, (str, Path)) and len(weights) == 0):
        return None, f"LPIPS ({net}) not computed: no weights file given (--lpips-weights)"
    try:
        module = LPIPS(net, weights, normalize=normalize)
    except SpgdError as e:
        return None, f"LPIPS ({net}) not computed: {str(e).removeprefix(f'LPIPS ({net}): ')}"
    if device is not None:
        module = module.to(device)
    files = ", ".join(str(p) for p in module.weights_files)
    return module, f"LPIPS ({net}, {module.label}: {module.variant.reproduces}) from {files}"
