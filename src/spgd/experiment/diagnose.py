"""`spgd diagnose`: run methods with gradient telemetry on degraded images and plot what happens inside.

`spgd.cli.diagnose` declares its options (`add_arguments`) and calls :func:`run_diagnose`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
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
from ..operators import task_params
from ..presets import apply_overrides, load_preset, sampler_settings
from ..priors import load_prior
from ..samplers import METHODS, make_sampler, parse_methods
from .evaluation import OperatorFactory, measure_per_image
from .console import Console
from .runs import atomic_write_json, new_run_dir, provenance, write_grid
from .seeding import image_seed, noise_seed, sample_generators

__all__ = ["DEFAULT_METHODS", "diagnose", "run_diagnose"]

DEFAULT_METHODS = "spgd,spgd-no-momentum,spgd-no-warmup"

CPU_STEPS = 50  # default number of outer steps on the CPU (the paper's 200 elsewhere)

EPILOG = """examples:
  spgd diagnose face.png --task gaussian_blur --prior gaussian
  spgd diagnose ../shared/data/ffhq-demo --limit 10 --task gaussian_blur --prior ffhq256 \\
      --checkpoint ffhq_10m.pt --methods spgd,spgd-official,spgd-no-momentum,spgd-no-warmup --set steps=200

writes into a new folder under --out: angles.png (angle(g_l, g_d) and the step-to-step angles of g_l and g_d,
one panel per method: the paper's Figure 1), loss.png, telemetry_<method>.csv, x0hat_<method>.gif,
restorations.png, settings.json (resolved settings, versions, command line) and summary.json (per method:
mean and 90th percentile of the step-to-step g_l angle over the middle half of the run, PSNR, cost)."""




# -- helpers ----------------------------------------------------------------------------------------------------
def _method_settings(method: str, preset: dict, notes: list[str], cpu: bool) -> dict[str, Any]:
    """One method's settings from the resolved preset, never overriding what defines an ablation (the preset's
    SPGD values and run-wide --set values would otherwise turn spgd-no-warmup back into spgd)."""
    settings = sampler_settings(preset, method)
    fixed = METHODS[method][1]
    explicit = set(preset.get("all", {})) | set(preset.get("set", {}).get(method, {}))
    clash = sorted(k for k in set(settings) & set(fixed) if k in explicit and settings[k] != fixed[k])
    if clash:
        notes.append(f"{method}: ignored --set {', '.join(clash)} (fixed by this method: {fixed})")
    settings = {k: v for k, v in settings.items() if k not in fixed}
    if cpu and "steps" in settings and "steps" not in explicit:
        settings["steps"] = CPU_STEPS
    return settings


def _load_images(path: Path, limit: Optional[int], size: Optional[int]) -> tuple[torch.Tensor, list[Path]]:
    """The image file or the folder's sorted images (the first `limit`), as one batch of one size."""
    files = list_images(path) if path.is_dir() else [path]
    if limit is not None:
        if limit < 1:
            raise SpgdError(f"--limit must be >= 1, got {limit}")
        files = files[:limit]
    images = []
    for f in files:
        x, notes = load_image(f, size, resize=size is not None)
        images.append(x)
        for note in notes:  # a format conversion is a warning; the crop/resize asked for with --size is not
            if not note.startswith(("center-cropped", "resized")):
                print(f"spgd: warning: {f.name}: {note}", file=sys.stderr, flush=True)
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise SpgdError(f"the images have different sizes {sorted(shapes)}; pass --size S to crop/resize them")
    return torch.cat(images), files


# -- the command ------------------------------------------------------------------------------------------------
def run_diagnose(args: argparse.Namespace, argv: Optional[list[str]] = None) -> int:
    """Run `spgd diagnose` with parsed arguments (and the command line, for settings.json); returns the exit
    status (bad input raises SpgdError)."""
    run_dir = diagnose(args, argv)
    if not args.quiet:
        print(str(run_dir))
    return 0


