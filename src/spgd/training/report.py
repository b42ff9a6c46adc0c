"""The held-out report of a trained prior: how well it denoises crops it never saw, at fixed noise levels, beside
the noisy input and the analytic Gaussian prior (PSNR in dB)."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..metrics import psnr
from ..io import to_unit
from ..priors import GaussianPrior
from .data import random_crops

__all__ = ["EVAL_CROPS", "REPORT_SIGMAS", "denoising_report", "format_report", "held_out_report"]

REPORT_SIGMAS = (0.05, 0.1, 0.2, 0.5, 1.0)  # noise levels of the held-out report, in [-1, 1] units
EVAL_CROPS = 32  # held-out crops in the final report


def _denoising_psnr(x: Tensor, ref: Tensor) -> Tensor:
    """spgd.metrics.psnr of [-1, 1] images, both clamped to [-1, 1] (8-bit-representable values)."""
    return psnr(to_unit(x.clamp(-1, 1)), to_unit(ref.clamp(-1, 1)))


@torch.no_grad()
def denoising_report(
    priors: Mapping[str, Callable[[Tensor, float], Tensor]],
    crops: Tensor,
    sigmas: Sequence[float] = REPORT_SIGMAS,
    seed: int = 0,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> dict[str, dict[str, float]]:
    """Mean PSNR (dB, images in [0, 1]) of each prior's D(x0 + sigma n; sigma) against x0, and of the noisy input.

    Returns {f"{sigma:g}": {"noisy": dB, name: dB, ...}}, the same noise for every prior (seeded).
    """
    gen = torch.Generator().manual_seed(seed)
    report: dict[str, dict[str, float]] = {}
    for sigma in sigmas:
        noise = torch.randn(crops.shape, generator=gen)
        noisy = crops + sigma * noise
        row = {"noisy": _denoising_psnr(noisy, crops).mean().item()}
        for name, prior in priors.items():
            values = []
            for i in range(0, len(crops), batch_size):
                x = noisy[i : i + batch_size].to(device)
                values.append(_denoising_psnr(prior(x, sigma).float().cpu(), crops[i : i + batch_size]))
            row[name] = torch.cat(values).mean().item()
        report[f"{sigma:g}"] = row
    return report


def format_report(report: Mapping[str, Mapping[str, float]]) -> str:
    """The report as a small text table: one row per sigma, one column per denoiser."""
    names = list(next(iter(report.values())))
    lines = ["sigma  " + "  ".join(f"{n:>10}" for n in names)]
    for sigma, row in report.items():
        lines.append(f"{sigma:<6} " + "  ".join(f"{row[n]:10.2f}" for n in names))
    return "\n".join(lines)


def held_out_report(denoiser: Callable[[Tensor, float], Tensor], held_out: Sequence[Tensor], kind: str,
                    image_channels: int, crop: int, batch_size: int, seed: int,
                    device: str | torch.device = "cpu") -> dict:
    """`denoiser` (the trained network's D(x; sigma)) against the noisy input and the analytic Gaussian prior, on
    EVAL_CROPS fixed crops of the held-out images (`kind`: how they were held out)."""
    eval_gen = torch.Generator().manual_seed(seed + 2)
    crops = random_crops(held_out, EVAL_CROPS, crop, eval_gen, flip=False)
    gaussian = GaussianPrior.default() if image_channels == 3 else GaussianPrior.gray()
    report = denoising_report(
        {"trained": denoiser, "gaussian": gaussian.to(device).denoise},
        crops, seed=seed + 3, batch_size=max(batch_size, 8), device=device,
    )
    return {"held_out": kind, "crop": crop, "crops": EVAL_CROPS, "psnr_db": report}
