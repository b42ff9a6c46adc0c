"""`spgd restore`: restore one measurement file."""

from __future__ import annotations

import argparse

from ..errors import SpgdError
from ..experiment.restore import restore_file
from .options import (
    EXIT_FAILED_IMAGES, EXIT_OK, METHODS_TEXT, TASKS_TEXT, add_device, add_output, add_prior, add_settings,
    apply_no_fast, console, parse_methods, task_preset,
)

HELP = "restore one measured image with a known degradation"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `spgd restore`."""
    p.description = (
        "Restore a real measurement MEASUREMENT (an image, read as [-1, 1]; or raw values in .npy/.pt) "
        "degraded by TASK's operator with its preset settings. Writes restored.png, measurement.png and "
        "settings.json into a new run folder."
    )
    p.epilog = (
        "examples:\n"
        "  spgd restore blurry.png --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt\n"
        "  spgd restore shaky.png --task motion_blur --kernel kernel.npy --prior gaussian\n"
        "  spgd restore holes.png --task inpainting_random --mask mask.png --set lr=2\n"
        "  spgd restore holes.png --task inpainting_random --mask mask.png --samples 8   # + mean, uncertainty\n"
        "  spgd restore small.png --task super_resolution --set scale=4   # output: 4x the input size\n"
        "  spgd restore odd-size.png --task gaussian_blur --pad   # 250x250: restored padded, cropped back\n"
        "notes: --kernel (.npy, .png or a random_parts/*.pt of `spgd eval`) is the blur of gaussian_blur/motion_blur;\n"
        "  --mask (.png white = kept, .npy or .pt; 1 = kept) is required for the inpainting tasks."
    )
    p.add_argument("measurement", metavar="MEASUREMENT", help="the degraded image (png, jpg, ...) or a .npy/.pt tensor")
    p.add_argument("--task", required=True, metavar="T", help=f"the degradation: {TASKS_TEXT}")
    p.add_argument("--kernel", metavar="FILE", help="blur kernel file (.npy, image, or .pt) for gaussian/motion blur")
    p.add_argument("--mask", metavar="FILE", help="inpainting mask file (image: white = kept; .npy/.pt: 1 = kept)")
    add_prior(p)
    p.add_argument("--method", metavar="M", default="spgd", help=f"one of {METHODS_TEXT} (default: spgd)")
    add_settings(p)
    p.add_argument("--seed", type=int, default=0,
                   help="the measurement is image 0 of the seeding rule of every command: its operator's random "
                   "part comes from SEED and sample s from a generator seeded derive_seed(SEED, 1, s), as for "
                   "image 0 of `spgd eval --seed SEED` (default: 0)")
    p.add_argument("--samples", type=int, default=1, metavar="S",
                   help="restore S times in one batch (sample s seeded as above) and also write the mean of the "
                   "samples (restored-mean.png) and their per-pixel standard deviation (uncertainty.png) "
                   "(default: 1)")
    p.add_argument("--pad", action="store_true",
                   help="when the prior's network cannot take the image's size (sides not a multiple of 8, ...), "
                   "restore an edge-padded image (a mask padded as missing pixels) and crop the result back")
    add_device(p)
    add_output(p)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    con = console(args)
    apply_no_fast(args)
    methods = parse_methods(args.method)
    if len(methods) != 1:
        raise SpgdError("spgd restore takes one --method; use spgd eval to compare methods")
    overrides = args.set or []
    preset = task_preset(args.task, overrides, methods)
    _, failed = restore_file(
        args.measurement, task=args.task, preset=preset, overrides=overrides, method=methods[0],
        prior_name=args.prior, checkpoint=args.checkpoint, kernel=args.kernel, mask=args.mask,
        seed=args.seed, device=args.device, out=args.out, console=con, argv=["spgd", *argv], samples=args.samples,
        pad=args.pad, class_label=args.class_label,
    )
    return EXIT_FAILED_IMAGES if failed else EXIT_OK
