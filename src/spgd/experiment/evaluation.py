"""`spgd eval`: degrade clean images, restore them with one or more methods, score, and report.

Seeding (so that a result never depends on batch size, order, sharding or resuming): image i of the sorted
folder has the seed ``s_i = seed + i`` (spgd.experiment.seeding). Its operator's random part (mask, motion kernel,
kernel code) is drawn from ``s_i`` (a batch's operator is built with the seed of its first image, and operators
give image j of a batch the seed ``seed + j``; batches hold consecutive images only), its measurement noise
comes from a generator derived from ``(s_i, 0)`` and restoration sample s of it from ``(s_i, 1, s)``.

Run folder layout (every file written atomically, per-image files as soon as their batch finishes)::

    settings.json            the plan, what it resolved to, versions, command line (spgd.experiment.runs)
    records/NAME.json        everything known about one image: the source of the tables
    restored/NAME.png        (restored/METHOD/NAME.png with several methods; NAME-sS.png for sample S >= 1)
    mean/NAME.png            with samples S >= 2: the mean of the samples (the posterior-mean estimate)
    uncertainty/NAME.png     with samples S >= 2: per-pixel standard deviation over the samples, as a heat map
    measurement/NAME.png     viewable measurement (rescaled where its range is not an image's)
    random_parts/NAME.pt     the image's mask / kernel / kernel code (operators that have one)
    metrics.csv, metrics.json, grid.png   rebuilt from records/ after every run (spgd.experiment.tables)
    telemetry/METHOD/NAME.csv, angles.png   with telemetry=True: the gradient-angle telemetry of each batch (first
                             sample; NAME is the batch's first image, `sample` its position in the batch) and
                             the plot of this call's images (a single process only)

Kernels and masks: the preset's (random parts drawn from each image's seed), one file for every image
(kernel=FILE, mask=FILE), or one file per image matched by file stem (kernel_dir=DIR, mask_dir=DIR:
``photo.png`` takes ``DIR/photo.pt``, ``.npy`` or ``.png``; every image needs its file). A batch holds images
whose files share a shape (their kernels / masks stacked); records/NAME.json names the image's files.

Python: ``evaluate(EvalPlan(images_dir, "gaussian_blur", methods=["spgd", "dps"]), out="runs")`` returns an
:class:`EvalSummary`; under torchrun, ``spgd.experiment.distributed.run_eval`` shares the images out.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .. import io, metrics
from ..api import run_sampler  # latent priors run on z and are decoded at the end
from ..device import resolve_device
from ..diagnostics.plots import plot_angles
from ..diagnostics.telemetry import GradientTelemetry
from ..errors import SpgdError
from ..io import atomic_torch_save
from ..metrics import LPIPS_VARIANTS, lpips_or_reason
from ..metrics.inception import FIDInception
from ..presets import PROTOCOLS, apply_overrides, load_preset, sampler_settings
from ..priors import load_prior
from ..priors.base import prior_channels
from ..priors.execution import auto_batch_size, execution_label
from ..samplers import check_methods, make_sampler
from ..samplers.base import check_start_sigma
from ..samplers.catalog import require_support
from ..verdict import FAILED, UNDER_FIT, judge
from .console import Console
from .images import (
    Item, check_image_size, is_asked_for, list_items, prior_image_size, probe_size, selection, selection_differences,
)
from .measurement import OperatorFactory, image_factories, measure_per_image, measurement_baseline, viewable
from .progress import Progress, run_steps, sampler_callback, telemetry_recorder
from .runs import (
    PathLike, RunLock, atomic_write_json, check_writable, new_run_dir, provenance, read_json, read_run_settings, shard, utc_now,
)
from .samples import UNCERTAINTY_VMAX, SampleMoments, sample_summary_paths, write_sample_summary
from .seeding import image_seed, noise_seed, sample_generators
from .tables import FID_REFERENCE, number, write_tables

SEEDING = ("image i (sorted order) uses seed + i for its operator; noise and sampler generators are derived "
           "from it (spgd.experiment.seeding)")


# ----------------------------------------------------------------------------------------------------------
# the plan


@dataclass
class EvalPlan:
    """Everything that defines an evaluation. The fields of :meth:`identity` must match to resume a run."""

    images_dir: PathLike  # a folder of clean images
    task: str  # spgd.make_operator's task names
    methods: list[str] = field(default_factory=lambda: ["spgd"])
    protocol: str = "spgd"  # whose measurement protocol (spgd.presets.PROTOCOLS)
    overrides: list[str] = field(default_factory=list)  # key=value over the task's preset (spgd.presets)
    prior: str = "default"
    checkpoint: Optional[str] = None
    class_label: Optional[int] = None  # class-conditional priors: the class to condition on
    samples: int = 1  # restorations per image
    seed: int = 0
    size: Optional[tuple[int, int]] = None  # (H, W); None: the prior's size, else the first image's
    resize: bool = False  # center-crop and resize images that are not `size`
    limit: Optional[int] = None  # only the first images
    kernel: Optional[str] = None  # a blur kernel file instead of the preset's kernel
    mask: Optional[str] = None  # an inpainting mask file for every image
    kernel_dir: Optional[str] = None  # one blur kernel file per image, by file stem (photo.png: DIR/photo.pt, ...)
    mask_dir: Optional[str] = None  # one inpainting mask file per image, by file stem
    lpips_weights: list[str] = field(default_factory=list)
    lpips_net: str = "vgg"
    fid_weights: Optional[str] = None  # Inception weights file: FID/KID per method (spgd.metrics.fid)
    batch_size: Union[int, str] = 1  # or "auto": the largest that fits the free GPU memory (spgd.priors.execution)
    device: Optional[str] = None
    telemetry: bool = False  # record the gradient-angle telemetry (spgd.diagnostics): CSVs and angles.png

    def __post_init__(self) -> None:  # as read back from settings.json
        self.images_dir = Path(self.images_dir)
        self.size = None if self.size is None else (int(self.size[0]), int(self.size[1]))
        self.methods, self.overrides, self.lpips_weights = (list(self.methods), list(self.overrides),
                                                            list(self.lpips_weights))

    def preset(self) -> dict:
        """The task's preset under the protocol, with the overrides (spgd.presets)."""
        return apply_overrides(load_preset(self.task, self.protocol), self.overrides, self.methods)

    def identity(self) -> dict:
        """What makes two runs the same experiment: every field but batch size and device (and where it is
        written). The images themselves are part of it too: see :func:`check_resumable`."""
        preset = self.preset()
        return {
            "images_dir": str(Path(self.images_dir).resolve()),
            "task": self.task,
            "methods": list(self.methods),
            **({} if self.protocol == "spgd" else {"protocol": self.protocol}),
            "operator": dict(preset.get("operator", {})),
            "samplers": {m: sampler_settings(preset, m) for m in self.methods},
            "prior": self.prior,
            "checkpoint": None if self.checkpoint is None else str(Path(self.checkpoint).resolve()),
            "samples": self.samples,
            "seed": self.seed,
            "size": None if self.size is None else list(self.size),
            "resize": bool(self.resize),
            "limit": self.limit,
            "kernel": None if self.kernel is None else str(Path(self.kernel).resolve()),
            "mask": None if self.mask is None else str(Path(self.mask).resolve()),
            **{name: str(Path(folder).resolve()) for name, folder in (("kernel_dir", self.kernel_dir),
                                                                      ("mask_dir", self.mask_dir)) if folder},
            "lpips": {"net": self.lpips_net, "weights": [str(Path(p).resolve()) for p in self.lpips_weights]},
            **({"fid": {"weights": str(Path(self.fid_weights).resolve())}} if self.fid_weights else {}),
            **({} if self.class_label is None else {"class_label": self.class_label}),
        }

    def validate(self) -> None:
        """Refuse values no evaluation can run with (the methods, counts, choices), before anything is loaded."""
        check_methods(self.methods)
        if self.protocol not in PROTOCOLS:
            raise SpgdError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if isinstance(self.batch_size, str) and self.batch_size != "auto":
            raise SpgdError(f"batch_size must be a positive integer or 'auto', got {self.batch_size!r}")
        for name, low in (("samples", 1), ("batch_size", 1), ("seed", 0), ("limit", 1)):
            value = getattr(self, name)
            if value is not None and value != "auto" and value < low:
                raise SpgdError(f"{name} must be >= {low}, got {value}")
        if self.lpips_net not in LPIPS_VARIANTS:
            raise SpgdError(f"lpips_net must be one of {', '.join(LPIPS_VARIANTS)}, got {self.lpips_net!r}")


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
# the set-up: one value, built and checked before the first image


