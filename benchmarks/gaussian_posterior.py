"""Which methods sample the posterior and which approach its mean: every method on a problem whose posterior is
known exactly.

The analytic Gaussian prior (spgd.priors.GaussianPrior: a stationary 1/f^2 field, exact denoiser) and a circular
Gaussian blur with noise: the posterior is Gaussian, N(m, S), with m and the trace of S in closed form per DFT
frequency. Images are drawn from the prior itself, so the prior is exactly right. For each method's result x_hat we
report

- PSNR against the truth (on [-1, 1], peak-to-peak 2, no clipping: the prior's draws are not bounded);
- r = ||x_hat - m||^2 / tr(S): 0 for the posterior mean, 1 on average for an exact posterior sample (x_hat and the
  truth are then two independent draws of N(m, S), each tr(S) away from m);
- the data residual RMS(A x_hat - y) against the noise level.

The exact references: the posterior mean's PSNR (the MMSE estimate, the best any method can do on average), and
the expected PSNR of an exact posterior sample, 10 log10(4 / (mse(m) + tr(S) / N)).

Usage: python benchmarks/gaussian_posterior.py [--images 8] [--size 64] [--budget cut|released|both]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import spgd
from spgd.operators import gaussian_kernel
from spgd.presets import load_preset, sampler_settings
from spgd.priors import GaussianPrior

METHODS = ("spgd", "dps", "daps", "ddrm", "diffpir", "pigdm", "reddiff", "classical")

#: about 30 network calls each, as benchmarks/compare_methods.sh
CUT = {
    "spgd": dict(steps=10, warmup_steps=2),
    "dps": dict(steps=30),
    "daps": dict(steps=10, ode_steps=3, langevin_steps=50),
    "ddrm": dict(steps=30),
    "diffpir": dict(steps=30),
    "pigdm": dict(steps=30),
    "reddiff": dict(steps=30),
    "classical": {},
}


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    mse = (x - ref).double().flatten(1).pow(2).mean(1)
    return 10 * torch.log10(4 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--kernel", type=int, default=13)
    ap.add_argument("--std", type=float, default=3.0)
    ap.add_argument("--budget", choices=("cut", "released", "both"), default="both")
    args = ap.parse_args()
    torch.set_num_threads(2)

    prior = GaussianPrior.default()
    n, h = args.images, args.size
    x = torch.cat([prior.sample((1, 3, h, h), torch.Generator().manual_seed(i)) for i in range(n)])
    op = spgd.make_operator("blur", kernel=gaussian_kernel(args.kernel, args.std), padding="circular",
                            noise_sigma=args.noise)
    y = torch.cat([op.measure(x[i : i + 1], torch.Generator().manual_seed(1000 + i)) for i in range(n)])

    # the exact posterior N(m, S): per colour component and DFT frequency, a scalar Gaussian
    H = op._transfer(x)[0, 0]
    m = prior.posterior_mean(y, H, args.noise)
    p = prior.spectrum(h, h)
    tr_s = float((p * args.noise**2 / (H.abs().double() ** 2 * p + args.noise**2)).sum())
    d = 3 * h * h
    mmse_psnr = psnr(m, x)
    sample_psnr = 10 * torch.log10(4 / ((m - x).double().flatten(1).pow(2).mean(1) + tr_s / d))
    print(f"{n} images {h}x{h} drawn from the Gaussian prior, circular Gaussian blur {args.kernel}/{args.std}, "
          f"noise {args.noise}; tr(S)/N = {tr_s / d:.5f} (posterior std per pixel {math.sqrt(tr_s / d):.4f})\n")
    print("| budget | method | network calls | VJPs | PSNR (dB) | r = \\|x - m\\|^2 / tr(S) | \\|Ax-y\\| | s/img |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| exact | measurement y | | | {psnr(y, x).mean():.2f} | {float(((y - m).double().flatten(1).pow(2).sum(1) / tr_s).mean()):.2f} | | |")
    print(f"| exact | posterior mean m (MMSE) | | | {mmse_psnr.mean():.2f} | 0 | "
          f"{float((op.forward(m) - y).flatten(1).pow(2).mean(1).sqrt().mean()):.4f} | |")
    print(f"| exact | a posterior sample (expected) | | | {sample_psnr.mean():.2f} | 1 | | |")

    preset = load_preset("gaussian_blur")
    budgets = {"cut": CUT, "released": {k: {} for k in METHODS}}
    chosen = ("cut", "released") if args.budget == "both" else (args.budget,)
    for budget in chosen:
        for method in METHODS:
            settings = {**sampler_settings(preset, method), **budgets[budget][method]}
            if method == "daps" and budget == "released":
                settings["langevin_steps"] = 100
            sampler = spgd.make_sampler(method, **settings)
            gens = [torch.Generator().manual_seed(2000 + i) for i in range(n)]
            t0 = time.perf_counter()
            r = sampler.run(y, op, prior, generator=gens)
            sec = (time.perf_counter() - t0) / n
            ratio = (r.x - m).double().flatten(1).pow(2).sum(1) / tr_s
            res = (op.forward(r.x) - y).flatten(1).pow(2).mean(1).sqrt()
            failed = sum(r.stats.failed)
            note = f" ({failed} failed)" if failed else ""
            print(f"| {budget} | {method}{note} | {r.stats.denoiser_calls} | {r.stats.vjps} | {psnr(r.x, x).mean():.2f} "
                  f"| {ratio.mean():.2f} | {res.mean():.4f} | {sec:.2f} |")


if __name__ == "__main__":
    main()
