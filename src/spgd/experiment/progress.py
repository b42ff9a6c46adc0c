"""Watching a pipeline while it restores: each level of a sampler run reported to a `progress` callable (a web
app's live view, a notebook's progress bar), and the gradient-angle telemetry a pipeline records with
telemetry=True (spgd.diagnostics), both through the sampler's one callback.

A pipeline that takes ``progress`` calls it after every level of every restoration with a :class:`Step`; it
prints nothing and decides nothing from it. A `progress` callable that raises stops the run there (the
pipeline's own rule for an interrupted run applies: `spgd restore` leaves no run folder before its first
result).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from torch import Tensor

from ..diagnostics.telemetry import GradientTelemetry


@dataclass(frozen=True)
class Step:
    """One level of one restoration of a run, as a pipeline reports it."""

    image: str  # the image's name in the run folder
    image_index: int  # its position among the images this call restores (0-based)
    images: int  # how many images this call restores
    method: str
    method_index: int  # position of the method in the run's method list
    methods: int
    step: int  # the level just finished (0-based)
    steps: int  # the levels of this method's run
    sigma: float  # its noise level
    x0_hat: Optional[Tensor]  # the current estimate of the clean images, (B, C, H, W) in [-1, 1], cropped to the
    #                           restored size; None where the sampler's state is not an image (a latent prior).
    #                           Valid during the call: copy it to keep it.

    @property
    def fraction(self) -> float:
        """How much of the call's work is done, in [0, 1] (every image and method counted as equal work)."""
        done = (self.image_index * self.methods + self.method_index) + (self.step + 1) / max(self.steps, 1)
        return min(1.0, done / max(self.images * self.methods, 1))


Progress = Callable[[Step], None]


def run_steps(sampler) -> int:
    """The number of levels a sampler's run reports (its `steps`; 0 for a method without any)."""
    steps = getattr(sampler, "steps", 0)
    return int(steps) if isinstance(steps, int) else 0


def telemetry_recorder() -> GradientTelemetry:
    """The telemetry a pipeline records with telemetry=True: the angles and losses, no x0_hat frames (runs of
    different image sizes can then be joined for one plot)."""
    return GradientTelemetry(frame_every=0)


def sampler_callback(
    progress: Optional[Progress],
    telemetry: Optional[GradientTelemetry],
    where: dict,
    steps: int,
    image_shape: Sequence[int],
) -> Optional[Callable[[dict], None]]:
    """The callback to hand a sampler: feeds `telemetry` and reports each level to `progress` as a Step with the
    fields of `where` (image, image_index, images, method, method_index, methods). `image_shape` is the (padded)
    image shape the sampler runs on; x0_hat is cropped to its last two sides when it is an image of that shape,
    and None otherwise. None when there is nothing to feed."""
    if progress is None and telemetry is None:
        return None
    h, w = int(image_shape[-2]), int(image_shape[-1])

    def callback(info: dict) -> None:
        if telemetry is not None:
            telemetry(info)
        if progress is not None:
            x0 = info.get("x0_hat")
            image = isinstance(x0, Tensor) and x0.ndim == 4 and x0.shape[1] == image_shape[1]
            x0 = x0.detach()[..., :h, :w] if image and x0.shape[-2] >= h and x0.shape[-1] >= w else None
            sigma = float(info.get("sigma", math.nan))
            progress(Step(step=int(info["step"]), steps=steps, sigma=sigma, x0_hat=x0, **where))

    return callback
