"""`spgd eval`: degrade clean images, restore them with one or more methods, score, and report.

Seeding (so that a result never depends on batch size, order, sharding or resuming): image i of the sorted
folder has the seed ``s_i = seed + i``. Its operator's random part (mask, motion kernel, kernel code) is drawn
from ``s_i`` (a batch's operator is built with the seed of its first image, and operators give image j of a
batch the seed ``seed + j``; batches hold consecutive images only), its measurement noise comes from a
generator derived from ``(s_i, 0)`` and restoration sample s of it from ``(s_i, 1, s)``.

Run folder layout (every file written atomically, per-image files as soon as their batch finishes)::

    settings.json            resolved settings, versions, command line
    records/NAME.json        everything known about one image: the source of the tables
    restored/NAME.png        (restored/METHOD/NAME.png with several methods; NAME-sS.png for sample S >= 1)
    mean/NAME.png            with --samples S >= 2: the mean of the samples (the posterior-mean estimate)
    uncertainty/NAME.png     with --samples S >= 2: per-pixel standard deviation over the samples, as a heat map
    measurement/NAME.png     viewable measurement (rescaled where its range is not an image's)
    random_parts/NAME.pt     the image's mask / kernel / kernel code (operators that have one)
    metrics.csv, metrics.json, grid.png   rebuilt from records/ after every run (see write_tables)
"""

from __future__ import annotations

import csv
import io as _io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from .. import io, metrics
from ..device import resolve_device
from ..errors import SpgdError
from ..metrics import LPIPS_VARIANTS, lpips_or_reason
from ..metrics.fid import whole_set_scores
from ..metrics.inception import FIDInception
from ..operators import make_operator, task_params
from ..operators.blur import load_kernel
from ..presets import sampler_settings
from ..priors import load_prior
from ..priors.base import prior_channels
from ..priors.execution import auto_batch_size, execution_label
from ..api import run_sampler  # latent priors run on z and are decoded at the end
from ..samplers import METHODS, make_sampler, setting_names
from ..samplers.base import RESIDUAL_REASON, residual_diverged
from .console import Console
from .runs import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    provenance,
    read_json,
    read_run_settings,
    shard,
    utc_now,
    write_grid,
)
from .seeding import image_seed, noise_seed, sample_generators

GRID_ROWS = 16  # at most this many images in grid.png
INPAINTING = ("inpainting_box", "inpainting_random")
KERNEL_TASKS = ("gaussian_blur", "motion_blur")


# ----------------------------------------------------------------------------------------------------------
# configuration


