"""The measurement stage every pipeline shares: the task's operator for a batch (preset parameters, a kernel or
mask file, the seeding rule), measuring each image with its own noise, and the files a measurement comes in
(kernels, masks, measurements) or goes out as (a viewable PNG, the measurement's own scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .. import io
from ..errors import SpgdError
from ..operators import make_operator, task_params
from ..operators.blur import load_kernel

INPAINTING = ("inpainting_box", "inpainting_random")
KERNEL_TASKS = ("gaussian_blur", "motion_blur")
# the files a kernel / mask can come in (spgd.experiment.measurement.load_kernel_file / load_mask_file)
PART_FILE_SUFFIXES = (".pt", ".npy") + io.IMAGE_EXTENSIONS


def is_image_file(path: str) -> bool:
    """Whether `path` names an image file (by its extension), as opposed to a .npy / .pt array."""
    return Path(path).suffix.lower() in io.IMAGE_EXTENSIONS

# operator parameters that a kernel / mask file replaces: setting them beside the file has no effect
REPLACED_BY_FILE = {"kernel": ("kernel_size", "std", "intensity"), "mask": ("box_size", "margin", "drop")}

PathLike = Union[str, Path]


# ----------------------------------------------------------------------------------------------------------
# files


def _torch_file_entry(path: Path, key: str) -> Any:
    """What a .pt file holds: the object itself, or its `key` entry when it is a dict (as in random_parts/)."""
    obj = io.load_torch_file(path)
    if isinstance(obj, dict):
        if key not in obj:
            raise SpgdError(f"{path} holds no {key!r} entry (keys: {', '.join(map(str, obj))})")
        obj = obj[key]
    return obj


def load_kernel_file(path: str, with_sums: bool = False):
    """A blur kernel from .npy, an image (.png, ...) or a .pt file (a tensor, or a dict with "kernel", as
    written to random_parts/), checked and normalised by the blur operator's own rules (with `with_sums`,
    also the sums before normalisation)."""
    p = Path(path)
    if not p.is_file():
        raise SpgdError(f"kernel file not found: {p}")
    if p.suffix.lower() == ".pt":
        return load_kernel(torch.as_tensor(_torch_file_entry(p, "kernel")), with_sums=with_sums)
    return load_kernel(p, with_sums=with_sums)


def load_mask_file(path: str) -> Tensor:
    """An inpainting mask (1 = kept pixel) from an image (white = kept), .npy or .pt (tensor or {"mask": ...})."""
    p = Path(path)
    if not p.is_file():
        raise SpgdError(f"mask file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".pt":
        m = torch.as_tensor(_torch_file_entry(p, "mask")).float()
    elif suffix == ".npy":
        m = torch.from_numpy(io.load_npy(p, "mask").astype(np.float32))
    else:
        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise SpgdError(f"cannot read mask file {p} as an image: {e}") from None
        m = torch.from_numpy(a)
    if m.ndim not in (2, 3, 4):
        raise SpgdError(f"a mask must be (H, W), (B, H, W) or (B, 1, H, W), got shape {tuple(m.shape)} from {p}")
    empty = (m.flatten(-2) if m.ndim == 2 else m.flatten(1)) <= 0
    if bool(empty.all(-1).any()):
        raise SpgdError(
            f"mask {p} keeps no pixel (all zero): nothing of the image is measured; white/1 marks a kept pixel"
        )
    return m


def load_measurement(path: str) -> tuple[Tensor, list[str]]:
    """A measurement file as (1, C, H, W): an image (read as [-1, 1]) or raw values from .npy / .pt; with the
    notes of its reading (format conversions, or "raw values")."""
    p = Path(path)
    if not p.is_file():
        raise SpgdError(f"measurement file not found: {p}")
    suffix = p.suffix.lower()
    if suffix in (".npy", ".pt"):
        if suffix == ".npy":
            t = torch.from_numpy(io.load_npy(p, "measurement").astype(np.float32))
        else:
            t = io.load_torch_file(p, "a measurement (a torch file)")
            if isinstance(t, dict):
                t = t.get("y", t.get("measurement"))
            if not isinstance(t, Tensor):
                raise SpgdError(f"{p} must hold a tensor (or a dict with 'y'), got {type(t).__name__}")
            if t.is_complex():
                raise SpgdError(f"measurement {p} holds complex numbers; give real values")
        return raw_measurement(t.float(), p)
    return io.load_image(p)


CHANNEL_COUNTS = (1, 3)  # the channel counts an image or a measurement of one has


def raw_measurement(t: Tensor, path: Path) -> tuple[Tensor, list[str]]:
    """A raw array (2-D, 3-D or 4-D) as the (1, C, H, W) measurement, and its notes: (H, W) is one grey channel
    repeated to 3; a 3-D array is channels-first (C, H, W) when its first side is 1 or 3, and channels-last
    (H, W, C), the layout of numpy images, when only its last side is."""
    notes = ["raw values (not rescaled)"]
    shape = tuple(t.shape)
    if t.ndim == 2:
        t = t[None, None].expand(1, 3, -1, -1)
    elif t.ndim == 3:
        first, last = shape[0] in CHANNEL_COUNTS, shape[-1] in CHANNEL_COUNTS
        if not first and last:
            t = t.permute(2, 0, 1)
            notes.append(f"read as height x width x channels {shape} (channels last), i.e. "
                         f"{shape[1]}x{shape[0]} (width x height) with {shape[2]} channel(s)")
        elif not first:
            raise SpgdError(
                f"measurement {path} has shape {shape}: a 3-D measurement is (C, H, W) or (H, W, C) with C = 1 "
                "or 3 channels"
            )
        t = t[None]
    elif t.ndim == 4 and shape[0] == 1 and shape[1] not in CHANNEL_COUNTS and shape[-1] in CHANNEL_COUNTS:
        t = t.permute(0, 3, 1, 2)
        notes.append(f"read as 1 x height x width x channels {shape} (channels last)")
    if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] not in CHANNEL_COUNTS:
        raise SpgdError(
            f"measurement {path} has shape {shape}: give (H, W), (C, H, W), (H, W, C) or (1, C, H, W) with C = 1 or "
            "3 channels"
        )
    return t.contiguous(), notes


def matched_file(folder: PathLike, image: PathLike, what: str, param: str) -> str:
    """The `what` file ("kernel", "mask") of `image` in `folder`, matched by file stem: ``photo.png`` takes
    ``folder/photo.png``, ``photo.pt``, ``photo.npy`` or another image file named ``photo``; exactly one
    of them. `param` names the folder's parameter in errors (kernel_dir, mask_dir)."""
    folder, stem = Path(folder), Path(image).stem
    if not folder.is_dir():
        raise SpgdError(f"{param}={folder} is not a folder (a folder of {what} files named like the images)")
    found = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.stem == stem and p.suffix.lower() in PART_FILE_SUFFIXES)
    if not found:
        raise SpgdError(f"{param}={folder} holds no {what} for {Path(image).name}: looked for {stem}.pt, {stem}.npy "
                        f"or an image {stem}.png, .jpg, ...")
    if len(found) > 1:
        raise SpgdError(f"{param}={folder} holds {len(found)} {what} files for {Path(image).name} "
                        f"({', '.join(p.name for p in found)}); keep one")
    return str(found[0])


