"""The images stage (spgd.experiment.images): sizes the prior or the metrics cannot take are refused before a run
folder exists, with the fix."""

from __future__ import annotations

from conftest import CLI_TINY, cli_error_line, no_run_folder, run_cli

TINY = CLI_TINY
run = run_cli
error_line = cli_error_line


def test_eval_side_not_divisible_by_8_fails_before_a_run_folder(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", "--size", "68", "--resize",
                       "--set", "steps=1", "--set", "warmup_steps=1", "--set", "kernel_size=9",
                       "--out", tmp_path / "runs")
    line = error_line(code, err, "68x68 (width x height)", "divisible by 8", "--size", "--resize")
    assert "72x72" in line or "64x64" in line
    assert no_run_folder(tmp_path / "runs")


def test_eval_absurd_size_is_refused_up_front(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", "--prior", "gaussian", "--size",
                       "100000", "--resize", "--out", tmp_path / "runs")
    error_line(code, err, "100000x100000", "not supported")
    assert no_run_folder(tmp_path / "runs")


def test_tiny_images_get_a_message_about_the_image(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "denoising", "--prior", "gaussian", "--size", "7",
                       "--resize", "--out", tmp_path / "runs")
    line = error_line(code, err, "7x7", "too small")
    assert "kernel_size" not in line
    assert no_run_folder(tmp_path / "runs")
