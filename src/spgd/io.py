"""Image files in and out: loading with conversion notes, atomic 8-bit saving, folders and comparison grids.

Tensors are images in [-1, 1], shape (B, C, H, W) or (C, H, W); files are 8-bit (16-bit greyscale is read
at full precision). Problems with a file raise :class:`spgd.errors.SpgdError` with a message that names the
file, so a caller can skip it with a warning.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError
from torch import Tensor

from spgd.errors import SpgdError

__all__ = [
    "IMAGE_EXTENSIONS",
    "load_image",
    "save_image",
    "list_images",
    "make_grid",
    "heatmap",
    "to_unit",
    "from_unit",
    "to_uint8",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

Size = Union[int, tuple[int, int]]


def torch_load_reason(e: BaseException, path: Union[str, os.PathLike, None] = None) -> str:
    """Why torch.load(weights_only=True) refused a file, in a few words (torch's own messages run to a page):
    from the file's first bytes where `path` is given (torch.save writes a zip archive, or a pickle in the
    legacy format), else from the error."""
    head = b""
    if path is not None:
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError:
            head = b""
        if not head:
            return "it is empty"
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            return "it is not a file written by torch.save (neither a zip archive nor a pickle)"
    text = str(e)
    if "Unsupported global" in text or "GLOBAL" in text or "Unsupported operand" in text:
        return "it holds Python objects that a weights-only load refuses (not plain tensors and containers)"
    if "central directory" in text or "zip archive" in text or isinstance(e, EOFError) or "truncated" in text:
        return "it is truncated or damaged"
    return "it is not a file written by torch.save, or it is damaged"


def load_torch_file(path: Union[str, os.PathLike], what: str = "a torch file") -> object:
    """torch.load(weights_only=True) on the CPU; an unreadable file is one SpgdError naming it, `what` and why."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SpgdError(f"{what} not found: {path}") from None
    except Exception as e:  # noqa: BLE001 - any failure means an unusable file
        raise SpgdError(f"cannot read {path} as {what}: {torch_load_reason(e, path)}") from None


NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: Union[str, os.PathLike], what: str = "an array") -> np.ndarray:
    """A numeric array from a .npy file (never unpickled); one SpgdError naming the file and what is wrong
    otherwise: not a NumPy file, an array of Python objects, or a damaged file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except FileNotFoundError:
        raise SpgdError(f"{what} file not found: {path}") from None
    except OSError as e:
        raise SpgdError(f"cannot read {what} file {path}: {e.strerror or e}") from None
    if head != NPY_MAGIC:
        raise SpgdError(
            f"{what} file {path} is not a NumPy .npy file (it does not start with the .npy signature); "
            "write one with numpy.save(path, array)"
        )
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "bject arrays" in str(e) or "pickled" in str(e):
            raise SpgdError(
                f"{what} file {path} holds Python objects (dtype object), not numbers; save a float array, "
                "e.g. numpy.save(path, array.astype(numpy.float32))"
            ) from None
        raise SpgdError(f"cannot read {what} file {path}: it is truncated or damaged ({e})") from None
    except (OSError, EOFError) as e:
        raise SpgdError(f"cannot read {what} file {path}: it is truncated or damaged ({e})") from None
    return numeric_array(a, f"{what} file {path}")


def numeric_array(a: Any, what: str) -> np.ndarray:
    """`a` as a NumPy array of real numbers (bool, integer or float); an SpgdError naming `what` otherwise."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        kind = {"O": "Python objects (dtype object)", "c": "complex numbers", "U": "text", "S": "bytes"}.get(
            a.dtype.kind, f"dtype {a.dtype}")
        raise SpgdError(f"{what} holds {kind}, not real numbers; give a float array")
    return a


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (no clamping)."""
    return (x + 1.0) / 2.0


def from_unit(u: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1] (no clamping)."""
    return u * 2.0 - 1.0


