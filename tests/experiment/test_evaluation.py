"""The eval pipeline (spgd.experiment.evaluation) end to end through `spgd eval`: divergence marked and
excluded, nothing given silently ignored, no run folder left by a run that fails before its first result."""

from __future__ import annotations

import json


from conftest import CLI_TINY, cli_error_line, no_run_folder, run_cli

TINY = CLI_TINY
run = run_cli
error_line = cli_error_line


def test_eval_lr_1e6_marks_both_images_diverged_and_exits_1(capsys, tmp_path, two_images):
    code, out, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--set", "lr=1e6",
                         "--out", tmp_path / "runs", "-q")
    assert code == 1, err
    assert "2 restoration(s) failed, excluded from the means" in err and "spgd 00000: " in err
    run_dir = next((tmp_path / "runs").iterdir())
    for name in ("00000", "00001"):
        sample = json.loads((run_dir / "records" / f"{name}.json").read_text())["methods"]["spgd"]["samples"][0]
        assert sample["failed"] is True and sample["failure_reason"], sample
    assert json.loads((run_dir / "metrics.json").read_text())["per_method"]["spgd"]["n_failed"] == 2


def test_missing_lpips_weights_file_is_an_error(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--lpips-weights",
                       tmp_path / "nope.pth", "--out", tmp_path / "runs", "-q")
    error_line(code, err, "nope.pth", "--lpips-weights")
    assert no_run_folder(tmp_path / "runs")


def test_setting_of_a_method_that_is_not_run_is_an_error(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--set", "dps.lr=1",
                       "--out", tmp_path / "runs")
    error_line(code, err, "dps.lr", "not run")


def test_format_conversions_are_warnings_without_verbose(capsys, tmp_path, two_images):
    from PIL import Image

    Image.open(two_images / "00001.png").convert("L").save(two_images / "00001.png")
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--out", tmp_path / "runs", "-q")
    assert code == 0, err
    assert "spgd: warning: 00001.png: greyscale replicated to 3 channels" in err


def test_eval_failing_before_the_first_result_leaves_no_run_folder(capsys, tmp_path, two_images, monkeypatch):
    from spgd.experiment.evaluation import Evaluation

    def boom(self, batch):
        raise RuntimeError("simulated failure in the first batch")

    monkeypatch.setattr(Evaluation, "_restore_batch", boom)
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--out", tmp_path / "runs",
                       "-q")
    error_line(code, err, "simulated failure")
    assert no_run_folder(tmp_path / "runs")


def test_eval_refuses_a_method_that_cannot_take_the_operator_before_any_work(tmp_path, demo_dir, capsys):
    code, _, err = run_cli(capsys, "eval", demo_dir, "--task", "motion_blur", "--method", "spgd,ddrm", "--limit", "1",
                           *CLI_TINY, "--out", tmp_path / "runs")
    cli_error_line(code, err, "ddrm cannot restore with MotionBlur", "spgd methods")
    assert no_run_folder(tmp_path / "runs")