@dataclass(frozen=True)
class EvalSetup:
    """Everything an evaluation needs before its first image, built by :func:`set_up` (so no part of it can be
    used before it exists). Whatever can be wrong with the input has failed by then."""

    device: torch.device
    items: list[Item]  # the readable images, in index order
    n_skipped: int  # unreadable image files
    size: tuple[int, int]  # (H, W) every image is restored at
    samplers: dict[str, Any]
    sampler_settings: dict[str, dict]
    operators: OperatorFactory  # the operator of every image; with kernel_dir / mask_dir the first image's
    prior: Any
    channels: int  # 1: a grayscale prior (images and operator in 1 channel), else 3
    batch_size: int
    lpips: Any  # spgd.metrics.LPIPS or None
    lpips_note: str
    fid_model: Optional[FIDInception]
    image_operators: dict = field(default_factory=dict)  # image index -> its own factory (kernel_dir / mask_dir)

    @property
    def lpips_label(self) -> Optional[str]:
        return self.lpips.label if self.lpips is not None else None

    def operator_of(self, it: Item) -> OperatorFactory:
        """The operator factory of one image: its own (kernel_dir / mask_dir), else the run's."""
        return self.image_operators.get(it.index, self.operators)

    def batch_operator(self, items: Sequence[Item]) -> OperatorFactory:
        """The operator factory of a batch: the images' own files stacked, else the run's."""
        return OperatorFactory.stacked([self.operator_of(it) for it in items])


