"""Loading priors by name, file or folder: guided-diffusion/DPS UNet checkpoints, our own UNet files,
diffusers folders, the default.

Files are read with `torch.load(weights_only=True)` (or safetensors) only. Understood:

- a raw guided-diffusion state_dict, recognised by its tensor names and shapes (not its file name) among
  ARCHITECTURES: `ffhq_10m.pt`, `256x256_diffusion_uncond.pt`, the class-conditional `64x64_diffusion.pt`,
  `128x128_diffusion.pt`, `256x256_diffusion.pt`, `512x512_diffusion.pt`, deepinv's DiffUNet files. The
  tensors may be held under "state_dict"/"model"/"ema", with a "module." (DataParallel) or "model."
  (InverseBench) prefix, and beside 1-D schedule buffers (`betas`, `alphas_cumprod`, ...: deepinv), which are
  used as the noise schedule when they differ from the architecture's own;
- our format, written by `save_unet`: {"format": "spgd-unet", "config": {UNet keywords},
  "state_dict": {...}, "precond": {VP keywords}, ...metadata};
- a diffusers UNet2DModel or pipeline folder (see `spgd.priors.diffusers`).

EDM/EDM2 `.pkl` files are refused: unpickling them runs code stored in the file.
"""

from __future__ import annotations

import inspect

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..device import resolve_device
from ..errors import SpgdError, first_line
from ..io import atomic_torch_save
from .base import DEFAULT_CLASS_LABEL, Prior
from .diffusers import is_diffusers_folder, load_diffusers_prior
from .discrete import DiscreteSchedule, DiscreteTimePrior, betas_for
from .execution import FastPath, apply_fast
from .gaussian import GaussianPrior
from .latent import PREFIX as LATENT_PREFIX
from .latent import is_latent_folder, load_from_name
from .precond import VPPrecond
from .unet import ARCHITECTURES, SCHEDULES, UNetModel

FORMAT = "spgd-unet"
TRAINED_WEIGHTS = "prior.pt"  # the weights file in the run folder of `spgd train`
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.pt"
NAMES = ("default", "gaussian", *ARCHITECTURES)
_PRECOND_KEYS = ("img_channels", "beta_d", "beta_min", "M", "epsilon_t", "scaling", "sigma_data")
# Prefixes that wrappers put before the ADM parameter names: DataParallel, InverseBench.
_PREFIXES = ("module.", "model.")
_SCHEDULE_BUFFERS = ("alphas_cumprod", "betas")  # deepinv-style buffers that define the schedule
_EDM_HINT = (
    "EDM/EDM2 .pkl files are Python pickles, and unpickling one runs code stored in the file, so spgd does "
    "not open them. If you trust the file, load it with EDM's own code (its dnnlib and torch_utils on "
    "sys.path: net = pickle.load(f)['ema']) and pass the network to spgd.restore as a callable prior, "
    "lambda x, sigma: net(x, sigma) (EDM networks already compute D(x; sigma))"
)


def _read(path: str | os.PathLike) -> Any:
    """torch.load a file on the CPU with weights_only=True, turning every failure into one SpgdError line."""
    path = Path(path)
    if not path.is_file():
        raise SpgdError(f"checkpoint file not found: {path}")
    if path.suffix.lower() == ".pkl":
        raise SpgdError(f"{path}: {_EDM_HINT}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any pickled class it does not know ("Unsupported global: GLOBAL a.b.C");
        # any other unpickling failure means the bytes are not a torch file at all.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found and found.group(1).split(".")[0] in ("dnnlib", "torch_utils", "training"):
            raise SpgdError(f"{path} is an EDM-style pickle ({found.group(1)}). {_EDM_HINT}") from None
        if found:
            raise SpgdError(
                f"{path} holds pickled Python objects ({found.group(1)}) that torch.load(weights_only=True) "
                "refuses to load; re-save it as a plain state_dict of tensors"
            ) from None
        raise SpgdError(f"{path} is not a readable PyTorch file (unpickling failed)") from None
    except Exception as e:  # zip/stream errors, truncated files, plain garbage
        raise SpgdError(f"{path} is not a readable PyTorch file ({first_line(e)})") from None


def _extract_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a raw checkpoint: the dict itself or the one under state_dict/model/ema, with a
    prefix shared by every key ("module.", "model.") removed."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "ema"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SpgdError(
            f"{path} does not hold a state_dict of tensors (nor one under 'state_dict', 'model' or 'ema')"
        )
    sd = dict(obj)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def split_buffers(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(network tensors, extra top-level 1-D buffers). ADM parameters all sit inside modules (names with a
    dot), so a dot-free 1-D tensor such as deepinv's `betas`/`alphas_cumprod` is a schedule buffer."""
    net = {k: v for k, v in state_dict.items() if "." in k or v.ndim != 1}
    return net, {k: v for k, v in state_dict.items() if k not in net}


def _meta_model(config: Mapping[str, Any]) -> UNetModel:
    try:
        with torch.device("meta"):
            return UNetModel(**config)
    except TypeError as e:
        raise SpgdError(f"invalid UNet config: {e}") from None


def _shapes(model: nn.Module | Mapping[str, tuple]) -> dict[str, tuple]:
    if isinstance(model, nn.Module):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return dict(model)


_SHAPE_CACHE: dict[str, dict[str, tuple]] = {}


def _preset_shapes(config: Mapping[str, Any]) -> dict[str, tuple]:
    """Parameter names and shapes of a UNet config (built once on the meta device, then cached)."""
    key = repr(sorted(config.items()))
    if key not in _SHAPE_CACHE:
        _SHAPE_CACHE[key] = _shapes(_meta_model(config))
    return _SHAPE_CACHE[key]


def _mismatch(model: nn.Module | Mapping[str, tuple], state_dict: Mapping[str, Tensor]) -> str:
    """'' if state_dict fits model (or its name -> shape map) exactly, else a one-line account of
    missing/unexpected keys and shapes."""
    want = _shapes(model)
    missing = [k for k in want if k not in state_dict]
    unexpected = [k for k in state_dict if k not in want]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {want[k]}"
        for k in want
        if k in state_dict and tuple(state_dict[k].shape) != want[k]
    ]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f", ... ({len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts)


