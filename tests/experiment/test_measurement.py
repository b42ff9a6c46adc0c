"""The measurement stage (spgd.experiment.measurement): kernel and mask files, what they replace, the operator of
a batch, measuring per image."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import CLI_TINY, cli_error_line, no_run_folder, run_cli

from spgd.experiment.measurement import OperatorFactory, measure_per_image, viewable

TINY = CLI_TINY
run = run_cli
error_line = cli_error_line


def test_kernel_size_beside_kernel_is_an_error(capsys, tmp_path, two_images):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "k.npy", np.full((9, 9), 1 / 81))
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--kernel", tmp_path / "k.npy",
                       "--set", "kernel_size=31", "--out", tmp_path / "runs")
    error_line(code, err, "kernel_size", "--kernel")


def test_unnormalised_kernel_is_announced_and_recorded(capsys, tmp_path, two_images):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "k.npy", np.ones((9, 9)))  # sums to 81
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--limit", 1,
                       "--kernel", tmp_path / "k.npy", "--out", tmp_path / "runs", "-q")
    assert code == 0, err
    assert "spgd: warning: kernel" in err and "sums to 81" in err
    op = json.loads((next((tmp_path / "runs").iterdir()) / "settings.json").read_text())["resolved"]["operator"]
    assert op["kernel_shape"] == [9, 9] and op["kernel_sum_in_file"] == [81.0]
    assert "kernel_size" not in op and "std" not in op  # not the preset's 61 / 3.0


def test_all_zero_mask_is_an_error(capsys, tmp_path, two_images):
    from PIL import Image

    Image.new("L", (64, 64), 0).save(tmp_path / "mask.png")
    code, _, err = run(capsys, "eval", two_images, "--task", "inpainting_random", *TINY, "--mask",
                       tmp_path / "mask.png", "--out", tmp_path / "runs")
    error_line(code, err, "keeps no pixel")
    assert no_run_folder(tmp_path / "runs")


def test_measurement_noise_is_the_images_own():
    """Image j's noise comes from its own seed: a batch measures each image as it would alone."""
    factory = OperatorFactory("gaussian_blur", {"kernel_size": 5, "std": 1.0, "noise_sigma": 0.1})
    op = factory(0, torch.device("cpu"))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    both = measure_per_image(op, x, [7, 8])
    alone = measure_per_image(op, x[1:], [8])
    assert torch.equal(both[1:], alone) and not torch.equal(both[0], both[1])


def test_a_padded_mask_is_another_factory_of_the_same_operator(tmp_path):
    from PIL import Image
    import numpy as np

    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(tmp_path / "mask.png")
    factory = OperatorFactory("inpainting_random", {"noise_sigma": 0.0}, mask=str(tmp_path / "mask.png"))
    padded = factory.with_mask(torch.nn.functional.pad(factory.params["mask"], (0, 4, 0, 4)))
    assert padded.params["mask"].shape[-1] == 20 and factory.params["mask"].shape[-1] == 16
    assert padded.recorded == factory.recorded and padded.task == factory.task


def test_viewable_rescales_what_is_not_an_image():
    y = torch.rand(3, 8, 8) * 2 - 1
    same, note = viewable(y)
    assert torch.equal(same, y) and note == ""
    amplitude, note = viewable(torch.rand(3, 8, 8) * 100)
    assert amplitude.min() >= -1 and amplitude.max() <= 1 and "log" in note
