"""Non-linear blur: the kernel-encoder blur of BKSE used by DPS, DAPS and SPGD.

y = clip(2 G(x01, z) - 1, -1, 1) with x01 = (x + 1) / 2, where G is the ``adaptKernel`` path of BKSE's
KernelWizard network (Tran et al., "Explore Image Deblurring via Encoded Blur Kernel Space", CVPR 2021),
trained on GOPRO with the VAE option (``GOPRO_wVAE.yml``), and z a fixed random kernel code of shape
(512, H/128, W/128) (2x2 for 256x256 images) with std 1.2, drawn per image from seed ``seed + i``.
(DPS's operator draws a new code at every call; here the code is fixed, so A is a function.)

The network below is written to reproduce the module tree of the published checkpoint, so
``GOPRO_wVAE.pth`` loads with ``strict=True``: feature extractor (3 convs + 10 residual blocks), kernel
extractor (unused by the blur, present in the file), kernel adapter (a 5-level U-Net with the code
concatenated at its 2x2 bottleneck, transposed-conv up-sampling) and reconstruction trunk (20 residual
blocks + two pixel-shuffle x2 stages). The option file's norm "none" makes every norm an Identity and
the convs before it bias-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SpgdError
from .base import Operator, SeededPartsMixin, check_image

WEIGHTS_FILE = "GOPRO_wVAE.pth"
_WHERE = (
    "it is published with BKSE (github.com/VinAIResearch/blur-kernel-space-exploring, pretrained models) "
    "and in the DPS repository's download list (github.com/DPS2022/diffusion-posterior-sampling)"
)


class ResidualBlockNoBN(nn.Module):
    """x + conv2(relu(conv1(x))), 3x3 convs with bias."""

    def __init__(self, nf: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ResnetBlock(nn.Module):
    """x + [reflect-pad, conv3x3, norm, ReLU, reflect-pad, conv3x3, norm](x); norm "none" = Identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.Identity(),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.Identity(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class KernelExtractor(nn.Module):
    """BKSE's F (sharp, blurred features -> kernel code mean and log-variance). Kept for weight loading."""

    def __init__(self, nf: int = 64, kernel_dim: int = 512, n_blocks: int = 4):
        super().__init__()
        out = 2 * kernel_dim  # VAE: mean and log-variance
        layers: list = [nn.ReflectionPad2d(3), nn.Conv2d(2 * nf, nf, 7, bias=False), nn.Identity(), nn.ReLU()]
        for i in range(5):
            mult = 2**i
            layers += [
                nn.Conv2d(min(nf * mult, out), min(nf * mult * 2, out), 3, stride=2, padding=1, bias=False),
                nn.Identity(),
                nn.ReLU(),
            ]
        layers += [ResnetBlock(out) for _ in range(n_blocks)]
        self.model = nn.Sequential(*layers)
        self.kernel_dim = kernel_dim

    def forward(self, sharp: Tensor, blurred: Tensor) -> tuple:
        out = self.model(torch.cat((sharp, blurred), dim=1))
        return out[:, : self.kernel_dim], out[:, self.kernel_dim :]


class UnetBlock(nn.Module):
    """One level of the kernel adapter's U-Net; the kernel code enters at the innermost level."""

    def __init__(self, outer: int, inner: int, input_nc: Optional[int] = None, submodule: Optional["UnetBlock"] = None,
                 outermost: bool = False, innermost: bool = False):
        super().__init__()
        self.outermost, self.innermost = outermost, innermost
        input_nc = outer if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner, 4, stride=2, padding=1, bias=False)
        if outermost:
            self.down = nn.Sequential(downconv)
            self.submodule = submodule
            self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1), nn.Tanh())
        elif innermost:
            self.down = nn.Sequential(nn.LeakyReLU(0.2), downconv)
            self.up = nn.Sequential(
                nn.ReLU(), nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1, bias=False), nn.Identity()
            )
        else:
            self.down = nn.Sequential(nn.LeakyReLU(0.2), downconv, nn.Identity())
            self.submodule = submodule
            self.up = nn.Sequential(
                nn.ReLU(), nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1, bias=False), nn.Identity()
            )

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        if self.outermost:
            return self.up(self.submodule(self.down(x), code))
        # The original applies this LeakyReLU in place, so the skip connection carries it too.
        x = self.down[0](x)
        inner = self.down[1:](x)
        if self.innermost:
            return torch.cat((self.up(torch.cat((inner, code), dim=1)), x), dim=1)
        return torch.cat((self.up(self.submodule(inner, code)), x), dim=1)


