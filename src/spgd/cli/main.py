"""The `spgd` command: argument parsing and wiring only; the work is in evaluate.py, oneshot.py and the
modules of the delegated commands (training, diagnostics).

Exit codes: 0 success; 1 some images failed (diverged); 2 bad input or another error (one line
``spgd: error: ...`` on stderr, a traceback only with -v or SPGD_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import SpgdError
from ..experiment.runs import Console

# Commands implemented elsewhere, imported only when used (a missing or broken module breaks only that
# command): name -> (module, function adding the options, function running them, one-line help).
DELEGATED: dict[str, tuple[str, str, str, str]] = {
    "train": ("spgd.training.loop", "add_train_arguments", "run_train", "train a small prior on a folder of images"),
    "diagnose": (
        "spgd.experiment.diagnose",
        "add_diagnose_arguments",
        "run_diagnose",
        "record and plot gradient dynamics inside the samplers",
    ),
    "bench": ("spgd.experiment.bench", "add_bench_arguments", "run_bench", "speed and quality benchmarks"),
    "fid": ("spgd.experiment.fid", "add_fid_arguments", "run_fid", "FID and KID of two image folders (local weights)"),
    "sweep": ("spgd.experiment.sweep", "add_sweep_arguments", "run_sweep", "stability study: quality against one setting"),
    "models": ("spgd.cli.models", "add_models_arguments", "run_models",
               "what a model file or folder is (format, size, channels, sigma range) and how to restore with it"),
}

EXIT_OK, EXIT_FAILED_IMAGES, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `spgd: error: ... (see 'spgd eval --help')`, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"spgd: error: {message} (see '{self.prog} --help')\n")


def _tasks_text() -> str:
    from ..operators import TASKS

    return ", ".join(TASKS)


def _methods_text() -> str:
    from ..samplers import METHODS

    return ", ".join(METHODS)


def _size(text: str) -> tuple[int, int]:
    """--size 256 or 256x192 (height x width)."""
    try:
        parts = [int(p) for p in text.lower().replace("*", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return parts[0], parts[1]


def _common(p: argparse.ArgumentParser, out: bool = True) -> None:
    if out:
        p.add_argument("--out", metavar="DIR", default="runs",
                       help="folder that receives a new run folder per call (default: %(default)s)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or status lines")
    g.add_argument("-v", "--verbose", action="store_true", help="more detail (and tracebacks on errors)")


def _batch_size(text: str) -> "int | str":
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}") from None


def _apply_no_fast(args: argparse.Namespace) -> None:
    """--no-fast: every prior this process loads runs float32 eager (spgd.priors.fast reads SPGD_FAST)."""
    if getattr(args, "no_fast", False):
        os.environ["SPGD_FAST"] = "0"


def _prior_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prior", metavar="P", default=None,
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


def _settings_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="set", action="append", default=None, metavar="KEY=VALUE",
                   help="override a preset value, repeatable: sampler settings (steps, warmup_steps, lr, lr_min_ratio, "
                   "beta, sigma_max, sigma_min, cosine, fresh_denoise, ...), operator parameters (noise_sigma, "
                   "kernel_size, ...), or explicitly operator.NAME / METHOD.NAME")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spgd",
        description="Diffusion-model image restoration with SPGD (Stabilized Progressive Gradient Diffusion) "
        "and its baselines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  spgd demo                                   # restore the bundled photo (minutes on a CPU)\n"
        "  spgd restore blurry.png --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt\n"
        "  spgd eval faces/ --task super_resolution --prior ffhq256 --checkpoint ffhq_10m.pt\n"
        "run 'spgd COMMAND --help' for the options of a command.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"spgd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # restore ------------------------------------------------------------------------------------------
    p = sub.add_parser(
        "restore",
        help="restore one measured image with a known degradation",
        description="Restore a real measurement MEASUREMENT (an image, read as [-1, 1]; or raw values in .npy/.pt) "
        "degraded by TASK's operator with its preset settings. Writes restored.png, measurement.png and "
        "settings.json into a new run folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  spgd restore blurry.png --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt\n"
        "  spgd restore shaky.png --task motion_blur --kernel kernel.npy --prior gaussian\n"
        "  spgd restore holes.png --task inpainting_random --mask mask.png --set lr=2\n"
        "  spgd restore holes.png --task inpainting_random --mask mask.png --samples 8   # + mean, uncertainty\n"
        "  spgd restore small.png --task super_resolution --set scale=4   # output: 4x the input size\n"
        "  spgd restore odd-size.png --task gaussian_blur --pad   # 250x250: restored padded, cropped back\n"
        "notes: --kernel (.npy, .png or a random_parts/*.pt of `spgd eval`) is the blur of gaussian_blur/motion_blur;\n"
        "  --mask (.png white = kept, .npy or .pt; 1 = kept) is required for the inpainting tasks.",
    )
    p.add_argument("measurement", metavar="MEASUREMENT", help="the degraded image (png, jpg, ...) or a .npy/.pt tensor")
    p.add_argument("--task", required=True, metavar="T", help=f"the degradation: {_tasks_text()}")
    p.add_argument("--kernel", metavar="FILE", help="blur kernel file (.npy, image, or .pt) for gaussian/motion blur")
    p.add_argument("--mask", metavar="FILE", help="inpainting mask file (image: white = kept; .npy/.pt: 1 = kept)")
    _prior_options(p)
    p.add_argument("--method", metavar="M", default="spgd", help=f"one of {_methods_text()} (default: spgd)")
    _settings_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler's initial noise (default: 0)")
    p.add_argument("--samples", type=int, default=1, metavar="S",
                   help="restore S times in one batch (seeds seed..seed+S-1) and also write the mean of the "
                   "samples (restored-mean.png) and their per-pixel standard deviation (uncertainty.png) "
                   "(default: 1)")
    p.add_argument("--pad", action="store_true",
                   help="when the prior's network cannot take the image's size (sides not a multiple of 8, ...), "
                   "restore an edge-padded image (a mask padded as missing pixels) and crop the result back")
    p.add_argument("--device", metavar="D", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    _common(p)

    # eval ---------------------------------------------------------------------------------------------
    p = sub.add_parser(
        "eval",
        help="degrade a folder of clean images, restore, score and report",
        description="For each clean image of IMAGES_DIR (sorted; image i uses seed + i, so results do not depend "
        "on batch size or order): degrade it with TASK's operator (its preset, plus --set), restore it with each "
        "method, and score it (PSNR, SSIM; LPIPS with --lpips-weights; FID and KID with --fid-weights). Writes into a new run folder: "
        "settings.json, restored/, measurement/, random_parts/, records/ (one JSON per image), metrics.csv, "
        "metrics.json and grid.png. Per-image results are kept as each batch finishes; an interrupted run "
        "continues with --resume RUN_DIR.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  spgd eval faces/ --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt --batch-size auto\n"
        "  spgd eval faces/ --task super_resolution --method spgd,spgd-official --limit 10 --samples 3\n"
        "  spgd eval faces/ --task motion_blur --method spgd,dps,daps --protocol daps   # DAPS paper's noise 0.05\n"
        "  spgd eval faces/ --task inpainting_random --prior gaussian --set steps=50 --set lr=2.5 --resize\n"
        "  spgd eval faces/ --task motion_blur --lpips-net vgg --lpips-weights vgg16-397923af.pth "
        "--lpips-weights vgg.pth\n"
        "  spgd eval faces/ --task gaussian_blur --lpips-net piq-vgg --lpips-weights vgg16-397923af.pth "
        "--lpips-weights lpips_weights.pt --fid-weights pt_inception-2015-12-05-6726825d.pth   # SPGD/DAPS numbers\n"
        "  spgd eval --resume runs/20250101T120000Z-eval-gaussian_blur   # finish an interrupted run\n"
        "  torchrun --nproc-per-node 8 -m spgd eval faces/ --task gaussian_blur ...   # one process per GPU\n"
        "exit status: 0 ok, 1 some images diverged, 2 bad input, 130 interrupted.",
    )
    p.add_argument("images_dir", metavar="IMAGES_DIR", nargs="?", default=None,
                   help="folder of clean images (png, jpg, bmp, tif, webp); optional with --resume")
    p.add_argument("--task", metavar="T", default=None, help=f"the degradation: {_tasks_text()}")
    p.add_argument("--kernel", metavar="FILE",
                   help="use this blur kernel (gaussian/motion blur) instead of the preset's")
    p.add_argument("--mask", metavar="FILE", help="use this inpainting mask for every image instead of random ones")
    _prior_options(p)
    p.add_argument("--method", metavar="M[,M...]", default=None,
                   help=f"method(s), comma-separated: {_methods_text()} (default: spgd)")
    p.add_argument("--protocol", choices=("spgd", "dps", "daps"), default=None,
                   help="whose measurement protocol: spgd (the SPGD configs' noise: 0.01 for SR, random "
                   "inpainting, Gaussian and motion blur, 0.05 otherwise), dps or daps (noise 0.05 on every task, "
                   "70 %% random inpainting; see the presets' [protocols.*]). Every method keeps its released "
                   "per-task settings (default: spgd)")
    p.add_argument("--samples", type=int, default=None, metavar="S",
                   help="restorations per image with different seeds; metrics are their mean. With S >= 2 "
                   "also the mean of the samples (mean/NAME.png, scored as 'mean of samples') and the "
                   "per-pixel standard deviation over them (uncertainty/NAME.png, a heat map) (default: 1)")
    p.add_argument("--batch-size", type=_batch_size, default=1, metavar="B",
                   help="images per batch, or 'auto': the largest that fits the free GPU memory (4 on a CPU) "
                   "(default: 1)")
    p.add_argument("--device", metavar="D", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--seed", type=int, default=None, help="base seed: image i uses seed + i (default: 0)")
    _settings_options(p)
    p.add_argument("--size", type=_size, default=None, metavar="N|HxW",
                   help="image size to restore at (default: the prior's, else the first image's)")
    p.add_argument("--resize", action="store_true", default=None,
                   help="center-crop and resize images that are not the size (default: such an image is an error)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--lpips-weights", action="append", default=None, metavar="FILE",
                   help="local LPIPS weights files, repeat the flag: the torchvision backbone (vgg16-397923af.pth "
                   "or alexnet-owt-7be5be79.pth) and the variant's heads; without it LPIPS is not computed")
    p.add_argument("--lpips-net", choices=("alex", "vgg", "piq-vgg"), default=None,
                   help="LPIPS variant, by the code base whose number it gives: alex = lpips package AlexNet "
                   "(column lpips-alex, DPS-family tables; heads lpips/weights/v0.1/alex.pth), vgg = lpips "
                   "package VGG (lpips-vgg, DPS's evaluation script; heads v0.1/vgg.pth), piq-vgg = "
                   "piq.LPIPS(replace_pooling=True) (piq-lpips-vgg, the SPGD and DAPS code; heads piq's "
                   "lpips_weights.pt) (default: vgg)")
    p.add_argument("--fid-weights", default=None, metavar="FILE",
                   help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid/torch-fidelity): adds FID and KID of "
                   "each method's restorations against the clean images (whole-set scores, as DAPS reports) "
                   "to metrics.json and the table")
    p.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue this run folder: same settings, only the images without a result")
    p.add_argument("--dist-backend", choices=("auto", "nccl", "gloo"), default="auto",
                   help="under torchrun: torch.distributed backend; auto = nccl on GPUs, gloo on CPUs "
                   "(default: %(default)s)")
    p.add_argument("--dist-timeout", type=float, default=30.0, metavar="MIN",
                   help="under torchrun: minutes a process waits for the others (at start-up and for the final "
                   "merge) before giving up (default: %(default)s)")
    _common(p)

    # demo ---------------------------------------------------------------------------------------------
    from ..experiment.restore import DEMO_STEPS, DEMO_TASK

    p = sub.add_parser(
        "demo",
        help="restore the bundled photo (no files or downloads needed)",
        description=f"Degrade the bundled photo ({DEMO_TASK}: 80 % of its pixels removed, noise 0.01), restore it "
        "with SPGD and the default prior, and write grid.png (ground truth | measurement | restored), "
        "restored.png and metrics.json (PSNR/SSIM of the measurement and of the restoration).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  spgd demo\n  spgd demo --steps 200 --device cuda --out demo_runs",
    )
    p.add_argument("--steps", type=int, default=DEMO_STEPS,
                   help="SPGD annealing steps K (default: %(default)s, 3 min measured on a shared 2-core CPU; "
                   "paper: 200)")
    p.add_argument("--device", metavar="D", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    _common(p)

    import importlib.util

    for name, (module, _, _, text) in DELEGATED.items():
        try:
            present = importlib.util.find_spec(module) is not None
        except ImportError:
            present = False
        sub.add_parser(name, help=text if present else f"{text} (not available in this version)", add_help=False)
    return parser


# ------------------------------------------------------------------------------------------------------
# commands


def _console(args: argparse.Namespace) -> Console:
    return Console(0 if getattr(args, "quiet", False) else 2 if getattr(args, "verbose", False) else 1)


def _preset(task: str, overrides: Sequence[str], methods: Optional[Sequence[str]] = None, protocol: str = "spgd") -> dict:
    from ..presets import apply_overrides, load_preset

    return apply_overrides(load_preset(task, protocol), overrides, methods)


def _methods(text: str) -> list[str]:
    from ..samplers import METHODS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise SpgdError(f"--method needs at least one method; valid methods: {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise SpgdError(f"unknown method {m!r}; valid methods: {', '.join(METHODS)}")
    return methods


def cmd_restore(args: argparse.Namespace, argv: list[str]) -> int:
    from ..experiment.restore import restore_file

    con = _console(args)
    _apply_no_fast(args)
    methods = _methods(args.method)
    if len(methods) != 1:
        raise SpgdError("spgd restore takes one --method; use spgd eval to compare methods")
    overrides = args.set or []
    preset = _preset(args.task, overrides, methods)
    _, failed = restore_file(
        args.measurement, args.task, preset, overrides, methods[0], args.prior or "default", args.checkpoint,
        args.kernel, args.mask, args.seed, args.device, args.out, con, ["spgd", *argv], args.samples,
        pad=args.pad,
        class_label=args.class_label,
    )
    return EXIT_FAILED_IMAGES if failed else EXIT_OK


# eval options that define the experiment: taken from settings.json on --resume when not given
_EVAL_IDENTITY_OPTIONS = {
    "images_dir": None, "task": None, "method": "spgd", "prior": "default", "checkpoint": None, "samples": 1,
    "seed": 0, "set": [], "size": None, "resize": False, "kernel": None, "mask": None, "lpips_weights": [],
    "lpips_net": "vgg", "fid_weights": None, "protocol": "spgd", "class_label": None,
}


def cmd_eval(args: argparse.Namespace, argv: list[str]) -> int:
    from ..experiment.evaluation import EvalConfig, format_table
    from ..experiment.runs import read_json

    con = _console(args)
    _apply_no_fast(args)
    given = {k: getattr(args, k) for k in _EVAL_IDENTITY_OPTIONS}
    if args.resume is not None:
        run_dir = Path(args.resume)
        if not (run_dir / "settings.json").is_file():
            raise SpgdError(f"cannot resume {run_dir}: no settings.json there (not an `spgd eval` run folder)")
        saved = read_json(run_dir / "settings.json").get("cli_options", {})
        opts = {k: (saved.get(k, d) if given[k] is None else given[k]) for k, d in _EVAL_IDENTITY_OPTIONS.items()}
        if opts.get("size") is not None:
            opts["size"] = tuple(opts["size"])
    else:
        opts = {k: (d if given[k] is None else given[k]) for k, d in _EVAL_IDENTITY_OPTIONS.items()}
    if opts["images_dir"] is None:
        raise SpgdError("spgd eval needs IMAGES_DIR (a folder of clean images)")
    if opts["task"] is None:
        raise SpgdError(f"spgd eval needs --task; valid tasks: {_tasks_text()}")
    methods = _methods(opts["method"])
    preset = _preset(opts["task"], opts["set"], methods, opts["protocol"])
    cfg = EvalConfig(
        images_dir=Path(opts["images_dir"]), task=opts["task"], methods=methods, preset=preset,
        overrides=list(opts["set"]), prior=opts["prior"], checkpoint=opts["checkpoint"], samples=opts["samples"],
        seed=opts["seed"], size=opts["size"], resize=bool(opts["resize"]), limit=args.limit, kernel=opts["kernel"],
        mask=opts["mask"], lpips_weights=list(opts["lpips_weights"]), lpips_net=opts["lpips_net"],
        fid_weights=opts["fid_weights"], batch_size=args.batch_size, device=args.device,
        class_label=opts["class_label"],
    )
    cfg.validate()
    # under torchrun each process does a share of the images and rank 0 reports (spgd.experiment.distributed)
    from ..experiment.distributed import Job, run_eval, rank_device

    with Job.from_env(args.dist_backend, args.dist_timeout, cfg.device) as job:
        cfg.device = rank_device(cfg.device, job.local_rank, job.world_size)
        if job.rank != 0:
            con = Console(min(con.level, 0))
        summary = run_eval(cfg, job, args.resume, args.out, con, ["spgd", *argv], dict(opts))
    if summary.rank != 0:
        return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK
    run_dir = summary.run_dir
    done = summary.n_done_before + summary.n_done_now
    if summary.interrupted:
        print(
            f"spgd: interrupted: {done} of {summary.n_images} image(s) done in {run_dir}; continue with:\n"
            f"  spgd eval --resume {run_dir}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    con.result(str(run_dir))
    con.result(format_table(summary.tables))
    lp = summary.tables.get("lpips")
    if lp and not summary.tables.get("lpips_label"):
        con.info(lp)
    if summary.n_skipped:
        con.warn(f"{summary.n_skipped} file(s) skipped (unreadable); see the warnings above")
    if summary.n_failed:
        failed = {m: e["failed_images"] for m, e in summary.tables["per_method"].items() if e["failed_images"]}
        con.warn(f"{summary.n_failed} restoration(s) diverged: {failed}; they are excluded from the means")
        return EXIT_FAILED_IMAGES
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, argv: list[str]) -> int:
    from ..experiment.restore import run_demo

    run_demo(args.out, args.steps, args.device, _console(args), ["spgd", *argv])
    return EXIT_OK


def run_delegated(name: str, argv: list[str]) -> int:
    """`spgd train|diagnose|bench ...`: import the command's module now and let it parse its own options."""
    module_name, add_name, run_name, text = DELEGATED[name]
    try:
        module = importlib.import_module(module_name)
        add, run = getattr(module, add_name), getattr(module, run_name)
    except ImportError as e:
        if getattr(e, "name", None) == module_name:
            raise SpgdError(f"spgd {name} is not available in this version (no module {module_name})") from None
        raise SpgdError(f"spgd {name} is not available: importing {module_name} failed ({e})") from None
    except AttributeError as e:
        raise SpgdError(f"spgd {name} is not available: {module_name} lacks {getattr(e, 'name', e)}") from None
    parser = _Parser(prog=f"spgd {name}", description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
    add(parser)
    args = parser.parse_args(argv)
    return int(run(args) or 0)


COMMANDS = {"restore": cmd_restore, "eval": cmd_eval, "demo": cmd_demo}


def _run(argv: list[str]) -> int:
    if argv and argv[0] in DELEGATED:
        return run_delegated(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args, argv)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    Console().warn(str(message))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the `spgd` command with `argv` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("SPGD_DEBUG", "") not in ("", "0") or "-v" in argv or "--verbose" in argv
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return _run(argv)
        except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
            return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
        except KeyboardInterrupt:
            print("spgd: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (SpgdError, OSError) as e:
            if debug:
                traceback.print_exc()
            print(f"spgd: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
        except Exception as e:  # noqa: BLE001 - a bug, but still no traceback unless asked
            if debug:
                traceback.print_exc()
            hint = "" if debug else " (run with -v or SPGD_DEBUG=1 for the traceback)"
            print(f"spgd: error: {type(e).__name__}: {_one_line(e)}{hint}", file=sys.stderr)
            return EXIT_ERROR


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        text = f"{e.strerror or type(e).__name__}: {e.filename}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
