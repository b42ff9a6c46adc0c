"""The FID Inception-v3 (Heusel et al. 2017, arXiv 1706.08500), written here, without torchvision.

The network is the TensorFlow Inception graph ``2015-12-05`` as ported by pytorch-fid (``FIDInceptionA/C/E``:
its average poolings exclude the padding, and the last block's pool branch uses max pooling) and by
torch-fidelity; both load the weights file ``pt_inception-2015-12-05-6726825d.pth`` (keys
``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ..., ``fc.weight``), and so does
:class:`FIDInception`. The features are the 2048 values after the global average pooling ("pool3").

Input handling, one of the two code bases (their FIDs differ slightly):

- ``"pytorch-fid"``: x in [0, 1] (8-bit value / 255) resized to 299x299 by ``F.interpolate(bilinear,
  align_corners=False)``, then 2x - 1;
- ``"torch-fidelity"``: the 8-bit values v = 255 x resized to 299x299 by TensorFlow 1.x's bilinear resize
  (source = destination * in/out, no half-pixel offset), then (v - 128) / 128.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spgd.errors import SpgdError

__all__ = ["FIDInception", "FID_WEIGHTS_HELP", "RESIZE_MODES", "resize_tf1_bilinear"]

FID_WEIGHTS_HELP = (
    "FID/KID need the Inception weights file of pytorch-fid and torch-fidelity, "
    "pt_inception-2015-12-05-6726825d.pth (both download it into ~/.cache/torch/hub/checkpoints/; keys "
    "Conv2d_1a_3x3.conv.weight ... Mixed_7c.branch_pool.bn.running_var, fc.weight)"
)
RESIZE_MODES = ("pytorch-fid", "torch-fidelity")
FEATURE_DIM = 2048


class _Conv(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU: the 'BasicConv2d' of the ports."""

    def __init__(self, cin: int, cout: int, kernel: Union[int, tuple[int, int]], stride: int = 1,
                 padding: Union[int, tuple[int, int]] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: Tensor) -> Tensor:
    """3x3 average pooling, stride 1, padding excluded from the mean (the TF graph; FIDInception*)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):  # Mixed_5b/5c/5d
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class _BlockB(nn.Module):  # Mixed_6a (grid reduction)
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockC(nn.Module):  # Mixed_6b..6e (factorised 7x7)
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _BlockD(nn.Module):  # Mixed_7a (grid reduction)
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockE(nn.Module):  # Mixed_7b (average pool branch), Mixed_7c (max pool branch, as the TF graph)
    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


def resize_tf1_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize as TensorFlow 1.x ``resize_bilinear(align_corners=False)`` (torch-fidelity's choice).

    Output pixel i samples the input at s = i * n_in / n_out (no half-pixel offset), between
    floor(s) and min(floor(s) + 1, n_in - 1), with weight s - floor(s).
    """
    out = x
    for dim, n_out in ((2, size[0]), (3, size[1])):
        n_in = out.shape[dim]
        src = torch.arange(n_out, dtype=torch.float64, device=x.device) * (n_in / n_out)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        w = (src - i0.to(torch.float64)).to(out.dtype)
        shape = [1, 1, 1, 1]
        shape[dim] = n_out
        w = w.view(shape)
        a, b = out.index_select(dim, i0), out.index_select(dim, i1)
        out = a + (b - a) * w
    return out


class FIDInception(nn.Module):
    """Inception-v3 pool3 features (B, 2048) for FID and KID, from a local weights file.

    Args:
        weights: ``pt_inception-2015-12-05-6726825d.pth`` (the file pytorch-fid and torch-fidelity use).
        resize: ``"pytorch-fid"`` (default) or ``"torch-fidelity"``: whose resizing and normalisation to
            apply (see the module docstring).

    ``forward(x)`` takes RGB images (B, 3, H, W) in [0, 1] (8-bit values / 255) of any size and returns
    float32 features (B, 2048). Parameters are frozen; the module is in eval mode.
    """

    def __init__(self, weights: Union[str, Path, None], resize: str = "pytorch-fid") -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise SpgdError(f"FID: unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
        if weights is None:
            raise SpgdError(f"FID: no Inception weights file given. {FID_WEIGHTS_HELP}")
        self.resize = resize
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, "avg")
        self.Mixed_7c = _BlockE(2048, "max")
        self.fc = nn.Linear(2048, 1008)  # in the file; not used for the features
        self.weights_file = Path(weights)
        self._load(self.weights_file)
        self.requires_grad_(False)
        self.eval()

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise SpgdError(f"FID: Inception weights file {path} not found. {FID_WEIGHTS_HELP}")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
            raise SpgdError(f"FID: cannot read {path} as a torch weights file ({type(e).__name__}: {e})") from None
        if not isinstance(sd, Mapping):
            raise SpgdError(f"FID: {path} does not hold a state_dict (got {type(sd).__name__}). {FID_WEIGHTS_HELP}")
        sd = {str(k).removeprefix("module."): v for k, v in sd.items() if isinstance(v, Tensor)}
        own = {k: v for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}
        missing = [k for k in own if k not in sd]
        if missing:
            shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
            hint = " (a torchvision inception_v3 file? its keys are the same but its network is not the FID one)" if (
                "AuxLogits.fc.weight" in sd) else ""
            raise SpgdError(f"FID: {path} lacks {shown}{hint}. {FID_WEIGHTS_HELP}")
        for k, v in own.items():
            if sd[k].shape != v.shape:
                raise SpgdError(
                    f"FID: {k} has shape {tuple(sd[k].shape)} in {path}, expected {tuple(v.shape)}. {FID_WEIGHTS_HELP}"
                )
        self.load_state_dict({k: sd[k].float() for k in own}, strict=False)

    def _prepare(self, x: Tensor) -> Tensor:
        """[0, 1] images -> the network's 299x299 input in [-1, 1], as the chosen code base does."""
        if self.resize == "pytorch-fid":
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            return 2 * x - 1
        v = resize_tf1_bilinear(x * 255.0, (299, 299))
        return (v - 128.0) / 128.0

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise SpgdError(f"FID: expected RGB images of shape (B, 3, H, W), got {tuple(x.shape)}")
        x = self._prepare(x.to(self.fc.weight.dtype))
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1).float()

    def extra_repr(self) -> str:
        return f"resize={self.resize!r}, weights={str(self.weights_file)!r}"