# ----------------------------------------------------------------------------------------------------------
# the operator of a batch


def operator_override_names(overrides: Sequence[str]) -> set[str]:
    """The operator parameter names a list of key=value overrides sets (bare or operator.NAME)."""
    names = set()
    for item in overrides:
        scope, _, name = item.partition("=")[0].strip().rpartition(".")
        if scope in ("", "operator"):
            names.add(name)
    return names


class OperatorFactory:
    """Builds the task's operator for a batch from the resolved preset's parameters, a seed and optional
    kernel/mask files (`channels` of a grayscale prior's images). A loaded network (non-linear blur) is reused
    between batches instead of being read again."""

    def __init__(
        self,
        task: str,
        params: dict,
        kernel: Optional[str] = None,
        mask: Optional[str] = None,
        overrides: Sequence[str] = (),
        channels: int = 3,
    ):
        self.task = task
        self.params = {**params, **({"channels": channels} if channels != 3 else {})}
        self._network = None
        self.notes: list[str] = []  # what the user should hear about (the caller prints them as warnings)
        given = operator_override_names(overrides)
        for option, path in (("kernel", kernel), ("mask", mask)):
            clash = sorted(given & set(REPLACED_BY_FILE[option])) if path is not None else []
            if clash:
                raise SpgdError(
                    f"overriding {', '.join(clash)} has no effect with {option}={path} (the {option} file "
                    f"replaces it); drop one of them"
                )
        files: dict[str, Any] = {}  # what settings.json records about a kernel / mask file
        if kernel is not None:
            files.update(self._use_kernel_file(kernel, task))
        if mask is not None:
            files.update(self._use_mask_file(mask, task))
        valid = set(task_params(self.task))
        self.params = {k: v for k, v in self.params.items() if k in valid}
        replaced = {n for option in files for n in REPLACED_BY_FILE.get(option, ())}
        # the operator actually used: its parameters (not the ones a file replaced) and the files
        self.recorded = {"task": self.task, **{k: v for k, v in self.params.items()
                                               if k not in ("kernel", "mask") and k not in replaced}, **files}
        self.has_seed = "seed" in valid

    def _use_kernel_file(self, kernel: str, task: str) -> dict[str, Any]:
        """`task` blurs with the kernel of a kernel file (normalised, with a note if it did not sum to 1);
        returns what settings.json records about the file."""
        if task not in KERNEL_TASKS:
            raise SpgdError(f"a kernel file is for the blur tasks ({', '.join(KERNEL_TASKS)}), not {task!r}")
        if task == "gaussian_blur":  # a known kernel: plain blur with it
            self.task = "blur"
        k, sums = load_kernel_file(kernel, with_sums=True)
        if k.ndim == 3 and k.shape[0] > 1:
            raise SpgdError(
                f"kernel file {kernel} holds {k.shape[0]} kernels (shape {tuple(k.shape)}); every image is blurred "
                "with one kernel: give a single (k, k) kernel"
            )
        self.params["kernel"] = k[0] if k.ndim == 3 else k
        off = [s for s in sums if abs(s - 1) > 1e-3]
        if off and not is_image_file(kernel):  # an image's pixels never sum to 1: normalising it is the reading
            self.notes.append(
                f"kernel {kernel} sums to {off[0]:.6g}, not 1: it is divided by its sum (recorded in settings.json)"
            )
        return {"kernel": str(Path(kernel).resolve()), "kernel_shape": list(self.params["kernel"].shape),
                "kernel_sum_in_file": sums, "kernel_normalised": "divided by its sum (keeps brightness)"}

    def _use_mask_file(self, mask: str, task: str) -> dict[str, Any]:
        """`task` inpaints with the mask of a mask file; returns what settings.json records about the file."""
        if task not in INPAINTING:
            raise SpgdError(f"a mask file is for the inpainting tasks ({', '.join(INPAINTING)}), not {task!r}")
        m = load_mask_file(mask)
        self.params["mask"] = m
        return {"mask": str(Path(mask).resolve()), "mask_shape": list(m.shape),
                "mask_kept_fraction": float((m > 0.5).float().mean())}

    def with_mask(self, mask: Tensor) -> "OperatorFactory":
        """The same factory with another mask tensor (a padded one), the rest shared."""
        other = object.__new__(OperatorFactory)
        other.__dict__.update(self.__dict__)
        other.params = {**self.params, "mask": mask}
        return other

    def part_shapes(self) -> tuple:
        """The shapes of the kernel / mask tensors from files (what a batch's images must share to be stacked)."""
        return tuple(tuple(self.params[k].shape[-2:]) if k in self.params else None for k in ("kernel", "mask"))

    @classmethod
    def stacked(cls, factories: Sequence["OperatorFactory"]) -> "OperatorFactory":
        """One factory for a batch whose images have their own kernel / mask files (image_factories): the files'
        tensors stacked, image j's at j (they must share part_shapes()). The batch's factory itself where all
        images share one."""
        first = factories[0]
        if all(f is first for f in factories):
            return first
        if len({f.part_shapes() for f in factories}) > 1:
            raise SpgdError("cannot stack kernels / masks of different shapes into one batch")
        other = object.__new__(cls)
        other.__dict__.update(first.__dict__)
        other.params = dict(first.params)
        if "kernel" in first.params:
            other.params["kernel"] = torch.cat([f.params["kernel"].reshape(-1, *f.params["kernel"].shape[-2:])
                                                for f in factories])
        if "mask" in first.params:
            other.params["mask"] = torch.cat([f.params["mask"].reshape(-1, 1, *f.params["mask"].shape[-2:])
                                              for f in factories])
        return other

    def __call__(self, seed: int, device: torch.device):
        params = dict(self.params)
        if self.has_seed:
            params["seed"] = int(seed)
        if self._network is not None:
            params.pop("weights", None)
            params["network"] = self._network
        op = make_operator(self.task, **params)
        if self._network is None and getattr(op, "network", None) is not None:
            self._network = op.network
        return op.to(device)


