"""`spgd diagnose`: gradient telemetry and its plots."""

from __future__ import annotations

import argparse

from ..experiment.diagnose import CPU_STEPS, DiagnosePlan, diagnose
from ..operators import TASKS
from .options import (
    ABLATION_METHODS, EXIT_OK, add_device, add_methods, add_output, add_prior, add_seed, add_settings, console,
    parse_methods,
)

HELP = "record and plot gradient dynamics inside the samplers"
DESCRIPTION = f"""\
Degrade image(s) with a task's operator, restore them with each method while recording the gradient
dynamics (likelihood step g_l, denoise step g_d and their angles), and plot them. The settings are the task
preset's and --set; on a CPU, steps is {CPU_STEPS} unless --set gives it."""
EXAMPLES = """examples:
  spgd diagnose face.png --task gaussian_blur --prior gaussian
  spgd diagnose ../shared/data/ffhq-demo --limit 10 --task gaussian_blur --prior ffhq256 \\
      --checkpoint ffhq_10m.pt --methods spgd,spgd-official,spgd-no-momentum,spgd-no-warmup --set steps=200

writes into a new folder under --out: angles.png (angle(g_l, g_d) and the step-to-step angles of g_l and g_d,
one panel per method: the paper's Figure 1), loss.png, telemetry_<method>.csv, x0hat_<method>.gif,
restorations.png, settings.json (resolved settings, versions, command line) and summary.json (per method:
mean and 90th percentile of the step-to-step g_l angle over the middle half of the run, PSNR, cost)."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd diagnose`."""
    parser.add_argument("input", metavar="IMAGE_OR_DIR", help="an image file, or a folder of images")
    parser.add_argument("--task", required=True, choices=TASKS, help="the degradation (benchmark setting)")
    add_prior(parser)
    add_methods(parser, default=ABLATION_METHODS)
    add_settings(parser, dest="settings")
    add_seed(parser)
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use the first N images of a folder (default: all)")
    parser.add_argument("--frames", type=int, default=40, metavar="N",
                        help="about N x0_hat frames per animation; 0 writes no GIF (default: %(default)s)")
    parser.add_argument("--size", type=int, default=None, metavar="S",
                        help="center-crop and resize images to SxS (default: keep their size)")
    add_device(parser)
    add_output(parser)
    return parser


RENAMES = {"overrides": "settings"}


def run(args: argparse.Namespace, argv: list[str]) -> int:
    plan = DiagnosePlan(args.input, args.task, parse_methods(args.methods), overrides=args.settings,
                        prior=args.prior, checkpoint=args.checkpoint, seed=args.seed, limit=args.limit,
                        frames=args.frames, size=args.size, device=args.device)
    record = diagnose(plan, args.out, console(args), ["spgd", *argv])
    if not args.quiet:
        print(str(record.run_dir))
    return EXIT_OK
