"""`spgd restore` (one real measurement with a known degradation) and `spgd demo` (the bundled photo)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import io, metrics
from ..device import resolve_device
from ..errors import SpgdError
from ..presets import load_preset, sampler_settings
from ..priors import load_prior
from ..priors.base import prior_channels
from ..api import run_sampler  # latent priors run on z and are decoded at the end
from ..samplers import make_sampler, setting_names
from ..samplers.base import RESIDUAL_REASON, infer_x_shape, residual_diverged
from .evaluation import (
    INPAINTING,
    MIN_SIDE,
    UNCERTAINTY_VMAX,
    OperatorFactory,
    SampleMoments,
    check_image_size,
    measure_per_image,
    size_multiple,
    viewable,
    write_sample_summary,
)
from .console import Console
from .runs import atomic_write_json, new_run_dir, provenance, write_grid
from .seeding import image_seed, noise_seed, sample_generators, sample_seed

DEMO_IMAGE = Path(__file__).resolve().parents[1] / "data" / "astronaut.png"  # the bundled photo (spgd/data/)
DEMO_TASK = "inpainting_random"  # 80 % of the pixels missing: a restoration anyone can see, cheap on a CPU
DEMO_STEPS = 20  # 28 s on an idle 2-core CPU with the bundled prior at 256x256 (the paper uses 200)
DEMO_WARMUP = 2  # the paper uses 5


def load_measurement(path: str) -> tuple[Tensor, list[str]]:
    """A measurement file as (1, C, H, W): an image (read as [-1, 1]) or raw values from .npy / .pt."""
    p = Path(path)
    if not p.is_file():
        raise SpgdError(f"measurement file not found: {p}")
    suffix = p.suffix.lower()
    if suffix in (".npy", ".pt"):
        if suffix == ".npy":
            try:
                t = torch.from_numpy(np.load(p, allow_pickle=False))
            except (OSError, ValueError) as e:
                raise SpgdError(f"cannot read measurement {p}: {e}") from None
        else:
            t = io.load_torch_file(p, "a measurement (a torch file)")
            if isinstance(t, dict):
                t = t.get("y", t.get("measurement"))
            if not isinstance(t, Tensor):
                raise SpgdError(f"{p} must hold a tensor (or a dict with 'y'), got {type(t).__name__}")
        t = t.float()
        if t.ndim == 2:
            t = t[None, None].expand(1, 3, -1, -1)
        elif t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[0] != 1:
            raise SpgdError(f"a measurement must be (H, W), (C, H, W) or (1, C, H, W), got {tuple(t.shape)} from {p}")
        return t.contiguous(), ["raw values (not rescaled)"]
    return io.load_image(p)


@dataclass(frozen=True)
class Problem:
    """What `spgd restore` solves: the measurement y and its operator, the restored image's shape and (run_*)
    the same padded to sides the prior's network takes (equal to them without --pad)."""

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
    misfit: list[bool]  # the residual says the sample diverged (for every method)
    ok: list[bool]  # finite, not failed in the sampler, not misfit


