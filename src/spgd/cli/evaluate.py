"""`spgd eval`: degrade a folder of clean images, restore, score and report (also under torchrun)."""

from __future__ import annotations

import argparse
import sys

import torch

from ..device import THREADS_ENV
from ..errors import SpgdError
from ..experiment.console import Console
from ..experiment.distributed import Job, rank_device, run_eval
from ..experiment.evaluation import EvalPlan, EvalSummary
from ..experiment.runs import read_run_settings
from ..experiment.tables import format_table
from .options import (
    EXIT_FAILED_IMAGES, EXIT_INTERRUPTED, EXIT_OK, TASKS_TEXT, OptionContainer, add_device, add_methods,
    add_network_options, add_option_groups, add_output, add_prior, add_seed, add_settings, apply_no_fast, console,
    parse_batch_size, parse_methods, parse_size, plan_fields,
)

HELP = "degrade a folder of clean images, restore, score and report"
DESCRIPTION = """\
For each clean image of IMAGES_DIR (sorted; image i uses seed + i, so results do not depend on batch size
or order): degrade it with TASK's operator (its preset, plus --set), restore it with each method, and score it
(PSNR, SSIM; LPIPS with --lpips-weights; FID and KID with --fid-weights). Writes into a new run folder:
settings.json, restored/, measurement/, random_parts/, records/ (one JSON per image), metrics.csv,
metrics.json and grid.png. Per-image results are kept as each batch finishes; an interrupted run continues
with --resume RUN_DIR."""
EXAMPLES = """\
examples:
  spgd eval faces/ --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt --batch-size auto
  spgd eval faces/ --task super_resolution --method spgd,spgd-official --limit 10 --samples 3
  spgd eval faces/ --task motion_blur --method spgd,dps,daps --protocol daps   # DAPS paper's noise 0.05
  spgd eval faces/ --task inpainting_random --prior gaussian --set steps=50 --set lr=2.5 --resize
  spgd eval faces/ --task inpainting_box --mask-dir masks/   # faces/a.png is masked by masks/a.png
  spgd eval faces/ --task motion_blur --lpips-net vgg --lpips-weights vgg16-397923af.pth --lpips-weights vgg.pth
  spgd eval faces/ --task gaussian_blur --lpips-net piq-vgg --lpips-weights vgg16-397923af.pth \\
      --lpips-weights lpips_weights.pt --fid-weights pt_inception-2015-12-05-6726825d.pth   # SPGD/DAPS numbers
  spgd eval --resume runs/20250101T120000Z-eval-gaussian_blur   # finish an interrupted run
  torchrun --nproc-per-node 8 -m spgd eval faces/ --task gaussian_blur ...   # one process per GPU
exit status: 0 ok, 1 some images diverged, 2 bad input, 130 interrupted."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd eval`, in groups: the data, the restoration, the scores, the run."""
    groups = {"data": add_data_options, "restoration": add_restoration_options, "scores": add_score_options,
              "run": add_run_options}
    return add_option_groups(p, groups)


def add_data_options(g: OptionContainer) -> None:
    """The images, the degradation and its measurement protocol."""
    g.add_argument("images_dir", metavar="IMAGES_DIR", nargs="?", default=None,
                   help="folder of clean images (png, jpg, bmp, tif, webp); optional with --resume")
    g.add_argument("--task", metavar="T", default=None, help=f"the degradation: {TASKS_TEXT}")
    g.add_argument("--kernel", metavar="FILE",
                   help="use this blur kernel (gaussian/motion blur) instead of the preset's")
    g.add_argument("--mask", metavar="FILE", help="use this inpainting mask for every image instead of random ones")
    g.add_argument("--kernel-dir", metavar="DIR",
                   help="one blur kernel per image, matched by name: photo.png takes DIR/photo.pt, .npy or .png")
    g.add_argument("--mask-dir", metavar="DIR",
                   help="one inpainting mask per image, matched by name: photo.png takes DIR/photo.png, .pt or .npy")
    g.add_argument("--protocol", choices=("spgd", "dps", "daps"), default="spgd",
                   help="whose measurement protocol: spgd (the SPGD configs' noise: 0.01 for SR, random "
                   "inpainting, Gaussian and motion blur, 0.05 otherwise), dps or daps (noise 0.05 on every task, "
                   "70 %% random inpainting; see the presets' [protocols.*]). Every method keeps its released "
                   "per-task settings (default: spgd)")
    g.add_argument("--size", type=parse_size, default=None, metavar="N|HxW",
                   help="image size to restore at (default: the prior's, else the first image's)")
    g.add_argument("--resize", action="store_true",
                   help="center-crop and resize images that are not the size (default: such an image is an error)")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")


def add_restoration_options(g: OptionContainer) -> None:
    """The prior, the methods and their settings, the samples, the batch, the device and the seed."""
    add_prior(g)
    add_network_options(g)
    add_methods(g, default="spgd", dest="method")
    add_settings(g)
    g.add_argument("--samples", type=int, default=1, metavar="S",
                   help="restorations per image with different seeds; metrics are their mean. With S >= 2 "
                   "also the mean of the samples (mean/NAME.png, scored as 'mean of samples') and the "
                   "per-pixel standard deviation over them (uncertainty/NAME.png, a heat map) (default: 1)")
    g.add_argument("--batch-size", type=parse_batch_size, default=1, metavar="B",
                   help="images per batch, or 'auto': the largest that fits the free GPU memory (4 on a CPU) "
                   "(default: 1)")
    add_device(g)
    add_seed(g)
    g.add_argument("--telemetry", action="store_true",
                   help="record the gradient dynamics (as spgd diagnose does) of the first sample: "
                   "telemetry/METHOD/NAME.csv and angles.png")


