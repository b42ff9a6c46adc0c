"""Hugging Face diffusers `UNet2DModel` folders as priors (the `google/ddpm-*` family and its fine-tunes).

A folder is either the UNet's own (`config.json` + `diffusion_pytorch_model.safetensors` or `.bin`, the
scheduler's `scheduler_config.json` beside it, in `scheduler/`, or in `../scheduler/`) or a pipeline folder
(`model_index.json`, `unet/`, `scheduler/`). Nothing is downloaded: the folder must be on disk. Safetensors
are read with `safetensors`, `.bin` files with `torch.load(weights_only=True)`; the network is built from
its config by diffusers (an optional extra, imported only here) and filled strictly from those tensors.

The prior is a `DiscreteTimePrior`: the sampler's sigma is mapped to a fractional timestep through the
scheduler's `alphas_cumprod`, the input is scaled by 1 / sqrt(1 + sigma^2), and the scheduler's
`prediction_type` (epsilon, v_prediction, sample) is converted to x0; learned-variance channels are dropped.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..errors import SpgdError
from .base import DEFAULT_CLASS_LABEL
from .discrete import PREDICTIONS, DiscreteSchedule, DiscreteTimePrior

EXTRA_HINT = "pip install 'spgd[diffusers]'"
WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)
SUPPORTED_CLASSES = ("UNet2DModel",)
# attention parameter names of diffusers < 0.14 (still in many .bin files) -> the current ones
_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def import_diffusers() -> Any:
    """The diffusers module, or an SpgdError naming the extra to install."""
    try:
        import diffusers  # optional dependency (the diffusers extra)
    except ImportError:
        raise SpgdError(f"loading a diffusers model folder needs the optional diffusers extra: {EXTRA_HINT}") from None
    return diffusers


@dataclass
class DiffusersFolder:
    """Where the UNet's config, weights and scheduler config of a diffusers folder are."""

    root: Path  # the folder the user gave
    unet_dir: Path  # holds config.json and the weights
    weights: Path
    scheduler_config: Optional[Path]  # None: no scheduler config found


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object of a config file; SpgdError naming the file when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SpgdError(f"cannot read {path} as JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise SpgdError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def is_diffusers_folder(path: str | os.PathLike) -> bool:
    """True for a folder with a diffusers `config.json` (its own or in `unet/`)."""
    p = Path(path)
    return p.is_dir() and ((p / "config.json").is_file() or (p / "unet" / "config.json").is_file())


def locate(path: str | os.PathLike) -> DiffusersFolder:
    """Find the UNet and the scheduler config of a diffusers UNet or pipeline folder."""
    root = Path(path)
    if not root.is_dir():
        raise SpgdError(f"diffusers model folder not found: {root}")
    unet_dir = root / "unet" if (root / "unet" / "config.json").is_file() else root
    if not (unet_dir / "config.json").is_file():
        raise SpgdError(f"{root} is not a diffusers model folder: no config.json there or in unet/")
    weights = next((unet_dir / f for f in WEIGHT_FILES if (unet_dir / f).is_file()), None)
    if weights is None:
        raise SpgdError(f"{unet_dir} holds no weights: expected one of {', '.join(WEIGHT_FILES)}")
    candidates = [
        unet_dir / "scheduler_config.json",
        unet_dir / "scheduler" / "scheduler_config.json",
        root / "scheduler" / "scheduler_config.json",
        unet_dir.parent / "scheduler" / "scheduler_config.json",
    ]
    scheduler = next((c for c in candidates if c.is_file()), None)
    return DiffusersFolder(root, unet_dir, weights, scheduler)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a `.safetensors` (safetensors) or `.bin` (torch.load weights_only=True) file."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file  # optional dependency (the diffusers extra)
        except ImportError:
            raise SpgdError(f"reading {path.name} needs safetensors: {EXTRA_HINT}") from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as e:  # noqa: BLE001 - header/format errors of a damaged file
            raise SpgdError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SpgdError(f"{path} holds pickled objects that torch.load(weights_only=True) refuses") from None
    except Exception as e:  # noqa: BLE001
        raise SpgdError(f"{path} is not a readable PyTorch file ({type(e).__name__})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SpgdError(f"{path} does not hold a state_dict of tensors")
    return obj


def _rename_old_attention(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map attention names of old diffusers files (`attentions.N.query.weight`) to the current ones."""
    pattern = re.compile(r"^(.*attentions\.\d+\.)(query|key|value|proj_attn)\.(weight|bias)$")
    out = {}
    for k, v in state_dict.items():
        m = pattern.match(k)
        out[f"{m.group(1)}{_OLD_ATTENTION[m.group(2)]}.{m.group(3)}" if m else k] = v
    return out


def _check_fit(model: nn.Module, state_dict: dict[str, Tensor], where: Path) -> None:
    """SpgdError listing the missing, unexpected and misshapen keys unless `state_dict` fits `model` exactly."""
    want = model.state_dict()
    missing = [k for k in want if k not in state_dict]
    unexpected = [k for k in state_dict if k not in want]
    shapes = [k for k in want if k in state_dict and state_dict[k].shape != want[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {n}: {', '.join(v[:3])}" for n, v in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)) if v]
        raise SpgdError(f"{where} does not fit the UNet of its config.json: {'; '.join(parts)}")


def build_model(cls: Any, config: dict[str, Any], directory: Path, weights: Path) -> nn.Module:
    """The diffusers model class `cls` built from `config` (`directory`/config.json) without a random init and
    filled strictly from `weights` (old attention names renamed): float32, frozen, eval mode."""
    try:
        with torch.device("meta"):
            model = cls.from_config(config)
    except Exception as e:  # noqa: BLE001 - an invalid config
        raise SpgdError(f"{directory / 'config.json'} is not a valid {cls.__name__} config ({e})") from None
    state_dict = _rename_old_attention(read_state_dict(weights))
    _check_fit(model, state_dict, weights)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        # a non-persistent buffer was built on the meta device and is not in the file: build on the CPU instead
        model = cls.from_config(config)
        model.load_state_dict(sd, strict=True)
    return model.float().eval().requires_grad_(False)


def build_unet(folder: DiffusersFolder) -> nn.Module:
    """The diffusers UNet2DModel of the folder, weights loaded strictly, float32, frozen, eval mode."""
    diffusers = import_diffusers()
    config = read_json(folder.unet_dir / "config.json")
    name = config.get("_class_name", "UNet2DModel")
    if name not in SUPPORTED_CLASSES:
        hint = " (a latent/text-conditioned model: not a pixel-space prior)" if "Condition" in name else ""
        raise SpgdError(f"{folder.unet_dir} holds a {name}{hint}; supported: {', '.join(SUPPORTED_CLASSES)}")
    if config.get("time_embedding_type", "positional") == "fourier":
        raise SpgdError(
            f"{folder.unet_dir} is a score-SDE (Fourier time embedding, sigma-conditioned) model; "
            "only timestep-conditioned (DDPM-family) UNet2DModels are supported"
        )
    return build_model(diffusers.UNet2DModel, config, folder.unet_dir, folder.weights)


def scheduler_settings(folder: DiffusersFolder) -> tuple[Tensor, str, str]:
    """(alphas_cumprod, prediction_type, where they came from), computed by the scheduler class the config
    names (diffusers' own betas, including `trained_betas` and zero-SNR rescaling); DDPM defaults without one."""
    diffusers = import_diffusers()
    if folder.scheduler_config is None:
        sched = diffusers.DDPMScheduler()
        return sched.alphas_cumprod, "epsilon", "no scheduler config found: DDPM defaults (linear, 1000 steps)"
    config = read_json(folder.scheduler_config)
    cls = getattr(diffusers, str(config.get("_class_name", "DDPMScheduler")), None)
    if cls is None or not hasattr(cls, "from_config"):
        cls = diffusers.DDPMScheduler
    try:
        sched = cls.from_config(config)
        abar = getattr(sched, "alphas_cumprod", None)
        if abar is None:  # a scheduler without a discrete abar (e.g. a VE one): DDPM's from the same betas
            sched = diffusers.DDPMScheduler.from_config(config)
            abar = sched.alphas_cumprod
    except Exception as e:  # noqa: BLE001
        raise SpgdError(f"{folder.scheduler_config} is not a valid scheduler config ({e})") from None
    prediction = str(config.get("prediction_type", "epsilon"))
    if prediction not in PREDICTIONS:
        raise SpgdError(
            f"{folder.scheduler_config}: prediction_type {prediction!r} is not supported; valid: {', '.join(PREDICTIONS)}"
        )
    return torch.as_tensor(abar), prediction, f"{type(sched).__name__} config"


class DiffusersUNet(nn.Module):
    """F(x_t, t) = unet(x_t, t).sample, with a fixed class label for class-conditional UNets."""

    def __init__(self, unet: nn.Module, class_label: Optional[int] = None):
        super().__init__()
        self.unet = unet
        self.class_label = class_label

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        labels = None
        if self.class_label is not None:
            labels = torch.full((x_t.shape[0],), self.class_label, dtype=torch.long, device=x_t.device)
        return self.unet(x_t, t, class_labels=labels, return_dict=False)[0]


def load_diffusers_prior(path: str | os.PathLike, class_label: Optional[int] = None) -> DiscreteTimePrior:
    """A diffusers UNet2DModel (or pipeline) folder as a DiscreteTimePrior (see the module docstring)."""
    folder = locate(path)
    unet = build_unet(folder)
    n_classes = unet.config.get("num_class_embeds")
    if n_classes:
        if class_label is None:
            warnings.warn(
                f"{folder.root} is class-conditional ({n_classes} classes) and no class label was given: using "
                f"class {DEFAULT_CLASS_LABEL} (pass class_label= / --class-label)",
                stacklevel=3,
            )
            class_label = DEFAULT_CLASS_LABEL
        label = int(class_label)
        if not 0 <= label < n_classes:
            raise SpgdError(f"class_label must be in [0, {n_classes - 1}] for this model, got {class_label}")
    elif class_label is not None:
        raise SpgdError(f"class_label={class_label} given, but {folder.root} is not class-conditional")
    else:
        label = None
    abar, prediction, source = scheduler_settings(folder)
    channels = int(unet.config["in_channels"])
    size = unet.config.get("sample_size")
    desc = f"diffusers UNet2DModel from {folder.root.name}, {channels} channels, size {size}, schedule: {source}"
    return DiscreteTimePrior(DiffusersUNet(unet, label), DiscreteSchedule(abar), prediction, channels, desc)
