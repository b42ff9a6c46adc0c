"""The training loop of a small ADM UNet prior: network, optimizer and EMA, step, checkpoints, outputs.

The network is the guided-diffusion UNet (`spgd.priors.UNetModel`), trained as the network F inside the
preconditioning, so that the denoiser it learns is exactly what `VPPrecond` computes at load time:

    D(x; sigma) = c_skip x + c_out F(c_in x, (M - 1) * t(sigma)).

By default with EDM's output scaling (`scaling="edm"`: bounded at high noise); `scaling="eps"` trains the
epsilon form of the guided-diffusion checkpoints (c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1)). Loss (Karras et al. 2022):
E_{sigma, x0, n} lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2 with lambda = 1 / c_out^2, i.e. the MSE of the
network's own output against its target (for "eps": the usual epsilon MSE ||F(...) - n||^2). Training noise levels
are log-normal, ln sigma ~ N(P_mean, P_std^2), clipped to the VP range [0.001, 152]; a fraction of every batch
(`uniform_fraction`) is drawn log-uniform over [SIGMA_LO, SIGMA_HI] instead, so that the high noise levels where
the samplers start (sigma 100 down to 0.1, then the final denoise) are trained too: the log-normal alone puts
only ~2 % of its mass above sigma 7. Data: random crops (spgd.training.data). Adam with a linear warm-up, then
a constant rate; the saved network is an exponential moving average of the weights, measured at the end on
held-out crops (spgd.training.report).

Everything random comes from one seeded generator whose state is checkpointed with the weights, the EMA and
the optimizer, so a run resumed with `resume=True` continues exactly (bit-for-bit on CPU) where it stopped.

References:
    Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models", arXiv 2206.00364.
    Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", arXiv 2105.05233.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..device import device_label, resolve_device
from ..errors import SpgdError
from ..io import atomic_torch_save, load_torch_file
from ..priors import UNetModel, VPPrecond, load_prior, save_unet
from ..priors.unet import count_parameters
from .data import TrainingData, load_data, random_crops
from .report import held_out_report

__all__ = ["DEFAULT_CONFIG", "train_prior"]

# A small, fully convolutional ADM UNet (~1.9M parameters, 7.4 MB in float32). No attention inside the levels:
# only the middle block's (it is always there) sees the whole feature map, at 1/8 of the input size.
DEFAULT_CONFIG: dict[str, Any] = dict(
    image_size=64,  # only fixes channel_mult/attention defaults; any size divisible by 8 runs
    num_channels=32,  # base width (a multiple of 32: GroupNorm uses 32 groups)
    num_res_blocks=1,
    channel_mult="1,2,2,2",  # 3 down-samplings
    learn_sigma=False,
    attention_resolutions="",  # none inside the levels
    num_head_channels=32,
    use_scale_shift_norm=True,
    resblock_updown=True,
    dropout=0.0,
)

STATE_FORMAT = "spgd-train-state"
P_MEAN, P_STD = -1.0, 1.5  # log-normal training noise levels: median sigma 0.37, 95 % in [0.02, 7]
SIGMA_LO, SIGMA_HI = 0.002, 150.0  # range of the log-uniform share of the noise levels
LR_WARMUP = 100  # steps of linear learning-rate warm-up
EMA_WARMUP = 10  # the EMA decay is min(ema_decay, (1 + step) / (EMA_WARMUP + step)), so short runs average less
SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}  # storage of the saved weights


# -------------------------------------------------------------------------------------------------- state


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpgdError(f"cannot resume: no training checkpoint at {path}")
    state = load_torch_file(path, "a training checkpoint (cannot resume)")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise SpgdError(f"cannot resume: {path} is not an spgd training checkpoint")
    return state


def _check_settings(steps: int, batch_size: int, crop: int, lr: float, ema_decay: float, factor: int,
                    checkpoint_every: int, holdout_fraction: float, uniform_fraction: float, p_std: float,
                    max_minutes: Optional[float], precision: str, save_dtype: str) -> None:
    if steps < 1:
        raise SpgdError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise SpgdError(f"batch_size must be >= 1, got {batch_size}")
    if crop < factor or crop % factor:
        raise SpgdError(f"crop must be a positive multiple of {factor} (the network down-samples by {factor}), "
                        f"got {crop}")
    if not (0 < lr < 1):
        raise SpgdError(f"lr must be in (0, 1), got {lr}")
    if not (0 <= ema_decay < 1):
        raise SpgdError(f"ema_decay must be in [0, 1), got {ema_decay}")
    if checkpoint_every < 0:
        raise SpgdError(f"checkpoint_every must be >= 0 (0: only at the end), got {checkpoint_every}")
    if not (0 <= holdout_fraction < 1):
        raise SpgdError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if not 0.0 <= uniform_fraction <= 1.0:
        raise SpgdError(f"uniform_fraction must be in [0, 1], got {uniform_fraction}")
    if not p_std > 0:
        raise SpgdError(f"p_std must be > 0, got {p_std}")
    if max_minutes is not None and max_minutes <= 0:
        raise SpgdError(f"max_minutes must be > 0, got {max_minutes}")
    if precision not in ("fp32", "bf16"):
        raise SpgdError(f"precision must be fp32 or bf16, got {precision!r}")
    if save_dtype not in SAVE_DTYPES:
        raise SpgdError(f"save_dtype must be one of {', '.join(SAVE_DTYPES)}, got {save_dtype!r}")


# ---------------------------------------------------------------------------------------------- training


@dataclass
class _Network:
    """What the network is: its UNetModel keywords, its starting weights (init) and the output scaling."""

    config: dict[str, Any]
    init_state: Optional[dict[str, Tensor]]
    scaling: str
    sigma_data: float


@dataclass
class _State:
    """Everything a checkpoint holds: the network, its EMA, the optimizer, the generator, the step and time."""

    net: UNetModel
    ema: UNetModel
    opt: torch.optim.Optimizer
    gen: torch.Generator
    step: int = 0
    elapsed: float = 0.0


def _load_init(path: str | os.PathLike) -> VPPrecond:
    """The UNet prior of an spgd-unet weights file (e.g. the bundled default), to fine-tune from."""
    prior = load_prior(str(path), device="cpu")
    net = getattr(prior, "net", None)
    if not isinstance(net, UNetModel):
        raise SpgdError(f"init={path}: not a UNet prior file (got {type(prior).__name__})")
    return prior


def _resolve_network(
    config: Optional[Mapping[str, Any]], init: str | os.PathLike | None, resume: bool, scaling: Optional[str],
    sigma_data: Optional[float],
) -> _Network:
    """The network config and scaling: an init file's (its config wins), else `config` (DEFAULT_CONFIG)."""
    init_state = None
    if init is not None:
        if resume:
            raise SpgdError("init and resume=True exclude each other: a resumed run continues its own weights")
        init_prior = _load_init(init)
        config, init_state = dict(init_prior.net.config), init_prior.net.state_dict()
        scaling = init_prior.scaling if scaling is None else scaling
        sigma_data = init_prior.sigma_data if sigma_data is None else sigma_data
    return _Network(config=dict(DEFAULT_CONFIG if config is None else config), init_state=init_state,
                    scaling="edm" if scaling is None else scaling,
                    sigma_data=0.5 if sigma_data is None else sigma_data)


