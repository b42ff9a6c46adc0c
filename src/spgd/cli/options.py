"""The options several commands share, declared once with their help and default, and the helpers that read
them: the parser class (one-line errors), exit statuses, --prior/--checkpoint, --class-label/--no-fast, --set,
--device, --seed, --out, -q/-v, --size and method lists; and the re-wording of a pipeline's error, which names
Python parameters, into the flags of the command line."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

import torch

from ..device import Threads, apply_threads, choose_threads
from ..experiment.console import Console
from ..experiment.runs import PathLike, read_plan
from ..experiment.train import TRAINED_WEIGHTS
from ..operators import TASKS
from ..samplers import METHODS, check_methods

# the exit statuses of every command: 0 success; 1 some images failed (diverged); 2 bad input or another error;
# 130 interrupted
EXIT_OK, EXIT_FAILED_IMAGES, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

#: the default --methods of spgd diagnose and spgd sweep: SPGD against its ablations
ABLATION_METHODS = "spgd,spgd-no-momentum,spgd-no-warmup"

TASKS_TEXT = ", ".join(TASKS)
WEIGHTS_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
METHODS_TEXT = ", ".join(METHODS)


class OptionContainer(Protocol):
    """A parser or one of its argument groups: what the add_* functions declare their options on."""

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action: ...

    def add_mutually_exclusive_group(self, *, required: bool = False) -> Any: ...


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


def parse_methods(text: str) -> list[str]:
    """--method/--methods: a comma-separated method list, each checked against METHODS (none twice).

    >>> parse_methods("spgd, dps")
    ['spgd', 'dps']
    """
    return check_methods([m.strip() for m in str(text).split(",") if m.strip()])


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


def add_option_groups(parser: argparse.ArgumentParser,
                      groups: dict[str, Callable[[OptionContainer], None]]) -> argparse.ArgumentParser:
    """Declare each group's options under its title (`--help` lists them so); returns `parser`."""
    for title, add_options in groups.items():
        add_options(parser.add_argument_group(title))
    return parser


def add_verbosity(p: OptionContainer) -> None:
    """-q/--quiet and -v/--verbose (every command)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or status lines: only the results and warnings")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="more detail (the command's detail lines, where it has them) and the traceback of an error")


def add_output(p: OptionContainer) -> None:
    """--out DIR (a new run folder per call goes there), -q/--quiet and -v/--verbose."""
    p.add_argument("--out", metavar="DIR", default="runs",
                   help="folder that receives a new run folder per call (default: %(default)s)")
    add_verbosity(p)


def add_run_folder_output(p: OptionContainer) -> None:
    """--out RUN_DIR for a command whose run folder the user names (spgd train: --resume continues it, --prior
    finds the weights in it), -q/--quiet and -v/--verbose."""
    p.add_argument("--out", metavar="RUN_DIR", required=True, type=run_folder,
                   help=f"the run folder (created if new): the weights go to RUN_DIR/{TRAINED_WEIGHTS}, beside "
                   "the training state, settings.json and report.json")
    add_verbosity(p)


def run_folder(text: str) -> str:
    """--out RUN_DIR of spgd train: a folder, not a weights file (the form --out FILE of earlier versions)."""
    path = Path(text)
    if path.suffix.lower() in WEIGHTS_SUFFIXES or path.is_file():
        folder = path.with_suffix("") if path.suffix.lower() in WEIGHTS_SUFFIXES else path.with_name(path.name + "-run")
        earlier = Path(text + ".ckpt")  # the checkpoint an earlier `--out FILE` run wrote beside its file
        resume = f"; to continue that run: --out {folder} --resume --training-state {earlier}" if earlier.is_file() else ""
        raise argparse.ArgumentTypeError(
            f"--out is now the run folder of spgd train (the weights go to RUN_DIR/{TRAINED_WEIGHTS}), not a weights "
            f"file: got {text!r}; use e.g. --out {folder} and then --prior {folder}{resume}"
        )
    return text


def add_device(p: OptionContainer) -> None:
    p.add_argument("--device", metavar="D", default=None,
                   help="cpu, cuda, cuda:N or auto (default: auto, CUDA when available)")


SEED_HELP = ("base seed, one rule for the commands that restore images: image i (sorted order) has seed SEED + i, "
             "which draws its operator's random part, its measurement noise and each sample's generator "
             "(spgd.experiment.seeding), so eval, sweep and diagnose agree image for image")


def add_seed(p: OptionContainer, help: str = SEED_HELP) -> None:
    """--seed (default 0); `help` says what it seeds in this command."""
    p.add_argument("--seed", type=int, default=0, help=f"{help} (default: %(default)s)")


def prior_location(text: str) -> str:
    """--prior/--init: a name, a model file or folder; the run folder of `spgd train` means the weights in it."""
    weights = Path(text) / TRAINED_WEIGHTS
    return str(weights) if weights.is_file() else text


def add_prior(p: OptionContainer) -> None:
    """--prior and --checkpoint."""
    p.add_argument("--prior", metavar="P", default="default", type=prior_location,
                   help="'default' (bundled), 'gaussian' (analytic), 'ffhq256' or 'imagenet256' (with --checkpoint), "
                   "a checkpoint file (guided-diffusion/DPS, class-conditional included, deepinv, InverseBench, "
                   "`spgd train`), the run folder of `spgd train` or a diffusers model folder; see `spgd models PATH` "
                   "(default: %(default)s)")
    p.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="the .pt weights for --prior ffhq256 / imagenet256 (e.g. ffhq_10m.pt)")


def add_network_options(p: OptionContainer) -> None:
    """--class-label and --no-fast: how the prior's network runs."""
    p.add_argument("--class-label", type=int, default=None, metavar="N",
                   help="class-conditional priors (guided-diffusion 64x64/128x128/256x256/512x512_diffusion.pt): the "
                   "ImageNet class to condition on; these networks have no unconditional mode, so without it class 0 "
                   "is used, with a warning (default: none)")
    p.add_argument("--no-fast", action="store_true",
                   help="run the network in float32, eager, as written (the fast path - bf16 autocast, "
                   "torch.compile, channels-last - is on by default on CUDA; same as SPGD_FAST=0)")