def set_up(plan: EvalPlan, console: Console, loaded_prior: Any = None) -> EvalSetup:
    """Load the prior, build and check the samplers and the operator, find and size the images, load the
    scorers: everything that can be wrong with the input fails here, before any work. `loaded_prior`: the prior
    the plan names, already loaded (a server that keeps it between runs)."""
    plan.validate()
    device = resolve_device(plan.device)
    items = list_items(Path(plan.images_dir), plan.limit)  # missing/empty folder -> SpgdError
    preset = plan.preset()
    settings = {m: sampler_settings(preset, m) for m in plan.methods}
    samplers = {m: make_sampler(m, **s, progress=console.level >= 1) for m, s in settings.items()}
    per_image = _operators(plan, preset, items, 3, console)
    operators = per_image[items[0].index]
    # the operator parameters, and that every method can take this operator, checked before the prior loads
    require_support(plan.methods, operators(plan.seed, torch.device("cpu")))
    console.detail(f"loading prior {plan.prior!r}" + (f" from {plan.checkpoint}" if plan.checkpoint else ""))
    prior = loaded_prior if loaded_prior is not None else load_prior(plan.prior, plan.checkpoint, device=device,
                                                                     class_label=plan.class_label)
    for m, smp in samplers.items():  # a schedule far beyond the prior's noise range: refused now (not garbage later)
        if getattr(smp, "sigma_max", None) is not None:
            check_start_sigma(float(smp.sigma_max), prior, m)
    channels = prior_channels(prior) or 3
    if channels != 3:
        per_image = _operators(plan, preset, items, channels, None)
        operators = per_image[items[0].index]
    readable, size = _readable_images(plan, items, prior, console)
    with torch.no_grad():  # an operator that cannot take this size (box too large, scale, a mask) fails now
        for it in readable if plan.kernel_dir or plan.mask_dir else readable[:1]:
            try:
                per_image[it.index](plan.seed, device).forward(torch.zeros(1, channels, *size, device=device))
            except SpgdError as e:
                raise SpgdError(f"{it.path.name}: {e}" if plan.kernel_dir or plan.mask_dir else str(e)) from None
    batch_size = plan.batch_size
    if batch_size == "auto":
        batch_size = auto_batch_size(prior, (channels, *size), device)
        console.info(f"batch_size auto: {batch_size} image(s) per batch on {device}")
    lpips, lpips_note = lpips_or_reason(plan.lpips_net, plan.lpips_weights or None, device)
    if plan.lpips_weights and lpips is None:  # a file was given: not computing LPIPS would ignore it
        raise SpgdError(f"{lpips_note}; fix lpips_weights=... or leave it out to skip LPIPS")
    fid_model = FIDInception(plan.fid_weights).to(device) if plan.fid_weights else None  # a bad file fails now
    return EvalSetup(device=device, items=readable, n_skipped=len(items) - len(readable), size=size,
                     samplers=samplers, sampler_settings=settings, operators=operators, prior=prior,
                     channels=channels, batch_size=int(batch_size), lpips=lpips, lpips_note=lpips_note,
                     fid_model=fid_model,
                     image_operators=per_image if plan.kernel_dir or plan.mask_dir else {})