def _downsampling_factor(config: Mapping[str, Any]) -> int:
    """2 ** (the network's down-samplings): crops must be a multiple of it."""
    try:
        with torch.device("meta"):
            return 2 ** UNetModel(**config).num_downsamples
    except (TypeError, ValueError) as e:
        raise SpgdError(f"invalid UNet config: {e}") from None


def _create_state(network: _Network, device: torch.device, seed: int, lr: float, precision: str,
                  image_channels: int) -> tuple[VPPrecond, _State]:
    """The seeded network (or the init weights) on `device` inside its preconditioning, trainable, with its
    EMA copy, Adam and the generator of every random draw."""
    torch.manual_seed(seed)
    net = UNetModel(**network.config)
    if network.init_state is not None:
        net.load_state_dict(network.init_state)
    net = net.to(device)
    # freezes net; we unfreeze it: the same D is trained that loads later (bf16: autocast inside its NetworkRunner)
    precond = VPPrecond(net, precision=precision, **_scaling_keywords(network, image_channels))
    net.requires_grad_(True)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    return precond, _State(net=net, ema=ema, opt=opt, gen=torch.Generator().manual_seed(seed))


def _scaling_keywords(network: _Network, image_channels: int) -> dict[str, Any]:
    """VPPrecond's keywords beside the network: the trained one and the saved one are the same denoiser."""
    return dict(scaling=network.scaling, sigma_data=network.sigma_data, img_channels=image_channels)


def _resume_state(state: _State, path: Path, split: Mapping[str, Any]) -> None:
    """Load weights, EMA, optimizer, generator, step and time from the training checkpoint at `path`."""
    saved = _load_state(path)
    if saved["config"] != state.net.config:
        raise SpgdError(f"cannot resume: {path} holds a different network config ({saved['config']})")
    if saved["data"]["train"] != split["train"]:
        warnings.warn(f"resuming with different training images than {path} was trained on", stacklevel=3)
    state.net.load_state_dict(saved["model"])
    state.ema.load_state_dict(saved["ema"])
    state.opt.load_state_dict(saved["optimizer"])
    state.gen.set_state(saved["rng"])
    state.step, state.elapsed = int(saved["step"]), float(saved["elapsed"])


