"""What a model file or folder is: its format, architecture, size, channels, sigma range, and how to use it.

`inspect_model(path)` loads the model the way `load_prior` does (so what it reports is what a restoration gets)
and returns a `ModelInfo`; `ModelInfo.lines()` is what `spgd models PATH` prints.
"""

from __future__ import annotations

import os
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..errors import SpgdError
from .base import DEFAULT_CLASS_LABEL, Prior
from .checkpoint import DEFAULT_WEIGHTS, FORMAT, infer_architecture, load_prior, split_buffers
from .diffusers import locate
from .discrete import DiscreteTimePrior
from .latent import PREFIX as LATENT_PREFIX
from .latent import LatentPrior, LatentUNet
from .unet import UNetModel


@dataclass
class ModelInfo:
    """A model file or folder as spgd sees it."""

    path: str
    format: str  # e.g. "guided-diffusion state_dict", "diffusers UNet2DModel folder", "spgd-unet"
    architecture: str  # preset name or a short description
    parameters: int
    resolution: Optional[int]  # training resolution; other sizes divisible by `size_multiple` run too
    channels: int  # 1 = grayscale, 3 = RGB
    sigma_min: float
    sigma_max: float
    size_multiple: int = 1  # height and width must be multiples of this
    prediction: str = "epsilon"
    schedule: str = ""
    num_classes: Optional[int] = None  # class-conditional: number of classes
    notes: list[str] = field(default_factory=list)

    def command(self) -> str:
        """A command line that restores a measurement with this model."""
        label = " --class-label 0" if self.num_classes else ""
        return f"spgd restore MEASUREMENT.png --task gaussian_blur --prior {shlex.quote(self.path)}{label}"

    def lines(self) -> list[str]:
        res = f"{self.resolution}x{self.resolution}" if self.resolution else "unknown"
        kind = {1: "grayscale", 3: "RGB"}.get(self.channels, f"{self.channels}-channel")
        out = [
            f"{self.path}",
            f"  format:        {self.format}",
            f"  architecture:  {self.architecture}",
            f"  parameters:    {self.parameters / 1e6:.2f}M",
            f"  resolution:    {res} (trained); input height and width must be multiples of {self.size_multiple}",
            f"  channels:      {self.channels} ({kind})",
            f"  predicts:      {self.prediction}" + (f"; schedule: {self.schedule}" if self.schedule else ""),
            f"  sigma range:   [{self.sigma_min:.4g}, {self.sigma_max:.4g}]",
        ]
        if self.num_classes:
            out.append(f"  classes:       {self.num_classes} (class-conditional: choose one with --class-label)")
        out += [f"  note:          {n}" for n in self.notes]
        out.append(f"  restore with:  {self.command()}")
        return out