def _resolve_config(arch_or_config: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(arch_or_config, str):
        if arch_or_config not in ARCHITECTURES:
            raise SpgdError(f"unknown architecture '{arch_or_config}'; valid: {', '.join(ARCHITECTURES)}")
        return dict(ARCHITECTURES[arch_or_config])
    return dict(arch_or_config)


def _build(
    config: Mapping[str, Any], state_dict: Mapping[str, Tensor], path: str | os.PathLike, label: str
) -> UNetModel:
    """A UNet of `config` holding `state_dict` (strictly matched), built without a throw-away random init."""
    model = _meta_model(config)
    problem = _mismatch(model, state_dict)
    if problem:
        raise SpgdError(f"{path} does not fit architecture {label}: {problem}")
    sd = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state_dict.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model


def load_unet_checkpoint(path: str | os.PathLike, arch_or_config: str | Mapping[str, Any]) -> UNetModel:
    """Load a guided-diffusion UNet checkpoint into the architecture named (see ARCHITECTURES) or given."""
    config = _resolve_config(arch_or_config)
    label = f"'{arch_or_config}'" if isinstance(arch_or_config, str) else "of the given config"
    obj = _read(path)
    if _is_config_and_weights(obj):  # {"config": UNet keywords, "state_dict": ...} (e.g. the shared fixture net)
        obj = {**obj, "format": FORMAT}
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        obj = obj["state_dict"]
    state_dict, _ = split_buffers(_extract_state_dict(obj, path))
    return _build(config, state_dict, path, label)


def infer_architecture(state_dict: Mapping[str, Any], path: str | os.PathLike = "state_dict") -> str:
    """The preset of ARCHITECTURES whose parameter names and shapes the raw state_dict matches exactly
    (values may be tensors of any device, meta included)."""
    problems = {}
    for name, config in ARCHITECTURES.items():
        problem = _mismatch(_preset_shapes(config), state_dict)
        if not problem:
            return name
        problems[name] = problem
    closest = min(problems, key=lambda n: len(problems[n]))
    raise SpgdError(
        f"{path} matches none of the known architectures ({', '.join(ARCHITECTURES)}); "
        f"against '{closest}': {problems[closest]}. Save it with spgd.priors.save_unet to record its config"
    )


_infer_architecture = infer_architecture  # the old private name


def _set_label(model: UNetModel, class_label: int | None, where: str) -> None:
    """Fix the class label of a class-conditional UNet (default DEFAULT_CLASS_LABEL, with a warning)."""
    if model.num_classes is None:
        if class_label is not None:
            raise SpgdError(f"class_label={class_label} given, but {where} is not class-conditional")
        return
    if class_label is None:
        warnings.warn(
            f"{where} is class-conditional ({model.num_classes} classes) and no class label was given: using "
            f"class {DEFAULT_CLASS_LABEL} (pass class_label= / --class-label with the class of your image)",
            stacklevel=4,
        )
        class_label = DEFAULT_CLASS_LABEL
    model.set_class_label(class_label)


def _linear_abar(M: int = 1000) -> Tensor:
    return torch.cumprod(1 - betas_for("linear", M, 1e-4 * 1000 / M, 0.02 * 1000 / M), 0)


def _schedule_from_buffers(buffers: Mapping[str, Tensor], path: str | os.PathLike) -> DiscreteSchedule | None:
    """A schedule from deepinv-style buffers when it differs from guided-diffusion's linear one, else None."""
    if "alphas_cumprod" in buffers:
        abar = buffers["alphas_cumprod"].double()
    elif "betas" in buffers:
        abar = torch.cumprod(1 - buffers["betas"].double(), 0)
    else:
        return None
    if abar.numel() == 1000 and (abar - _linear_abar()).abs().max() < 1e-5:
        return None  # the linear schedule: the same VP preconditioning as the named checkpoints
    return DiscreteSchedule(abar)


def adm_prior(
    model: UNetModel, name: str | None, class_label: int | None, where: str, schedule: DiscreteSchedule | None = None
) -> Prior:
    """The prior of an ADM UNet: VP preconditioning for the linear schedule, a DiscreteTimePrior for the
    cosine one (SCHEDULES) or a schedule stored with the weights; the class label fixed when conditional."""
    _set_label(model, class_label, where)
    channels = model.in_channels
    source = "schedule buffers stored with the weights"
    if schedule is None and SCHEDULES.get(name or "", "linear") == "cosine":
        schedule = DiscreteSchedule.from_betas(betas_for("cosine", 1000))
        source = "cosine schedule"
    if schedule is not None:
        desc = f"ADM '{name}'" if name else "ADM"
        return DiscreteTimePrior(model, schedule, "epsilon", channels, f"{desc}, {source}")
    return VPPrecond(model, img_channels=channels)


def _load_file(path: str | os.PathLike, class_label: int | None = None) -> Prior:
    obj = _read(path)
    if _is_config_and_weights(obj):  # {"config": UNet keywords, "state_dict": ...} (e.g. the shared fixture net)
        obj = {**obj, "format": FORMAT}
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        if not isinstance(obj.get("config"), Mapping) or not isinstance(obj.get("state_dict"), Mapping):
            raise SpgdError(f"{path} is a damaged spgd-unet file: it lacks 'config' or 'state_dict'")
        model = _build(obj["config"], obj["state_dict"], path, "its recorded config")
        _set_label(model, class_label, str(path))
        precond = obj.get("precond") or {}
        return VPPrecond(model, **{k: precond[k] for k in _PRECOND_KEYS if k in precond})
    state_dict, buffers = split_buffers(_extract_state_dict(obj, path))
    name = infer_architecture(state_dict, path)
    model = _build(ARCHITECTURES[name], state_dict, path, f"'{name}'")
    return adm_prior(model, name, class_label, str(path), _schedule_from_buffers(buffers, path))


def _is_config_and_weights(obj) -> bool:
    """A dict holding a UNet's constructor keywords under "config" and its weights under "state_dict", without
    the spgd-unet format tag (how ../shared/fixtures/reference-spgd stores its network)."""
    if not isinstance(obj, Mapping) or "format" in obj:
        return False
    config, weights = obj.get("config"), obj.get("state_dict")
    if not isinstance(config, Mapping) or not isinstance(weights, Mapping) or not config:
        return False
    return set(config) <= set(inspect.signature(UNetModel.__init__).parameters)


def _bundled_prior() -> Prior:
    """The bundled default prior (`DEFAULT_WEIGHTS`), or the analytic Gaussian prior with a warning while the
    file is absent."""
    if DEFAULT_WEIGHTS.is_file():
        return _load_file(DEFAULT_WEIGHTS)
    warnings.warn(
        f"bundled prior weights not found at {DEFAULT_WEIGHTS}; using the analytic Gaussian prior instead",
        stacklevel=3,  # the caller of load_prior
    )
    return GaussianPrior.default()


def _check_name(name: str, checkpoint: str | os.PathLike | None, class_label: int | None) -> None:
    """SpgdError for an unknown (non-latent) prior name, or a checkpoint / class label it does not take."""
    if name in ARCHITECTURES:
        if checkpoint is None:
            raise SpgdError(f"prior '{name}' needs checkpoint=PATH (the .pt file of its weights)")
    elif checkpoint is not None:
        names = ", ".join(repr(a) for a in ARCHITECTURES)
        raise SpgdError(f"checkpoint= is only used with {names}, not with '{name}'")
    elif class_label is not None and name in ("gaussian", "default"):
        raise SpgdError(f"class_label={class_label} given, but prior '{name}' is not class-conditional")
    elif name not in ("gaussian", "default") and not Path(name).is_dir() and not _looks_like_path(name):
        raise SpgdError(f"unknown prior '{name}'; valid names: {', '.join(NAMES)}, or a checkpoint file path")


def _looks_like_path(name: str) -> bool:
    suffix = Path(name).suffix.lower()
    return (
        os.sep in name or "/" in name or suffix in (".pt", ".pth", ".ckpt", ".bin", ".pkl") or Path(name).exists()
    )


def load_prior(
    name_or_path: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    fast: "bool | None | FastPath | dict" = None,
    class_label: int | None = None,
) -> Prior:
    """A Prior by name, file or folder.

    "default": the bundled prior (`priors/weights/default.pt`; the analytic Gaussian prior, with a warning,
    while it is absent). "gaussian": the analytic Gaussian prior. A name of ARCHITECTURES ("ffhq256",
    "imagenet256", "imagenet64-cond", ...): that guided-diffusion UNet from `checkpoint`. A file path: a
    file written by `save_unet`, or a raw state_dict recognised by its tensor names and shapes (see the
    module docstring). A folder: a diffusers UNet2DModel or pipeline folder (needs `spgd[diffusers]`).
    "sd:DIR" (or a folder with unet/ and vae/): a Stable-Diffusion-style latent diffusion folder, options as
    "sd:DIR?guidance=1,precision=bf16,checkpointing=unet+vae,embedding=FILE" (see `spgd.priors.latent`).
    `device` moves the prior there.

    `class_label` (class-conditional networks only): the class every denoiser call is conditioned on;
    default DEFAULT_CLASS_LABEL (0) with a warning, since these networks have no unconditional mode.

    `fast` (network priors only; see `spgd.priors.execution`): None (default) = the fast path on a CUDA device
    (bf16 autocast for the network call, torch.compile with an eager fallback; sampler state and likelihood
    stay float32) and the plain float32 eager network elsewhere; False = always float32 eager; True = the
    fast path on any device; a `FastPath` or a dict of its fields = exactly those settings.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise SpgdError(
            f"name_or_path must be a prior name ('default', 'gaussian', {', '.join(repr(a) for a in ARCHITECTURES)}), "
            f"a model file or a folder, got {name_or_path!r} ({type(name_or_path).__name__})"
        )
    name = os.fspath(name_or_path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if device is not None:
        device = resolve_device(device)  # an unknown or absent device fails before anything is read
    if name.startswith(LATENT_PREFIX) or is_latent_folder(name):  # a latent diffusion folder (spgd.priors.latent)
        if checkpoint is not None or class_label is not None:
            raise SpgdError(f"checkpoint= and class_label= are not used with a latent diffusion folder ({name})")
        return load_from_name(name, fast, device)
    _check_name(name, checkpoint, class_label)
    if name in ARCHITECTURES:
        model = load_unet_checkpoint(checkpoint, name)
        prior: Prior = adm_prior(model, name, class_label, f"'{name}'")
    elif name == "gaussian":
        prior = GaussianPrior.default()
    elif name == "default":
        prior = _bundled_prior()
    elif (Path(name) / TRAINED_WEIGHTS).is_file():  # the run folder of `spgd train`
        prior = _load_file(Path(name) / TRAINED_WEIGHTS, class_label)
    elif Path(name).is_dir():
        if not is_diffusers_folder(name):
            raise SpgdError(f"{name} is a folder but not a diffusers model folder (no config.json there or in unet/)")
        prior = load_diffusers_prior(name, class_label=class_label)
    else:
        prior = _load_file(name, class_label)
    if device is not None:
        prior = prior.to(device)
    return apply_fast(prior, fast, device)


def save_unet(path: str | os.PathLike, model: UNetModel | VPPrecond, **extra: Any) -> Path:
    """Write a UNet (or a VPPrecond around one) in the spgd-unet format, atomically; extra = metadata."""
    precond: dict[str, Any] = {}
    if isinstance(model, VPPrecond):
        precond = {k: getattr(model, k) for k in _PRECOND_KEYS}
        model = model.net
    if not isinstance(model, UNetModel):
        raise SpgdError(f"save_unet takes a UNetModel or a VPPrecond around one, got {type(model).__name__}")
    reserved = {"format", "config", "state_dict", "precond"} & set(extra)
    if reserved:
        raise SpgdError(f"save_unet metadata may not use the reserved keys {sorted(reserved)}")
    payload = {
        "format": FORMAT,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "precond": precond,
        **extra,
    }
    return atomic_torch_save(path, payload)
