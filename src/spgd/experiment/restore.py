"""`spgd restore` (real measurements with a known degradation, no ground truth: one file, or a folder of degraded
photos of any sizes with per-image kernels or masks) and `spgd demo` (the bundled photo).

Python: ``restore(RestorePlan("blurry.png", "gaussian_blur", prior="gaussian"))`` writes a run folder and returns
a :class:`RestoreRecord`; ``run_demo(DemoPlan())`` restores the bundled photo and returns a :class:`DemoRecord`.

Run folder of one file: restored.png (restored-sS.png, restored-mean.png, uncertainty.png with samples S >= 2),
measurement.png, settings.json (the outcome in "resolved"), telemetry.csv and angles.png with telemetry=True.
Run folder of a folder of measurements (each image restored at its own size, never resized)::

    settings.json          the plan, what it resolved to, the images restored and skipped
    records/NAME.json      one image: its source, seed, the kernel / mask file it used, sizes, fit, failure, cost
    restored/NAME.png      (NAME-sS.png for sample S >= 1); mean/NAME.png, uncertainty/NAME.png with samples >= 2
    measurement/NAME.png   the measurement as a picture
    results.csv            one row per image
    telemetry/NAME.csv, angles.png   with telemetry=True
"""

from __future__ import annotations

import csv
import io as io_text
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import io, metrics
from ..api import run_sampler  # latent priors run on z and are decoded at the end
from ..data import DEMO_IMAGE
from ..device import resolve_device
from ..errors import SpgdError
from ..presets import apply_overrides, load_preset, sampler_settings
from ..priors import load_prior
from ..priors.base import prior_channels
from ..samplers import make_sampler
from ..samplers.catalog import require_support
from ..samplers.base import Stats, infer_x_shape
from ..verdict import Verdict, judge
from ..diagnostics.plots import plot_angles
from ..diagnostics.telemetry import GradientTelemetry
from .console import Console
from .images import MIN_SIDE, Item, check_image_size, list_items, size_multiple
from .measurement import (
    INPAINTING, OperatorFactory, image_factories, load_measurement, measure_per_image, viewable,
)
from .progress import Progress, run_steps, sampler_callback, telemetry_recorder
from .runs import PathLike, atomic_write_json, atomic_write_text, check_writable, new_run_dir, provenance
from .samples import UNCERTAINTY_VMAX, SampleMoments, write_sample_summary
from .seeding import image_seed, noise_seed, sample_generators, sample_seed
from .tables import write_grid

DEMO_TASK = "inpainting_random"  # 80 % of the pixels missing: a restoration anyone can see, cheap on a CPU
DEMO_STEPS = 20  # 28 s on an idle 2-core CPU with the bundled prior at 256x256 (the paper uses 200)
DEMO_WARMUP = 2  # the paper uses 5
PAD_TASKS = ("gaussian_blur", "motion_blur", "super_resolution", "inpainting_box", "inpainting_random", "hdr",
             "denoising")


# ----------------------------------------------------------------------------------------------------------
# spgd restore


