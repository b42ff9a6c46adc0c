"""The measured effect of each place where a method's release departs from its paper (issue 24).

Each pair runs the same images, operator, seeds and budget twice: with the release's rule (every method's default)
and with the paper's (the setting that selects it). Two problems:

- `gaussian`: 8 images of 64x64 drawn from the analytic Gaussian prior (the prior is exactly right), at the
  method's released budget (the preset's steps for the task);
- `faces`: the first 4 demo faces at 128x128 with the bundled default prior, at about 30 network calls.

Usage: python benchmarks/release_vs_paper.py [FACES_DIR]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import spgd
from spgd.io import list_images, load_image
from spgd.presets import load_preset, sampler_settings

# (method, setting, release value, paper value, task, what the difference is)
PAIRS = [
    ("diffpir", "start", "y", "noise", "gaussian_blur", "start from y noised to T-1 / from pure noise"),
    ("diffpir", "start", "y", "noise", "inpainting_random", "start from y noised to T-1 / from pure noise"),
    ("pigdm", "project", True, False, "inpainting_random", "x0_hat projected onto y, guidance masked / not"),
    ("reddiff", "output", "x0_pred", "mu", "inpainting_random", "return the last x0_pred / the mean mu"),
    ("reddiff", "output", "x0_pred", "mu", "gaussian_blur", "return the last x0_pred / the mean mu"),
    ("ddrm", "zero_singulars", "after", "null", "gaussian_blur", "zero singular values as 'after' / null space"),
]
CUT_STEPS = 30


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(spgd.metrics.psnr(((x.clamp(-1, 1) + 1) / 2).float(), ((ref + 1) / 2).float()).mean())


def problems(faces_dir: Path):
    gauss = spgd.load_prior("gaussian")
    x = torch.cat([gauss.sample((1, 3, 64, 64), torch.Generator().manual_seed(i)) for i in range(8)]).clamp(-1, 1)
    yield "gaussian", gauss, x, None
    files = list_images(faces_dir)[:4]
    faces = torch.cat([load_image(f, 128, resize=True)[0] for f in files])
    yield "faces", spgd.load_prior("default"), faces, CUT_STEPS


def main(argv: list[str]) -> int:
    faces_dir = Path(argv[0]) if argv else Path("../shared/data/ffhq-demo")
    torch.set_num_threads(2)
    print("| method | release / paper | task | problem | steps | PSNR release (dB) | PSNR paper (dB) | difference | "
          "rel-L2 between the outputs | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, prior, x, steps in problems(faces_dir):
        for method, key, release, paper, task, what in PAIRS:
            preset = load_preset(task)
            settings = sampler_settings(preset, method)
            if steps is not None:
                settings["steps"] = steps
            op_params = dict(preset["operator"])
            if task == "gaussian_blur" and x.shape[-1] < 2 * op_params.get("kernel_size", 61):
                op_params.update(kernel_size=13, std=3.0)  # the benchmark's 61 px kernel on a 64 px image: smaller
            op = spgd.make_operator(task, **op_params)  # random parts (masks) from image i's seed 0 + i
            y = op.measure(x, torch.Generator().manual_seed(1))
            t0 = time.perf_counter()
            out = {}
            for value in (release, paper):
                gens = [torch.Generator().manual_seed(100 + i) for i in range(x.shape[0])]
                out[value] = spgd.make_sampler(method, **{**settings, key: value}).run(y, op, prior, generator=gens).x
            a, b = out[release], out[paper]
            rel = float((a - b).norm() / a.norm())
            pa, pb = psnr(a, x), psnr(b, x)
            print(f"| {method} | {key}: {release} / {paper} ({what}) | {task} | {name} | {settings['steps']} | "
                  f"{pa:.2f} | {pb:.2f} | {pb - pa:+.2f} | {rel:.2e} | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
