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

HELP = "restore measured images with a known degradation (a file, or a folder of them)"
DESCRIPTION = """\
Restore a real measurement MEASUREMENT (an image, read as [-1, 1]; or raw values in .npy/.pt) degraded by
TASK's operator with its preset settings. Writes restored.png, measurement.png and settings.json into a new
run folder. MEASUREMENT may be a folder of degraded images of any sizes (no ground truth): each is restored at
its own size (never resized; --pad where the network cannot take it), with its own kernel or mask from
--kernel-dir / --mask-dir (photo.png takes DIR/photo.png, DIR/photo.pt or DIR/photo.npy), into one run folder:
restored/, measurement/, records/ (one JSON per image) and results.csv."""
EXAMPLES = """\
examples:
  spgd restore blurry.png --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt
  spgd restore shaky.png --task motion_blur --kernel kernel.npy --prior gaussian
  spgd restore holes.png --task inpainting_random --mask mask.png --set lr=2
  spgd restore holes.png --task inpainting_random --mask mask.png --samples 8   # + mean, uncertainty
  spgd restore small.png --task super_resolution --set scale=4   # output: 4x the input size
  spgd restore odd-size.png --task gaussian_blur --pad   # 250x250: restored padded, cropped back
  spgd restore photos/ --task inpainting_box --mask-dir masks/ --pad   # each photo with masks/<its name>
  spgd restore shaky/ --task motion_blur --kernel-dir kernels/ --telemetry   # + angles.png
notes: --kernel (.npy, .png or a random_parts/*.pt of `spgd eval`) is the blur of gaussian_blur/motion_blur;
  --mask (.png white = kept, .npy or .pt; 1 = kept) is required for the inpainting tasks; --kernel-dir and
  --mask-dir give one per image instead, matched by file name without its extension."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd restore`."""
    p.add_argument("measurement", metavar="MEASUREMENT",
                   help="the degraded image (png, jpg, ...) or a .npy/.pt tensor, or a folder of degraded images")
    p.add_argument("--task", required=True, metavar="T", help=f"the degradation: {TASKS_TEXT}")
    p.add_argument("--kernel", metavar="FILE", help="blur kernel file (.npy, image, or .pt) for gaussian/motion blur")
    p.add_argument("--mask", metavar="FILE", help="inpainting mask file (image: white = kept; .npy/.pt: 1 = kept)")
    p.add_argument("--kernel-dir", metavar="DIR",
                   help="one blur kernel per image, matched by name: photo.png takes DIR/photo.pt, .npy or .png")
    p.add_argument("--mask-dir", metavar="DIR",
                   help="one inpainting mask per image, matched by name: photo.png takes DIR/photo.png, .pt or .npy")
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
    p.add_argument("--telemetry", action="store_true",
                   help="record the gradient dynamics (as spgd diagnose does): telemetry CSV and angles.png, the "
                   "angles between the likelihood and denoise steps per level")
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
        kernel_dir=args.kernel_dir, mask_dir=args.mask_dir, seed=args.seed, samples=args.samples, pad=args.pad,
        telemetry=args.telemetry, device=args.device,
    )
    con.detail(f"{args.task} preset with --set: {plan.preset()}")
    record = restore(plan, args.out, con, ["spgd", *argv])
    report(record, con)
    return EXIT_FAILED_IMAGES if record.failed else EXIT_OK


def report(record: RestoreRecord, con: Console) -> None:
    """Where the files are, what it cost, how well it fits, and a warning if it diverged."""
    if record.folder:
        return report_folder(record, con)
    run_dir, stats, summary = record.run_dir, record.stats, record.mean_of_samples
    con.result(f"{run_dir / 'restored.png'}")
    if summary:
        con.info(f"mean of {summary['n']} samples: {run_dir / 'restored-mean.png'}; per-pixel standard deviation "
                 f"(0-{UNCERTAINTY_VMAX:g} on [0, 1] images): {run_dir / 'uncertainty.png'}")
    con.info(f"{stats.seconds:.1f} s, {stats.denoiser_calls} denoiser calls, RMS residual "
             f"|A(x) - y| = {record.rms_residual:.4f} (noise level {record.noise_sigma})")
    if record.angles:
        con.info(f"gradient angles: {run_dir / record.angles}")
    if record.failed:
        con.warn(f"the restoration failed ({record.failure_reason}); try a smaller lr (--set lr=...)")
    elif record.verdict is not None and record.verdict.status == UNDER_FIT:
        con.warn(f"{record.verdict.reason}; kept (spgd.verdict)")


def report_folder(record: RestoreRecord, con: Console) -> None:
    """The run folder, one line per image (size, fit, cost), what was skipped and what failed."""
    con.result(str(record.run_dir))
    for im in record.images:
        size = im.record["output_size"]
        flag = "  FAILED" if im.failed else ("  under-fit" if im.verdict is not None and im.verdict.status == UNDER_FIT
                                              else "")
        con.result(f"  {im.restored}  {size['width']}x{size['height']}  RMS residual {im.rms_residual:.4f} (noise "
                   f"{im.noise_sigma})  {im.stats.seconds:.1f} s" + flag)
    con.info(f"per image: {record.run_dir / 'records'}; table: {record.run_dir / 'results.csv'}")
    if record.angles:
        con.info(f"gradient angles: {record.run_dir / record.angles}")
    if record.skipped:
        con.warn(f"{len(record.skipped)} file(s) skipped (unreadable); see the warnings above")
    failed = [f"{im.name} ({im.failure_reason})" for im in record.images if im.failed]
    if failed:
        con.warn(f"{len(failed)} restoration(s) failed: {'; '.join(failed)}; try a smaller lr (--set lr=...)")