@dataclass
class EvalConfig:
    """Everything that defines an evaluation. The fields of :meth:`identity` must match to resume a run."""

    images_dir: Path
    task: str
    methods: list[str]
    preset: dict  # resolved preset (after --set overrides), see spgd.presets
    overrides: list[str] = field(default_factory=list)
    prior: str = "default"
    checkpoint: Optional[str] = None
    samples: int = 1
    seed: int = 0
    size: Optional[tuple[int, int]] = None  # (H, W); None: the prior's size, else the first image's
    resize: bool = False
    limit: Optional[int] = None
    kernel: Optional[str] = None
    mask: Optional[str] = None
    lpips_weights: list[str] = field(default_factory=list)
    lpips_net: str = "vgg"
    fid_weights: Optional[str] = None  # Inception weights file: FID/KID per method (spgd.metrics.fid)
    batch_size: Union[int, str] = 1  # or "auto": the largest that fits the free GPU memory (spgd.priors.execution)
    device: Optional[str] = None
    class_label: Optional[int] = None  # class-conditional priors: the class to condition on

    def samplers(self) -> dict[str, dict]:
        return {m: sampler_settings(self.preset, m) for m in self.methods}

    def identity(self) -> dict:
        """What makes two runs the same experiment (batch size, device, limit and output do not)."""
        return {
            "images_dir": str(Path(self.images_dir).resolve()),
            "task": self.task,
            "methods": list(self.methods),
            # only when not the default, so that runs made before protocols existed still resume
            **({} if self.preset.get("protocol", "spgd") == "spgd" else {"protocol": self.preset["protocol"]}),
            "operator": dict(self.preset.get("operator", {})),
            "samplers": self.samplers(),
            "prior": self.prior,
            "checkpoint": None if self.checkpoint is None else str(Path(self.checkpoint).resolve()),
            "samples": self.samples,
            "seed": self.seed,
            "size": None if self.size is None else list(self.size),
            "resize": bool(self.resize),
            "kernel": None if self.kernel is None else str(Path(self.kernel).resolve()),
            "mask": None if self.mask is None else str(Path(self.mask).resolve()),
            "lpips": {"net": self.lpips_net, "weights": [str(Path(p).resolve()) for p in self.lpips_weights]},
            # only when asked for, so that runs made before FID existed still resume
            **({"fid": {"weights": str(Path(self.fid_weights).resolve())}} if self.fid_weights else {}),
            **({} if self.class_label is None else {"class_label": self.class_label}),
        }

    def validate(self) -> None:
        if not self.methods:
            raise SpgdError("no method given; valid methods: " + ", ".join(METHODS))
        for m in self.methods:
            if m not in METHODS:
                raise SpgdError(f"unknown method {m!r}; valid methods: {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise SpgdError(f"a method is listed twice in {','.join(self.methods)}")
        if isinstance(self.batch_size, str) and self.batch_size != "auto":
            raise SpgdError(f"--batch-size must be a positive integer or 'auto', got {self.batch_size!r}")
        checks = [("--samples", self.samples, 1)]
        if self.batch_size != "auto":
            checks.append(("--batch-size", self.batch_size, 1))
        for name, value, low in checks:
            if value < low:
                raise SpgdError(f"{name} must be >= {low}, got {value}")
        if self.seed < 0:
            raise SpgdError(f"--seed must be >= 0, got {self.seed}")
        if self.limit is not None and self.limit < 1:
            raise SpgdError(f"--limit must be >= 1, got {self.limit}")
        if self.lpips_net not in LPIPS_VARIANTS:
            raise SpgdError(f"--lpips-net must be one of {', '.join(LPIPS_VARIANTS)}, got {self.lpips_net!r}")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def identity_differences(saved: dict, now: dict) -> list[str]:
    """Human-readable differences between two identities (empty when they match)."""
    a, b = _flat(saved), _flat(now)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            diffs.append(f"{k} (run: {a.get(k, '<unset>')!r}, now: {b.get(k, '<unset>')!r})")
    return diffs


# ----------------------------------------------------------------------------------------------------------
# seeds, operators, measurements


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
        try:
            m = torch.from_numpy(np.load(p, allow_pickle=False)).float()
        except (OSError, ValueError) as e:
            raise SpgdError(f"cannot read mask file {p}: {e}") from None
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


# operator parameters that a --kernel / --mask file replaces: setting them beside the file has no effect
REPLACED_BY_FILE = {"kernel": ("kernel_size", "std", "intensity"), "mask": ("box_size", "margin", "drop")}


def operator_override_names(overrides: Sequence[str]) -> set[str]:
    """The operator parameter names a list of --set key=value items sets (bare or operator.NAME)."""
    names = set()
    for item in overrides:
        scope, _, name = item.partition("=")[0].strip().rpartition(".")
        if scope in ("", "operator"):
            names.add(name)
    return names


class OperatorFactory:
    """Builds the task's operator for a batch from the resolved preset, a seed and optional kernel/mask files.
    A loaded network (non-linear blur) is reused between batches instead of being read again."""

    def __init__(
        self,
        task: str,
        params: dict,
        kernel: Optional[str] = None,
        mask: Optional[str] = None,
        overrides: Sequence[str] = (),
    ):
        self.task = task
        self.params = dict(params)
        self._network = None
        self.notes: list[str] = []  # what the user should hear about (the caller prints them as warnings)
        given = operator_override_names(overrides)
        for option, path in (("kernel", kernel), ("mask", mask)):
            clash = sorted(given & set(REPLACED_BY_FILE[option])) if path is not None else []
            if clash:
                raise SpgdError(
                    f"--set {', '.join(clash)} has no effect with --{option} (the {option} file replaces it); "
                    f"drop one of them"
                )
        files: dict[str, Any] = {}  # what settings.json records about a --kernel / --mask file
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
        """`task` blurs with the kernel of a --kernel file (normalised, with a note if it did not sum to 1);
        returns what settings.json records about the file."""
        if task not in KERNEL_TASKS:
            raise SpgdError(f"--kernel is for the blur tasks ({', '.join(KERNEL_TASKS)}), not {task!r}")
        if task == "gaussian_blur":  # a known kernel: plain blur with it
            self.task = "blur"
        k, sums = load_kernel_file(kernel, with_sums=True)
        self.params["kernel"] = k
        off = [s for s in sums if abs(s - 1) > 1e-3]
        if off:
            self.notes.append(
                f"kernel {kernel} sums to {off[0]:.6g}, not 1: it is divided by its sum (recorded in settings.json)"
            )
        return {"kernel": str(Path(kernel).resolve()), "kernel_shape": list(k.shape),
                "kernel_sum_in_file": sums, "kernel_normalised": "divided by its sum (keeps brightness)"}

    def _use_mask_file(self, mask: str, task: str) -> dict[str, Any]:
        """`task` inpaints with the mask of a --mask file; returns what settings.json records about the file."""
        if task not in INPAINTING:
            raise SpgdError(f"--mask is for the inpainting tasks ({', '.join(INPAINTING)}), not {task!r}")
        m = load_mask_file(mask)
        self.params["mask"] = m
        return {"mask": str(Path(mask).resolve()), "mask_shape": list(m.shape),
                "mask_kept_fraction": float((m > 0.5).float().mean())}

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


MIN_SIDE = 11  # the SSIM window (spgd.metrics.ssim): a smaller image cannot be scored
MAX_SIDE = 8192  # larger sides are refused up front (one 8192x8192 image is 0.8 GB per float32 copy)


def size_multiple(prior) -> int:
    """What every image side must be a multiple of for `prior`: 2**down-samplings of its network, else 1."""
    for obj in (prior, getattr(prior, "net", None), getattr(getattr(prior, "net", None), "_orig_mod", None)):
        n = getattr(obj, "num_downsamples", None)
        if isinstance(n, int):
            return 2**n
    return 1


def check_image_size(size: Sequence[int], prior, fix: str, what: str = "the images are", example: bool = True) -> None:
    """Refuse, before any run folder exists, an (H, W) the prior or the metrics cannot take, with the fix
    (`fix`: how to change the size, e.g. "--size N --resize"). Sizes are written width x height."""
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


def prior_image_size(prior) -> Optional[tuple[int, int]]:
    """The image size a prior requires, if it declares one (`prior.image_size`). A UNet's configured
    `image_size` is not a requirement: the network is convolutional and takes any size its down-samplings
    divide (it says so clearly otherwise), so by default images keep their own size."""
    size = getattr(prior, "image_size", None)
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


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


# ----------------------------------------------------------------------------------------------------------
# images


@dataclass
class Item:
    index: int  # position in the sorted folder listing: fixes the seed
    path: Path
    name: str  # output file stem


def list_items(images_dir: Path, limit: Optional[int] = None) -> list[Item]:
    """The folder's images in sorted order with stable indices and unique output names."""
    files = io.list_images(images_dir)
    if limit is not None:
        files = files[:limit]
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    return [
        Item(i, f, f.stem if stems[f.stem] == 1 else f"{f.stem}_{f.suffix[1:].lower()}") for i, f in enumerate(files)
    ]


def _probe_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as load_image will see it (after EXIF rotation), without decoding it."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise SpgdError(f"cannot read {path} as an image ({type(e).__name__}: {e})") from None
    return h, w


# ----------------------------------------------------------------------------------------------------------
# the run


@dataclass
class EvalSummary:
    run_dir: Path
    n_images: int  # images of this run (after --limit and skipping unreadable ones)
    n_done_before: int
    n_done_now: int
    n_skipped: int
    interrupted: bool = False
    tables: dict = field(default_factory=dict)
    rank: int = 0  # in a distributed run only rank 0's summary covers the whole run (and holds the tables)

    @property
    def n_failed(self) -> int:
        return sum(v.get("n_failed", 0) for v in self.tables.get("per_method", {}).values())


def restored_path(method: str, name: str, sample: int, several_methods: bool) -> str:
    stem = name if sample == 0 else f"{name}-s{sample}"
    return f"restored/{method}/{stem}.png" if several_methods else f"restored/{stem}.png"


def sample_summary_paths(method: str, name: str, several_methods: bool) -> tuple[str, str]:
    """(mean image, uncertainty map) of an image's samples, relative to the run folder (folders of their own,
    so no image name can collide with them)."""
    sub = f"{method}/" if several_methods else ""
    return f"mean/{sub}{name}.png", f"uncertainty/{sub}{name}.png"


# Heat-map scale of the uncertainty maps: a per-pixel standard deviation of 0.1 on [0, 1] images (a quarter
# of the grey range either way) and above is the brightest colour; one scale for all maps so they compare.
UNCERTAINTY_VMAX = 0.1


def write_sample_summary(mean: Tensor, std: Tensor, mean_path: Path, uncertainty_path: Path) -> float:
    """Save one image's sample mean (C, H, W) and its uncertainty heat map (the per-pixel std over the samples,
    averaged over channels, in [0, 1] image units, on the fixed UNCERTAINTY_VMAX scale); returns that std's mean."""
    std01 = std.mean(0) / 2
    io.save_image(mean, mean_path)
    io.save_image(io.heatmap(std01, UNCERTAINTY_VMAX), uncertainty_path)
    return float(std01.mean())


class SampleMoments:
    """Running per-image mean and standard deviation of a batch's restorations, over the samples that did not
    fail (sums in float64; no sample is kept in memory)."""

    def __init__(self) -> None:
        self.n: Optional[Tensor] = None
        self.s1: Optional[Tensor] = None
        self.s2: Optional[Tensor] = None

    def add(self, x: Tensor, ok: Sequence[bool]) -> None:
        w = torch.tensor(ok, dtype=torch.float64, device=x.device).view(-1, *([1] * (x.dim() - 1)))
        xd = torch.nan_to_num(x.detach().to(torch.float64)) * w
        if self.n is None:
            self.n, self.s1, self.s2 = w.clone(), xd, xd * xd
        else:
            self.n, self.s1, self.s2 = self.n + w, self.s1 + xd, self.s2 + xd * xd

    def counts(self) -> list[int]:
        return [] if self.n is None else [int(v) for v in self.n.flatten().tolist()]

    def mean_std(self) -> tuple[Tensor, Tensor]:
        """Mean and (population) standard deviation per entry, float32; zero where no sample succeeded."""
        if self.n is None:
            raise SpgdError("SampleMoments: no samples added")
        n = self.n.clamp_min(1)
        mean = self.s1 / n
        var = (self.s2 / n - mean * mean).clamp_min(0)
        return mean.float(), var.sqrt().float()


class Evaluation:
    """One `spgd eval` run into `run_dir` (new, or resumed). Use :meth:`open_run` then :meth:`run`."""

    def __init__(self, cfg: EvalConfig, run_dir: Path, console: Console, argv: Optional[list[str]] = None):
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.console = console
        self.argv = argv

    # -- set-up -------------------------------------------------------------------------------------------
    def open_run(self, resume: bool = False, cli_options: Optional[dict] = None, write_settings: bool = True) -> None:
        """Load the prior, build and check samplers and operator, find the images, write or check settings.json.
        Everything that can be wrong with the input fails here, before any work. With ``write_settings=False``
        a new run's settings.json is left to :meth:`write_settings` (one process of a distributed run writes it)."""
        self.device = resolve_device(self.cfg.device)
        self.items = list_items(Path(self.cfg.images_dir), self.cfg.limit)  # missing/empty folder -> SpgdError
        self._build_samplers_and_prior()
        self._check_images()
        self._check_operator_and_batch_size()
        self._load_scorers()
        if resume:
            self._check_resumable()
        elif write_settings:
            self.write_settings(cli_options)

    def _build_samplers_and_prior(self) -> None:
        """The samplers, the operator factory (its parameters checked now) and the prior with its channels."""
        cfg, con = self.cfg, self.console
        self.sampler_settings = cfg.samplers()
        self.samplers = {}
        for m, settings in self.sampler_settings.items():
            extra = {"progress": con.level >= 1} if "progress" in setting_names(m) else {}
            self.samplers[m] = make_sampler(m, **settings, **extra)
        self.make_op = OperatorFactory(cfg.task, cfg.preset.get("operator", {}), cfg.kernel, cfg.mask, cfg.overrides)
        self.make_op(cfg.seed, torch.device("cpu"))  # checks the operator parameters now
        for note in self.make_op.notes:
            con.warn(note)
        con.detail(f"loading prior {cfg.prior!r}" + (f" from {cfg.checkpoint}" if cfg.checkpoint else ""))
        self.prior = load_prior(cfg.prior, cfg.checkpoint, device=self.device, class_label=cfg.class_label)
        self.channels = prior_channels(self.prior) or 3  # 1: a grayscale prior, images and operator in 1 channel
        if self.channels != 3:
            op_params = {**cfg.preset.get("operator", {}), "channels": self.channels}
            self.make_op = OperatorFactory(cfg.task, op_params, cfg.kernel, cfg.mask)
        self.size = cfg.size or prior_image_size(self.prior)

    def _check_images(self) -> None:
        """Keep the readable images (unreadable ones are skipped with a warning); all of one size, or --resize."""
        cfg = self.cfg
        good: list[Item] = []
        for it in self.items:
            try:
                hw = _probe_size(it.path)
            except SpgdError as e:
                self.console.warn(f"skipping {it.path.name}: {e}")
                continue
            if self.size is None:
                self.size = hw
            elif hw != tuple(self.size) and not cfg.resize:
                raise SpgdError(
                    f"image {it.path} is {hw[1]}x{hw[0]} (width x height) but this run needs "
                    f"{self.size[1]}x{self.size[0]}: pass --resize to center-crop and resize the images"
                    + ("" if cfg.size else " (or --size to choose the size)")
                )
            good.append(it)
        self.n_skipped = len(self.items) - len(good)
        if not good:
            raise SpgdError(f"none of the {len(self.items)} image file(s) in {cfg.images_dir} could be read")
        self.items = good
        self.size = tuple(self.size)
        check_image_size(self.size, self.prior, "pass --size N or HxW (height x width) with --resize",
                         "the images are" if cfg.size is None else "--size asks for")

    def _check_operator_and_batch_size(self) -> None:
        """An operator that cannot take this size (box too large, scale) fails now; --batch-size auto resolved."""
        with torch.no_grad():
            self.make_op(self.cfg.seed, self.device).forward(
                torch.zeros(1, self.channels, *self.size, device=self.device))
        self.batch_size = self.cfg.batch_size
        if self.batch_size == "auto":
            self.batch_size = auto_batch_size(self.prior, (self.channels, *self.size), self.device)
            self.console.info(f"--batch-size auto: {self.batch_size} image(s) per batch on {self.device}")

    def _load_scorers(self) -> None:
        """LPIPS (when its weights are given or found) and the FID Inception network (with --fid-weights)."""
        cfg = self.cfg
        self.lpips, self.lpips_note = lpips_or_reason(cfg.lpips_net, cfg.lpips_weights or None, self.device)
        self.lpips_label = self.lpips.label if self.lpips is not None else None
        if cfg.lpips_weights and self.lpips is None:  # a file was given: not computing LPIPS would ignore it
            raise SpgdError(f"{self.lpips_note}; fix --lpips-weights or leave it out to skip LPIPS")
        self.fid_model = None
        if cfg.fid_weights:  # asked for: a wrong file fails now, before any work
            self.fid_model = FIDInception(cfg.fid_weights).to(self.device)

    def _check_resumable(self) -> None:
        """--resume: the folder is an `spgd eval` run with the same identity (settings that change results)."""
        saved = read_run_settings(self.run_dir, "eval")
        diffs = identity_differences(saved.get("identity", {}), self.cfg.identity())
        if diffs:
            raise SpgdError(
                f"refusing to resume {self.run_dir}: the settings differ: {'; '.join(diffs)}; "
                "run without --resume for a new run folder"
            )

    def write_settings(self, cli_options: Optional[dict] = None, world_size: int = 1) -> None:
        """Write settings.json of a new run (after :meth:`open_run`); `world_size`: processes that share the run
        (informative: results do not depend on it)."""
        cfg = self.cfg
        atomic_write_json(
            self.run_dir / "settings.json",
            {
                "command": "eval",
                "identity": cfg.identity(),
                "task": cfg.task,
                "methods": cfg.methods,
                "preset": cfg.preset,
                "overrides": cfg.overrides,
                "operator": self.make_op.recorded,  # what was used (a --kernel/--mask file, not the preset's)
                "samplers": self.sampler_settings,
                "prior": cfg.prior,
                "checkpoint": cfg.checkpoint,
                "image_size": list(self.size),
                "batch_size": self.batch_size,
                "batch_size_option": cfg.batch_size,
                "device": str(self.device),
                "network": execution_label(self.prior),
                "world_size": world_size,
                "lpips": self.lpips_note,
                "lpips_label": self.lpips_label,
                "fid": None if self.fid_model is None else {"weights": str(cfg.fid_weights), "resize": "pytorch-fid"},
                "seeding": "image i (sorted order) uses seed + i for its operator; noise and sampler "
                "generators are derived from it (spgd.experiment.seeding)",
                "cli_options": cli_options or {},
                **provenance(self.argv),
            },
        )

    # -- work ---------------------------------------------------------------------------------------------
    def _has_complete_record(self, it: Item) -> bool:
        """Whether records/NAME.json exists, is readable, is this image's (same index) and covers every method."""
        path = self.run_dir / "records" / f"{it.name}.json"
        if not path.is_file():
            return False
        try:
            rec = read_json(path)
        except SpgdError:
            return False
        return rec.get("index") == it.index and set(rec.get("methods", {})) == set(self.cfg.methods)

    def _batches(self, todo: list[Item]) -> Iterator[list[tuple[Item, Tensor, list[str]]]]:
        """Batches of up to batch_size consecutive (by index) readable images, loaded."""
        batch: list[tuple[Item, Tensor, list[str]]] = []
        for it in todo:
            try:
                x, notes = io.load_image(it.path, self.size, self.cfg.resize, getattr(self, "channels", 3))
            except SpgdError as e:
                self.console.warn(f"skipping {it.path.name}: {e}")
                self.n_skipped += 1
                continue
            for note in notes:  # a format conversion is news; the crop/resize asked for with --resize is not
                asked = note.startswith(("center-cropped", "resized"))
                (self.console.detail if asked else self.console.warn)(f"{it.path.name}: {note}")
            if batch and (len(batch) == self.batch_size or batch[-1][0].index + 1 != it.index):
                yield batch
                batch = []
            batch.append((it, x, notes))
        if batch:
            yield batch

    def pending(self) -> list[Item]:
        """The images of this run without a complete record (in index order)."""
        return [it for it in self.items if not self._has_complete_record(it)]

    def run(self, rank: int = 0, world_size: int = 1, pending: Optional[Sequence[int]] = None) -> EvalSummary:
        """Restore and score the images not done yet. Process `rank` of `world_size` takes its contiguous block
        of them (:func:`spgd.experiment.runs.shard`); all processes must pass the same `pending` (indices of the images
        to do, default: those without a record now), so that they agree on the blocks. Only a single process
        writes the tables here; a distributed run merges them once all are done (spgd.experiment.distributed)."""
        cfg = self.cfg
        if pending is None:
            remaining = self.pending()
        else:
            wanted = set(pending)
            remaining = [it for it in self.items if it.index in wanted]
        todo = shard(remaining, rank, world_size)
        n_before = len(self.items) - len(remaining)
        share = "" if world_size == 1 else f", {len(todo)} on rank {rank} of {world_size}"
        self._announce(len(remaining), n_before, share)
        summary = EvalSummary(self.run_dir, len(self.items), n_before, 0, self.n_skipped)
        bar = self.console.progress(len(todo), desc=f"eval {cfg.task}")
        try:
            for batch in self._batches(todo):
                records = self._restore_batch(batch)
                summary.n_done_now += len(records)
                bar.update(len(batch))
                last = records[-1]["methods"][cfg.methods[0]]
                if last.get("psnr") is not None:
                    bar.set_postfix_str(f"{cfg.methods[0]} PSNR {last['psnr']:.2f}")
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            summary.n_skipped = self.n_skipped
            if rank == 0 and world_size == 1:
                summary.tables = write_tables(self.run_dir, self.size, cfg.resize)
        return summary

    def _announce(self, n_remaining: int, n_before: int, share: str) -> None:
        """The status lines before the work: LPIPS, what is left to do (`share`: this rank's part) and how."""
        cfg, con = self.cfg, self.console
        con.info(self.lpips_note)
        con.info(
            f"{cfg.task}: {n_remaining} image(s) to do ({n_before} already done{share}) with "
            f"{', '.join(cfg.methods)} on {self.device}, prior {cfg.prior}, {self.size[1]}x{self.size[0]} (WxH), "
            f"batch size {self.batch_size}, network {execution_label(self.prior)}"
        )

    def _restore_batch(self, batch: list[tuple[Item, Tensor, list[str]]]) -> list[dict]:
        """Degrade, restore with every method, score and record one batch; returns its records (also written)."""
        items = [b[0] for b in batch]
        x = torch.cat([b[1] for b in batch]).to(self.device)
        seeds = [image_seed(self.cfg.seed, it.index) for it in items]
        op = self.make_op(seeds[0], self.device)
        y = measure_per_image(op, x, [noise_seed(s) for s in seeds])
        records = self._measurement_records(batch, seeds, op, x, y)
        for m in self.cfg.methods:
            self._restore_with(m, items, seeds, op, x, y, records)
        self._write_records(records)
        return records

    def _measurement_records(self, batch: list, seeds: list[int], op, x: Tensor, y: Tensor) -> list[dict]:
        """Save each image's measurement (and random parts) and start its record with the measurement's scores."""
        items = [b[0] for b in batch]
        x01 = io.to_unit(x.clamp(-1, 1))
        base, base_kind = measurement_baseline(op, self.cfg.task, y, x)
        base_psnr = base_ssim = None
        if base is not None:
            b01 = io.to_unit(base.clamp(-1, 1))
            base_psnr, base_ssim = metrics.psnr(b01, x01).tolist(), metrics.ssim(b01, x01).tolist()
        parts = op.random_parts() if callable(getattr(op, "random_parts", None)) else {}
        self._save_fid_features(FID_REFERENCE, items, x01)
        records: list[dict] = []
        for j, it in enumerate(items):
            view, note = viewable(y[j])
            io.save_image(view, self.run_dir / "measurement" / f"{it.name}.png")
            parts_path = None
            if parts:
                own_parts = {
                    k: (v[j] if v.ndim >= 3 and v.shape[0] == len(items) else v).detach().cpu().clone()
                    for k, v in parts.items()
                }
                parts_path = f"random_parts/{it.name}.pt"
                atomic_torch_save(self.run_dir / parts_path, own_parts)
            records.append({
                "name": it.name, "file": it.path.name, "source": str(it.path.resolve()), "index": it.index,
                "seed": seeds[j], "notes": batch[j][2], "measurement": f"measurement/{it.name}.png",
                "measurement_note": note, "random_parts": parts_path,
                "measurement_metrics": None if base is None
                else {"kind": base_kind, "psnr": base_psnr[j], "ssim": base_ssim[j]},
                "methods": {},
            })
        return records

    def _restore_with(self, method: str, items: list[Item], seeds: list[int], op, x: Tensor, y: Tensor,
                      records: list[dict]) -> None:
        """Restore the batch `samples` times with `method` (sample s of image i seeded derive_seed(seed_i, 1, s))
        and add the method's entry to each record."""
        cfg, several = self.cfg, len(self.cfg.methods) > 1
        per_image: list[list[dict]] = [[] for _ in items]
        cost: list[dict] = []
        stochastic = getattr(self.samplers[method], "stochastic", True)
        moments = SampleMoments() if cfg.samples > 1 and stochastic else None
        for s in range(cfg.samples):
            gens = sample_generators(seeds, s, self.device)
            result = run_sampler(self.samplers[method], y, op, self.prior, generator=gens, x_shape=tuple(x.shape))
            cost.append(result.stats.as_dict())
            x_hat = result.x.detach()
            samples = self._score_sample(method, s, items, result.stats, op, x, y, x_hat, several)
            if moments is not None:  # the images as saved and scored
                moments.add(x_hat.clamp(-1, 1), [not sample["failed"] for sample in samples])
            for j, sample in enumerate(samples):
                per_image[j].append(sample)
        for j, rec in enumerate(records):
            rec["methods"][method] = _method_record(per_image[j], cost, self.lpips_label, self.sampler_settings[method])
        if moments is not None:
            for rec, summary in zip(records, self._sample_summaries(method, items, moments, x, several)):
                rec["methods"][method]["mean_of_samples"] = summary

    def _score_sample(self, method: str, s: int, items: list[Item], stats, op, x: Tensor, y: Tensor,
                      x_hat: Tensor, several: bool) -> list[dict]:
        """Save sample s of each image and score it: PSNR, SSIM, LPIPS, the data fit, and whether it failed
        (the sampler's own verdict, a non-finite score, or the residual part of the divergence rule)."""
        x01, xh01 = io.to_unit(x.clamp(-1, 1)), io.to_unit(x_hat.clamp(-1, 1))
        psnr, ssim = metrics.psnr(xh01, x01).tolist(), metrics.ssim(xh01, x01).tolist()
        with torch.no_grad():  # the data fit, to compare with the noise level
            ax = op.forward(x_hat)
            rms = (ax - y).pow(2).flatten(1).mean(1).sqrt().tolist()
            # the divergence rule's data-residual part, for every method (spgd.samplers.base)
            fit_bad = residual_diverged(ax, y, float(getattr(op, "noise_sigma", 0.0))).tolist()
        lpips = self.lpips(x_hat.clamp(-1, 1), x.clamp(-1, 1)).tolist() if self.lpips is not None else None
        failed = list(stats.failed) if stats.failed else [False] * len(items)
        reasons = list(getattr(stats, "failure_reason", None) or [None] * len(items))
        reasons = [r or (RESIDUAL_REASON if b else None) for r, b in zip(reasons, fit_bad)]
        failed = [bool(f) or not math.isfinite(p) or b for f, p, b in zip(failed, psnr, fit_bad)]
        if s == 0:  # FID/KID: one restoration per image (the first sample), failed ones left out
            self._save_fid_features(method, [it for it, f in zip(items, failed) if not f],
                                    xh01[torch.tensor([not f for f in failed], device=xh01.device)])
        samples = []
        for j, it in enumerate(items):
            path = restored_path(method, it.name, s, several)
            io.save_image(x_hat[j], self.run_dir / path)
            ok = not failed[j]
            sample = {
                "sample": s, "restored": path, "failed": failed[j],
                "failed_at_step": stats.failed_at_step[j] if stats.failed_at_step else None,
                "failure_reason": reasons[j] or ("non-finite scores" if failed[j] else None),
                "psnr": psnr[j] if ok else None, "ssim": ssim[j] if ok else None, "rms_residual": rms[j] if ok else None,
            }
            if lpips is not None:
                sample[self.lpips_label] = lpips[j] if ok else None
            samples.append(sample)
        return samples

    def _write_records(self, records: list[dict]) -> None:
        """records/NAME.json of each image (its result is kept from now on), with a detail line per method."""
        for rec in records:
            rec["device"] = str(self.device)
            rec["batch_size"] = len(records)
            rec["finished"] = utc_now()
            atomic_write_json(self.run_dir / "records" / f"{rec['name']}.json", rec)
            for m, r in rec["methods"].items():
                self.console.detail(
                    f"{rec['name']} {m}: PSNR {_fmt(r['psnr'])} SSIM {_fmt(r['ssim'], 4)} "
                    f"({r['seconds']:.1f} s/restoration, {r['failed']} failed)"
                )

    def _save_fid_features(self, method: str, items: list, images01: Tensor) -> None:
        """Inception features of each image, fid_features/METHOD/NAME.pt (FID/KID need the whole set)."""
        if self.fid_model is None or not items:
            return
        with torch.no_grad():
            feats = self.fid_model(images01).cpu()
        for it, f in zip(items, feats):
            atomic_torch_save(self.run_dir / "fid_features" / method / f"{it.name}.pt", f.clone())

    def _sample_summaries(
        self, method: str, items: list, moments: SampleMoments, x: Tensor, several: bool
    ) -> list[Optional[dict]]:
        """Per image: the mean of its samples (scored like a restoration) and the per-pixel standard deviation
        over them (saved as a heat map); None where fewer than two samples succeeded."""
        mean, std = moments.mean_std()
        x01, m01 = io.to_unit(x.clamp(-1, 1)), io.to_unit(mean)
        psnr, ssim = metrics.psnr(m01, x01).tolist(), metrics.ssim(m01, x01).tolist()
        lpips = self.lpips(mean, x.clamp(-1, 1)).tolist() if self.lpips is not None else None
        out: list[Optional[dict]] = []
        for j, (it, n) in enumerate(zip(items, moments.counts())):
            if n < 2:
                out.append(None)
                continue
            mean_path, unc_path = sample_summary_paths(method, it.name, several)
            pixel_std = write_sample_summary(mean[j], std[j], self.run_dir / mean_path, self.run_dir / unc_path)
            entry = {
                "n": n,
                "restored": mean_path,
                "uncertainty": unc_path,
                "uncertainty_vmax": UNCERTAINTY_VMAX,
                "psnr": psnr[j],
                "ssim": ssim[j],
                "pixel_std": pixel_std,
            }
            if lpips is not None:
                entry[self.lpips_label] = lpips[j]
            out.append(entry)
        return out


def _method_record(
    samples: list[dict], cost: list[dict], lpips_label: Optional[str], settings: dict
) -> dict:
    ok = [s for s in samples if not s["failed"]]

    def mean(key: str) -> Optional[float]:
        vals = [s[key] for s in ok if s.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    out = {
        "restored": [s["restored"] for s in samples],
        "psnr": mean("psnr"),
        "ssim": mean("ssim"),
        "rms_residual": mean("rms_residual"),  # sqrt(mean((A(x_hat) - y)^2)), the noise level when fitted
        "n_samples": len(samples),
        "failed": len(samples) - len(ok),
        # cost of one restoration (the mean over samples); seconds = batch time / batch size
        "denoiser_calls": float(np.mean([c["denoiser_calls"] for c in cost])),
        "vjps": float(np.mean([c["vjps"] for c in cost])),
        "decoder_calls": float(np.mean([c.get("decoder_calls", 0) for c in cost])),  # issue19: latent priors' VAE
        "seconds": float(np.mean([c["seconds_per_image"] for c in cost])),
        "peak_memory_bytes": max((c["peak_memory_bytes"] or 0) for c in cost) or None,
        "peak_memory_kind": cost[0]["peak_memory_kind"],
        "samples": samples,
        "settings": settings,
    }
    if lpips_label:
        out[lpips_label] = mean(lpips_label)
    return out


def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# ----------------------------------------------------------------------------------------------------------
# tables, from the per-image records


def read_records(run_dir: Path) -> list[dict]:
    """Every complete per-image record of a run, sorted by image index (unreadable ones are ignored)."""
    out = []
    for p in sorted((Path(run_dir) / "records").glob("*.json")):
        try:
            out.append(read_json(p))
        except SpgdError:
            continue
    return sorted(out, key=lambda r: r.get("index", 0))


def mean_and_std(values: list[float]) -> dict:
    """{"mean", "std"} (population std, float64) of a table's values; both None when there are none."""
    if not values:
        return {"mean": None, "std": None}
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


def write_tables(run_dir: Path, size: Optional[Sequence[int]] = None, resize: bool = False) -> dict:
    """Rebuild metrics.csv, metrics.json and grid.png of a run from records/*.json (all of them: also those of
    earlier, resumed or other processes' runs). Returns the metrics.json content."""
    run_dir = Path(run_dir)
    settings = read_json(run_dir / "settings.json")
    methods: list[str] = settings["methods"]
    lpips_label = settings.get("lpips_label")
    records = read_records(run_dir)
    # per method: (image name, the method's entry in the image's record), in image order
    results = {m: [(r["name"], r["methods"][m]) for r in records if m in r.get("methods", {})] for m in methods}
    several_samples = settings.get("identity", {}).get("samples", 1) > 1
    atomic_write_text(run_dir / "metrics.csv", _metrics_csv(results, lpips_label, several_samples))
    per_method = {m: _method_summary(rows, lpips_label) for m, rows in results.items()}
    if settings.get("fid"):
        for m, rows in results.items():
            scored = [name for name, result in rows if result["psnr"] is not None]
            per_method[m]["fid"] = _fid_entry(run_dir, m, scored)
    tables = _run_summary(settings, records, per_method)
    atomic_write_json(run_dir / "metrics.json", tables)
    if records:
        _write_grid(run_dir, records[:GRID_ROWS], methods, size or settings.get("image_size"), resize)
    return tables


# metrics.csv's columns of the mean of an image's samples (with several samples): column -> entry of
# mean_of_samples (its scores and the mean per-pixel std, uncertainty/)
MEAN_OF_SAMPLES_COLUMNS = {"psnr_of_mean": "psnr", "ssim_of_mean": "ssim", "pixel_std": "pixel_std"}


def _metrics_csv(results: dict[str, list[tuple[str, dict]]], lpips_label: Optional[str], several_samples: bool) -> str:
    """metrics.csv: one row per image and method (an empty cell where a value is missing, e.g. a failed image)."""
    scores = ["psnr", "ssim"] + ([lpips_label] if lpips_label else [])
    scores += ["rms_residual", "denoiser_calls", "vjps", "seconds", "peak_memory_bytes"]
    of_mean = MEAN_OF_SAMPLES_COLUMNS if several_samples else {}
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "method", *scores, "failed", "samples", *of_mean])
    for m, rows in results.items():
        for name, result in rows:
            mean_of_samples = result.get("mean_of_samples") or {}
            writer.writerow(
                [name, m]
                + [_csv_cell(result.get(c)) for c in scores]
                + [result["failed"], result["n_samples"]]
                + [_csv_cell(mean_of_samples.get(key)) for key in of_mean.values()]
            )
    return buf.getvalue()


