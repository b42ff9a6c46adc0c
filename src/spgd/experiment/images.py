"""The images a run restores: a folder's files in a fixed order with stable names, their sizes, and the sizes a
prior's network and the metrics can take (checked before any run folder exists)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image, UnidentifiedImageError

from .. import io
from ..errors import SpgdError

MIN_SIDE = 11  # the SSIM window (spgd.metrics.ssim): a smaller image cannot be scored
MAX_SIDE = 8192  # larger sides are refused up front (one 8192x8192 image is 0.8 GB per float32 copy)


@dataclass(frozen=True)
class Item:
    """One image of a run."""

    index: int  # position in the sorted folder listing: fixes the seed (spgd.experiment.seeding)
    path: Path
    name: str  # output file stem


def list_items(images_dir: Path, limit: Optional[int] = None) -> list[Item]:
    """The folder's images in sorted order with stable indices and unique output names (the stem, or
    stem_ext where two files share a stem)."""
    files = io.list_images(images_dir)
    if limit is not None:
        files = files[:limit]
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    return [
        Item(i, f, f.stem if stems[f.stem] == 1 else f"{f.stem}_{f.suffix[1:].lower()}") for i, f in enumerate(files)
    ]


def probe_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as spgd.io.load_image will see it (after EXIF rotation), without decoding it."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise SpgdError(f"cannot read {path} as an image ({type(e).__name__}: {e})") from None
    return h, w


def size_multiple(prior) -> int:
    """What every image side must be a multiple of for `prior`: 2**down-samplings of its network, else 1."""
    for obj in (prior, getattr(prior, "net", None), getattr(getattr(prior, "net", None), "_orig_mod", None)):
        n = getattr(obj, "num_downsamples", None)
        if isinstance(n, int):
            return 2**n
    return 1


def prior_image_size(prior) -> Optional[tuple[int, int]]:
    """The image size a prior requires, if it declares one (`prior.image_size`). A UNet's configured
    `image_size` is not a requirement: the network is convolutional and takes any size its down-samplings
    divide (it says so clearly otherwise), so by default images keep their own size."""
    size = getattr(prior, "image_size", None)
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_image_size(size: Sequence[int], prior, fix: str, what: str = "the images are", example: bool = True) -> None:
    """Refuse, before any run folder exists, an (H, W) the prior or the metrics cannot take, with the fix
    (`fix`: how to change the size, e.g. "pass size=N with resize=True"). Sizes are written width x height."""
    h, w = int(size[0]), int(size[1])
    if max(h, w) > MAX_SIDE:
        raise SpgdError(f"{what} {w}x{h} (width x height): sides above {MAX_SIDE} px are not supported; "
                        f"{fix} to work at a smaller size")
    if min(h, w) < MIN_SIDE:
        raise SpgdError(f"{what} {w}x{h} (width x height), too small to restore and score (SSIM needs at "
                        f"least {MIN_SIDE}x{MIN_SIDE} pixels); {fix} to work at a larger size")
    f = size_multiple(prior)
    if h % f or w % f:
        hh, ww = (max(f, round(v / f) * f) for v in (h, w))
        raise SpgdError(
            f"{what} {w}x{h} (width x height), but this prior's network needs sides divisible by {f}; "
            f"{fix}" + (f" (e.g. a {ww}x{hh} size)" if example else "")
        )


def is_asked_for(note: str) -> bool:
    """Whether a load_image note is the crop/resize a run asked for (a detail), not a format conversion (news)."""
    return note.startswith(("center-cropped", "resized"))


def selection(items: Sequence[Item]) -> list[dict]:
    """The images a run restores, as its settings.json records them: each one's index, output name, file name
    and content digest (the first 16 hex digits of its SHA-256), so that resuming can tell whether the folder
    still holds the same images."""
    return [{"index": it.index, "name": it.name, "file": it.path.name, "sha256": _digest(it.path)} for it in items]


def _digest(path: Path) -> Optional[str]:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()[:16]


def selection_differences(saved: Sequence[dict], now: Sequence[dict]) -> list[str]:
    """What differs between a run's saved selection and the images found now (empty when they are the same):
    images added, missing, changed or in another place of the sorted order.

    >>> a = [{"index": 0, "name": "a", "file": "a.png", "sha256": "1"}]
    >>> selection_differences(a, a + [{"index": 1, "name": "b", "file": "b.png", "sha256": "2"}])
    ['1 image(s) not in the run (b.png)']
    """
    def listing(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")

    old = {e["file"]: e for e in saved}
    new = {e["file"]: e for e in now}
    out = []
    added = [f for f in new if f not in old]
    missing = [f for f in old if f not in new]
    changed = [f for f in new if f in old and new[f]["sha256"] != old[f]["sha256"]]
    moved = [f for f in new if f in old and new[f]["index"] != old[f]["index"]]
    if added:
        out.append(f"{len(added)} image(s) not in the run ({listing(added)})")
    if missing:
        out.append(f"{len(missing)} image(s) of the run missing or unreadable now ({listing(missing)})")
    if changed:
        out.append(f"{len(changed)} image(s) changed since the run ({listing(changed)})")
    if moved and not (added or missing):
        out.append(f"{len(moved)} image(s) at another place of the sorted order ({listing(moved)}), so with "
                   "other seeds")
    return out