def restore_file(
    measurement: str,
    *,
    task: str,
    preset: dict,
    overrides: Sequence[str] = (),
    method: str = "spgd",
    prior_name: str = "default",
    checkpoint: Optional[str] = None,
    kernel: Optional[str] = None,
    mask: Optional[str] = None,
    seed: int = 0,
    device: Optional[str] = None,
    out: str = "runs",
    console: Optional[Console] = None,
    argv: Optional[list[str]] = None,
    samples: int = 1,
    pad: bool = False,
    class_label: Optional[int] = None,
) -> tuple[Path, bool]:
    """Restore one measurement file; returns (run folder, whether the restoration diverged). The file is image 0
    of the seeding rule (spgd.experiment.seeding), as in `spgd eval --seed SEED`. With `samples` S >= 2 it is
    restored S times in one batch; the samples' mean and per-pixel standard deviation (a heat map) are written."""
    con = console or Console()
    check_restore_request(task, samples, kernel, mask)
    dev = resolve_device(device)
    y, notes = load_measurement(measurement)
    settings = sampler_settings(preset, method)
    sampler, samples = make_restore_sampler(method, settings, samples, con)
    prior = load_prior(prior_name, checkpoint, device=dev, class_label=class_label)
    factory = operator_factory(task, preset, prior, kernel, mask, overrides, con)
    problem = restoration_problem(measurement, y, notes, task, factory, prior, image_seed(seed, 0), dev, pad, con)
    print_measurement_notes(measurement, notes, con)
    con.info(f"restoring {measurement} ({task}, {method}, prior {prior_name})")
    problem, generator = sample_batch(problem, image_seed(seed, 0), samples, dev)
    result = run_sampler(sampler, problem.run_y, problem.run_op, prior, generator=generator,
                         x_shape=problem.run_shape)
    if pad:  # back to the measurement's own size
        result.x = result.x[..., : problem.out_hw[0], : problem.out_hw[1]].contiguous()
    # the run folder is created only now: a failure or an interrupt before this point leaves nothing behind
    run_dir = new_run_dir(out, "restore", task)
    fit = measurement_fit(problem, result)
    summary = write_restorations(run_dir, result.x, fit.ok)
    view, view_note = viewable(problem.y[0])
    io.save_image(view, run_dir / "measurement.png")
    record = {
        "command": "restore",
        "measurement": str(Path(measurement).resolve()),
        "measurement_notes": notes + ([view_note] if view_note else []),
        "task": task, "method": method, "preset": preset, "overrides": list(overrides), "sampler": settings,
        "operator": factory.recorded,  # what was used (a --kernel/--mask file, not the preset's)
        "kernel": kernel, "mask": mask, "prior": prior_name, "checkpoint": checkpoint, "seed": seed,
        "device": str(dev),
        **outcome_record(problem, pad, result, fit, summary),
        **provenance(argv),
    }
    atomic_write_json(run_dir / "settings.json", record)
    report_restoration(con, run_dir, problem, result, fit, summary)
    return run_dir, record["failed"]


def check_restore_request(task: str, samples: int, kernel: Optional[str], mask: Optional[str]) -> None:
    """Refuse what cannot be restored before anything is loaded."""
    if samples < 1:
        raise SpgdError(f"--samples must be >= 1, got {samples}")
    if task in INPAINTING and mask is None:
        raise SpgdError(f"{task} needs the mask of the measurement: --mask FILE (white/1 = kept pixel)")
    if task == "motion_blur" and kernel is None:
        raise SpgdError("motion_blur needs the blur kernel of the measurement: --kernel FILE (.npy, .png or .pt)")
    if task == "nonlinear_blur":
        raise SpgdError("spgd restore does not support nonlinear_blur: its kernel code is random, not known")


def print_measurement_notes(measurement: str, notes: list[str], con: Console) -> None:
    """The measurement file's format notes, once its channels are final (a grayscale prior reads a grey file
    as one channel, not three)."""
    for n in notes:  # a format conversion is news (a warning); raw .npy/.pt values are as documented
        (con.info if n.startswith("raw values") else con.warn)(f"{measurement}: {n}")


def make_restore_sampler(method: str, settings: dict, samples: int, con: Console) -> tuple[Any, int]:
    """The sampler, and the number of samples worth drawing with it (1 for a deterministic method)."""
    extra = {"progress": con.level >= 1} if "progress" in setting_names(method) else {}
    sampler = make_sampler(method, **settings, **extra)
    if samples > 1 and not getattr(sampler, "stochastic", True):
        con.warn(f"{method} is deterministic: every sample would be the same; restoring once")
        samples = 1
    return sampler, samples


def operator_factory(task: str, preset: dict, prior, kernel: Optional[str], mask: Optional[str],
                     overrides: Sequence[str], con: Console) -> OperatorFactory:
    """The task's operator builder with the preset's parameters, a --kernel/--mask file and the prior's
    channel count (a grayscale prior measures grayscale images)."""
    channels = prior_channels(prior) or 3
    op_params = {**preset.get("operator", {}), **({"channels": channels} if channels != 3 else {})}
    factory = OperatorFactory(task, op_params, kernel, mask, overrides)
    for note in factory.notes:
        con.warn(note)
    return factory


