"""The one seeding rule of every command, so that a result never depends on batch size, order, sharding,
resuming or which command produced it.

Image i of what a command restores (the sorted folder of `spgd eval`, `spgd sweep` and `spgd diagnose`, the
first images of `spgd bench --check-quality`; the measurement file of `spgd restore` and the bundled photo
of `spgd demo` are image 0) has the seed ``s_i = seed + i``, and:

- its operator's random part (mask, motion kernel, kernel code) is drawn from ``s_i`` (an operator built for
  a batch gets the seed of its first image and gives image j of the batch ``seed + j``, so a batch holds
  consecutive images only);
- its measurement noise comes from a CPU generator seeded ``derive_seed(s_i, 0)`` (the same on every device);
- restoration sample s of it comes from a generator on the run's device seeded ``derive_seed(s_i, 1, s)``.

So image i restored by `spgd diagnose` is image i restored by `spgd eval` with the same --seed, task,
settings and prior.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

__all__ = ["derive_seed", "image_seed", "noise_seed", "sample_generators", "sample_seed"]


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy SeedSequence: well mixed, platform independent)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def image_seed(seed: int, index: int) -> int:
    """s_i of image `index` of a run with `seed`; its operator's random part is drawn from it."""
    return seed + index


def noise_seed(image_seed: int) -> int:
    """The seed of the CPU generator of an image's measurement noise."""
    return derive_seed(image_seed, 0)


def sample_seed(image_seed: int, sample: int) -> int:
    """The seed of the sampler's generator for restoration sample `sample` of an image."""
    return derive_seed(image_seed, 1, sample)


def sample_generators(image_seeds: Sequence[int], sample: int, device: Union[str, torch.device]
                      ) -> list[torch.Generator]:
    """One generator per image of a batch (on `device`) for restoration sample `sample`."""
    return [torch.Generator(device=device).manual_seed(sample_seed(s, sample)) for s in image_seeds]
