"""CPU cost of one latent SPGD level (N warm-up VJPs through UNet + VAE decoder, one fresh denoise) with the tiny
random latent folder of tests/test_latent.py. Usage: python benchmarks/latent_level.py [SIDE ...] (image sides)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import spgd  # noqa: E402
from test_latent import make_folder  # noqa: E402


def main(sides: list[int]) -> None:
    torch.set_num_threads(1)
    root = make_folder(Path(tempfile.mkdtemp()) / "sd")
    prior = spgd.load_prior(f"sd:{root}")
    for side in sides:
        op = spgd.make_operator("inpainting_random", noise_sigma=0.01, drop=0.5, seed=0)
        y = op.forward(torch.zeros(1, 3, side, side))
        settings = dict(steps=1, warmup_steps=5, sigma_max=10.0, sigma_min=1.0)
        spgd.restore(y, op, prior, **settings)  # warm-up run
        times = []
        for _ in range(3):
            t = time.perf_counter()
            r = spgd.restore(y, op, prior, **settings)
            times.append(time.perf_counter() - t)
        st = r.stats
        print(f"{side}x{side} image, latent {prior.latent_shape((1, 3, side, side))[1:]}: one level "
              f"{min(times) * 1e3:.1f} ms (best of 3), {st.vjps} VJPs, {st.denoiser_calls} denoiser calls, "
              f"{st.decoder_calls} decoder calls (incl. the final fit check and decode)")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [16, 64])
