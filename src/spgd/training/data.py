"""The training data of `spgd.training.train_prior`: a folder's images (grayscale for a 1-channel network), the
held-out split, and random crops.

Data: random crops of every image, each taken at a random scale in [0.5, 1] (a larger window resized down) and
flipped left-right half the time. The held-out images (whole images, or a band of each image when there are
few) are never trained on; the report (spgd.training.report) measures on crops of them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SpgdError
from ..io import list_images, load_image

__all__ = ["TrainingData", "load_data", "random_crops"]

MIN_HOLDOUT_IMAGES = 5  # below this many images, held-out crops come from a band of each image instead


@dataclass
class TrainingData:
    """The training and held-out images, the record of the split, and every file name read."""

    train: list[Tensor]
    held_out: list[Tensor]
    split: dict[str, Any]
    files: list[str]



def load_data(images_dir: str | os.PathLike, image_channels: Optional[int], config: dict[str, Any],
               holdout_fraction: float, crop: int, seed: int) -> tuple[TrainingData, int]:
    """The folder's images (grayscale for a 1-channel network, whose channels it sets in `config`), split into
    training and held-out images; returns them and the number of image channels."""
    images = _load_folder(images_dir)
    channels = _image_channels(images, image_channels, config)
    config["in_channels"] = channels
    if channels == 1:
        images = [(name, _to_gray(x, name)) for name, x in images]
    split_gen = torch.Generator().manual_seed(seed + 1)
    train, held_out, split = _split(images, holdout_fraction, crop, split_gen)
    return TrainingData(train=train, held_out=held_out, split=split, files=[n for n, _ in images]), channels


def _load_folder(images_dir: str | os.PathLike) -> list[tuple[str, Tensor]]:
    """(file name, (3, H, W) image in [-1, 1]) for every readable image of the folder; others skipped."""
    images = []
    for path in list_images(images_dir):
        try:
            x, _ = load_image(path)
        except SpgdError as e:
            warnings.warn(f"skipping {path.name}: {e}", stacklevel=4)
            continue
        if min(x.shape[-2:]) < 8:
            warnings.warn(f"skipping {path.name}: {x.shape[-1]}x{x.shape[-2]} is too small", stacklevel=4)
            continue
        images.append((path.name, x[0]))
    if not images:
        raise SpgdError(f"none of the images in {images_dir} could be read")
    return images


def _is_gray(x: Tensor) -> bool:
    return x.shape[0] == 1 or (torch.equal(x[0], x[1]) and torch.equal(x[0], x[2]))


def _image_channels(
    images: list[tuple[str, Tensor]], requested: Optional[int], config: Mapping[str, Any]
) -> int:
    """1 or 3: `requested`, else the config's `in_channels` (an init file's), else 1 when every image is grey."""
    if requested is None:
        requested = config.get("in_channels")
    if requested is None:
        return 1 if all(_is_gray(x) for _, x in images) else 3
    if requested not in (1, 3):
        raise SpgdError(f"image channels must be 1 (grayscale) or 3 (RGB), got {requested}")
    if config.get("in_channels", requested) != requested:
        raise SpgdError(f"image_channels={requested} contradicts the network's in_channels {config['in_channels']}")
    return int(requested)


def _to_gray(x: Tensor, name: str) -> Tensor:
    """(3, H, W) -> (1, H, W): a grey image's one channel, or a colour image's luma (ITU-R BT.601), with a warning."""
    if _is_gray(x):
        return x[:1]
    warnings.warn(f"{name} is a colour image: converted to grayscale (luma 0.299 R + 0.587 G + 0.114 B)", stacklevel=3)
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]


def _split(
    images: list[tuple[str, Tensor]], holdout_fraction: float, crop: int, generator: torch.Generator
) -> tuple[list[Tensor], list[Tensor], dict[str, Any]]:
    """Training images, held-out images, and a record of the split.

    With at least MIN_HOLDOUT_IMAGES images, round(holdout_fraction * n) whole images (at least one, chosen at
    random) are held out. With fewer, the bottom band of `crop` rows of each image tall enough is held out.
    With holdout_fraction 0, nothing is held out and the report is measured on training images (in-sample).
    """
    names = [n for n, _ in images]
    if holdout_fraction == 0:
        train = [x for _, x in images]
        return train, train, {"kind": "none (report is in-sample)", "train": names, "held_out": []}
    n = len(images)
    if n >= MIN_HOLDOUT_IMAGES:
        k = min(n - 1, max(1, round(holdout_fraction * n)))
        held = set(torch.randperm(n, generator=generator)[:k].tolist())
        return (
            [x for i, (_, x) in enumerate(images) if i not in held],
            [x for i, (_, x) in enumerate(images) if i in held],
            {
                "kind": "whole images",
                "train": [names[i] for i in range(n) if i not in held],
                "held_out": [names[i] for i in sorted(held)],
            },
        )
    train, held = [], []
    for _, x in images:
        h = x.shape[-2]
        if h >= 2 * crop:
            train.append(x[:, : h - crop])
            held.append(x[:, h - crop :])
        else:
            train.append(x)
    if not held:
        return train, train, {"kind": "none: images too small to split (report is in-sample)", "train": names,
                              "held_out": []}
    return train, held, {"kind": f"bottom {crop} rows of each image", "train": names, "held_out": names}


def random_crops(
    images: Sequence[Tensor],
    n: int,
    crop: int,
    generator: torch.Generator,
    min_scale: float = 0.5,
    flip: bool = True,
) -> Tensor:
    """n random (C, crop, crop) crops in [-1, 1] from randomly chosen images, shape (n, C, crop, crop).

    Each crop is a window of side crop / s, s ~ U[min_scale, 1] (limited by the image), resized to crop x crop
    (bicubic, antialiased), and flipped left-right with probability 1/2 when `flip`.
    """
    out = torch.empty(n, images[0].shape[0], crop, crop)
    picks = torch.randint(len(images), (n,), generator=generator).tolist()
    u = torch.rand(n, 4, generator=generator).tolist()
    for i, (k, (us, uy, ux, uf)) in enumerate(zip(picks, u)):
        img = images[k]
        h, w = img.shape[-2:]
        side = min(h, w)
        window = max(1, min(side, round(crop / (min_scale + (1 - min_scale) * us))))
        if side < crop:  # a small image is enlarged whole
            window = side
        top = int(uy * (h - window + 1))
        left = int(ux * (w - window + 1))
        patch = img[:, top : top + window, left : left + window]
        if window != crop:
            patch = F.interpolate(patch[None], size=(crop, crop), mode="bicubic", antialias=window > crop,
                                  align_corners=False)[0].clamp(-1, 1)
        if flip and uf < 0.5:
            patch = patch.flip(-1)
        out[i] = patch
    return out
