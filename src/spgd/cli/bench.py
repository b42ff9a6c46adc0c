"""`spgd bench`: speed and quality benchmarks of the network's execution modes."""

from __future__ import annotations

import argparse

from ..experiment.bench import EXAMPLES, PAPER_STEPS, PAPER_WARMUP, run_bench
from ..priors.unet import ARCHITECTURES


HELP = "speed and quality benchmarks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    a = parser.add_argument
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
    a("--device", default=None, help="cuda, cuda:N or cpu (default: CUDA when available)")
    a("--repeat", type=int, default=1, help="timed restorations per row; the median is reported (default: 1)")
    a("--max-batch", type=int, default=64, help="upper bound for the auto batch size (default: 64)")
    a("--lr", type=float, default=1.0, help="SPGD step size (Gaussian blur preset: 1.0)")
    a("--seed", type=int, default=0, help="seed of the random weights and of the timing rows' random images; "
      "image i of --check-quality is seeded as image i of `spgd eval --seed SEED` (default: 0)")
    a("--no-reference", action="store_true", help="skip the reference timing rows (no speed-up column then; "
      "--check-quality still restores with the reference)")
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
    a("--out", default="runs", help="parent folder of the new run folder (default: runs/)")
    a("-q", "--quiet", action="store_true", help="print only the table")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_bench(args, ["spgd", *argv])
