"""`spgd train`: train a small prior on a folder of images into a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import SpgdError
from ..experiment.train import TRAINED_WEIGHTS, TRAINING_STATE, TrainPlan, train
from ..training.loop import DEFAULT_CONFIG, P_MEAN, P_STD, SAVE_DTYPES, SIGMA_HI, SIGMA_LO
from ..training.report import format_report
from .options import (
    EXIT_OK, OptionContainer, add_device, add_option_groups, add_run_folder_output, add_seed, console,
    plan_fields, prior_location,
)
from ..experiment.runs import read_plan

HELP = "train a small prior on a folder of images"
DESCRIPTION = f"""\
Train a small ADM UNet denoiser prior on the images of IMAGES_DIR (random crops; EDM loss and noise levels)
into the run folder RUN_DIR: the EMA weights in RUN_DIR/{TRAINED_WEIGHTS} (the spgd-unet format: load it with
--prior RUN_DIR, --prior RUN_DIR/{TRAINED_WEIGHTS} or spgd.load_prior), the training state
RUN_DIR/{TRAINING_STATE} (written every --checkpoint-every steps; --resume continues from it; --training-state
puts it elsewhere), settings.json
(versions, command line, created, the resolved settings and data) and report.json (held-out denoising PSNR).
A folder that already holds a trained prior is only continued (--resume), never overwritten."""
EXAMPLES = f"""\
examples:
  spgd train my_photos/ --out my_prior --steps 2000
  spgd train my_photos/ --out my_prior --steps 4000 --resume   # continue to 4000 steps
  spgd train my_photos/ --out tuned --init default --steps 2000   # fine-tune the bundled prior
  spgd train xrays/ --out gray_prior --image-channels 1   # a grayscale prior
  spgd restore --prior my_prior ...   # the weights in my_prior/{TRAINED_WEIGHTS}"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd train`, in groups: the data, the network, the optimisation, the run."""
    parser.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of training images (png, jpg, ...)")
    groups = {"data": add_data_options, "network": add_network_options, "optimisation": add_optimisation_options,
              "run": add_run_options}
    return add_option_groups(parser, groups)


def add_data_options(g: OptionContainer) -> None:
    """Crops, hold-out and channels."""
    g.add_argument("--crop", type=int, default=64, help="crop side, a multiple of 8 (default: %(default)s)")
    g.add_argument("--holdout", type=float, default=0.1,
                   help="fraction of the images held out for the final report (default: %(default)s)")
    g.add_argument("--image-channels", type=int, choices=(1, 3), default=None,
                   help="1 = a grayscale prior (colour images are converted to luma), 3 = RGB "
                   "(default: the --init file's, else 1 when every training image is grayscale, else 3)")


def add_network_options(g: OptionContainer) -> None:
    """The UNet's size, the weights to start from and the denoiser's output scaling."""
    g.add_argument("--channels", type=int, default=DEFAULT_CONFIG["num_channels"],
                   help="UNet base width, a multiple of 32 (default: %(default)s)")
    g.add_argument("--res-blocks", type=int, default=DEFAULT_CONFIG["num_res_blocks"],
                   help="residual blocks per level (default: %(default)s)")
    g.add_argument("--init", metavar="FILE", default=None, type=prior_location,
                   help="start from these weights (an spgd-unet file or `spgd train` run folder, e.g. 'default', "
                   "the bundled prior); their network config is used")
    g.add_argument("--scaling", choices=("edm", "eps"), default=None,
                   help="denoiser output scaling: edm (bounded error at high noise; for new priors) or eps "
                   "(epsilon prediction, as the guided-diffusion checkpoints) (default: the --init file's, else edm)")
    g.add_argument("--sigma-data", type=float, default=None,
                   help="data std of the edm scaling; 1.0 gives the network the inputs of the eps form, "
                   "the better start from an eps --init (default: the --init file's, else 0.5)")