@dataclass
class RestorePlan:
    """What to restore, and how: one measurement file, or a folder of degraded photos (no ground truth)."""

    measurement: PathLike  # the degraded image (png, jpg, ...) or a .npy/.pt tensor; or a folder of degraded images
    task: str
    method: str = "spgd"
    overrides: list[str] = field(default_factory=list)  # key=value over the task's preset (spgd.presets)
    prior: str = "default"
    checkpoint: Optional[str] = None
    class_label: Optional[int] = None
    kernel: Optional[str] = None  # the blur kernel of the measurement(s) (gaussian/motion blur), one for all
    mask: Optional[str] = None  # the mask of the measurement(s) (inpainting), white/1 = kept pixel, one for all
    kernel_dir: Optional[str] = None  # one kernel per image, by file stem: photo.png takes kernel_dir/photo.pt, ...
    mask_dir: Optional[str] = None  # one mask per image, by file stem: photo.png takes mask_dir/photo.png, ...
    seed: int = 0  # image i (a folder's sorted order; a file is image 0) has seed + i (spgd.experiment.seeding)
    samples: int = 1  # restorations in one batch; with >= 2, their mean and per-pixel standard deviation too
    pad: bool = False  # restore a padded image where the network cannot take the size, then crop it back
    telemetry: bool = False  # record the gradient-angle telemetry (spgd.diagnostics): CSV and angles.png
    device: Optional[str] = None

    def __post_init__(self) -> None:
        self.measurement = str(self.measurement)
        self.overrides = list(self.overrides)

    def preset(self) -> dict:
        return apply_overrides(load_preset(self.task), self.overrides, [self.method])

    def validate(self) -> None:
        """Refuse what cannot be restored before anything is loaded."""
        if self.samples < 1:
            raise SpgdError(f"samples must be >= 1, got {self.samples}")
        if self.task in INPAINTING and self.mask is None and self.mask_dir is None:
            raise SpgdError(f"{self.task} needs the mask of the measurement: mask=FILE (white/1 = kept pixel), or "
                            "mask_dir=DIR with one mask per image")
        if self.task == "motion_blur" and self.kernel is None and self.kernel_dir is None:
            raise SpgdError("motion_blur needs the blur kernel of the measurement: kernel=FILE (.npy, .png or .pt), "
                            "or kernel_dir=DIR with one kernel per image")
        if self.task == "nonlinear_blur":
            raise SpgdError("nonlinear_blur cannot be restored from a file: its kernel code is random, not known")
        if self.pad and self.task not in PAD_TASKS:
            raise SpgdError(f"pad=True is not available for {self.task} (its measurement is not an image of the "
                            f"same layout); tasks: {', '.join(PAD_TASKS)}")


@dataclass(frozen=True)
class Problem:
    """What `spgd restore` solves: the measurement y and its operator, the restored image's shape and (run_*)
    the same padded to sides the prior's network takes (equal to them without pad)."""

    y: Tensor
    op: Any
    x_shape: tuple
    run_y: Tensor
    run_op: Any
    run_shape: tuple

    @property
    def out_hw(self) -> tuple:
        return tuple(self.x_shape[-2:])


@dataclass(frozen=True)
class Fit:
    """How well each restored sample explains the measurement."""

    residuals: Tensor  # sqrt(mean((A(x_hat) - y)^2)) per sample
    misfit: list[bool]  # the verdict says the sample is garbage (for every method: spgd.verdict)
    ok: list[bool]  # finite, not failed in the sampler, not misfit
    verdicts: list = field(default_factory=list)  # spgd.verdict.Verdict per sample


@dataclass(frozen=True)
class Layout:
    """Where one image's files go, relative to the run folder: a file's run has flat names (restored.png, ...),
    a folder's run one sub-folder per kind, named after the image (restored/NAME.png, mean/NAME.png, ...)."""

    restored: str
    measurement: str
    mean: str
    uncertainty: str
    telemetry: str

    @classmethod
    def of_file(cls) -> "Layout":
        return cls("restored.png", "measurement.png", "restored-mean.png", "uncertainty.png", "telemetry.csv")

    @classmethod
    def of_folder(cls, name: str) -> "Layout":
        return cls(f"restored/{name}.png", f"measurement/{name}.png", f"mean/{name}.png", f"uncertainty/{name}.png",
                   f"telemetry/{name}.csv")

    def sample(self, s: int) -> str:
        """Sample s's file (s = 0: `restored`, then restored-s1.png, ...)."""
        stem, _, ext = self.restored.rpartition(".")
        return self.restored if s == 0 else f"{stem}-s{s}.{ext}"


@dataclass
class ImageOutcome:
    """One restored image: its files (relative to the run folder), how well its first sample fits, its cost."""

    name: str
    source: Path  # the measurement file
    restored: str  # the first sample
    samples: list[str]  # every sample, the first included
    measurement: str  # the measurement as a picture
    failed: bool  # the first sample diverged
    failure_reason: Optional[str]
    rms_residual: float  # sqrt(mean((A(x_hat) - y)^2)) of the first sample: about noise_sigma when it fits
    noise_sigma: float
    stats: Stats
    mean_of_samples: Optional[dict]  # with two or more good samples: their mean and uncertainty files
    telemetry: Optional[str]  # the telemetry CSV (telemetry=True)
    record: dict  # everything known about it: records/NAME.json of a folder's run
    verdict: Optional[Verdict] = None  # the first sample judged against the measurement (spgd.verdict)


