"""`spgd sweep`: the stability study (quality against one setting)."""

from __future__ import annotations

import argparse

from ..experiment.sweep import DEFAULT_METHODS, run_sweep
from .options import parse_size


HELP = "stability study: quality against one setting"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `spgd sweep`."""
    p.description = (
        "The stability study: for each method and each value of one setting, degrade the clean images of "
        "IMAGES_DIR with TASK's operator and restore them (the same images, operators, noise and seeds in every "
        "cell; each cell is an `spgd eval` run in RUN/METHOD/KEY=VALUE/), then write sweep.csv (per image), "
        "sweep.json (mean/std PSNR and SSIM, failures, per method and value) and sweep.png (quality against "
        "the setting, diverged runs marked). Diverged images are results, not errors: the exit status is 0."
    )
    p.epilog = (
        "examples:\n"
        "  spgd sweep faces/ --task gaussian_blur --vary lr=log:0.1:100:7 --prior ffhq256 --checkpoint ffhq_10m.pt\n"
        "  spgd sweep faces/ --task super_resolution --vary lr=1,3,7,20 --methods spgd,spgd-no-momentum --limit 4\n"
        "  spgd sweep faces/ --task gaussian_blur --prior gaussian --size 64 --resize --vary beta=0,0.5,0.9,0.99\n"
        "  spgd sweep faces/ --task gaussian_blur --vary noise_sigma=0.01,0.05,0.1 --methods spgd,dps\n"
        "  spgd sweep --resume runs/20250101T120000Z-sweep-gaussian_blur   # finish an interrupted sweep\n"
        "notes: a sampler setting is varied in every method (each must have it; DPS's lr is its own step-size\n"
        "  scale zeta, DAPS's lr its Langevin step); an operator parameter (noise_sigma, ...) in the operator.\n"
        "exit status: 0 ok (diverged images included), 2 bad input, 130 interrupted."
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("images_dir", metavar="IMAGES_DIR", nargs="?", default=None,
                   help="folder of clean images; optional with --resume")
    p.add_argument("--task", metavar="T", default=None, help="the degradation (as in spgd eval)")
    p.add_argument("--vary", metavar="KEY=VALUES", default=None,
                   help="the setting and its values: lr=0.1,0.3,1,3,10, lr=log:0.1:10:5 (log spaced), "
                   "lr=lin:0.5:2:4, cosine=sample,pixel; KEY may also be an operator parameter (noise_sigma)")
    p.add_argument("--methods", "--method", dest="methods", metavar="M[,M...]", default=None,
                   help=f"methods, comma-separated (default: {DEFAULT_METHODS})")
    p.add_argument("--prior", metavar="P", default=None,
                   help="'default', 'gaussian', 'ffhq256'/'imagenet256' (with --checkpoint) or a weights file "
                   "(default: default)")
    p.add_argument("--checkpoint", metavar="FILE", default=None, help="the .pt weights for --prior ffhq256/imagenet256")
    p.add_argument("--set", dest="set", action="append", default=None, metavar="KEY=VALUE",
                   help="override a preset value for every cell, repeatable (as in spgd eval); not the varied key")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--size", type=parse_size, default=None, metavar="N|HxW",
                   help="image size (default: the prior's, else the first image's)")
    p.add_argument("--resize", action="store_true", default=None,
                   help="center-crop and resize images that are not the size")
    p.add_argument("--kernel", metavar="FILE", default=None, help="blur kernel file (gaussian/motion blur)")
    p.add_argument("--mask", metavar="FILE", default=None, help="inpainting mask file for every image")
    p.add_argument("--seed", type=int, default=None, help="base seed: image i uses seed + i (default: 0)")
    p.add_argument("--batch-size", type=int, default=1, metavar="B", help="images per batch (default: 1)")
    p.add_argument("--device", metavar="D", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue this sweep folder: its saved settings, only the cells not complete")
    p.add_argument("--out", metavar="DIR", default="runs",
                   help="folder that receives a new run folder per call (default: %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="no status lines")
    g.add_argument("-v", "--verbose", action="store_true", help="more detail (per-image lines)")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_sweep(args)