def add_optimisation_options(g: OptionContainer) -> None:
    """Steps, batch, Adam and EMA, the training noise levels and the precision."""
    g.add_argument("--steps", type=int, default=3000, help="optimizer steps in all (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=8, help="crops per step (default: %(default)s)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    g.add_argument("--ema", type=float, default=0.999, help="EMA decay of the weights (default: %(default)s)")
    g.add_argument("--p-mean", type=float, default=P_MEAN,
                   help="log-normal noise levels: mean of ln sigma (default: %(default)s)")
    g.add_argument("--p-std", type=float, default=P_STD,
                   help="log-normal noise levels: std of ln sigma (default: %(default)s)")
    g.add_argument("--uniform-fraction", type=float, default=0.0,
                   help=f"share of each batch with log-uniform sigma over [{SIGMA_LO:g}, {SIGMA_HI:g}], "
                   "to train the high noise levels samplers start from (default: %(default)s)")
    g.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: the network under bf16 autocast (CUDA: faster; weights, optimizer and loss stay "
                   "float32) (default: %(default)s)")


def add_run_options(g: OptionContainer) -> None:
    """Seed, device, threads, checkpoints, time budget, the saved file and the run folder."""
    add_seed(g, "seed of the initial weights, the held-out split, the crops and the noise of every step")
    add_device(g)
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is often fastest on a busy machine)")
    g.add_argument("--resume", action="store_true", help="continue from the training state")
    g.add_argument("--training-state", metavar="FILE", default=None,
                   help="the training-state file --resume continues from (optimizer, EMA, step; not a prior: "
                   f"--checkpoint of the other commands is a prior's weights) (default: RUN_DIR/{TRAINING_STATE})")
    g.add_argument("--checkpoint-every", type=int, default=500,
                   help="steps between saves of the training state; 0 = only at the end (default: %(default)s)")
    g.add_argument("--checkpoint", dest="old_checkpoint", metavar="FILE", default=None, help=argparse.SUPPRESS)
    g.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes of training (this call), then finish normally")
    g.add_argument("--save-dtype", choices=tuple(SAVE_DTYPES), default="fp32",
                   help="storage of the saved weights; fp16 halves the file (default: %(default)s)")
    add_run_folder_output(g)


# the plan's fields and their options (plan field -> destination); resuming a run folder that holds a
# settings.json takes every option not given from its plan
PLAN_OPTIONS = {"images_dir": "images_dir", "steps": "steps", "batch_size": "batch_size", "crop": "crop", "lr": "lr",
                "ema_decay": "ema", "channels": "channels", "res_blocks": "res_blocks", "seed": "seed",
                "checkpoint_every": "checkpoint_every", "holdout_fraction": "holdout", "max_minutes": "max_minutes",
                "p_mean": "p_mean", "p_std": "p_std", "uniform_fraction": "uniform_fraction", "init": "init",
                "scaling": "scaling", "sigma_data": "sigma_data", "image_channels": "image_channels",
                "precision": "precision", "save_dtype": "save_dtype", "training_state": "training_state"}
RENAMES = PLAN_OPTIONS


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Train into the run folder (spgd.experiment.train) and print the held-out report."""
    con = console(args)
    if args.old_checkpoint is not None:  # the option's name before it was told apart from the priors' --checkpoint
        raise SpgdError(f"spgd train's training-state file is now --training-state {args.old_checkpoint} (in the "
                        "other commands --checkpoint is a prior's weights)")
    if args.threads is not None:
        if args.threads < 1:
            raise SpgdError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    resume = args.out if args.resume and (Path(args.out) / "settings.json").is_file() else None
    fields = plan_fields(args, argv, add_arguments, PLAN_OPTIONS, resume, "train")
    if resume is not None and fields["training_state"] is None:  # a run folder of an earlier spgd: "checkpoint"
        fields["training_state"] = read_plan(resume, "train").get("checkpoint")
    plan = TrainPlan(**fields, device=args.device, resume=args.resume)
    record = train(plan, args.out, con, ["spgd", *argv])
    meta, report = record.meta, record.meta["report"]
    con.detail(f"training state: {record.training_state}; settings: {meta['settings']}")
    con.result(f"wrote {record.weights} ({meta['steps']} steps, {meta['wall_time_s']:.0f} s, "
               f"{meta['parameters']:,} parameters)")
    con.result(f"held-out denoising PSNR (dB; held out: {report['held_out']}; "
               f"{report['crops']} crops of {report['crop']}px):")
    con.result(format_report(report["psnr_db"]))
    return EXIT_OK