def _csv_cell(value: Any) -> Any:
    return "" if value is None else value


def _method_summary(rows: list[tuple[str, dict]], lpips_label: Optional[str]) -> dict:
    """One method's entry of metrics.json: its scores over the images that did not fail, which failed, its
    cost, and the scores of the mean of the samples."""
    ok = [result for _, result in rows if result["psnr"] is not None]
    entry = {
        "n": len(ok),
        "n_failed": len(rows) - len(ok),
        "failed_images": [name for name, result in rows if result["psnr"] is None],
        "psnr": mean_and_std([result["psnr"] for result in ok]),
        "ssim": mean_and_std([result["ssim"] for result in ok]),
    }
    for key in ([lpips_label] if lpips_label else []) + ["rms_residual"]:
        entry[key] = mean_and_std([result[key] for result in ok if result.get(key) is not None])
    for key in ("denoiser_calls", "vjps", "seconds"):
        entry[key] = mean_and_std([result[key] for _, result in rows])
    memory = [result["peak_memory_bytes"] for _, result in rows if result.get("peak_memory_bytes")]
    kind = rows[0][1]["peak_memory_kind"] if rows else None
    entry["peak_memory_bytes"] = {"max": max(memory) if memory else None, "kind": kind}
    summaries = [result["mean_of_samples"] for _, result in rows if result.get("mean_of_samples")]
    if summaries:
        entry["mean_of_samples"] = {
            "n_images": len(summaries),  # those with >= 2 successful samples
            **{k: mean_and_std([v[k] for v in summaries]) for k in ("psnr", "ssim", "pixel_std")},
        }
        if lpips_label:
            entry["mean_of_samples"][lpips_label] = mean_and_std(
                [v[lpips_label] for v in summaries if v.get(lpips_label) is not None]
            )
    return entry


