"""`spgd diagnose`: run methods with gradient telemetry on degraded images and plot what happens inside.

Writes into a new run folder: angles.png (angle(g_l, g_d) and the step-to-step angles of g_l and g_d, one panel
per method: the paper's Figure 1), loss.png, telemetry_<method>.csv, x0hat_<method>.gif, restorations.png,
settings.json and summary.json (per method: mean and 90th percentile of the step-to-step g_l angle over the
middle half of the run, PSNR, cost).

Python: ``diagnose(DiagnosePlan("face.png", "gaussian_blur", methods=["spgd", "spgd-no-warmup"]))`` returns a
:class:`DiagnoseRecord`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from .. import metrics
from ..device import resolve_device
from ..diagnostics.plots import plot_angles, plot_loss, save_animation
from ..diagnostics.telemetry import GradientTelemetry
from ..errors import SpgdError
from ..io import list_images, load_image, to_unit
from ..presets import apply_overrides, load_preset, sampler_settings
from ..priors import load_prior
from ..samplers import check_methods, fixed_settings, make_sampler, setting_names
from ..samplers.catalog import require_support
from .console import Console
from .images import is_asked_for
from .measurement import OperatorFactory, measure_per_image
from .runs import PathLike, atomic_write_json, check_writable, new_run_dir, provenance
from .seeding import image_seed, noise_seed, sample_generators
from .tables import write_grid

CPU_STEPS = 50  # default number of outer steps on the CPU (the paper's 200 elsewhere)


@dataclass
class DiagnosePlan:
    """Which images, degradation and methods to record the gradient dynamics of."""

    input: PathLike  # an image file, or a folder of images
    task: str
    methods: list[str]
    overrides: list[str] = field(default_factory=list)  # key=value over the task's preset; steps defaults to
    # CPU_STEPS on a CPU unless given here
    prior: str = "default"
    checkpoint: Optional[str] = None
    seed: int = 0
    limit: Optional[int] = None  # the first images of a folder
    frames: int = 40  # about this many x0_hat frames per animation; 0 writes no GIF
    size: Optional[int] = None  # center-crop and resize images to size x size
    device: Optional[str] = None

    def __post_init__(self) -> None:  # as read back from settings.json
        self.input = str(self.input)
        self.methods, self.overrides = list(self.methods), list(self.overrides)


@dataclass
class DiagnoseRecord:
    """What a diagnosis came to: its run folder, summary.json's per-method entries and its notes."""

    run_dir: Path
    methods: dict[str, dict]
    notes: list[str]


