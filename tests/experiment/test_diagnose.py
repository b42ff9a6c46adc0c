"""`spgd diagnose` (spgd.experiment.diagnose): progress without a terminal."""

from __future__ import annotations



def test_diagnose_reports_progress_without_a_terminal(tmp_path, demo_dir, capsys):
    import argparse

    from PIL import Image

    from spgd.cli.diagnose import add_arguments as add_diagnose_arguments, run as run_diagnose

    with Image.open(demo_dir / "00000.png") as img:
        img.convert("RGB").crop((96, 96, 128, 128)).save(tmp_path / "face.png")
    parser = add_diagnose_arguments(argparse.ArgumentParser(prog="spgd diagnose"))
    argv = [str(tmp_path / "face.png"), "--task", "denoising", "--prior", "gaussian", "--methods", "spgd",
            "--set", "steps=3", "--set", "warmup_steps=1", "--frames", "0", "--out", str(tmp_path / "runs"),
            "--device", "cpu"]
    assert run_diagnose(parser.parse_args(argv), argv) == 0
    err = capsys.readouterr().err
    assert "spgd: step 3/3" in err and "writing plots" in err


def test_every_released_method_reports_its_angles_and_impossible_methods_are_refused(tmp_path, demo_dir, capsys):
    """Each diffusion method gives the telemetry its data and prior parts (DDRM, DiffPIR, PiGDM, RED-diff, DPS,
    DAPS, SPGD); a method without steps, or one that cannot take the task's operator, is refused in one line
    before a run folder exists."""
    import json

    from conftest import cli_error_line, no_run_folder, run_cli

    face = tmp_path / "face.png"
    from PIL import Image

    with Image.open(demo_dir / "00000.png") as img:
        img.convert("RGB").crop((96, 96, 128, 128)).save(face)
    common = [face, "--task", "gaussian_blur", "--prior", "gaussian", "--set", "steps=3", "--set", "warmup_steps=1",
              "--set", "kernel_size=9", "--frames", "0", "-q"]
    methods = "spgd,dps,daps,ddrm,diffpir,pigdm,reddiff"
    code, out, err = run_cli(capsys, "diagnose", *common, "--set", "daps.langevin_steps=2", "--methods", methods,
                             "--out", tmp_path / "ok")
    assert code == 0, err
    summary = json.loads(next((tmp_path / "ok").glob("*/summary.json")).read_text())
    for m in methods.split(","):
        assert 0 <= summary["methods"][m]["ld_angle_mean"] <= 180, m  # angle(g_l, g_d) was measured
    code, _, err = run_cli(capsys, "diagnose", *common, "--methods", "spgd,classical", "--out", tmp_path / "no1")
    cli_error_line(code, err, "classical has no steps")
    assert no_run_folder(tmp_path / "no1")
    motion = [a if a != "gaussian_blur" else "motion_blur" for a in common]
    code, _, err = run_cli(capsys, "diagnose", *motion, "--methods", "spgd,ddrm", "--out", tmp_path / "no2")
    cli_error_line(code, err, "ddrm cannot restore with MotionBlur", "singular value decomposition")
    assert no_run_folder(tmp_path / "no2")
