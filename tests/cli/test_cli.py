"""The `spgd` command end to end, in-process (cli.main), on tiny settings: 64x64 crops, the analytic Gaussian
prior, 3 annealing steps with 1 warm-up step."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CLI_TINY, cli_error_line, copy_demo_images, run_cli

from spgd.cli.main import COMMANDS
from spgd.errors import SpgdError
from spgd.experiment.samples import UNCERTAINTY_VMAX
from spgd.metrics.lpips import BACKBONES, build_features
from spgd.presets import apply_overrides, load_preset, sampler_settings

TINY = CLI_TINY
run = run_cli


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    cli_error_line(code, err, *fragments)


def only_run(out_dir: Path) -> Path:
    runs = sorted(p for p in out_dir.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture
def four_images(tmp_path: Path, demo_dir: Path) -> Path:
    return copy_demo_images(demo_dir, tmp_path / "images4", 4)


# ------------------------------------------------------------------------------------------------------
# eval


def test_eval_writes_everything_and_resume_does_nothing(capsys, tmp_path, two_images):
    out = tmp_path / "runs"
    code, stdout, err = run(capsys, "eval", two_images, "--task", "inpainting_random", *TINY, "--out", out)
    assert code == 0, err
    run_dir = only_run(out)
    assert str(run_dir) in stdout and "spgd" in stdout and "PSNR" in stdout
    names = ["00000", "00001"]
    for n in names:
        for sub, ext in (("restored", "png"), ("measurement", "png"), ("random_parts", "pt"), ("records", "json")):
            assert (run_dir / sub / f"{n}.{ext}").is_file(), (sub, n)
        assert pixels(run_dir / "restored" / f"{n}.png").shape == (64, 64, 3)
        parts = torch.load(run_dir / "random_parts" / f"{n}.pt", weights_only=True)
        assert parts["mask"].shape == (1, 64, 64)
    for f in ("settings.json", "grid.png", "metrics.csv", "metrics.json"):
        assert (run_dir / f).is_file(), f

    settings = json.loads((run_dir / "settings.json").read_text())
    plan, resolved = settings["plan"], settings["resolved"]  # the run folder schema of every command
    assert plan["task"] == "inpainting_random" and plan["methods"] == ["spgd"]
    assert resolved["samplers"]["spgd"]["steps"] == 3 and resolved["samplers"]["spgd"]["lr"] == 2.5
    assert settings["versions"]["torch"] == torch.__version__
    assert settings["command_line"][:2] == ["spgd", "eval"]

    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == names
    assert set(rows[0]) >= {"name", "method", "psnr", "ssim", "denoiser_calls", "vjps", "seconds",
                            "peak_memory_bytes", "failed"}
    assert float(rows[0]["denoiser_calls"]) == 6 and float(rows[0]["vjps"]) == 3  # 3 x (1 VJP + 1 denoise)
    table = json.loads((run_dir / "metrics.json").read_text())
    spgd_row = table["per_method"]["spgd"]
    assert spgd_row["n"] == 2 and spgd_row["n_failed"] == 0
    assert np.isfinite(spgd_row["psnr"]["mean"]) and spgd_row["psnr"]["std"] >= 0
    assert "LPIPS (vgg) not computed" in table["lpips"]
    assert Image.open(run_dir / "grid.png").size[1] > 2 * 64  # two rows

    # --resume: nothing to do, nothing rewritten except the tables
    before = snapshot(run_dir)
    code, stdout, err = run(capsys, "eval", "--resume", run_dir)
    assert code == 0, err
    assert "0 image(s) to do (2 already done)" in err
    after = snapshot(run_dir)
    per_image = [k for k in before if k.split("/")[0] in ("records", "restored", "measurement", "random_parts")]
    assert per_image and all(after[k] == before[k] for k in per_image)
    assert json.loads((run_dir / "metrics.json").read_text())["per_method"]["spgd"]["n"] == 2

    # resuming with different settings is refused, and nothing is lost
    code, _, err = run(capsys, "eval", "--resume", run_dir, "--set", "steps=4")
    assert_one_line_error(code, err, "refusing to resume", "steps")
    assert all(snapshot(run_dir).get(k) == after[k] for k in per_image)


def interrupt_second_batch(monkeypatch) -> None:
    """Ctrl-C as the evaluation starts its second batch (the first batch's images are finished)."""
    from spgd.experiment.evaluation import Evaluation

    real = Evaluation._restore_batch
    calls = {"n": 0}

    def flaky(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Evaluation, "_restore_batch", flaky)


def test_interrupt_keeps_finished_images_and_resume_completes(capsys, tmp_path, two_images, monkeypatch):
    out = tmp_path / "runs"
    interrupt_second_batch(monkeypatch)
    code, _, err = run(capsys, "eval", two_images, "--task", "denoising", *TINY, "--out", out, "-q")
    assert code == 130
    run_dir = only_run(out)
    assert f"spgd eval --resume {run_dir}" in err and "Traceback" not in err
    assert (run_dir / "records" / "00000.json").is_file() and not (run_dir / "records" / "00001.json").exists()
    with open(run_dir / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 1

    monkeypatch.undo()  # the real batches again
    first = (run_dir / "records" / "00000.json").stat().st_mtime_ns
    code, _, err = run(capsys, "eval", "--resume", run_dir)
    assert code == 0, err
    assert "1 image(s) to do (1 already done)" in err
    assert (run_dir / "records" / "00000.json").stat().st_mtime_ns == first
    with open(run_dir / "metrics.csv") as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["00000", "00001"]


def test_same_pixels_with_batch_size_1_and_4(capsys, tmp_path, four_images):
    """Per-image seeding: motion kernels, noise and initial noise do not depend on the batch. `--batch-size auto`
    is 4 on a CPU (no free-memory measurement there) and is recorded resolved."""
    results = {}
    for b in (1, "auto"):
        out = tmp_path / f"runs{b}"
        code, _, err = run(capsys, "eval", four_images, "--task", "motion_blur", *TINY, "--set", "kernel_size=9",
                           "--batch-size", b, "--out", out, "-q")
        assert code == 0, err
        results[b] = only_run(out)
    settings = json.loads((results["auto"] / "settings.json").read_text())
    assert (settings["resolved"]["batch_size"], settings["plan"]["batch_size"]) == (4, "auto")
    assert {r["batch_size"] for r in map(json.loads, map(Path.read_text, (results["auto"] / "records").glob("*.json")))} == {4}
    results[4] = results["auto"]
    names = [f"0000{i}" for i in range(4)]
    for n in names:
        k1 = torch.load(results[1] / "random_parts" / f"{n}.pt", weights_only=True)["kernel"]
        k4 = torch.load(results[4] / "random_parts" / f"{n}.pt", weights_only=True)["kernel"]
        assert torch.equal(k1, k4)
        assert np.array_equal(pixels(results[1] / "measurement" / f"{n}.png"),
                              pixels(results[4] / "measurement" / f"{n}.png"))
        assert np.array_equal(pixels(results[1] / "restored" / f"{n}.png"),
                              pixels(results[4] / "restored" / f"{n}.png"))
    # different images really got different kernels
    k = [torch.load(results[4] / "random_parts" / f"{n}.pt", weights_only=True)["kernel"] for n in names[:2]]
    assert not torch.equal(k[0], k[1])


def test_no_fast_runs_the_network_float32_eager(capsys, tmp_path, two_images, monkeypatch):
    """--no-fast wins over SPGD_FAST=1 (which would ask for bf16 + compile) and is recorded in settings.json."""
    monkeypatch.setenv("SPGD_FAST", "1")
    out = tmp_path / "runs"
    code, _, err = run(capsys, "eval", two_images, "--task", "denoising", "--prior", "default", "--set", "steps=1",
                       "--set", "warmup_steps=1", "--size", "32", "--resize", "--no-fast", "--out", out, "-q")
    assert code == 0, err
    assert json.loads((only_run(out) / "settings.json").read_text())["resolved"]["network"] == "fp32 eager"


def test_several_methods_samples_and_lpips(capsys, tmp_path, two_images):
    weights = tmp_path / "alex.pth"
    torch.manual_seed(0)
    sd = {f"features.{k}": v for k, v in build_features(BACKBONES["alex"].layers).state_dict().items()}
    sd.update({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(BACKBONES["alex"].channels)})
    torch.save(sd, weights)
    out = tmp_path / "runs"
    code, stdout, err = run(capsys, "eval", two_images, "--task", "denoising", *TINY, "--limit", 1, "--samples", 2,
                            "--method", "spgd,spgd-official", "--lpips-weights", weights, "--lpips-net", "alex",
                            "--out", out, "-q")
    assert code == 0, err
    run_dir = only_run(out)
    for m in ("spgd", "spgd-official"):
        assert (run_dir / "restored" / m / "00000.png").is_file()
        assert (run_dir / "restored" / m / "00000-s1.png").is_file()
    a = pixels(run_dir / "restored" / "spgd" / "00000.png")
    assert not np.array_equal(a, pixels(run_dir / "restored" / "spgd" / "00000-s1.png"))  # other seed
    record = json.loads((run_dir / "records" / "00000.json").read_text())
    rm = record["methods"]["spgd"]
    assert rm["n_samples"] == 2 and len(rm["samples"]) == 2
    assert rm["psnr"] == pytest.approx(np.mean([s["psnr"] for s in rm["samples"]]))
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["spgd", "spgd-official"]
    assert "lpips-alex" in rows[0] and float(rows[0]["lpips-alex"]) >= 0
    table = json.loads((run_dir / "metrics.json").read_text())
    assert table["lpips_label"] == "lpips-alex" and "from" in table["lpips"]
    assert "lpips-alex" in stdout


def test_samples_give_a_mean_and_an_uncertainty_map(capsys, tmp_path, two_images):
    out = tmp_path / "runs"
    code, stdout, err = run(capsys, "eval", two_images, "--task", "inpainting_random", *TINY, "--samples", 3,
                            "--method", "spgd,classical", "--out", out)
    assert code == 0, err
    run_dir = only_run(out)
    record = json.loads((run_dir / "records" / "00001.json").read_text())
    rm = record["methods"]["spgd"]
    ms = rm["mean_of_samples"]
    assert ms["n"] == 3 and ms["restored"] == "mean/spgd/00001.png"
    assert ms["uncertainty"] == "uncertainty/spgd/00001.png"
    assert record["methods"]["classical"].get("mean_of_samples") is None  # deterministic: nothing to average
    samples = [pixels(run_dir / s["restored"]).astype(np.float64) for s in rm["samples"]]
    mean = pixels(run_dir / ms["restored"]).astype(np.float64)
    assert np.abs(mean - np.mean(samples, 0)).max() <= 1.5  # the mean of the samples, up to rounding
    # an average of three different posterior samples is closer to the truth than a typical sample
    assert ms["psnr"] > rm["psnr"]
    # the spread is where pixels are missing: the uncertainty map is not flat
    heat = pixels(run_dir / ms["uncertainty"])
    assert heat.ndim == 3 and heat.std() > 1
    assert 0 < ms["pixel_std"] < UNCERTAINTY_VMAX
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["name"] == "00001" and rows[1]["method"] == "spgd"
    assert float(rows[1]["psnr_of_mean"]) == pytest.approx(ms["psnr"], abs=1e-4)
    assert rows[3]["method"] == "classical" and rows[3]["psnr_of_mean"] == ""
    table = json.loads((run_dir / "metrics.json").read_text())
    assert table["per_method"]["spgd"]["mean_of_samples"]["n_images"] == 2
    assert "mean of samples" in stdout
    grid = Image.open(run_dir / "grid.png")
    assert grid.width > 6 * 64  # truth, measurement, spgd, classical, spgd mean, spgd uncertainty


def test_records_hold_the_data_fit(capsys, tmp_path, two_images):
    out = tmp_path / "runs"
    code, stdout, err = run(capsys, "eval", two_images, "--task", "inpainting_random", *TINY, "--limit", 1,
                            "--method", "spgd,classical", "--out", out)
    assert code == 0, err
    table = json.loads((only_run(out) / "metrics.json").read_text())
    noise = table["noise_sigma"]
    assert noise == 0.01
    fit = {m: table["per_method"][m]["rms_residual"]["mean"] for m in ("spgd", "classical")}
    # biharmonic inpainting keeps the observed pixels as they are, so what is left is the noise (y carries it
    # on the dropped pixels too: sqrt(0.8) * 0.01); 3 SPGD steps fit far less
    assert fit["classical"] == pytest.approx(noise * 0.8**0.5, rel=0.15)
    assert 3 * fit["classical"] < fit["spgd"] < 1
    assert "|Ax-y|" in stdout


# ------------------------------------------------------------------------------------------------------
# bad input


def test_missing_and_empty_folders(capsys, tmp_path):
    out = tmp_path / "runs"
    code, _, err = run(capsys, "eval", tmp_path / "nope", "--task", "denoising", *TINY, "--out", out)
    assert_one_line_error(code, err, "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    code, _, err = run(capsys, "eval", empty, "--task", "denoising", *TINY, "--out", out)
    assert_one_line_error(code, err, "no image files")
    assert not out.exists() or not any(out.iterdir())  # no run folder left behind


def test_unreadable_image_is_skipped_with_a_warning(capsys, tmp_path, two_images):
    (two_images / "00000b.png").write_bytes(b"this is not a png")
    out = tmp_path / "runs"
    code, _, err = run(capsys, "eval", two_images, "--task", "denoising", *TINY, "--out", out, "-q")
    assert code == 0, err
    assert "spgd: warning: skipping 00000b.png" in err and "Traceback" not in err
    run_dir = only_run(out)
    assert sorted(p.name for p in (run_dir / "records").iterdir()) == ["00000.json", "00001.json"]
    # the unreadable file keeps its place in the order: 00001 is image 2 (seed 2)
    assert json.loads((run_dir / "records" / "00001.json").read_text())["seed"] == 2


def test_unknown_set_key_and_bad_values(capsys, tmp_path, two_images):
    out = tmp_path / "runs"
    code, _, _ = run(capsys, "eval", two_images, "--task", "denoising", *TINY, "--out", out, "-q")
    assert code == 0
    before = snapshot(out)
    for bad, fragment in (
        (["--set", "stepz=3"], "valid keys are"),
        (["--set", "steps=2.5"], "steps must be an integer"),
        (["--set", "beta=1.5"], "beta"),
        (["--method", "spgd,nope"], "unknown method 'nope'"),
        (["--set", "noise=1"], "noise_sigma"),
        (["--batch-size", "big"], "positive integer or 'auto'"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ):
        code, _, err = run(capsys, "eval", two_images, "--task", "denoising", *TINY, *bad, "--out", out)
        assert_one_line_error(code, err, fragment)
    code, _, err = run(capsys, "eval", two_images, "--task", "deblur", "--out", out)
    assert_one_line_error(code, err, "unknown task 'deblur'", "gaussian_blur")
    assert snapshot(out) == before  # nothing written, nothing lost


def test_size_mismatch_without_resize_is_an_error(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "denoising", "--prior", "gaussian", "--size", "64",
                       "--out", tmp_path / "runs")
    assert_one_line_error(code, err, "--resize")


# ------------------------------------------------------------------------------------------------------
# restore


@pytest.fixture
def inpainting_run(capsys, tmp_path, two_images) -> Path:
    out = tmp_path / "runs"
    code, _, err = run(capsys, "eval", two_images, "--task", "inpainting_random", *TINY, "--limit", 1,
                       "--out", out, "-q")
    assert code == 0, err
    return only_run(out)


def test_restore_a_saved_measurement(capsys, tmp_path, inpainting_run):
    out = tmp_path / "restored"
    code, stdout, err = run(capsys, "restore", inpainting_run / "measurement" / "00000.png", "--task",
                            "inpainting_random", "--mask", inpainting_run / "random_parts" / "00000.pt",
                            "--prior", "gaussian", "--set", "steps=3", "--set", "warmup_steps=1", "--out", out, "-q")
    assert code == 0, err
    run_dir = only_run(out)
    assert (run_dir / "restored.png").is_file() and str(run_dir / "restored.png") in stdout
    assert pixels(run_dir / "restored.png").shape == (64, 64, 3)
    settings = json.loads((run_dir / "settings.json").read_text())
    assert settings["command"] == "restore" and settings["resolved"]["sampler"]["steps"] == 3


def test_restore_samples_give_a_mean_and_an_uncertainty_map(capsys, tmp_path, inpainting_run):
    args = ["restore", inpainting_run / "measurement" / "00000.png", "--task", "inpainting_random", "--mask",
            inpainting_run / "random_parts" / "00000.pt", "--prior", "gaussian", "--set", "steps=3",
            "--set", "warmup_steps=1", "-q"]
    code, _, err = run(capsys, *args, "--samples", "3", "--out", tmp_path / "three")
    assert code == 0, err
    run_dir = only_run(tmp_path / "three")
    samples = [pixels(run_dir / f) for f in ("restored.png", "restored-s1.png", "restored-s2.png")]
    assert not np.array_equal(samples[0], samples[1])
    settings = json.loads((run_dir / "settings.json").read_text())["resolved"]
    ms = settings["mean_of_samples"]
    assert ms["n"] == 3 and settings["failed_per_sample"] == [False] * 3 and 0 < ms["pixel_std"]
    mean = pixels(run_dir / "restored-mean.png").astype(np.float64)
    assert np.abs(mean - np.mean(samples, 0)).max() <= 1.5
    assert pixels(run_dir / "uncertainty.png").shape == (64, 64, 3)
    # sample s is seeded derive_seed(seed, 1, s), whatever S is: --samples 2 draws samples 0 and 1 of this run
    code, _, err = run(capsys, *args, "--samples", "2", "--out", tmp_path / "two")
    assert code == 0, err
    assert np.abs(pixels(only_run(tmp_path / "two") / "restored-s1.png").astype(int) - samples[1]).max() <= 1
    code, _, err = run(capsys, *args, "--samples", "0", "--out", tmp_path / "zero")
    assert_one_line_error(code, err, "--samples must be >= 1")
    # a deterministic method is restored once, with a word why
    code, _, err = run(capsys, *args[:6], "--method", "classical", "--samples", "3", "--out", tmp_path / "det")
    assert code == 0 and "deterministic" in err
    det = only_run(tmp_path / "det")
    assert not (det / "restored-s1.png").exists() and not (det / "uncertainty.png").exists()


def test_restore_super_resolution_output_size(capsys, tmp_path):
    small = tmp_path / "small.png"
    Image.fromarray((np.random.default_rng(0).random((16, 12, 3)) * 255).astype(np.uint8)).save(small)
    out = tmp_path / "out"
    code, _, err = run(capsys, "restore", small, "--task", "super_resolution", "--prior", "gaussian",
                       "--set", "steps=2", "--set", "warmup_steps=1", "--out", out, "-q")
    assert code == 0, err
    assert pixels(only_run(out) / "restored.png").shape == (64, 48, 3)


def test_restore_bad_inputs(capsys, tmp_path, inpainting_run):
    meas = inpainting_run / "measurement" / "00000.png"
    out = tmp_path / "out"
    bad = tmp_path / "kernel.npy"
    np.save(bad, np.ones((4, 4)))  # even size
    code, _, err = run(capsys, "restore", meas, "--task", "motion_blur", "--kernel", bad, "--prior", "gaussian",
                       "--out", out)
    assert_one_line_error(code, err, "odd")
    np.save(bad, np.ones((3, 5, 5, 2)))
    code, _, err = run(capsys, "restore", meas, "--task", "gaussian_blur", "--kernel", bad, "--prior", "gaussian",
                       "--out", out)
    assert_one_line_error(code, err, "2-D")
    code, _, err = run(capsys, "restore", meas, "--task", "inpainting_random", "--prior", "gaussian", "--out", out)
    assert_one_line_error(code, err, "--mask")
    code, _, err = run(capsys, "restore", tmp_path / "missing.png", "--task", "denoising", "--out", out)
    assert_one_line_error(code, err, "not found")
    assert not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------------------------------------------
# demo, help, presets


def test_demo_runs(capsys, tmp_path):
    code, stdout, err = run(capsys, "demo", "--steps", 3, "--out", tmp_path, "-q")
    assert code == 0, err
    run_dir = only_run(tmp_path)
    for f in ("grid.png", "restored.png", "metrics.json", "settings.json"):
        assert (run_dir / f).is_file()
    scores = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(scores["restored"]["psnr"]) and np.isfinite(scores["measurement"]["psnr"])
    assert str(run_dir) in stdout and "PSNR" in stdout


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help(capsys, command):
    """Every command `spgd --help` lists builds its parser and shows its description, examples and the shared
    -q/-v (the list comes from spgd.cli.main, so a new command cannot be left out)."""
    code, stdout, err = run(capsys, *([command] if command else []), "--help")
    assert code == 0, err
    assert f"usage: spgd {command}".rstrip() in stdout
    assert "examples:" in stdout
    if command:
        assert COMMANDS[command].DESCRIPTION.splitlines()[0] in stdout
        assert "-q, --quiet" in stdout and "-v, --verbose" in stdout


class _Declarations:
    """Stands in for a parser and its groups: records the help text of every option declared on it."""

    def __init__(self):
        self.helps: dict[str, str] = {}

    def add_argument(self, *names, **kwargs):
        for name in names:
            self.helps[name] = kwargs.get("help")

    def add_argument_group(self, *args, **kwargs):
        return self

    def add_mutually_exclusive_group(self, **kwargs):
        return self


def test_shared_options_have_one_help_text():
    """--device, --seed, --out, --set, --prior and -q/-v read the same in every command that has them. Own
    meanings, said in their own words: train's --out (its run folder) and --seed (weights, split, crops), restore's
    --seed (its file is image 0) and bench's --seed (random weights and timing batch)."""
    own = {("train", "--out"), ("train", "--seed"), ("restore", "--seed"), ("bench", "--seed")}
    helps: dict[str, set] = {}
    for name, command in COMMANDS.items():
        declared = _declared(command)
        assert "--quiet" in declared and "--verbose" in declared, name
        for flag in ("--device", "--seed", "--set", "--prior", "--quiet", "--verbose", "--out"):
            if flag in declared and (name, flag) not in own:
                helps.setdefault(flag, set()).add(declared[flag])
    assert set(helps) == {"--device", "--seed", "--set", "--prior", "--quiet", "--verbose", "--out"}
    assert all(len(texts) == 1 for texts in helps.values()), helps


def _declared(command) -> dict:
    declared = _Declarations()
    command.add_arguments(declared)
    return declared.helps


def test_no_arguments_and_python_dash_m():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "spgd", "eval", "/does/not/exist", "--task", "denoising"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("spgd: error:") and "Traceback" not in proc.stderr


def test_presets_hold_the_paper_values():
    lrs = {"super_resolution": 7.0, "inpainting_random": 2.5, "phase_retrieval": 2.0, "gaussian_blur": 1.0,
           "motion_blur": 1.0, "nonlinear_blur": 1.0, "hdr": 1.0, "inpainting_box": 2.0, "denoising": 1.0}  # box: ours, measured (the released one crashes)
    noise = {"super_resolution": 0.01, "inpainting_random": 0.01, "gaussian_blur": 0.01, "motion_blur": 0.01,
             "inpainting_box": 0.05, "phase_retrieval": 0.05, "nonlinear_blur": 0.05, "hdr": 0.05}
    for task, lr in lrs.items():
        p = load_preset(task)
        s = sampler_settings(p, "spgd")
        assert s["lr"] == lr and s["steps"] == 200 and s["warmup_steps"] == 5
        assert s["beta"] == 0.9 and s["lr_min_ratio"] == 0.01
        if task in noise:
            assert p["operator"]["noise_sigma"] == noise[task]


def test_overrides_routing():
    p = load_preset("gaussian_blur")
    q = apply_overrides(p, ["steps=50", "kernel_size=31", "operator.std=2", "spgd.beta=0.5", "cosine=pixel",
                            "fresh_denoise=false"])
    s = sampler_settings(q, "spgd")
    assert (s["steps"], s["beta"], s["cosine"], s["fresh_denoise"]) == (50, 0.5, "pixel", False)
    assert q["operator"] == {"kernel_size": 31, "std": 2.0, "noise_sigma": 0.01}
    assert sampler_settings(q, "spgd-official")["beta"] == 0.9  # spgd.beta is for spgd only
    assert p["operator"]["kernel_size"] == 61  # the preset itself is unchanged
    with pytest.raises(SpgdError, match="valid keys"):
        apply_overrides(p, ["nope=1"])
    with pytest.raises(SpgdError, match="key=value"):
        apply_overrides(p, ["steps"])
    with pytest.raises(SpgdError, match="follows the run.s seed"):
        apply_overrides(load_preset("motion_blur"), ["seed=3"])


def test_protocol_sets_the_papers_measurement_and_is_kept_on_resume(capsys, tmp_path, two_images):
    """--protocol daps: noise 0.05 and 70 % dropped (the DAPS configs) instead of the SPGD configs' 0.01 / 80 %,
    recorded in settings.json; the biharmonic fill then leaves the larger noise on the kept pixels."""
    out = tmp_path / "runs"
    code, _, err = run(capsys, "eval", two_images, "--task", "inpainting_random", "--prior", "gaussian", "--size", 64,
                       "--resize", "--limit", 1, "--method", "classical", "--protocol", "daps", "--out", out)
    assert code == 0, err
    run_dir = only_run(out)
    settings = json.loads((run_dir / "settings.json").read_text())["resolved"]
    assert settings["preset"]["protocol"] == "daps" and settings["identity"]["protocol"] == "daps"
    assert settings["operator"]["noise_sigma"] == 0.05 and settings["operator"]["drop"] == 0.7
    fit = json.loads((run_dir / "metrics.json").read_text())["per_method"]["classical"]["rms_residual"]["mean"]
    assert fit == pytest.approx(0.05 * 0.7**0.5, rel=0.15)
    # resume takes the protocol from the run folder; a different one is a different experiment
    code, _, err = run(capsys, "eval", "--resume", run_dir)
    assert code == 0, err
    code, _, err = run(capsys, "eval", "--resume", run_dir, "--protocol", "dps")
    assert code == 2 and "protocol" in err, err


def test_cli_warmup_steps_0_is_refused(capsys, tmp_path, two_images):
    code, _, err = run(capsys, "eval", two_images, "--task", "gaussian_blur", *TINY, "--set", "warmup_steps=0",
                       "--out", tmp_path / "runs")
    cli_error_line(code, err, "warmup_steps", "never used")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


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


def test_interrupted_limit_run_resumed_with_the_printed_command_has_exactly_the_images_asked_for(
        capsys, tmp_path, four_images, monkeypatch):
    """Issue 28: Ctrl-C on `--limit 3` after one image; the printed resume command restores the 2 missing images of
    the 3 asked for, not the whole folder."""
    out = tmp_path / "runs"
    interrupt_second_batch(monkeypatch)
    code, _, err = run(capsys, "eval", four_images, "--task", "denoising", *TINY, "--limit", 3, "--batch-size", 1,
                       "--out", out, "-q")
    assert code == 130
    run_dir = only_run(out)
    printed = [line.strip() for line in err.splitlines() if line.strip().startswith("spgd eval --resume")]
    assert len(printed) == 1, err
    monkeypatch.undo()  # the real batches again
    code, _, err = run(capsys, *printed[0].split()[1:])
    assert code == 0, err
    assert sorted(p.stem for p in (run_dir / "records").glob("*.json")) == ["00000", "00001", "00002"]
    with open(run_dir / "metrics.csv") as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["00000", "00001", "00002"]


def test_resume_refuses_another_limit_and_changed_images(capsys, tmp_path, four_images):
    out = tmp_path / "runs"
    code, _, err = run(capsys, "eval", four_images, "--task", "denoising", *TINY, "--limit", 2, "--out", out, "-q")
    assert code == 0, err
    run_dir = only_run(out)
    code, _, err = run(capsys, "eval", "--resume", run_dir, "--limit", 3)
    assert_one_line_error(code, err, "refusing to resume", "limit")
    first = sorted(four_images.iterdir())[0]
    Image.fromarray(255 - pixels(first)).save(first)
    code, _, err = run(capsys, "eval", "--resume", run_dir)
    assert_one_line_error(code, err, "refusing to resume", "changed since the run", first.name)


def test_a_run_folder_in_use_is_refused_with_one_line(capsys, tmp_path, two_images):
    from spgd.experiment.runs import RunLock

    out = tmp_path / "runs"
    code, _, err = run(capsys, "eval", two_images, "--task", "denoising", *TINY, "--limit", 1, "--out", out, "-q")
    assert code == 0, err
    run_dir = only_run(out)
    before = snapshot(run_dir)
    with RunLock(run_dir, "eval"):  # another process works in it (flock is per open file: one process suffices)
        code, _, err = run(capsys, "eval", "--resume", run_dir)
        assert_one_line_error(code, err, "in use by another process", f"process {__import__('os').getpid()}")
    assert snapshot(run_dir) == before
    code, _, err = run(capsys, "eval", "--resume", run_dir)  # released: resuming works again
    assert code == 0, err