METRICS_NOTES = (
    "PSNR/SSIM (piq definitions) on [0, 1] images; an image's value is the mean over its samples; "
    "mean and std (population) over the images that did not fail; rms_residual: sqrt(mean((A(x) - y)^2)) of "
    "a restoration, about noise_sigma when it fits the measurement; mean_of_samples: the same scores of the "
    "mean of an image's samples (pixel_std: its mean per-pixel standard deviation, [0, 1] units); cost per "
    "restoration; "
    "seconds = batch wall time / batch size; peak memory: CUDA max allocated, or the process's peak RSS on "
    "the CPU"
)


def _run_summary(settings: dict, records: list[dict], per_method: dict[str, dict]) -> dict:
    """metrics.json: the run's task and scorers, the measurement's own scores and the per-method entries."""
    measured = [r["measurement_metrics"] for r in records if r.get("measurement_metrics")]
    return {
        "task": settings["task"],
        "prior": settings.get("prior"),
        "methods": settings["methods"],
        "n_images": len(records),
        "per_method": per_method,
        "measurement": None
        if not measured
        else {
            "kind": measured[0]["kind"],
            "psnr": mean_and_std([v["psnr"] for v in measured]),
            "ssim": mean_and_std([v["ssim"] for v in measured]),
        },
        "noise_sigma": (settings.get("operator") or {}).get("noise_sigma"),  # what rms_residual should reach
        "lpips": settings.get("lpips"),
        "lpips_label": settings.get("lpips_label"),
        "fid": settings.get("fid"),
        "notes": METRICS_NOTES,
        "updated": utc_now(),
    }


