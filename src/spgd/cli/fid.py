"""`spgd fid`: FID and KID of two image folders or statistics files."""

from __future__ import annotations

import argparse

from ..experiment.fid import EXAMPLES, run_fid
from ..metrics.inception import RESIZE_MODES
from .options import add_device, add_verbosity

HELP = "FID and KID of two image folders (local weights)"
DESCRIPTION = """\
FID (pytorch-fid's Inception-v3 features, Fréchet distance in float64) and KID (unbiased, polynomial kernel)
between two sets of images: SET_A and SET_B are folders of images or .npz statistics files. With one folder
and --save-stats, only its statistics are computed and cached (as EDM's `fid.py ref`)."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd fid`."""
    parser.add_argument("sets", nargs="+", metavar="SET", help="SET_A [SET_B]: folders of images or .npz files")
    parser.add_argument("--fid-weights", required=True, metavar="FILE",
                        help="pt_inception-2015-12-05-6726825d.pth, the Inception weights of pytorch-fid and "
                        "torch-fidelity (never downloaded)")
    parser.add_argument("--resize", choices=RESIZE_MODES, default="pytorch-fid",
                        help="whose resizing to 299x299 and normalisation to use (default: %(default)s)")
    parser.add_argument("--save-stats", metavar="OUT.npz", default=None,
                        help="write the statistics (and features) of the last folder given, for later runs")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per batch (default: 16)")
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verbosity(parser)
    return parser


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_fid(args)