class KernelAdapter(nn.Module):
    """BKSE's G: a U-Net over image features with the kernel code at the bottleneck (H/128 x W/128 of the image)."""

    def __init__(self, nf: int = 64):
        super().__init__()
        block = UnetBlock(nf * 8, nf * 8, innermost=True)
        block = UnetBlock(nf * 4, nf * 8, submodule=block)
        block = UnetBlock(nf * 2, nf * 4, submodule=block)
        block = UnetBlock(nf, nf * 2, submodule=block)
        self.model = UnetBlock(nf, nf, input_nc=nf, submodule=block, outermost=True)

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        return self.model(x, code)


class KernelWizard(nn.Module):
    """BKSE's KernelWizard with the GOPRO_wVAE settings (nf 64, 10 front / 20 back residual blocks, code 512)."""

    def __init__(self, input_nc: int = 3, nf: int = 64, front_blocks: int = 10, back_blocks: int = 20):
        super().__init__()
        kernel_dim = 8 * nf  # the code is concatenated with the 8 nf bottleneck features of the adapter
        self.kernel_dim = kernel_dim
        lrelu = nn.LeakyReLU(0.1)
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(input_nc, nf, 3, 1, 1), lrelu,
            nn.Conv2d(nf, nf, 3, 2, 1), lrelu,
            nn.Conv2d(nf, nf, 3, 2, 1), lrelu,
            *[ResidualBlockNoBN(nf) for _ in range(front_blocks)],
        )  # fmt: skip
        self.kernel_extractor = KernelExtractor(nf, kernel_dim)
        self.adapter = KernelAdapter(nf)
        self.recon_trunk = nn.Sequential(
            *[ResidualBlockNoBN(nf) for _ in range(back_blocks)],
            nn.Conv2d(nf, nf * 4, 3, 1, 1), nn.PixelShuffle(2), lrelu,
            nn.Conv2d(nf, 64 * 4, 3, 1, 1), nn.PixelShuffle(2), lrelu,
            nn.Conv2d(64, 64, 3, 1, 1), lrelu,
            nn.Conv2d(64, input_nc, 3, 1, 1),
        )  # fmt: skip

    def adapt_kernel(self, x01: Tensor, code: Tensor) -> Tensor:
        """Blur the sharp image x01 in [0, 1] with the blur encoded by `code` (B, 512, H/128, W/128)."""
        out = self.recon_trunk(self.adapter(self.feature_extractor(x01), code))
        return out + x01

    adaptKernel = adapt_kernel  # the original method name

    def forward(self, sharp: Tensor, blurred: Tensor) -> tuple:
        """Kernel code (mean, log-variance) of the blur between a sharp and a blurred image."""
        return self.kernel_extractor(self.feature_extractor(sharp), self.feature_extractor(blurred))


