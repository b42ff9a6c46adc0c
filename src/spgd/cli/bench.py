"""`spgd bench`: speed and quality benchmarks of the network's execution modes."""

from __future__ import annotations

import argparse
from typing import Sequence, Union

import torch

from ..errors import SpgdError
from ..experiment.bench import (
    PAPER_STEPS, PAPER_WARMUP, PRECISIONS, BenchPlan, bench, format_quality, format_table, memory_label,
)
from ..priors.execution import COMPILE_MODES
from ..priors.unet import ARCHITECTURES
from .options import EXIT_OK, OptionContainer, add_device, add_option_groups, add_output, add_seed, console

HELP = "speed and quality benchmarks"
DESCRIPTION = """\
Time SPGD restorations with random-weight networks of the given architectures: the reference execution
(float32, eager) against the fast path (bf16 autocast, torch.compile, channels-last), per batch size; with
--check-quality, also the PSNR of each mode's restorations against the ground truth and its difference to the
reference's."""
EXAMPLES = """examples:
  # the GPU table of the issue: reference and fast path, FFHQ-256, batch 1, 8, 32 and auto, K reduced to 20
  spgd bench --arch ffhq256 --batch-sizes 1,8,32,auto --steps 20 --warmup-steps 5 --precision bf16 --compile on
  # both architectures, bf16 and fp32 fast paths, compiled and eager, plus the same-results check
  spgd bench --arch ffhq256,imagenet256 --precision fp32,bf16 --compile on,off --check-quality
  # a tiny CPU run (what the tests do)
  spgd bench --device cpu --arch ffhq256 --size 64 --steps 2 --warmup-steps 1 --batch-sizes 1
"""


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


RENAMES = {"archs": "arch", "precisions": "precision", "compiles": "compile", "compile_modes": "compile_mode",
           "quality_priors": "quality_prior"}


def choices(text: str, option: str, allowed: Sequence[str]) -> list[str]:
    """A comma-separated list of `option`, each one of `allowed`, without repeats."""
    items = [t.strip().lower() for t in (text or "").split(",") if t.strip()]
    if not items:
        raise SpgdError(f"{option} needs at least one of {', '.join(allowed)}")
    for t in items:
        if t not in allowed:
            raise SpgdError(f"{option}: {t!r} is not one of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def batch_sizes(text: str) -> list[Union[int, str]]:
    """--batch-sizes: comma-separated positive integers or 'auto', without repeats."""
    out: list[Union[int, str]] = []
    for t in (p.strip().lower() for p in text.split(",")):
        if not t:
            continue
        if t == "auto":
            out.append("auto")
            continue
        try:
            b = int(t)
        except ValueError:
            raise SpgdError(f"--batch-sizes: {t!r} is neither a positive integer nor 'auto'") from None
        if b < 1:
            raise SpgdError(f"--batch-sizes: batch sizes must be >= 1, got {b}")
        out.append(b)
    if not out:
        raise SpgdError("--batch-sizes needs at least one batch size, e.g. 1,8,32,auto")
    return list(dict.fromkeys(out))


def on_off(text: str, option: str) -> list[bool]:
    return [v == "on" for v in choices(text, option, ("on", "off"))]


def run(args: argparse.Namespace, argv: list[str]) -> int:
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    if not archs:
        raise SpgdError("--arch needs at least one architecture")
    plan = BenchPlan(
        archs=archs, batch_sizes=batch_sizes(args.batch_sizes), steps=args.steps, warmup_steps=args.warmup_steps,
        precisions=choices(args.precision, "--precision", PRECISIONS),
        compiles=None if args.compile is None else on_off(args.compile, "--compile"),
        compile_modes=choices(args.compile_mode, "--compile-mode", COMPILE_MODES),
        channels_last=on_off(args.channels_last, "--channels-last"), size=args.size, repeat=args.repeat,
        max_batch=args.max_batch, lr=args.lr, reference=not args.no_reference, check_quality=args.check_quality,
        quality_priors=[p.strip() for p in args.quality_prior.split(",") if p.strip()],
        quality_images=args.quality_images, quality_count=args.quality_count, quality_steps=args.quality_steps,
        quality_only=args.quality_only, seed=args.seed, device=args.device,
    )
    con = console(args)
    record = bench(plan, args.out, con, ["spgd", *argv]).record
    memory = memory_label(torch.device(record["device"]))
    if record["rows"]:
        con.result(format_table(record["rows"], memory))
    if record["quality"]:
        con.result("")
        con.result(format_quality(record["quality"]))
    return EXIT_OK
