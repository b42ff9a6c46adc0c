"""Latent diffusion priors (spgd.priors.latent): a tiny random Stable-Diffusion-style folder built with diffusers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

import spgd  # noqa: E402
from spgd.api import run_sampler  # noqa: E402
from spgd.errors import SpgdError  # noqa: E402
from spgd.operators.latent import LatentOperator  # noqa: E402
from spgd.priors import load_prior  # noqa: E402
from spgd.priors.base import CallablePrior  # noqa: E402
from spgd.priors.latent import LatentPrior  # noqa: E402
from spgd.samplers import make_sampler  # noqa: E402
from spgd.samplers.base import CostMeter, likelihood_grad  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: 2 threads on a shared machine are slower
EMB_LEN, EMB_DIM = 5, 8


def _vae() -> torch.nn.Module:
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1, latent_channels=4,
        norm_num_groups=4, sample_size=16,
    )


def make_folder(root: Path, prediction: str = "epsilon", conditional: bool = True, seed: int = 0) -> Path:
    """unet/ (UNet2DConditionModel or UNet2DModel, 4 latent channels), vae/ (AutoencoderKL, factor 2),
    scheduler/ (DDPM, SD's scaled_linear betas) and the empty-prompt embedding file."""
    torch.manual_seed(seed)
    if conditional:
        unet = diffusers.UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=EMB_DIM, norm_num_groups=4, attention_head_dim=2,
        )
    else:
        unet = diffusers.UNet2DModel(
            sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
        )
    unet.save_pretrained(root / "unet")
    _vae().save_pretrained(root / "vae")
    diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        clip_sample=False, prediction_type=prediction,
    ).save_pretrained(root / "scheduler")
    if conditional:
        from safetensors.torch import save_file

        save_file({"embedding": torch.randn(1, EMB_LEN, EMB_DIM)}, str(root / "empty_prompt_embedding.safetensors"))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def prior(folder) -> LatentPrior:
    return load_prior(f"sd:{folder}")


def test_loads_from_the_folder(folder, prior):
    assert isinstance(prior, LatentPrior)
    assert prior.img_channels == 3 and prior.latent_channels == 4
    assert prior.codec.factor == 2 and prior.num_downsamples == 2  # VAE x2, UNet x2: sides multiple of 4
    assert prior.latent_shape((2, 3, 16, 12)) == (2, 4, 8, 6)
    assert load_prior(folder).description == prior.description  # a plain latent folder path is recognised too
    with pytest.raises(SpgdError, match="multiples of the VAE's factor 2"):
        prior.latent_shape((1, 3, 15, 16))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_denoiser_matches_scheduler_x0(tmp_path, prediction):
    root = make_folder(tmp_path, prediction)
    prior = load_prior(f"sd:{root}")
    unet = diffusers.UNet2DConditionModel.from_pretrained(root / "unet").eval()
    sched = diffusers.DDPMScheduler.from_pretrained(root / "scheduler")
    from safetensors.torch import load_file

    emb = load_file(str(root / "empty_prompt_embedding.safetensors"))["embedding"]
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for t in (0, 10, 250, 600, 999):
        z_t = torch.randn(2, 4, 8, 8, generator=g)
        with torch.no_grad():
            out = unet(z_t, t, encoder_hidden_states=emb.expand(2, -1, -1)).sample
            ref = sched.step(out, t, z_t).pred_original_sample
            abar = sched.alphas_cumprod[t].double()
            sigma = float(((1 - abar) / abar).sqrt())
            mine = prior.denoise(z_t / abar.sqrt().float(), sigma)
        rel = float((mine - ref).norm() / ref.norm())
        worst = max(worst, rel)
    assert worst < 1e-5, worst


