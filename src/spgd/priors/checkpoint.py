"""Loading priors by name or file: guided-diffusion/DPS UNet checkpoints, our own UNet files, the default.

Files are read with `torch.load(weights_only=True)` only. Two file kinds are understood:

- a raw guided-diffusion state_dict (`ffhq_10m.pt`, `256x256_diffusion_uncond.pt`), possibly held under
  "state_dict"/"model"/"ema" and possibly with a "module." prefix;
- our format, written by `save_unet`: {"format": "spgd-unet", "config": {UNet keywords},
  "state_dict": {...}, "precond": {VP keywords}, ...metadata}.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import SpgdError
from .base import Prior
from .precond import VPPrecond

if TYPE_CHECKING:
    from .fast import FastPath
from .unet import ARCHITECTURES, UNetModel

FORMAT = "spgd-unet"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.pt"
NAMES = ("default", "gaussian", *ARCHITECTURES)
_PRECOND_KEYS = ("img_channels", "beta_d", "beta_min", "M", "epsilon_t", "scaling", "sigma_data")


def _read(path: str | os.PathLike) -> Any:
    """torch.load a file on the CPU with weights_only=True, turning every failure into one SpgdError line."""
    path = Path(path)
    if not path.is_file():
        raise SpgdError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any pickled class it does not know ("Unsupported global: GLOBAL a.b.C");
        # any other unpickling failure means the bytes are not a torch file at all.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found:
            raise SpgdError(
                f"{path} holds pickled Python objects ({found.group(1)}) that torch.load(weights_only=True) "
                "refuses to load; re-save it as a plain state_dict of tensors"
            ) from None
        raise SpgdError(f"{path} is not a readable PyTorch file (unpickling failed)") from None
    except Exception as e:  # zip/stream errors, truncated files, plain garbage
        raise SpgdError(f"{path} is not a readable PyTorch file ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _extract_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a raw checkpoint: the dict itself or the one under state_dict/model/ema, unprefixed."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "ema"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SpgdError(
            f"{path} does not hold a state_dict of tensors (nor one under 'state_dict', 'model' or 'ema')"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def _meta_model(config: Mapping[str, Any]) -> UNetModel:
    try:
        with torch.device("meta"):
            return UNetModel(**config)
    except TypeError as e:
        raise SpgdError(f"invalid UNet config: {e}") from None


def _mismatch(model: nn.Module, state_dict: Mapping[str, Tensor]) -> str:
    """'' if state_dict fits model exactly, else a one-line account of missing/unexpected keys and shapes."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
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
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        obj = obj["state_dict"]
    return _build(config, _extract_state_dict(obj, path), path, label)


def _infer_architecture(state_dict: Mapping[str, Tensor], path: str | os.PathLike) -> str:
    """The preset whose keys and shapes the raw state_dict matches exactly."""
    problems = {}
    for name, config in ARCHITECTURES.items():
        problem = _mismatch(_meta_model(config), state_dict)
        if not problem:
            return name
        problems[name] = problem
    closest = min(problems, key=lambda n: len(problems[n]))
    raise SpgdError(
        f"{path} matches none of the known architectures ({', '.join(ARCHITECTURES)}); "
        f"against '{closest}': {problems[closest]}. Save it with spgd.priors.save_unet to record its config"
    )


def _load_file(path: str | os.PathLike) -> Prior:
    obj = _read(path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        if not isinstance(obj.get("config"), Mapping) or not isinstance(obj.get("state_dict"), Mapping):
            raise SpgdError(f"{path} is a damaged spgd-unet file: it lacks 'config' or 'state_dict'")
        model = _build(obj["config"], obj["state_dict"], path, "its recorded config")
        precond = obj.get("precond") or {}
        return VPPrecond(model, **{k: precond[k] for k in _PRECOND_KEYS if k in precond})
    state_dict = _extract_state_dict(obj, path)
    name = _infer_architecture(state_dict, path)
    return VPPrecond(_build(ARCHITECTURES[name], state_dict, path, f"'{name}'"))


def _gaussian_prior() -> Prior:
    from .gaussian import GaussianPrior

    return GaussianPrior.default()


def _looks_like_path(name: str) -> bool:
    suffix = Path(name).suffix.lower()
    return os.sep in name or "/" in name or suffix in (".pt", ".pth", ".ckpt", ".bin") or Path(name).exists()


def load_prior(
    name_or_path: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    fast: "bool | None | FastPath | dict" = None,
) -> Prior:
    """A Prior by name or file.

    "default": the bundled prior (`priors/weights/default.pt`; the analytic Gaussian prior, with a warning,
    while it is absent). "gaussian": the analytic Gaussian prior. "ffhq256"/"imagenet256": the DPS FFHQ /
    guided-diffusion ImageNet UNet from `checkpoint`. A file path: a file written by `save_unet`, or a raw
    state_dict of one of those two architectures. `device` moves the prior there.

    `fast` (network priors only; see `spgd.priors.fast`): None (default) = the fast path on a CUDA device
    (bf16 autocast for the network call, torch.compile with an eager fallback; sampler state and likelihood
    stay float32) and the plain float32 eager network elsewhere; False = always float32 eager; True = the
    fast path on any device; a `FastPath` or a dict of its fields = exactly those settings.
    """
    name = os.fspath(name_or_path)
    if name in ARCHITECTURES:
        if checkpoint is None:
            raise SpgdError(f"prior '{name}' needs checkpoint=PATH (the .pt file of its weights)")
        prior: Prior = VPPrecond(load_unet_checkpoint(checkpoint, name))
    elif checkpoint is not None:
        names = ", ".join(repr(a) for a in ARCHITECTURES)
        raise SpgdError(f"checkpoint= is only used with {names}, not with '{name}'")
    elif name == "gaussian":
        prior = _gaussian_prior()
    elif name == "default":
        if DEFAULT_WEIGHTS.is_file():
            prior = _load_file(DEFAULT_WEIGHTS)
        else:
            warnings.warn(
                f"bundled prior weights not found at {DEFAULT_WEIGHTS}; using the analytic Gaussian prior instead",
                stacklevel=2,
            )
            prior = _gaussian_prior()
    elif _looks_like_path(name):
        prior = _load_file(name)
    else:
        raise SpgdError(f"unknown prior '{name}'; valid names: {', '.join(NAMES)}, or a checkpoint file path")
    if device is not None:
        prior = prior.to(device)
    from .fast import apply_fast

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
    from ..io import atomic_write

    return atomic_write(path, lambda f: torch.save(payload, f))