def _peek(path: Path) -> Any:
    """The raw object of a torch file (memory-mapped where the file allows it), for naming its layout."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be memory-mapped; load_prior reports errors
        return torch.load(path, map_location="cpu", weights_only=True)


def _layout(obj: Any) -> tuple[str, list[str]]:
    """(format name, notes) of a torch checkpoint object."""
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        return "spgd-unet (written by spgd train / save_unet)", []
    notes = []
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "ema"):
            if isinstance(obj.get(key), Mapping):
                notes.append(f"tensors held under '{key}'")
                obj = obj[key]
                break
    sd = dict(obj) if isinstance(obj, Mapping) else {}
    for prefix, who in (("module.", "DataParallel"), ("model.", "InverseBench")):
        if sd and all(k.startswith(prefix) for k in sd):
            notes.append(f"'{prefix}' prefix on every name ({who} layout)")
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    _, buffers = split_buffers(sd)
    if buffers:
        notes.append(f"schedule buffers {', '.join(sorted(buffers))} beside the weights (deepinv DiffUNet layout)")
    name = "guided-diffusion (ADM) state_dict"
    return name, notes


def _parameters(prior: Prior) -> int:
    return sum(p.numel() for p in prior.parameters())


def inspect_model(path: str | os.PathLike) -> ModelInfo:
    """Load `path` as `load_prior` does and report what it is (see ModelInfo)."""
    text = os.fspath(path)
    p = DEFAULT_WEIGHTS if text == "default" else Path(text[len(LATENT_PREFIX):].split("?")[0]
                                                        if text.startswith(LATENT_PREFIX) else text)
    if not p.exists():
        raise SpgdError(f"no such model file or folder: {p}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the default-class-label warning: reported below instead
        prior = load_prior(text if text.startswith(LATENT_PREFIX) else p, fast=False)
    if getattr(prior, "is_latent", False):
        return _latent_info(prior, text)
    net = getattr(prior, "net", None)
    if getattr(net, "unet", None) is not None:
        return _diffusers_info(prior, str(path), p)
    if not isinstance(net, UNetModel):
        raise SpgdError(f"{p} loads as {type(prior).__name__}, which spgd models cannot describe")
    return _adm_info(prior, str(path), p)


def _diffusers_info(prior: Prior, path: str, p: Path) -> ModelInfo:
    """What `spgd models` reports for a diffusers UNet2DModel (or pipeline) folder `p`."""
    cfg = prior.net.unet.config
    folder = locate(p)
    blocks = list(cfg.get("down_block_types", []))
    info = ModelInfo(
        path=path, format="diffusers UNet2DModel " + ("pipeline folder" if folder.unet_dir != p else "folder"),
        architecture=f"UNet2DModel, widths {tuple(cfg['block_out_channels'])}, {cfg['layers_per_block']} "
        f"layers per block, {sum('Attn' in b for b in blocks)} of {len(blocks)} levels with attention",
        parameters=_parameters(prior), resolution=cfg.get("sample_size") if isinstance(cfg.get("sample_size"), int)
        else None, channels=int(cfg["in_channels"]), sigma_min=prior.sigma_min, sigma_max=prior.sigma_max,
        size_multiple=2 ** (len(blocks) - 1), prediction=prior.prediction,
        schedule=f"{prior.schedule.num_timesteps} discrete steps, from {folder.scheduler_config.relative_to(p)}"
        if folder.scheduler_config else "DDPM defaults (no scheduler config found)",
        num_classes=cfg.get("num_class_embeds"),
    )
    if int(cfg["out_channels"]) == 2 * int(cfg["in_channels"]):
        info.notes.append("learned-variance output channels are dropped")
    return info


def _adm_info(prior: Prior, path: str, p: Path) -> ModelInfo:
    """What `spgd models` reports for a guided-diffusion (ADM) UNet file `p` (raw state_dict or spgd-unet)."""
    net = prior.net
    fmt, notes = _layout(_peek(p))
    try:
        arch = f"guided-diffusion UNet '{infer_architecture(net.state_dict())}'"
    except SpgdError:
        arch = "guided-diffusion UNet (config recorded in the file)"
    cfg = net.config
    arch += f", width {cfg['num_channels']}, channel_mult {net.channel_mult}, {cfg['num_res_blocks']} res blocks"
    discrete = getattr(prior, "schedule", None)
    schedule = (f"discrete, {discrete.num_timesteps} steps ({prior.description.split(', ', 1)[-1]})"
                if discrete is not None else
                f"VP linear (beta_min {prior.beta_min}, beta_d {prior.beta_d}, M {prior.M})")
    if getattr(prior, "scaling", "eps") == "edm":
        schedule += f", EDM output scaling (sigma_data {prior.sigma_data})"
    if cfg.get("learn_sigma"):
        notes.append("learned-variance output channels are dropped")
    if net.num_classes:
        notes.append(f"without --class-label, class {DEFAULT_CLASS_LABEL} is used (the network has no unconditional mode)")
    return ModelInfo(
        path=path, format=fmt, architecture=arch, parameters=_parameters(prior), resolution=cfg["image_size"],
        channels=net.in_channels, sigma_min=prior.sigma_min, sigma_max=prior.sigma_max,
        size_multiple=2**net.num_downsamples, prediction="epsilon", schedule=schedule, num_classes=net.num_classes,
        notes=notes,
    )


def _latent_info(prior: LatentPrior, path: str) -> ModelInfo:
    """What `spgd models` reports for a latent folder."""
    lat, codec = prior.latent, prior.codec
    unet = getattr(lat, "net", None)
    ucfg = unet.unet.config if isinstance(unet, LatentUNet) else {}
    size = ucfg.get("sample_size")
    return ModelInfo(
        path=path, format="diffusers latent diffusion pipeline folder (unet/ + vae/ + scheduler/)",
        architecture=f"{type(unet.unet).__name__ if isinstance(unet, LatentUNet) else 'latent prior'}, widths "
        f"{tuple(ucfg.get('block_out_channels', ()))}; AutoencoderKL factor {codec.factor}, "
        f"{codec.latent_channels} latent channels, scaling factor {codec.scaling_factor:g}",
        parameters=sum(p.numel() for p in prior.parameters()),
        resolution=size * codec.factor if isinstance(size, int) else None, channels=prior.img_channels,
        sigma_min=prior.sigma_min, sigma_max=prior.sigma_max, size_multiple=2**prior.num_downsamples,
        prediction=getattr(lat, "prediction", "epsilon"),
        schedule=f"{lat.schedule.num_timesteps} discrete steps" if isinstance(lat, DiscreteTimePrior) else "",
        notes=[prior.description, "sampler state: latents; likelihood through the VAE decoder"],
    )