def diagnose(args: argparse.Namespace, argv: Optional[list[str]] = None) -> Path:
    """The work of `spgd diagnose`; returns the run folder."""
    con = Console.of_flags(args.quiet, getattr(args, "verbose", False))
    status = con.info
    methods = parse_methods(args.methods, "--methods")
    if args.frames < 0:
        raise SpgdError(f"--frames must be >= 0, got {args.frames}")
    device = resolve_device(args.device)
    preset = apply_overrides(load_preset(args.task), args.settings, methods)
    notes: list[str] = []
    settings = {m: _method_settings(m, preset, notes, device.type == "cpu") for m in methods}
    samplers = {m: make_sampler(m, **s) for m, s in settings.items()}  # bad settings fail before any work
    for m in methods:
        con.detail(f"{m}: {resolved_settings(samplers[m])}")

    x, files = _load_images(Path(args.input), args.limit, args.size)
    status(f"images: {len(files)} of {x.shape[-1]}x{x.shape[-2]} from {args.input}")
    prior = load_prior(args.prior, checkpoint=args.checkpoint, device=device)
    x, y, operator, op_params, seeds = degrade(x, args.task, preset["operator"], args.seed, device)

    run_dir = new_run_dir(args.out, "diagnose", args.task)
    status(f"run folder: {run_dir}")
    run_record = {"task": args.task, "prior": args.prior, "checkpoint": args.checkpoint,
                  "images": [str(f) for f in files], "seed": args.seed, "device": str(device), "operator": op_params,
                  "set": list(args.settings)}
    atomic_write_json(run_dir / "settings.json", {
        "command": "diagnose", "input": str(Path(args.input).resolve()), **run_record, "frames": args.frames,
        "sampler": {m: resolved_settings(samplers[m]) for m in methods}, **provenance(argv)})
    telemetries: dict[str, GradientTelemetry] = {}
    restored: dict[str, Tensor] = {}
    report: dict[str, Any] = {}
    for method in methods:
        telemetries[method], restored[method], report[method] = diagnose_method(
            method, samplers[method], x, y, operator, prior, sample_generators(seeds, 0, device), args, run_dir,
            status)

    status("writing plots and the restorations grid ...")
    write_figures(run_dir, f"{args.task}, prior {args.prior}, {len(files)} image(s)", telemetries, x, y, restored)
    atomic_write_json(run_dir / "summary.json", {**run_record, "notes": notes, "middle": [0.25, 0.75],
                                                 "methods": report})
    for note in notes:
        status(f"note: {note}")
    return run_dir


def degrade(x: Tensor, task: str, operator_params: dict, seed: int, device: torch.device
            ) -> tuple[Tensor, Tensor, Any, dict, list[int]]:
    """(x, y, operator, its parameters, the image seeds) on `device`: image i measured by the task's operator
    as image i of `spgd eval` with the same seed (spgd.experiment.seeding)."""
    seeds = [image_seed(seed, i) for i in range(x.shape[0])]
    op_params = dict(operator_params)
    if "seed" in task_params(task):
        op_params["seed"] = seeds[0]  # the batch's operator gives image i the random part of seed + i
    operator = OperatorFactory(task, operator_params)(seeds[0], device)
    x = x.to(device)
    return x, measure_per_image(operator, x, [noise_seed(s) for s in seeds]), operator, op_params, seeds


def diagnose_method(method: str, sampler, x: Tensor, y: Tensor, operator, prior, gens: list[torch.Generator],
                    args: argparse.Namespace, run_dir: Path, status: Callable[[str], None]
                    ) -> tuple[GradientTelemetry, Tensor, dict]:
    """Restore with one method while recording its telemetry; write its CSV (and GIF); return the telemetry,
    the restorations and the method's entry of summary.json."""
    if hasattr(sampler, "progress"):
        sampler.progress = not args.quiet and sys.stderr.isatty()
    steps = int(getattr(sampler, "steps", CPU_STEPS))
    tel = GradientTelemetry(frame_every=max(1, math.ceil(steps / args.frames)) if args.frames else 0,
                            frame_samples=4)
    status(f"{method}: {steps} steps, {getattr(sampler, 'warmup_steps', '?')} warm-up steps ...")
    # a bar on a terminal; otherwise (a log, a pipe) a status line at least every 10 s
    callback = tel if getattr(sampler, "progress", False) or args.quiet else _every(tel, steps, method, status)
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
    status(f"{method}: PSNR {entry['psnr_mean']:.2f} dB, middle-half g_l swing mean "
           f"{summary['gl_angle_mean']:.1f}° p90 {summary['gl_angle_p90']:.1f}° ({result.stats.seconds:.1f} s)")
    tel.save_csv(run_dir / f"telemetry_{method}.csv")
    if tel.frames:
        captions = [f"k={k} sigma={tel.sigma[tel.steps.index(k)]:.3g}" for k in tel.frame_steps]
        save_animation(tel.frames, run_dir / f"x0hat_{method}.gif", captions=captions)
    return tel, result.x, entry


def resolved_settings(sampler) -> dict:
    """The sampler's settings as it runs them (its progress bar aside)."""
    return {k: v for k, v in getattr(sampler, "settings", dict)().items() if k != "progress"}


def write_figures(run_dir: Path, title: str, telemetries: dict[str, GradientTelemetry], x: Tensor, y: Tensor,
                  restored: dict[str, Tensor]) -> None:
    """angles.png, loss.png and restorations.png (ground truth | measurement | each method, up to 4 images)."""
    plot_angles(telemetries, run_dir / "angles.png", title=title)
    plot_loss(telemetries, run_dir / "loss.png", title=title)
    methods = list(restored)
    rows = [[x[i].cpu(), y[i].cpu()] + [restored[m][i].cpu() for m in methods] for i in range(min(x.shape[0], 4))]
    write_grid(run_dir / "restorations.png", rows, labels=["ground truth", "measurement"] + methods)


def _every(callback, steps: int, label: str, status, seconds: float = 10.0):
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
