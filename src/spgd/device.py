"""Which torch device a run uses: one rule for every command and for training."""

from __future__ import annotations

from typing import Optional, Union

import torch

from .errors import SpgdError


def resolve_device(name: Optional[Union[str, torch.device]]) -> torch.device:
    """--device: None or 'auto' = CUDA when available, else the CPU; an unusable device is an SpgdError.

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
            raise SpgdError(f"device {name!r} requested but CUDA is not available; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpgdError(f"device {name!r} does not exist; {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise SpgdError(f"device {name!r} requested but MPS is not available")
    return dev
