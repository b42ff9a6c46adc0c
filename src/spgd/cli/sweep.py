"""`spgd sweep`: the stability study (quality against one setting)."""

from __future__ import annotations

import argparse

from ..experiment.sweep import DEFAULT_METHODS, IDENTITY_OPTIONS, run_sweep
from .options import (
    add_device, add_methods, add_output, add_prior, add_seed, add_settings, explicit_options, parse_size,
)

HELP = "stability study: quality against one setting"
DESCRIPTION = """\
The stability study: for each method and each value of one setting, degrade the clean images of IMAGES_DIR
with TASK's operator and restore them (the same images, operators, noise and seeds in every cell; each cell
is an `spgd eval` run in RUN/METHOD/KEY=VALUE/), then write sweep.csv (per image), sweep.json (mean/std PSNR
and SSIM, failures, per method and value) and sweep.png (quality against the setting, diverged runs marked).
Diverged images are results, not errors: the exit status is 0."""
EXAMPLES = """\
examples:
  spgd sweep faces/ --task gaussian_blur --vary lr=log:0.1:100:7 --prior ffhq256 --checkpoint ffhq_10m.pt
  spgd sweep faces/ --task super_resolution --vary lr=1,3,7,20 --methods spgd,spgd-no-momentum --limit 4
  spgd sweep faces/ --task gaussian_blur --prior gaussian --size 64 --resize --vary beta=0,0.5,0.9,0.99
  spgd sweep faces/ --task gaussian_blur --vary noise_sigma=0.01,0.05,0.1 --methods spgd,dps
  spgd sweep --resume runs/20250101T120000Z-sweep-gaussian_blur   # finish an interrupted sweep
notes: a sampler setting is varied in every method (each must have it; DPS's lr is its own step-size
  scale zeta, DAPS's lr its Langevin step); an operator parameter (noise_sigma, ...) in the operator.
exit status: 0 ok (diverged images included), 2 bad input, 130 interrupted."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd sweep`."""
    p.add_argument("images_dir", metavar="IMAGES_DIR", nargs="?", default=None,
                   help="folder of clean images; optional with --resume")
    p.add_argument("--task", metavar="T", default=None, help="the degradation (as in spgd eval)")
    p.add_argument("--vary", metavar="KEY=VALUES", default=None,
                   help="the setting and its values: lr=0.1,0.3,1,3,10, lr=log:0.1:10:5 (log spaced), "
                   "lr=lin:0.5:2:4, cosine=sample,pixel; KEY may also be an operator parameter (noise_sigma); "
                   "--set may not set it")
    add_methods(p, default=DEFAULT_METHODS)
    add_prior(p)
    add_settings(p)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--size", type=parse_size, default=None, metavar="N|HxW",
                   help="image size (default: the prior's, else the first image's)")
    p.add_argument("--resize", action="store_true", help="center-crop and resize images that are not the size")
    p.add_argument("--kernel", metavar="FILE", default=None, help="blur kernel file (gaussian/motion blur)")
    p.add_argument("--mask", metavar="FILE", default=None, help="inpainting mask file for every image")
    add_seed(p)
    p.add_argument("--batch-size", type=int, default=1, metavar="B", help="images per batch (default: 1)")
    add_device(p)
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue this sweep folder: its saved settings, only the cells not complete")
    add_output(p)
    return p


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_sweep(args, explicit_options(add_arguments, argv[1:], IDENTITY_OPTIONS))