def add_methods(p: OptionContainer, default: str, dest: str = "methods", several: bool = True) -> None:
    """--method/--methods (the same option): one method, or a comma-separated list when `several`."""
    text = f"method(s), comma-separated: {METHODS_TEXT}" if several else f"one of {METHODS_TEXT}"
    p.add_argument("--method", "--methods", dest=dest, metavar="M[,M...]" if several else "M", default=default,
                   help=f"{text} (default: %(default)s)")


def add_settings(p: OptionContainer, dest: str = "set") -> None:
    p.add_argument("--set", dest=dest, action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value, repeatable: sampler settings for every method (steps, "
                   "warmup_steps, lr, lr_min_ratio, beta, sigma_max, sigma_min, cosine, fresh_denoise, ...), one "
                   "method's (METHOD.NAME, e.g. spgd.beta=0.5), operator parameters (noise_sigma, kernel_size, ... "
                   "or operator.NAME); an ablation's defining setting is kept")


def apply_no_fast(args: argparse.Namespace) -> None:
    """--no-fast: every prior this process loads runs float32 eager (spgd.priors.execution reads SPGD_FAST)."""
    if getattr(args, "no_fast", False):
        os.environ["SPGD_FAST"] = "0"


def apply_thread_rule(args: argparse.Namespace) -> Threads:
    """Set torch's CPU thread count by the rule of spgd.device.choose_threads (a busy machine gets fewer threads,
    SPGD_THREADS=N chooses), and say why when it is not every core of an idle machine. A CUDA run keeps the
    count without a word (its threads only feed the GPU)."""
    choice = apply_threads(choose_threads())
    device = getattr(args, "device", None)
    on_cpu = device in (None, "auto") and not torch.cuda.is_available() or str(device).startswith("cpu")
    if choice.note and on_cpu:
        console(args).info(choice.note)
    return choice


def console(args: argparse.Namespace) -> Console:
    """The Console of -q (0), the default (1) or -v (2)."""
    return Console.of_flags(getattr(args, "quiet", False), getattr(args, "verbose", False))


def plan_fields(args: argparse.Namespace, argv: list[str], add_arguments: Callable[[argparse.ArgumentParser], Any],
                fields: Mapping[str, str], resume: Optional[PathLike] = None, command: str = "") -> dict[str, Any]:
    """A plan's fields (plan field -> option destination in `fields`) from the parsed options; resuming the run
    folder `resume` of `command`, from its saved plan (spgd.experiment.runs.read_plan) for every option the
    command line `argv` did not give."""
    saved, given = {}, set(fields.values())
    if resume is not None:
        saved = read_plan(resume, command)
        given = explicit_options(add_arguments, argv[1:], fields.values())
    return {f: saved[f] if f in saved and dest not in given else getattr(args, dest) for f, dest in fields.items()}


def parser_flags(parser: argparse.ArgumentParser, renames: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """Python parameter -> the flag of `parser` that gives it: each option's destination (argparse's
    `_actions`, the only way to list a parser's options), and `renames` (parameter -> destination) where the
    two names differ (overrides -> set)."""
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}
    flags.update({a.dest: a.metavar for a in parser._actions if not a.option_strings and a.metavar})
    return {**flags, **{param: flags[dest] for param, dest in (renames or {}).items() if dest in flags}}


def cli_words(message: str, flags: Mapping[str, str]) -> str:
    """A pipeline's error, which names Python parameters, in the words of the command line: `name=True` -> the
    flag, `name=value` -> `--flag value`, and a message that starts with a parameter's name starts with its flag.

    >>> cli_words("size asks for 7x7; pass size=(H, W) with resize=True", {"size": "--size", "resize": "--resize"})
    '--size asks for 7x7; pass --size (H, W) with --resize'
    """
    for name in sorted(flags, key=len, reverse=True):
        flag = flags[name]
        message = re.sub(rf"(?<![\w.-]){name}=True\b", flag, message)
        message = re.sub(rf"(?<![\w.-]){name}=(?=\S)", f"{flag} ", message)
        message = re.sub(rf"^{name}(?= )", flag, message)
    return message
