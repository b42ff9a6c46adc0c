"""An image operator seen from a latent space: A_z(z) = A(decode(z)).

A latent diffusion model's sampler state is a latent z, while the degradation A acts on images in [-1, 1].
`LatentOperator(op, codec)` composes the two, so every sampler's likelihood becomes

    ||A(decode(D(z; sigma))) - y||^2,

with the gradient running through the denoiser D and the VAE decoder (Rout et al., "Solving Linear Inverse
Problems Provably via Posterior Sampling with Latent Diffusion Models", arXiv 2307.00619, eq. for Latent-DPS;
Song et al., "Solving Inverse Problems with Latent Diffusion Models via Hard Data Consistency" (ReSample),
arXiv 2307.08123, Sec. 3). The sampler loop does not change: it is handed this operator instead of `op`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..errors import SpgdError


class LatentOperator:
    """forward(z) = op.forward(codec.decode(z)); measure(z, g) = op.measure(codec.decode(z), g).

    `codec` needs `decode(z) -> image`, `latent_shape(image_shape) -> latent shape` and a `decoder_calls`
    counter (see `spgd.priors.latent.LatentCodec`). `noise_sigma` and `random_parts` are the image operator's.
    The operator is not linear in z (the decoder is not), so it has no adjoint.
    """

    def __init__(self, op: Any, codec: Any, image_shape: Optional[Sequence[int]] = None):
        if not callable(getattr(op, "forward", None)):
            raise SpgdError(f"LatentOperator needs an image operator with forward(x), got {type(op).__name__}")
        if not callable(getattr(codec, "decode", None)):
            raise SpgdError(f"LatentOperator needs a codec with decode(z), got {type(codec).__name__}")
        self.op = op
        self.codec = codec
        self.image_shape = tuple(image_shape) if image_shape is not None else None

    @property
    def noise_sigma(self) -> float:
        return float(getattr(self.op, "noise_sigma", 0.0) or 0.0)

    def forward(self, z: Tensor) -> Tensor:
        """A(decode(z)); differentiable in z."""
        return self.op.forward(self.codec.decode(z))

    __call__ = forward

    def measure(self, z: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.op.measure(self.codec.decode(z), generator)

    def input_shape(self, y: Tensor) -> tuple:
        """The latent shape of the image A takes: the given image shape, else the operator's input_shape(y)."""
        shape = self.image_shape
        if shape is None:
            fn = getattr(self.op, "input_shape", None)
            shape = tuple(fn(y)) if callable(fn) else tuple(y.shape)
        return tuple(self.codec.latent_shape(shape))

    def random_parts(self) -> dict:
        fn = getattr(self.op, "random_parts", None)
        return fn() if callable(fn) else {}

    def __repr__(self) -> str:
        return f"LatentOperator({self.op!r})"