def add_score_options(g: OptionContainer) -> None:
    """LPIPS and FID/KID, from local weights files."""
    g.add_argument("--lpips-weights", action="append", default=[], metavar="FILE",
                   help="local LPIPS weights files, repeat the flag: the torchvision backbone (vgg16-397923af.pth "
                   "or alexnet-owt-7be5be79.pth) and the variant's heads; without it LPIPS is not computed")
    g.add_argument("--lpips-net", choices=("alex", "vgg", "piq-vgg"), default="vgg",
                   help="LPIPS variant, by the code base whose number it gives: alex = lpips package AlexNet "
                   "(column lpips-alex, DPS-family tables; heads lpips/weights/v0.1/alex.pth), vgg = lpips "
                   "package VGG (lpips-vgg, DPS's evaluation script; heads v0.1/vgg.pth), piq-vgg = "
                   "piq.LPIPS(replace_pooling=True) (piq-lpips-vgg, the SPGD and DAPS code; heads piq's "
                   "lpips_weights.pt) (default: vgg)")
    g.add_argument("--fid-weights", default=None, metavar="FILE",
                   help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid/torch-fidelity): adds FID and KID of "
                   "each method's restorations against the clean images (whole-set scores, as DAPS reports) "
                   "to metrics.json and the table")


def add_run_options(g: OptionContainer) -> None:
    """--resume, the torchrun settings, --out and -q/-v."""
    g.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue this run folder: same settings, only the images without a result")
    g.add_argument("--dist-backend", choices=("auto", "nccl", "gloo"), default="auto",
                   help="under torchrun: torch.distributed backend; auto = nccl on GPUs, gloo on CPUs "
                   "(default: %(default)s)")
    g.add_argument("--dist-timeout", type=float, default=30.0, metavar="MIN",
                   help="under torchrun: minutes a process waits for the others (at start-up and for the final "
                   "merge) before giving up (default: %(default)s)")
    add_output(g)


# the plan's fields and their options (plan field -> destination); batch size, device and the torchrun settings
# say how to run, not what: a resumed run takes them from the command line, the rest from its plan
PLAN_OPTIONS = {"images_dir": "images_dir", "task": "task", "methods": "method", "protocol": "protocol",
                "overrides": "set", "prior": "prior", "checkpoint": "checkpoint", "class_label": "class_label",
                "samples": "samples", "seed": "seed", "size": "size", "resize": "resize", "limit": "limit",
                "kernel": "kernel", "mask": "mask", "kernel_dir": "kernel_dir", "mask_dir": "mask_dir",
                "telemetry": "telemetry", "lpips_weights": "lpips_weights", "lpips_net": "lpips_net",
                "fid_weights": "fid_weights"}
RENAMES = {**PLAN_OPTIONS, "backend": "dist_backend", "timeout_minutes": "dist_timeout"}


def run(args: argparse.Namespace, argv: list[str]) -> int:
    con = console(args)
    apply_no_fast(args)
    if args.method is not None:
        args.method = parse_methods(args.method)
    fields = plan_fields(args, argv, add_arguments, PLAN_OPTIONS, args.resume, "eval")
    if fields["images_dir"] is None:
        raise SpgdError("spgd eval needs IMAGES_DIR (a folder of clean images)")
    if fields["task"] is None:
        raise SpgdError(f"spgd eval needs --task; valid tasks: {TASKS_TEXT}")
    plan = EvalPlan(**fields, batch_size=args.batch_size, device=args.device)
    plan.validate()
    if args.resume is not None:
        resume_threads(args, con)
    # under torchrun each process does a share of the images and rank 0 reports (spgd.experiment.distributed)
    with Job.from_env(args.dist_backend, args.dist_timeout, plan.device) as job:
        plan.device = rank_device(plan.device, job.local_rank, job.world_size)
        if job.rank != 0:
            con = Console(min(con.level, 0))
        summary = run_eval(plan, job, args.resume, args.out, con, ["spgd", *argv])
    if summary.rank != 0:
        return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK
    return report(summary, con)


def resume_threads(args: argparse.Namespace, con: Console) -> None:
    """A resumed run on the CPU restores with the thread count it was started with, where the count was chosen
    automatically: a CPU sums in another order with other thread counts, which can change a restored PNG by a
    grey level, and a resumed run must give what the uninterrupted run would have."""
    rule = getattr(args, "thread_rule", None)
    saved = read_run_settings(args.resume, "eval").get("resolved", {}).get("threads")
    if rule is None or rule.source != "auto" or not isinstance(saved, int) or saved == torch.get_num_threads():
        return
    torch.set_num_threads(saved)
    con.info(f"resuming with the run's {saved} torch thread(s) (a CPU gives the same results only with the same "
             f"count; {THREADS_ENV}=N chooses another)")


def report(summary: EvalSummary, con: Console) -> int:
    """The run folder and the table on stdout, what went wrong on stderr; the exit status."""
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
    if summary.angles:
        con.info(f"gradient angles: {run_dir / summary.angles}")
    lp = summary.tables.get("lpips")
    if lp and not summary.tables.get("lpips_label"):
        con.info(lp)
    if summary.n_skipped:
        con.warn(f"{summary.n_skipped} file(s) skipped (unreadable); see the warnings above")
    if summary.n_failed:
        failed = "; ".join(f"{m} {name}: {reason or 'failed'}" for m, e in summary.tables["per_method"].items()
                           for name, reason in (e.get("failure_reasons") or dict.fromkeys(e["failed_images"])).items())
        con.warn(f"{summary.n_failed} restoration(s) failed, excluded from the means ({failed}); the rule: "
                 "spgd.verdict (README: Is a result sound?)")
        return EXIT_FAILED_IMAGES
    return EXIT_OK
