"""Per-task settings: the benchmark operator, SPGD's paper settings and each baseline's released settings, one
TOML file per task, with their sources.

A preset is a plain dict::

    {"task": "super_resolution",
     "protocol": "spgd",                                      # whose measurement protocol (see PROTOCOLS)
     "operator": {"scale": 4, "noise_sigma": 0.01},          # keywords of spgd.make_operator(task, ...)
     "sampler": {"steps": 200, "lr": 7.0, ...},               # SPGD's settings (paper values)
     "methods": {"dps": {"lr": 0.3, ...}},                    # a method's released settings ([methods.<name>])
     "all": {},                                               # --set NAME=VALUE: every method that has NAME
     "set": {}}                                               # --set METHOD.NAME=VALUE: one method

``sampler`` holds the settings of SPGD and its ablations (the methods built on the SPGD class); another
method (DPS, DAPS) starts from its own defaults and ``methods.<name>``. What a method gets, later winning:
its class defaults, ``sampler`` (SPGD family), ``methods.<name>``, the bare overrides, its scoped overrides.
Overrides (``--set key=value``) are routed by name: ``operator.kernel_size=31``, ``spgd.beta=0.5`` (one
method) explicitly, or a bare ``lr=2`` (= ``sampler.lr=2``): a sampler setting name first, which then applies
to every method of the run that has that setting, then an operator parameter name.

A protocol is the measurement a paper reports with: ``spgd`` (the file's ``[operator]``: the SPGD configs'
noise levels), ``dps`` or ``daps`` (``[protocols.<name>]`` replaces some of it, e.g. noise 0.05 everywhere).

>>> preset = load_preset("gaussian_blur")
>>> preset = apply_overrides(preset, ["steps=50", "kernel_size=31"])
>>> sampler_settings(preset, "spgd")["steps"], preset["operator"]["kernel_size"]
(50, 31)
>>> sampler_settings(load_preset("gaussian_blur"), "dps")["lr"], load_preset("gaussian_blur", "daps")["operator"]["noise_sigma"]
(0.3, 0.05)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..errors import SpgdError
from ..operators import TASKS, task_defaults, typed_param
from ..samplers import METHODS, setting_defaults, typed_setting

PRESET_DIR = Path(__file__).resolve().parent

#: operator parameters that are not overridden: a run gives them otherwise
RESERVED_OPERATOR_KEYS = {
    "seed": "the operator's seed follows the run's seed (image i uses seed + i)",
    "mask": "give the mask file as mask=PATH",
    "kernel": "give the kernel file as kernel=PATH",
    "kernel_code": "kernel codes are drawn from the run's seed",
    "network": "give the network weights with weights=PATH",
}

#: measurement protocols: whose noise levels (and operator settings) a run uses
PROTOCOLS = ("spgd", "dps", "daps")

#: sampler settings a run sets itself
RESERVED_SAMPLER_KEYS = {"progress": "progress bars follow the run's console"}


def preset_path(task: str) -> Path:
    """The TOML file of `task`'s preset."""
    if task not in TASKS:
        raise SpgdError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return PRESET_DIR / f"{task}.toml"


