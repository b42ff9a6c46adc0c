"""Denoising PSNR of a prior on a folder of clean images at several noise levels, beside classical denoisers.

    python benchmarks/denoise_prior.py ../shared/data/ffhq-demo --prior default

Prints a Markdown table: PSNR (dB, mean over images) of the noisy input, the prior's denoiser D(x + sigma*n),
the Wiener filter of the analytic Gaussian prior (`spgd.priors.GaussianPrior.default()`), and the best
Gaussian smoothing (kernel std chosen per noise level on these images: an oracle for that classical filter).
Noise levels are in [-1, 1] image units; the noise of image i is drawn from seed i.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import spgd
from spgd.io import list_images, load_image, to_unit
from spgd.metrics import psnr
from spgd.operators.blur import blur, gaussian_kernel
from spgd.priors import GaussianPrior

SIGMAS = (0.05, 0.1, 0.2, 0.5, 1.0)
SMOOTHING_STDS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images")
    ap.add_argument("--prior", default="default")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    prior = spgd.load_prior(args.prior)
    wiener = GaussianPrior.default()
    x = torch.cat([load_image(p)[0] for p in list_images(args.images)])
    t0 = time.time()
    rows = []
    for sigma in SIGMAS:
        noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(i)) for i in range(len(x))])
        noisy = x + sigma * noise
        score = lambda z: psnr(to_unit(z.clamp(-1, 1)), to_unit(x)).mean().item()  # noqa: E731
        with torch.no_grad():
            d = torch.cat([prior.denoise(noisy[i : i + 1], sigma) for i in range(len(x))])
        smooth = max(
            (score(blur(noisy, gaussian_kernel(2 * int(3 * s) + 1, s).float())), s) for s in SMOOTHING_STDS
        )
        rows.append((sigma, score(noisy), score(d), score(wiener.denoise(noisy, sigma)), smooth))
    print(f"images: {len(x)} from {args.images}; prior: {args.prior}; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {time.time() - t0:.0f} s")
    print()
    print("| sigma | noisy | prior D | Wiener (Gaussian prior) | best Gaussian smoothing (std) |")
    print("|---|---|---|---|---|")
    for sigma, n, d, w, (s, std) in rows:
        print(f"| {sigma} | {n:.2f} | {d:.2f} | {w:.2f} | {s:.2f} ({std}) |")


if __name__ == "__main__":
    main()
