"""How to search: schedules, SPGD and its ablations, and the baselines, by method name."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from ..errors import SpgdError
from ..values import typed
from .base import Result, Stats
from .schedule import karras_sigmas, linear_lr, ve_euler_factors
from .classical import Classical
from .daps import DAPS
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .pigdm import PiGDM
from .reddiff import REDDiff
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
    "ddrm": (DDRM, {}),  # the release (bahjat-kawar/ddrm @ 32b6b3c); needs an operator with an SVD
    "diffpir": (DiffPIR, {}),  # the release (yuanzhi-zhu/DiffPIR @ 111d26e); needs an operator with a prox
    "pigdm": (PiGDM, {}),  # NVlabs/RED-diff @ 66482f2 algos/pgdm.py (no official code); needs an operator with a pinv
    "reddiff": (REDDiff, {}),  # the release (NVlabs/RED-diff @ 66482f2 algos/reddiff.py)
    "classical": (Classical, {}),  # prior-free: Tikhonov-CG / bicubic / biharmonic by operator
}


def setting_names(method: str) -> list[str]:
    cls, _ = _lookup(method)
    return [f.name for f in dataclasses.fields(cls)]


def setting_defaults(method: str) -> dict[str, Any]:
    """Setting name -> the value `method` runs with when none is given: its class default, or the value that
    defines it (an ablation's fixed settings)."""
    cls, fixed = _lookup(method)
    defaults = {f.name: None if f.default is dataclasses.MISSING else f.default for f in dataclasses.fields(cls)}
    return {**defaults, **fixed}


def typed_setting(method: str, name: str, value: Any) -> Any:
    """`value` as the declared type of `method`'s setting `name` (spgd.values.typed); an SpgdError otherwise."""
    cls, _ = _lookup(method)
    kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    if name not in kinds:
        raise SpgdError(f"unknown setting {name!r} for method {method!r}; valid settings: {', '.join(kinds)}")
    return typed(f"{method} setting {name}", kinds[name], value)


def fixed_settings(method: str) -> dict[str, Any]:
    """The settings that define `method` (an ablation's, e.g. spgd-no-warmup's warmup_steps=1). They win over
    any value passed in (make_sampler applies them last), so a preset or --set value for one changes nothing."""
    return dict(_lookup(method)[1])


def _lookup(method: str):
    if method not in METHODS:
        raise SpgdError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[method]


# settings that keep a method running but make it ignore the measurement: refused, with what would happen
NO_OP_SETTINGS: dict[str, tuple[str, Any, str]] = {
    "dps": ("lr", 0, "lr=0 makes DPS ignore the measurement (unconditional DDPM sampling); use lr > 0"),
    "daps": ("langevin_steps", 0,
             "langevin_steps=0 makes DAPS ignore the measurement (no likelihood step); use langevin_steps >= 1"),
}


def check_methods(methods: Sequence[str], unique: bool = True) -> list[str]:
    """`methods` as a list, each checked against METHODS (and, with `unique`, none twice).

    >>> check_methods(("spgd", "dps"))
    ['spgd', 'dps']
    """
    methods = list(methods)
    if not methods:
        raise SpgdError(f"no method given; valid methods: {', '.join(METHODS)}")
    for m in methods:
        _lookup(m)
    if unique and len(set(methods)) != len(methods):
        raise SpgdError(f"a method is listed twice in {','.join(methods)}")
    return methods


def make_sampler(method: str = "spgd", **settings):
    """A sampler by method name, e.g. make_sampler("spgd", lr=7.0, steps=200). An ablation's defining settings
    (METHODS[method][1]) are fixed and take precedence over `settings`."""
    cls, fixed = _lookup(method)
    valid = setting_names(method)
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise SpgdError(f"unknown setting(s) {unknown} for method {method!r}; valid settings: {', '.join(valid)}")
    settings = {k: typed_setting(method, k, v) for k, v in settings.items()}
    if method in NO_OP_SETTINGS:
        name, value, text = NO_OP_SETTINGS[method]
        if name in settings and settings[name] == value:
            raise SpgdError(f"refusing {method} with {text}")
    return cls(**{**settings, **fixed})


__all__ = [
    "Classical",
    "DAPS",
    "DDRM",
    "DiffPIR",
    "DPS",
    "METHODS",
    "PiGDM",
    "REDDiff",
    "Result",
    "SPGD",
    "Stats",
    "adm_update",
    "check_methods",
    "directional_cosine",
    "karras_sigmas",
    "linear_lr",
    "make_sampler",
    "setting_defaults",
    "setting_names",
    "typed_setting",
    "ve_euler_factors",
]
