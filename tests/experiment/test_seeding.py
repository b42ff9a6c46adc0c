"""The seeding rule of every command (spgd.experiment.seeding): image i gets the same draws in each."""

import json

import numpy as np
import torch
from PIL import Image

from conftest import copy_demo_images, run_cli
from spgd import io
from spgd.experiment import diagnose as diagnose_module
from spgd.experiment.seeding import derive_seed, image_seed, noise_seed, sample_generators, sample_seed


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def only_run(folder):
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    return run_dir


def test_the_rule_in_numbers():
    assert image_seed(7, 3) == 10
    assert noise_seed(10) == derive_seed(10, 0) and sample_seed(10, 2) == derive_seed(10, 1, 2)
    assert len({derive_seed(10, 0), derive_seed(10, 1, 0), derive_seed(11, 0)}) == 3
    a, b = sample_generators([10, 11], 0, "cpu")
    same = torch.Generator().manual_seed(sample_seed(10, 0))
    assert torch.equal(torch.randn(4, generator=a), torch.randn(4, generator=same))
    assert not torch.equal(torch.randn(4, generator=b), torch.randn(4, generator=sample_generators([10], 0, "cpu")[0]))


def test_diagnose_restores_what_eval_restores(capsys, tmp_path, demo_dir, monkeypatch):
    """Same images, task, settings, prior and --seed: `spgd diagnose` restores image i exactly as `spgd eval`
    does (random inpainting, so each image's mask, noise and initial noise all take part): the same PSNR to
    the last float bit, and the same PNGs bit for bit."""
    images = copy_demo_images(demo_dir, tmp_path / "images", 2)
    common = ["--task", "inpainting_random", "--prior", "gaussian", "--set", "steps=3", "--set", "warmup_steps=1",
              "--size", "32", "--seed", "5", "--device", "cpu"]
    code, _, err = run_cli(capsys, "eval", images, "--method", "spgd", *common, "--resize", "--out",
                           tmp_path / "eval", "-q")
    assert code == 0, err
    seen = {}
    write_figures = diagnose_module.write_figures

    def keep(run_dir, title, telemetries, x, y, restored):
        seen.update(y=y, restored=restored)
        write_figures(run_dir, title, telemetries, x, y, restored)

    monkeypatch.setattr(diagnose_module, "write_figures", keep)
    code, _, err = run_cli(capsys, "diagnose", images, "--methods", "spgd", *common, "--frames", "0", "--out",
                           tmp_path / "diagnose", "--quiet")
    assert code == 0, err
    eval_run = only_run(tmp_path / "eval")
    summary = json.loads((only_run(tmp_path / "diagnose") / "summary.json").read_text())
    settings = json.loads((only_run(tmp_path / "diagnose") / "settings.json").read_text())
    assert settings["command_line"][:2] == ["spgd", "diagnose"] and settings["resolved"]["sampler"]["spgd"]["steps"] == 3
    for i, name in enumerate(sorted(p.stem for p in images.iterdir())):
        io.save_image(seen["restored"]["spgd"][i], tmp_path / f"diagnose-{name}.png")
        io.save_image(seen["y"][i], tmp_path / f"measurement-{name}.png")
        assert np.array_equal(pixels(tmp_path / f"diagnose-{name}.png"), pixels(eval_run / "restored" / f"{name}.png"))
        assert np.array_equal(pixels(tmp_path / f"measurement-{name}.png"),
                              pixels(eval_run / "measurement" / f"{name}.png"))
        record = json.loads((eval_run / "records" / f"{name}.json").read_text())
        assert record["seed"] == 5 + i and record["methods"]["spgd"]["psnr"] == summary["methods"]["spgd"]["psnr"][i]