def _operators(plan: EvalPlan, preset: dict, items: list[Item], channels: int,
               console: Optional[Console]) -> dict[int, OperatorFactory]:
    """Each image's operator factory (image index -> factory; one shared factory unless kernel_dir / mask_dir
    give per-image files) with the preset's parameters, the kernel/mask files and the prior's channels
    (`console`: where the files' notes go, the first time)."""
    factories = image_factories(plan.task, preset.get("operator", {}), [it.path for it in items], plan.kernel,
                                plan.mask, plan.kernel_dir, plan.mask_dir, plan.overrides, channels)
    for note in dict.fromkeys(n for f in factories for n in f.notes) if console is not None else []:
        console.warn(note)
    return {it.index: f for it, f in zip(items, factories)}


def _readable_images(plan: EvalPlan, items: list[Item], prior, console: Console) -> tuple[list[Item], tuple]:
    """The readable images (unreadable ones are skipped with a warning) and the size to restore at: the plan's,
    the prior's, else the first image's; every image of that size unless resize=True; checked for the prior."""
    size = plan.size or prior_image_size(prior)
    good: list[Item] = []
    for it in items:
        try:
            hw = probe_size(it.path)
        except SpgdError as e:
            console.warn(f"skipping {it.path.name}: {e}")
            continue
        if size is None:
            size = hw
        elif hw != tuple(size) and not plan.resize:
            raise SpgdError(
                f"image {it.path} is {hw[1]}x{hw[0]} (width x height) but this run needs "
                f"{size[1]}x{size[0]}: pass resize=True to center-crop and resize the images"
                + ("" if plan.size else " (or size=(H, W) to choose the size)")
            )
        good.append(it)
    if not good:
        raise SpgdError(f"none of the {len(items)} image file(s) in {plan.images_dir} could be read")
    size = tuple(size)
    check_image_size(size, prior, "pass size=(H, W) with resize=True",
                     "the images are" if plan.size is None else "size asks for")
    return good, size


def settings_resolved(plan: EvalPlan, setup: EvalSetup, world_size: int = 1) -> dict:
    """settings.json's "resolved" of an eval run: what the plan came to (`world_size`: processes that share the
    run, informative: results do not depend on it)."""
    return {
        "identity": plan.identity(),
        "images": selection(setup.items),  # the images restored (resuming checks that they are the same)
        "preset": plan.preset(),
        "operator": setup.operators.recorded if not setup.image_operators else  # what was used (a file, not the
        {"task": plan.task, "per_image": "records/NAME.json: operator"},  # preset's; per image with the folders)
        "samplers": setup.sampler_settings,
        "image_size": list(setup.size),
        "batch_size": setup.batch_size,
        "device": str(setup.device),
        "threads": torch.get_num_threads(),  # CPU: the thread count fixes the order of sums, hence the last bits
        "network": execution_label(setup.prior),
        "world_size": world_size,
        "lpips": setup.lpips_note,
        "lpips_label": setup.lpips_label,
        "fid": None if setup.fid_model is None else {"weights": str(plan.fid_weights), "resize": "pytorch-fid"},
        "seeding": SEEDING,
    }


# identity keys that runs of earlier versions did not record: compared only where the run has them
LATER_IDENTITY_KEYS = ("limit",)


def check_resumable(run_dir: Path, plan: EvalPlan, setup: Optional[EvalSetup] = None) -> None:
    """A run folder to resume is an `spgd eval` run of the same experiment: the same identity (the settings that
    change results, the selection of images included: limit), and, with `setup`, the same images (names,
    contents, sorted order, hence seeds) at the same size."""
    saved = read_run_settings(run_dir, "eval")
    resolved = saved.get("resolved", {})
    old = resolved.get("identity", {})
    now = {k: v for k, v in plan.identity().items() if k in old or k not in LATER_IDENTITY_KEYS}
    diffs = identity_differences(old, now)
    if setup is not None:
        if resolved.get("images") is not None:
            diffs += selection_differences(resolved["images"], selection(setup.items))
        if resolved.get("image_size") is not None and list(resolved["image_size"]) != list(setup.size):
            diffs.append(f"image size (run: {resolved['image_size'][1]}x{resolved['image_size'][0]}, now: "
                         f"{setup.size[1]}x{setup.size[0]}, width x height)")
    if diffs:
        raise SpgdError(
            f"refusing to resume {run_dir}: it would not be the same experiment: {'; '.join(diffs)}; "
            "run without resume=... for a new run folder"
        )


# ----------------------------------------------------------------------------------------------------------
# the run


