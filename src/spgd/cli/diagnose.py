"""`spgd diagnose`: gradient telemetry and its plots."""

from __future__ import annotations

import argparse

from ..experiment.diagnose import CPU_STEPS, DEFAULT_METHODS, EPILOG, run_diagnose
from ..operators import TASKS


HELP = "record and plot gradient dynamics inside the samplers"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `spgd diagnose` options to `parser` (a subparser)."""
    parser.description = (
        "Degrade image(s) with a task's operator, restore them with each method while recording the gradient "
        "dynamics (likelihood step g_l, denoise step g_d and their angles), and plot them."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("input", metavar="IMAGE_OR_DIR", help="an image file, or a folder of images")
    parser.add_argument("--task", required=True, choices=TASKS, help="the degradation (benchmark setting)")
    parser.add_argument("--prior", default="default",
                        help="'default' (bundled), 'gaussian', 'ffhq256', 'imagenet256' or a file (default: %(default)s)")
    parser.add_argument("--checkpoint", default=None, help="weights file for --prior ffhq256/imagenet256")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help="comma-separated methods to compare (default: %(default)s)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override the task preset, repeatable: a sampler setting for every method (steps=200, "
                             "lr=2), one method's (spgd.beta=0.5) or an operator parameter (kernel_size=31); "
                             f"an ablation's defining setting is kept (default: the preset; steps {CPU_STEPS} on CPU)")
    parser.add_argument("--seed", type=int, default=0,
                        help="image i (sorted order) gets the draws of image i of `spgd eval --seed SEED`: its "
                             "operator's random part from SEED + i, its measurement noise and initial noise from "
                             "generators derived from it (default: %(default)s)")
    parser.add_argument("--out", default="runs", help="parent folder of the new run folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use the first N images of a folder (default: all)")
    parser.add_argument("--frames", type=int, default=40, metavar="N",
                        help="about N x0_hat frames per animation; 0 writes no GIF (default: %(default)s)")
    parser.add_argument("--size", type=int, default=None, metavar="S",
                        help="center-crop and resize images to SxS (default: keep their size)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no status lines or progress bars")
    return parser


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_diagnose(args, ["spgd", *argv])
