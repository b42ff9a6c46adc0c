"""The verdict on a restoration, judged against its measurement: is it a result, an under-fit one, or garbage?

A diffusion sampler always returns finite numbers, so a score table alone cannot tell a restoration from
saturated colour blobs that happen to be finite (issue 28: `spgd eval --set lr=30` gave 5.31 dB and was averaged
in). The verdict looks only at what any run has, the result x (the sampler's raw output, in [-1, 1] units
before the clamp for saving) and the measurement y with its operator A and noise level sigma:

- **fit** = RMS(A(x) - y) / noise, with noise = max(sigma, 2/255) (one grey level of an 8-bit image in [-1, 1]
  units, so a noiseless measurement has a floor). A result that explains y to the noise has fit ~ 1.
- **outside** = the fraction of values of x beyond +-1.5 (an image lives in [-1, 1]; a sound method's result
  strays a little past the ends, never by half the range over many pixels).
- **saturated** = the fraction of values of x at the ends of the range (|x| >= 0.99), against the same fraction
  of the measurement (a bright photo is saturated in y too; an all-white result of a grey photo is not).

The rule (``judge_values``), in order:

1. **failed** when any value is non-finite; or **outside > 1 %** ("left the image range"); or **saturated
   exceeds the measurement's by more than 0.5** ("saturated"); or **RMS(A(x) - y) > 2 RMS(y) and fit > 100**
   ("fits the measurement worse than a blank grey image": the blank image x = 0 has residual RMS(y), and no
   result in the image range fits twice as badly as that). Failed results are excluded from the means, are
   listed with their reason and make the command exit 1.
2. **under-fit** when fit > 10: the result is kept and counted, and flagged (a cut budget: DPS at 30 steps
   ends near 50 x the noise level, SPGD at K = 10 near 10-20 x).
3. **ok** otherwise.

The thresholds were chosen from measurements (issue 28; the table in the README, "Is a result sound?";
benchmarks/verdict_cases.py): every method's honest runs at the CPU budgets of benchmarks/RESULTS.md section 2
(the bundled prior at 256 px and 64 px, the Gaussian prior at 32 px on blur, SR and inpainting) had no value
beyond +-1.5, at most 0.05 more saturation than the measurement and a residual of at most 1.01 x RMS(y) (DPS at
30 steps; fit 37-52, under-fit), while the garbage cases are 15-33 % outside and 0.47-0.61 more saturated (DPS
with lr = 100 / 1000, finite, 8-9 dB) or 16 x RMS(y) off (issue 28's lr=30, 820 x the noise level); DPS with
lr=1e6 and SPGD with lr=30 at the CPU budgets already fail the samplers' divergence rule, and a sigma_max far
beyond the prior's range is refused (spgd.samplers.base.check_start_sigma).

``judge(x, y, operator)`` gives the verdicts of a batch; ``verdict_of_record(entry)`` reads one back from a
run's record (an `spgd eval` record's method sample, or an `spgd restore` record), for the tables and the app.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

__all__ = [
    "FAILED", "OK", "UNDER_FIT", "Verdict", "judge", "judge_values", "noise_floor", "verdict_of_record",
    "VERDICT_RULE",
]

OK, UNDER_FIT, FAILED = "ok", "under-fit", "failed"

NOISE_FLOOR = 2 / 255  # one grey level of an 8-bit image in [-1, 1] units
OUTSIDE_LEVEL = 1.5  # a value beyond +-1.5 is "far outside" the image range
MAX_OUTSIDE = 0.01  # more than 1 % of the values far outside: failed
SATURATION_LEVEL = 0.99  # |value| at or above this is at an end of the range
MAX_EXTRA_SATURATION = 0.5  # saturated share above the measurement's by more than this: failed
BLANK_FACTOR = 2.0  # residual above this many times RMS(y) (the blank image's residual) ...
BLANK_MIN_FIT = 100.0  # ... and above this many times the noise: failed
UNDER_FIT_FACTOR = 10.0  # residual above this many times the noise: under-fit (kept, flagged)

VERDICT_RULE = (
    f"failed: non-finite, > {MAX_OUTSIDE:.0%} of values beyond +-{OUTSIDE_LEVEL:g}, saturated share above the "
    f"measurement's by > {MAX_EXTRA_SATURATION:g}, or residual > {BLANK_FACTOR:g} x RMS(y) and > "
    f"{BLANK_MIN_FIT:g} x noise; under-fit: residual > {UNDER_FIT_FACTOR:g} x noise"
)


@dataclass(frozen=True)
class Verdict:
    """One result judged against its measurement (see the module doc)."""

    status: str  # "ok", "under-fit" or "failed"
    reason: Optional[str]  # why it failed or is flagged, in one line (None when ok)
    residual: float  # RMS(A(x) - y)
    noise: float  # the noise level the residual is compared with: max(sigma, 2/255)
    fit: float  # residual / noise
    rms_y: float  # RMS(y): the residual of a blank (mid-grey) result
    outside: float  # share of values beyond +-1.5
    saturated: float  # share of values at an end of the range (|x| >= 0.99)
    saturated_measurement: float  # the same share in y

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def label(self) -> str:
        """The table's short form: "ok", "under-fit 47x" or "failed"."""
        return f"{UNDER_FIT} {self.fit:.0f}x" if self.status == UNDER_FIT else self.status

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def noise_floor(noise_sigma: float) -> float:
    """The noise level a residual is compared with: the measurement's, at least one grey level (2/255)."""
    s = float(noise_sigma or 0.0)
    return max(s if math.isfinite(s) else 0.0, NOISE_FLOOR)


