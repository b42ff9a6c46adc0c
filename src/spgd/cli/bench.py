"""`spgd bench`: speed and quality benchmarks of the network's execution modes."""

from __future__ import annotations

import argparse

from ..experiment.bench import EXAMPLES, PAPER_STEPS, PAPER_WARMUP, run_bench
from ..priors.unet import ARCHITECTURES
from .options import OptionContainer, add_device, add_option_groups, add_output, add_seed

HELP = "speed and quality benchmarks"
DESCRIPTION = """\
Time SPGD restorations with random-weight networks of the given architectures: the reference execution
(float32, eager) against the fast path (bf16 autocast, torch.compile, channels-last), per batch size; with
--check-quality, also the PSNR of each mode's restorations against the ground truth and its difference to the
reference's."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd bench`, in two groups: the timing rows and the quality check."""
    add_option_groups(parser, {"timing": add_timing_options, "quality check": add_quality_options})
    add_seed(parser, "seed of the random weights and of the timing rows' batch; image i of --check-quality is "
                     "seeded as image i of spgd eval --seed SEED")
    add_device(parser)
    add_output(parser)
    return parser


def add_timing_options(g: OptionContainer) -> None:
    """What is timed: architectures, batch sizes, K and N, the fast path's modes and the repeats."""
    a = g.add_argument
    a("--arch", default="ffhq256", help=f"architectures, comma-separated: {', '.join(ARCHITECTURES)}, or a JSON "
      "file of UNetModel keywords (default: ffhq256)")
    a("--batch-sizes", default="1,8,32,auto", help="comma-separated batch sizes; 'auto' sizes the batch from free "
      "GPU memory (CPU: 4) (default: 1,8,32,auto)")
    a("--steps", type=int, default=PAPER_STEPS, help=f"K, annealing levels (>= 1; default {PAPER_STEPS})")
    a("--warmup-steps", type=int, default=PAPER_WARMUP,
      help=f"N, warm-up steps per level (>= 1; default {PAPER_WARMUP})")
    a("--precision", default="bf16", help="fast-path precisions, comma-separated: fp32, bf16 (default: bf16)")
    a("--compile", default=None, help="fast path with torch.compile: on, off or on,off (default: on for CUDA, off "
      "for the CPU)")
    a("--compile-mode", default="default", help="torch.compile modes of the compiled rows, comma-separated: default, "
      "reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs, auto (CUDA graphs for batches "
      "of at most 4) (default: default)")
    a("--channels-last", default="off", help="fast path in channels-last memory format: on, off or on,off "
      "(default: off)")
    a("--size", type=int, default=None, help="image side in pixels (default: the architecture's, 256)")
    a("--repeat", type=int, default=1, help="timed restorations per row; the median is reported (default: 1)")
    a("--max-batch", type=int, default=64, help="upper bound for the auto batch size (default: 64)")
    a("--lr", type=float, default=1.0, help="SPGD step size (Gaussian blur preset: 1.0)")
    a("--no-reference", action="store_true", help="skip the reference timing rows (no speed-up column then; "
      "--check-quality still restores with the reference)")


def add_quality_options(g: OptionContainer) -> None:
    """--check-quality: which priors, images and steps the fast path is compared on."""
    a = g.add_argument
    a("--check-quality", action="store_true", help="also compare the restorations of the reference and the fast "
      "modes against the ground truth (PSNR difference)")
    a("--quality-prior", default="default,gaussian", help="priors for --check-quality: load_prior names or files, "
      "or 'random' for the random-weight architecture (default: default,gaussian)")
    a("--quality-images", default=None, help="folder of ground-truth images for --check-quality (default: the "
      "bundled photo, flipped and shifted)")
    a("--quality-count", type=int, default=2, help="images in the quality check (default: 2)")
    a("--quality-steps", type=int, default=None, help="K of the quality check's restorations (default: --steps; "
      "N is --warmup-steps)")
    a("--quality-only", action="store_true", help="only the --check-quality comparison, no timing rows")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_bench(args, ["spgd", *argv])
