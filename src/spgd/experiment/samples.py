"""Several restorations of one image: their running mean and per-pixel standard deviation, and the two files
that show them (the mean, scored like a restoration, and the uncertainty heat map)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from .. import io
from ..errors import SpgdError

# Heat-map scale of the uncertainty maps: a per-pixel standard deviation of 0.1 on [0, 1] images (a quarter
# of the grey range either way) and above is the brightest colour; one scale for all maps so they compare.
UNCERTAINTY_VMAX = 0.1


class SampleMoments:
    """Running per-image mean and standard deviation of a batch's restorations, over the samples that did not
    fail (sums in float64; no sample is kept in memory)."""

    def __init__(self) -> None:
        self.n: Optional[Tensor] = None
        self.s1: Optional[Tensor] = None
        self.s2: Optional[Tensor] = None

    def add(self, x: Tensor, ok: Sequence[bool]) -> None:
        w = torch.tensor(ok, dtype=torch.float64, device=x.device).view(-1, *([1] * (x.dim() - 1)))
        xd = torch.nan_to_num(x.detach().to(torch.float64)) * w
        if self.n is None:
            self.n, self.s1, self.s2 = w.clone(), xd, xd * xd
        else:
            self.n, self.s1, self.s2 = self.n + w, self.s1 + xd, self.s2 + xd * xd

    def counts(self) -> list[int]:
        return [] if self.n is None else [int(v) for v in self.n.flatten().tolist()]

    def mean_std(self) -> tuple[Tensor, Tensor]:
        """Mean and (population) standard deviation per entry, float32; zero where no sample succeeded."""
        if self.n is None:
            raise SpgdError("SampleMoments: no samples added")
        n = self.n.clamp_min(1)
        mean = self.s1 / n
        var = (self.s2 / n - mean * mean).clamp_min(0)
        return mean.float(), var.sqrt().float()


def sample_summary_paths(method: str, name: str, several_methods: bool) -> tuple[str, str]:
    """(mean image, uncertainty map) of an image's samples in an eval run folder, relative to it (folders of
    their own, so no image name can collide with them)."""
    sub = f"{method}/" if several_methods else ""
    return f"mean/{sub}{name}.png", f"uncertainty/{sub}{name}.png"


def write_sample_summary(mean: Tensor, std: Tensor, mean_path: Path, uncertainty_path: Path) -> float:
    """Save one image's sample mean (C, H, W) and its uncertainty heat map (the per-pixel std over the samples,
    averaged over channels, in [0, 1] image units, on the fixed UNCERTAINTY_VMAX scale); returns that std's mean."""
    std01 = std.mean(0) / 2
    io.save_image(mean, mean_path)
    io.save_image(io.heatmap(std01, UNCERTAINTY_VMAX), uncertainty_path)
    return float(std01.mean())
