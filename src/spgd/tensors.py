"""Tensor helpers that belong to no room: every room may use them, none of them knows about the others."""

from __future__ import annotations

from torch import Tensor


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so a (B,) tensor broadcasts against a (B, ...) tensor (k-diffusion's
    `append_dims`).

    >>> import torch
    >>> append_dims(torch.ones(2), 4).shape
    torch.Size([2, 1, 1, 1])
    """
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))
