"""`spgd eval` under torchrun: two CPU processes (Gloo over loopback) give exactly the per-image results of one
process, a run that loses a rank finishes with --resume (under another world size), and an error before the
work stops every rank. Each test starts real processes (`python -m torch.distributed.run`), on tiny settings."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import copy_demo_images

from spgd.experiment.distributed import Job, env_world, rank_device
from spgd.errors import SpgdError

TINY = ["--task", "inpainting_random", "--prior", "gaussian", "--set", "steps=3", "--set", "warmup_steps=1",
        "--size", "32", "--resize"]
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spgd_eval(
    cwd: Path, *args: str, nproc: int = 0, env: dict | None = None, script: Path | None = None
) -> subprocess.CompletedProcess:
    """`spgd eval ARGS` as one plain process (nproc=0) or under torchrun with `nproc` local processes (run by
    `script` instead of `-m spgd` when given)."""
    environ = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    environ.update(MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1", **(env or {}))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    entry = [str(script)] if script else ["-m", "spgd"]
    cmd = (launcher if nproc else [sys.executable]) + entry + ["eval", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def only_run(out_dir: Path) -> Path:
    runs = sorted(p for p in out_dir.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def results(run_dir: Path) -> tuple[list[dict], dict, dict]:
    """What must not depend on the number of processes: the metrics rows (without timings and memory), the
    means of metrics.json, and the pixels of every restored and measurement image."""
    with open(run_dir / "metrics.csv") as f:
        rows = [{k: v for k, v in r.items() if k not in ("seconds", "peak_memory_bytes")} for r in csv.DictReader(f)]
    tables = json.loads((run_dir / "metrics.json").read_text())
    means = {
        "n_images": tables["n_images"],
        "measurement": tables["measurement"],
        "per_method": {
            m: {k: e[k] for k in ("n", "n_failed", "psnr", "ssim")} for m, e in tables["per_method"].items()
        },
    }
    pixels = {
        str(p.relative_to(run_dir)): np.asarray(Image.open(p))
        for sub in ("restored", "measurement")
        for p in sorted((run_dir / sub).rglob("*.png"))
    }
    return rows, means, pixels


def assert_same_results(run_dir: Path, ref: tuple[list[dict], dict, dict]) -> None:
    rows, means, pixels = results(run_dir)
    assert [r["name"] for r in rows] == ["00000", "00001", "00002", "00003"]
    assert rows == ref[0]
    assert means == ref[1]
    assert pixels.keys() == ref[2].keys() and len(pixels) == 8
    for k, a in pixels.items():
        np.testing.assert_array_equal(a, ref[2][k], err_msg=k)


@pytest.fixture(scope="module")
def four(tmp_path_factory, demo_dir: Path) -> Path:
    return copy_demo_images(demo_dir, tmp_path_factory.mktemp("dist") / "images", 4)


@pytest.fixture(scope="module")
def reference(four: Path) -> tuple[list[dict], dict, dict]:
    """The single-process run of the same command."""
    out = four.parent / "single"
    p = spgd_eval(four.parent, four, *TINY, "--out", out, "-q")
    assert p.returncode == 0, p.stderr
    return results(only_run(out))


def test_two_processes_equal_one(tmp_path, four, reference):
    out = tmp_path / "runs"
    p = spgd_eval(tmp_path, four, *TINY, "--out", out, nproc=2)
    assert p.returncode == 0, p.stderr
    run_dir = only_run(out)
    assert str(run_dir) in p.stdout and "PSNR" in p.stdout  # rank 0 reports the merged table, once
    assert p.stdout.count("PSNR") == 1
    assert "4 image(s) to do (0 already done, 2 on rank 0 of 2)" in p.stderr
    assert json.loads((run_dir / "settings.json").read_text())["resolved"]["world_size"] == 2
    assert_same_results(run_dir, reference)

    # resuming a finished run under torchrun: every rank sees nothing left, nothing is rewritten
    records = {q.name: q.stat().st_mtime_ns for q in (run_dir / "records").iterdir()}
    p = spgd_eval(tmp_path, "--resume", run_dir, nproc=2)
    assert p.returncode == 0, p.stderr
    assert "0 image(s) to do (4 already done, 0 on rank 0 of 2)" in p.stderr
    assert {q.name: q.stat().st_mtime_ns for q in (run_dir / "records").iterdir()} == records
    assert_same_results(run_dir, reference)


# the crash is injected by this launcher: it wraps Evaluation._restore_batch (rank 1 exits like a crash, with no
# clean-up, once it has finished one image) and runs the ordinary `spgd` entry point
DIE_AFTER_FIRST_IMAGE_ON_RANK_1 = """
import os, sys
from spgd.cli import main
from spgd.experiment.evaluation import Evaluation

