"""What the parity tests of the released samplers share: the fixture network, the recorded-draw replay, the
relative error, and the RED-diff repository's `deblur_gauss` H-function (used by the PiGDM and RED-diff files)."""

from __future__ import annotations

from pathlib import Path

import torch

import spgd
from spgd.priors import UNetModel, VPPrecond


def rel(a, b) -> float:
    """||a - b|| / ||b||."""
    return ((a - b).norm() / b.norm()).item()


def fixture_network(shared_dir: Path) -> VPPrecond:
    """The shared fixture network (../shared/fixtures/reference-spgd/unet_small_reference.pt) behind VP
    preconditioning, as every release was run with it."""
    u = torch.load(shared_dir / "fixtures" / "reference-spgd" / "unet_small_reference.pt", weights_only=True)
    net = UNetModel(**u["config"])
    net.load_state_dict(u["state_dict"])
    return VPPrecond(net)


class Replay:
    """noise(shape, dtype, device): hands out recorded draws in order and checks their shapes."""

    def __init__(self, draws):
        self.draws = list(draws)
        self.used = 0

    def __call__(self, shape, dtype, device):
        assert self.used < len(self.draws), "the sampler drew more noise than the released code"
        d = self.draws[self.used]
        assert tuple(d.shape) == tuple(shape), (self.used, tuple(d.shape), shape)
        self.used += 1
        return d.to(dtype=dtype, device=device)


class RedDiffDeblur:
    """The RED-diff repository's `deblur_gauss` H-function from the stored factors (its fixture README,
    "Operators"): per channel c, A(x)_c = U (S_eff[c] * (V^T X_c V)) U^T, and A+(y)_c = V (T / S_eff[c]) V^T with
    T = U^T Y_c U, dividing only where S_eff != 0 (elsewhere T is kept, not zeroed: the release's quirk).
    Measurements are (B, 12288) vectors in (c, h, w) order, as the release holds them. `intended=True` uses s_i s_j
    instead of S_eff (a known deviation)."""

    def __init__(self, ref, intended=False):
        self.U, self.V = ref["U_small"], ref["V_small"]
        s = ref["singulars_small"]
        self.S = (s[:, None] * s[None, :]).expand(3, 64, 64) if intended else ref["S_eff"]
        self.noise_sigma = 0.05

    def input_shape(self, y):
        return (y.shape[0], 3, 64, 64)

    def forward(self, x):
        coef = self.S * ((self.V.T @ x) @ self.V)
        return ((self.U @ coef) @ self.U.T).reshape(x.shape[0], -1)

    def pinv(self, y):
        t = (self.U.T @ y.reshape(-1, 3, 64, 64)) @ self.U
        t = torch.where(self.S != 0, t / self.S, t)
        return (self.V @ t) @ self.V.T


def reddiff_fixture_operator(ref):
    """(operator, y) of a RED-diff/PiGDM fixture: the library's random inpainting with the stored mask (y as an
    image), or the release's deblurring H-function (y as stored)."""
    if "mask" in ref:
        return spgd.make_operator("inpainting_random", mask=ref["mask"], noise_sigma=0.05), ref["y"].view(1, 3, 64, 64)
    return RedDiffDeblur(ref), ref["y"]