def diagnose(plan: DiagnosePlan, out: PathLike = "runs", console: Optional[Console] = None,
             argv: Optional[list[str]] = None) -> DiagnoseRecord:
    """Degrade the images, restore them with each method while recording its telemetry, and write the run
    folder (see the module doc)."""
    con = console or Console()
    check_writable(out)
    methods = check_methods(plan.methods, unique=False)
    if plan.frames < 0:
        raise SpgdError(f"frames must be >= 0, got {plan.frames}")
    device = resolve_device(plan.device)
    preset = apply_overrides(load_preset(plan.task), plan.overrides, methods)
    settings = {m: _method_settings(m, preset, device.type == "cpu") for m in methods}
    samplers = {m: make_sampler(m, **s) for m, s in settings.items()}  # bad settings fail before any work
    stepless = [m for m in methods if "steps" not in setting_names(m)]
    if stepless:
        raise SpgdError(f"{', '.join(stepless)} has no steps to record the dynamics of; leave it out of methods")
    for m in methods:
        con.detail(f"{m}: {resolved_settings(samplers[m])}")
    notes = _fixed_notes(methods, preset)

    x, files = _load_images(Path(plan.input), plan.limit, plan.size, con)
    con.info(f"images: {len(files)} of {x.shape[-1]}x{x.shape[-2]} from {plan.input}")
    prior = load_prior(plan.prior, checkpoint=plan.checkpoint, device=device)
    x, y, operator, op_params, seeds = degrade(x, plan.task, preset["operator"], plan.seed, device)
    require_support(methods, operator)

    run_dir = new_run_dir(out, "diagnose", plan.task)
    con.info(f"run folder: {run_dir}")
    run_record = {"task": plan.task, "prior": plan.prior, "checkpoint": plan.checkpoint,
                  "images": [str(f) for f in files], "seed": plan.seed, "device": str(device), "operator": op_params,
                  "set": list(plan.overrides)}
    provenance(run_dir, "diagnose", plan, {
        "input": str(Path(plan.input).resolve()), **run_record,
        "sampler": {m: resolved_settings(samplers[m]) for m in methods}}, argv)
    telemetries: dict[str, GradientTelemetry] = {}
    restored: dict[str, Tensor] = {}
    report: dict[str, Any] = {}
    for method in methods:
        telemetries[method], restored[method], report[method] = diagnose_method(
            method, samplers[method], x, y, operator, prior, sample_generators(seeds, 0, device), plan.frames,
            run_dir, con)

    con.info("writing plots and the restorations grid ...")
    write_figures(run_dir, f"{plan.task}, prior {plan.prior}, {len(files)} image(s)", telemetries, x, y, restored)
    atomic_write_json(run_dir / "summary.json", {**run_record, "notes": notes, "middle": [0.25, 0.75],
                                                 "methods": report})
    for note in notes:
        con.info(f"note: {note}")
    return DiagnoseRecord(run_dir, report, notes)


def _method_settings(method: str, preset: dict, cpu: bool) -> dict[str, Any]:
    """One method's settings from the resolved preset (make_sampler keeps what defines an ablation); on a CPU,
    CPU_STEPS steps unless an override gives them."""
    settings = sampler_settings(preset, method)
    explicit = set(preset.get("all", {})) | set(preset.get("set", {}).get(method, {}))
    if cpu and "steps" in settings and "steps" not in explicit:
        settings["steps"] = CPU_STEPS
    return settings


def _fixed_notes(methods: list[str], preset: dict) -> list[str]:
    """What an override asked of a method that the method fixes (an ablation's defining setting wins)."""
    notes = []
    for m in methods:
        fixed = fixed_settings(m)
        asked = {**preset.get("all", {}), **preset.get("set", {}).get(m, {})}
        clash = sorted(k for k in set(asked) & set(fixed) if asked[k] != fixed[k])
        if clash:
            notes.append(f"{m}: ignored override of {', '.join(clash)} (fixed by this method: {fixed})")
    return notes


def _load_images(path: Path, limit: Optional[int], size: Optional[int], con: Console
                 ) -> tuple[torch.Tensor, list[Path]]:
    """The image file or the folder's sorted images (the first `limit`), as one batch of one size."""
    files = list_images(path) if path.is_dir() else [path]
    if limit is not None:
        if limit < 1:
            raise SpgdError(f"limit must be >= 1, got {limit}")
        files = files[:limit]
    images = []
    for f in files:
        x, notes = load_image(f, size, resize=size is not None)
        images.append(x)
        for note in notes:  # a format conversion is a warning; the crop/resize asked for with size is not
            if not is_asked_for(note):
                con.warn(f"{f.name}: {note}")
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise SpgdError(f"the images have different sizes {sorted(shapes)}; pass size=S to crop/resize them")
    return torch.cat(images), files


def degrade(x: Tensor, task: str, operator_params: dict, seed: int, device: torch.device
            ) -> tuple[Tensor, Tensor, Any, dict, list[int]]:
    """(x, y, operator, its parameters, the image seeds) on `device`: image i measured by the task's operator
    as image i of `spgd eval` with the same seed (spgd.experiment.seeding)."""
    seeds = [image_seed(seed, i) for i in range(x.shape[0])]
    factory = OperatorFactory(task, operator_params)
    op_params = dict(operator_params)
    if factory.has_seed:
        op_params["seed"] = seeds[0]  # the batch's operator gives image i the random part of seed + i
    operator = factory(seeds[0], device)
    x = x.to(device)
    return x, measure_per_image(operator, x, [noise_seed(s) for s in seeds]), operator, op_params, seeds


