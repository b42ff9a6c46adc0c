"""Which torch device a run uses (one rule for every command and for training), and how records name it."""

from __future__ import annotations

import platform
from typing import Optional, Union

import torch

from .errors import SpgdError


def resolve_device(name: Optional[Union[str, torch.device]]) -> torch.device:
    """None or 'auto' = CUDA when available, else the CPU; an unusable device is an SpgdError.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise SpgdError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SpgdError(f"device {name!r} requested but CUDA is not available; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpgdError(f"device {name!r} does not exist; {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise SpgdError(f"device {name!r} requested but MPS is not available")
    return dev


def device_label(device: Union[str, torch.device]) -> str:
    """The hardware behind `device`, as records name it: "NVIDIA H100 80GB HBM3 (CUDA 12.4)", or
    "CPU (x86_64, 2 threads)" (torch's thread count: it decides the speed of a CPU run)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
