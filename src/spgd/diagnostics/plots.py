"""Plots of recorded telemetry: the paper's Figure 1 angle view, loss curves, and an x0_hat animation.

matplotlib (Agg backend, no display needed) is imported only when a plot is made; the GIF is written with
Pillow, so no ffmpeg is needed.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from ..errors import SpgdError
from .telemetry import GradientTelemetry

__all__ = ["plot_angles", "plot_loss", "pyplot", "save_animation"]

PathLike = Union[str, Path]

#: (telemetry quantity, legend label, colour) of the three Figure 1 curves
ANGLE_CURVES = (
    ("angle_ld", r"$\angle(g_l, g_d)$  conflict", "tab:purple"),
    ("angle_l", r"$\angle(g_l^{k}, g_l^{k-1})$  likelihood swing", "tab:red"),
    ("angle_d", r"$\angle(g_d^{k}, g_d^{k-1})$  denoise swing", "tab:blue"),
)


def pyplot():
    """matplotlib.pyplot on the Agg backend, imported here: pyplot takes about half a second to import, which
    `import spgd.diagnostics` (and a `spgd` command that makes no plot) should not pay."""
    import matplotlib  # start-up time: see the docstring

    if not _notebook_backend(matplotlib):  # a notebook's inline figures stay on (spgd writes files either way)
        matplotlib.use("Agg", force=False)  # no-op if a non-interactive backend is already chosen
    import matplotlib.pyplot as plt  # start-up time: see the docstring

    return plt


def _notebook_backend(matplotlib) -> bool:
    """Whether pyplot is already in use with a Jupyter backend (inline, widget, nbagg): switching it to Agg would
    stop the notebook's own figures from showing."""
    if "matplotlib.pyplot" not in sys.modules:
        return False
    backend = str(matplotlib.get_backend()).lower()
    return any(name in backend for name in ("inline", "ipympl", "widget", "nbagg"))


