# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # spgd in a notebook: restore a face, compare, look inside, bring your own problem and model
#
# This notebook runs top to bottom on a CPU in a few minutes, offline, with the prior bundled with spgd. It
#
# 1. loads the bundled prior and a demo face, and blurs the face;
# 2. restores it with SPGD and two baselines (DPS, and the classical Tikhonov solve), and plots them with their
#    PSNR/SSIM;
# 3. shows the gradient dynamics that motivate SPGD (the angles between its likelihood and denoising steps);
# 4. **your own inverse problem**: colourisation, an operator written here in a few lines, used with no change to
#    the library;
# 5. **your own model**: any function `f(x, sigma) -> x0_hat` is a prior, and so is a diffusers `UNet2DModel`
#    folder on disk.
#
# It is stored as `examples/walkthrough.py` (jupytext's percent format: diffs read like code) and built into
# `examples/walkthrough.ipynb` with `jupytext --to ipynb examples/walkthrough.py`. Install with
# `pip install -e '.[notebook]'` (and `'.[diffusers]'` for part 5b).
#
# The bundled prior is small and trained on little data: it shows how the methods behave, not the quality of
# a 256x256 FFHQ network. With `ffhq_10m.pt` (the DPS checkpoint) on disk, use
# `spgd.load_prior("ffhq256", checkpoint="ffhq_10m.pt")` instead and raise `SIZE` to 256 and `STEPS` to 200.

# %%
import importlib.util
import os
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's, without ipywidgets

import spgd
from spgd import io
from spgd.data import DEMO_IMAGE
from spgd.diagnostics.plots import plot_angles
from spgd.diagnostics.telemetry import GradientTelemetry
from spgd.presets import load_preset, sampler_settings

# the budgets: a newcomer's run, or the test suite's (SPGD_NOTEBOOK_QUICK=1 executes it at tiny ones)
QUICK = os.environ.get("SPGD_NOTEBOOK_QUICK") == "1"
SIZE = 64 if QUICK else 128  # pixels a side
STEPS = 3 if QUICK else 10  # SPGD's annealing levels K (the paper: 200)
WARMUP = 1 if QUICK else 2  # SPGD's likelihood warm-up steps N per level (the paper: 5)
FACE = Path(os.environ.get("SPGD_FACE", DEMO_IMAGE))  # any photo of a face; the default ships with spgd
# torch's threads wait for each other at every operation: on a machine busy with other work, fewer threads run
# many times faster (the command line applies the same rule; SPGD_THREADS=N chooses)
threads = spgd.device.apply_threads(spgd.device.choose_threads())
print(f"{threads.threads} torch thread(s)" + (f": {threads.note}" if threads.note else ""))
started, started_cpu = time.perf_counter(), time.process_time()


def to01(img):
    """An image in [-1, 1] as [0, 1] (what the metrics and matplotlib take)."""
    return io.to_unit(img).clamp(0, 1)


def show(images, titles, size=2.6):
    """Images (1, C, H, W) in [-1, 1] side by side."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size + 0.4))
    for ax, img, title in zip(axes, images, titles):
        a = to01(img)[0].permute(1, 2, 0).cpu().numpy()
        ax.imshow(a[..., 0] if a.shape[-1] == 1 else a, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    plt.tight_layout()
    plt.show()


def scores(x_hat, x):
    """PSNR (dB) and SSIM against the clean image."""
    return float(spgd.metrics.psnr(to01(x_hat), to01(x))[0]), float(spgd.metrics.ssim(to01(x_hat), to01(x))[0])


# %% [markdown]
# ## 1. The bundled prior, a demo face, a blur
#
# `spgd.load_prior("default")` is the network that ships with spgd (no download). An operator is the known
# degradation: `spgd.make_operator(task, **params)` gives the benchmark's setting of each task (here a 61x61
# Gaussian blur of std 3 with noise 0.01), and `measure` blurs and adds the noise from a seeded generator.

# %%
prior = spgd.load_prior("default")
x, notes = io.load_image(FACE, size=(SIZE, SIZE), resize=True)
blur = spgd.make_operator("gaussian_blur")
y = blur.measure(x, torch.Generator().manual_seed(1))
print(f"prior: {type(prior).__name__}; image {tuple(x.shape)} from {FACE.name}; noise sigma {blur.noise_sigma}")
show([x, y], ["clean", "blurred + noise (PSNR %.2f dB)" % scores(y, x)[0]])

# %% [markdown]
# ## 2. Restore with SPGD and two baselines
#
# `spgd.restore(y, operator, prior, method, **settings)` runs one method. The settings below are the task's
# preset (the same as `spgd restore --task gaussian_blur` uses), with fewer steps. SPGD records its gradient
# dynamics through the callback (`GradientTelemetry`), which part 3 plots. DPS is given as many network calls as
# SPGD; the classical solve is a Tikhonov-regularised inverse, no network at all.

# %%
preset = load_preset("gaussian_blur")


def settings(method, **more):
    """The preset's settings of `method`, with `more` on top (steps, ...)."""
    return {**sampler_settings(preset, method), **more}


telemetry = GradientTelemetry()
results, seconds = {}, {}
runs = {
    "spgd": settings("spgd", steps=STEPS, warmup_steps=WARMUP),
    "dps": settings("dps", steps=STEPS * (WARMUP + 1)),  # about SPGD's number of network calls
    "classical": settings("classical"),
}
for method, kw in runs.items():
    t0 = time.perf_counter()
    result = spgd.restore(y, blur, prior, method, generator=torch.Generator().manual_seed(0),
                          callback=telemetry if method == "spgd" else None, **kw)
    seconds[method] = time.perf_counter() - t0
    results[method] = result.x
    print(f"{method:10s} PSNR %.2f dB, SSIM %.3f, {result.stats.denoiser_calls} network calls, "
          f"{seconds[method]:.1f} s" % scores(result.x, x))