@dataclass
class RestoreRecord:
    """What a restore run came to: its folder, each restored image, the files skipped. The single-image fields
    (failure_reason, rms_residual, noise_sigma, stats, mean_of_samples) are the first image's: the only one of
    a file's run."""

    run_dir: Path
    images: list[ImageOutcome]
    skipped: list[str] = field(default_factory=list)  # unreadable files of a folder, each with the reason
    angles: Optional[str] = None  # angles.png (telemetry=True and a method with levels)
    folder: bool = False  # a folder was restored (records/, restored/, ... in the run folder)
    telemetry: Optional[GradientTelemetry] = None  # what angles.png shows: every image's telemetry, joined

    @property
    def failed(self) -> bool:
        """Whether a restoration diverged."""
        return any(im.failed for im in self.images)

    @property
    def failure_reason(self) -> Optional[str]:
        return next((im.failure_reason for im in self.images if im.failed), None)

    @property
    def rms_residual(self) -> float:
        return self.images[0].rms_residual

    @property
    def noise_sigma(self) -> float:
        return self.images[0].noise_sigma

    @property
    def stats(self) -> Stats:
        return self.images[0].stats

    @property
    def mean_of_samples(self) -> Optional[dict]:
        return self.images[0].mean_of_samples

    @property
    def verdict(self) -> Optional[Verdict]:
        return self.images[0].verdict


def restore_inputs(measurement: PathLike) -> tuple[list[Item], bool]:
    """The measurements to restore and whether they are a folder's: a folder's images (sorted; image i has seed
    + i), or the one file as image 0."""
    path = Path(measurement)
    if path.is_dir():
        return list_items(path), True
    if not path.is_file():
        raise SpgdError(f"measurement file not found: {path}")
    return [Item(0, path, path.stem)], False


def restore(plan: RestorePlan, out: PathLike = "runs", console: Optional[Console] = None,
            argv: Optional[list[str]] = None, progress: Optional[Progress] = None,
            loaded_prior: Any = None) -> RestoreRecord:
    """Restore a measurement file, or every image of a folder of degraded photos, into a new run folder under
    `out` (created once the first restoration is done: a failure or an interrupt before leaves nothing behind).

    Image i (a folder's sorted order; a file is image 0) follows the seeding rule with seed + i, as in `spgd eval`;
    with samples S >= 2 it is restored S times in one batch. A folder's images keep their own sizes (each is
    restored alone, padded with pad=True, never resized), each with its own kernel / mask from kernel_dir /
    mask_dir; everything is read and checked before the first restoration. `progress` is called after every
    level of every restoration (spgd.experiment.progress). `loaded_prior`: the prior the plan names, already
    loaded (a server that keeps it between runs); loaded from the plan otherwise."""
    con = console or Console()
    plan.validate()
    check_writable(out)  # a mistyped or read-only out fails now, not after the restoration
    dev = resolve_device(plan.device)
    items, folder = restore_inputs(plan.measurement)
    preset = plan.preset()
    settings = sampler_settings(preset, plan.method)
    sampler, samples = _sampler(plan, settings, con)
    params = preset.get("operator", {})
    files = [it.path for it in items]
    factories = image_factories(plan.task, params, files, plan.kernel, plan.mask, plan.kernel_dir, plan.mask_dir,
                                plan.overrides)  # every kernel / mask file found and read before the prior loads
    require_support([plan.method], factories[0](image_seed(plan.seed, 0), torch.device("cpu")))
    prior = loaded_prior if loaded_prior is not None else load_prior(plan.prior, plan.checkpoint, device=dev,
                                                                     class_label=plan.class_label)
    channels = prior_channels(prior) or 3
    if channels != 3:
        factories = image_factories(plan.task, params, files, plan.kernel, plan.mask, plan.kernel_dir,
                                    plan.mask_dir, plan.overrides, channels)
    for note in dict.fromkeys(n for f in factories for n in f.notes):
        con.warn(note)
    todo, skipped, ready = _checked_inputs(plan, items, factories, prior, dev, folder, con)
    run = _RestoreRun(plan, out, argv, con, progress, folder, sampler, samples, prior, dev, len(todo))
    try:
        for n, (it, factory) in enumerate(todo):
            problem, notes = ready if ready is not None else _prepare(plan, it, factory, prior, dev, con)
            run.restore_image(n, it, factory, problem, notes)
    except BaseException:
        run.abandon()
        raise
    return run.finish(preset, settings, skipped)