def _to_array(img: Image.Image, path: Path, notes: list[str]) -> np.ndarray:
    """The image as float32 (H, W, 3) in [0, 1], converting the mode with a note where it changes."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float64)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            notes.append("32-bit integer image with values outside [0, 65535]: clipped")
            a = np.clip(a, 0, 65535)
        notes.append("16-bit greyscale read at full precision (scaled by 1/65535) and replicated to 3 channels")
        return np.repeat((a / 65535.0)[..., None], 3, axis=2).astype(np.float32)
    if mode == "F":
        a = np.asarray(img).astype(np.float32)
        notes.append("floating-point greyscale taken as [0, 1] values (clipped) and replicated to 3 channels")
        return np.repeat(np.clip(a, 0.0, 1.0)[..., None], 3, axis=2)
    if mode == "P":
        has_alpha = "transparency" in img.info or (img.palette is not None and "A" in img.palette.mode)
        img = img.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette image converted to RGB" + (" (transparency dropped)" if has_alpha else ""))
        mode = img.mode
    if mode in ("1", "L", "LA", "La"):
        if mode in ("LA", "La"):
            notes.append("alpha channel dropped")
        notes.append("greyscale replicated to 3 channels")
        img = img.convert("L").convert("RGB")
    elif mode in ("RGBA", "RGBa", "RGBX"):
        if mode != "RGBX":
            notes.append("alpha channel dropped")
        img = img.convert("RGB")
    elif mode != "RGB":
        notes.append(f"{mode} image converted to RGB")
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as e:
            raise SpgdError(f"cannot convert image {path} from mode {mode} to RGB: {e}") from None
    return np.asarray(img, dtype=np.uint8).astype(np.float32) / 255.0


def _parse_size(size: Size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise SpgdError(f"image size must be positive, got {size}")
    return int(h), int(w)


def _center_crop_resize(u: Tensor, h: int, w: int) -> tuple[Tensor, str]:
    """Center-crop (1,3,H,W) to the aspect ratio h:w, then resize (bicubic, antialiased) to (h, w)."""
    H, W = u.shape[-2:]
    if H * w > W * h:  # too tall
        ch, cw = max(1, round(W * h / w)), W
    else:
        ch, cw = H, max(1, round(H * w / h))
    top, left = (H - ch) // 2, (W - cw) // 2
    u = u[..., top : top + ch, left : left + cw]
    note = f"center-cropped {W}x{H} to {cw}x{ch}" if (ch, cw) != (H, W) else ""
    if (ch, cw) != (h, w):
        u = F.interpolate(u, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        note = (note + " and " if note else "") + f"resized to {w}x{h} (bicubic)"
    return u, note


def to_channels(u: Tensor, channels: int, path: Union[str, Path], notes: list[str]) -> Tensor:
    """(1, 3, H, W) image -> (1, channels, H, W): 3 keeps it; 1 keeps one channel of a grey image (all three
    channels equal, as greyscale files are read) and refuses a colour one, which a grey prior cannot model."""
    if channels == 3:
        return u
    if channels != 1:
        raise SpgdError(f"images can be read with 1 (grayscale) or 3 (RGB) channels, not {channels}")
    if not (torch.equal(u[:, 0], u[:, 1]) and torch.equal(u[:, 0], u[:, 2])):
        raise SpgdError(
            f"{path} is a colour image, but the prior models 1-channel (grayscale) images: convert the image to "
            "grayscale first (e.g. PIL: Image.open(f).convert('L').save(...)) or use an RGB prior"
        )
    replicated = [n for n in notes if "replicated to 3 channels" in n]
    for n in replicated:
        notes[notes.index(n)] = n.replace("replicated to 3 channels", "read as 1 channel")
    if not replicated:
        notes.append("RGB file with three equal channels read as 1 grayscale channel")
    return u[:, :1].contiguous()


def load_image(
    path: Union[str, Path], size: Optional[Size] = None, resize: bool = False, channels: int = 3
) -> tuple[Tensor, list[str]]:
    """Read an image file as a (1, channels, H, W) float32 tensor in [-1, 1], with notes on every conversion.

    PNG, JPEG, BMP, TIFF, WebP (anything Pillow reads). The EXIF orientation is applied; greyscale is
    replicated to 3 channels, alpha is dropped (not composited), palettes are expanded, 16-bit greyscale is
    read at full precision; only the first frame of a multi-frame file is used. With ``channels=1``
    (grayscale priors) a greyscale file is read as one channel and a colour file is refused. Each such change
    adds a sentence to ``notes``.

    Args:
        path: the image file.
        size: the (H, W) (or one side, for squares) the caller needs, or None to keep the file's size.
        resize: if the image is not ``size``, center-crop it to the target aspect ratio and resize it
            (bicubic, antialiased); without it a different size is an error.

    Raises:
        SpgdError: missing, unreadable or non-image file, or a size mismatch without ``resize``.
    """
    path = Path(path)
    if not path.exists():
        raise SpgdError(f"image file {path} does not exist")
    if not path.is_file():
        raise SpgdError(f"{path} is not a file")
    notes: list[str] = []
    try:
        with Image.open(path) as img:
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                notes.append(f"file has {n_frames} frames; the first is used")
            raw_modes = [str(t[3] if isinstance(t, tuple) else getattr(t, "args", "")) for t in (img.tile or [])]
            if img.mode in ("RGB", "RGBA") and any(";16" in m for m in raw_modes):
                # Pillow decodes 16-bit colour PNG/TIFF to 8 bits per channel: say so, precision is lost
                notes.append("16-bit colour image read at 8-bit precision (the low byte of each value is dropped)")
            img.load()
            if img.getexif().get(0x0112, 1) not in (0, 1):  # EXIF Orientation tag
                img = ImageOps.exif_transpose(img)
                notes.append("rotated/flipped according to its EXIF orientation")
            arr = _to_array(img, path, notes)
    except SpgdError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise SpgdError(f"cannot read {path} as an image ({type(e).__name__}: {e})") from None

    u = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0).contiguous()
    u = to_channels(u, channels, path, notes)
    if size is not None:
        h, w = _parse_size(size)
        H, W = u.shape[-2:]
        if (H, W) != (h, w):
            if not resize:
                raise SpgdError(
                    f"image {path} is {W}x{H} (width x height); the prior needs {w}x{h}: pass resize=True "
                    "to center-crop and resize it"
                )
            u, note = _center_crop_resize(u, h, w)
            notes.append(note)
    return from_unit(u).to(torch.float32), notes


def _unit_chw(x: Tensor, what: str) -> Tensor:
    """One image, (C, H, W), (1, C, H, W) or (H, W) in [-1, 1] with C = 1 or 3, as (C, H, W) float32 on the
    CPU in [0, 1] (NaN -> 0, clamped); an SpgdError naming `what` for a batch or another shape."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise SpgdError(f"{what} must be one image, got a batch of {x.shape[0]} (shape {tuple(x.shape)})")
        x = x[0]
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise SpgdError(f"{what} must have shape (C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    return torch.nan_to_num(to_unit(x.detach().to("cpu", torch.float32)), nan=0.0).clamp(0.0, 1.0)


def _to_uint8(x: Tensor) -> np.ndarray:
    """(C,H,W) or (1,C,H,W) in [-1,1] -> (H,W) or (H,W,3) uint8, clamped and rounded."""
    u = _unit_chw(x, "an image to save")
    a = torch.round(u * 255.0).to(torch.uint8).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


def to_uint8(x: Tensor) -> np.ndarray:
    """An image (C, H, W) or (1, C, H, W) in [-1, 1] as the 8-bit array save_image writes: (H, W, 3), or (H, W)
    for one channel.

    >>> to_uint8(torch.zeros(3, 2, 2)).shape, int(to_uint8(torch.ones(1, 2, 2))[0, 0])
    ((2, 2, 3), 255)
    """
    return _to_uint8(x)


def _umask() -> int:
    """The process's umask (read by setting and restoring it; there is no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Union[str, Path], write: Callable[[BinaryIO], None]) -> Path:
    """Write a file atomically: `write(f)` fills a temporary file in the same folder, which then replaces
    `path` (os.replace), so a reader never sees a half-written file. The folder is created if needed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _named(e, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets the mode open() would give
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # ENOSPC, EIO, ...: say which file could not be written
            raise _named(e, path) from None
        raise
    return path


def _named(e: OSError, path: Path) -> OSError:
    """The OSError `e` as one naming the file `path` (a full disk's errno 28 otherwise names none)."""
    if e.filename is not None:
        return e
    return OSError(e.errno, e.strerror or str(e), str(path))


def atomic_torch_save(path: Union[str, Path], obj: Any) -> Path:
    """torch.save(obj) to `path` atomically (spgd.io.atomic_write). Serialised in memory first: torch.save
    straight to a full disk fails with a message that names neither the disk nor the file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()))


def save_image(x: Tensor, path: Union[str, Path]) -> Path:
    """Write an image in [-1, 1], (C, H, W) or (1, C, H, W), C = 1 or 3, as an 8-bit PNG.

    Values are clamped to [-1, 1] (NaN -> black) and rounded. The file appears atomically: it is written to
    a temporary file in the same folder and renamed, so an interrupt never leaves a half-written image.
    The folder is created if needed. Returns the path.
    """
    path = Path(path)
    a = _to_uint8(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    return atomic_write(path, lambda f: Image.fromarray(a).save(f, format=fmt))


def list_images(folder: Union[str, Path]) -> list[Path]:
    """The image files directly in ``folder`` (by extension, case-insensitive, hidden files skipped), sorted.

    Raises:
        SpgdError: the folder is missing, is not a folder, or holds no image files.
    """
    folder = Path(folder)
    if not folder.exists():
        raise SpgdError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise SpgdError(f"{folder} is not a folder (expected a folder of images)")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise SpgdError(
            f"no image files in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def heatmap(values: Tensor, vmax: float, cmap: str = "magma") -> Tensor:
    """A non-negative map (H, W) (e.g. a per-pixel standard deviation) as a colour image (3, H, W) in [-1, 1]:
    0 is the colour map's dark end and ``vmax`` (and above) its bright end, the same scale for every map drawn
    with the same ``vmax`` so that maps can be compared."""
    if values.dim() != 2:
        raise SpgdError(f"heatmap takes an (H, W) map, got shape {tuple(values.shape)}")
    if not vmax > 0:
        raise SpgdError(f"heatmap needs vmax > 0, got {vmax}")
    from matplotlib import colormaps  # lazily: only pictures need it

    t = (torch.nan_to_num(values.detach().to("cpu", torch.float64), nan=0.0) / vmax).clamp(0, 1).numpy()
    rgb = torch.from_numpy(colormaps[cmap](t)[..., :3]).permute(2, 0, 1).to(torch.float32)
    return from_unit(rgb)


def _grid_cell(x: Tensor, h: int, w: int) -> Tensor:
    """One image for the grid: (3, h, w) in [0, 1]; grey channels replicated, resized to the cell."""
    u = _unit_chw(x, "a grid cell")
    if u.shape[0] == 1:
        u = u.expand(3, -1, -1)
    H, W = u.shape[-2:]
    if (H, W) != (h, w):
        if H <= h and W <= w:  # small measurements (SR): show the pixels
            u = F.interpolate(u[None], size=(h, w), mode="nearest")[0]
        else:  # larger ones (phase-retrieval amplitudes): shrink smoothly
            u = F.interpolate(u[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
    return u.clamp(0, 1)


def make_grid(
    rows: Sequence[Sequence[Optional[Tensor]]],
    labels: Optional[Sequence[str]] = None,
    pad: int = 2,
    cell_size: Optional[Size] = None,
    background: int = 255,
) -> Image.Image:
    """A comparison grid (e.g. ground truth | measurement | restorations), one row per image, as a PIL image.

    Each cell is an image in [-1, 1], (C, H, W) or (1, C, H, W) with C = 1 (grey, e.g. a mask) or 3; None
    leaves a blank cell, and short rows are padded with blanks. All cells get one size: ``cell_size``, or
    else the size of the first image of the first row (the ground truth). Smaller images (a 64x64
    super-resolution measurement) are upsampled with nearest neighbours so their pixels stay visible;
    larger ones (a 384x384 phase-retrieval amplitude) are shrunk with antialiasing. Measurements outside
    [-1, 1] are clamped; rescale them first if that hides them.

    Args:
        rows: the cells, row by row.
        labels: optional column titles drawn above the columns with Pillow's default font.
        pad: pixels between cells and around the grid.
        cell_size: (H, W) of every cell.
        background: grey level (0-255) of the padding.
    """
    rows = [list(r) for r in rows]
    if not rows or not any(c is not None for r in rows for c in r):
        raise SpgdError("make_grid needs at least one image")
    n_cols = max(len(r) for r in rows)
    if labels is not None and len(labels) > n_cols:
        raise SpgdError(f"make_grid: {len(labels)} labels for {n_cols} columns")
    if cell_size is not None:
        h, w = _parse_size(cell_size)
    else:
        first = next(c for r in rows for c in r if c is not None)
        h, w = int(first.shape[-2]), int(first.shape[-1])

    font = ImageFont.load_default()
    label_h = 0
    if labels:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        label_h = max(probe.textbbox((0, 0), s or " ", font=font)[3] for s in labels) + pad + 2

    width = n_cols * w + (n_cols + 1) * pad
    height = label_h + len(rows) * h + (len(rows) + 1) * pad
    canvas = Image.new("RGB", (width, height), (background,) * 3)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            if cell is None:
                continue
            u = _grid_cell(cell, h, w)
            a = torch.round(u * 255).to(torch.uint8).permute(1, 2, 0).numpy()
            canvas.paste(Image.fromarray(a), (pad + j * (w + pad), label_h + pad + i * (h + pad)))
    if labels:
        _draw_labels(canvas, labels, font, w, pad, background)
    return canvas


def _draw_labels(canvas: Image.Image, labels: Sequence[str], font, w: int, pad: int, background: int) -> None:
    """Column titles centred above the columns (of width `w`), black on a light background, else white."""
    draw = ImageDraw.Draw(canvas)
    fg = (0, 0, 0) if background >= 128 else (255, 255, 255)
    for j, text in enumerate(labels):
        if not text:
            continue
        tw = draw.textbbox((0, 0), text, font=font)[2]
        x0 = pad + j * (w + pad) + max(0, (w - tw) // 2)
        draw.text((x0, pad), text, fill=fg, font=font)