def _noise_levels(n: int, p_mean: float, p_std: float, uniform_fraction: float, gen: torch.Generator) -> Tensor:
    """n training noise levels: the first round(uniform_fraction * n) log-uniform, the rest log-normal."""
    k = round(uniform_fraction * n)
    log_normal = torch.randn(n - k, generator=gen) * p_std + p_mean
    lo, hi = math.log(SIGMA_LO), math.log(SIGMA_HI)
    log_uniform = torch.rand(k, generator=gen) * (hi - lo) + lo
    return torch.cat([log_uniform, log_normal]).exp()


def _train_step(state: _State, precond: VPPrecond, data: TrainingData, settings: Mapping[str, Any],
                device: torch.device) -> float:
    """One optimizer step and the EMA update; returns the loss. Crops, noise levels and noise come from the
    seeded generator (on the CPU, so any device agrees)."""
    batch_size, gen = settings["batch_size"], state.gen
    x0 = random_crops(data.train, batch_size, settings["crop"], gen)
    sigma = _noise_levels(batch_size, settings["p_mean"], settings["p_std"], settings["uniform_fraction"], gen)
    sigma = sigma.clamp(precond.sigma_min, precond.sigma_max)
    noise = torch.randn(x0.shape, generator=gen)
    x0, sigma, noise = x0.to(device), sigma.to(device), noise.to(device)
    loss = precond.loss(x0, sigma, noise)  # EDM's, lambda = 1 / c_out^2
    if not torch.isfinite(loss):
        raise SpgdError(f"training diverged at step {state.step + 1} (loss {loss.item()}); lower lr")
    for group in state.opt.param_groups:
        group["lr"] = settings["lr"] * min(1.0, (state.step + 1) / LR_WARMUP)
    state.opt.zero_grad(set_to_none=True)
    loss.backward()
    state.opt.step()
    state.step += 1
    decay = min(settings["ema_decay"], state.step / (state.step + EMA_WARMUP - 1))
    with torch.no_grad():
        for p_ema, p in zip(state.ema.parameters(), state.net.parameters()):
            p_ema.lerp_(p, 1 - decay)
    return loss.item()


def _train_loop(state: _State, precond: VPPrecond, data: TrainingData, settings: Mapping[str, Any],
                device: torch.device, checkpoint_every: int, progress: bool,
                save: Callable[[], Any]) -> None:
    """Steps until settings["steps"] or the max_minutes budget, with a progress bar and a checkpoint (`save`)
    every `checkpoint_every` steps before the last."""
    steps, max_minutes = settings["steps"], settings["max_minutes"]
    bar = None
    if progress:
        bar = tqdm(total=steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)
    smoothed = None
    t_start = time.perf_counter() - state.elapsed
    deadline = math.inf if max_minutes is None else state.elapsed + 60 * max_minutes
    while state.step < steps and state.elapsed < deadline:
        value = _train_step(state, precond, data, settings, device)
        state.elapsed = time.perf_counter() - t_start
        smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.4f}")
        if checkpoint_every and state.step % checkpoint_every == 0 and state.step < steps:
            save()
    if bar is not None:
        bar.close()


def _write_outputs(state: _State, network: _Network, data: TrainingData, settings: Mapping[str, Any],
                   images_dir: str | os.PathLike, command: Optional[str], device: torch.device, out: Path,
                   ckpt_path: Path, final: bool = False, report: Optional[dict] = None) -> dict[str, Any]:
    """Write the training checkpoint and the weights file: the EMA network, stored as settings["save_dtype"],
    with the "training" metadata (returned)."""
    meta = _metadata(state, data, settings, images_dir, command, device, final, report)
    atomic_torch_save(
        ckpt_path,
        {"format": STATE_FORMAT, "config": state.net.config, "step": state.step, "elapsed": state.elapsed,
         "model": state.net.state_dict(), "ema": state.ema.state_dict(), "optimizer": state.opt.state_dict(),
         "rng": state.gen.get_state(), "settings": settings, "data": data.split},
    )
    saved = copy.deepcopy(state.ema).cpu().to(SAVE_DTYPES[settings["save_dtype"]])
    save_unet(out, VPPrecond(saved, **_scaling_keywords(network, settings["image_channels"])), training=meta)
    return meta


def _metadata(state: _State, data: TrainingData, settings: Mapping[str, Any], images_dir: str | os.PathLike,
              command: Optional[str], device: torch.device, final: bool,
              report: Optional[dict] = None) -> dict[str, Any]:
    """The weights file's "training" entry: how it was made, how far it got and (at the end) its report."""
    return {
        "command": command,
        "settings": settings,
        "steps": state.step,
        "finished": final,
        "wall_time_s": round(state.elapsed, 1),
        "hardware": device_label(device),
        "torch": str(torch.__version__),
        "parameters": count_parameters(state.net.config),
        "data": {"folder": str(Path(images_dir).resolve()), "files": data.files, "split": data.split},
        "report": report,
    }