def _checked_inputs(plan: RestorePlan, items: list[Item], factories: list[OperatorFactory], prior, dev,
                    folder: bool, con: Console) -> tuple[list, list[str], Optional[tuple]]:
    """The (image, operator factory) pairs to restore, the folder's unreadable files (skipped, with a warning)
    and, for a single file, its prepared (problem, notes). Every image is read and checked against its operator
    and the prior (size, kernel / mask fit) here, before the first restoration."""
    todo, skipped = [], []
    ready = None
    for it, factory in zip(items, factories):
        if folder:
            try:
                load_measurement(str(it.path))
            except SpgdError as e:
                con.warn(f"skipping {it.path.name}: {e}")
                skipped.append(f"{it.path.name}: {e}")
                continue
            try:
                _prepare(plan, it, factory, prior, dev, Console(0))
            except SpgdError as e:
                raise SpgdError(f"{it.path.name}: {e}") from None
        else:
            ready = _prepare(plan, it, factory, prior, dev, con)
        todo.append((it, factory))
    if not todo:
        raise SpgdError(f"none of the {len(items)} image file(s) in {plan.measurement} could be read")
    return todo, skipped, ready


def _prepare(plan: RestorePlan, it: Item, factory: OperatorFactory, prior, dev, con: Console
             ) -> tuple[Problem, list[str]]:
    """One measurement read and set up as the problem to solve (its reading's notes with it)."""
    y, notes = load_measurement(str(it.path))
    problem = restoration_problem(plan, y, notes, factory, prior, image_seed(plan.seed, it.index), dev, con,
                                  str(it.path))
    return problem, notes