@dataclass
class EvalSummary:
    """What an evaluation did: the record a pipeline returns (the tables hold its numbers)."""

    run_dir: Path
    n_images: int  # images of this run (after the limit and skipping unreadable ones)
    n_done_before: int
    n_done_now: int
    n_skipped: int
    interrupted: bool = False
    tables: dict = field(default_factory=dict)
    rank: int = 0  # in a distributed run only rank 0's summary covers the whole run (and holds the tables)
    angles: Optional[str] = None  # angles.png (telemetry=True, a single process), relative to run_dir

    @property
    def n_failed(self) -> int:
        return sum(v.get("n_failed", 0) for v in self.tables.get("per_method", {}).values())


def evaluate(plan: EvalPlan, out: PathLike = "runs", resume: Optional[PathLike] = None,
             console: Optional[Console] = None, argv: Optional[list[str]] = None,
             progress: Optional[Progress] = None, loaded_prior: Any = None) -> EvalSummary:
    """Evaluate in one process: into a new run folder under `out` (created once the set-up has passed), or into
    the run folder `resume` (only the images without a result). `progress` is called after every level of every
    restoration (spgd.experiment.progress); `loaded_prior` as in :func:`set_up`."""
    console = console or Console()
    if resume is not None:
        with RunLock(resume, "eval"):  # before the set-up: a run in use is said at once
            return _evaluate_in(plan, set_up(plan, console, loaded_prior), Path(resume), True, console, argv, progress)
    check_writable(out)
    setup = set_up(plan, console, loaded_prior)
    run_dir = new_run_dir(out, "eval", plan.task)
    with RunLock(run_dir, "eval"):
        return _evaluate_in(plan, setup, run_dir, False, console, argv, progress)


def evaluate_in(plan: EvalPlan, run_dir: PathLike, console: Optional[Console] = None,
                argv: Optional[list[str]] = None) -> EvalSummary:
    """Evaluate in one process into the folder `run_dir` (a sweep's cell): resumed when it holds a run's
    settings.json, else started there."""
    console = console or Console()
    run_dir = Path(run_dir)
    setup = set_up(plan, console)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir, "eval"):
        return _evaluate_in(plan, setup, run_dir, (run_dir / "settings.json").is_file(), console, argv)


def _evaluate_in(plan: EvalPlan, setup: EvalSetup, run_dir: Path, resume: bool, console: Console,
                 argv: Optional[list[str]], progress: Optional[Progress] = None) -> EvalSummary:
    """The run of a set-up evaluation in `run_dir`; a new run that fails before its first result leaves no
    folder behind."""
    if resume:
        check_resumable(run_dir, plan, setup)
    else:
        provenance(run_dir, "eval", plan, settings_resolved(plan, setup), argv)
    try:
        return Evaluation(plan, setup, run_dir, console, progress).run()
    except Exception:
        if not resume and not any((run_dir / "records").glob("*.json")):
            shutil.rmtree(run_dir, ignore_errors=True)  # failed before the first result: leave no junk folder
        raise


def restored_path(method: str, name: str, sample: int, several_methods: bool) -> str:
    stem = name if sample == 0 else f"{name}-s{sample}"
    return f"restored/{method}/{stem}.png" if several_methods else f"restored/{stem}.png"


