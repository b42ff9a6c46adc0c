"""`spgd restore` (one real measurement with a known degradation) and `spgd demo` (the bundled photo).

Python: ``restore(RestorePlan("blurry.png", "gaussian_blur", prior="gaussian"))`` writes a run folder and returns
a :class:`RestoreRecord`; ``run_demo(DemoPlan())`` restores the bundled photo and returns a :class:`DemoRecord`.
"""

from __future__ import annotations

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
from ..samplers.base import Stats, infer_x_shape
from ..verdict import Verdict, judge
from .console import Console
from .images import MIN_SIDE, check_image_size, size_multiple
from .measurement import INPAINTING, OperatorFactory, load_measurement, measure_per_image, viewable
from .runs import PathLike, atomic_write_json, check_writable, new_run_dir, provenance
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
    """One measurement file to restore, and how."""

    measurement: PathLike  # the degraded image (png, jpg, ...) or a .npy/.pt tensor
    task: str
    method: str = "spgd"
    overrides: list[str] = field(default_factory=list)  # key=value over the task's preset (spgd.presets)
    prior: str = "default"
    checkpoint: Optional[str] = None
    class_label: Optional[int] = None
    kernel: Optional[str] = None  # the blur kernel of the measurement (gaussian/motion blur)
    mask: Optional[str] = None  # the mask of the measurement (inpainting), white/1 = kept pixel
    seed: int = 0  # the measurement is image 0 of the seeding rule (spgd.experiment.seeding)
    samples: int = 1  # restorations in one batch; with >= 2, their mean and per-pixel standard deviation too
    pad: bool = False  # restore a padded image where the network cannot take the size, then crop it back
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
        if self.task in INPAINTING and self.mask is None:
            raise SpgdError(f"{self.task} needs the mask of the measurement: mask=FILE (white/1 = kept pixel)")
        if self.task == "motion_blur" and self.kernel is None:
            raise SpgdError("motion_blur needs the blur kernel of the measurement: kernel=FILE (.npy, .png or .pt)")
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


@dataclass
class RestoreRecord:
    """What a restoration came to: where its files are, how well the first sample fits, what it cost."""

    run_dir: Path
    failed: bool  # the first sample diverged
    failure_reason: Optional[str]
    rms_residual: float  # sqrt(mean((A(x_hat) - y)^2)) of the first sample: about noise_sigma when it fits
    noise_sigma: float
    stats: Stats
    mean_of_samples: Optional[dict]  # with two or more good samples: their mean and uncertainty files
    verdict: Optional[Verdict] = None  # the first sample judged against the measurement (spgd.verdict)


def restore(plan: RestorePlan, out: PathLike = "runs", console: Optional[Console] = None,
            argv: Optional[list[str]] = None) -> RestoreRecord:
    """Restore one measurement file into a new run folder under `out` (created only once the restoration is
    done: a failure or an interrupt before leaves nothing behind). The file is image 0 of the seeding rule, as
    in `spgd eval` with the same seed; with samples S >= 2 it is restored S times in one batch."""
    con = console or Console()
    plan.validate()
    check_writable(out)  # a mistyped or read-only out fails now, not after the restoration
    dev = resolve_device(plan.device)
    y, notes = load_measurement(plan.measurement)
    preset = plan.preset()
    settings = sampler_settings(preset, plan.method)
    sampler, samples = _sampler(plan, settings, con)
    prior = load_prior(plan.prior, plan.checkpoint, device=dev, class_label=plan.class_label)
    factory = OperatorFactory(plan.task, preset.get("operator", {}), plan.kernel, plan.mask, plan.overrides,
                              prior_channels(prior) or 3)
    for note in factory.notes:
        con.warn(note)
    seed = image_seed(plan.seed, 0)
    problem = restoration_problem(plan, y, notes, factory, prior, seed, dev, con)
    for n in notes:  # a format conversion is news (a warning); raw .npy/.pt values are as documented
        (con.info if n.startswith("raw values") else con.warn)(f"{plan.measurement}: {n}")
    con.info(f"restoring {plan.measurement} ({plan.task}, {plan.method}, prior {plan.prior})")
    problem, generator = sample_batch(problem, seed, samples, dev)
    result = run_sampler(sampler, problem.run_y, problem.run_op, prior, generator=generator,
                         x_shape=problem.run_shape)
    if plan.pad:  # back to the measurement's own size
        result.x = result.x[..., : problem.out_hw[0], : problem.out_hw[1]].contiguous()
    run_dir = new_run_dir(out, "restore", plan.task)
    fit = measurement_fit(problem, result)
    summary = write_restorations(run_dir, result.x, fit.ok)
    view, view_note = viewable(problem.y[0])
    io.save_image(view, run_dir / "measurement.png")
    provenance(run_dir, "restore", plan, {
        "measurement": str(Path(plan.measurement).resolve()),
        "measurement_notes": notes + ([view_note] if view_note else []),
        "preset": preset, "sampler": settings,
        "operator": factory.recorded,  # what was used (a kernel/mask file, not the preset's)
        "device": str(dev),
        **outcome_record(problem, plan.pad, result, fit, summary),
    }, argv)
    reason = None
    if not fit.ok[0]:
        reason = (result.stats.failure_reason or [None])[0] or (fit.verdicts[0].reason if fit.misfit[0] else
                                                                 "non-finite values")
    return RestoreRecord(run_dir, not fit.ok[0], reason, float(fit.residuals[0]),
                         float(getattr(problem.op, "noise_sigma", 0.0)), result.stats, summary, fit.verdicts[0])


def _sampler(plan: RestorePlan, settings: dict, con: Console) -> tuple[Any, int]:
    """The sampler, and the number of samples worth drawing with it (1 for a deterministic method)."""
    sampler = make_sampler(plan.method, **settings, progress=con.level >= 1)
    if plan.samples > 1 and not getattr(sampler, "stochastic", True):
        con.warn(f"{plan.method} is deterministic: every sample would be the same; restoring once")
        return sampler, 1
    return sampler, plan.samples


def restoration_problem(plan: RestorePlan, y: Tensor, notes: list[str], factory: OperatorFactory, prior, seed: int,
                        dev, con: Console) -> Problem:
    """The measurement in the prior's channels on `dev` (its format `notes` updated), its operator (random part
    from `seed`) and the shape to restore, checked against the prior's network (padded with pad=True)."""
    channels = prior_channels(prior) or 3
    if channels != 3 and y.shape[1] == 3:  # a grayscale prior: the measurement in its channels
        y = io.to_channels(y, channels, plan.measurement, notes)
    op = factory(seed, dev)
    x_shape = infer_x_shape(y, op, None)  # the operator knows its input size (SR: larger, phase: unpadded)
    y = y.to(dev)
    op.forward(torch.zeros(x_shape, device=dev))  # a kernel/mask that does not fit fails here, with its message
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
