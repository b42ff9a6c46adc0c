"""The ADM UNet of guided-diffusion (Dhariwal & Nichol 2021), as used by the DPS FFHQ-256 checkpoint.

Written for spgd from the published architecture; module and parameter names follow
openai/guided-diffusion `guided_diffusion/unet.py` exactly, so its checkpoints (`ffhq_10m.pt`,
`256x256_diffusion_uncond.pt`, the class-conditional `64x64_diffusion.pt` ... `512x512_diffusion.pt`) load
with strict key matching. Only the 2-D float32 path is kept; the network returns the epsilon prediction (and
the learned variance channels when `learn_sigma`), given a continuous timestep t in [0, 999] and, for
class-conditional networks, a class label (the embedding `label_emb` is added to the timestep embedding).

References:
    Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis", arXiv 2105.05233.
    Chung et al., "Diffusion Posterior Sampling for General Noisy Inverse Problems", arXiv 2209.14687.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SpgdError

# The published checkpoints this library knows by name (guided-diffusion `create_model` keywords, from the
# sampling commands of guided-diffusion's README). Files are matched to them by tensor names and shapes.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # DPS FFHQ-256 (`ffhq_10m.pt`, configs/model_config.yaml of DPS), ~93.6M parameters.
    "ffhq256": dict(
        image_size=256,
        num_channels=128,
        num_res_blocks=1,
        channel_mult="",
        learn_sigma=True,
        class_cond=False,
        use_checkpoint=False,
        attention_resolutions="16",
        num_heads=4,
        num_head_channels=64,
        num_heads_upsample=-1,
        use_scale_shift_norm=True,
        dropout=0.0,
        resblock_updown=True,
        use_fp16=False,
        use_new_attention_order=False,
    ),
    # guided-diffusion ImageNet 256x256 unconditional (`256x256_diffusion_uncond.pt`), ~552M parameters.
    "imagenet256": dict(
        image_size=256,
        num_channels=256,
        num_res_blocks=2,
        channel_mult="",
        learn_sigma=True,
        class_cond=False,
        use_checkpoint=False,
        attention_resolutions="32,16,8",
        num_heads=4,
        num_head_channels=64,
        num_heads_upsample=-1,
        use_scale_shift_norm=True,
        dropout=0.0,
        resblock_updown=True,
        use_fp16=False,
        use_new_attention_order=False,
    ),
    # guided-diffusion ImageNet class-conditional checkpoints (1000 classes, learned sigma). 64x64 uses the
    # cosine noise schedule (see SCHEDULES), the others the linear one.
    "imagenet64-cond": dict(
        image_size=64, num_channels=192, num_res_blocks=3, channel_mult="", learn_sigma=True, class_cond=True,
        attention_resolutions="32,16,8", num_heads=4, num_head_channels=64, use_scale_shift_norm=True,
        resblock_updown=True, use_new_attention_order=True,
    ),
    "imagenet128-cond": dict(
        image_size=128, num_channels=256, num_res_blocks=2, channel_mult="", learn_sigma=True, class_cond=True,
        attention_resolutions="32,16,8", num_heads=4, num_head_channels=-1, use_scale_shift_norm=True,
        resblock_updown=True,
    ),
    "imagenet256-cond": dict(
        image_size=256, num_channels=256, num_res_blocks=2, channel_mult="", learn_sigma=True, class_cond=True,
        attention_resolutions="32,16,8", num_heads=4, num_head_channels=64, use_scale_shift_norm=True,
        resblock_updown=True,
    ),
    "imagenet512-cond": dict(
        image_size=512, num_channels=256, num_res_blocks=2, channel_mult="", learn_sigma=True, class_cond=True,
        attention_resolutions="32,16,8", num_heads=4, num_head_channels=64, use_scale_shift_norm=True,
        resblock_updown=True,
    ),
    # deepinv's 1-channel DiffUNet (`kernel_checkpoint.pt`, the BlindDPS blur-kernel prior, 64x64, gray).
    "kernel64-gray": dict(
        image_size=64, num_channels=64, num_res_blocks=1, channel_mult="1,2,3,4", learn_sigma=True,
        attention_resolutions="16", num_heads=4, num_head_channels=64, use_scale_shift_norm=True,
        resblock_updown=True, in_channels=1,
    ),
}

# Noise schedule each preset was trained with ("linear" unless listed): guided-diffusion `--noise_schedule`.
SCHEDULES: dict[str, str] = {"imagenet64-cond": "cosine"}
NUM_CLASSES = 1000  # guided-diffusion's class-conditional models are ImageNet's 1000 classes

# Channel multipliers per level when `channel_mult=""` (as guided-diffusion's create_model chooses them).
_DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),
}


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): [cos(t * f_i), sin(t * f_i)], f_i = max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters (output convolutions start as the identity of the residual path)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups, computed in float32 whatever the input dtype."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


class TimestepBlock(nn.Module):
    """A block whose forward also takes the timestep embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that passes the timestep embedding to the children that take one."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour x2 up-sampling, optionally followed by a 3x3 convolution (`.conv`)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """x2 down-sampling: a strided 3x3 convolution, or 2x2 average pooling (`.op` either way)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        else:
            if self.out_channels != channels:
                raise ValueError("average-pool down-sampling cannot change the channel count")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding, optionally changing resolution.

    With `use_scale_shift_norm`, the embedding gives (scale, shift) applied as GN(h) * (1 + scale) + shift
    (FiLM / AdaGN); otherwise it is added to h.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,  # 3x3 instead of 1x1 skip convolution when the channel count changes
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(channels),
            nn.SiLU(),
            nn.Conv2d(channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd: nn.Module = Upsample(channels, False)
            self.x_upd: nn.Module = Upsample(channels, False)
        elif down:
            self.h_upd = Downsample(channels, False)
            self.x_upd = Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels),
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            # Resample between the activation and the convolution of in_layers.
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all spatial positions, with 1-D convolutions for qkv and proj_out.

    The fused qkv tensor (B, 3*C, T) is read in one of two orders: legacy (`new_order=False`, the order of
    the released checkpoints) splits it into heads first, each head holding its [q; k; v] rows; the new
    order splits q, k, v first, then each into heads.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, new_order: bool = False):
        super().__init__()
        self.channels = channels
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"{channels} channels do not split into heads of {num_head_channels}")
            self.num_heads = channels // num_head_channels
        if channels % self.num_heads:
            raise ValueError(f"{channels} channels do not split into {self.num_heads} heads")
        self.new_order = new_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def attention(self, qkv: Tensor) -> Tensor:
        """(B, 3*H*ch, T) -> (B, H*ch, T)."""
        b, width, length = qkv.shape
        heads = self.num_heads
        ch = width // (3 * heads)
        if self.new_order:
            q, k, v = (t.reshape(b, heads, ch, length) for t in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b, heads, 3 * ch, length).split(ch, dim=2)
        # softmax(q^T k / sqrt(ch)) v on (B, H, T, ch), the scaling guided-diffusion applies. Contiguous
        # (unit-stride last dim) operands let PyTorch pick its fused kernels instead of the math fallback.
        q, k, v = (t.transpose(-1, -2).contiguous() for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(-1, -2).reshape(b, heads * ch, length)

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)


