"""benchmarks/gpu_run.sh, rehearsed on the CPU at toy size (every step, the files the real run writes), and the
stand-in test runner it uses where pytest is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
FILES = {"summary.md", "run.log", "tests.log", "bench.json", "bench.md", "same_results.json", "train_log.txt",
         "candidate.pt"}


def python_without_pytest(folder: Path) -> Path:
    """A `python` that cannot import pytest (as on the lent GPU machines, which have no pip): a wrapper that puts a
    sitecustomize.py first on the path, which makes `import pytest` fail in every process it starts."""
    block = folder / "no_pytest"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['pytest'] = None  # import pytest -> ImportError\n")
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{block}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_python_without_pytest_cannot_import_it(tmp_path: Path):
    p = subprocess.run([str(python_without_pytest(tmp_path)), "-c", "import pytest"], capture_output=True, text=True)
    assert p.returncode == 1 and "import of pytest halted" in p.stderr, p.stderr


def test_cpu_rehearsal_runs_every_step_without_pytest(tmp_path: Path):
    """The rehearsal needs only what the script promises (torch, numpy, pillow, tqdm, matplotlib): run with a
    python that cannot import pytest (issue 28: it imported tests/conftest.py, which imports pytest)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(python_without_pytest(tmp_path)), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # the script sets it: it runs from the source tree, nothing installed
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_run.sh"), "--cpu-rehearsal", str(out)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr + (out / "run.log").read_text()
    files = {f.name: f for f in out.iterdir()}
    assert set(files) == FILES
    assert all(f.stat().st_size <= 16 * 2**20 for f in files.values())

    summary = files["summary.md"].read_text()
    for name in ("tests", "bench batch 1", "bench batch auto", "bench batch 1, no CUDA graphs", "same results",
                 "train"):
        assert f"| {name} | 0 |" in summary, name  # every step ran and succeeded
    assert "no figure below is a GPU measurement" in summary
    # the CUDA tests were collected (through the stand-in runner) and skipped, none failed
    log = files["tests.log"].read_text()
    assert "pytest is not installed" in log  # the stand-in ran: the wrapper's python had no pytest
    assert "0 passed, 0 failed" in log and " skipped" in log and "SKIPPED test_cuda.py::" in log

    rows = json.loads(files["bench.json"].read_text())["rows"]
    assert {(r["mode"], r["batch_requested"]) for r in rows} >= {("reference", 1), ("fast bf16 eager", 1),
                                                                  ("reference", "auto"), ("fast bf16 eager", "auto")}
    assert all(r["seconds_per_image"] > 0 for r in rows)
    assert "| reference | 1 |" in files["bench.md"].read_text()

    same = json.loads(files["same_results.json"].read_text())
    assert same["verdict"] == "pass" and {q["prior"] for q in same["rows"]} == {"default", "random tiny"}

    from spgd import load_prior

    stored = torch.load(files["candidate.pt"], map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored["state_dict"].values() if v.is_floating_point())
    assert stored["training"]["settings"]["precision"] == "bf16"
    prior = load_prior(str(files["candidate.pt"]))
    assert torch.isfinite(prior(torch.randn(1, 3, 16, 16), 0.5)).all()
    train_log = files["train_log.txt"].read_text()
    assert train_log.count("held-out sigma 0.05") >= 2  # trained in chunks, each saved and reported


def test_gpu_run_refuses_a_non_empty_folder_and_bad_options(tmp_path: Path):
    (tmp_path / "old.txt").write_text("x")
    script = str(REPO / "benchmarks" / "gpu_run.sh")
    p = subprocess.run(["bash", script, "--cpu-rehearsal", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "not empty" in p.stderr
    p = subprocess.run(["bash", script, "--fast", str(tmp_path / "new")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unknown option --fast" in p.stderr


def test_mini_pytest_runs_marked_tests_without_pytest(tmp_path: Path):
    (tmp_path / "test_sample.py").write_text(
        "import os\nimport pytest\n"
        "pytestmark = pytest.mark.cuda\n"
        "def test_pass(tmp_path, monkeypatch):\n"
        "    monkeypatch.setenv('MINI_X', '1'); assert os.environ['MINI_X'] == '1'; assert tmp_path.is_dir()\n"
        "def test_after():\n    assert 'MINI_X' not in os.environ\n"
        "def test_fail():\n    assert 1 == 2\n"
        "@pytest.mark.skipif(True, reason='never here')\ndef test_skipped():\n    raise SystemExit\n"
        "def test_skips_itself():\n    pytest.skip('no device')\n"
        "def test_raises():\n    with pytest.raises(ValueError, match='bad'):\n        raise ValueError('bad value')\n"
        "def test_unknown_fixture(capsys):\n    pass\n"
    )
    code = ("import runpy, sys; sys.modules['pytest'] = None; "  # makes `import pytest` fail, as on the GPU machine
            f"sys.argv = ['mini_pytest', '-m', 'cuda', {str(tmp_path / 'test_sample.py')!r}]; "
            f"runpy.run_path({str(REPO / 'benchmarks' / 'mini_pytest.py')!r}, run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "pytest is not installed" in p.stdout
    assert "mini_pytest: 3 passed, 2 failed, 2 skipped" in p.stdout
    assert "test_sample.py::test_fail FAILED" in p.stdout and "capsys" in p.stdout
    p = subprocess.run([sys.executable, "-c", code.replace("'cuda'", "'slow'")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "0 passed, 0 failed, 0 skipped" in p.stdout