def judge_values(residual: float, noise_sigma: float, rms_y: float, outside: float, saturated: float,
                 saturated_measurement: float, finite: bool = True) -> Verdict:
    """The rule of the module doc on the numbers of one result.

    >>> judge_values(0.012, 0.01, 0.5, 0.0, 0.02, 0.01).status
    'ok'
    >>> judge_values(0.47, 0.01, 0.5, 0.0, 0.02, 0.01).label     # DPS at 30 steps: kept, flagged
    'under-fit 47x'
    >>> judge_values(8.2, 0.01, 0.5, 0.4, 0.6, 0.01).reason       # issue 28's lr=30
    'left the image range: 40 % of values beyond +-1.5'
    """
    noise = noise_floor(noise_sigma)
    fit = residual / noise if math.isfinite(residual) else math.inf
    extra = saturated - saturated_measurement
    reason: Optional[str] = None
    if not finite or not math.isfinite(residual):
        reason = "non-finite values"
    elif outside > MAX_OUTSIDE:
        reason = f"left the image range: {outside:.0%} of values beyond +-{OUTSIDE_LEVEL:g}".replace("%", " %")
    elif extra > MAX_EXTRA_SATURATION:
        reason = (f"saturated: {saturated:.0%} of values at the ends of the range (the measurement: "
                  f"{saturated_measurement:.0%})").replace("%", " %")
    elif residual > BLANK_FACTOR * rms_y and fit > BLANK_MIN_FIT:
        reason = (f"fits the measurement worse than a blank image: residual {residual:.3g} = {fit:.0f} x the noise "
                  f"level, {residual / max(rms_y, 1e-12):.1f} x RMS(y)")
    if reason is not None:
        status = FAILED
    elif fit > UNDER_FIT_FACTOR:
        status, reason = UNDER_FIT, f"under-fit: residual {fit:.0f} x the noise level (more steps fit better)"
    else:
        status = OK
    return Verdict(status, reason, float(residual), noise, float(fit), float(rms_y), float(outside),
                   float(saturated), float(saturated_measurement))


def _rms(t: Tensor) -> Tensor:
    return t.detach().flatten(1).double().pow(2).mean(1).sqrt()


def _share(t: Tensor, level: float) -> Tensor:
    return (t.detach().flatten(1).abs() >= level).double().mean(1)


def judge(x: Tensor, y: Tensor, operator: Any, noise_sigma: Optional[float] = None) -> list[Verdict]:
    """The verdict of each result of a batch: x (B, C, H, W) the raw results (not clamped), y the measurements,
    `operator` their forward operator (its `noise_sigma` unless `noise_sigma` is given). A result whose A(x)
    does not have y's shape is judged without the fit (fit = 0)."""
    sigma = float(getattr(operator, "noise_sigma", 0.0) or 0.0) if noise_sigma is None else float(noise_sigma)
    x = x.detach()
    finite = torch.isfinite(x.flatten(1)).all(1)
    safe = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    with torch.no_grad():
        ax = operator.forward(safe)
    if ax.shape == y.shape:
        residual = _rms(ax - y)
        rms_y = _rms(y)
    else:
        residual = torch.zeros(x.shape[0], dtype=torch.float64)
        rms_y = torch.ones(x.shape[0], dtype=torch.float64)
    outside = (safe.flatten(1).abs() > OUTSIDE_LEVEL).double().mean(1)
    saturated = _share(safe, SATURATION_LEVEL)
    sat_y = _share(y, SATURATION_LEVEL) if y.shape[0] == x.shape[0] else torch.zeros_like(saturated)
    return [
        judge_values(float(residual[i]), sigma, float(rms_y[i]), float(outside[i]), float(saturated[i]),
                     float(sat_y[i]), bool(finite[i]))
        for i in range(x.shape[0])
    ]


def verdict_of_record(entry: Mapping[str, Any]) -> Optional[Verdict]:
    """The verdict stored in a run's record: `entry` is one sample of an `spgd eval` record
    (record["methods"][METHOD]["samples"][s]), an `spgd restore` record, or the "verdict" dict itself. None for a
    record written before verdicts existed."""
    v = entry.get("verdict", entry) if isinstance(entry, Mapping) else None
    if not isinstance(v, Mapping) or "status" not in v:
        return None
    nums = {k: (math.nan if v.get(k) is None else float(v[k]))
            for k in ("residual", "noise", "fit", "rms_y", "outside", "saturated", "saturated_measurement")}
    if v.get("fit") is None:
        nums["fit"] = math.inf
    return Verdict(str(v["status"]), v.get("reason"), **nums)
