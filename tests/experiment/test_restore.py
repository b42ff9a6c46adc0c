"""`spgd restore` (spgd.experiment.restore): sizes checked up front, padding, super-resolution's output size, no
run folder after a failure."""

from __future__ import annotations

import json
from pathlib import Path


from conftest import CLI_TINY, cli_error_line, no_run_folder, run_cli

TINY = CLI_TINY
run = run_cli
error_line = cli_error_line


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
    s = json.loads((run_dir / "settings.json").read_text())["resolved"]
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
