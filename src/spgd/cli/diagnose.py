"""`spgd diagnose`: gradient telemetry and its plots."""

from __future__ import annotations

import argparse

from ..experiment.diagnose import CPU_STEPS, DEFAULT_METHODS, EPILOG, run_diagnose
from ..operators import TASKS
from .options import add_device, add_methods, add_output, add_prior, add_seed, add_settings

HELP = "record and plot gradient dynamics inside the samplers"
DESCRIPTION = f"""\
Degrade image(s) with a task's operator, restore them with each method while recording the gradient
dynamics (likelihood step g_l, denoise step g_d and their angles), and plot them. The settings are the task
preset's and --set; on a CPU, steps is {CPU_STEPS} unless --set gives it."""
EXAMPLES = EPILOG


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd diagnose`."""
    parser.add_argument("input", metavar="IMAGE_OR_DIR", help="an image file, or a folder of images")
    parser.add_argument("--task", required=True, choices=TASKS, help="the degradation (benchmark setting)")
    add_prior(parser)
    add_methods(parser, default=DEFAULT_METHODS)
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


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_diagnose(args, ["spgd", *argv])