class _RestoreRun:
    """The run folder of one `restore` call as its images are restored: created with the first result, one
    record per image, the tables and the telemetry plot at the end."""

    def __init__(self, plan: RestorePlan, out: PathLike, argv: Optional[list[str]], con: Console,
                 progress: Optional[Progress], folder: bool, sampler, samples: int, prior, dev, n_images: int):
        self.plan, self.out, self.argv, self.con, self.progress = plan, out, argv, con, progress
        self.folder, self.sampler, self.samples, self.prior, self.dev = folder, sampler, samples, prior, dev
        self.n_images = n_images
        self.run_dir: Optional[Path] = None
        self.outcomes: list[ImageOutcome] = []
        self.telemetries: list[GradientTelemetry] = []
        self.operators: list[dict] = []

    def restore_image(self, n: int, it: Item, factory: OperatorFactory, problem: Problem, notes: list[str]) -> None:
        """Restore image `it` (the n-th of this call) and write its files."""
        plan, con = self.plan, self.con
        for note in notes:  # a format conversion is news (a warning); raw .npy/.pt values are as documented
            (con.info if note.startswith("raw values") else con.warn)(f"{it.path}: {note}")
        con.info(f"restoring {it.path} ({plan.task}, {plan.method}, prior {plan.prior})"
                 + (f" [{n + 1}/{self.n_images}]" if self.folder else ""))
        seed = image_seed(plan.seed, it.index)
        batch, generator = sample_batch(problem, seed, self.samples, self.dev)
        tel = telemetry_recorder() if plan.telemetry else None
        where = {"image": it.name, "image_index": n, "images": self.n_images, "method": plan.method,
                 "method_index": 0, "methods": 1}
        callback = sampler_callback(self.progress, tel, where, run_steps(self.sampler),
                                    (batch.x_shape[0], batch.x_shape[1], *batch.out_hw))
        result = run_sampler(self.sampler, batch.run_y, batch.run_op, self.prior, generator=generator,
                             x_shape=batch.run_shape, callback=callback)
        if plan.pad:  # back to the measurement's own size
            result.x = result.x[..., : batch.out_hw[0], : batch.out_hw[1]].contiguous()
        if self.run_dir is None:
            self.run_dir = new_run_dir(self.out, "restore", plan.task)
        layout = Layout.of_folder(it.name) if self.folder else Layout.of_file()
        outcome = self._write_image(layout, it, seed, batch, result, factory, notes, tel)
        self.outcomes.append(outcome)
        self.operators.append(factory.recorded)
        if tel is not None and len(tel):
            self.telemetries.append(tel)
        if self.folder:
            atomic_write_json(self.run_dir / "records" / f"{it.name}.json", outcome.record)

    def _write_image(self, layout: Layout, it: Item, seed: int, problem: Problem, result, factory: OperatorFactory,
                     notes: list[str], tel: Optional[GradientTelemetry]) -> ImageOutcome:
        assert self.run_dir is not None
        fit = measurement_fit(problem, result)
        summary = write_restorations(self.run_dir, result.x, fit.ok, layout)
        view, view_note = viewable(problem.y[0])
        io.save_image(view, self.run_dir / layout.measurement)
        tel_path = None
        if tel is not None and len(tel):
            tel.save_csv(self.run_dir / layout.telemetry)
            tel_path = layout.telemetry
        reason = None
        if not fit.ok[0]:
            reason = (result.stats.failure_reason or [None])[0] or (fit.verdicts[0].reason if fit.misfit[0] else
                                                                     "non-finite values")
        sample_files = [layout.sample(s) for s in range(result.x.shape[0])]
        record = {
            "name": it.name, "file": it.path.name, "source": str(it.path.resolve()), "index": it.index, "seed": seed,
            "notes": notes + ([view_note] if view_note else []), "measurement": layout.measurement,
            "operator": factory.recorded,  # what was used (the image's kernel/mask file, not the preset's)
            "restored": sample_files, "telemetry": tel_path, "failure_reason": reason,
            "noise_sigma": float(getattr(problem.op, "noise_sigma", 0.0)),
            **outcome_record(problem, self.plan.pad, result, fit, summary),
        }
        return ImageOutcome(it.name, it.path, layout.restored, sample_files, layout.measurement, not fit.ok[0], reason,
                            float(fit.residuals[0]), record["noise_sigma"], result.stats, summary, tel_path, record,
                            fit.verdicts[0])

    def abandon(self) -> None:
        """An error or an interrupt: a run folder without a finished image is removed (a folder's images already
        restored are kept, with their records)."""
        if self.run_dir is not None and not self.outcomes:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def finish(self, preset: dict, settings: dict, skipped: list[str]) -> RestoreRecord:
        """settings.json, and: the telemetry plot; a folder's results.csv."""
        plan, run_dir = self.plan, self.run_dir
        assert run_dir is not None
        angles, telemetry = None, None
        if self.telemetries:
            title = f"{plan.task}, prior {plan.prior}" + (f", {len(self.outcomes)} images" if self.folder else "")
            telemetry = GradientTelemetry.concat(self.telemetries)
            plot_angles({plan.method: telemetry}, run_dir / "angles.png", title=title)
            angles = "angles.png"
        resolved = {"preset": preset, "sampler": settings, "device": str(self.dev)}
        if self.folder:
            write_results_csv(run_dir / "results.csv", [o.record for o in self.outcomes])
            resolved.update({
                "measurements": str(Path(plan.measurement).resolve()),
                "operator": self.operators[0] if plan.kernel_dir is None and plan.mask_dir is None else
                {"task": plan.task, "per_image": "records/NAME.json: operator"},
                "images": [o.name for o in self.outcomes], "skipped": skipped,
                "failed": [o.name for o in self.outcomes if o.failed], "angles": angles,
            })
        else:
            record = dict(self.outcomes[0].record)
            resolved.update({
                "measurement": record.pop("source"), "measurement_notes": record.pop("notes"),
                "operator": record.pop("operator"), "angles": angles,
                **{k: v for k, v in record.items() if k not in ("name", "file", "index", "measurement", "restored")},
            })
        provenance(run_dir, "restore", plan, resolved, self.argv)
        return RestoreRecord(run_dir, self.outcomes, skipped, angles, self.folder, telemetry)


