"""The CUDA paths, on a CUDA device: `pytest -m cuda` (skipped without CUDA; benchmarks/gpu_run.sh runs them).

The fast path (bf16, compiled, frozen weights) gives the results of float32 eager; the auto batch size is
measured on the device and predicts the memory it plans for; torch.compile and its eager fallback; CUDA graphs
(compile_mode "reduce-overhead" / "auto") at batch 1; the SPGD loop's host synchronisations; and the
distributed logic without NCCL (Gloo processes on a GPU).

Only plain functions, asserts and the tmp_path / monkeypatch fixtures are used, so benchmarks/mini_pytest.py
can run this file where pytest is not installed.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, check_compile_failure_falls_back

import spgd
from spgd.experiment.bench import ground_truth, random_unet
from spgd.experiment.distributed import Job, rank_device
from spgd.errors import SpgdError
from spgd.io import save_image, to_unit
from spgd.metrics import psnr
from spgd.priors import VPPrecond
from spgd.priors.execution import GRAPH_MAX_BATCH, FastPath, auto_batch_size, resolve_fast
from spgd.samplers.base import CostMeter, likelihood_grad
from spgd.samplers.spgd import SPGD

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

REPO = Path(__file__).resolve().parents[1]
DEV = torch.device("cuda")


def tiny_prior(seed: int = 0) -> VPPrecond:
    return VPPrecond(random_unet(TINY_UNET, DEV, seed))


def blur_problem(n: int, size: int):
    """(ground truth, y, x_start, operator) of a Gaussian blur on the device, seeded per image."""
    gt = ground_truth(n, size).to(DEV)
    op = spgd.make_operator("gaussian_blur", kernel_size=9, std=1.5).to(DEV)
    gens = [torch.Generator(device=DEV).manual_seed(10 + i) for i in range(n)]
    y = torch.cat([op.measure(gt[i : i + 1], g) for i, g in enumerate(gens)])
    x_start = torch.stack([100.0 * torch.randn(gt.shape[1:], generator=g, device=DEV) for g in gens])
    return gt, y, x_start, op


def restore_psnr(prior, problem, steps: int = 8, warmup: int = 2) -> float:
    gt, y, x_start, op = problem
    res = SPGD(steps=steps, warmup_steps=warmup, lr=1.0).run(y, op, prior, x_start=x_start)
    assert torch.isfinite(res.x).all()
    return psnr(to_unit(res.x.clamp(-1, 1)), to_unit(gt)).mean().item()


def vjp(prior, x: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    op = spgd.make_operator("gaussian_blur", kernel_size=5, std=1.0).to(DEV)
    y = op.forward(torch.zeros_like(x))
    _, g, _ = likelihood_grad(prior, op, x, sigma, y, CostMeter(x.device, x.shape[0]))
    return g


def reset_compiler() -> None:
    import torch._dynamo

    torch._dynamo.reset()


# ------------------------------------------------------------------------------------------- fast path


def test_fast_path_is_the_cuda_default_and_gives_the_same_results(monkeypatch):
    monkeypatch.delenv("SPGD_FAST", raising=False)
    assert resolve_fast(None, DEV) == FastPath(precision="bf16", compile=True)
    prior = tiny_prior()
    problem = blur_problem(2, 32)
    fp32 = restore_psnr(prior, problem)
    reset_compiler()
    prior.configure(precision="bf16", compile=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fast = restore_psnr(prior, problem)
        assert not [w for w in caught if "torch.compile" in str(w.message)]  # compiled, no eager fallback
        assert prior.settings()["compile"] is True
    finally:
        reset_compiler()
    assert abs(fast - fp32) < 0.1, (fast, fp32)
    assert all(p.grad is None and not p.requires_grad for p in prior.parameters())  # frozen weights


def test_compiled_vjp_matches_eager():
    prior = tiny_prior()
    x = torch.randn(2, 3, 16, 16, device=DEV)
    expected = vjp(prior, x)
    prior.configure(compile=True)
    try:
        got = vjp(prior, x)
        assert prior.settings()["compile"] is True
    finally:
        reset_compiler()
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)


def test_compile_failure_falls_back_to_eager_on_cuda(monkeypatch):
    check_compile_failure_falls_back(tiny_prior(), torch.randn(1, 3, 16, 16, device=DEV), monkeypatch)


# ------------------------------------------------------------------------------------------ CUDA graphs


def test_cuda_graphs_at_batch_1_match_eager_and_keep_earlier_outputs():
    """reduce-overhead (and "auto" at batch 1) replays CUDA graphs: same forward and VJP as eager, and an
    output kept from one call is not overwritten by the next replay."""
    from torch._dynamo.utils import counters

    prior = tiny_prior()
    x1, x2 = torch.randn(1, 3, 16, 16, device=DEV), torch.randn(1, 3, 16, 16, device=DEV)
    ref1, ref2 = prior.denoise(x1, 0.5), prior.denoise(x2, 0.5)
    ref_grad = vjp(prior, x1)
    for mode in ("reduce-overhead", "auto"):
        reset_compiler()
        counters.clear()
        prior.configure(compile=True, compile_mode=mode)
        assert prior.runner.compile_mode_for(x1) == "reduce-overhead"
        try:
            with torch.no_grad():
                for _ in range(3):  # cudagraph trees record after warm-up runs, then replay
                    out1 = prior.denoise(x1, 0.5)
                    out2 = prior.denoise(x2, 0.5)
            grads = [vjp(prior, x1) for _ in range(3)]
            assert prior.settings()["compile"] is True, mode
            assert sum(counters["inductor"]["cudagraph_skips"].values()) == 0, dict(counters["inductor"])
        finally:
            reset_compiler()
        torch.testing.assert_close(out1, ref1, rtol=1e-3, atol=1e-4)  # not overwritten by the x2 replay
        torch.testing.assert_close(out2, ref2, rtol=1e-3, atol=1e-4)
        for g in grads:
            torch.testing.assert_close(g, ref_grad, rtol=1e-3, atol=1e-4)
    prior.configure(compile_mode="auto")
    assert prior.runner.compile_mode_for(torch.zeros(GRAPH_MAX_BATCH + 1, 3, 16, 16, device=DEV)) is None


def test_spgd_with_cuda_graphs_gives_the_same_restoration():
    prior = tiny_prior()
    problem = blur_problem(1, 32)
    eager = restore_psnr(prior, problem)
    reset_compiler()
    prior.configure(precision="bf16", compile=True, compile_mode="auto")
    try:
        graphs = restore_psnr(prior, problem)
        assert prior.settings()["compile"] is True
    finally:
        reset_compiler()
    assert abs(graphs - eager) < 0.1, (graphs, eager)


# ---------------------------------------------------------------------------------------- batch size


def test_auto_batch_size_is_measured_on_the_device():
    from spgd.priors.execution import step_peak_bytes

    prior = tiny_prior().configure(precision="bf16")
    shape = (3, 64, 64)
    p1, p2, p8 = (step_peak_bytes(prior, b, shape, DEV, 1.0) for b in (1, 2, 8))
    per_image, fixed = p2 - p1, p1 - (p2 - p1)
    assert per_image > 0
    predicted = fixed + 8 * per_image
    assert 0.75 * p8 < predicted < 1.25 * p8, (predicted, p8)  # the linear model auto_batch_size plans with
    free, _ = torch.cuda.mem_get_info(DEV)
    # a memory share that holds 3.5 images' worth above the fixed part: batch 3 (allow for allocator drift)
    fraction = (max(fixed, 0) + 3.5 * per_image) / free
    assert auto_batch_size(prior, shape, DEV, max_batch=1000, fraction=fraction) in (2, 3, 4)
    big = auto_batch_size(prior, shape, DEV, max_batch=10_000)
    assert big > 8  # a tiny network at 64 px: far more than the CPU's fixed answer of 4
    assert auto_batch_size(prior, shape, DEV, max_batch=5) == 5
    torch.cuda.reset_peak_memory_stats(DEV)
    base = torch.cuda.memory_allocated(DEV)
    step_peak_bytes(prior, min(big, 256), shape, DEV, 1.0)  # the planned batch runs
    assert torch.cuda.max_memory_allocated(DEV) - base <= 0.85 * free


def test_bench_on_cuda_reports_device_memory_and_speedup(tmp_path: Path):
    import json

    from spgd.cli import main

    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY_UNET))
    out = tmp_path / "runs"
    argv = ["bench", "--device", "cuda", "--arch", str(arch), "--size", "32", "--steps", "2", "--warmup-steps", "2",
            "--batch-sizes", "1,auto", "--compile", "off", "--out", str(out), "-q"]
    assert main(argv) == 0
    (run,) = out.iterdir()
    rows = json.loads((run / "bench.json").read_text())["rows"]
    assert {r["mode"] for r in rows} == {"reference", "fast bf16 eager"}
    for r in rows:
        assert r["peak_memory_kind"] == "cuda_max_allocated" and r["peak_memory_gib"] > 0, r
        assert r["tflops"] > 0 and r["speedup"] > 0
    assert all(r["batch"] > 4 for r in rows if r["batch_requested"] == "auto")  # measured, not the CPU's 4


# ------------------------------------------------------------------------------------------- no sync


def _load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spgd_loop_does_not_synchronise_the_host():
    check = _load_benchmark("check_no_sync")
    # the detector sees a synchronisation when there is one (a check that cannot fail proves nothing)
    t = torch.ones(4, device=DEV)
    assert check.host_syncs(lambda: t.sum().item())
    syncs, allowed = check.count_host_syncs(steps=12, every=6)
    assert len(syncs) <= allowed, "\n".join(syncs)


# ---------------------------------------------------------------------------------------- distributed


def test_rank_devices_on_a_cuda_machine():
    count = torch.cuda.device_count()
    assert rank_device(None, 0, 2) == "cuda:0"
    assert rank_device("cuda", count - 1, count + 1) == f"cuda:{count - 1}"
    assert rank_device("cuda:0", 1, 2) == "cuda:0"  # an explicit device is kept
    with pytest.raises(SpgdError, match="has no GPU of its own"):
        rank_device("cuda", count, count + 1)
    job = Job.from_env("auto", 1.0, "cuda")  # no launcher: one local process, nothing initialised
    assert job.world_size == 1 and job.gather(3) == [3] and job.on_rank0(lambda: 5) == 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _eval(cwd: Path, images: Path, out: Path, nproc: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
                "127.0.0.1", "--master-port", str(_free_port()), "-m", "spgd"]
    cmd = (launcher if nproc > 1 else [sys.executable, "-m", "spgd"]) + [
        "eval", str(images), "--task", "inpainting_random", "--prior", "gaussian", "--set", "steps=3", "--set",
        "warmup_steps=1", "--size", "32", "--resize", "--device", "cuda:0", "--dist-backend", "gloo", "--out",
        str(out), "-q"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def _psnrs(out: Path) -> dict[tuple[str, str], float]:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    with open(run / "metrics.csv") as f:
        return {(r["name"], r["method"]): float(r["psnr"]) for r in csv.DictReader(f)}


def test_two_gloo_processes_on_one_gpu_equal_one(tmp_path: Path):
    """spgd eval under torchrun with the Gloo backend (no NCCL), both ranks on cuda:0: the per-image results of
    a single process."""
    images = tmp_path / "images"
    images.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(4):
        coarse = torch.rand(1, 3, 4, 4, generator=gen) * 2 - 1
        save_image(torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear"), images / f"{i:05d}.png")
    one = _eval(tmp_path, images, tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr
    two = _eval(tmp_path, images, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr
    a, b = _psnrs(tmp_path / "one"), _psnrs(tmp_path / "two")
    assert a.keys() == b.keys() and {n for n, _ in a} == {"00000", "00001", "00002", "00003"}
    for key in a:
        assert abs(a[key] - b[key]) < 1e-3, (key, a[key], b[key])
