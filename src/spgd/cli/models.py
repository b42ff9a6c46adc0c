"""`spgd models PATH...`: what each model file or folder is and the command line that restores with it."""

from __future__ import annotations

import argparse

from ..errors import SpgdError

HELP = "what a model file or folder is (format, size, channels, sigma range) and how to restore with it"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = (
        "Describe model files or folders: format, architecture, parameters, resolution, channels, sigma range, "
        "and a command line that restores with it. Understood: guided-diffusion/DPS checkpoints (every "
        "published one, class-conditional included), files of `spgd train`, deepinv DiffUNet and InverseBench "
        "files, diffusers UNet2DModel or pipeline folders (needs spgd[diffusers]); 'default' is the bundled prior."
    )
    parser.epilog = (
        "examples:\n"
        "  spgd models ffhq_10m.pt\n"
        "  spgd models 256x256_diffusion.pt ddpm-celebahq-256/\n"
        "  spgd models default"
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="model file or folder (or 'default')")
    return parser


def run_models(args: argparse.Namespace) -> int:
    from ..priors.formats import inspect_model

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


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_models(args)
