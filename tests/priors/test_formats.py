"""Model formats people bring: diffusers folders, class-conditional ADM, deepinv and InverseBench files, EDM
pickles. Each is a tiny random model in the format's own layout, checked against that format's own reference
computation; nothing is downloaded."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import diffusers  # in the `test` extra (`make test` installs it): a missing one fails loudly, skips nothing
import pytest
import torch

from conftest import TINY_UNET

import spgd
from spgd.errors import SpgdError
from spgd.priors import ARCHITECTURES, UNetModel, VPPrecond, load_prior
from spgd.priors.checkpoint import infer_architecture
from spgd.priors.discrete import DiscreteSchedule, DiscreteTimePrior, betas_for, prediction_to_x0
from spgd.priors.unet import SCHEDULES


TINY_COND = {**TINY_UNET, "class_cond": True, "num_classes": 10}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (zero-initialised output layers would hide most of the network)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


# ------------------------------------------------------------------------------------------------ diffusers


def tiny_diffusers_unet(out_channels: int = 3, in_channels: int = 3, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomised(
        diffusers.UNet2DModel(
            sample_size=16, in_channels=in_channels, out_channels=out_channels, block_out_channels=(16, 32),
            layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8, **kw,
        )
    )


CASES = [  # (prediction_type, variance_type, beta_schedule)
    ("epsilon", "fixed_small", "linear"),
    ("epsilon", "learned_range", "linear"),  # learned-variance channels dropped
    ("v_prediction", "fixed_small", "scaled_linear"),
    ("sample", "fixed_small", "squaredcos_cap_v2"),
]


@pytest.mark.parametrize("prediction,variance,beta_schedule", CASES)
def test_diffusers_matches_scheduler_x0(tmp_path: Path, prediction: str, variance: str, beta_schedule: str):
    unet = tiny_diffusers_unet(6 if variance.startswith("learned") else 3)
    sched = diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule=beta_schedule, prediction_type=prediction,
        variance_type=variance, clip_sample=False,
    )
    unet.save_pretrained(tmp_path / "m")
    sched.save_pretrained(tmp_path / "m")
    prior = load_prior(tmp_path / "m")
    assert isinstance(prior, DiscreteTimePrior) and prior.prediction == prediction
    sigmas = ((1 - sched.alphas_cumprod) / sched.alphas_cumprod).sqrt()
    assert prior.sigma_min == pytest.approx(float(sigmas[0]), rel=1e-5)
    assert prior.sigma_max == pytest.approx(float(sigmas[-1]), rel=1e-5)
    gen = torch.Generator().manual_seed(1)
    for t in (0, 37, 500, 999):
        a = sched.alphas_cumprod[t]
        x0 = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            ref = sched.step(unet(x_t, t).sample, t, x_t).pred_original_sample  # the scheduler's x0
            d = prior(x_t / a.sqrt(), float(sigmas[t]))
        assert rel_err(d, ref) < 1e-5, (t, rel_err(d, ref))


def test_diffusers_pipeline_folder_bin_weights_and_old_attention_names(tmp_path: Path):
    unet = tiny_diffusers_unet()
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, prediction_type="epsilon")
    pipe = tmp_path / "pipe"
    unet.save_pretrained(pipe / "unet", safe_serialization=False)  # diffusion_pytorch_model.bin
    sched.save_pretrained(pipe / "scheduler")
    (pipe / "model_index.json").write_text('{"_class_name": "DDIMPipeline"}')
    assert (pipe / "unet" / "diffusion_pytorch_model.bin").is_file()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        want = load_prior(pipe)(x, 2.0)
        # the unet/ folder alone finds the scheduler in ../scheduler
        assert torch.equal(load_prior(pipe / "unet")(x, 2.0), want)
        # a file written by diffusers < 0.14 names attention weights query/key/value/proj_attn
        path = pipe / "unet" / "diffusion_pytorch_model.bin"
        sd = torch.load(path, weights_only=True)
        new_to_old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
        old = {}
        for k, v in sd.items():
            for new, o in new_to_old.items():
                if f".{new}." in k and "attentions" in k:
                    k = k.replace(f".{new}.", f".{o}.")
            old[k] = v
        assert any(".query." in k for k in old)
        torch.save(old, path)
        assert torch.equal(load_prior(pipe)(x, 2.0), want)


def test_diffusers_interpolates_between_timesteps(tmp_path: Path):
    unet = tiny_diffusers_unet()
    diffusers.DDPMScheduler().save_pretrained(tmp_path / "m")
    unet.save_pretrained(tmp_path / "m")
    prior = load_prior(tmp_path / "m")
    s = prior.schedule
    sig = s.sigmas
    mid = (sig[100].log() * 0.75 + sig[101].log() * 0.25).exp()  # a quarter of the way in log sigma
    t = s.sigma_to_t(mid[None])
    assert t.item() == pytest.approx(100.25, abs=1e-9)
    assert s.t_to_sigma(t).item() == pytest.approx(mid.item(), rel=1e-12)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        got = prior(x, float(mid))
        out = unet(x / (1 + mid**2).sqrt().float(), t.float()).sample
    assert rel_err(got, prediction_to_x0("epsilon", out, x, mid.float())) < 1e-6
    # sigma beyond the range clamps to the end timesteps
    assert s.sigma_to_t(torch.tensor([1e-6, 1e6])).tolist() == [0.0, 999.0]


def test_diffusers_missing_extra_is_one_line(tmp_path: Path, monkeypatch):
    unet = tiny_diffusers_unet()
    unet.save_pretrained(tmp_path / "m")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    with pytest.raises(SpgdError, match=r"pip install 'spgd\[diffusers\]'"):
        load_prior(tmp_path / "m")


def test_diffusers_bad_folders(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpgdError, match="not a diffusers model folder"):
        load_prior(tmp_path / "empty")
    unet = tiny_diffusers_unet()
    unet.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(SpgdError, match="holds no weights"):
        load_prior(tmp_path / "m")


def test_diffusers_class_conditional_and_gray(tmp_path: Path):
    unet = tiny_diffusers_unet(in_channels=1, out_channels=1, num_class_embeds=4)
    unet.save_pretrained(tmp_path / "m")
    diffusers.DDPMScheduler().save_pretrained(tmp_path / "m")
    p1, p2 = load_prior(tmp_path / "m", class_label=1), load_prior(tmp_path / "m", class_label=2)
    assert p1.img_channels == 1
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        assert rel_err(p1(x, 1.0), p2(x, 1.0)) > 1e-3
    with pytest.raises(SpgdError, match=r"\[0, 3\]"):
        load_prior(tmp_path / "m", class_label=4)
    with pytest.raises(SpgdError, match="1-channel"):
        p1(torch.randn(1, 3, 16, 16), 1.0)


# ----------------------------------------------------------------------------------- guided-diffusion / ADM


def test_real_presets_recognised_from_names_and_shapes():
    # Meta tensors: the published checkpoints' names and shapes, without their gigabytes.
    for name, config in ARCHITECTURES.items():
        with torch.device("meta"):
            sd = UNetModel(**config).state_dict()
        assert infer_architecture(sd) == name
    with torch.device("meta"):
        assert "label_emb.weight" in UNetModel(**ARCHITECTURES["imagenet256-cond"]).state_dict()


def test_class_conditional_adm(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "tiny", TINY_UNET)
    monkeypatch.setitem(ARCHITECTURES, "tiny-cond", TINY_COND)
    net = randomised(UNetModel(**TINY_COND))
    torch.save(net.state_dict(), tmp_path / "cond.pt")
    p3, p4 = load_prior(tmp_path / "cond.pt", class_label=3), load_prior(tmp_path / "cond.pt", class_label=4)
    assert isinstance(p3, VPPrecond) and p3.net.class_label == 3
    x, sigma = torch.randn(2, 3, 16, 16), torch.tensor([0.5, 3.0])
    with torch.no_grad():
        d3, d4 = p3(x, sigma), p4(x, sigma)
        assert rel_err(d3, d4) > 1e-3  # the label changes the output
        # reference: VP preconditioning around the network called with y = 3
        c_noise = 999 * p3.sigma_inv(sigma)
        ref = x - sigma[:, None, None, None] * net(x / (1 + sigma**2).sqrt()[:, None, None, None], c_noise,
                                                   y=torch.tensor([3, 3]))[:, :3]
    assert rel_err(d3, ref) < 1e-6
    with pytest.warns(UserWarning, match="using class 0"):
        p0 = load_prior(tmp_path / "cond.pt")
    assert p0.net.class_label == 0
    # the unconditional path is unchanged: same numbers as VPPrecond around the bare network
    plain = randomised(UNetModel(**TINY_UNET))
    torch.save(plain.state_dict(), tmp_path / "plain.pt")
    with torch.no_grad():
        assert torch.equal(load_prior(tmp_path / "plain.pt")(x, sigma), VPPrecond(plain)(x, sigma))
    with pytest.raises(SpgdError, match="not class-conditional"):
        load_prior(tmp_path / "plain.pt", class_label=1)


def test_cosine_schedule_preset_matches_guided_diffusion_x0(tmp_path: Path, monkeypatch):
    # 64x64_diffusion.pt was trained with the cosine schedule: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
    monkeypatch.setitem(ARCHITECTURES, "tiny-cond", TINY_COND)
    monkeypatch.setitem(SCHEDULES, "tiny-cond", "cosine")
    net = randomised(UNetModel(**TINY_COND))
    torch.save({"ema": net.state_dict()}, tmp_path / "c.pt")
    prior = load_prior(tmp_path / "c.pt", class_label=2)
    assert isinstance(prior, DiscreteTimePrior)
    abar = torch.cumprod(1 - betas_for("cosine", 1000), 0)
    for t in (0, 250, 999):
        x_t = torch.randn(1, 3, 16, 16)
        with torch.no_grad():
            eps = net(x_t, torch.tensor([float(t)]), y=torch.tensor([2]))[:, :3]
            ref = (x_t - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
            d = prior(x_t / abar[t].sqrt(), float(((1 - abar[t]) / abar[t]).sqrt()))
        assert rel_err(d, ref) < 1e-5


def test_deepinv_and_inversebench_layouts(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "tiny", TINY_UNET)
    net = randomised(UNetModel(**TINY_UNET))
    sd = net.state_dict()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    # deepinv DiffUNet: ADM names plus schedule buffers of the linear schedule -> the usual VP prior
    torch.save({**sd, "betas": betas.float(), "alphas_cumprod": torch.cumprod(1 - betas, 0).float()}, tmp_path / "d.pt")
    # InverseBench: every ADM name behind "model."
    torch.save({"model." + k: v for k, v in sd.items()}, tmp_path / "ib.pt")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        want = VPPrecond(net)(x, 1.5)
        assert torch.equal(load_prior(tmp_path / "d.pt")(x, 1.5), want)
        assert torch.equal(load_prior(tmp_path / "ib.pt")(x, 1.5), want)
    # buffers of another schedule are used as the schedule
    cos = betas_for("cosine", 1000)
    torch.save({**sd, "alphas_cumprod": torch.cumprod(1 - cos, 0)}, tmp_path / "d2.pt")
    p = load_prior(tmp_path / "d2.pt")
    assert isinstance(p, DiscreteTimePrior)
    assert p.sigma_max == pytest.approx(DiscreteSchedule.from_betas(cos).sigma_max)


def test_edm_pickle_refused_with_reason(tmp_path: Path):
    path = tmp_path / "edm-ffhq-64x64-uncond-vp.pkl"
    path.write_bytes(pickle.dumps({"ema": None}))
    with pytest.raises(SpgdError, match="unpickling one runs code.*callable prior"):
        load_prior(path)


# ------------------------------------------------------------------------------------------ restore on each


def _priors(tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.setitem(ARCHITECTURES, "tiny-cond", TINY_COND)
    monkeypatch.setitem(ARCHITECTURES, "tiny", TINY_UNET)
    net = randomised(UNetModel(**TINY_COND))
    torch.save({"model." + k: v for k, v in net.state_dict().items()}, tmp_path / "cond.pt")  # InverseBench-like
    betas = torch.linspace(1e-4, 0.02, 1000)
    plain = randomised(UNetModel(**TINY_UNET)).state_dict()
    torch.save({**plain, "betas": betas, "alphas_cumprod": torch.cumprod(1 - betas, 0)}, tmp_path / "deepinv.pt")
    unet = tiny_diffusers_unet(6)
    unet.save_pretrained(tmp_path / "dm")
    diffusers.DDPMScheduler(variance_type="learned_range", prediction_type="v_prediction").save_pretrained(tmp_path / "dm")
    gray = diffusers.UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8,
    )
    gray.save_pretrained(tmp_path / "gray")
    diffusers.DDPMScheduler().save_pretrained(tmp_path / "gray")
    return {
        "adm-cond": (load_prior(tmp_path / "cond.pt", class_label=1), 3),
        "deepinv": (load_prior(tmp_path / "deepinv.pt"), 3),
        "diffusers": (load_prior(tmp_path / "dm"), 3),
        "diffusers-gray": (load_prior(tmp_path / "gray"), 1),
    }


def test_restore_runs_on_each_format_non_square(tmp_path: Path, monkeypatch):
    for name, (prior, channels) in _priors(tmp_path, monkeypatch).items():
        op = spgd.make_operator("gaussian_blur", kernel_size=5, std=1.0, channels=channels)
        x = torch.rand(1, channels, 16, 24) * 2 - 1  # non-square
        y = op.measure(x, torch.Generator().manual_seed(0))
        result = spgd.restore(y, op, prior, steps=2, warmup_steps=1, lr=1.0, sigma_max=min(10.0, prior.sigma_max),
                              generator=torch.Generator().manual_seed(0))
        assert result.x.shape == x.shape, name
        assert torch.isfinite(result.x).all(), name


def test_a_config_and_state_dict_file_loads_like_the_network_it_describes(fixtures_dir):
    """The shared fixture network is stored as {"config": UNet keywords, "state_dict": ...} with no format tag:
    load_prior reads it as the VP-preconditioned network those keywords build."""
    import spgd
    from spgd.priors import UNetModel, VPPrecond

    path = fixtures_dir / "unet_small_reference.pt"
    ref = torch.load(path, weights_only=True)
    net = UNetModel(**ref["config"])
    net.load_state_dict(ref["state_dict"])
    loaded = spgd.load_prior(path)
    x = ref["inputs"][1]
    torch.testing.assert_close(loaded.denoise(x, float(ref["sigmas"][1])), VPPrecond(net).denoise(x, float(ref["sigmas"][1])))
    torch.testing.assert_close(loaded.denoise(x, float(ref["sigmas"][1])), ref["outputs"][1], rtol=1e-4, atol=1e-4)
