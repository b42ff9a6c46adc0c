"""How images were degraded: the benchmark's operators, available by task name.

>>> op = make_operator("super_resolution")        # x4 bicubic, noise 0.01
>>> op = make_operator("inpainting_box", seed=3)  # 128x128 box, noise 0.05, image i uses seed 3 + i
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Tuple

from ..errors import SpgdError
from ..values import kind_of, typed
from .base import LinearOperator, Operator, adjointness_error
from .blur import Blur, GaussianBlur, MotionBlur, gaussian_kernel, motion_kernel
from .hdr import HighDynamicRange
from .identity import Denoising
from .inpaint import InpaintingBox, InpaintingRandom
from .nonlinear_blur import KernelWizard, NonlinearBlur
from .phase import PhaseRetrieval
from .resize import SuperResolution

#: the task names of the benchmark, in the order of the paper's tables
TASKS: Tuple[str, ...] = (
    "super_resolution",
    "gaussian_blur",
    "motion_blur",
    "inpainting_box",
    "inpainting_random",
    "phase_retrieval",
    "hdr",
    "nonlinear_blur",
    "denoising",
)

#: other accepted names: `identity` = denoising, `blur` = blur with a user kernel (needs kernel=)
ALIASES: Dict[str, str] = {"identity": "denoising", "blur": "blur"}

_BUILDERS: Dict[str, Callable[..., Operator]] = {
    "super_resolution": SuperResolution,
    "gaussian_blur": GaussianBlur,
    "motion_blur": MotionBlur,
    "inpainting_box": InpaintingBox,
    "inpainting_random": InpaintingRandom,
    "phase_retrieval": PhaseRetrieval,
    "hdr": HighDynamicRange,
    "nonlinear_blur": NonlinearBlur,
    "denoising": Denoising,
    "blur": Blur,
}

#: measurement noise of the benchmark per task (std on images in [-1, 1])
NOISE_SIGMA: Dict[str, float] = {
    "super_resolution": 0.01,
    "gaussian_blur": 0.01,
    "motion_blur": 0.01,
    "inpainting_random": 0.01,
    "inpainting_box": 0.05,
    "phase_retrieval": 0.05,
    "nonlinear_blur": 0.05,
    "hdr": 0.05,
    "denoising": 0.05,
    "blur": 0.01,
}


def task_defaults(task: str) -> Dict[str, Any]:
    """The keyword parameters `make_operator(task, ...)` accepts with their defaults (None: required), and the
    task's benchmark noise level as noise_sigma."""
    params = inspect.signature(_BUILDERS[_canonical(task)]).parameters
    out = {k: (None if p.default is inspect.Parameter.empty else p.default) for k, p in params.items()}
    out["noise_sigma"] = NOISE_SIGMA[_canonical(task)]
    return out


def typed_param(task: str, name: str, value: Any) -> Any:
    """`value` for parameter `name` of `task`, typed as its default (spgd.values.typed); a size given as (h, w)
    where the default is one int stays a pair."""
    defaults = task_defaults(task)
    if name not in defaults:
        raise SpgdError(f"unknown operator parameter {name!r} for task {task!r}; valid: {', '.join(defaults)}")
    default = defaults[name]
    if value is None or (isinstance(value, (list, tuple)) and kind_of(default) == "int"):
        return value
    return typed(name, kind_of(default), value)


def task_params(task: str) -> Tuple[str, ...]:
    """The keyword parameters `make_operator(task, ...)` accepts."""
    return tuple(inspect.signature(_BUILDERS[_canonical(task)]).parameters)


def _canonical(task: str) -> str:
    name = ALIASES.get(task, task) if isinstance(task, str) else task
    if name not in _BUILDERS:
        valid = ", ".join(TASKS + tuple(ALIASES))
        raise SpgdError(f"unknown task {task!r}; valid tasks: {valid}")
    return name


def make_operator(task: str, **params: Any) -> Operator:
    """The operator of `task` with the benchmark's setting and noise level, unless overridden by `params`.

    Tasks: super_resolution (scale 4), gaussian_blur (kernel 61, std 3.0), motion_blur (kernel 61,
    intensity 0.5), inpainting_box (box 128, margin 16), inpainting_random (drop 0.8), phase_retrieval
    (oversample 2.0), hdr (scale 2), nonlinear_blur (needs weights=GOPRO_wVAE.pth), denoising; aliases
    identity (= denoising) and blur (user kernel=). `noise_sigma=` overrides the task's noise level.
    """
    name = _canonical(task)
    valid = task_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise SpgdError(f"unknown parameter(s) {', '.join(unknown)} for task {task!r}; valid: {', '.join(valid)}")
    signature = inspect.signature(_BUILDERS[name]).parameters
    missing = [p for p, v in signature.items() if v.default is inspect.Parameter.empty and p not in params]
    if missing:
        raise SpgdError(f"task {task!r} needs parameter(s) {', '.join(missing)} (e.g. kernel=PATH for blur)")
    params.setdefault("noise_sigma", NOISE_SIGMA[name])
    return _BUILDERS[name](**params)


__all__ = [
    "ALIASES",
    "Blur",
    "Denoising",
    "GaussianBlur",
    "HighDynamicRange",
    "InpaintingBox",
    "InpaintingRandom",
    "KernelWizard",
    "LinearOperator",
    "MotionBlur",
    "NOISE_SIGMA",
    "NonlinearBlur",
    "Operator",
    "PhaseRetrieval",
    "SuperResolution",
    "TASKS",
    "adjointness_error",
    "gaussian_kernel",
    "make_operator",
    "motion_kernel",
    "task_params",
    "typed_param",
]
