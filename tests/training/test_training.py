"""`spgd train`: a few steps on tiny generated images write a loadable prior, and resuming continues exactly."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, cli_error_line, run_cli

from spgd import load_prior
from spgd.errors import SpgdError
from spgd.io import save_image
from spgd.cli.options import prior_location
from spgd.experiment.train import TRAINED_WEIGHTS, TRAINING_STATE
from spgd.cli.train import add_arguments as add_train_arguments, run as run_train
from spgd.training.loop import SIGMA_HI, SIGMA_LO, _noise_levels, random_crops, train_prior

# The shared tiny UNet without attention inside its levels and without learned variance: the default network's
# code paths, fast enough for a test.
TINY = {**TINY_UNET, "learn_sigma": False, "attention_resolutions": "", "num_head_channels": 32}
FAST = dict(batch_size=4, crop=16, config=TINY, progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny runs: one thread avoids oversubscription


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory) -> Path:
    """Three small smooth colour images and one file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    gen = torch.Generator().manual_seed(0)
    for i, (h, w) in enumerate([(40, 48), (48, 36), (36, 36)]):
        coarse = torch.rand(1, 3, 6, 6, generator=gen) * 2 - 1
        save_image(torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear"), folder / f"im{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_train_writes_a_loadable_prior(images_dir: Path, tmp_path: Path):
    out = tmp_path / "prior.pt"
    with pytest.warns(UserWarning, match="broken.png"):
        meta = train_prior(images_dir, out, steps=20, checkpoint_every=10, **FAST)
    assert out.is_file() and (tmp_path / "prior.pt.ckpt").is_file()
    assert meta["steps"] == 20 and meta["finished"]
    assert meta["data"]["files"] == ["im0.png", "im1.png", "im2.png"]
    report = meta["report"]["psnr_db"]
    assert set(report) == {"0.05", "0.1", "0.2", "0.5", "1"}
    assert all(torch.isfinite(torch.tensor(list(row.values()))).all() for row in report.values())

    prior = load_prior(out)
    assert torch.load(out, weights_only=True)["training"]["steps"] == 20
    x = torch.randn(2, 3, 32, 48, requires_grad=True)  # another size than the crops
    y = prior(x, torch.tensor([0.1, 5.0]))
    assert y.shape == x.shape and torch.isfinite(y).all()
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert not any(p.requires_grad for p in prior.parameters())


def test_resume_continues_exactly(images_dir: Path, tmp_path: Path):
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    with pytest.warns(UserWarning):
        train_prior(images_dir, full, steps=30, checkpoint_every=0, **FAST)
        train_prior(images_dir, part, steps=20, checkpoint_every=0, **FAST)
        meta = train_prior(images_dir, part, steps=30, resume=True, **FAST)
    assert meta["steps"] == 30
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed EMA weights differ from an uninterrupted run"
    state = torch.load(tmp_path / "part.pt.ckpt", weights_only=True)
    assert state["step"] == 30


def test_cli_runs(images_dir: Path, tmp_path: Path, capsys):
    parser = add_train_arguments(argparse.ArgumentParser(prog="spgd train"))
    out = tmp_path / "cli"
    argv = [str(images_dir), "--out", str(out), "--steps", "3", "--crop", "16", "-q", "--batch-size", "2",
            "--training-state", str(tmp_path / "state.ckpt")]
    with pytest.warns(UserWarning):
        assert run_train(parser.parse_args(argv), ["train", *argv]) == 0
    assert (out / TRAINED_WEIGHTS).is_file() and (tmp_path / "state.ckpt").is_file()
    assert not (out / TRAINING_STATE).exists()  # --training-state put it elsewhere
    assert "held-out denoising PSNR" in capsys.readouterr().out


def test_cli_writes_a_run_folder_and_resumes_it(images_dir: Path, tmp_path: Path, capsys):
    """`spgd train --out RUN_DIR`: the weights, the checkpoint, settings.json and report.json inside; the
    weights load by file and by folder; the folder is continued with --resume, never overwritten."""
    run_dir = tmp_path / "my_prior"
    tiny = ["--steps", "3", "--crop", "16", "--batch-size", "2", "--channels", "32", "--device", "cpu", "-q"]
    code, out, err = run_cli(capsys, "train", images_dir, "--out", run_dir, *tiny)
    assert code == 0, err
    assert {p.name for p in run_dir.iterdir()} == {TRAINED_WEIGHTS, TRAINING_STATE, "settings.json", "report.json"}
    settings = json.loads((run_dir / "settings.json").read_text())
    assert {"command", "plan", "resolved", "versions", "command_line", "created"} == set(settings)
    assert settings["command_line"][:2] == ["spgd", "train"] and settings["plan"]["steps"] == 3
    assert settings["resolved"]["settings"]["steps"] == 3 and settings["resolved"]["data"]["split"]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["steps"] == 3 and set(report["psnr_db"]) == {"0.05", "0.1", "0.2", "0.5", "1"}
    assert f"wrote {run_dir / TRAINED_WEIGHTS}" in out
    from_file = load_prior(run_dir / TRAINED_WEIGHTS)
    from_folder = load_prior(run_dir)  # spgd.load_prior takes the run folder too
    assert all(torch.equal(a, b) for a, b in zip(from_file.state_dict().values(), from_folder.state_dict().values()))
    assert prior_location(str(run_dir)) == str(run_dir / TRAINED_WEIGHTS)  # --prior RUN_DIR, --init RUN_DIR
    code, out, err = run_cli(capsys, "models", run_dir)
    assert code == 0 and "spgd-unet" in out, err

    code, _, err = run_cli(capsys, "train", images_dir, "--out", run_dir, *tiny)
    cli_error_line(code, err, "already holds a trained prior", "--resume")
    code, _, err = run_cli(capsys, "train", images_dir, "--out", run_dir, *tiny[:-1], "--steps", "5", "--resume", "-v")
    assert code == 0, err
    assert f"training state: {run_dir / TRAINING_STATE}" in err  # -v: the detail lines
    assert torch.load(run_dir / TRAINING_STATE, weights_only=True)["step"] == 5
    assert json.loads((run_dir / "report.json").read_text())["steps"] == 5


def test_cli_out_file_of_earlier_versions_is_a_clear_error(images_dir: Path, tmp_path: Path, capsys):
    """--out FILE.pt (the form before run folders): an error naming the folder form, before any training; with
    that run's FILE.pt.ckpt beside it, the message says how to continue it."""
    old = tmp_path / "my_prior.pt"
    code, _, err = run_cli(capsys, "train", images_dir, "--out", old, "--steps", "1")
    cli_error_line(code, err, "--out is now the run folder", TRAINED_WEIGHTS, f"--out {tmp_path / 'my_prior'}")
    assert not old.exists() and not (tmp_path / "my_prior").exists()
    (tmp_path / "my_prior.pt.ckpt").write_bytes(b"")
    code, _, err = run_cli(capsys, "train", images_dir, "--out", old, "--steps", "1")
    cli_error_line(code, err, f"--resume --training-state {old}.ckpt")


def test_random_crops_cover_scales_and_sizes():
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 50, 70) * 2 - 1, torch.rand(3, 10, 12) * 2 - 1]  # the second is smaller than crop
    crops = random_crops(images, 16, 24, gen)
    assert crops.shape == (16, 3, 24, 24) and crops.abs().max() <= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0), "steps must be >= 1"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(crop=17), "crop must be a positive multiple of 2"),
        (dict(lr=-1.0), "lr must be in"),
        (dict(holdout_fraction=1.0), "holdout_fraction"),
        (dict(device="tpu9"), "device"),
        (dict(config={**TINY, "num_channels": 48}), "invalid UNet config"),
        (dict(uniform_fraction=1.5), "uniform_fraction"),
        (dict(p_std=0.0), "p_std"),
        (dict(init="nowhere.pt"), "nowhere.pt"),
        (dict(init="gaussian"), "not a UNet prior"),
        (dict(init="default", resume=True), "exclude each other"),
    ],
)
def test_bad_values(images_dir: Path, tmp_path: Path, kwargs: dict, message: str):
    settings = {**FAST, "steps": 1, **kwargs}
    with pytest.raises(SpgdError, match=message):
        train_prior(images_dir, tmp_path / "x.pt", **settings)