def test_likelihood_gradient_matches_finite_differences(prior):
    g = torch.Generator().manual_seed(2)
    op = spgd.make_operator("inpainting_random", noise_sigma=0.0, drop=0.5, seed=0)
    x = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    y = op.forward(x)
    lat_op = LatentOperator(op, prior.codec, x.shape)
    z = torch.randn(1, 4, 8, 8, generator=g) * 2.0
    sigma = 1.5
    _, grad, _ = likelihood_grad(prior, lat_op, z, sigma, y, CostMeter(torch.device("cpu"), 1))

    def loss(v):
        with torch.no_grad():
            return float((lat_op.forward(prior.denoise(v.double().float(), sigma)) - y).double().pow(2).sum())

    for k in range(3):
        d = torch.randn(z.shape, generator=g)
        d = d / d.norm()
        h = 1e-2
        fd = (loss(z + h * d) - loss(z - h * d)) / (2 * h)
        an = float((grad * d).sum())
        # float32 network: the central difference carries ~1e-3 relative rounding; measured here: <= 2.5e-3 of |an|
        assert abs(fd - an) <= 5e-3 * float(grad.norm()), (k, fd, an, float(grad.norm()))


def test_checkpointing_and_bf16_keep_the_gradient(folder, prior):
    plain = prior
    ckpt = load_prior(f"sd:{folder}?checkpointing=all")
    bf16 = load_prior(f"sd:{folder}?precision=bf16")
    op = spgd.make_operator("inpainting_box", noise_sigma=0.0, box_size=6, margin=2)
    y = op.forward(torch.zeros(1, 3, 16, 16) + 0.3)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    grads = []
    for p in (plain, ckpt, bf16):
        lat_op = LatentOperator(op, p.codec, (1, 3, 16, 16))
        grads.append(likelihood_grad(p, lat_op, z, 2.0, y, CostMeter(torch.device("cpu"), 1))[1])
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)  # recomputation, same gradient
    rel = float((grads[2] - grads[0]).norm() / grads[0].norm())
    assert 0 < rel < 0.1  # bf16 runs (differs by rounding only)


@pytest.mark.parametrize("method", ["spgd", "spgd-official", "dps", "daps"])
def test_every_method_runs_on_z_and_returns_images(prior, method):
    op = spgd.make_operator("inpainting_random", noise_sigma=0.01, drop=0.5, seed=0)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    y = op.measure(x, torch.Generator().manual_seed(5))
    settings = {"dps": {"steps": 4}, "daps": {"steps": 2, "ode_steps": 2, "langevin_steps": 3}}.get(
        method, {"steps": 3, "warmup_steps": 2})
    result = spgd.restore(y, op, prior, method=method, generator=torch.Generator().manual_seed(0), **settings)
    assert result.x.shape == (2, 3, 16, 16) and result.latent.shape == (2, 4, 8, 8)
    assert torch.isfinite(result.x).all()
    assert torch.allclose(result.x, prior.decode(result.latent))
    st = result.stats
    assert st.decoder_calls >= st.vjps + 1  # every likelihood term decodes, and the result is decoded once
    if method == "spgd":
        # 3 levels x 2 warm-up VJPs, 1 fresh denoise per level; decodes: 6 VJPs + the final check_fit + 1 = 8
        assert (st.vjps, st.denoiser_calls, st.decoder_calls) == (6, 9, 8)
    if method == "daps":
        assert st.operator_grads == 2 * 3 and st.decoder_calls == 2 * 3 + 2


def test_sigma_max_lowered_to_the_prior_range(prior):
    op = spgd.make_operator("inpainting_random", noise_sigma=0.01, drop=0.5, seed=0)
    y = op.forward(torch.zeros(1, 3, 16, 16))
    with pytest.warns(UserWarning, match="sigma_max=100"):
        run_sampler(make_sampler("spgd", steps=2, warmup_steps=1), y, op, prior, x_shape=(1, 3, 16, 16))