RESULT_COLUMNS = ("name", "file", "width", "height", "padded_to", "kernel", "mask", "rms_residual", "noise_sigma",
                  "failed", "failure_reason", "seconds", "denoiser_calls", "vjps", "samples")


def write_results_csv(path: Path, records: list[dict]) -> None:
    """A folder's results.csv: one row per restored image (its size, the kernel / mask file it used, its data fit
    against the noise level, failure and cost)."""
    buf = io_text.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(RESULT_COLUMNS))
    writer.writeheader()
    for r in records:
        size, pad = r["output_size"], r.get("padded_to")
        writer.writerow({
            "name": r["name"], "file": r["file"], "width": size["width"], "height": size["height"],
            "padded_to": "" if not pad else f"{pad['width']}x{pad['height']}",
            "kernel": r["operator"].get("kernel", ""), "mask": r["operator"].get("mask", ""),
            "rms_residual": f"{r['rms_residual']:.6g}", "noise_sigma": r["noise_sigma"], "failed": r["failed"],
            "failure_reason": r["failure_reason"] or "", "seconds": f"{r['stats']['seconds']:.3f}",
            "denoiser_calls": r["stats"]["denoiser_calls"], "vjps": r["stats"]["vjps"], "samples": r["samples"],
        })
    atomic_write_text(path, buf.getvalue())


def _sampler(plan: RestorePlan, settings: dict, con: Console) -> tuple[Any, int]:
    """The sampler, and the number of samples worth drawing with it (1 for a deterministic method)."""
    sampler = make_sampler(plan.method, **settings, progress=con.level >= 1)
    if plan.samples > 1 and not getattr(sampler, "stochastic", True):
        con.warn(f"{plan.method} is deterministic: every sample would be the same; restoring once")
        return sampler, 1
    return sampler, plan.samples


def restoration_problem(plan: RestorePlan, y: Tensor, notes: list[str], factory: OperatorFactory, prior, seed: int,
                        dev, con: Console, source: Optional[str] = None) -> Problem:
    """The measurement in the prior's channels on `dev` (its format `notes` updated), its operator (random part
    from `seed`) and the shape to restore, checked against the prior's network (padded with pad=True)."""
    channels = prior_channels(prior) or 3
    if channels != 3 and y.shape[1] == 3:  # a grayscale prior: the measurement in its channels
        y = io.to_channels(y, channels, source or plan.measurement, notes)
    op = factory(seed, dev)
    x_shape = infer_x_shape(y, op, None)  # the operator knows its input size (SR: larger, phase: unpadded)
    y = y.to(dev)
    op.forward(torch.zeros(x_shape, device=dev))  # a kernel/mask that does not fit fails here, with its message
    if plan.task in INPAINTING and tuple(y.shape) == tuple(x_shape):
        # a photo's missing pixels hold whatever was painted there, not measurements: zero them, as A(x) does,
        # so that the data residual (and the verdict, and DPS's norm) counts only the pixels the mask keeps
        y = y * op.forward(torch.ones(x_shape, device=dev))
    problem = Problem(y, op, tuple(x_shape), y, op, tuple(x_shape))
    out_hw = problem.out_hw
    if plan.pad:  # restore a padded image whose sides the network takes, then crop back to out_hw
        run_y, run_op, run_shape = _padded(y, op, factory, prior, seed, dev)
        problem = replace(problem, run_y=run_y, run_op=run_op, run_shape=tuple(run_shape))
        if tuple(run_shape[-2:]) != out_hw:
            con.info(f"pad: restoring at {run_shape[-1]}x{run_shape[-2]} (width x height), cropped back to "
                     f"{out_hw[1]}x{out_hw[0]}")
    fix = "pass pad=True to restore a padded image and crop it back" if not plan.pad else "use a larger measurement"
    check_image_size(problem.run_shape[-2:], prior, fix, "the image to restore is", example=False)
    if out_hw != tuple(y.shape[-2:]):  # super-resolution: say what comes out
        con.info(f"{plan.task}: the {y.shape[-1]}x{y.shape[-2]} measurement is restored at {out_hw[1]}x{out_hw[0]} "
                 "(width x height)")
    return problem


