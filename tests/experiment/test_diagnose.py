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
