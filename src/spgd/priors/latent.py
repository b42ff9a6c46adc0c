"""Latent diffusion priors: Stable-Diffusion-style diffusers folders (`unet/`, `vae/`, `scheduler/`).

The sampler's state is a latent z (B, c, H/f, W/f), f the VAE's down-sampling factor (8 for SD 1.x/2.x); images
are x = decode(z) = VAE.decode(z / s + b) in [-1, 1], with s the VAE's `scaling_factor` (0.18215 for SD 1.x/2.x)
and b its `shift_factor` (0 when absent), and encode(x) = s (mean of VAE.encode(x) - b). The latent denoiser is
the `DiscreteTimePrior` of `spgd.priors.discrete` around the UNet:

    D(z; sigma) = prediction_to_x0(F(z / sqrt(1 + sigma^2), t(sigma)), z, sigma),
    F(z_t, t) = e_u + w (e_c - e_u),   e_u = UNet(z_t, t, c_empty),  e_c = UNet(z_t, t, c_prompt),

with t(sigma) from the scheduler's alphas_cumprod. By default there is no prompt and w = 1, so F is the
unconditional branch e_u alone: one UNet call per denoiser call, and D is the MMSE denoiser of the latent
distribution the model learnt with the empty prompt (SD's training drops the caption 10 % of the time for exactly
this branch). That is the prior p(z) a posterior p(z | y) needs. A scale w != 1 does not give the denoiser of any
distribution (it sharpens towards a prompt, Ho & Salimans, arXiv 2207.12598), so it biases the restoration
towards the prompt rather than the measurement; it is offered (`guidance_scale`, with a prompt embedding) and
costs two UNet calls per denoiser call.

The sampler never sees the decoder: `spgd.operators.latent.LatentOperator(op, codec)` makes the likelihood
||A(decode(D(z; sigma))) - y||^2, and `spgd.api.run_sampler` hands the sampler that operator and the latent shape,
then decodes the final latent. Which published latent form each method is (see `spgd.api.run_sampler`):

- SPGD / spgd-official and its ablations: the loop unchanged, state z, likelihood through D and the decoder;
- DPS: latent DPS, the DPS update with x0_hat = decode(z0_hat) (the "Latent-DPS" baseline of Rout et al.,
  "Solving Linear Inverse Problems Provably via Posterior Sampling with Latent Diffusion Models" (PSLD),
  arXiv 2307.00619, Sec. 3; PSLD's gluing term is not implemented), z0_hat not clipped (latents have no
  [-1, 1] range), queried at the scheduler's integer timesteps;
- DAPS: latent DAPS (Zhang et al., arXiv 2407.01521, the official code's `LatentDAPS` with its `LatentWrapper`
  operator): the ODE and the Langevin chain on z0, with the data term ||A(decode(z0)) - y||^2 / tau^2;
- classical: no prior, run on the image as before.

Text encoder: only the empty-prompt embedding c_empty (1, L, D) is needed; it is read from `embedding=FILE`
(safetensors or a torch tensor file), else `DIR/empty_prompt_embedding.safetensors`, else computed once per
process with `transformers` from `DIR/text_encoder` and `DIR/tokenizer` (when installed) and cached in memory.
An unconditional latent `UNet2DModel` needs none.

Memory: `checkpointing` ("unet", "vae" or both) turns on diffusers' gradient checkpointing of that network
(activations recomputed in the backward pass: less memory, about one more forward), and `precision="bf16"` runs
the UNet and the decoder under bfloat16 autocast (the sampler's state and the likelihood stay float32).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import SpgdError
from .base import Prior, SigmaLike
from .diffusers import (
    WEIGHT_FILES,
    DiffusersFolder,
    build_model,
    import_diffusers,
    read_json,
    read_state_dict,
    scheduler_settings,
)
from .discrete import DiscreteSchedule, DiscreteTimePrior
from .execution import PRECISIONS, autocast

PREFIX = "sd:"
CHECKPOINTING = ("unet", "vae")
UNET_CLASSES = ("UNet2DConditionModel", "UNet2DModel")
VAE_CLASSES = ("AutoencoderKL",)
EMBEDDING_FILE = "empty_prompt_embedding.safetensors"
# name options of "sd:DIR?key=value,key=value" -> load_latent_prior keyword
NAME_OPTIONS = {
    "guidance": "guidance_scale",
    "precision": "precision",
    "checkpointing": "checkpointing",
    "embedding": "embedding",
    "prompt": "prompt_embedding",
}
_EMBEDDING_CACHE: dict[str, Tensor] = {}  # resolved folder -> empty-prompt embedding computed with transformers


class LatentCodec(nn.Module):
    """decode(z) = VAE.decode(z / s + b).sample and encode(x) = s (mean of VAE.encode(x) - b), x in [-1, 1].

    `decoder_calls` counts decode calls (each on a whole batch: per image, as the samplers' Stats count).
    """

    def __init__(self, vae: nn.Module, precision: str = "fp32", scaling_factor: Optional[float] = None,
                 shift_factor: Optional[float] = None):
        super().__init__()
        cfg = vae.config
        self.vae = vae.eval().requires_grad_(False)
        self.scaling_factor = float(scaling_factor if scaling_factor is not None else cfg.get("scaling_factor", 0.18215))
        self.shift_factor = float(shift_factor if shift_factor is not None else (cfg.get("shift_factor") or 0.0))
        self.factor = 2 ** (len(cfg["block_out_channels"]) - 1)
        self.latent_channels = int(cfg["latent_channels"])
        self.image_channels = int(cfg["out_channels"])
        self.precision = precision
        self.decoder_calls = 0

    def train(self, mode: bool = True) -> "LatentCodec":
        super().train(mode)
        self.vae.eval()
        return self

    def decode(self, z: Tensor) -> Tensor:
        """The image (B, C, f h, f w) of latents z (B, c, h, w); differentiable in z."""
        self.decoder_calls += 1
        with autocast(z.device, self.precision):
            x = self.vae.decode((z / self.scaling_factor + self.shift_factor).to(torch.float32)).sample
        return x.to(z.dtype)

    def encode(self, x: Tensor) -> Tensor:
        """The latent (mean of the posterior, scaled) of images x in [-1, 1]."""
        with autocast(x.device, self.precision):
            mean = self.vae.encode(x.to(torch.float32)).latent_dist.mean
        return ((mean.float() - self.shift_factor) * self.scaling_factor).to(x.dtype)

    def latent_shape(self, image_shape: Sequence[int]) -> tuple:
        """(B, c, H/f, W/f) for images (B, C, H, W); H and W must be multiples of f."""
        b, _, h, w = (int(v) for v in image_shape)
        if h % self.factor or w % self.factor:
            raise SpgdError(f"image sides must be multiples of the VAE's factor {self.factor}, got {w}x{h} (width x height)")
        return (b, self.latent_channels, h // self.factor, w // self.factor)

    def enable_checkpointing(self) -> None:
        self.vae.enable_gradient_checkpointing()


class LatentUNet(nn.Module):
    """F(z_t, t) = e_u + w (e_c - e_u) (see the module docstring); e_u alone without a prompt or with w = 1."""

    def __init__(self, unet: nn.Module, empty: Optional[Tensor] = None, prompt: Optional[Tensor] = None,
                 guidance_scale: float = 1.0, precision: str = "fp32"):
        super().__init__()
        self.unet = unet.eval().requires_grad_(False)
        self.register_buffer("empty", empty, persistent=False)
        self.register_buffer("prompt", prompt, persistent=False)
        self.guidance_scale = float(guidance_scale)
        self.precision = precision

    def train(self, mode: bool = True) -> "LatentUNet":
        super().train(mode)
        self.unet.eval()
        return self

    def _call(self, z_t: Tensor, t: Tensor, context: Optional[Tensor]) -> Tensor:
        if context is None:  # an unconditional UNet2DModel
            return self.unet(z_t, t, return_dict=False)[0]
        ctx = context.to(z_t.dtype).expand(z_t.shape[0], *context.shape[1:])
        return self.unet(z_t, t, encoder_hidden_states=ctx, return_dict=False)[0]

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        with autocast(z_t.device, self.precision):
            if self.prompt is None:
                out = self._call(z_t, t, self.empty)
            elif self.guidance_scale == 1.0:
                out = self._call(z_t, t, self.prompt)
            else:
                e_u = self._call(z_t, t, self.empty)
                e_c = self._call(z_t, t, self.prompt)
                out = e_u + self.guidance_scale * (e_c - e_u)
        return out.float()


class LatentPrior(Prior):
    """A prior whose state is a latent z: `denoise(z, sigma)` is the latent denoiser (any Prior on latents),
    `decode`/`encode` the codec's; images have `img_channels` channels and sides divisible by
    2**`num_downsamples` (VAE factor times the UNet's down-samplings).

    Samplers run on it through `spgd.api.run_sampler` (or with a `LatentOperator` and the latent shape by hand).
    """

    is_latent = True

    def __init__(self, latent: Prior, codec: LatentCodec, unet_downsamples: int = 0, description: str = ""):
        super().__init__()
        self.latent = latent
        self.codec = codec
        self.img_channels = codec.image_channels
        self.latent_channels = codec.latent_channels
        self.num_downsamples = int(round(math.log2(codec.factor))) + int(unet_downsamples)
        self.sigma_min = float(getattr(latent, "sigma_min", 0.0))
        self.sigma_max = float(getattr(latent, "sigma_max", math.inf))
        self.description = description

    def denoise(self, z: Tensor, sigma: SigmaLike) -> Tensor:
        """The latent x0 estimate D(z; sigma) (z: (B, c, h, w))."""
        if z.ndim == 4 and z.shape[1] != self.latent_channels:
            raise SpgdError(
                f"a latent prior denoises latents with {self.latent_channels} channels, got shape {tuple(z.shape)}; "
                "run samplers through spgd.api.run_sampler (or spgd.restore), which pass latents"
            )
        return self.latent.denoise(z, sigma)

    def decode(self, z: Tensor) -> Tensor:
        return self.codec.decode(z)

    def encode(self, x: Tensor) -> Tensor:
        return self.codec.encode(x)

    def latent_shape(self, image_shape: Sequence[int]) -> tuple:
        return self.codec.latent_shape(image_shape)

    # DPS queries discrete-time networks at their integer training timesteps (see spgd.samplers.dps)
    def ddpm_betas(self) -> Optional[Tensor]:
        """beta_t = 1 - abar_t / abar_{t-1} of the scheduler (float64), None for a non-discrete latent prior."""
        if not isinstance(self.latent, DiscreteTimePrior):
            return None
        abar = self.latent.schedule.alphas_cumprod
        return 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])

    def ddpm_eps(self, z_t: Tensor, timestep: int) -> tuple[Tensor, None]:
        """(epsilon, None) at the VP state z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps and integer t: the
        network's epsilon, or epsilon from its v / sample prediction (no learned variance)."""
        lat = self.latent
        if not isinstance(lat, DiscreteTimePrior):
            raise SpgdError("ddpm_eps needs a discrete-time latent prior")
        t = torch.full((z_t.shape[0],), float(timestep), dtype=torch.float32, device=z_t.device)
        out = lat.net(z_t.to(torch.float32), t)[:, : lat.img_channels].to(z_t.dtype)
        abar = float(lat.schedule.alphas_cumprod[int(timestep)])
        if lat.prediction == "epsilon":
            return out, None
        if lat.prediction == "v_prediction":  # v = sqrt(abar) eps - sqrt(1 - abar) z0
            return abar**0.5 * out + (1 - abar) ** 0.5 * z_t, None
        return (z_t - abar**0.5 * out) / (1 - abar) ** 0.5, None

    def step_peak_bytes(self, batch: int, image_shape: Sequence[int], dev: torch.device, sigma: float) -> int:
        """Extra peak CUDA bytes of one likelihood step on images (C, H, W): forward + VJP through the UNet and
        the decoder (what `spgd.priors.execution.auto_batch_size` extrapolates from)."""
        z = torch.randn(self.latent_shape((batch, *image_shape)), device=dev)
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        calls = self.codec.decoder_calls
        with torch.enable_grad():
            z.requires_grad_(True)
            x = self.decode(self.denoise(z, sigma))
            torch.autograd.grad(x.square().sum(), z)
        del x
        self.codec.decoder_calls = calls
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev) - base
        torch.cuda.empty_cache()
        return int(peak)

    def extra_repr(self) -> str:
        return self.description


# ---------------------------------------------------------------------------------------------- loading


def is_latent_folder(path: str | os.PathLike) -> bool:
    """True for a folder with `unet/config.json` and `vae/config.json` (a latent diffusion pipeline)."""
    p = Path(path)
    return p.is_dir() and (p / "unet" / "config.json").is_file() and (p / "vae" / "config.json").is_file()


def parse_name(name: str) -> tuple[str, dict[str, Any]]:
    """'sd:DIR' or 'sd:DIR?key=value,key=value' -> (DIR, load_latent_prior keywords). Keys: guidance (float),
    precision (fp32|bf16), checkpointing (none|unet|vae|all|unet+vae), embedding (file of the empty-prompt
    embedding), prompt (file of a prompt embedding for guidance)."""
    body = name[len(PREFIX):] if name.startswith(PREFIX) else name
    path, _, query = body.partition("?")
    if not path:
        raise SpgdError(f"prior {name!r}: give the folder after '{PREFIX}', e.g. {PREFIX}path/to/stable-diffusion")
    kwargs: dict[str, Any] = {}
    for part in filter(None, query.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key not in NAME_OPTIONS:
            raise SpgdError(f"prior {name!r}: unknown option {part!r}; valid: {', '.join(k + '=' for k in NAME_OPTIONS)}")
        if key == "guidance":
            try:
                kwargs["guidance_scale"] = float(value)
            except ValueError:
                raise SpgdError(f"prior {name!r}: guidance must be a number, got {value!r}") from None
        elif key == "checkpointing":
            kwargs["checkpointing"] = {"none": (), "all": CHECKPOINTING}.get(value, tuple(value.split("+")))
        else:
            kwargs[NAME_OPTIONS[key]] = value
    return path, kwargs


def _build(directory: Path, allowed: Sequence[str]) -> nn.Module:
    """The diffusers model of `directory` (config.json + weights), one of `allowed`, weights loaded strictly."""
    diffusers = import_diffusers()
    config = read_json(directory / "config.json")
    name = str(config.get("_class_name", allowed[0]))
    if name not in allowed:
        raise SpgdError(f"{directory} holds a {name}; supported here: {', '.join(allowed)}")
    weights = next((directory / f for f in WEIGHT_FILES if (directory / f).is_file()), None)
    if weights is None:
        raise SpgdError(f"{directory} holds no weights: expected one of {', '.join(WEIGHT_FILES)}")
    return build_model(getattr(diffusers, name), config, directory, weights)


def read_embedding(path: str | os.PathLike, what: str = "embedding") -> Tensor:
    """A text embedding (1, L, D) from a safetensors file (its one tensor, or the one named 'embedding') or a
    torch file holding a tensor (torch.load weights_only=True)."""
    p = Path(path)
    if not p.is_file():
        raise SpgdError(f"{what} file not found: {p}")
    if p.suffix == ".safetensors":
        tensors = read_state_dict(p)
        if "embedding" in tensors:
            t = tensors["embedding"]
        elif len(tensors) == 1:
            t = next(iter(tensors.values()))
        else:
            raise SpgdError(f"{p} holds {len(tensors)} tensors and none is named 'embedding'")
    else:
        try:
            t = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise SpgdError(f"{p} is not a readable torch file of a tensor ({type(e).__name__})") from None
        if not torch.is_tensor(t):
            raise SpgdError(f"{p} must hold one tensor (1, L, D), got {type(t).__name__}")
    t = t.float()
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] != 1:
        raise SpgdError(f"{p}: a {what} must have shape (1, L, D) or (L, D), got {tuple(t.shape)}")
    return t


def compute_empty_embedding(root: Path) -> Tensor:
    """c_empty = text_encoder(tokenizer("", padded)).last_hidden_state with `transformers` (once per process)."""
    key = str(root.resolve())
    if key in _EMBEDDING_CACHE:
        return _EMBEDDING_CACHE[key]
    try:
        import transformers  # optional dependency, needed only for a text-conditioned UNet without an embedding
    except ImportError:
        raise SpgdError(
            f"{root}'s UNet is text-conditioned and needs the empty-prompt embedding: put it in {root / EMBEDDING_FILE} "
            "(safetensors, one tensor (1, L, D)), pass embedding=FILE (sd:DIR?embedding=FILE), or install "
            "transformers to compute it from text_encoder/ and tokenizer/"
        ) from None
    for sub in ("text_encoder", "tokenizer"):
        if not (root / sub).is_dir():
            raise SpgdError(f"{root} has no {sub}/ to compute the empty-prompt embedding; pass embedding=FILE")
    tok = transformers.AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    enc = transformers.CLIPTextModel.from_pretrained(root / "text_encoder", local_files_only=True).eval()
    ids = tok([""], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        emb = enc(ids.input_ids)[0].float()
    _EMBEDDING_CACHE[key] = emb
    return emb


def load_latent_prior(
    path: str | os.PathLike,
    guidance_scale: float = 1.0,  # w of F = e_u + w (e_c - e_u); 1 = one branch (see the module docstring)
    precision: Optional[str] = None,  # "fp32" or "bf16" (autocast of UNet and decoder); None: bf16 on CUDA
    checkpointing: Sequence[str] = (),  # gradient checkpointing of "unet" and/or "vae"
    embedding: Optional[str | os.PathLike] = None,  # file of the empty-prompt embedding
    prompt_embedding: Optional[str | os.PathLike] = None,  # file of a prompt embedding (for guidance)
    device: Optional[str | torch.device] = None,
) -> LatentPrior:
    """A latent diffusion pipeline folder (unet/ + vae/ + scheduler/) as a LatentPrior."""
    root = Path(path)
    if not is_latent_folder(root):
        raise SpgdError(f"{root} is not a latent diffusion folder: it needs unet/config.json and vae/config.json")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    precision = precision or ("bf16" if dev.type == "cuda" else "fp32")
    _check_options(precision, checkpointing, guidance_scale, prompt_embedding)
    unet, vae = _build_networks(root)
    cfg = unet.config
    empty, prompt, source = _embeddings(root, unet, embedding, prompt_embedding)
    if "unet" in checkpointing:
        unet.enable_gradient_checkpointing()
    codec = LatentCodec(vae, precision)
    if "vae" in checkpointing:
        codec.enable_checkpointing()
    folder = DiffusersFolder(root, root / "unet", root / "unet", _scheduler_config(root))
    abar, prediction, sched_source = scheduler_settings(folder)
    net = LatentUNet(unet, empty, prompt, guidance_scale, precision)
    c = codec.latent_channels
    latent = DiscreteTimePrior(net, DiscreteSchedule(abar), prediction, c, f"latent UNet, schedule: {sched_source}")
    desc = (
        f"latent {type(unet).__name__} + AutoencoderKL from {root.name}: factor {codec.factor}, {c} latent channels, "
        f"scaling {codec.scaling_factor:g}, {prediction}, {source}, guidance {guidance_scale:g}, {precision}"
        + (f", checkpointing {'+'.join(checkpointing)}" if checkpointing else "")
    )
    prior = LatentPrior(latent, codec, len(cfg["block_out_channels"]) - 1, desc)
    return prior.to(dev)


def _check_options(
    precision: str, checkpointing: Sequence[str], guidance_scale: float, prompt_embedding: Optional[str | os.PathLike]
) -> None:
    """SpgdError for an unknown precision or checkpointing name, or a guidance scale that cannot apply."""
    if precision not in PRECISIONS:
        raise SpgdError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    bad = [c for c in checkpointing if c not in CHECKPOINTING]
    if bad:
        raise SpgdError(f"checkpointing takes {', '.join(CHECKPOINTING)} (or none / all), got {', '.join(bad)}")
    if not (math.isfinite(guidance_scale) and guidance_scale >= 0):
        raise SpgdError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}")
    if guidance_scale != 1.0 and prompt_embedding is None:
        raise SpgdError(
            f"guidance_scale={guidance_scale} needs a prompt embedding (prompt=FILE): with the empty prompt only, "
            "both branches are the same and the scale would do nothing"
        )


def _build_networks(root: Path) -> tuple[nn.Module, nn.Module]:
    """(UNet, VAE) of a latent folder; SpgdError for extra conditioning or latent channels that do not match."""
    unet = _build(root / "unet", UNET_CLASSES)
    cfg = unet.config
    if cfg.get("addition_embed_type") or cfg.get("class_embed_type") or cfg.get("num_class_embeds"):
        raise SpgdError(
            f"{root / 'unet'} needs extra conditioning (addition_embed_type={cfg.get('addition_embed_type')!r}, "
            f"class_embed_type={cfg.get('class_embed_type')!r}: SDXL-class or class-conditional); supported: "
            "Stable Diffusion 1.x/2.x-style UNet2DConditionModel and unconditional latent UNet2DModel"
        )
    vae = _build(root / "vae", VAE_CLASSES)
    if int(cfg["in_channels"]) != int(vae.config["latent_channels"]):
        raise SpgdError(
            f"{root}: the UNet takes {cfg['in_channels']} channels but the VAE's latents have "
            f"{vae.config['latent_channels']}"
        )
    return unet, vae


def _embeddings(
    root: Path, unet: nn.Module, embedding: Optional[str | os.PathLike], prompt_embedding: Optional[str | os.PathLike]
) -> tuple[Optional[Tensor], Optional[Tensor], str]:
    """(c_empty, c_prompt, where c_empty came from) for `unet`: both None for an unconditional UNet2DModel; c_empty
    from `embedding`, else DIR/EMBEDDING_FILE, else computed with the text encoder; widths checked."""
    if type(unet).__name__ != "UNet2DConditionModel":
        if prompt_embedding is not None or embedding is not None:
            raise SpgdError(f"{root / 'unet'} is an unconditional UNet2DModel: it takes no embedding")
        return None, None, "unconditional UNet2DModel"
    if embedding is not None:
        empty, source = read_embedding(embedding, "empty-prompt embedding"), f"empty-prompt embedding from {embedding}"
    elif (root / EMBEDDING_FILE).is_file():
        empty, source = read_embedding(root / EMBEDDING_FILE), f"empty-prompt embedding from {EMBEDDING_FILE}"
    else:
        empty, source = compute_empty_embedding(root), "empty-prompt embedding computed with the text encoder"
    prompt = read_embedding(prompt_embedding, "prompt embedding") if prompt_embedding is not None else None
    cfg = unet.config
    width = int(cfg["cross_attention_dim"]) if not isinstance(cfg["cross_attention_dim"], (list, tuple)) else None
    for name, e in (("empty-prompt", empty), ("prompt", prompt)):
        if e is not None and width is not None and e.shape[-1] != width:
            raise SpgdError(f"the {name} embedding has width {e.shape[-1]}, the UNet's cross-attention takes {width}")
    return empty, prompt, source


def _scheduler_config(root: Path) -> Optional[Path]:
    p = root / "scheduler" / "scheduler_config.json"
    return p if p.is_file() else None


def load_from_name(name: str, fast: Any = None, device: Optional[str | torch.device] = None) -> LatentPrior:
    """`load_prior`'s hook: 'sd:DIR[?options]' (or a latent folder); `fast` False = fp32, True = bf16, None =
    bf16 on CUDA only, unless precision= is given in the name."""
    path, kwargs = parse_name(name)
    if "precision" not in kwargs and isinstance(fast, bool):
        kwargs["precision"] = "bf16" if fast else "fp32"
    return load_latent_prior(path, device=device, **kwargs)