def _padded(y: Tensor, op, factory: OperatorFactory, prior, seed: int, dev):
    """(y, operator, x shape) padded at the bottom/right so that the restored image's sides are multiples of
    what the prior's network needs (and at least MIN_SIDE): y by edge replication, a mask with zeros (the added
    pixels are unknown, so they are inpainted, not trusted)."""
    f = size_multiple(prior)
    hy, wy = y.shape[-2:]
    scale = infer_x_shape(y, op, None)[-1] // wy  # 1, or the super-resolution factor

    def grow(n: int) -> int:
        m = n
        while (m * scale) % f or m * scale < MIN_SIDE:
            m += 1
        return m

    ph, pw = grow(hy) - hy, grow(wy) - wy
    if not (ph or pw):
        return y, op, infer_x_shape(y, op, None)
    y_pad = F.pad(y, (0, pw, 0, ph), mode="replicate")
    if factory.params.get("mask") is not None:
        mask = F.pad(factory.params["mask"], (0, pw * scale, 0, ph * scale), value=0.0)
        op = factory.with_mask(mask)(seed, dev)
    return y_pad, op, infer_x_shape(y_pad, op, None)


def sample_batch(problem: Problem, seed: int, samples: int, dev) -> tuple[Problem, Any]:
    """The problem as a batch of `samples` copies of the image of seed `seed`, and their generators (sample s:
    derive_seed(seed, 1, s), so it does not depend on S)."""
    gens = [torch.Generator(device=dev).manual_seed(sample_seed(seed, s)) for s in range(samples)]
    if samples == 1:
        return problem, gens
    return replace(
        problem,
        y=problem.y.expand(samples, *problem.y.shape[1:]),
        run_y=problem.run_y.expand(samples, *problem.run_y.shape[1:]),
        x_shape=(samples, *problem.x_shape[1:]),
        run_shape=(samples, *problem.run_shape[1:]),
    ), gens


def measurement_fit(problem: Problem, result) -> Fit:
    """The data residual of each sample and whether it counts as restored."""
    with torch.no_grad():
        ax = problem.op.forward(result.x)
        residuals = (ax - problem.y).pow(2).flatten(1).mean(1).sqrt()
    verdicts = judge(result.x, problem.y, problem.op)  # the fit and the image range (spgd.verdict)
    misfit = [v.failed for v in verdicts]
    ok = [bool(torch.isfinite(r)) and not (result.stats.failed and result.stats.failed[i]) and not misfit[i]
          for i, r in enumerate(residuals)]
    return Fit(residuals, misfit, ok, verdicts)


def write_restorations(run_dir: Path, x: Tensor, ok: list[bool], layout: Optional[Layout] = None) -> Optional[dict]:
    """Each sample's file (restored.png, restored-s1.png, ... in a file's `layout`); with two or more good samples
    also their mean and per-pixel standard deviation, whose description is returned (None otherwise)."""
    layout = layout or Layout.of_file()
    samples = x.shape[0]
    for s in range(samples):
        io.save_image(x[s], run_dir / layout.sample(s))
    if samples < 2 or sum(ok) < 2:
        return None
    moments = SampleMoments()
    for s in range(samples):  # each sample is one more draw of the same (single) image
        moments.add(x[s : s + 1].clamp(-1, 1), [ok[s]])  # the images as saved
    mean, std = moments.mean_std()
    pixel_std = write_sample_summary(mean[0], std[0], run_dir / layout.mean, run_dir / layout.uncertainty)
    return {"n": sum(ok), "restored": layout.mean, "uncertainty": layout.uncertainty,
            "uncertainty_vmax": UNCERTAINTY_VMAX, "pixel_std": pixel_std}


def outcome_record(problem: Problem, pad: bool, result, fit: Fit, summary: Optional[dict]) -> dict:
    """The part of settings.json that says what came out: sizes, cost, residuals, failures."""
    out_hw, run_shape = problem.out_hw, problem.run_shape
    return {
        "image_shape": list(problem.x_shape),
        "output_size": {"width": out_hw[1], "height": out_hw[0]},
        "padded_to": None if not pad else {"width": run_shape[-1], "height": run_shape[-2]},
        "stats": result.stats.as_dict(),
        "rms_residual": float(fit.residuals[0]),  # sqrt(mean((A(x_hat) - y)^2)): compare with noise_sigma
        "failed": not fit.ok[0],
        "samples": problem.x_shape[0],
        "rms_residual_per_sample": fit.residuals.tolist(),
        "failed_per_sample": [not v for v in fit.ok],
        "verdict": fit.verdicts[0].as_dict() if fit.verdicts else None,  # spgd.verdict.verdict_of_record reads it
        "verdict_per_sample": [v.as_dict() for v in fit.verdicts],
        "mean_of_samples": summary,
    }


