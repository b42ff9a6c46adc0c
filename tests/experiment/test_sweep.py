"""`spgd sweep`: a tiny sweep end to end (divergence marked, plot written, resume), value parsing, bad input."""

from __future__ import annotations

import csv
import json
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from conftest import copy_demo_images

from spgd.cli import main
from spgd.errors import SpgdError
from spgd.experiment.runs import atomic_write_json, read_run_settings
from spgd.cli import sweep as cli_sweep
from spgd.cli.options import ABLATION_METHODS, Parser
from spgd.experiment.sweep import SweepPlan, parse_values, parse_vary, resolve_varied
from spgd.samplers import fixed_settings

TINY = ["--size", "32", "--resize", "--prior", "gaussian", "--set", "steps=3", "--set", "warmup_steps=1",
        "--set", "kernel_size=9", "-q"]


@pytest.fixture
def two_faces(demo_dir: Path, tmp_path: Path) -> Path:
    return copy_demo_images(demo_dir, tmp_path / "faces", 2)


def _run_dir(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_tiny_sweep_marks_divergence_and_resumes(two_faces: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    argv = ["sweep", str(two_faces), "--task", "gaussian_blur", "--vary", "lr=0.3,1,1e30",
            "--methods", "spgd,spgd-no-momentum", "--out", str(out), *TINY]
    assert main(argv) == 0
    run = _run_dir(out)
    table = json.loads((run / "sweep.json").read_text())
    assert table["key"] == "lr" and table["values"] == [0.3, 1, 1e30]
    for m in ("spgd", "spgd-no-momentum"):
        cells = {c["label"]: c for c in table["results"][m]}
        assert set(cells) == {"0.3", "1", "1e+30"}
        for label in ("0.3", "1"):
            assert cells[label]["n_failed"] == 0 and cells[label]["n"] == 2
            assert cells[label]["psnr"]["mean"] > 5 and 0 < cells[label]["ssim"]["mean"] <= 1
        huge = cells["1e+30"]
        assert huge["n_failed"] == 2 and huge["psnr"]["mean"] is None and len(huge["failed_images"]) == 2
        assert table["summary"][m]["values_with_failure"] == [1e30]
        assert table["summary"][m]["best_value"] in (0.3, 1)

    with open(run / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["method", "lr", "image", "psnr", "ssim", "failed"]
    assert len(rows) == 2 * 3 * 2
    for r in rows:
        assert r["failed"] == ("1" if r["lr"] == "1e+30" else "0")
        assert (r["psnr"] == "") == (r["failed"] == "1")
    assert (run / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # every cell degrades the same images with the same operator and noise
    first = (run / "spgd" / "lr=0.3" / "measurement" / "00000.png").read_bytes()
    assert (run / "spgd-no-momentum" / "lr=1e+30" / "measurement" / "00000.png").read_bytes() == first

    # resume: a complete sweep redoes nothing; a cell without its completion mark is finished again
    (run / "spgd" / "lr=1" / "cell.json").unlink()
    (run / "spgd" / "lr=1" / "records" / "00001.json").unlink()
    capsys.readouterr()
    assert main(["sweep", "--resume", str(run), "-q"]) == 0
    again = json.loads((run / "sweep.json").read_text())
    def scores(t: dict) -> dict:
        return {m: [(c["label"], c["psnr"], c["ssim"], c["n_failed"]) for c in cells] for m, cells in t["results"].items()}

    assert scores(again) == scores(table)
    assert (run / "spgd" / "lr=1" / "cell.json").is_file()
    assert main(["sweep", "--resume", str(run), "--task", "motion_blur", "-q"]) == 2
    assert "settings differ" in capsys.readouterr().err
    # an option typed again with the saved value (or left to its default) is no difference
    assert main(["sweep", "--resume", str(run), "--task", "gaussian_blur", "--seed", "0", "-q"]) == 0


def test_parse_values() -> None:
    assert parse_values("log:0.1:10:3") == [0.1, 1.0, 10.0]
    assert parse_vary("lr=log:0.1:10:5") == ("lr", [0.1, 0.3162, 1.0, 3.162, 10.0])
    assert parse_values("lin:0:1:3") == [0.0, 0.5, 1.0]
    assert parse_values("0.1,3,1e30") == [0.1, 3, 1e30]
    assert parse_values("sample,pixel") == ["sample", "pixel"]
    # an integer setting gets its log range rounded (and de-duplicated)
    v = resolve_varied("steps", parse_values("log:1:100:5"), "gaussian_blur", ["spgd", "dps"])
    assert v.scope == "sampler" and v.values == [1, 3, 10, 32, 100]
    assert resolve_varied("noise_sigma", [0.01, 0.1], "gaussian_blur", ["spgd"]).scope == "operator"
    for bad in ("", "log:0:10:3", "log:0.1:10", "lin:a:b:3", "1,,2", "1,1.0"):
        with pytest.raises(SpgdError):
            parse_values(bad)


@pytest.mark.parametrize(
    "vary, methods, extra, message",
    [
        ("nonsense=1,2", "spgd", [], "unknown setting 'nonsense'"),
        ("lr=1,2", "spgd,classical", [], "method 'classical' has no setting 'lr'"),
        ("warmup_steps=1,5", "spgd,spgd-no-warmup", [], "fixes warmup_steps=1"),
        ("lr=", "spgd", [], "--vary needs values"),
        ("lr", "spgd", [], "--vary expects KEY=VALUES"),
        ("lr=1,2", "spgd,nope", [], "unknown method 'nope'"),
        ("lr=1,2", "spgd", ["--set", "lr=3"], "conflicts with --vary lr"),
    ],
)
def test_bad_input_exits_2_with_one_line(two_faces, tmp_path, capsys, vary, methods, extra, message) -> None:
    out = tmp_path / "runs"
    argv = ["sweep", str(two_faces), "--task", "gaussian_blur", "--vary", vary, "--methods", methods,
            "--out", str(out), "--prior", "gaussian", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("spgd: error:") and message in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())  # nothing was started


def test_declared_defaults_are_the_plans_defaults() -> None:
    """The options the command line declares default as the sweep's plan does (field by field); images, task and
    vary have none, the methods are SPGD and its ablations."""
    parser = Parser(prog="spgd")
    cli_sweep.add_arguments(parser)
    declared = vars(parser.parse_args([]))
    plan = {f.name: f.default if f.default_factory is MISSING else f.default_factory() for f in fields(SweepPlan)}
    with_default = {f: d for f, d in cli_sweep.PLAN_OPTIONS.items() if plan[f] is not MISSING}
    assert {f: declared[d] for f, d in with_default.items()} == {f: plan[f] for f in with_default}
    assert [declared[k] for k in ("images_dir", "task", "vary")] == [None, None, None]
    assert declared["methods"] == ABLATION_METHODS


def test_resume_needs_a_run_folder_of_the_same_command(tmp_path: Path) -> None:
    with pytest.raises(SpgdError, match="no settings.json there"):
        read_run_settings(tmp_path, "sweep")
    atomic_write_json(tmp_path / "settings.json", {"command": "eval"})
    with pytest.raises(SpgdError, match="it is a run of `spgd eval`, not `spgd sweep`"):
        read_run_settings(tmp_path, "sweep")
    assert read_run_settings(tmp_path, "eval") == {"command": "eval"}


def test_fixed_settings_are_a_copy() -> None:
    assert fixed_settings("spgd-no-warmup") == {"warmup_steps": 1} and fixed_settings("spgd") == {}
    fixed_settings("spgd-no-warmup")["warmup_steps"] = 5
    assert fixed_settings("spgd-no-warmup") == {"warmup_steps": 1}


def test_the_released_methods_sweep_an_operator_setting(two_faces, tmp_path, capsys) -> None:
    """DDRM, DiffPIR, PiGDM and RED-diff sweep like the others: every cell of a noise-level sweep completes,
    each with its own measurement noise, and the tables hold each method's cells."""
    out = tmp_path / "runs"
    argv = ["sweep", str(two_faces), "--task", "inpainting_random", "--vary", "noise_sigma=0.01,0.2",
            "--methods", "ddrm,diffpir,pigdm,reddiff", "--out", str(out), "--size", "32", "--resize",
            "--prior", "gaussian", "--set", "steps=3", "-q"]
    assert main(argv) == 0
    run = _run_dir(out)
    table = json.loads((run / "sweep.json").read_text())
    assert set(table["results"]) == {"ddrm", "diffpir", "pigdm", "reddiff"}
    for m, cells in table["results"].items():
        assert [c["label"] for c in cells] == ["0.01", "0.2"]
        for c in cells:
            assert c["n"] == 2 and c["n_failed"] == 0 and c["psnr"]["mean"] > 5
    quiet = (run / "ddrm" / "noise_sigma=0.01" / "measurement" / "00000.png").read_bytes()
    assert (run / "reddiff" / "noise_sigma=0.01" / "measurement" / "00000.png").read_bytes() == quiet
    assert (run / "ddrm" / "noise_sigma=0.2" / "measurement" / "00000.png").read_bytes() != quiet


def test_a_method_that_cannot_take_the_operator_is_refused_before_any_cell(two_faces, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    argv = ["sweep", str(two_faces), "--task", "motion_blur", "--vary", "steps=2,3", "--methods", "pigdm,ddrm",
            "--out", str(out), "--size", "32", "--resize", "--prior", "gaussian"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ddrm cannot restore with MotionBlur" in err and err.count("\n") == 1
    assert not out.exists() or not any(out.iterdir())  # pigdm's cells did not run first