def train_prior(
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    steps: int = 3000,  # optimizer steps in all (a resumed run continues up to this number)
    batch_size: int = 8,  # crops per step
    crop: int = 64,  # crop side in pixels (a multiple of 2**levels-1)
    lr: float = 1e-3,  # Adam learning rate after the warm-up
    ema_decay: float = 0.999,  # EMA of the weights (the saved network)
    config: Optional[Mapping[str, Any]] = None,  # UNetModel keywords; DEFAULT_CONFIG if None
    seed: int = 0,  # initial weights, crops, noise, hold-out choice
    resume: bool = False,  # continue from `checkpoint` (weights, EMA, optimizer, step, rng)
    checkpoint: str | os.PathLike | None = None,  # training state file; default: out + ".ckpt"
    checkpoint_every: int = 500,  # steps between checkpoints (and output snapshots); 0: only at the end
    device: str | torch.device | None = None,  # None/"auto": CUDA when available, else CPU
    progress: bool = True,  # tqdm progress bar on stderr
    holdout_fraction: float = 0.1,  # images held out for the final report
    max_minutes: Optional[float] = None,  # stop (and finish normally) after this much training time
    p_mean: float = P_MEAN,  # log-normal noise levels: ln sigma ~ N(p_mean, p_std^2)
    p_std: float = P_STD,
    uniform_fraction: float = 0.0,  # share of each batch with log-uniform sigma over [SIGMA_LO, SIGMA_HI]
    init: str | os.PathLike | None = None,  # spgd-unet weights file to start from (its config wins)
    scaling: Optional[str] = None,  # output scaling (spgd.priors.VPPrecond): "edm"/"eps"; None: init's, else edm
    sigma_data: Optional[float] = None,  # EDM scaling's data std; None: init's, else 0.5 (1.0 gives the eps c_in)
    command: Optional[str] = None,  # the command line, recorded in the file's metadata
    precision: str = "fp32",  # "bf16": the network's forward and backward under bf16 autocast (the rest float32)
    save_dtype: str = "fp32",  # "fp16": the weights file stores the EMA weights in half (the checkpoint: float32)
    image_channels: Optional[int] = None,  # 1 (grayscale) or 3 (RGB); None: config's/init's, else from the data
) -> dict[str, Any]:
    """Train a UNet denoiser prior on the images of `images_dir` and write its EMA weights to `out`; returns the
    "training" metadata dict (its "report" holds the held-out denoising PSNRs).

    The file is in the spgd-unet format (`spgd.priors.save_unet`) with a "training" entry (settings, command,
    steps, wall time, hardware, data, held-out report) and loads with `spgd.load_prior(out)`. A run stopped by
    `max_minutes` ends with its report and output as usual; `resume=True` with a larger budget continues it.

    Raises:
        SpgdError: missing or empty folder, no readable image, bad settings, unusable checkpoint.
    """
    network = _resolve_network(config, init, resume, scaling, sigma_data)
    _check_settings(steps, batch_size, crop, lr, ema_decay, _downsampling_factor(network.config), checkpoint_every,
                    holdout_fraction, uniform_fraction, p_std, max_minutes, precision, save_dtype)
    dev, out = resolve_device(device), Path(out)
    ckpt_path = Path(checkpoint) if checkpoint is not None else out.with_name(out.name + ".ckpt")
    settings = dict(steps=steps, max_minutes=max_minutes, batch_size=batch_size, crop=crop, lr=lr,
                    ema_decay=ema_decay, seed=seed, holdout_fraction=holdout_fraction, lr_warmup=LR_WARMUP,
                    p_mean=p_mean, p_std=p_std, uniform_fraction=uniform_fraction,
                    uniform_range=[SIGMA_LO, SIGMA_HI], scaling=network.scaling, sigma_data=network.sigma_data,
                    init=None if init is None else Path(init).name,
                    loss="EDM loss, lambda = 1/c_out^2 (the network output's MSE)", min_scale=0.5, flip=True,
                    precision=precision, save_dtype=save_dtype)
    data, channels = load_data(images_dir, image_channels, network.config, holdout_fraction, crop, seed)
    settings["image_channels"] = channels
    precond, state = _create_state(network, dev, seed, lr, precision, channels)
    if resume:
        _resume_state(state, ckpt_path, data.split)
    save = functools.partial(_write_outputs, state, network, data, settings, images_dir, command, dev, out, ckpt_path)
    _train_loop(state, precond, data, settings, dev, checkpoint_every, progress, save)
    trained = VPPrecond(copy.deepcopy(state.ema), **_scaling_keywords(network, channels)).to(dev)
    report = held_out_report(trained.denoise, data.held_out, data.split["kind"], channels, crop, batch_size, seed,
                             dev)
    return save(final=True, report=report)
