"""The options several commands share, declared once with their help and default, and the helpers that read
them: the parser class (one-line errors), exit statuses, --prior/--checkpoint/--class-label/--no-fast, --set,
--device, --seed, --out, -q/-v, --size and method lists."""

from __future__ import annotations

import argparse
import os
from typing import Callable, Iterable, Optional

from ..experiment.runs import Console
from ..operators import TASKS
from ..presets import apply_overrides, load_preset
from ..samplers import METHODS, parse_methods  # noqa: F401 - parse_methods: the commands read it here

EXIT_OK, EXIT_FAILED_IMAGES, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

TASKS_TEXT = ", ".join(TASKS)
METHODS_TEXT = ", ".join(METHODS)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `spgd: error: ... (see 'spgd eval --help')`, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"spgd: error: {message} (see '{self.prog} --help')\n")


class _Unset(list):
    """Marks an option the command line did not set (a list, so that `append` options can add to it)."""


def explicit_options(add_arguments: Callable[[argparse.ArgumentParser], None], argv: list[str],
                     names: Iterable[str]) -> set[str]:
    """Which of the options `names` the command line `argv` sets itself (a declared default does not count):
    argparse only fills in a default where the namespace has no value yet, so every name starts as a marker.

    >>> def add(p): p.add_argument("--seed", type=int, default=0); p.add_argument("--set", action="append")
    >>> sorted(explicit_options(add, ["--set", "lr=1"], ["seed", "set"]))
    ['set']
    """
    parser = Parser(prog="spgd")
    add_arguments(parser)
    marks = {k: _Unset() for k in names}
    ns = parser.parse_args(argv, namespace=argparse.Namespace(**marks))
    return {k for k, mark in marks.items() if getattr(ns, k) is not mark and getattr(ns, k) is not None}


def parse_size(text: str) -> tuple[int, int]:
    """--size 256 or 256x192 (height x width).

    >>> parse_size("256"), parse_size("64x48")
    ((256, 256), (64, 48))
    """
    try:
        parts = [int(p) for p in text.lower().replace("*", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return parts[0], parts[1]


def parse_batch_size(text: str) -> "int | str":
    """--batch-size: a positive integer or 'auto'."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def add_output(p: argparse.ArgumentParser, out: bool = True) -> None:
    """--out DIR (a new run folder per call goes there), -q/--quiet and -v/--verbose."""
    if out:
        p.add_argument("--out", metavar="DIR", default="runs",
                       help="folder that receives a new run folder per call (default: %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    g.add_argument("-v", "--verbose", action="store_true", help="more detail (and tracebacks on errors)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="D", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")


def add_prior(p: argparse.ArgumentParser) -> None:
    """--prior, --checkpoint, --class-label and --no-fast."""
    p.add_argument("--prior", metavar="P", default="default",
                   help="'default' (bundled), 'gaussian' (analytic), 'ffhq256' or 'imagenet256' (with --checkpoint), "
                   "a checkpoint file (guided-diffusion/DPS, class-conditional included, deepinv, InverseBench, "
                   "`spgd train`) or a diffusers model folder; see `spgd models PATH` (default: default)")
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="the .pt weights for --prior ffhq256 / imagenet256 (e.g. ffhq_10m.pt)")
    p.add_argument("--class-label", type=int, default=None, metavar="N",
                   help="class-conditional priors (guided-diffusion 64x64/128x128/256x256/512x512_diffusion.pt): the "
                   "ImageNet class to condition on; these networks have no unconditional mode, so without it class 0 "
                   "is used, with a warning (default: none)")
    p.add_argument("--no-fast", action="store_true",
                   help="run the network in float32, eager, as written (the fast path - bf16 autocast, "
                   "torch.compile, channels-last - is on by default on CUDA; same as SPGD_FAST=0)")


def add_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, repeatable: sampler settings (steps, warmup_steps, lr, lr_min_ratio, "
                   "beta, sigma_max, sigma_min, cosine, fresh_denoise, ...), operator parameters (noise_sigma, "
                   "kernel_size, ...), or explicitly operator.NAME / METHOD.NAME")


def apply_no_fast(args: argparse.Namespace) -> None:
    """--no-fast: every prior this process loads runs float32 eager (spgd.priors.execution reads SPGD_FAST)."""
    if getattr(args, "no_fast", False):
        os.environ["SPGD_FAST"] = "0"


def console(args: argparse.Namespace) -> Console:
    """The Console of -q (0), the default (1) or -v (2)."""
    return Console(0 if getattr(args, "quiet", False) else 2 if getattr(args, "verbose", False) else 1)


def task_preset(task: str, overrides: list[str], methods: Optional[list[str]] = None, protocol: str = "spgd") -> dict:
    """TASK's preset under PROTOCOL with the --set overrides applied."""
    return apply_overrides(load_preset(task, protocol), overrides, methods)