def _parse_channel_mult(channel_mult: str | tuple | list, image_size: int) -> tuple:
    if channel_mult == "" or channel_mult is None:
        if image_size not in _DEFAULT_CHANNEL_MULT:
            raise SpgdError(
                f"no default channel_mult for image_size {image_size}; "
                f"give channel_mult or use one of {sorted(_DEFAULT_CHANNEL_MULT)}"
            )
        return _DEFAULT_CHANNEL_MULT[image_size]
    if isinstance(channel_mult, str):
        return tuple(float(m) if "." in m else int(m) for m in channel_mult.split(","))
    return tuple(channel_mult)


def _parse_attention_resolutions(attention_resolutions: str | tuple | list, image_size: int) -> tuple[int, ...]:
    """'32,16,8' (feature-map sizes at image_size) -> the down-sampling rates image_size // res."""
    if isinstance(attention_resolutions, str):
        res = [int(r) for r in attention_resolutions.split(",") if r.strip()]
    else:
        res = [int(r) for r in attention_resolutions]
    return tuple(image_size // r for r in res)


class UNetModel(nn.Module):
    """guided-diffusion's UNetModel, built from `create_model`-style keywords.

    forward(x, t): x (B, 3, H, W) with H, W divisible by 2**(levels - 1); t (B,) continuous timesteps
    in [0, 999]. Returns (B, 6, H, W) with `learn_sigma` (epsilon, then variance interpolation), else
    (B, 3, H, W). `image_size` only fixes the default channel_mult and the attention levels; other
    sizes run too.
    """

    def __init__(
        self,
        image_size: int,
        num_channels: int,  # base width; level widths are num_channels * channel_mult
        num_res_blocks: int,  # residual blocks per level (the decoder has one more)
        channel_mult: str | tuple = "",  # "" = guided-diffusion's default for image_size
        learn_sigma: bool = False,  # double the output channels (variance interpolation)
        class_cond: bool = False,  # class-conditional: a label embedding (num_classes x 4*num_channels)
        use_checkpoint: bool = False,  # gradient checkpointing; ignored
        attention_resolutions: str | tuple = "16",  # feature-map sizes (at image_size) with attention
        num_heads: int = 1,
        num_head_channels: int = -1,  # if set, overrides num_heads: heads = channels // num_head_channels
        num_heads_upsample: int = -1,  # decoder heads; -1 = num_heads
        use_scale_shift_norm: bool = False,
        dropout: float = 0.0,
        resblock_updown: bool = False,  # resample with ResBlocks instead of conv/avg-pool layers
        use_fp16: bool = False,  # ignored: we run float32
        use_new_attention_order: bool = False,
        in_channels: int = 3,
        num_classes: int = NUM_CLASSES,  # size of the label embedding when class_cond
    ):
        super().__init__()
        self.config: dict[str, Any] = dict(
            image_size=image_size,
            num_channels=num_channels,
            num_res_blocks=num_res_blocks,
            channel_mult=channel_mult if isinstance(channel_mult, str) else tuple(channel_mult),
            learn_sigma=learn_sigma,
            class_cond=class_cond,
            use_checkpoint=use_checkpoint,
            attention_resolutions=attention_resolutions
            if isinstance(attention_resolutions, str)
            else tuple(attention_resolutions),
            num_heads=num_heads,
            num_head_channels=num_head_channels,
            num_heads_upsample=num_heads_upsample,
            use_scale_shift_norm=use_scale_shift_norm,
            dropout=dropout,
            resblock_updown=resblock_updown,
            use_fp16=use_fp16,
            use_new_attention_order=use_new_attention_order,
            in_channels=in_channels,
        )
        if class_cond:
            self.config["num_classes"] = num_classes
        mult = _parse_channel_mult(channel_mult, image_size)
        attention_ds = _parse_attention_resolutions(attention_resolutions, image_size)
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.model_channels = num_channels
        self.channel_mult = mult
        self.num_downsamples = len(mult) - 1
        self.num_classes: int | None = int(num_classes) if class_cond else None
        # the label used when forward() gets none (set by the loaders: `class_label=`); not saved with weights
        self.class_label: int | None = None

        def res_block(ch: int, out: int, **kw) -> ResBlock:
            return ResBlock(ch, time_embed_dim, dropout, out, use_scale_shift_norm=use_scale_shift_norm, **kw)

        def attn_block(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, num_head_channels, new_order=use_new_attention_order)

        time_embed_dim = num_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(num_channels, time_embed_dim),
            nn.SiLU(),
            nn.Linear(time_embed_dim, time_embed_dim),
        )
        if class_cond:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        # Encoder: per level, num_res_blocks ResBlocks (+ attention), then a down-sampling block.
        ch = input_ch = int(mult[0] * num_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res_block(ch, int(m * num_channels))]
                ch = int(m * num_channels)
                if ds in attention_ds:
                    layers.append(attn_block(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(mult) - 1:
                down = res_block(ch, ch, down=True) if resblock_updown else Downsample(ch, True, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res_block(ch, ch), attn_block(ch, num_heads), res_block(ch, ch))

        # Decoder: per level, num_res_blocks + 1 ResBlocks on [h, skip] (+ attention), then up-sampling.
        self.output_blocks = nn.ModuleList([])
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res_block(ch + skip_chans.pop(), int(num_channels * m))]
                ch = int(num_channels * m)
                if ds in attention_ds:
                    layers.append(attn_block(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res_block(ch, ch, up=True) if resblock_updown else Upsample(ch, True, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(ch),
            nn.SiLU(),
            zero_module(nn.Conv2d(input_ch, self.out_channels, 3, padding=1)),
        )

    def check_input(self, x: Tensor) -> None:
        """Raise SpgdError unless x is (B, in_channels, H, W) with H, W divisible by 2**num_downsamples."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise SpgdError(
                f"this network models {self.in_channels}-channel images (1 = grayscale, 3 = RGB) and takes "
                f"shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        factor = 2**self.num_downsamples
        h, w = x.shape[-2:]
        if h % factor or w % factor:
            raise SpgdError(
                f"image size {w}x{h} (width x height) is not divisible by {factor}, which this network needs "
                f"({self.num_downsamples} down-samplings); resize or pad the image (an evaluation's size and "
                "resize, a restoration's pad)"
            )

    def set_class_label(self, label: int | None) -> None:
        """Fix the class label used when forward() is given none (class-conditional networks only)."""
        if label is None:
            self.class_label = None
            return
        if self.num_classes is None:
            raise SpgdError(f"class label {label} given, but this network is not class-conditional")
        if not 0 <= int(label) < self.num_classes:
            raise SpgdError(f"class label must be an integer in [0, {self.num_classes - 1}], got {label}")
        self.class_label = int(label)

    def forward(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        """epsilon (+ variance channels) at timesteps t; y (B,) class labels (default: `class_label`)."""
        self.check_input(x)
        t = torch.as_tensor(timesteps, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.model_channels))
        if self.num_classes is not None:
            if y is None:
                if self.class_label is None:
                    raise SpgdError("this network is class-conditional: give class labels y or set class_label")
                y = torch.full((x.shape[0],), self.class_label, dtype=torch.long, device=x.device)
            emb = emb + self.label_emb(y.to(device=x.device, dtype=torch.long)).to(emb.dtype)
        elif y is not None:
            raise SpgdError("class labels given, but this network is not class-conditional")
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def count_parameters(config: dict[str, Any]) -> int:
    """Number of parameters of a UNet config, built on the meta device (no memory used)."""
    with torch.device("meta"):
        model = UNetModel(**config)
    return sum(p.numel() for p in model.parameters())
