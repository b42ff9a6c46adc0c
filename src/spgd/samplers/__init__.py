"""How to search: schedules, SPGD and its ablations, and the baselines, by method name."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import SpgdError
from .base import Result, Stats
from .schedule import karras_sigmas, linear_lr, ve_euler_factors
from .classical import Classical
from .daps import DAPS
from .dps import DPS
from .spgd import SPGD, adm_update, directional_cosine

# method name -> (sampler class, fixed settings). The fixed settings define an ablation, so they win over
# any setting passed in (a task preset's warmup_steps must not turn "spgd-no-warmup" back into SPGD).
METHODS: dict[str, tuple[type, dict[str, Any]]] = {
    "spgd": (SPGD, {}),
    # the authors' released code: raw-gradient steps, reused x0_hat, per-pixel channel cosine
    "spgd-official": (SPGD, {"use_momentum": False, "fresh_denoise": False, "cosine": "pixel"}),
    # ablations
    "spgd-no-warmup": (SPGD, {"warmup_steps": 1}),
    "spgd-no-momentum": (SPGD, {"beta": 0.0}),
    "spgd-pixel-cosine": (SPGD, {"cosine": "pixel"}),
    "spgd-reused-denoise": (SPGD, {"fresh_denoise": False}),
    # baselines
    "dps": (DPS, {}),
    "daps": (DAPS, {}),  # the 2024 release (the paper's code)
    "daps-2025": (DAPS, {"release": "2025"}),  # the current release: other grid, no final ODE jump, 2x data term
    "classical": (Classical, {}),  # prior-free: Tikhonov-CG / bicubic / biharmonic by operator
}


def setting_names(method: str) -> list[str]:
    cls, _ = _lookup(method)
    return [f.name for f in dataclasses.fields(cls)]


def _lookup(method: str):
    if method not in METHODS:
        raise SpgdError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[method]


def make_sampler(method: str = "spgd", **settings):
    """A sampler by method name, e.g. make_sampler("spgd", lr=7.0, steps=200). An ablation's defining settings
    (METHODS[method][1]) are fixed and take precedence over `settings`."""
    cls, fixed = _lookup(method)
    valid = setting_names(method)
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise SpgdError(f"unknown setting(s) {unknown} for method {method!r}; valid settings: {', '.join(valid)}")
    return cls(**{**settings, **fixed})


__all__ = [
    "Classical",
    "DAPS",
    "DPS",
    "METHODS",
    "Result",
    "SPGD",
    "Stats",
    "adm_update",
    "directional_cosine",
    "karras_sigmas",
    "linear_lr",
    "make_sampler",
    "setting_names",
    "ve_euler_factors",
]