real = Evaluation._restore_batch
def dying(self, batch):
    records = real(self, batch)
    if os.environ.get("RANK") == "1":
        os._exit(1)
    return records
Evaluation._restore_batch = dying
sys.exit(main())
"""


def test_a_dead_rank_loses_only_its_unfinished_images_and_resume_completes(tmp_path, four, reference):
    out = tmp_path / "runs"
    # rank 1 (images 2 and 3) crashes after its first image; torchrun then stops rank 0
    script = tmp_path / "die_after.py"
    script.write_text(DIE_AFTER_FIRST_IMAGE_ON_RANK_1)
    p = spgd_eval(tmp_path, four, *TINY, "--out", out, "-q", nproc=2, script=script)
    assert p.returncode != 0
    run_dir = only_run(out)
    records = run_dir / "records"
    assert (records / "00002.json").is_file() and not (records / "00003.json").exists()
    # a crash can leave a temporary file behind: neither the merge nor resume may read it
    (records / ".00003.json.crashed.tmp").write_text('{"name": "00003", "ind')
    (run_dir / "restored" / ".00003.png.crashed.tmp").write_bytes(b"\x89PNG")

    kept = {q.name: q.stat().st_mtime_ns for q in records.glob("*.json")}
    p = spgd_eval(tmp_path, "--resume", run_dir)  # one process: another world size
    assert p.returncode == 0, p.stderr
    assert f"{4 - len(kept)} image(s) to do ({len(kept)} already done)" in p.stderr
    assert all(records.joinpath(k).stat().st_mtime_ns == t for k, t in kept.items())
    assert_same_results(run_dir, reference)


FAILING_RANK = """
import os, sys
from spgd import cli
from spgd.experiment import evaluation as evaluate
from spgd.errors import SpgdError

real = evaluate.Evaluation._restore_batch

def failing(self, batch):
    if os.environ["RANK"] == "1" and batch[0][0].index == 3:
        raise SpgdError("disk on fire")
    return real(self, batch)

evaluate.Evaluation._restore_batch = failing
sys.exit(cli.main())
"""


def test_an_error_on_one_rank_is_reported_by_rank_0_after_the_merge(tmp_path, four):
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK)
    out = tmp_path / "runs"
    p = spgd_eval(tmp_path, four, *TINY, "--out", out, "-q", nproc=2, script=script)
    assert p.returncode != 0
    run_dir = only_run(out)
    assert f"spgd: error: rank 1: disk on fire; the finished images are kept (3 of 4) in {run_dir}" in p.stderr
    with open(run_dir / "metrics.csv") as f:  # rank 0 merged what was done before exiting
        assert [r["name"] for r in csv.DictReader(f)] == ["00000", "00001", "00002"]


def test_an_error_before_the_work_stops_every_rank(tmp_path, four):
    out = tmp_path / "runs"
    p = spgd_eval(tmp_path, four, "--task", "denoising", "--prior", "gaussian", "--size", "32", "--out", out,
                  "-q", nproc=2)  # images are 256x256: no --resize
    assert p.returncode != 0
    assert "spgd: error: image" in p.stderr and "--resize" in p.stderr
    assert not out.exists() or not any(out.iterdir())  # no run folder left behind


def test_environment_and_devices(monkeypatch):
    for k in LAUNCHER_VARS:
        monkeypatch.delenv(k, raising=False)
    assert env_world() == (0, 1, 0)
    job = Job.from_env("auto", 1.0, None)
    assert (job.rank, job.world_size) == (0, 1)
    assert job.gather(3) == [3] and job.on_rank0(lambda: 4) == 4 and job.agree(lambda: 5) == 5
    with pytest.raises(SpgdError, match="backend must be one of"):
        Job.from_env("mpi4", 1.0, None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(SpgdError, match="inconsistent"):
        env_world()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert env_world() == (1, 2, 1)
    with pytest.raises(SpgdError, match="MASTER_ADDR"):
        Job.from_env("gloo", 1.0, "cpu")
    assert rank_device("cpu", 1, 2) == "cpu" and rank_device("cuda:0", 1, 1) == "cuda:0"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")
def test_devices_without_cuda(monkeypatch):
    for k in LAUNCHER_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device(None, 1, 2) == "cpu"
    with pytest.raises(SpgdError, match="CUDA"):
        rank_device("cuda", 1, 2)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    with pytest.raises(SpgdError, match="nccl needs CUDA"):
        Job.from_env("nccl", 1.0, "cpu")