def test_refusals(folder, tmp_path):
    with pytest.raises(SpgdError, match="unknown option 'foo=1'"):
        load_prior(f"sd:{folder}?foo=1")
    with pytest.raises(SpgdError, match="needs a prompt embedding"):
        load_prior(f"sd:{folder}?guidance=7.5")
    with pytest.raises(SpgdError, match="precision must be one of"):
        load_prior(f"sd:{folder}?precision=fp16")
    with pytest.raises(SpgdError, match="checkpointing takes"):
        load_prior(f"sd:{folder}?checkpointing=text")
    with pytest.raises(SpgdError, match="not a latent diffusion folder"):
        load_prior(f"sd:{tmp_path}")
    bare = tmp_path / "bare"
    make_folder(bare)
    (bare / "empty_prompt_embedding.safetensors").unlink()
    try:
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(SpgdError, match="needs the empty-prompt embedding"):
            load_prior(f"sd:{bare}")


def test_guidance_combines_two_branches(folder, tmp_path):
    emb = tmp_path / "prompt.pt"
    torch.save(torch.randn(1, EMB_LEN, EMB_DIM, generator=torch.Generator().manual_seed(6)), emb)
    p1 = load_prior(f"sd:{folder}?prompt={emb}")  # w = 1: the prompt branch alone
    p3 = load_prior(f"sd:{folder}?prompt={emb},guidance=3")
    u = load_prior(f"sd:{folder}")
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        du, d1, d3 = (p.denoise(z, 2.0) for p in (u, p1, p3))
    assert torch.allclose(d3, du + 3 * (d1 - du), atol=1e-5)  # linear in the network output, so in x0 too
    assert not torch.allclose(d1, du)


def test_unconditional_latent_unet2dmodel(tmp_path):
    prior = load_prior(f"sd:{make_folder(tmp_path, conditional=False)}")
    op = spgd.make_operator("inpainting_random", noise_sigma=0.01, drop=0.5, seed=0)
    y = op.forward(torch.zeros(1, 3, 16, 16))
    result = spgd.restore(y, op, prior, steps=2, warmup_steps=1, sigma_max=float(prior.sigma_max))
    assert result.x.shape == (1, 3, 16, 16)


def test_spgd_beats_the_measurement_on_an_analytic_latent_case(folder):
    """Random UNet weights carry no image prior, so this uses an analytic latent prior, z ~ N(0, I) with
    D(z; sigma) = z / (1 + sigma^2) (exact), composed with the tiny random VAE decoder loaded from the folder:
    images x = decode(z), half the pixels dropped. Asserts the mean PSNR over seeds beats the measurement's."""
    from spgd.metrics import psnr

    codec = load_prior(f"sd:{folder}").codec
    gauss = CallablePrior(lambda z, s: z / (1 + s.reshape(-1, 1, 1, 1) ** 2))
    prior = LatentPrior(gauss, codec)
    gains = []
    for seed in range(3):
        z_true = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(100 + seed))
        with torch.no_grad():
            x = codec.decode(z_true)
        op = spgd.make_operator("inpainting_random", noise_sigma=0.01, drop=0.5, seed=seed)
        y = op.measure(x, torch.Generator().manual_seed(seed))
        result = spgd.restore(y, op, prior, steps=30, warmup_steps=5, lr=0.5, sigma_max=10.0, sigma_min=0.05,
                              generator=torch.Generator().manual_seed(seed))
        to01 = lambda t: ((t.clamp(-1, 1) + 1) / 2)  # noqa: E731
        gains.append(float(psnr(to01(result.x), to01(x)) - psnr(to01(y), to01(x))))
    assert sum(gains) / len(gains) > 1.0, gains


def test_models_describes_the_latent_folder(folder):
    from spgd.priors.formats import inspect_model

    info = inspect_model(f"sd:{folder}")
    assert info.format.startswith("diffusers latent diffusion pipeline folder")
    assert (info.channels, info.size_multiple, info.resolution) == (3, 4, 16)
    assert info.sigma_max == pytest.approx(14.61, abs=0.01)
    assert "--prior sd:" in info.command()
