"""The ADM UNet, its VP preconditioning and checkpoint loading, checked against the authors' outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET

from spgd.errors import SpgdError
from spgd.priors import ARCHITECTURES, Prior, UNetModel, VPPrecond, load_prior, save_unet
from spgd.priors.checkpoint import load_unet_checkpoint
from spgd.priors.unet import count_parameters

FIXTURES = ["unet_small_reference.pt", "unet_small_rb2_reference.pt"]

TINY = TINY_UNET


def tiny_unet(seed: int = 0, **overrides) -> UNetModel:
    torch.manual_seed(seed)
    model = UNetModel(**{**TINY, **overrides})
    # Zero-initialised output convolutions would hide most of the network: randomise every parameter.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("name", FIXTURES)
def test_matches_reference(fixtures_dir: Path, name: str):
    ref = torch.load(fixtures_dir / name, map_location="cpu", weights_only=True)
    net = UNetModel(**ref["config"])
    net.load_state_dict(ref["state_dict"], strict=True)
    prior = VPPrecond(net)
    inputs, sigmas = ref["inputs"], torch.as_tensor(ref["sigmas"])  # (S, B, 3, H, W), (S,)
    with torch.no_grad():  # all noise levels in one batch, one sigma per sample
        out = prior(inputs.flatten(0, 1), sigmas.repeat_interleave(inputs.shape[1])).view_as(inputs)
    for i, sigma in enumerate(sigmas.tolist()):
        assert rel_err(out[i], ref["outputs"][i]) < 1e-4, f"sigma={sigma}"


def test_fixture_keys_match_exactly(fixtures_dir: Path):
    ref = torch.load(fixtures_dir / FIXTURES[0], map_location="cpu", weights_only=True)
    ours = UNetModel(**ref["config"]).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in ref["state_dict"].items()}


def test_per_sample_sigma_and_vp_range():
    prior = VPPrecond(tiny_unet())
    x = torch.randn(2, 3, 16, 16)
    both = prior(x, torch.tensor([0.5, 3.0]))
    assert torch.allclose(both[0], prior(x[:1], 0.5)[0], atol=1e-5)
    assert torch.allclose(both[1], prior(x[1:], 3.0)[0], atol=1e-5)
    assert prior.sigma_min == pytest.approx(1e-3, rel=1e-3)
    assert prior.sigma_max == pytest.approx(152.167, rel=1e-4)
    t = torch.tensor([1e-3, 0.2, 0.7, 1.0], dtype=torch.float64)
    assert torch.allclose(prior.sigma_inv(prior.sigma(t)), t)


def test_gradients_reach_x_only():
    prior = VPPrecond(tiny_unet())
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    (g,) = torch.autograd.grad(prior(x, 1.0).square().sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert all(not p.requires_grad for p in prior.parameters())
    assert all(p.grad is None for p in prior.parameters())
    prior.train()
    assert not prior.net.training


def test_float64_input():
    prior = VPPrecond(tiny_unet())
    x = torch.randn(2, 3, 16, 16)
    out64 = prior(x.double(), torch.tensor([0.3, 2.0], dtype=torch.float64))
    assert out64.dtype == torch.float64
    assert rel_err(out64, prior(x, torch.tensor([0.3, 2.0]))) < 1e-5


def test_other_sizes_and_bad_sizes():
    prior = VPPrecond(tiny_unet())
    assert prior(torch.randn(1, 3, 24, 40), 1.0).shape == (1, 3, 24, 40)
    with pytest.raises(SpgdError, match=r"image size 40x25 \(width x height\) is not divisible by 2.*1 down-samplings"):
        prior(torch.randn(1, 3, 25, 40), 1.0)
    with pytest.raises(SpgdError, match=r"250x250 \(width x height\) is not divisible by 32"):
        with torch.device("meta"):
            net = UNetModel(**ARCHITECTURES["ffhq256"])
        net.check_input(torch.empty(1, 3, 250, 250, device="meta"))
    with pytest.raises(SpgdError, match=r"\(B, 3, H, W\)"):
        prior(torch.randn(1, 1, 16, 16), 1.0)


def test_attention_orders_differ_and_run():
    x = torch.randn(1, 3, 16, 16)
    t = torch.tensor([500.0])
    legacy = tiny_unet(use_new_attention_order=False)
    new = tiny_unet(use_new_attention_order=True)
    assert legacy.state_dict().keys() == new.state_dict().keys()
    new.load_state_dict(legacy.state_dict())
    out_legacy, out_new = legacy(x, t), new(x, t)
    assert out_new.shape == (1, 6, 16, 16) and torch.isfinite(out_new).all()
    assert not torch.allclose(out_legacy, out_new)


def test_attention_orders_against_explicit_formula():
    from spgd.priors.unet import AttentionBlock

    torch.manual_seed(0)
    b, heads, ch, length = 2, 2, 16, 10
    qkv = torch.randn(b, 3 * heads * ch, length)

    def attend(q, k, v):  # (N, ch, T) each
        w = torch.softmax(torch.einsum("nct,ncs->nts", q, k) / ch**0.5, dim=-1)
        return torch.einsum("nts,ncs->nct", w, v)

    legacy = AttentionBlock(heads * ch, num_head_channels=ch, new_order=False)
    q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
    assert torch.allclose(legacy.attention(qkv), attend(q, k, v).reshape(b, -1, length), atol=1e-5)

    new = AttentionBlock(heads * ch, num_head_channels=ch, new_order=True)
    q, k, v = (t.reshape(b * heads, ch, length) for t in qkv.chunk(3, dim=1))
    assert torch.allclose(new.attention(qkv), attend(q, k, v).reshape(b, -1, length), atol=1e-5)


def test_preset_parameter_counts():
    assert abs(count_parameters(ARCHITECTURES["ffhq256"]) - 93.6e6) < 0.1e6
    assert abs(count_parameters(ARCHITECTURES["imagenet256"]) - 552.8e6) < 0.5e6


def test_class_cond_needs_a_label():
    net = UNetModel(**{**TINY, "class_cond": True, "num_classes": 5})
    assert net.label_emb.weight.shape == (5, 4 * TINY["num_channels"])
    with pytest.raises(SpgdError, match="class-conditional"):
        net(torch.zeros(1, 3, 16, 16), torch.zeros(1))
    with pytest.raises(SpgdError, match=r"\[0, 4\], got 5"):
        net.set_class_label(5)


def test_save_load_round_trip(tmp_path: Path):
    prior = VPPrecond(tiny_unet(), beta_d=19.9, beta_min=0.1)
    path = save_unet(tmp_path / "sub" / "tiny.pt", prior, note="test", steps=3)
    assert [p.name for p in path.parent.iterdir()] == ["tiny.pt"]  # no temp files left behind
    meta = torch.load(path, weights_only=True)
    assert meta["format"] == "spgd-unet" and meta["note"] == "test" and meta["steps"] == 3
    loaded = load_prior(path)
    assert isinstance(loaded, VPPrecond) and isinstance(loaded.net, UNetModel)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x, 0.7), prior(x, 0.7))
    assert not any(p.requires_grad for p in loaded.parameters())
    # The bare UNet loads into its architecture given as a config.
    net = load_unet_checkpoint(path, prior.net.config)
    assert torch.equal(net.state_dict()["out.2.weight"], prior.net.state_dict()["out.2.weight"])


def test_raw_state_dict_prefix_and_wrappers(tmp_path: Path):
    net = tiny_unet()
    for i, wrap in enumerate([lambda sd: sd, lambda sd: {"state_dict": sd}, lambda sd: {"ema": sd}]):
        sd = {"module." + k: v for k, v in net.state_dict().items()}
        torch.save(wrap(sd), tmp_path / f"raw{i}.pt")
        loaded = load_unet_checkpoint(tmp_path / f"raw{i}.pt", TINY)
        assert torch.equal(loaded.state_dict()["out.2.weight"], net.state_dict()["out.2.weight"])


def test_raw_state_dict_infers_preset(tmp_path: Path, monkeypatch):
    # Stand a tiny config in for a preset so the test needs no 93M-parameter network.
    monkeypatch.setitem(ARCHITECTURES, "tiny", TINY)
    net = tiny_unet()
    torch.save(net.state_dict(), tmp_path / "raw.pt")
    prior = load_prior(tmp_path / "raw.pt")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(prior(x, 1.0), VPPrecond(net)(x, 1.0))
    prior = load_prior("tiny", checkpoint=tmp_path / "raw.pt")
    assert isinstance(prior, VPPrecond)


def test_raw_state_dict_unknown_architecture(tmp_path: Path):
    torch.save(tiny_unet().state_dict(), tmp_path / "raw.pt")
    with pytest.raises(SpgdError, match="matches none of the known architectures.*missing keys"):
        load_prior(tmp_path / "raw.pt")


def test_missing_file(tmp_path: Path):
    with pytest.raises(SpgdError, match="not found.*nothere.pt"):
        load_prior(tmp_path / "nothere.pt")
    with pytest.raises(SpgdError, match="not found"):
        load_prior("ffhq256", checkpoint=tmp_path / "nothere.pt")


def test_corrupt_file(tmp_path: Path):
    bad = tmp_path / "garbage.pt"
    for garbage in (b"\x00\x01 this is not a checkpoint \xff" * 10, b"hello world", b""):
        bad.write_bytes(garbage)
        with pytest.raises(SpgdError, match="garbage.pt is not a readable PyTorch file"):
            load_prior(bad)


def test_pickled_object_refused(tmp_path: Path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": tiny_unet().state_dict(), "thing": Path("x")}, path)
    with pytest.raises(SpgdError, match=r"PosixPath.*weights_only=True\) refuses"):
        load_prior(path)


def test_wrong_architecture(tmp_path: Path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_unet().state_dict(), path)
    other = {**TINY, "num_res_blocks": 2, "num_channels": 64}
    with pytest.raises(SpgdError, match=r"does not fit.*missing keys: input_blocks\.\d.*shape mismatches"):
        load_unet_checkpoint(path, other)
    with pytest.raises(SpgdError, match=r"does not fit architecture 'ffhq256'.*unexpected keys"):
        load_prior("ffhq256", checkpoint=path)


def test_names(tmp_path: Path):
    with pytest.raises(SpgdError, match="unknown prior 'celeba'.*default, gaussian, ffhq256, imagenet256"):
        load_prior("celeba")
    with pytest.raises(SpgdError, match="needs checkpoint="):
        load_prior("imagenet256")
    assert isinstance(load_prior("gaussian"), Prior)


def test_default_falls_back_to_gaussian(monkeypatch, tmp_path: Path):
    from spgd.priors import checkpoint

    monkeypatch.setattr(checkpoint, "DEFAULT_WEIGHTS", tmp_path / "default.pt")
    with pytest.warns(UserWarning, match="Gaussian"):
        prior = load_prior("default", device="cpu")
    assert type(prior).__name__ == "GaussianPrior"
    save_unet(tmp_path / "default.pt", VPPrecond(tiny_unet()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(load_prior("default"), VPPrecond)


def test_edm_scaling_formulas_and_bounded_high_noise(tmp_path: Path):
    """scaling="edm": D = c_skip x + c_out F(c_in x) with EDM's c_skip, c_out, c_in; same network call as "eps"
    otherwise. At sigma 100 an eps network's output error is multiplied by 100, an edm one's by sigma_data."""
    net = tiny_unet()
    eps, edm = VPPrecond(net), VPPrecond(net, scaling="edm", sigma_data=0.5)
    x = torch.randn(2, 3, 16, 16)
    sigma = torch.tensor([0.05, 100.0])
    s = sigma[:, None, None, None]
    c_noise = 999 * eps.sigma_inv(sigma)
    with torch.no_grad():
        f = net(x / (s**2 + 0.25).sqrt(), c_noise)[:, :3]
        expected = 0.25 / (s**2 + 0.25) * x - s * 0.5 / (s**2 + 0.25).sqrt() * f
        assert rel_err(edm(x, sigma), expected) < 1e-5
        assert rel_err(eps(x, sigma), x - s * net(x / (s**2 + 1).sqrt(), c_noise)[:, :3]) < 1e-5
        big = 100 * torch.randn(2, 3, 16, 16)
        assert edm(big, 100.0).abs().max() < 0.5 * net(big / 100, torch.full((2,), 999.0)).abs().max() + 1.0
        assert (eps(big, 100.0) - big).abs().max() > 10 * edm(big, 100.0).abs().max()
    # the scaling travels with the file
    save_unet(tmp_path / "edm.pt", VPPrecond(net, scaling="edm", sigma_data=1.0))
    loaded = load_prior(tmp_path / "edm.pt")
    assert (loaded.scaling, loaded.sigma_data) == ("edm", 1.0)
    with pytest.raises(SpgdError, match="scaling must be one of"):
        VPPrecond(net, scaling="x0")