show([x, y, *results.values()], ["clean", "measurement"] + [
    f"{m}\n%.2f dB, SSIM %.3f" % scores(r, x) for m, r in results.items()])

# %% [markdown]
# ## 3. The gradient dynamics
#
# At every level SPGD takes likelihood steps g_l (towards the measurement) and a denoising step g_d (towards
# the prior). The left curve is the angle between them (near 90° or above: they fight); the other two are how
# much each direction swings from one level to the next. SPGD's warm-up and momentum exist to calm the
# likelihood swing (red). `spgd diagnose` draws the same figure for several methods.

# %%
summary = telemetry.summary()
print({k: (round(v, 1) if isinstance(v, float) else v) for k, v in summary.items() if "angle" in k or "swing" in k})
angles_png = plot_angles({"spgd": telemetry}, Path(tempfile.mkdtemp()) / "angles.png", title="gaussian_blur")
plt.figure(figsize=(6, 3.6))
plt.imshow(plt.imread(angles_png))
plt.axis("off")
plt.show()

# %% [markdown]
# ## 4. Your own inverse problem: colourisation
#
# An operator is any object with `forward(x)` (the noise-free measurement), `measure(x, generator)` and
# `noise_sigma`; `input_shape(y)` tells the samplers the shape of x when it differs from y's. Nothing else is
# needed for SPGD and DPS. Methods that need more ask for it by name: the classical solve needs a
# `pseudo_inverse(y)`, which colourisation has in closed form (the grey value repeated in R, G and B).

# %%
class Colourise:
    """y = the grey image, the mean of R, G and B (B, 1, H, W), plus noise."""

    def __init__(self, noise_sigma: float = 0.01):
        self.noise_sigma = noise_sigma

    def forward(self, x):
        return x.mean(dim=1, keepdim=True)

    def measure(self, x, generator=None):
        y = self.forward(x)
        return y + self.noise_sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)

    def input_shape(self, y):
        return (y.shape[0], 3, *y.shape[-2:])

    def pseudo_inverse(self, y, **_):
        return y.expand(-1, 3, -1, -1)  # the least-norm x with mean(x) = y


grey = Colourise()
y_grey = grey.measure(x, torch.Generator().manual_seed(2))
colour = {}
for method in ("spgd", "classical"):
    kw = dict(steps=STEPS, warmup_steps=WARMUP, lr=1.0) if method == "spgd" else {}
    colour[method] = spgd.restore(y_grey, grey, prior, method, generator=torch.Generator().manual_seed(0), **kw).x
    print(f"{method:10s} PSNR %.2f dB, SSIM %.3f" % scores(colour[method], x))
show([x, y_grey, *colour.values()], ["clean", "grey measurement"] + [
    f"{m}\n%.2f dB" % scores(r, x)[0] for m, r in colour.items()])

# %% [markdown]
# ## 5. Your own model
#
# ### 5a. A function
#
# A prior is anything that denoises: `f(x, sigma) -> x0_hat`, the estimate of the clean image from
# x = x0 + sigma * noise. Here: the bundled network averaged with its own mirror image (a test-time ensemble).
# Your own network, or any model wrapped in a function, plugs in the same way.

# %%
def mirrored(x_noisy, sigma):
    """The bundled denoiser, averaged over a left-right flip."""
    return 0.5 * (prior.denoise(x_noisy, sigma) + prior.denoise(x_noisy.flip(-1), sigma).flip(-1))


own = spgd.restore(y, blur, mirrored, "spgd", generator=torch.Generator().manual_seed(0),
                   **settings("spgd", steps=STEPS, warmup_steps=WARMUP))
print("spgd with the mirrored prior: PSNR %.2f dB, SSIM %.3f" % scores(own.x, x),
      f"({own.stats.denoiser_calls} calls of the function; mean |difference| from the bundled prior's result "
      f"{float((own.x - results['spgd']).abs().mean()):.4f})")
show([results["spgd"], own.x], ["spgd, bundled prior", "spgd, mirrored prior"])

# %% [markdown]
# ### 5b. A diffusers folder
#
# A Hugging Face diffusers `UNet2DModel` saved on disk (its `config.json` and weights, with the scheduler's
# config) loads with `spgd.load_prior(folder)`, nothing downloaded. To keep this notebook offline it writes a
# tiny **untrained** one to a temporary folder, so its restoration is noise: with your own trained folder (for
# example `google/ddpm-celebahq-256` downloaded beforehand), the same two lines restore with it.

# %%
if importlib.util.find_spec("diffusers") is None:
    print("diffusers is not installed: pip install 'spgd[diffusers]' to load diffusers folders")
else:
    import diffusers

    folder = Path(tempfile.mkdtemp()) / "tiny-ddpm"
    torch.manual_seed(0)
    diffusers.UNet2DModel(sample_size=SIZE, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                          down_block_types=("DownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(folder)
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder)

    folder_prior = spgd.load_prior(folder)  # your folder here
    untrained = spgd.restore(y, blur, folder_prior, "spgd", generator=torch.Generator().manual_seed(0),
                             **settings("spgd", steps=STEPS, warmup_steps=WARMUP))
    print(f"{type(folder_prior).__name__} from {folder.name}: restored {tuple(untrained.x.shape)}, "
          f"{untrained.stats.denoiser_calls} network calls (an untrained network: expect noise)")

# %%
print(f"notebook ran in {time.perf_counter() - started:.0f} s, {time.process_time() - started_cpu:.0f} s of CPU "
      f"(SIZE {SIZE}, STEPS {STEPS}, WARMUP {WARMUP}, {torch.get_num_threads()} torch threads)")
