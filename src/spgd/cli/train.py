"""`spgd train`: train a small prior on a folder of images."""

from __future__ import annotations

import argparse
import sys

import torch

from ..errors import SpgdError
from ..training.loop import DEFAULT_CONFIG, P_MEAN, P_STD, SAVE_DTYPES, SIGMA_HI, SIGMA_LO, format_report, train_prior


HELP = "train a small prior on a folder of images"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd train`."""
    d = DEFAULT_CONFIG
    parser.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of training images (png, jpg, ...)")
    parser.add_argument("--out", required=True, metavar="FILE", help="weights file to write (spgd-unet .pt)")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps in all (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per step (default: %(default)s)")
    parser.add_argument("--crop", type=int, default=64, help="crop side, a multiple of 8 (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the weights (default: %(default)s)")
    parser.add_argument("--channels", type=int, default=d["num_channels"],
                        help="UNet base width, a multiple of 32 (default: %(default)s)")
    parser.add_argument("--image-channels", type=int, choices=(1, 3), default=None,
                        help="1 = a grayscale prior (colour images are converted to luma), 3 = RGB "
                        "(default: the --init file's, else 1 when every training image is grayscale, else 3)")
    parser.add_argument("--res-blocks", type=int, default=d["num_res_blocks"],
                        help="residual blocks per level (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from the training checkpoint")
    parser.add_argument("--checkpoint", metavar="FILE", default=None,
                        help="training-state file (default: the --out file name + .ckpt)")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="steps between checkpoints; 0 = only at the end (default: %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this many minutes of training (this call), then finish normally")
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="fraction of the images held out for the final report (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    parser.add_argument("--init", metavar="FILE", default=None,
                        help="start from these weights (an spgd-unet file, e.g. the bundled default); "
                             "their network config is used")
    parser.add_argument("--p-mean", type=float, default=P_MEAN,
                        help="log-normal noise levels: mean of ln sigma (default: %(default)s)")
    parser.add_argument("--p-std", type=float, default=P_STD,
                        help="log-normal noise levels: std of ln sigma (default: %(default)s)")
    parser.add_argument("--uniform-fraction", type=float, default=0.0,
                        help=f"share of each batch with log-uniform sigma over [{SIGMA_LO:g}, {SIGMA_HI:g}], "
                             "to train the high noise levels samplers start from (default: %(default)s)")
    parser.add_argument("--scaling", choices=("edm", "eps"), default=None,
                        help="denoiser output scaling: edm (bounded error at high noise; for new priors) or eps "
                             "(epsilon prediction, as the guided-diffusion checkpoints) (default: the --init "
                             "file's, else edm)")
    parser.add_argument("--sigma-data", type=float, default=None,
                        help="data std of the edm scaling; 1.0 gives the network the inputs of the eps form, "
                             "the better start from an eps --init (default: the --init file's, else 0.5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 is often fastest on a busy machine)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: the network under bf16 autocast (CUDA: faster; weights, optimizer and loss stay "
                             "float32) (default: %(default)s)")
    parser.add_argument("--save-dtype", choices=tuple(SAVE_DTYPES), default="fp32",
                        help="storage of the saved weights; fp16 halves the file (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.epilog = (
        "examples:\n"
        "  spgd train my_photos/ --out my_prior.pt --steps 2000\n"
        "  spgd train my_photos/ --out my_prior.pt --steps 4000 --resume   # continue to 4000 steps\n"
        "  spgd train my_photos/ --out tuned.pt --init default --steps 2000   # fine-tune the bundled prior\n"
        "  spgd train xrays/ --out gray_prior.pt --image-channels 1   # a grayscale prior\n"
        "  spgd restore --prior my_prior.pt ...\n"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def run_train(args: argparse.Namespace) -> int:
    """`spgd train`: train, then print where the weights are and the held-out report."""
    if args.threads is not None:
        if args.threads < 1:
            raise SpgdError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.channels < 32 or args.channels % 32:
        raise SpgdError(f"--channels must be a positive multiple of 32 (GroupNorm uses 32 groups), got {args.channels}")
    if args.res_blocks < 1:
        raise SpgdError(f"--res-blocks must be >= 1, got {args.res_blocks}")
    config = {**DEFAULT_CONFIG, "num_channels": args.channels, "num_res_blocks": args.res_blocks}
    meta = train_prior(
        args.images_dir, args.out, steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
        ema_decay=args.ema, config=config, seed=args.seed, resume=args.resume, checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every, device=args.device, progress=not args.quiet,
        holdout_fraction=args.holdout, max_minutes=args.max_minutes, p_mean=args.p_mean, p_std=args.p_std,
        uniform_fraction=args.uniform_fraction, init=args.init, scaling=args.scaling, sigma_data=args.sigma_data,
        image_channels=args.image_channels, precision=args.precision, save_dtype=args.save_dtype,
        command=" ".join(["spgd", "train", *sys.argv[2:]]),
    )
    report = meta["report"]
    print(f"wrote {args.out} ({meta['steps']} steps, {meta['wall_time_s']:.0f} s, "
          f"{meta['parameters']:,} parameters)")
    print(f"held-out denoising PSNR (dB; held out: {report['held_out']}; "
          f"{report['crops']} crops of {report['crop']}px):")
    print(format_report(report["psnr_db"]))
    return 0


def run(args: argparse.Namespace, argv: list[str]) -> int:
    return run_train(args)