FID_REFERENCE = "ground_truth"  # fid_features/ground_truth/: the clean images, the reference set


def _fid_entry(run_dir: Path, method: str, names: list[str]) -> Optional[dict]:
    """FID/KID of a method's restorations against the clean images (a whole-set score), from saved features."""
    def load(kind: str) -> list[Tensor]:
        out = []
        for n in names:
            p = run_dir / "fid_features" / kind / f"{n}.pt"
            if p.is_file():
                out.append(io.load_torch_file(p))
        return out

    feats, ref = load(method), load(FID_REFERENCE)
    if len(feats) < 2 or len(ref) < 2:
        return {"fid": None, "kid": None, "n": len(feats), "n_ref": len(ref),
                "warning": "FID/KID need at least 2 images per set"}
    return whole_set_scores(torch.stack(feats), torch.stack(ref), resize="pytorch-fid")


def _write_grid(run_dir: Path, records: list[dict], methods: list[str], size, resize: bool) -> None:
    rows = []
    for r in records:
        gt = None
        try:
            gt = io.load_image(r["source"], size, resize)[0]
        except SpgdError:
            pass
        row = [gt, _maybe_image(run_dir / r["measurement"])]
        for m in methods:
            rm = r["methods"].get(m)
            row.append(_maybe_image(run_dir / rm["restored"][0]) if rm else None)
        rows.append(row)
    # with several samples: each method's mean and uncertainty map in extra columns
    extra = [m for m in methods if any((r["methods"].get(m) or {}).get("mean_of_samples") for r in records)]
    for r, row in zip(records, rows):
        for m in extra:
            ms = (r["methods"].get(m) or {}).get("mean_of_samples")
            row += [_maybe_image(run_dir / ms["restored"]), _maybe_image(run_dir / ms["uncertainty"])] if ms else [
                None, None]
    if not any(c is not None for row in rows for c in row):
        return
    cell = tuple(size) if size else None
    labels = ["ground truth", "measurement", *methods]
    for m in extra:
        labels += [f"{m} mean", f"{m} std (0-{UNCERTAINTY_VMAX:g})"]
    write_grid(run_dir / "grid.png", rows, labels=labels, cell_size=cell)