def image_factories(
    task: str,
    params: dict,
    images: Sequence[PathLike],
    kernel: Optional[str] = None,
    mask: Optional[str] = None,
    kernel_dir: Optional[str] = None,
    mask_dir: Optional[str] = None,
    overrides: Sequence[str] = (),
    channels: int = 3,
) -> list[OperatorFactory]:
    """The operator factory of each image of `images`: one factory shared by all (the preset's random parts, or
    one kernel / mask file for every image), or, with kernel_dir / mask_dir, one per image with its own file
    matched by file stem (spgd.experiment.measurement.matched_file). Every file is found and read here, so a
    missing or bad one fails before any work; each factory's `notes` are for the caller to print."""
    for name, one, folder in (("kernel", kernel, kernel_dir), ("mask", mask, mask_dir)):
        if one is not None and folder is not None:
            raise SpgdError(f"give {name}=FILE (one {name} for every image) or {name}_dir=DIR (one per image, "
                            f"by file name), not both")
    if kernel_dir is None and mask_dir is None:
        return [OperatorFactory(task, params, kernel, mask, overrides, channels)] * len(images)
    out = []
    for image in images:
        k = matched_file(kernel_dir, image, "kernel", "kernel_dir") if kernel_dir is not None else kernel
        m = matched_file(mask_dir, image, "mask", "mask_dir") if mask_dir is not None else mask
        try:
            out.append(OperatorFactory(task, params, k, m, overrides, channels))
        except SpgdError as e:
            raise SpgdError(f"{Path(image).name}: {e}") from None
    return out