def test_bad_folders(tmp_path: Path, images_dir: Path):
    with pytest.raises(SpgdError, match="does not exist"):
        train_prior(tmp_path / "missing", tmp_path / "x.pt", steps=1, **FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpgdError, match="no image files"):
        train_prior(tmp_path / "empty", tmp_path / "x.pt", steps=1, **FAST)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"junk")
    with pytest.raises(SpgdError, match="could be read"), pytest.warns(UserWarning):
        train_prior(tmp_path / "junk", tmp_path / "x.pt", steps=1, **FAST)
    with pytest.raises(SpgdError, match="cannot resume"), pytest.warns(UserWarning):
        train_prior(images_dir, tmp_path / "fresh.pt", steps=2, resume=True, **FAST)


def test_init_starts_from_the_given_weights(images_dir: Path, tmp_path: Path):
    """--init: the network (and its config) come from the file; with a vanishing learning rate the result is
    that file's network."""
    first = tmp_path / "first.pt"
    with pytest.warns(UserWarning):
        train_prior(images_dir, first, steps=5, checkpoint_every=0, sigma_data=1.0, **FAST)
        meta = train_prior(images_dir, tmp_path / "tuned.pt", steps=2, checkpoint_every=0, lr=1e-12, init=first,
                           **{k: v for k, v in FAST.items() if k != "config"})
    assert meta["settings"]["init"] == "first.pt"
    assert (meta["settings"]["scaling"], meta["settings"]["sigma_data"]) == ("edm", 1.0)  # the init file's
    a, b = weights(first), weights(tmp_path / "tuned.pt")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    fresh = tmp_path / "fresh.pt"
    with pytest.warns(UserWarning):
        train_prior(images_dir, fresh, steps=2, checkpoint_every=0, lr=1e-12, seed=5, **FAST)
    c = weights(fresh)
    assert not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)  # the check above can fail