def load_kernel_wizard(path: Union[str, Path], **architecture: int) -> KernelWizard:
    """KernelWizard with the weights of `path` (GOPRO_wVAE.pth), loaded with weights_only=True, strict.

    `architecture` (nf, front_blocks, back_blocks) is for other sizes than GOPRO_wVAE's, e.g. in tests.
    """
    path = Path(path)
    if not path.is_file():
        raise SpgdError(f"nonlinear blur weights not found at {path}; it needs {WEIGHTS_FILE}: {_WHERE}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a file torch cannot read safely is a bad user file
        raise SpgdError(f"cannot load {path} as a weights file ({WEIGHTS_FILE} expected): {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SpgdError(f"{path} does not hold a state dict ({WEIGHTS_FILE} expected)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    with torch.device("meta"):  # no memory and no random init for weights that are replaced anyway
        net = KernelWizard(**architecture)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise SpgdError(
            f"{path} is not a BKSE KernelWizard ({WEIGHTS_FILE}) checkpoint: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    wrong = [k for k, v in expected.items() if not isinstance(state[k], Tensor) or state[k].shape != v.shape]
    if wrong:
        raise SpgdError(f"{path}: weights do not fit the GOPRO_wVAE KernelWizard, wrong shapes for {wrong[:3]}")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return net


class NonlinearBlur(SeededPartsMixin, Operator):
    """The benchmark's non-linear blur: BKSE KernelWizard (GOPRO_wVAE.pth) with a fixed random kernel code.

    Give the weights file with ``weights=`` (or a ready ``network=``, e.g. with random weights for tests).
    Images must be RGB with height and width multiples of 128.
    """

    _part_name = "kernel_code"

    def __init__(
        self,
        weights: Optional[Union[str, Path]] = None,  # path to GOPRO_wVAE.pth
        seed: int = 0,  # image i of a batch uses seed + i
        code_std: float = 1.2,  # std of the random kernel code (as DPS)
        kernel_code: Optional[Tensor] = None,  # a fixed code (512, h, w) or (B, 512, h, w) instead
        network: Optional[KernelWizard] = None,  # a KernelWizard to use instead of loading `weights`
        noise_sigma: float = 0.05,
    ):
        super().__init__(noise_sigma)
        if network is None:
            if weights is None:
                raise SpgdError(
                    f"nonlinear_blur needs the BKSE network weights {WEIGHTS_FILE}: pass weights=PATH; {_WHERE}"
                )
            network = load_kernel_wizard(weights)
        elif not isinstance(network, KernelWizard):
            raise SpgdError(f"network must be a KernelWizard, got {type(network).__name__}")
        network.eval().requires_grad_(False)
        self.network = network
        if not (isinstance(code_std, (int, float)) and code_std > 0):
            raise SpgdError(f"code_std must be a number > 0, got {code_std!r}")
        self.code_std = float(code_std)
        explicit = None
        if kernel_code is not None:
            explicit = torch.as_tensor(kernel_code).detach().to(torch.float32)
            if explicit.ndim == 3:
                explicit = explicit[None]
            if explicit.ndim != 4 or explicit.shape[1] != network.kernel_dim:
                raise SpgdError(
                    f"kernel_code must be ({network.kernel_dim}, h, w) or (B, {network.kernel_dim}, h, w), "
                    f"got shape {tuple(explicit.shape)}"
                )
        self._init_parts(seed, explicit)

    def _draw_part(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        shape = (self.network.kernel_dim, height // 128, width // 128)
        return self.code_std * torch.randn(shape, generator=generator)

    def _part_fits(self, part: Tensor, height: int, width: int) -> bool:
        return tuple(part.shape[-2:]) == (height // 128, width // 128)

    def forward(self, x: Tensor) -> Tensor:
        check_image(x, "NonlinearBlur", 3, 128, 128)
        h, w = x.shape[2:]
        if h % 128 or w % 128:
            raise SpgdError(f"NonlinearBlur needs height and width multiples of 128 (e.g. 256x256), got {h}x{w}")
        code = self._parts(x.shape[0], h, w, x.device)
        if tuple(code.shape[-2:]) != (h // 128, w // 128):
            raise SpgdError(
                f"NonlinearBlur: kernel code of spatial size {tuple(code.shape[-2:])} does not fit {h}x{w} images "
                f"(needs {(h // 128, w // 128)})"
            )
        code = code.to(x.dtype).expand(x.shape[0], *code.shape[1:])
        param = next(self.network.parameters())
        if param.device != x.device or param.dtype != x.dtype:
            self.network.to(device=x.device, dtype=x.dtype)
        blurred = self.network.adapt_kernel((x + 1.0) / 2.0, code)
        return (2.0 * blurred - 1.0).clamp(-1.0, 1.0)

    def random_parts(self) -> Dict[str, Tensor]:
        return super().random_parts()
