"""spgd.verdict: every result judged against its measurement (issue 28). The garbage cases of the issue fail
with a reason; honest runs of every method at cut budgets are kept (ok or under-fit, never failed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import spgd
from conftest import CLI_TINY, cli_error_line, run_cli
from spgd import io
from spgd.verdict import FAILED, OK, UNDER_FIT, judge, judge_values, verdict_of_record

FACE = "00000.png"


@pytest.fixture(scope="module")
def face(shared_dir: Path) -> torch.Tensor:
    return io.load_image(shared_dir / "data" / "ffhq-demo" / FACE, size=32, resize=True)[0]


def blur_case(face: torch.Tensor):
    op = spgd.make_operator("gaussian_blur", kernel_size=9, std=1.5)
    return op, op.measure(face, torch.Generator().manual_seed(1))


def test_the_truth_fits_to_the_noise(face):
    op, y = blur_case(face)
    (v,) = judge(face, y, op)
    assert v.status == OK and v.reason is None and 0.5 < v.fit < 2


def test_saturated_colour_blobs_far_outside_the_range_fail(face):
    """Issue 28's `--set lr=30`: saturated colour blobs, residual 820 x the noise level."""
    op, y = blur_case(face)
    blobs = torch.zeros_like(face)
    blobs[:, 0, :16], blobs[:, 1, 16:], blobs[:, 2, :, :16] = 9.0, -9.0, 6.0
    (v,) = judge(blobs, y, op)
    assert v.status == FAILED and "left the image range" in v.reason and v.fit > 100


def test_an_all_white_result_of_a_photo_fails_as_saturated(face):
    """Issue 28's DPS with lr=1e6: an all-white image (within [-1, 1], so only saturation tells)."""
    op, y = blur_case(face)
    (v,) = judge(torch.ones_like(face), y, op)
    assert v.status == FAILED and v.reason.startswith("saturated")


def test_a_bright_photo_is_not_saturation():
    """A white result of a white measurement is a fit, not garbage."""
    op = spgd.make_operator("gaussian_blur", kernel_size=9, std=1.5)
    white = torch.ones(1, 3, 32, 32)
    y = op.measure(white, torch.Generator().manual_seed(1))
    assert judge(white, y, op)[0].status == OK


def test_a_result_fitting_worse_than_a_blank_image_fails(face):
    op, y = blur_case(face)
    x = face.clone()  # a few huge spikes: under 1 % of the values outside, yet the fit is absurd
    x.view(-1)[::250] = 300.0
    (v,) = judge(x, y, op)
    assert v.status == FAILED and "worse than a blank image" in v.reason


def test_non_finite_fails(face):
    op, y = blur_case(face)
    x = face.clone()
    x[0, 0, 0, 0] = float("nan")
    assert judge(x, y, op)[0].reason == "non-finite values"


def test_the_rule_on_the_numbers_of_the_issue():
    # DPS at 30 steps on the benchmark faces: 47 x the noise level, in range: kept and flagged
    v = judge_values(0.47, 0.01, 0.45, 0.0, 0.02, 0.01)
    assert (v.status, v.label) == (UNDER_FIT, "under-fit 47x")
    # lr=30: residual 8.2 = 820 x the noise level, beyond 2 x RMS(y) even where no value is counted outside
    assert judge_values(8.2, 0.01, 0.45, 0.0, 0.0, 0.0).status == FAILED
    # a noiseless measurement is compared with one grey level, not 0
    assert judge_values(0.004, 0.0, 0.5, 0.0, 0.0, 0.0).status == OK


def test_verdict_round_trips_through_a_record():
    v = judge_values(0.47, 0.01, 0.45, 0.0, 0.02, 0.01)
    back = verdict_of_record({"verdict": json.loads(json.dumps(v.as_dict()))})
    assert back == v
    assert verdict_of_record({"psnr": 20.0}) is None  # a record of an earlier version


@pytest.mark.parametrize("method, settings", [
    ("spgd", {"lr": 30.0, "steps": 10, "warmup_steps": 2}),  # the issue's `--set lr=30`
    ("dps", {"lr": 1e6, "steps": 30}),  # the issue's DPS lr=1e6
    ("dps", {"lr": 1e3, "steps": 30}),  # finite garbage the sampler's divergence rule lets through: 8 dB
], ids=["spgd-lr=30", "dps-lr=1e6", "dps-lr=1e3"])
def test_the_issues_garbage_settings_are_failed_from_python(face, method, settings):
    op, y = blur_case(face)
    r = spgd.restore(y, op, spgd.load_prior("gaussian"), method=method, generator=torch.Generator().manual_seed(0),
                     **settings)
    assert r.stats.failed == [True] and r.stats.failure_reason[0]
    assert r.stats.verdict[0].status == FAILED and r.stats.verdict[0].reason == r.stats.failure_reason[0]