def load_preset(task: str, protocol: str = "spgd") -> dict:
    """The preset of `task` under `protocol` (see the module doc) as a dict."""
    path = preset_path(task)
    if protocol not in PROTOCOLS:
        raise SpgdError(f"unknown protocol {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}")
    if not path.is_file():
        raise SpgdError(f"preset file for task {task!r} is missing: {path}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SpgdError(f"cannot read preset {path}: {e}") from None
    unknown = sorted(set(data) - {"task", "operator", "sampler", "methods", "protocols"})
    if unknown:
        raise SpgdError(f"preset {path} has unknown section(s) {unknown}; allowed: operator, sampler, methods, protocols")
    if data.get("task", task) != task:
        raise SpgdError(f"preset {path} is for task {data['task']!r}, not {task!r}")
    operator = dict(data.get("operator", {}))
    if protocol != "spgd":
        if protocol not in data.get("protocols", {}):
            raise SpgdError(f"task {task!r} has no {protocol!r} protocol: that paper does not report it "
                            f"(protocols of {task}: {', '.join(['spgd', *data.get('protocols', {})])})")
        operator.update(data["protocols"][protocol])
    return {
        "task": task,
        "protocol": protocol,
        "operator": operator,
        "sampler": dict(data.get("sampler", {})),
        "methods": {k: dict(v) for k, v in data.get("methods", {}).items()},
        "all": {},
        "set": {},
    }


# ----------------------------------------------------------------------------------------------------------
# names and defaults


def _all_methods(methods: Optional[Sequence[str]]) -> list[str]:
    if methods is None:
        return list(METHODS)
    for m in methods:
        if m not in METHODS:
            raise SpgdError(f"unknown method {m!r}; valid methods: {', '.join(METHODS)}")
    return list(methods)


def sampler_keys(methods: Optional[Sequence[str]] = None) -> list[str]:
    """Sampler setting names accepted by any of `methods` (default: all methods), in a stable order."""
    seen: dict[str, None] = {}
    for m in _all_methods(methods):
        for k in setting_defaults(m):
            if k not in RESERVED_SAMPLER_KEYS:
                seen[k] = None
    return list(seen)


def operator_keys(task: str) -> list[str]:
    """Operator parameter names of `task` that an override may set."""
    return [k for k in task_defaults(task) if k not in RESERVED_OPERATOR_KEYS]


def uses_spgd_preset(method: str) -> bool:
    """Whether `method` is SPGD or one of its ablations (built on the SPGD class): it takes [sampler]."""
    return METHODS[_all_methods([method])[0]][0] is METHODS["spgd"][0]


def sampler_settings(preset: dict, method: str) -> dict:
    """The settings `method` gets from a preset, later winning: [sampler] (SPGD family only), its own
    [methods.<method>] (released values), the bare overrides it accepts, its scoped overrides."""
    names = set(setting_defaults(method))
    settings = dict(preset.get("sampler", {})) if uses_spgd_preset(method) else {}
    settings = {k: v for k, v in settings.items() if k in names}
    for layer in (preset.get("methods", {}).get(method, {}), preset.get("all", {}), preset.get("set", {}).get(method, {})):
        unknown = sorted(set(layer) - names) if layer is not preset.get("all") else []
        if unknown:
            raise SpgdError(
                f"setting(s) {unknown} are not settings of method {method!r}; valid: {', '.join(sorted(names))}"
            )
        settings.update({k: v for k, v in layer.items() if k in names})
    return settings


# ----------------------------------------------------------------------------------------------------------
# overrides


def parse_value(text: str) -> Any:
    """An override's value: true/false -> bool, none -> None, integers, floats, "a,b" -> list, else the string."""
    s = text.strip()
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if "," in s:
        return [parse_value(part) for part in s.split(",")]
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def _valid_keys_text(task: str, methods: Optional[Sequence[str]]) -> str:
    s = ", ".join(sampler_keys(methods))
    o = ", ".join(operator_keys(task))
    return f"sampler settings: {s}; operator parameters of {task}: {o or '(none)'}"


def apply_overrides(preset: dict, overrides: Iterable[str], methods: Optional[Sequence[str]] = None) -> dict:
    """A copy of `preset` with ``key=value`` overrides applied (see the module doc for routing).

    `methods` limits the bare sampler names to those of the methods in use (default: every method).
    Raises SpgdError for a malformed override, an unknown key (listing the valid ones) or a wrongly typed value.
    """
    task = preset["task"]
    out = copy.deepcopy(preset)
    for section in ("methods", "all", "set"):
        out.setdefault(section, {})
    op_defaults = task_defaults(task)
    s_names = sampler_keys(methods)
    for item in overrides:
        key, scope, name, value = _split_override(item, task, methods)
        if not scope:
            scope = "sampler" if name in s_names else "operator" if name in op_defaults else ""
        if name in RESERVED_OPERATOR_KEYS and scope == "operator":
            raise SpgdError(f"{key!r} cannot be overridden: {RESERVED_OPERATOR_KEYS[name]}")
        if name in RESERVED_SAMPLER_KEYS and scope != "operator":
            raise SpgdError(f"{key!r} cannot be overridden: {RESERVED_SAMPLER_KEYS[name]}")
        if scope == "operator":
            out["operator"][name] = _operator_value(key, name, value, task, op_defaults)
        elif scope == "sampler":
            out["all"][name] = _sampler_value(key, name, value, methods, s_names)
        elif scope in METHODS:
            out["set"].setdefault(scope, {})[name] = _method_value(key, scope, name, value, methods)
        else:
            raise SpgdError(f"unknown setting {key!r}; valid keys are {_valid_keys_text(task, methods)}")
    return out


def overrides_for(method: str, overrides: Iterable[str], task: str, methods: Sequence[str]) -> list[str]:
    """The overrides of a run of `methods` that concern `method` alone: its own (METHOD.NAME), the bare or
    sampler.NAME settings it has, and the operator's; a run of `method` alone takes the same settings from
    them as the run of `methods` gives it.

    >>> overrides_for("spgd", ["lr=2", "dps.lr=0.5", "langevin_steps=5", "kernel_size=9"], "gaussian_blur",
    ...               ["spgd", "dps", "daps"])
    ['lr=2', 'kernel_size=9']
    """
    names = setting_defaults(method)
    s_names = sampler_keys(methods)
    out = []
    for item in overrides:
        _, scope, name, _ = _split_override(item, task, methods)
        if not scope:
            scope = "sampler" if name in s_names else "operator"
        if scope == method or scope == "operator" or (scope == "sampler" and name in names):
            out.append(item)
    return out


def _split_override(item: str, task: str, methods: Optional[Sequence[str]]) -> tuple[str, str, str, Any]:
    """``[scope.]name=value`` -> (key, scope or "", name, parsed value); SpgdError if malformed or the scope
    is none of operator, sampler or a method."""
    key, eq, text = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise SpgdError(f"an override is key=value, got {item!r}")
    value = parse_value(text)
    scope, _, name = key.rpartition(".")
    if scope and scope not in ("operator", "sampler") and scope not in METHODS:
        raise SpgdError(
            f"unknown scope {scope!r} in {key!r}; use operator.NAME, sampler.NAME, METHOD.NAME "
            f"(methods: {', '.join(METHODS)}) or a bare name ({_valid_keys_text(task, methods)})"
        )
    return key, scope, name, value


def _operator_value(key: str, name: str, value: Any, task: str, op_defaults: dict[str, Any]) -> Any:
    """`value` for operator parameter `name` of `task`, typed by the operators (spgd.operators.typed_param)."""
    if name not in op_defaults:
        raise SpgdError(
            f"unknown operator parameter {name!r} for task {task!r}; "
            f"valid: {', '.join(operator_keys(task)) or '(none)'}"
        )
    return typed_param(task, name, value)


def _sampler_value(key: str, name: str, value: Any, methods: Optional[Sequence[str]], s_names: list[str]) -> Any:
    """`value` for the bare sampler setting `name`, typed by the first method that has it (the samplers type
    their settings: spgd.samplers.typed_setting)."""
    if name not in s_names:
        used = f" of method(s) {', '.join(methods)}" if methods is not None else ""
        raise SpgdError(f"unknown sampler setting {name!r}; valid settings{used}: {', '.join(s_names)}")
    method = next(m for m in _all_methods(methods) if name in setting_defaults(m))
    return typed_setting(method, name, value)


def _method_value(key: str, method: str, name: str, value: Any, methods: Optional[Sequence[str]]) -> Any:
    """`value` for `method`'s setting `name` (METHOD.NAME=value), typed by the samplers."""
    if methods is not None and method not in methods:  # it would be silently ignored
        raise SpgdError(
            f"override {key}: method {method!r} is not run (methods: {', '.join(methods)}); add it to the "
            "methods or drop the override"
        )
    if name not in setting_defaults(method):
        raise SpgdError(f"unknown setting {name!r} for method {method!r}; valid: {', '.join(setting_defaults(method))}")
    return typed_setting(method, name, value)


__all__ = [
    "PRESET_DIR",
    "PROTOCOLS",
    "apply_overrides",
    "load_preset",
    "operator_keys",
    "overrides_for",
    "parse_value",
    "preset_path",
    "sampler_keys",
    "sampler_settings",
    "uses_spgd_preset",
]
