"""Gradient telemetry: angle maths on constructed vectors, step bookkeeping, zero cost when off, plots, and
`spgd diagnose` end to end on a small crop of a demo face."""

import argparse
import csv
import json
import math

import pytest
import torch
from PIL import Image

import spgd
from spgd.diagnostics import GradientTelemetry, angle_deg, cosine_similarity
from spgd.cli import main
from spgd.cli.diagnose import add_arguments as add_diagnose_arguments, run as run_diagnose
from spgd.errors import SpgdError
from spgd.priors.gaussian import GaussianPrior
from spgd.samplers import make_sampler


def rotated(deg: float, shape=(3, 4, 4)) -> torch.Tensor:
    """cos(deg) e1 + sin(deg) e2 in a tensor of `shape`, scaled by 2.5 (angles ignore length)."""
    v = torch.zeros(shape).flatten()
    v[0], v[1] = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return 2.5 * v.reshape(shape)


# -- angles ------------------------------------------------------------------------------------------------
def test_known_angles_per_sample():
    a = torch.stack([rotated(0)] * 5)
    b = torch.stack([rotated(0), rotated(90), rotated(180), rotated(60), 7 * rotated(-45)])
    got = angle_deg(a, b)
    assert got.dtype == torch.float64 and got.shape == (5,)
    assert torch.allclose(got, torch.tensor([0.0, 90.0, 180.0, 60.0, 45.0], dtype=torch.float64), atol=1e-6)


def test_angles_are_safe_at_the_ends_and_for_zero_vectors():
    a = torch.randn(4, 3, 8, 8)
    assert torch.isfinite(angle_deg(a, a * (1 + 1e-7))).all()  # |cos| rounding past 1 is clamped
    assert (cosine_similarity(a, -a) >= -1).all()
    assert torch.allclose(angle_deg(a, -3 * a), torch.full((4,), 180.0, dtype=torch.float64), atol=1e-3)
    z = a.clone()
    z[2] = 0
    got = angle_deg(a, z)
    assert math.isnan(got[2]) and torch.isfinite(got[[0, 1, 3]]).all()
    with pytest.raises(SpgdError, match="shapes"):
        angle_deg(a, a[:, :2])


def fake_info(k, g_l, g_d, start, n_warm=3, last=False):
    """A callback dict as SPGD builds it, with the given displacements from `start`."""
    batch = g_l.shape[0]
    return {
        "step": k,
        "sigma": 10.0 / (k + 1),
        "sigma_next": 0.0 if last else 10.0 / (k + 2),
        "lr": 1.0,
        "x_level": start,
        "x_warm": start + g_l,
        "x": start + g_l + g_d,
        "x0_hat": torch.zeros_like(start),
        "loss": [torch.full((batch,), 100.0 - j - k) for j in range(n_warm)],
        "cosine": [torch.full((batch,), 0.5 * j) for j in range(1, n_warm)],
        "alpha": [torch.full((batch,), (0.5 * j + 1) / 2) for j in range(1, n_warm)],
        "alive": torch.ones(batch, dtype=torch.bool),
    }


