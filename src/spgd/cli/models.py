"""`spgd models PATH...`: what each model file or folder is and the command line that restores with it."""

from __future__ import annotations

import argparse

from ..errors import SpgdError
from ..priors.formats import inspect_model
from .options import add_verbosity, prior_location

HELP = "what a model file or folder is (format, size, channels, sigma range) and how to restore with it"
DESCRIPTION = """\
Describe model files or folders: format, architecture, parameters, resolution, channels, sigma range, and a
command line that restores with it. Understood: guided-diffusion/DPS checkpoints (every published one,
class-conditional included), files and run folders of `spgd train`, deepinv DiffUNet and InverseBench files,
diffusers UNet2DModel or pipeline folders (needs spgd[diffusers]); 'default' is the bundled prior."""
EXAMPLES = """\
examples:
  spgd models ffhq_10m.pt
  spgd models 256x256_diffusion.pt ddpm-celebahq-256/
  spgd models default"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd models`."""
    parser.add_argument("paths", nargs="+", metavar="PATH", type=prior_location,
                        help="model file or folder (or 'default')")
    add_verbosity(parser)
    return parser


def run(args: argparse.Namespace, argv: list[str]) -> int:
    errors = []
    for i, path in enumerate(args.paths):
        try:
            info = inspect_model(path)
        except SpgdError as e:
            if len(args.paths) == 1:
                raise
            errors.append(f"{path}: {e}")
            continue
        if i:
            print()
        print("\n".join(info.lines()))
    if errors:
        raise SpgdError("; ".join(errors))
    return 0