def _band(values: Tensor, lo: float = 10.0, hi: float = 90.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the lo/hi percentiles over samples (axis 1) of a (steps, B) array, ignoring NaN."""
    a = values.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps (k = 0) give NaN, as they should
        return np.nanmean(a, axis=1), np.nanpercentile(a, lo, axis=1), np.nanpercentile(a, hi, axis=1)


def _check(telemetries: Mapping[str, GradientTelemetry]) -> None:
    if not telemetries:
        raise SpgdError("nothing to plot: no telemetry given")
    empty = [name for name, t in telemetries.items() if not len(t)]
    if empty:
        raise SpgdError(f"telemetry of {', '.join(empty)} is empty (was it passed as the sampler's callback?)")


def _save(fig, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    return path


def plot_angles(
    telemetries: Mapping[str, GradientTelemetry],
    path: PathLike,
    middle: tuple[float, float] = (0.25, 0.75),
    title: Optional[str] = None,
) -> Path:
    """The Figure 1 view, one panel per method: angle(g_l, g_d), angle(g_l_k, g_l_k-1) and
    angle(g_d_k, g_d_k-1) in degrees against the outer step; mean over samples, shaded 10-90 % band. The
    `middle` window that `summary()` uses is shaded grey, and its g_l mean/p90 is given in the panel title."""
    _check(telemetries)
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator  # start-up time: matplotlib only when a plot is made

    n = len(telemetries)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), sharey=True, squeeze=False)
    for ax, (method, tel) in zip(axes.flat, telemetries.items()):
        steps = np.asarray(tel.steps)
        lo, hi = tel.window(middle)
        ax.axvspan(steps[lo], steps[min(hi, len(steps)) - 1], color="0.92", zorder=0)
        for name, label, colour in ANGLE_CURVES:
            mean, p10, p90 = _band(tel.array(name))
            ax.fill_between(steps, p10, p90, color=colour, alpha=0.2, linewidth=0)
            ax.plot(steps, mean, color=colour, linewidth=1.4, label=label)
        s = tel.summary(middle)
        ax.set_title(f"{method}\nmiddle-half g_l swing: mean {s['gl_angle_mean']:.0f}°, p90 {s['gl_angle_p90']:.0f}°",
                     fontsize=10)
        ax.set_xlabel("step k (high noise → low noise)")
        ax.set_ylim(0, 180)
        ax.set_yticks(range(0, 181, 30))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("angle (degrees)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 / rows, 1, 1))  # room for the legend below the panels
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0))
    return _save(fig, path)


def plot_loss(telemetries: Mapping[str, GradientTelemetry], path: PathLike, title: Optional[str] = None) -> Path:
    """Likelihood loss ||A(x0_hat) - y||^2 (last warm-up step, log scale) and the mean momentum weight alpha
    over the warm-up, against the step; one curve per method, mean over samples with a 10-90 % band."""
    _check(telemetries)
    plt = pyplot()
    fig, (ax_loss, ax_alpha) = plt.subplots(1, 2, figsize=(11, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    any_alpha = False
    for i, (method, tel) in enumerate(telemetries.items()):
        colour = colours[i % len(colours)]
        steps = np.asarray(tel.steps)
        mean, p10, p90 = _band(tel.array("loss"))
        ax_loss.fill_between(steps, p10, p90, color=colour, alpha=0.2, linewidth=0)
        ax_loss.plot(steps, mean, color=colour, label=method)
        alpha = tel.warmup_array("alpha")
        if alpha.numel() and torch.isfinite(alpha).any():
            any_alpha = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                per_sample = torch.from_numpy(np.nanmean(alpha.numpy(), axis=1))  # (steps, B)
            mean, p10, p90 = _band(per_sample)
            ax_alpha.fill_between(steps, p10, p90, color=colour, alpha=0.2, linewidth=0)
            ax_alpha.plot(steps, mean, color=colour, label=method)
    from matplotlib.ticker import MaxNLocator  # start-up time: matplotlib only when a plot is made

    for ax in (ax_loss, ax_alpha):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step k")
    ax_loss.set_ylabel(r"$\|A(\hat x_0) - y\|^2$ (last warm-up step)")
    ax_loss.grid(alpha=0.3, which="both")
    ax_loss.legend(fontsize=8)
    ax_alpha.set_xlabel("step k")
    ax_alpha.set_ylabel(r"momentum weight $\alpha$ (mean over warm-up)")
    ax_alpha.set_ylim(0, 1)
    ax_alpha.grid(alpha=0.3)
    if any_alpha:
        ax_alpha.legend(fontsize=8)
    else:
        ax_alpha.text(0.5, 0.5, "no warm-up cosines recorded\n(one warm-up step)", ha="center", va="center",
                      transform=ax_alpha.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _frame_image(frame: Tensor) -> np.ndarray:
    """A (B, C, H, W) or (C, H, W) uint8 (or [-1, 1] float) frame -> (H, B*W, 3) uint8, samples side by side."""
    if frame.ndim == 3:
        frame = frame[None]
    if frame.ndim != 4 or frame.shape[1] not in (1, 3):
        raise SpgdError(f"animation frames must be images (B, C, H, W) with C = 1 or 3, got {tuple(frame.shape)}")
    if frame.dtype != torch.uint8:
        u = torch.nan_to_num((frame.to(torch.float32) + 1) / 2, nan=0.0).clamp(0, 1)
        frame = torch.round(u * 255).to(torch.uint8)
    frame = frame.expand(-1, 3, -1, -1)
    return frame.permute(2, 0, 3, 1).reshape(frame.shape[2], -1, 3).contiguous().numpy()


def save_animation(
    frames: Sequence[Tensor],
    path: PathLike,
    captions: Optional[Sequence[str]] = None,
    duration_ms: int = 100,
    hold_last_ms: int = 1500,
) -> Path:
    """Write frames (each (B, C, H, W) or (C, H, W), uint8 or [-1, 1] float; a batch is laid side by side) as
    a looping GIF with Pillow. `captions` (one per frame, e.g. "k=40 sigma=3.1") are drawn in the corner."""
    if not frames:
        raise SpgdError("no frames to animate (was frame_every > 0 in the telemetry?)")
    if captions is not None and len(captions) != len(frames):
        raise SpgdError(f"{len(captions)} captions for {len(frames)} frames")
    images = []
    for i, frame in enumerate(frames):
        img = Image.fromarray(_frame_image(frame))
        if captions is not None:
            draw = ImageDraw.Draw(img)
            box = draw.textbbox((2, 2), captions[i])
            draw.rectangle(box, fill=(0, 0, 0))
            draw.text((2, 2), captions[i], fill=(255, 255, 255))
        images.append(img)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [duration_ms] * (len(images) - 1) + [max(duration_ms, hold_last_ms)]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path