def restoration_problem(measurement: str, y: Tensor, notes: list[str], task: str, factory: OperatorFactory, prior,
                        seed: int, dev, pad: bool, con: Console) -> Problem:
    """The measurement in the prior's channels on `dev` (its format `notes` updated), its operator (random part
    from `seed`) and the shape to restore, checked against the prior's network (padded with `pad`)."""
    channels = prior_channels(prior) or 3
    if channels != 3 and y.shape[1] == 3:  # a grayscale prior: the measurement in its channels
        y = io.to_channels(y, channels, measurement, notes)
    op = factory(seed, dev)
    x_shape = infer_x_shape(y, op, None)  # the operator knows its input size (SR: larger, phase: unpadded)
    y = y.to(dev)
    op.forward(torch.zeros(x_shape, device=dev))  # a kernel/mask that does not fit fails here, with its message
    problem = Problem(y, op, tuple(x_shape), y, op, tuple(x_shape))
    out_hw = problem.out_hw
    if pad:  # restore a padded image whose sides the network takes, then crop back to out_hw
        run_y, run_op, run_shape = _padded(y, op, factory, prior, seed, dev, task)
        problem = replace(problem, run_y=run_y, run_op=run_op, run_shape=tuple(run_shape))
        if tuple(run_shape[-2:]) != out_hw:
            con.info(f"--pad: restoring at {run_shape[-1]}x{run_shape[-2]} (width x height), cropped back to "
                     f"{out_hw[1]}x{out_hw[0]}")
    fix = "pass --pad to restore a padded image and crop it back" if not pad else "use a larger measurement"
    check_image_size(problem.run_shape[-2:], prior, fix, "the image to restore is", example=False)
    if out_hw != tuple(y.shape[-2:]):  # super-resolution: say what comes out
        con.info(f"{task}: the {y.shape[-1]}x{y.shape[-2]} measurement is restored at {out_hw[1]}x{out_hw[0]} "
                 "(width x height)")
    return problem


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
        misfit = residual_diverged(ax, problem.y, float(getattr(problem.op, "noise_sigma", 0.0))).tolist()
    ok = [bool(torch.isfinite(r)) and not (result.stats.failed and result.stats.failed[i]) and not misfit[i]
          for i, r in enumerate(residuals)]
    return Fit(residuals, misfit, ok)


def write_restorations(run_dir: Path, x: Tensor, ok: list[bool]) -> Optional[dict]:
    """restored.png (and restored-sS.png); with two or more good samples also their mean and per-pixel
    standard deviation, whose description is returned (None otherwise)."""
    samples = x.shape[0]
    io.save_image(x[0], run_dir / "restored.png")
    for s in range(1, samples):
        io.save_image(x[s], run_dir / f"restored-s{s}.png")
    if samples < 2 or sum(ok) < 2:
        return None
    moments = SampleMoments()
    for s in range(samples):  # each sample is one more draw of the same (single) image
        moments.add(x[s : s + 1].clamp(-1, 1), [ok[s]])  # the images as saved
    mean, std = moments.mean_std()
    pixel_std = write_sample_summary(mean[0], std[0], run_dir / "restored-mean.png", run_dir / "uncertainty.png")
    return {"n": sum(ok), "restored": "restored-mean.png", "uncertainty": "uncertainty.png",
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
        "mean_of_samples": summary,
    }


def report_restoration(con: Console, run_dir: Path, problem: Problem, result, fit: Fit,
                       summary: Optional[dict]) -> None:
    """Where the files are, what it cost, how well it fits, and a warning if it diverged."""
    residual, noise = float(fit.residuals[0]), getattr(problem.op, "noise_sigma", 0.0)
    con.result(f"{run_dir / 'restored.png'}")
    if summary:
        con.info(f"mean of {summary['n']} samples: {run_dir / 'restored-mean.png'}; per-pixel standard deviation "
                 f"(0-{UNCERTAINTY_VMAX:g} on [0, 1] images): {run_dir / 'uncertainty.png'}")
    con.info(
        f"{result.stats.seconds:.1f} s, {result.stats.denoiser_calls} denoiser calls, RMS residual "
        f"|A(x) - y| = {residual:.4f} (noise level {noise})"
    )
    if not fit.ok[0]:
        why = (result.stats.failure_reason or [None])[0] or (RESIDUAL_REASON if fit.misfit[0] else "non-finite values")
        con.warn(f"the restoration diverged ({why}); try a smaller lr (--set lr=...)")


PAD_TASKS = ("gaussian_blur", "motion_blur", "super_resolution", "inpainting_box", "inpainting_random", "hdr",
             "denoising")


