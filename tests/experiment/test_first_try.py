"""Issue 20, "a first try that never lies": divergence is caught before inf, nothing given is silently ignored,
sizes are checked up front, the Python API answers bad values with SpgdError. One test per case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import CLI_TINY, cli_error_line, copy_demo_images, run_cli

import spgd
from spgd import io as spgd_io
from spgd.errors import SpgdError
from spgd.experiment.evaluation import format_table
from spgd.priors.gaussian import GaussianPrior
from spgd.samplers import make_sampler
from spgd.samplers.base import FailureTracker

TINY = CLI_TINY
run = run_cli
error_line = cli_error_line


@pytest.fixture
def two_images(tmp_path: Path, demo_dir: Path) -> Path:
    return copy_demo_images(demo_dir, tmp_path / "images", 2)


def blur_problem(batch: int = 2, size: int = 16):
    prior = GaussianPrior()
    op = spgd.make_operator("gaussian_blur", kernel_size=5, std=1.0)
    x = prior.sample((batch, 3, size, size), torch.Generator().manual_seed(0))
    y = op.measure(x, torch.Generator().manual_seed(1))
    return prior, op, y


# ------------------------------------------------------------------------------------------------------
# divergence


def test_eval_lr_1e6_marks_both_images_diverged_and_exits_1(capsys, tmp_path, two_images):
    code, out, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--set", "lr=1e6",
                         "--out", tmp_path / "runs", "-q")
    assert code == 1, err
    assert "2 restoration(s) diverged" in err
    run_dir = next((tmp_path / "runs").iterdir())
    for name in ("00000", "00001"):
        sample = json.loads((run_dir / "records" / f"{name}.json").read_text())["methods"]["spgd"]["samples"][0]
        assert sample["failed"] is True and sample["failure_reason"], sample
    assert json.loads((run_dir / "metrics.json").read_text())["per_method"]["spgd"]["n_failed"] == 2


def test_finite_blow_up_is_divergence_for_that_sample_only():
    """A sample driven to 1e6 (finite) is reported; the other finishes exactly as it does alone."""
    prior, op, y = blur_problem(2)
    base = GaussianPrior()

    def poisoned(x, sigma):  # sample 1 (when present) is pushed to 1e6
        out = base.denoise(x, sigma)
        if x.shape[0] == 2:
            out = out + torch.tensor([0.0, 1e6]).view(2, 1, 1, 1)
        return out

    sampler = make_sampler("spgd", steps=6, warmup_steps=1, lr=1.0, check_every=2)
    gens = lambda n: [torch.Generator().manual_seed(10 + i) for i in range(n)]  # noqa: E731
    both = sampler.run(y, op, poisoned, generator=gens(2))
    alone = sampler.run(y[:1], op, poisoned, generator=gens(1))
    assert both.stats.failed == [False, True]
    assert torch.equal(both.x[0], alone.x[0])
    assert both.stats.failure_reason[1] and both.stats.failure_reason[0] is None


def test_tracker_flags_finite_values_far_outside_the_data_range():
    t = FailureTracker(3, "cpu", every=1)
    x = torch.stack([torch.zeros(4), torch.full((4,), 1e36), torch.full((4,), 500.0)])
    x = t.check(x, 0)
    assert t.alive.tolist() == [True, False, True]  # 1e36: diverged; 500: a noisy state, fine mid-run
    t.check(x, 1, last=True)
    assert t.alive.tolist() == [True, False, True]
    t2 = FailureTracker(1, "cpu", every=1)
    t2.check(torch.full((1, 4), 5000.0), 0, last=True)  # a *result* at 5000 is far outside [-1, 1]
    assert t2.alive.tolist() == [False]


def test_result_that_does_not_fit_the_measurement_is_divergence():
    prior, op, y = blur_problem(1)
    t = FailureTracker(1, "cpu", every=1)
    t.check_fit(y * 0 + 30.0, y, op, 0)  # in range of the RMS bound, but residual >> 1e3 x noise and >> 10 RMS(y)
    assert t.alive.tolist() == [False]
    t = FailureTracker(1, "cpu", every=1)
    t.check_fit(y, y, op, 0)  # a plausible result
    assert t.alive.tolist() == [True]


def test_table_columns_never_run_together():
    big = {"mean": 0.056625519744512, "std": 2.5e10}
    e = {"psnr": big, "ssim": big, "rms_residual": {"mean": 1e10}, "denoiser_calls": {"mean": 6.0},
         "vjps": {"mean": 3.0}, "seconds": {"mean": 0.1}, "n_failed": 0}
    text = format_table({"per_method": {"spgd": e}})
    row = text.splitlines()[1].split()
    assert row[0] == "spgd" and len(row) == 1 + 2 + 5, text  # every cell its own whitespace-separated field


# ------------------------------------------------------------------------------------------------------
# settings that make a method a no-op


@pytest.mark.parametrize("method,setting", [("spgd", {"warmup_steps": 0}), ("dps", {"lr": 0}),
                                            ("daps", {"langevin_steps": 0})])
def test_settings_that_ignore_the_measurement_are_refused(method, setting):
    with pytest.raises(SpgdError, match="measurement"):
        make_sampler(method, **setting)


def test_cli_warmup_steps_0_is_refused(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--set", "warmup_steps=0",
                       "--out", tmp_path / "runs")
    error_line(code, err, "warmup_steps", "never used")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ------------------------------------------------------------------------------------------------------
# the Python API


def test_api_int64_measurement():
    prior, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match="int64"):
        spgd.restore((y * 127).long(), op, prior, steps=2, warmup_steps=1)


def test_api_generator_int():
    prior, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match="generator must be .* got 0"):
        spgd.restore(y, op, prior, generator=0, steps=2, warmup_steps=1)


@pytest.mark.parametrize("setting,pattern", [({"lr": "abc"}, "lr must be a finite number, got 'abc'"),
                                             ({"steps": 2.5}, "steps must be an integer, got 2.5")])
def test_api_setting_types(setting, pattern):
    prior, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match=pattern):
        spgd.restore(y, op, prior, **{"steps": 2, "warmup_steps": 1, **setting})


def test_api_operator_plain_function():
    prior, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match="operator must be an object with forward"):
        spgd.restore(y, op.forward, prior, steps=2, warmup_steps=1)


@pytest.mark.parametrize("bad,pattern", [(lambda x: x, "prior must be callable as prior"),
                                         (lambda x, s: x[:, :1], "shaped like x")])
def test_api_prior_wrong_signature_or_shape(bad, pattern):
    _, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match=pattern):
        spgd.restore(y, op, bad, steps=2, warmup_steps=1)


# ------------------------------------------------------------------------------------------------------
# nothing given is silently ignored


def no_run_folder(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_missing_lpips_weights_file_is_an_error(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--lpips-weights",
                       tmp_path / "nope.pth", "--out", tmp_path / "runs", "-q")
    error_line(code, err, "nope.pth", "--lpips-weights")
    assert no_run_folder(tmp_path / "runs")


def test_setting_of_a_method_that_is_not_run_is_an_error(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--set", "dps.lr=1",
                       "--out", tmp_path / "runs")
    error_line(code, err, "dps.lr", "not run")


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
    op = json.loads((next((tmp_path / "runs").iterdir()) / "settings.json").read_text())["operator"]
    assert op["kernel_shape"] == [9, 9] and op["kernel_sum_in_file"] == [81.0]
    assert "kernel_size" not in op and "std" not in op  # not the preset's 61 / 3.0


def test_all_zero_mask_is_an_error(capsys, tmp_path, two_images):
    from PIL import Image

    Image.new("L", (64, 64), 0).save(tmp_path / "mask.png")
    code, _, err = run(capsys, "eval", two_images, "--task", "inpainting_random", *TINY, "--mask",
                       tmp_path / "mask.png", "--out", tmp_path / "runs")
    error_line(code, err, "keeps no pixel")
    assert no_run_folder(tmp_path / "runs")


def write_png16_rgb(path: Path, h: int, w: int) -> None:
    import struct
    import zlib

    import numpy as np

    a = (np.random.default_rng(0).integers(0, 65535, (h, w, 3))).astype(">u2")
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_rgb_png_is_noted(tmp_path):
    write_png16_rgb(tmp_path / "a.png", 8, 8)
    _, notes = spgd_io.load_image(tmp_path / "a.png")
    assert any("16-bit" in n for n in notes), notes


def test_format_conversions_are_warnings_without_verbose(capsys, tmp_path, two_images):
    from PIL import Image

    Image.open(two_images / "00001.png").convert("L").save(two_images / "00001.png")
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--out", tmp_path / "runs", "-q")
    assert code == 0, err
    assert "spgd: warning: 00001.png: greyscale replicated to 3 channels" in err


def test_result_files_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        spgd_io.save_image(torch.zeros(3, 4, 4), tmp_path / "a.png")
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------------------------------
# sizes, up front


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


def blurred_png(tmp_path: Path, demo_dir: Path, side: int) -> Path:
    from PIL import Image

    Image.open(sorted(demo_dir.glob("*.png"))[0]).resize((side, side)).save(tmp_path / "m.png")
    return tmp_path / "m.png"


def test_restore_odd_size_fails_up_front_with_the_fix(capsys, tmp_path, demo_dir):
    m = blurred_png(tmp_path, demo_dir, 36)
    code, _, err = run(capsys, "restore", m, "--task", "gaussian_blur", "--set", "kernel_size=9", "--set", "steps=1",
                       "--set", "warmup_steps=1", "--out", tmp_path / "runs")
    error_line(code, err, "36x36", "divisible by 8", "--pad")
    assert no_run_folder(tmp_path / "runs")


def test_restore_pad_restores_and_crops_back(capsys, tmp_path, demo_dir):
    from PIL import Image

    m = blurred_png(tmp_path, demo_dir, 36)
    code, _, err = run(capsys, "restore", m, "--task", "gaussian_blur", "--set", "kernel_size=9", "--set", "steps=1",
                       "--set", "warmup_steps=1", "--pad", "--out", tmp_path / "runs")
    assert code == 0, err
    assert "restoring at 40x40" in err
    run_dir = next((tmp_path / "runs").iterdir())
    assert Image.open(run_dir / "restored.png").size == (36, 36)
    s = json.loads((run_dir / "settings.json").read_text())
    assert s["padded_to"] == {"width": 40, "height": 40} and s["output_size"] == {"width": 36, "height": 36}


def test_restore_super_resolution_states_its_output_size(capsys, tmp_path, demo_dir):
    m = blurred_png(tmp_path, demo_dir, 16)
    code, _, err = run(capsys, "restore", m, "--task", "super_resolution", "--prior", "gaussian", "--set", "steps=1",
                       "--set", "warmup_steps=1", "--out", tmp_path / "runs")
    assert code == 0, err
    assert "16x16 measurement is restored at 64x64" in err


def test_failed_restore_leaves_no_run_folder(capsys, tmp_path, demo_dir, monkeypatch):
    from spgd.samplers.spgd import SPGD

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(SPGD, "run", boom)
    m = blurred_png(tmp_path, demo_dir, 32)
    code, _, err = run(capsys, "restore", m, "--task", "gaussian_blur", "--prior", "gaussian", "--set",
                       "kernel_size=9", "--out", tmp_path / "runs")
    assert code == 130, err
    assert no_run_folder(tmp_path / "runs")


def test_eval_failing_before_the_first_result_leaves_no_run_folder(capsys, tmp_path, two_images, monkeypatch):
    from spgd.experiment.evaluation import Evaluation

    def boom(self, batch):
        raise RuntimeError("simulated failure in the first batch")

    monkeypatch.setattr(Evaluation, "_restore_batch", boom)
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--out", tmp_path / "runs",
                       "-q")
    error_line(code, err, "simulated failure")
    assert no_run_folder(tmp_path / "runs")


# ------------------------------------------------------------------------------------------------------
# progress


def test_diagnose_reports_progress_without_a_terminal(tmp_path, demo_dir, capsys):
    import argparse

    from PIL import Image

    from spgd.cli.diagnose import add_arguments as add_diagnose_arguments, run_diagnose

    with Image.open(demo_dir / "00000.png") as img:
        img.convert("RGB").crop((96, 96, 128, 128)).save(tmp_path / "face.png")
    parser = add_diagnose_arguments(argparse.ArgumentParser(prog="spgd diagnose"))
    argv = [str(tmp_path / "face.png"), "--task", "denoising", "--prior", "gaussian", "--methods", "spgd",
            "--set", "steps=3", "--set", "warmup_steps=1", "--frames", "0", "--out", str(tmp_path / "runs"),
            "--device", "cpu"]
    assert run_diagnose(parser.parse_args(argv)) == 0
    err = capsys.readouterr().err
    assert "spgd: step 3/3" in err and "writing plots" in err


@pytest.mark.parametrize("method", ["daps", "dps"])
def test_baselines_report_a_result_far_outside_the_data_range(method):
    """DAPS with a prior that answers around +-1e4 (as a user's operator/prior can make it) returned such values
    with failed=[False]; the tracker's result bound now reports it, with no change to the sampler."""
    _, op, y = blur_problem(2)

    def wild(x, sigma):
        return 1e4 * torch.sign(torch.sin(torch.arange(x[0].numel()).view(x.shape[1:]).to(x) + 1.0)) + 0 * x

    settings = {"daps": {"steps": 3, "ode_steps": 1, "langevin_steps": 2}, "dps": {"steps": 3, "clip_denoised": False}}
    result = make_sampler(method, **settings[method]).run(y, op, wild, generator=torch.Generator().manual_seed(0))
    assert result.stats.failed == [True, True], result.x.abs().max()


def test_verbose_shows_detail_lines_in_diagnose_and_bench(tmp_path, demo_dir, capsys):
    """-v is on every command; diagnose prints each method's resolved settings, bench each row's execution."""
    from PIL import Image

    with Image.open(demo_dir / "00000.png") as img:
        img.convert("RGB").crop((96, 96, 128, 128)).save(tmp_path / "face.png")
    argv = ["diagnose", tmp_path / "face.png", "--task", "denoising", "--prior", "gaussian", "--methods", "spgd",
            "--set", "steps=2", "--set", "warmup_steps=1", "--frames", "0", "--out", tmp_path / "runs",
            "--device", "cpu"]
    code, _, quiet_err = run_cli(capsys, *argv)
    assert code == 0 and "'warmup_steps': 1" not in quiet_err
    code, _, err = run_cli(capsys, *argv, "-v")
    assert code == 0 and "spgd: {'steps': 2, 'warmup_steps': 1" in err
    code, _, err = run_cli(capsys, "bench", "--device", "cpu", "--arch", "ffhq256", "--size", "32", "--steps", "1",
                           "--warmup-steps", "1", "--batch-sizes", "1", "--precision", "fp32", "--no-reference",
                           "--out", tmp_path / "bench", "-v")
    assert code == 0 and "bench:   fp32 eager, settings {'precision': 'fp32'" in err
