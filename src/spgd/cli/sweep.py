"""`spgd sweep`: the stability study (quality against one setting)."""

from __future__ import annotations

import argparse
import sys

from ..errors import SpgdError
from ..experiment.sweep import SweepPlan, format_sweep, sweep
from .options import (
    ABLATION_METHODS, EXIT_INTERRUPTED, EXIT_OK, add_device, add_methods, add_output, add_prior, add_seed,
    add_settings, console, parse_methods, parse_size, plan_fields,
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
    add_methods(p, default=ABLATION_METHODS)
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


# the plan's fields and their options (plan field -> destination): a resumed sweep keeps its plan (an option
# given now must agree with it), except the batch size and device, which say how to run, not what
PLAN_OPTIONS = {"images_dir": "images_dir", "task": "task", "vary": "vary", "methods": "methods",
                "overrides": "set", "prior": "prior", "checkpoint": "checkpoint", "limit": "limit", "size": "size",
                "resize": "resize", "seed": "seed", "kernel": "kernel", "mask": "mask"}
RENAMES = PLAN_OPTIONS


def run(args: argparse.Namespace, argv: list[str]) -> int:
    con = console(args)
    if args.batch_size < 1:
        raise SpgdError(f"--batch-size must be >= 1, got {args.batch_size}")
    args.methods = parse_methods(args.methods)
    fields = plan_fields(args, argv, add_arguments, PLAN_OPTIONS, args.resume, "sweep")
    for name, what in (("images_dir", "IMAGES_DIR (a folder of clean images)"), ("task", "--task"),
                       ("vary", "--vary KEY=VALUES, e.g. --vary lr=log:0.1:10:5")):
        if fields[name] is None:
            raise SpgdError(f"spgd sweep needs {what}")
    plan = SweepPlan(**fields, batch_size=args.batch_size, device=args.device)
    record = sweep(plan, args.out, args.resume, con, command_line(plan))
    if record.interrupted:
        print(f"spgd: interrupted; continue with:\n  spgd sweep --resume {record.run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    con.result(str(record.run_dir))
    con.result(format_sweep(record.tables))
    failed = {m: s["values_with_failure"] for m, s in record.tables["summary"].items() if s["values_with_failure"]}
    if failed:
        con.info(f"diverged images at {record.varied.key} = {failed} (marked in sweep.png, excluded from the means)")
    return EXIT_OK


def command_line(plan: SweepPlan) -> list[str]:
    """The sweep as one `spgd sweep` command line (canonical: every experiment option spelled out)."""
    out = ["spgd", "sweep", str(plan.images_dir), "--task", plan.task, "--vary", plan.vary,
           "--methods", ",".join(plan.methods), "--prior", plan.prior, "--seed", str(plan.seed)]
    for name in ("checkpoint", "limit", "kernel", "mask"):
        if getattr(plan, name) is not None:
            out += [f"--{name}", str(getattr(plan, name))]
    if plan.size is not None:
        out += ["--size", f"{plan.size[0]}x{plan.size[1]}"]
    if plan.resize:
        out.append("--resize")
    for item in plan.overrides:
        out += ["--set", item]
    out += ["--batch-size", str(plan.batch_size)]
    if plan.device:
        out += ["--device", plan.device]
    return out