def test_finite_garbage_is_failed_by_the_verdict_not_zeroed(face):
    op, y = blur_case(face)
    r = spgd.restore(y, op, spgd.load_prior("gaussian"), method="dps", steps=30, lr=1e3,
                     generator=torch.Generator().manual_seed(0))
    assert r.stats.failure_reason[0].startswith("left the image range")
    assert r.x.abs().max() > 1.5  # the image is left as it came out, for the user to see


def test_sigma_max_far_beyond_the_prior_is_refused(face):
    op, y = blur_case(face)
    prior = spgd.load_prior("default")
    with pytest.raises(spgd.SpgdError, match="sigma_max=1e\\+30 is beyond 100 x the largest noise level"):
        spgd.restore(y, op, prior, steps=2, warmup_steps=1, sigma_max=1e30)
    with pytest.raises(spgd.SpgdError, match="no trained range"):
        spgd.restore(y, op, spgd.load_prior("gaussian"), steps=2, warmup_steps=1, sigma_max=1e30)


def test_sigma_max_is_refused_by_eval_before_any_folder(capsys, tmp_path, two_images):
    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "eval", two_images, "--task", "denoising", *CLI_TINY, "--set", "sigma_max=1e30",
                           "--out", out)
    cli_error_line(code, err, "sigma_max=1e+30", "no trained range")
    assert not out.exists() or not any(out.iterdir())


# every method at a cut budget (RESULTS.md section 2's CPU budgets, scaled to a 32x32 face and the analytic prior)
CUT_BUDGETS = {
    "spgd": {"steps": 10, "warmup_steps": 2}, "spgd-official": {"steps": 10, "warmup_steps": 2},
    "spgd-no-warmup": {"steps": 10}, "spgd-no-momentum": {"steps": 10, "warmup_steps": 2},
    "spgd-pixel-cosine": {"steps": 10, "warmup_steps": 2}, "spgd-reused-denoise": {"steps": 10, "warmup_steps": 2},
    "dps": {"steps": 30}, "daps": {"steps": 10, "ode_steps": 3, "langevin_steps": 50},
    "daps-2025": {"steps": 10, "ode_steps": 3, "langevin_steps": 50}, "ddrm": {"steps": 20},
    "diffpir": {"steps": 30}, "pigdm": {"steps": 30}, "reddiff": {"steps": 30}, "classical": {},
}


def test_every_method_is_listed():
    from spgd.samplers import METHODS

    assert set(CUT_BUDGETS) == set(METHODS)


@pytest.mark.parametrize("task", ["gaussian_blur", "super_resolution", "inpainting_random"])
@pytest.mark.parametrize("method", sorted(CUT_BUDGETS))
def test_honest_cut_budget_runs_are_kept(face, method, task):
    op = spgd.make_operator(task, **({"kernel_size": 9, "std": 1.5} if task == "gaussian_blur" else {}))
    y = op.measure(face, torch.Generator().manual_seed(1))
    r = spgd.restore(y, op, spgd.load_prior("gaussian"), method=method, generator=torch.Generator().manual_seed(0),
                     **CUT_BUDGETS[method])
    (v,) = r.stats.verdict
    assert v.status in (OK, UNDER_FIT), v
    assert r.stats.failed in ([], [False])


def test_eval_fails_garbage_excludes_it_from_the_means_and_exits_1(capsys, tmp_path, two_images):
    out = tmp_path / "runs"
    code, stdout, err = run_cli(capsys, "eval", two_images, "--task", "denoising", *CLI_TINY, "--method",
                                "spgd,dps", "--set", "dps.lr=1e6", "--set", "dps.steps=30", "--out", out)
    assert code == 1, err
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    tables = json.loads((run_dir / "metrics.json").read_text())["per_method"]
    assert tables["dps"]["n_failed"] == 2 and tables["dps"]["psnr"]["mean"] is None
    assert tables["spgd"]["n_failed"] == 0
    assert "dps 00000:" in err and "excluded from the means" in err
    rec = json.loads((run_dir / "records" / "00000.json").read_text())
    assert verdict_of_record(rec["methods"]["dps"]["samples"][0]).status == FAILED
    assert verdict_of_record(rec["methods"]["spgd"]["samples"][0]).status in (OK, UNDER_FIT)
    assert "under-fit" in stdout  # the table's column
