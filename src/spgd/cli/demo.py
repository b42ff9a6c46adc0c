"""`spgd demo`: restore the bundled photo."""

from __future__ import annotations

import argparse

from ..experiment.restore import DEMO_STEPS, DEMO_TASK, DemoPlan, run_demo
from .options import EXIT_OK, add_device, add_output, console

HELP = "restore the bundled photo (no files or downloads needed)"
DESCRIPTION = f"""\
Degrade the bundled photo ({DEMO_TASK}: 80 % of its pixels removed, noise 0.01), restore it with SPGD and
the default prior, and write grid.png (ground truth | measurement | restored), restored.png and metrics.json
(PSNR/SSIM of the measurement and of the restoration)."""
EXAMPLES = """\
examples:
  spgd demo
  spgd demo --steps 200 --device cuda --out demo_runs"""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd demo`."""
    p.add_argument("--steps", type=int, default=DEMO_STEPS,
                   help="SPGD annealing steps K (default: %(default)s, 28 s measured on an idle 2-core CPU; "
                   "paper: 200)")
    add_device(p)
    add_output(p)
    return p


def run(args: argparse.Namespace, argv: list[str]) -> int:
    con = console(args)
    con.detail(f"{DEMO_TASK}, {args.steps} SPGD steps, the default prior")
    record = run_demo(DemoPlan(args.steps, args.device), args.out, con, ["spgd", *argv])
    m, r = record.scores["measurement"], record.scores["restored"]
    con.result(str(record.run_dir))
    con.result(f"measurement: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}")
    con.result(f"restored:    PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}  ({record.seconds:.1f} s, prior "
               f"{record.prior})")
    return EXIT_OK