def diagnose_method(method: str, sampler, x: Tensor, y: Tensor, operator, prior, gens: list[torch.Generator],
                    frames: int, run_dir: Path, con: Console) -> tuple[GradientTelemetry, Tensor, dict]:
    """Restore with one method while recording its telemetry; write its CSV (and GIF); return the telemetry,
    the restorations and the method's entry of summary.json."""
    sampler.progress = con.level >= 1 and sys.stderr.isatty()
    steps = int(getattr(sampler, "steps", CPU_STEPS))
    tel = GradientTelemetry(frame_every=max(1, math.ceil(steps / frames)) if frames else 0, frame_samples=4)
    con.info(f"{method}: {steps} steps, {getattr(sampler, 'warmup_steps', '?')} warm-up steps ...")
    # a bar on a terminal; otherwise (a log, a pipe) a status line at least every 10 s
    callback = tel if sampler.progress or con.level < 1 else _every(tel, steps, method, con.info)
    result = sampler.run(y, operator, prior, generator=gens, callback=callback)
    result.telemetry = tel
    psnr = metrics.psnr(to_unit(result.x.clamp(-1, 1)), to_unit(x.clamp(-1, 1))).tolist()
    summary = tel.summary()
    entry = {
        **summary,
        "psnr_mean": sum(psnr) / len(psnr),
        "psnr": psnr,
        "denoiser_calls": result.stats.denoiser_calls,
        "vjps": result.stats.vjps,
        "seconds": result.stats.seconds,
        "failed": result.stats.failed,
        "settings": resolved_settings(sampler),
    }
    con.info(f"{method}: PSNR {entry['psnr_mean']:.2f} dB, middle-half g_l swing mean "
             f"{summary['gl_angle_mean']:.1f}° p90 {summary['gl_angle_p90']:.1f}° ({result.stats.seconds:.1f} s)")
    tel.save_csv(run_dir / f"telemetry_{method}.csv")
    if tel.frames:
        captions = [f"k={k} sigma={tel.sigma[tel.steps.index(k)]:.3g}" for k in tel.frame_steps]
        save_animation(tel.frames, run_dir / f"x0hat_{method}.gif", captions=captions)
    return tel, result.x, entry


def resolved_settings(sampler) -> dict:
    """The sampler's settings as it runs them (its progress bar aside)."""
    return {k: v for k, v in sampler.settings().items() if k != "progress"}


def write_figures(run_dir: Path, title: str, telemetries: dict[str, GradientTelemetry], x: Tensor, y: Tensor,
                  restored: dict[str, Tensor]) -> None:
    """angles.png, loss.png and restorations.png (ground truth | measurement | each method, up to 4 images)."""
    plot_angles(telemetries, run_dir / "angles.png", title=title)
    plot_loss(telemetries, run_dir / "loss.png", title=title)
    methods = list(restored)
    rows = [[x[i].cpu(), y[i].cpu()] + [restored[m][i].cpu() for m in methods] for i in range(min(x.shape[0], 4))]
    write_grid(run_dir / "restorations.png", rows, labels=["ground truth", "measurement"] + methods)


def _every(callback, steps: int, label: str, status: Callable[[str], None], seconds: float = 10.0):
    """`callback`, plus a status line ("spgd: step k/K, t s") at most every `seconds` and at the last step."""
    t0 = last = time.monotonic()

    def cb(info: dict) -> None:
        nonlocal last
        callback(info)
        now, k = time.monotonic(), int(info["step"]) + 1
        if now - last >= seconds or k == steps:
            status(f"{label}: step {k}/{steps} ({now - t0:.0f} s)")
            last = now

    return cb