def test_noise_levels_cover_the_sampler_range_with_a_uniform_share():
    gen = torch.Generator().manual_seed(0)
    plain = _noise_levels(4000, -1.0, 1.5, 0.0, gen)
    mixed = _noise_levels(4000, -1.0, 1.5, 0.3, gen)
    assert (plain > 7).float().mean() < 0.04  # the log-normal alone hardly trains where samplers start
    assert (mixed > 7).float().mean() > 0.06
    uniform = mixed[:1200]
    assert uniform.min() >= SIGMA_LO and uniform.max() <= SIGMA_HI
    # log-uniform: each decade of [SIGMA_LO, SIGMA_HI] holds about the same share
    decades = torch.histc(uniform.log10(), bins=4, min=-2.5, max=1.5)
    assert decades.min() > 0.7 * decades.max()


def test_train_bf16_autocast_and_half_precision_file(images_dir: Path, tmp_path: Path):
    """--precision bf16 trains under autocast (the loss still falls from its start) and --save-dtype fp16
    writes float16 weights that load back as a float32 prior giving the same denoiser up to fp16 rounding."""
    out32, out16 = tmp_path / "p32.pt", tmp_path / "p16.pt"
    with pytest.warns(UserWarning, match="broken.png"):
        meta = train_prior(images_dir, out16, steps=6, checkpoint_every=0, precision="bf16", save_dtype="fp16",
                           **FAST)
    assert meta["settings"]["precision"] == "bf16" and meta["settings"]["save_dtype"] == "fp16"
    with pytest.warns(UserWarning, match="broken.png"):
        train_prior(images_dir, out32, steps=6, checkpoint_every=0, precision="bf16", **FAST)
    w16, w32 = weights(out16), weights(out32)
    assert all(v.dtype == torch.float16 for v in w16.values() if v.is_floating_point())
    assert all(v.dtype == torch.float32 for v in w32.values() if v.is_floating_point())
    for k in w32:  # same run (same seed), stored at two precisions
        torch.testing.assert_close(w16[k].float(), w32[k], rtol=2e-3, atol=1e-4)
    assert out16.stat().st_size < 0.7 * out32.stat().st_size
    p16, p32 = load_prior(out16), load_prior(out32)
    assert all(p.dtype == torch.float32 for p in p16.parameters())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(p16(x, 0.5), p32(x, 0.5), rtol=1e-2, atol=1e-2)
    with pytest.raises(SpgdError, match="save_dtype"):
        train_prior(images_dir, tmp_path / "x.pt", steps=1, save_dtype="int8", **FAST)
    with pytest.raises(SpgdError, match="precision must be"):
        train_prior(images_dir, tmp_path / "x.pt", steps=1, precision="fp16", **FAST)