class Evaluation:
    """The work of one `spgd eval` run into `run_dir` (new, or resumed), once it is set up."""

    def __init__(self, plan: EvalPlan, setup: EvalSetup, run_dir: Path, console: Console,
                 progress: Optional[Progress] = None):
        self.plan = plan
        self.setup = setup
        self.run_dir = Path(run_dir)
        self.console = console
        self.progress = progress
        self.several = len(plan.methods) > 1
        self.n_skipped = setup.n_skipped  # grows when an image turns out unreadable at its turn
        self.telemetries: dict[str, list[GradientTelemetry]] = {}  # telemetry=True: this call's, per method
        self._position = (0, 1)  # the batch's first image among this call's images, and their number

    def pending(self) -> list[Item]:
        """The images of this run without a complete record (in index order)."""
        return [it for it in self.setup.items if not self._has_complete_record(it)]

    def _has_complete_record(self, it: Item) -> bool:
        """Whether records/NAME.json exists, is readable, is this image's (same index) and covers every method."""
        path = self.run_dir / "records" / f"{it.name}.json"
        if not path.is_file():
            return False
        try:
            rec = read_json(path)
        except SpgdError:
            return False
        return rec.get("index") == it.index and set(rec.get("methods", {})) == set(self.plan.methods)

    def run(self, rank: int = 0, world_size: int = 1, pending: Optional[Sequence[int]] = None) -> EvalSummary:
        """Restore and score the images not done yet. Process `rank` of `world_size` takes its contiguous block
        of them (:func:`spgd.experiment.runs.shard`); all processes must pass the same `pending` (indices of the
        images to do, default: those without a record now), so that they agree on the blocks. Only a single
        process writes the tables here; a distributed run merges them once all are done."""
        plan, setup = self.plan, self.setup
        if pending is None:
            remaining = self.pending()
        else:
            wanted = set(pending)
            remaining = [it for it in setup.items if it.index in wanted]
        todo = shard(remaining, rank, world_size)
        n_before = len(setup.items) - len(remaining)
        share = "" if world_size == 1 else f", {len(todo)} on rank {rank} of {world_size}"
        self._announce(len(remaining), n_before, share)
        summary = EvalSummary(self.run_dir, len(setup.items), n_before, 0, self.n_skipped)
        bar = self.console.progress(len(todo), desc=f"eval {plan.task}")
        try:
            for batch in self._batches(todo):
                self._position = (summary.n_done_now, len(todo))
                records = self._restore_batch(batch)
                summary.n_done_now += len(records)
                bar.update(len(batch))
                last = records[-1]["methods"][plan.methods[0]]
                if last.get("psnr") is not None:
                    bar.set_postfix_str(f"{plan.methods[0]} PSNR {last['psnr']:.2f}")
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            summary.n_skipped = self.n_skipped
            if rank == 0 and world_size == 1:
                summary.tables = write_tables(self.run_dir, setup.size, plan.resize)
                summary.angles = self._write_angles()
        return summary

    def _write_angles(self) -> Optional[str]:
        """angles.png of this call's restorations (telemetry=True), one panel per method that has levels."""
        tels = {m: GradientTelemetry.concat(t) for m, t in self.telemetries.items() if t}
        if not tels:
            return None
        plot_angles(tels, self.run_dir / "angles.png", title=f"{self.plan.task}, prior {self.plan.prior}")
        return "angles.png"

    def _announce(self, n_remaining: int, n_before: int, share: str) -> None:
        """The status lines before the work: LPIPS, what is left to do (`share`: this rank's part) and how."""
        plan, setup, con = self.plan, self.setup, self.console
        con.info(setup.lpips_note)
        con.info(
            f"{plan.task}: {n_remaining} image(s) to do ({n_before} already done{share}) with "
            f"{', '.join(plan.methods)} on {setup.device}, prior {plan.prior}, {setup.size[1]}x{setup.size[0]} "
            f"(WxH), batch size {setup.batch_size}, network {execution_label(setup.prior)}"
        )

    def _batches(self, todo: list[Item]) -> Iterator[list[tuple[Item, Tensor, list[str]]]]:
        """Batches of up to batch_size consecutive (by index) readable images, loaded."""
        batch: list[tuple[Item, Tensor, list[str]]] = []
        for it in todo:
            try:
                x, notes = io.load_image(it.path, self.setup.size, self.plan.resize, self.setup.channels)
            except SpgdError as e:
                self.console.warn(f"skipping {it.path.name}: {e}")
                self.n_skipped += 1
                continue
            for note in notes:  # a format conversion is news; the crop/resize asked for is not
                (self.console.detail if is_asked_for(note) else self.console.warn)(f"{it.path.name}: {note}")
            if batch and (len(batch) == self.setup.batch_size or batch[-1][0].index + 1 != it.index
                          or self.setup.operator_of(it).part_shapes() != self.setup.operator_of(batch[0][0]).part_shapes()):
                yield batch
                batch = []
            batch.append((it, x, notes))
        if batch:
            yield batch

    def _restore_batch(self, batch: list[tuple[Item, Tensor, list[str]]]) -> list[dict]:
        """Degrade, restore with every method, score and record one batch; returns its records (also written)."""
        items = [b[0] for b in batch]
        x = torch.cat([b[1] for b in batch]).to(self.setup.device)
        seeds = [image_seed(self.plan.seed, it.index) for it in items]
        op = self.setup.batch_operator(items)(seeds[0], self.setup.device)
        y = measure_per_image(op, x, [noise_seed(s) for s in seeds])
        records = self._measurement_records(batch, seeds, op, x, y)
        for m in self.plan.methods:
            self._restore_with(m, items, seeds, op, x, y, records)
        self._write_records(records)
        return records

    def _measurement_records(self, batch: list, seeds: list[int], op, x: Tensor, y: Tensor) -> list[dict]:
        """Save each image's measurement (and random parts) and start its record with the measurement's scores."""
        items = [b[0] for b in batch]
        x01 = io.to_unit(x.clamp(-1, 1))
        base, base_kind = measurement_baseline(op, self.plan.task, y, x)
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
                **({"operator": self.setup.operator_of(it).recorded} if self.setup.image_operators else {}),
                "methods": {},
            })
        return records

    def _restore_with(self, method: str, items: list[Item], seeds: list[int], op, x: Tensor, y: Tensor,
                      records: list[dict]) -> None:
        """Restore the batch `samples` times with `method` (sample s of image i seeded derive_seed(seed_i, 1, s))
        and add the method's entry to each record."""
        setup, samples = self.setup, self.plan.samples
        per_image: list[list[dict]] = [[] for _ in items]
        cost: list[dict] = []
        sampler = setup.samplers[method]
        moments = SampleMoments() if samples > 1 and getattr(sampler, "stochastic", True) else None
        first, n_images = self._position
        where = {"image": items[0].name, "image_index": first, "images": n_images, "method": method,
                 "method_index": self.plan.methods.index(method), "methods": len(self.plan.methods)}
        for s in range(samples):
            gens = sample_generators(seeds, s, setup.device)
            tel = telemetry_recorder() if self.plan.telemetry and s == 0 else None
            callback = sampler_callback(self.progress, tel, where, run_steps(sampler), tuple(x.shape))
            result = run_sampler(sampler, y, op, setup.prior, generator=gens, x_shape=tuple(x.shape),
                                 callback=callback)
            if tel is not None and len(tel):
                tel.save_csv(self.run_dir / "telemetry" / method / f"{items[0].name}.csv")
                self.telemetries.setdefault(method, []).append(tel)
            cost.append(result.stats.as_dict())
            x_hat = result.x.detach()
            scored = self._score_sample(method, s, items, result.stats, op, x, y, x_hat)
            if moments is not None:  # the images as saved and scored
                moments.add(x_hat.clamp(-1, 1), [not sample["failed"] for sample in scored])
            for j, sample in enumerate(scored):
                per_image[j].append(sample)
        for j, rec in enumerate(records):
            rec["methods"][method] = _method_record(per_image[j], cost, setup.lpips_label,
                                                    setup.sampler_settings[method])
        if moments is not None:
            for rec, summary in zip(records, self._sample_summaries(method, items, moments, x)):
                rec["methods"][method]["mean_of_samples"] = summary

    def _score_sample(self, method: str, s: int, items: list[Item], stats, op, x: Tensor, y: Tensor,
                      x_hat: Tensor) -> list[dict]:
        """Save sample s of each image and score it: PSNR, SSIM, LPIPS, the data fit, and whether it failed
        (the sampler's own verdict, a non-finite score, or the residual part of the divergence rule)."""
        setup = self.setup
        x01, xh01 = io.to_unit(x.clamp(-1, 1)), io.to_unit(x_hat.clamp(-1, 1))
        psnr, ssim = metrics.psnr(xh01, x01).tolist(), metrics.ssim(xh01, x01).tolist()
        # the data fit and the image range, for every method (spgd.verdict): run_sampler judged x_hat already
        verdicts = list(stats.verdict) if len(stats.verdict) == len(items) else judge(x_hat, y, op)
        rms = [v.residual for v in verdicts]
        fit_bad = [v.failed for v in verdicts]
        lpips = setup.lpips(x_hat.clamp(-1, 1), x.clamp(-1, 1)).tolist() if setup.lpips is not None else None
        failed = list(stats.failed) if stats.failed else [False] * len(items)
        reasons = list(getattr(stats, "failure_reason", None) or [None] * len(items))
        reasons = [r or (v.reason if v.failed else None) for r, v in zip(reasons, verdicts)]
        failed = [bool(f) or not math.isfinite(p) or b for f, p, b in zip(failed, psnr, fit_bad)]
        if s == 0:  # FID/KID: one restoration per image (the first sample), failed ones left out
            self._save_fid_features(method, [it for it, f in zip(items, failed) if not f],
                                    xh01[torch.tensor([not f for f in failed], device=xh01.device)])
        samples = []
        for j, it in enumerate(items):
            path = restored_path(method, it.name, s, self.several)
            io.save_image(x_hat[j], self.run_dir / path)
            ok = not failed[j]
            sample = {
                "sample": s, "restored": path, "failed": failed[j],
                "failed_at_step": stats.failed_at_step[j] if stats.failed_at_step else None,
                "failure_reason": reasons[j] or ("non-finite scores" if failed[j] else None),
                "psnr": psnr[j] if ok else None, "ssim": ssim[j] if ok else None, "rms_residual": rms[j] if ok else None,
                "verdict": verdicts[j].as_dict(),
            }
            if failed[j] and not verdicts[j].failed:  # the sampler's own rule (diverged), or a non-finite score
                sample["verdict"].update(status=FAILED, reason=sample["failure_reason"])
            if lpips is not None:
                sample[setup.lpips_label] = lpips[j] if ok else None
            samples.append(sample)
        return samples

    def _write_records(self, records: list[dict]) -> None:
        """records/NAME.json of each image (its result is kept from now on), with a detail line per method."""
        for rec in records:
            rec["device"] = str(self.setup.device)
            rec["batch_size"] = len(records)
            rec["finished"] = utc_now()
            atomic_write_json(self.run_dir / "records" / f"{rec['name']}.json", rec)
            for m, r in rec["methods"].items():
                self.console.detail(
                    f"{rec['name']} {m}: PSNR {number(r['psnr'])} SSIM {number(r['ssim'], '.4f')} "
                    f"({r['seconds']:.1f} s/img, {r['failed']} failed, {r.get('under_fit', 0)} under-fit)"
                )

    def _save_fid_features(self, method: str, items: list, images01: Tensor) -> None:
        """Inception features of each image, fid_features/METHOD/NAME.pt (FID/KID need the whole set)."""
        if self.setup.fid_model is None or not items:
            return
        with torch.no_grad():
            feats = self.setup.fid_model(images01).cpu()
        for it, f in zip(items, feats):
            atomic_torch_save(self.run_dir / "fid_features" / method / f"{it.name}.pt", f.clone())

    def _sample_summaries(self, method: str, items: list, moments: SampleMoments, x: Tensor) -> list[Optional[dict]]:
        """Per image: the mean of its samples (scored like a restoration) and the per-pixel standard deviation
        over them (saved as a heat map); None where fewer than two samples succeeded."""
        setup = self.setup
        mean, std = moments.mean_std()
        x01, m01 = io.to_unit(x.clamp(-1, 1)), io.to_unit(mean)
        psnr, ssim = metrics.psnr(m01, x01).tolist(), metrics.ssim(m01, x01).tolist()
        lpips = setup.lpips(mean, x.clamp(-1, 1)).tolist() if setup.lpips is not None else None
        out: list[Optional[dict]] = []
        for j, (it, n) in enumerate(zip(items, moments.counts())):
            if n < 2:
                out.append(None)
                continue
            mean_path, unc_path = sample_summary_paths(method, it.name, self.several)
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
                entry[setup.lpips_label] = lpips[j]
            out.append(entry)
        return out