# ----------------------------------------------------------------------------------------------------------
# measuring, and the measurement as a picture and a score


def measure_per_image(op, x: Tensor, seeds: Sequence[int]) -> Tensor:
    """y = A(x) + noise_sigma * n with image j's noise n_j from its own CPU generator seeded seeds[j], so a
    measurement does not depend on the batch (nor on the device)."""
    with torch.no_grad():
        y = op.forward(x)
    sigma = float(getattr(op, "noise_sigma", 0.0))
    if sigma > 0:
        noise = torch.stack(
            [torch.randn(y.shape[1:], generator=torch.Generator().manual_seed(s), dtype=torch.float32) for s in seeds]
        )
        y = y + sigma * noise.to(device=y.device, dtype=y.dtype)
    return y


def viewable(y: Tensor) -> tuple[Tensor, str]:
    """A measurement (C, H, W) as an image in [-1, 1]: itself when its values are image-like, else its log
    amplitude rescaled to [-1, 1] (phase-retrieval amplitudes). Returns the image and a note ("" if unchanged)."""
    y = y.detach().float().cpu()
    if y.numel() and y.min() >= -1.5 and y.max() <= 1.5:
        return y.clamp(-1, 1), ""
    v = torch.log(y.abs() + 1e-3)
    lo, hi = torch.quantile(v.flatten()[:: max(1, v.numel() // 100_000)], torch.tensor([0.01, 0.999])).tolist()
    v = ((v - lo) / max(hi - lo, 1e-12)).clamp(0, 1)
    return v * 2 - 1, "log |y| rescaled from its 1st-99.9th percentiles to [0, 1]"


def measurement_baseline(op, task: str, y: Tensor, x: Tensor) -> tuple[Optional[Tensor], str]:
    """An image to score the measurement itself with: y where it is an image of x's shape, the bicubic
    up-sampling for super-resolution, else None."""
    if task == "phase_retrieval":
        return None, ""
    if y.shape == x.shape:
        return y, "measurement"
    if callable(getattr(op, "upsample", None)):
        up = op.upsample(y)
        if up.shape == x.shape:
            return up, "bicubic upsampling"
    return None, ""
