"""`spgd restore`: restore one measurement file."""

from __future__ import annotations

import argparse

from ..errors import SpgdError
from ..verdict import UNDER_FIT
from ..experiment.console import Console
from ..experiment.restore import RestorePlan, RestoreRecord, restore
from ..experiment.samples import UNCERTAINTY_VMAX
from .options import (
    EXIT_FAILED_IMAGES, EXIT_OK, TASKS_TEXT, add_device, add_methods, add_network_options, add_output, add_prior,
    add_seed, add_settings, apply_no_fast, console, parse_methods,
)

HELP = "restore one measured image with a known degradation"
DESCRIPTION = """\
Restore a real measurement MEASUREMENT (an image, read as [-1, 1]; or raw values in .npy/.pt) degraded by
TASK's operator with its preset settings. Writes restored.png, measurement.png and settings.json into a new
run folder."""
EXAMPLES = """\
examples:
  spgd restore blurry.png --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt
  spgd restore shaky.png --task motion_blur --kernel kernel.npy --prior gaussian
  spgd restore holes.png --task inpainting_random --mask mask.png --set lr=2
  spgd restore holes.png --task inpainting_random --mask mask.png --samples 8   # + mean, uncertainty
  spgd restore small.png --task super_resolution --set scale=4   # output: 4x the input size
  spgd restore odd-size.png --task gaussian_blur --pad   # 250x250: restored padded, cropped back
notes: --kernel (.npy, .png or a random_parts/*.pt of `spgd eval`) is the blur of gaussian_blur/motion_blur;
  --mask (.png white = kept, .npy or .pt; 1 = kept) is required for the inpainting tasks."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd restore`."""
    p.add_argument("measurement", metavar="MEASUREMENT", help="the degraded image (png, jpg, ...) or a .npy/.pt tensor")
    p.add_argument("--task", required=True, metavar="T", help=f"the degradation: {TASKS_TEXT}")
    p.add_argument("--kernel", metavar="FILE", help="blur kernel file (.npy, image, or .pt) for gaussian/motion blur")
    p.add_argument("--mask", metavar="FILE", help="inpainting mask file (image: white = kept; .npy/.pt: 1 = kept)")
    add_prior(p)
    add_network_options(p)
    add_methods(p, default="spgd", dest="method", several=False)
    add_settings(p)
    add_seed(p, "the measurement is image 0 of the seeding rule of every command (spgd.experiment.seeding): sample s "
             "is drawn from the generator of image 0's sample s, as in spgd eval --seed SEED")
    add_device(p)
    p.add_argument("--samples", type=int, default=1, metavar="S",
                   help="restore S times in one batch (sample s seeded as above) and also write the mean of the "
                   "samples (restored-mean.png) and their per-pixel standard deviation (uncertainty.png) "
                   "(default: 1)")
    p.add_argument("--pad", action="store_true",
                   help="when the prior's network cannot take the image's size (sides not a multiple of 8, ...), "
                   "restore an edge-padded image (a mask padded as missing pixels) and crop the result back")
    add_output(p)
    return p


RENAMES = {"overrides": "set"}


def run(args: argparse.Namespace, argv: list[str]) -> int:
    con = console(args)
    apply_no_fast(args)
    methods = parse_methods(args.method)
    if len(methods) != 1:
        raise SpgdError("spgd restore takes one --method; use spgd eval to compare methods")
    plan = RestorePlan(
        args.measurement, args.task, method=methods[0], overrides=args.set, prior=args.prior,
        checkpoint=args.checkpoint, class_label=args.class_label, kernel=args.kernel, mask=args.mask,
        seed=args.seed, samples=args.samples, pad=args.pad, device=args.device,
    )
    con.detail(f"{args.task} preset with --set: {plan.preset()}")
    record = restore(plan, args.out, con, ["spgd", *argv])
    report(record, con)
    return EXIT_FAILED_IMAGES if record.failed else EXIT_OK


def report(record: RestoreRecord, con: Console) -> None:
    """Where the files are, what it cost, how well it fits, and a warning if it diverged."""
    run_dir, stats, summary = record.run_dir, record.stats, record.mean_of_samples
    con.result(f"{run_dir / 'restored.png'}")
    if summary:
        con.info(f"mean of {summary['n']} samples: {run_dir / 'restored-mean.png'}; per-pixel standard deviation "
                 f"(0-{UNCERTAINTY_VMAX:g} on [0, 1] images): {run_dir / 'uncertainty.png'}")
    con.info(f"{stats.seconds:.1f} s, {stats.denoiser_calls} denoiser calls, RMS residual "
             f"|A(x) - y| = {record.rms_residual:.4f} (noise level {record.noise_sigma})")
    if record.failed:
        con.warn(f"the restoration failed ({record.failure_reason}); try a smaller lr (--set lr=...)")
    elif record.verdict is not None and record.verdict.status == UNDER_FIT:
        con.warn(f"{record.verdict.reason}; kept (spgd.verdict)")