def _padded(y: Tensor, op, factory: OperatorFactory, prior, seed: int, dev, task: str):
    """(y, operator, x shape) padded at the bottom/right so that the restored image's sides are multiples of
    what the prior's network needs (and at least MIN_SIDE): y by edge replication, a mask with zeros (the added
    pixels are unknown, so they are inpainted, not trusted)."""
    if task not in PAD_TASKS:
        raise SpgdError(f"--pad is not available for {task} (its measurement is not an image of the same layout); "
                        f"tasks: {', '.join(PAD_TASKS)}")
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
        m = factory.params["mask"]
        padded = OperatorFactory.__new__(OperatorFactory)
        padded.__dict__.update(factory.__dict__)
        padded.params = {**factory.params, "mask": F.pad(m, (0, pw * scale, 0, ph * scale), value=0.0)}
        op = padded(seed, dev)
    return y_pad, op, infer_x_shape(y_pad, op, None)


def run_demo(
    out: str = "runs",
    steps: int = DEMO_STEPS,
    device: Optional[str] = None,
    console: Optional[Console] = None,
    argv: Optional[list[str]] = None,
) -> Path:
    """Degrade the bundled photo (80 % of its pixels removed), restore it with SPGD and the default prior,
    and write grid.png, restored.png, measurement.png, metrics.json and settings.json."""
    con = console or Console()
    if steps < 1:
        raise SpgdError(f"--steps must be >= 1, got {steps}")
    dev = resolve_device(device)
    x, _ = io.load_image(DEMO_IMAGE)
    x = x.to(dev)
    preset = load_preset(DEMO_TASK)
    seed = image_seed(0, 0)  # the photo is image 0 of a run with seed 0 (spgd.experiment.seeding)
    op = OperatorFactory(DEMO_TASK, preset["operator"])(seed, dev)
    y = measure_per_image(op, x, [noise_seed(seed)])
    prior = load_prior("default", device=dev)
    settings = {**sampler_settings(preset, "spgd"), "steps": steps, "warmup_steps": DEMO_WARMUP}
    sampler = make_sampler("spgd", **settings, progress=con.level >= 1)
    run_dir = new_run_dir(out, "demo", DEMO_TASK)
    con.info(f"demo: {DEMO_TASK} ({preset['operator']}) on {DEMO_IMAGE.name}, SPGD {steps} steps, on {dev}")
    t0 = time.perf_counter()
    result = sampler.run(y, op, prior, generator=sample_generators([seed], 0, dev), x_shape=tuple(x.shape))
    seconds = time.perf_counter() - t0
    scores = demo_scores(x, y, result.x)
    write_demo_files(run_dir, x, y, result, scores, seconds, type(prior).__name__, preset, settings, dev, argv)
    con.result(str(run_dir))
    m, r = scores["measurement"], scores["restored"]
    con.result(f"measurement: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}")
    con.result(f"restored:    PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}  ({seconds:.1f} s, prior "
               f"{type(prior).__name__})")
    return run_dir


def demo_scores(x: Tensor, y: Tensor, x_hat: Tensor) -> dict:
    """PSNR and SSIM of the measurement and of the restoration against the photo."""
    x01, y01, r01 = (io.to_unit(t.clamp(-1, 1)) for t in (x, y, x_hat))
    return {
        "measurement": {"psnr": float(metrics.psnr(y01, x01)[0]), "ssim": float(metrics.ssim(y01, x01)[0])},
        "restored": {"psnr": float(metrics.psnr(r01, x01)[0]), "ssim": float(metrics.ssim(r01, x01)[0])},
    }


def write_demo_files(run_dir: Path, x: Tensor, y: Tensor, result, scores: dict, seconds: float, prior_kind: str,
                     preset: dict, settings: dict, dev, argv: Optional[list[str]]) -> None:
    """restored.png, measurement.png, grid.png, metrics.json and settings.json of the demo."""
    io.save_image(result.x[0], run_dir / "restored.png")
    io.save_image(y[0], run_dir / "measurement.png")
    write_grid(run_dir / "grid.png", [[x[0], y[0], result.x[0]]], labels=["ground truth", "measurement", "SPGD"])
    atomic_write_json(
        run_dir / "metrics.json",
        {**scores, "seconds": seconds, "stats": result.stats.as_dict(), "prior": prior_kind, "task": DEMO_TASK},
    )
    atomic_write_json(
        run_dir / "settings.json",
        {
            "command": "demo",
            "image": str(DEMO_IMAGE),
            "task": DEMO_TASK,
            "operator": preset["operator"],
            "sampler": settings,
            "prior": f"default ({prior_kind})",
            "device": str(dev),
            **provenance(argv),
        },
    )