def test_consecutive_step_bookkeeping():
    # sample 0: g_l turns by 30 then 90 degrees; sample 1 by 60 then 180; g_d turns by 0 then 45 for both
    l_dirs = [(0.0, 0.0), (30.0, 60.0), (120.0, 240.0)]
    d_dirs = [90.0, 90.0, 135.0]
    tel = GradientTelemetry()
    start = torch.randn(2, 3, 4, 4)
    for k, ((l0, l1), d) in enumerate(zip(l_dirs, d_dirs)):
        g_l = torch.stack([rotated(l0), rotated(l1)])
        g_d = torch.stack([rotated(d), 3 * rotated(d)])
        tel(fake_info(k, g_l, g_d, start, last=k == 2))
        start = start + g_l + g_d
    assert len(tel) == 3 and tel.batch_size == 2
    a_l, a_d, a_ld = tel.array("angle_l"), tel.array("angle_d"), tel.array("angle_ld")
    assert a_l.shape == (3, 2)
    assert torch.isnan(a_l[0]).all() and torch.isnan(a_d[0]).all()  # no previous step
    assert torch.allclose(a_l[1:], torch.tensor([[30.0, 60.0], [90.0, 180.0]], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(a_d[1:], torch.tensor([[0.0, 0.0], [45.0, 45.0]], dtype=torch.float64), atol=1e-3)
    assert torch.allclose(a_ld, torch.tensor([[90.0, 90.0], [60.0, 30.0], [15.0, 105.0]], dtype=torch.float64),
                          atol=1e-4)
    assert torch.allclose(tel.array("norm_l"), torch.full((3, 2), 2.5, dtype=torch.float64))
    assert tel.array("loss")[:, 0].tolist() == [98.0, 97.0, 96.0]  # the last warm-up step's loss
    assert tel.warmup_array("cosine").shape == (3, 2, 2)
    assert tel.warmup_array("alpha")[0, :, 0].tolist() == [0.75, 1.0]

    rows = tel.to_rows()
    assert len(rows) == 6 and rows[2]["step"] == 1 and rows[2]["sample"] == 0
    assert rows[2]["angle_l"] == pytest.approx(30.0, abs=1e-4) and rows[2]["cosine_2"] == 1.0


def test_dead_samples_give_nan():
    tel = GradientTelemetry()
    info = fake_info(0, torch.randn(2, 5), torch.randn(2, 5), torch.zeros(2, 5))
    info["alive"] = torch.tensor([True, False])
    tel(info)
    assert math.isfinite(tel.array("angle_ld")[0, 0]) and math.isnan(tel.array("angle_ld")[0, 1])


def test_summary_uses_the_middle_half_and_csv(tmp_path):
    tel = GradientTelemetry()
    start = torch.zeros(1, 3, 4, 4)
    angle = 0.0
    turns = [0, 10, 10, 20, 40, 40, 10, 10]  # per step; the middle half (steps 2..5) sees 10, 20, 40, 40
    for k, turn in enumerate(turns):
        angle += turn
        tel(fake_info(k, rotated(angle)[None], rotated(angle + 90)[None], start))
    s = tel.summary()
    assert s["middle"] == [2, 6]
    assert s["gl_angle_mean"] == pytest.approx(27.5, abs=1e-4)
    assert s["gl_angle_p90"] == pytest.approx(40.0, abs=1e-4)
    assert s["ld_angle_mean"] == pytest.approx(90.0, abs=1e-4)
    assert tel.summary(middle=(0.0, 1.0))["gl_angle_mean"] == pytest.approx(140 / 7, abs=1e-4)  # k = 0 is NaN
    with pytest.raises(SpgdError, match="middle"):
        tel.summary(middle=(0.8, 0.2))

    path = tel.save_csv(tmp_path / "t.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and rows[0]["angle_l"] == "" and float(rows[3]["angle_l"]) == pytest.approx(20.0, abs=1e-4)

    joined = GradientTelemetry.concat([tel, tel])
    assert joined.array("angle_l").shape == (8, 2) and joined.summary()["gl_angle_mean"] == s["gl_angle_mean"]


# -- on a real sampler run ---------------------------------------------------------------------------------
def small_problem():
    prior = GaussianPrior()
    op = spgd.make_operator("gaussian_blur", kernel_size=5, std=1.0)
    x = prior.sample((2, 3, 16, 16), torch.Generator().manual_seed(0))
    y = op.measure(x, torch.Generator().manual_seed(1))
    return prior, op, y


@pytest.mark.parametrize("method", ["spgd", "spgd-official", "spgd-no-warmup"])
def test_telemetry_changes_nothing(method):
    prior, op, y = small_problem()
    warmup = {} if method == "spgd-no-warmup" else {"warmup_steps": 3}  # keep the ablation's N = 1
    sampler = make_sampler(method, steps=8, lr=1.0, **warmup)
    plain = sampler.run(y, op, prior, generator=torch.Generator().manual_seed(5))
    tel = GradientTelemetry(frame_every=3)
    watched = sampler.run(y, op, prior, generator=torch.Generator().manual_seed(5), callback=tel)
    assert torch.equal(plain.x, watched.x)
    assert plain.stats.denoiser_calls == watched.stats.denoiser_calls
    assert plain.stats.vjps == watched.stats.vjps
    assert plain.telemetry is None and watched.telemetry is None  # the caller attaches it
    assert len(tel) == 8
    assert tel.frame_steps == [0, 3, 6, 7]  # every third step and the last
    assert tel.frames[0].dtype == torch.uint8 and tel.frames[0].shape == (2, 3, 16, 16)
    assert torch.isfinite(tel.array("angle_l")[1:]).all() and torch.isfinite(tel.array("angle_ld")).all()
    n_cos = tel.warmup_array("cosine").shape[1]
    assert n_cos == (0 if method == "spgd-no-warmup" else 2)


def test_telemetry_matches_the_loop_definitions():
    """g_l and g_d reassemble the state: x_{k+1} = x_k + g_l + g_d, so |g_l| > 0 and the loss falls."""
    prior, op, y = small_problem()
    tel = GradientTelemetry()
    spgd.restore(y, op, prior, steps=10, warmup_steps=2, callback=tel, generator=torch.Generator().manual_seed(0))
    assert (tel.array("norm_l") > 0).all() and (tel.array("norm_d") > 0).all()
    loss = tel.array("loss").mean(1)
    assert loss[-1] < loss[0]


# -- plots -------------------------------------------------------------------------------------------------
def test_plots_and_animation(tmp_path):
    from spgd.diagnostics.plots import plot_angles, plot_loss, save_animation

    prior, op, y = small_problem()
    tels = {}
    for method in ("spgd", "spgd-no-warmup"):
        tels[method] = GradientTelemetry(frame_every=2)
        make_sampler(method, steps=6, warmup_steps=3).run(y, op, prior, callback=tels[method])
    for fn, name in ((plot_angles, "angles.png"), (plot_loss, "loss.png")):
        path = fn(tels, tmp_path / name)
        with Image.open(path) as img:
            img.load()
            assert img.format == "PNG" and img.width > 200 and img.height > 100
    tel = tels["spgd"]
    gif = save_animation(tel.frames, tmp_path / "x0.gif", captions=[f"k={k}" for k in tel.frame_steps])
    with Image.open(gif) as img:
        assert img.format == "GIF" and img.n_frames == len(tel.frames) == 4
        assert img.size == (2 * 16, 16)  # the batch side by side
    with pytest.raises(SpgdError, match="no frames"):
        save_animation([], tmp_path / "none.gif")
    with pytest.raises(SpgdError, match="empty"):
        plot_angles({"spgd": GradientTelemetry()}, tmp_path / "empty.png")


# -- spgd diagnose -----------------------------------------------------------------------------------------
def test_ablations_keep_their_defining_settings():
    """The preset's SPGD values (warmup_steps = 5, beta = 0.9) and run-wide --set values must not turn an
    ablation back into SPGD."""
    from spgd.experiment.diagnose import _fixed_notes, _method_settings
    from spgd.presets import apply_overrides, load_preset

    preset = apply_overrides(load_preset("gaussian_blur"), ["beta=0.5"], ["spgd", "spgd-no-momentum"])
    methods = ("spgd", "spgd-no-momentum", "spgd-no-warmup", "spgd-official")
    got = {m: make_sampler(m, **_method_settings(m, preset, cpu=True)) for m in methods}
    assert got["spgd"].beta == 0.5 and got["spgd"].warmup_steps == 5 and got["spgd"].steps == 50
    assert got["spgd-no-momentum"].beta == 0.0 and got["spgd-no-warmup"].warmup_steps == 1
    assert not got["spgd-official"].use_momentum and not got["spgd-official"].fresh_denoise
    assert _fixed_notes(methods, preset) == [
        "spgd-no-momentum: ignored override of beta (fixed by this method: {'beta': 0.0})"]


def test_run_diagnose_end_to_end(tmp_path, demo_dir, capsys):
    with Image.open(demo_dir / "00000.png") as img:
        img.convert("RGB").crop((96, 96, 160, 160)).save(tmp_path / "face.png")
    parser = add_diagnose_arguments(argparse.ArgumentParser(prog="spgd diagnose"))
    argv = [str(tmp_path / "face.png"), "--task", "gaussian_blur", "--prior", "gaussian",
            "--methods", "spgd,spgd-no-warmup", "--set", "steps=4", "--set", "warmup_steps=2",
            "--frames", "2", "--out", str(tmp_path / "runs"), "--device", "cpu"]
    assert run_diagnose(parser.parse_args(argv), argv) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    names = {p.name for p in run_dir.iterdir()}
    for method in ("spgd", "spgd-no-warmup"):
        assert {f"telemetry_{method}.csv", f"x0hat_{method}.gif"} <= names
    assert {"angles.png", "loss.png", "summary.json", "restorations.png"} <= names
    summary = json.loads((run_dir / "summary.json").read_text())
    spgd_run, no_warmup = summary["methods"]["spgd"], summary["methods"]["spgd-no-warmup"]
    assert spgd_run["settings"]["warmup_steps"] == 2 and no_warmup["settings"]["warmup_steps"] == 1
    assert any("warmup_steps" in note for note in summary["notes"])  # the ablation keeps its setting
    assert spgd_run["gl_angle_mean"] is not None and 0 <= spgd_run["gl_angle_p90"] <= 180
    assert 5 < spgd_run["psnr_mean"] < 60 and spgd_run["denoiser_calls"] == 4 * 3
    settings = json.loads((run_dir / "settings.json").read_text())  # the run folder schema of every command
    assert settings["command"] == "diagnose" and settings["resolved"]["sampler"]["spgd"] == spgd_run["settings"]
    assert {"versions", "command_line", "created"} <= set(settings) and settings["plan"]["seed"] == 0
    with Image.open(run_dir / "angles.png") as img:
        assert img.format == "PNG"

    # a second call never overwrites the first
    again = argv[:5] + ["--methods", "spgd-no-warmup", "--set", "steps=2", "--frames", "0", "--quiet"] + argv[-4:]
    assert run_diagnose(parser.parse_args(again), again) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2
    # bad input is one error line in the common format and status 2 (spgd.cli.main prints it)
    capsys.readouterr()
    with pytest.raises(SpgdError, match="unknown method 'nope'"):
        run_diagnose(parser.parse_args(argv[:5] + ["--methods", "spgd,nope"]), argv)
    assert main(["diagnose", *argv[:5], "--methods", "spgd,nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spgd: error: unknown method 'nope'") and len(err.strip().splitlines()) == 1