# ----------------------------------------------------------------------------------------------------------
# spgd demo


@dataclass
class DemoPlan:
    """The demo: the bundled photo, DEMO_TASK, SPGD with the default prior."""

    steps: int = DEMO_STEPS
    device: Optional[str] = None


@dataclass
class DemoRecord:
    """What the demo came to: its run folder, the scores of the measurement and of the restoration, the time."""

    run_dir: Path
    scores: dict  # {"measurement": {"psnr", "ssim"}, "restored": {"psnr", "ssim"}}
    seconds: float
    prior: str  # the bundled prior's class


def run_demo(plan: Optional[DemoPlan] = None, out: PathLike = "runs", console: Optional[Console] = None,
             argv: Optional[list[str]] = None) -> DemoRecord:
    """Degrade the bundled photo (80 % of its pixels removed), restore it with SPGD and the default prior,
    and write grid.png, restored.png, measurement.png, metrics.json and settings.json."""
    con, plan = console or Console(), plan or DemoPlan()
    if plan.steps < 1:
        raise SpgdError(f"steps must be >= 1, got {plan.steps}")
    check_writable(out)
    dev = resolve_device(plan.device)
    x, _ = io.load_image(DEMO_IMAGE)
    x = x.to(dev)
    preset = load_preset(DEMO_TASK)
    seed = image_seed(0, 0)  # the photo is image 0 of a run with seed 0 (spgd.experiment.seeding)
    op = OperatorFactory(DEMO_TASK, preset["operator"])(seed, dev)
    y = measure_per_image(op, x, [noise_seed(seed)])
    prior = load_prior("default", device=dev)
    settings = {**sampler_settings(preset, "spgd"), "steps": plan.steps, "warmup_steps": DEMO_WARMUP}
    sampler = make_sampler("spgd", **settings, progress=con.level >= 1)
    run_dir = new_run_dir(out, "demo", DEMO_TASK)
    con.info(f"demo: {DEMO_TASK} ({preset['operator']}) on {DEMO_IMAGE.name}, SPGD {plan.steps} steps, on {dev}")
    t0 = time.perf_counter()
    result = sampler.run(y, op, prior, generator=sample_generators([seed], 0, dev), x_shape=tuple(x.shape))
    seconds = time.perf_counter() - t0
    scores = demo_scores(x, y, result.x)
    prior_kind = type(prior).__name__
    io.save_image(result.x[0], run_dir / "restored.png")
    io.save_image(y[0], run_dir / "measurement.png")
    write_grid(run_dir / "grid.png", [[x[0], y[0], result.x[0]]], labels=["ground truth", "measurement", "SPGD"])
    atomic_write_json(run_dir / "metrics.json", {**scores, "seconds": seconds, "stats": result.stats.as_dict(),
                                                 "prior": prior_kind, "task": DEMO_TASK})
    provenance(run_dir, "demo", plan, {"image": str(DEMO_IMAGE), "task": DEMO_TASK, "operator": preset["operator"],
                                       "sampler": settings, "prior": f"default ({prior_kind})",
                                       "device": str(dev)}, argv)
    return DemoRecord(run_dir, scores, seconds, prior_kind)


def demo_scores(x: Tensor, y: Tensor, x_hat: Tensor) -> dict:
    """PSNR and SSIM of the measurement and of the restoration against the photo."""
    x01, y01, r01 = (io.to_unit(t.clamp(-1, 1)) for t in (x, y, x_hat))
    return {
        "measurement": {"psnr": float(metrics.psnr(y01, x01)[0]), "ssim": float(metrics.ssim(y01, x01)[0])},
        "restored": {"psnr": float(metrics.psnr(r01, x01)[0]), "ssim": float(metrics.ssim(r01, x01)[0])},
    }
