"""`spgd demo`: restore the bundled photo."""

from __future__ import annotations

import argparse

from ..experiment.restore import DEMO_STEPS, DEMO_TASK, run_demo
from .options import (
    EXIT_OK, add_device, add_output, console,
)

HELP = "restore the bundled photo (no files or downloads needed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `spgd demo`."""
    p.description = (
        f"Degrade the bundled photo ({DEMO_TASK}: 80 % of its pixels removed, noise 0.01), restore it "
        "with SPGD and the default prior, and write grid.png (ground truth | measurement | restored), "
        "restored.png and metrics.json (PSNR/SSIM of the measurement and of the restoration)."
    )
    p.epilog = "examples:\n  spgd demo\n  spgd demo --steps 200 --device cuda --out demo_runs"
    p.add_argument("--steps", type=int, default=DEMO_STEPS,
                   help="SPGD annealing steps K (default: %(default)s, 35 s measured on an idle 2-core CPU; "
                   "paper: 200)")
    add_device(p)
    add_output(p)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    run_demo(args.out, args.steps, args.device, console(args), ["spgd", *argv])
    return EXIT_OK