def _maybe_image(path: Path) -> Optional[Tensor]:
    try:
        return io.load_image(path)[0]
    except SpgdError:
        return None


def format_table(tables: dict) -> str:
    """The per-method summary as a small text table. Every cell is right-aligned and preceded by a space, and
    numbers of any magnitude keep to a bounded width (scientific notation beyond 1e6), so columns never run
    together."""
    label = tables.get("lpips_label")
    with_fid = bool(tables.get("fid"))
    widths = [14, 16] + ([16] if label else []) + [10, 7, 6, 8, 8] + ([10, 10, 8] if with_fid else [])

    def row(name: str, cells: list[str]) -> str:
        return f"{name:<22}" + "".join(" " + c.rjust(w - 1) for c, w in zip(cells, widths))

    head = ["PSNR", "SSIM"] + ([label] if label else []) + ["|Ax-y|", "NFE", "VJP", "s/img", "failed"]
    lines = [row("method", head + (["FID", "KID", "n(FID)"] if with_fid else []))]
    meas = tables.get("measurement")
    if meas:
        lines.append(row("(" + meas["kind"][:20] + ")", [_pm(meas["psnr"], 2), _pm(meas["ssim"], 4)]).rstrip())
    for m, e in tables.get("per_method", {}).items():
        cells = [_pm(e["psnr"], 2), _pm(e["ssim"], 4)] + ([_pm(e.get(label, {}), 4)] if label else [])
        calls, vjps, secs = (e[k]["mean"] for k in ("denoiser_calls", "vjps", "seconds"))
        cells += [_num((e.get("rms_residual") or {}).get("mean"), 4), _num(calls, 0), _num(vjps, 0), _num(secs, 1)]
        cells.append(str(e["n_failed"]))
        if with_fid:
            fe = e.get("fid") or {}
            cells += [_num(fe.get("fid"), 2), _num((fe.get("kid") or {}).get("mean"), 4), str(fe.get("n", 0))]
        lines.append(row(m, cells))
        ms = e.get("mean_of_samples")
        if ms:
            cells = [_pm(ms["psnr"], 2), _pm(ms["ssim"], 4)] + ([_pm(ms.get(label, {}), 4)] if label else [])
            lines.append(row("  mean of samples", cells).rstrip())
    if with_fid:
        warnings = {(e.get("fid") or {}).get("warning") for e in tables.get("per_method", {}).values()} - {None}
        lines += [f"note: {w}" for w in sorted(warnings)]
        lines.append("FID/KID: whole-set scores of each method's first restorations against the clean images "
                     "(pytorch-fid Inception features)")
    return "\n".join(lines)


def _num(v: Optional[float], digits: int) -> str:
    """A number in fixed notation, or scientific when it is too large to fit a column (e.g. 2.55e+10)."""
    if v is None:
        return "-"
    if not math.isfinite(v) or abs(v) >= 1e6:
        return f"{v:.2e}"
    return f"{v:.{digits}f}"


def _pm(s: dict, digits: int) -> str:
    if not s or s.get("mean") is None:
        return "-"
    return f"{_num(s['mean'], digits)}±{_num(s['std'], digits)}"
