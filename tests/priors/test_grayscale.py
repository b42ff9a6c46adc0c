"""Grayscale end to end: 1-channel images, operators, trained priors, restoration, and clear channel errors;
`spgd models` on the formats."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_UNET

import spgd
from spgd import cli, io
from spgd.errors import SpgdError
from spgd.operators import task_params
from spgd.priors import ARCHITECTURES, UNetModel
from spgd.priors.base import prior_channels
from spgd.training import train_prior

TINY = {**TINY_UNET, "learn_sigma": False, "attention_resolutions": "", "num_head_channels": 32}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gray_png(path: Path, h: int = 32, w: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((4, 5)) * 255).astype(np.uint8), mode="L")
    coarse.resize((w, h), Image.BILINEAR).save(path)
    return path


def colour_png(path: Path) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8), mode="RGB").save(path)
    return path


def test_load_image_channels(tmp_path: Path):
    g = gray_png(tmp_path / "g.png")
    x, notes = io.load_image(g, channels=1)
    assert x.shape == (1, 1, 32, 40) and any("1 channel" in n for n in notes)
    x3, _ = io.load_image(g)
    assert x3.shape == (1, 3, 32, 40) and torch.equal(x3[:, :1], x)
    with pytest.raises(SpgdError, match="colour image.*1-channel"):
        io.load_image(colour_png(tmp_path / "c.png"), channels=1)


TASKS = {
    "gaussian_blur": dict(kernel_size=9, std=1.5),
    "motion_blur": dict(kernel_size=9, seed=0),
    "super_resolution": dict(scale=4),
    "inpainting_box": dict(box_size=16, margin=4),
    "inpainting_random": dict(seed=0),
    "denoising": {},
    "hdr": {},
    "phase_retrieval": {},
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_operators_take_one_channel(task: str):
    fixed = "channels" in task_params(task)  # the identity takes any channel count
    op = spgd.make_operator(task, **TASKS[task], **({"channels": 1} if fixed else {}))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y = op.forward(x)
    assert torch.isfinite(y).all() and y.shape[:2] == (2, 1)
    if fixed:
        with pytest.raises(SpgdError, match="1 channels, got 3"):
            op.forward(torch.rand(2, 3, 32, 32))
    if hasattr(op, "adjoint"):  # linear: <A x, y> = <x, A^T y>
        v = torch.randn_like(y)
        lhs, rhs = (op.forward(x) * v).sum(), (x * op.adjoint(v)).sum()
        assert abs(lhs - rhs) < 1e-3 * abs(lhs).clamp(min=1)


def test_train_gray_prior_from_the_data_and_restore_cli(tmp_path: Path, capsys):
    data = tmp_path / "xrays"
    data.mkdir()
    for i in range(3):
        gray_png(data / f"im{i}.png", seed=i)
    out = tmp_path / "gray.pt"
    meta = train_prior(data, out, steps=2, checkpoint_every=0, batch_size=2, crop=16, config=TINY, progress=False)
    assert meta["settings"]["image_channels"] == 1
    prior = spgd.load_prior(out)
    assert prior_channels(prior) == 1 and prior.net.in_channels == 1
    # restore a gray, non-square measurement through the CLI
    meas = gray_png(tmp_path / "blurry.png", 16, 24)
    code = cli.main(["restore", str(meas), "--task", "gaussian_blur", "--prior", str(out), "--set", "steps=2",
                     "--set", "warmup_steps=1", "--set", "kernel_size=5", "--out", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    restored = next((tmp_path / "runs").glob("*/restored.png"))
    assert Image.open(restored).mode == "L" and Image.open(restored).size == (24, 16)
    # the file's note says what was done: read as 1 channel (it once said "replicated to 3 channels")
    notes = json.loads((restored.parent / "settings.json").read_text())["resolved"]["measurement_notes"]
    assert any("read as 1 channel" in n for n in notes) and not any("replicated" in n for n in notes + [err])
    # spgd eval on a folder of gray images: 1-channel images, operator and outputs
    code = cli.main(["eval", str(data), "--task", "gaussian_blur", "--prior", str(out), "--set", "steps=1",
                     "--set", "warmup_steps=1", "--set", "kernel_size=5", "--out", str(tmp_path / "evals"), "-q"])
    assert code == 0, capsys.readouterr().err
    run_dir = next((tmp_path / "evals").iterdir())
    outputs = sorted((run_dir / "restored").rglob("*.png"))
    assert len(outputs) == 3 and all(Image.open(f).mode == "L" for f in outputs)
    assert (run_dir / "metrics.json").is_file() and (run_dir / "grid.png").is_file()
    # a colour measurement meets the gray prior: one clear line, exit 2
    code = cli.main(["restore", str(colour_png(tmp_path / "c.png")), "--task", "gaussian_blur", "--prior", str(out),
                     "--set", "steps=2", "--out", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "colour image" in err and "Traceback" not in err
    # and the reverse: a 1-channel tensor into an RGB network
    with pytest.raises(SpgdError, match="3-channel images"):
        UNetModel(**TINY)(torch.zeros(1, 1, 16, 16), torch.zeros(1))
    # training with --image-channels 1 on colour data converts, with a warning
    colour = tmp_path / "colour"
    colour.mkdir()
    colour_png(colour / "a.png")
    colour_png(colour / "b.png")
    with pytest.warns(UserWarning, match="converted to grayscale"):
        meta = train_prior(colour, tmp_path / "g2.pt", steps=1, checkpoint_every=0, batch_size=2, crop=16,
                           config=TINY, progress=False, image_channels=1, holdout_fraction=0.5)
    assert meta["settings"]["image_channels"] == 1


def test_models_command_describes_files(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "tiny-cond", {**TINY_UNET, "class_cond": True, "num_classes": 10})
    net = UNetModel(**ARCHITECTURES["tiny-cond"])
    torch.save({"model." + k: v for k, v in net.state_dict().items()}, tmp_path / "ib.pt")
    code = cli.main(["models", str(tmp_path / "ib.pt")])
    out = capsys.readouterr().out
    assert code == 0
    for text in ("'tiny-cond'", "InverseBench", "channels:      3 (RGB)", "classes:       10", "sigma range:",
                 "--class-label 0", "multiples of 2"):
        assert text in out, (text, out)
    code = cli.main(["models", "default"])
    out = capsys.readouterr().out
    assert code == 0 and "spgd-unet" in out and "restore with:  spgd restore" in out
    (tmp_path / "edm.pkl").write_bytes(b"\x80\x04N.")
    code = cli.main(["models", str(tmp_path / "edm.pkl")])
    err = capsys.readouterr().err
    assert code == 2 and "runs code" in err and len(err.strip().splitlines()) == 1
