"""Gradient-dynamics telemetry: the angles behind SPGD's motivation (Wu et al., ACM MM 2025, Figure 1).

A :class:`GradientTelemetry` is passed as a sampler's ``callback``; it is opt-in and a sampler run without it
does no extra work. After each outer step (noise level) k it records, per sample:

- ``sigma``, ``lr``: the noise level sigma_k and the warm-up step size lr_k;
- ``loss``: the likelihood loss ||A(x0_hat) - y||^2 at the last warm-up step;
- the two displacements of the step, both written as the direction x actually moves:

  * **g_l, the likelihood step.** For SPGD, the whole warm-up displacement ``g_l = x^(N) - x^(0)``
    (``x_warm - x_level`` in the callback's dict), i.e. the sum of the N (momentum-smoothed) gradient steps
    -lr_k * m_j. With one warm-up step (``spgd-no-warmup``) it is the single step -lr_k * g_0.
  * **g_d, the prior (denoise) step.** For SPGD, the probability-flow Euler step
    ``g_d = x_{k+1} - x^(N)`` = (1 - sigma_{k+1}/sigma_k) (D(x^(N); sigma_k) - x^(N)) (``x - x_warm``).

  For other samplers (DPS, DAPS, ...) the same definitions apply: g_l is the likelihood (measurement-
  consistency) update of the step, g_d the prior/denoise update; a sampler that reports ``x_level``,
  ``x_warm`` and ``x`` in its callback dict (state before, between and after the two updates) is supported
  as is.
- ``angle_ld``: angle(g_l_k, g_d_k) (conflict between likelihood and prior);
- ``angle_l``: angle(g_l_k, g_l_{k-1}) (fluctuation of the likelihood direction; NaN at k = 0);
- ``angle_d``: angle(g_d_k, g_d_{k-1}) (NaN at k = 0);
- ``norm_l``, ``norm_d``: the L2 norms of g_l and g_d;
- ``cosine``, ``alpha``: per warm-up step j >= 1 the cosine between g_j and the momentum m_{j-1} and the
  momentum weight alpha_j = (c_j + 1) / 2, shape (N - 1, B);
- optionally every n-th x0_hat (and the last, sigma_next = 0), on the CPU as uint8 images, for an animation.

Angles are in degrees, per sample over all its entries, computed in float64 with the cosine clamped to
[-1, 1]; an angle with a zero vector (no warm-up, a frozen sample) is NaN. Only the previous step's g_l and
g_d are kept, never the whole history.

Example:
    >>> import torch, spgd
    >>> from spgd.diagnostics import GradientTelemetry
    >>> prior = spgd.load_prior("gaussian")
    >>> op = spgd.make_operator("gaussian_blur", kernel_size=9, std=1.5)
    >>> y = op.measure(prior.sample((1, 3, 16, 16), torch.Generator().manual_seed(0)))
    >>> tel = GradientTelemetry()
    >>> result = spgd.restore(y, op, prior, steps=10, warmup_steps=3, callback=tel)
    >>> result.telemetry = tel
    >>> len(tel), tel.summary()["gl_angle_mean"] >= 0
    (10, True)
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from ..errors import SpgdError
from ..io import atomic_write

__all__ = ["GradientTelemetry", "angle_deg", "cosine_similarity"]

#: per-step, per-sample quantities, in CSV column order
PER_SAMPLE = ("loss", "angle_ld", "angle_l", "angle_d", "norm_l", "norm_d")


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine between a[i] and b[i] over all entries of each sample, float64, clamped to [-1, 1]; shape (B,).

    NaN where either vector is zero (the angle is undefined there)."""
    if a.shape != b.shape:
        raise SpgdError(f"cannot compare vectors of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.detach().flatten(1).to(torch.float64)
    b = b.detach().flatten(1).to(torch.float64)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    c = (a * b).sum(1) / (na * nb)
    c = c.clamp(-1.0, 1.0)  # rounding can push |c| just past 1, where arccos is NaN
    return torch.where((na > 0) & (nb > 0), c, torch.full_like(c, math.nan))


def angle_deg(a: Tensor, b: Tensor) -> Tensor:
    """Angle between a[i] and b[i] in degrees, per sample over all entries, shape (B,) float64 (NaN if a
    vector is zero)."""
    return torch.rad2deg(torch.arccos(cosine_similarity(a, b)))


def _to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1] -> uint8 on the CPU (NaN -> 0)."""
    u = torch.nan_to_num((x.detach().to("cpu", torch.float32) + 1) / 2, nan=0.0).clamp(0, 1)
    return torch.round(u * 255).to(torch.uint8)


class GradientTelemetry:
    """Records the gradient dynamics of a sampler run through its callback (see the module docstring).

    Args:
        frame_every: keep x0_hat every `frame_every` outer steps (and at the last one) for an animation;
            0 keeps none. Image batches (B, 1 or 3, H, W) are kept as uint8; other shapes as float16.
        frame_samples: how many samples of the batch to keep frames of (None: all).
    """

    def __init__(self, frame_every: int = 0, frame_samples: Optional[int] = None):
        if frame_every < 0:
            raise SpgdError(f"frame_every must be >= 0, got {frame_every}")
        self.frame_every = int(frame_every)
        self.frame_samples = frame_samples
        self.steps: list[int] = []
        self.sigma: list[float] = []
        self.lr: list[float] = []
        self.per_sample: dict[str, list[Tensor]] = {name: [] for name in PER_SAMPLE}
        self.alive: list[Tensor] = []
        self.cosine: list[Tensor] = []  # per step: (N - 1, B)
        self.alpha: list[Tensor] = []
        self.frames: list[Tensor] = []
        self.frame_steps: list[int] = []
        self._prev_l: Optional[Tensor] = None
        self._prev_d: Optional[Tensor] = None

    # -- recording ------------------------------------------------------------------------------------------
    def __call__(self, info: dict) -> None:
        k = int(info["step"])
        if self.steps and k <= self.steps[-1]:
            raise SpgdError(f"step {k} after step {self.steps[-1]}: use a new GradientTelemetry for each run")
        g_l = info["x_warm"] - info["x_level"]
        g_d = info["x"] - info["x_warm"]
        batch = g_l.shape[0]
        alive = info.get("alive")
        alive = torch.ones(batch, dtype=torch.bool) if alive is None else alive.detach().to("cpu")
        nan = torch.full((batch,), math.nan, dtype=torch.float64)

        angle_ld = angle_deg(g_l, g_d).cpu()
        angle_l = nan if self._prev_l is None else angle_deg(g_l, self._prev_l).cpu()
        angle_d = nan if self._prev_d is None else angle_deg(g_d, self._prev_d).cpu()
        losses = info.get("loss") or []
        loss = losses[-1].detach().to("cpu", torch.float64) if losses else nan
        values = {
            "loss": loss,
            "angle_ld": angle_ld,
            "angle_l": angle_l,
            "angle_d": angle_d,
            "norm_l": g_l.detach().flatten(1).to(torch.float64).norm(dim=1).cpu(),
            "norm_d": g_d.detach().flatten(1).to(torch.float64).norm(dim=1).cpu(),
        }
        for name, v in values.items():
            # a diverged (frozen) sample has no meaningful directions
            self.per_sample[name].append(torch.where(alive, v, nan))
        self.cosine.append(self._stack(info.get("cosine"), batch))
        self.alpha.append(self._stack(info.get("alpha"), batch))
        self.steps.append(k)
        self.sigma.append(float(info["sigma"]))
        self.lr.append(float(info.get("lr", math.nan)))
        self.alive.append(alive.clone())
        self._prev_l, self._prev_d = g_l.detach(), g_d.detach()

        last = info.get("sigma_next", None) == 0  # the final step: always keep its frame
        if self.frame_every and info.get("x0_hat") is not None and (k % self.frame_every == 0 or last):
            self._keep_frame(k, info["x0_hat"])

    @staticmethod
    def _stack(values: Optional[Sequence[Tensor]], batch: int) -> Tensor:
        if not values:
            return torch.empty((0, batch), dtype=torch.float64)
        return torch.stack([v.detach().to("cpu", torch.float64) for v in values])

    def _keep_frame(self, k: int, x0_hat: Tensor) -> None:
        x = x0_hat[: self.frame_samples] if self.frame_samples else x0_hat
        is_image = x.ndim == 4 and x.shape[1] in (1, 3)
        self.frames.append(_to_uint8(x) if is_image else x.detach().to("cpu", torch.float16))
        self.frame_steps.append(k)

    # -- reading --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    @property
    def batch_size(self) -> int:
        return int(self.alive[0].numel()) if self.alive else 0

    def array(self, name: str) -> Tensor:
        """One per-sample quantity over the run, shape (steps, B), float64: one of
        loss, angle_ld, angle_l, angle_d, norm_l, norm_d."""
        if name not in self.per_sample:
            raise SpgdError(f"unknown telemetry quantity {name!r}; valid: {', '.join(PER_SAMPLE)}")
        if not self.steps:
            return torch.empty((0, 0), dtype=torch.float64)
        return torch.stack(self.per_sample[name])

    def warmup_array(self, name: str) -> Tensor:
        """`cosine` or `alpha` per step and warm-up step j >= 1, shape (steps, N - 1, B) (NaN-padded if N
        varies)."""
        rows = {"cosine": self.cosine, "alpha": self.alpha}.get(name)
        if rows is None:
            raise SpgdError(f"unknown warm-up quantity {name!r}; valid: cosine, alpha")
        if not rows:
            return torch.empty((0, 0, 0), dtype=torch.float64)
        n = max(r.shape[0] for r in rows)
        out = torch.full((len(rows), n, self.batch_size), math.nan, dtype=torch.float64)
        for i, r in enumerate(rows):
            out[i, : r.shape[0]] = r
        return out

    def to_rows(self) -> list[dict]:
        """One dict per (step, sample): step, sample, sigma, lr, alive, the PER_SAMPLE quantities, the mean
        cosine and alpha over the warm-up, and cosine_j / alpha_j for each warm-up step j >= 1."""
        arrays = {name: self.array(name) for name in PER_SAMPLE}
        cos, alpha = self.warmup_array("cosine"), self.warmup_array("alpha")
        n_warm = cos.shape[1] if cos.ndim == 3 else 0
        rows = []
        for i, k in enumerate(self.steps):
            for b in range(self.batch_size):
                row: dict = {
                    "step": k,
                    "sample": b,
                    "sigma": self.sigma[i],
                    "lr": self.lr[i],
                    "alive": bool(self.alive[i][b]),
                }
                row.update({name: float(arrays[name][i, b]) for name in PER_SAMPLE})
                c, a = cos[i, :, b], alpha[i, :, b]
                row["cosine_mean"] = float(c.nanmean()) if n_warm and torch.isfinite(c).any() else math.nan
                row["alpha_mean"] = float(a.nanmean()) if n_warm and torch.isfinite(a).any() else math.nan
                for j in range(n_warm):
                    row[f"cosine_{j + 1}"] = float(c[j])
                    row[f"alpha_{j + 1}"] = float(a[j])
                rows.append(row)
        return rows

    def save_csv(self, path: Union[str, Path]) -> Path:
        """Write `to_rows()` as CSV (NaN written as empty cells). Returns the path."""
        path = Path(path)
        rows = self.to_rows()
        if not rows:
            raise SpgdError("telemetry is empty: nothing was recorded (was it passed as the sampler's callback?)")
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        return atomic_write(path, lambda f: f.write(buf.getvalue().encode()))

    def window(self, middle: tuple[float, float] = (0.25, 0.75)) -> tuple[int, int]:
        """The index range [lo, hi) of the recorded steps that `middle` (fractions of the run) covers."""
        lo_f, hi_f = middle
        if not 0 <= lo_f < hi_f <= 1:
            raise SpgdError(f"middle must be two fractions 0 <= lo < hi <= 1, got {middle}")
        n = len(self.steps)
        lo, hi = int(math.floor(lo_f * n)), int(math.ceil(hi_f * n))
        return (lo, max(hi, lo + 1)) if n else (0, 0)

    def summary(self, middle: tuple[float, float] = (0.25, 0.75)) -> dict:
        """Mean and 90th percentile over the steps of the `middle` part of the run (all samples pooled) of the
        consecutive-step g_l angle (`gl_angle_*`, the paper's fluctuation measure), the consecutive-step g_d
        angle (`gd_angle_*`) and the g_l/g_d angle (`ld_angle_*`), plus the final loss (mean over samples)."""
        if not self.steps:
            raise SpgdError("telemetry is empty: nothing was recorded")
        lo, hi = self.window(middle)
        out: dict = {"steps": len(self.steps), "samples": self.batch_size, "middle": [lo, hi]}
        for key, name in (("gl_angle", "angle_l"), ("gd_angle", "angle_d"), ("ld_angle", "angle_ld")):
            v = self.array(name)[lo:hi].flatten()
            v = v[torch.isfinite(v)]
            out[f"{key}_mean"] = float(v.mean()) if v.numel() else math.nan
            out[f"{key}_p90"] = float(torch.quantile(v, 0.9)) if v.numel() else math.nan
        final = self.array("loss")[-1]
        final = final[torch.isfinite(final)]
        out["final_loss_mean"] = float(final.mean()) if final.numel() else math.nan
        return out

    @classmethod
    def concat(cls, telemetries: Sequence["GradientTelemetry"]) -> "GradientTelemetry":
        """Join runs of the same schedule made on different batches into one, sample after sample (frames
        are joined where every run kept the same steps)."""
        tels = [t for t in telemetries if len(t)]
        if not tels:
            raise SpgdError("concat needs at least one non-empty telemetry")
        first = tels[0]
        if any(t.steps != first.steps for t in tels):
            raise SpgdError("cannot join telemetries recorded over different steps")
        out = cls(first.frame_every, first.frame_samples)
        out.steps, out.sigma, out.lr = list(first.steps), list(first.sigma), list(first.lr)
        for name in PER_SAMPLE:
            out.per_sample[name] = [torch.cat(v) for v in zip(*(t.per_sample[name] for t in tels))]
        out.alive = [torch.cat(v) for v in zip(*(t.alive for t in tels))]
        for attr in ("cosine", "alpha"):
            joined = []
            for rows in zip(*(getattr(t, attr) for t in tels)):
                n = max(r.shape[0] for r in rows)
                pad = [torch.cat([r, torch.full((n - r.shape[0], r.shape[1]), math.nan, dtype=r.dtype)]) for r in rows]
                joined.append(torch.cat(pad, dim=1))
            setattr(out, attr, joined)
        if all(t.frame_steps == first.frame_steps for t in tels) and first.frames:
            out.frames = [torch.cat(v) for v in zip(*(t.frames for t in tels))]
            out.frame_steps = list(first.frame_steps)
        return out