def mean_of(values: Sequence[Optional[float]]) -> Optional[float]:
    """The mean of the values that are numbers, or None."""
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _method_record(samples: list[dict], cost: list[dict], lpips_label: Optional[str], settings: dict) -> dict:
    """A method's entry in an image's record: the mean scores over its samples that did not fail, the cost of
    one restoration, each sample, the settings."""
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
        # the verdicts (spgd.verdict): samples kept but flagged, and the mean fit (residual / noise level)
        "under_fit": sum(1 for s in ok if (s.get("verdict") or {}).get("status") == UNDER_FIT),
        "fit": mean_of([(s.get("verdict") or {}).get("fit") for s in ok]),
        # cost of one restoration (the mean over samples); seconds = batch time / batch size
        "denoiser_calls": float(np.mean([c["denoiser_calls"] for c in cost])),
        "vjps": float(np.mean([c["vjps"] for c in cost])),
        "decoder_calls": float(np.mean([c.get("decoder_calls", 0) for c in cost])),  # latent priors' VAE
        # per image: all its samples (the sampler's seconds_per_image is per restoration, one sample)
        "seconds": float(np.sum([c["seconds_per_image"] for c in cost])),
        "seconds_per_sample": float(np.mean([c["seconds_per_image"] for c in cost])),
        "peak_memory_bytes": max((c["peak_memory_bytes"] or 0) for c in cost) or None,
        "peak_memory_kind": cost[0]["peak_memory_kind"],
        "samples": samples,
        "settings": settings,
    }
    if lpips_label:
        out[lpips_label] = mean(lpips_label)
    return out
