"""`spgd bench` and the fast path of network priors: CPU checks on tiny inputs (GPU-only checks are skipped)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, check_compile_failure_falls_back

import spgd
from spgd.experiment.bench import count_flops, ground_truth, random_unet
from spgd.cli import main
from spgd.errors import SpgdError
from spgd.io import to_unit
from spgd.metrics import psnr
from spgd.priors import VPPrecond
from spgd.priors.execution import CPU_BATCH_SIZE, EAGER_FP32, FastPath, auto_batch_size, resolve_fast
from spgd.samplers.base import CostMeter, likelihood_grad
from spgd.samplers.spgd import SPGD

TINY = TINY_UNET


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny runs: one thread avoids oversubscription


def tiny_prior(seed: int = 0) -> VPPrecond:
    return VPPrecond(random_unet(TINY, torch.device("cpu"), seed))


def restore_pair(prior, gt: torch.Tensor, steps: int = 8, warmup: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, x_start) for a Gaussian blur of gt, seeded per image."""
    op = spgd.make_operator("gaussian_blur", kernel_size=9, std=1.5)
    gens = [torch.Generator().manual_seed(10 + i) for i in range(gt.shape[0])]
    y = torch.cat([op.measure(gt[i : i + 1], g) for i, g in enumerate(gens)])
    x_start = torch.stack([100.0 * torch.randn(gt.shape[1:], generator=g) for g in gens])
    return y, x_start, op


def mean_psnr(prior, gt, y, op, x_start, steps=8, warmup=2) -> float:
    res = SPGD(steps=steps, warmup_steps=warmup, lr=1.0).run(y, op, prior, x_start=x_start)
    assert torch.isfinite(res.x).all()
    return psnr(to_unit(res.x.clamp(-1, 1)), to_unit(gt)).mean().item()


def test_run_bench_writes_rows(tmp_path: Path):
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(TINY))
    out = tmp_path / "runs"
    argv = ["bench", "--device", "cpu", "--arch", str(arch), "--size", "16", "--steps", "1", "--warmup-steps", "1",
            "--batch-sizes", "1,auto", "--precision", "bf16", "--out", str(out), "-q"]
    assert main(argv) == 0
    (run,) = out.iterdir()
    record = json.loads((run / "bench.json").read_text())
    modes = {r["mode"] for r in record["rows"]}
    assert modes == {"reference", "fast bf16 eager"}
    assert len(record["rows"]) == 4
    for r in record["rows"]:
        assert r["seconds_per_image"] > 0 and r["images_per_second"] > 0 and r["tflops"] > 0
        assert r["peak_memory_kind"] == "process_peak_rss"
        assert r["speedup"] > 0
    assert {r["batch"] for r in record["rows"] if r["batch_requested"] == "auto"} == {CPU_BATCH_SIZE}
    assert all(r["speedup"] == 1.0 for r in record["rows"] if r["mode"] == "reference")
    settings = json.loads((run / "settings.json").read_text())  # the run folder schema of every command
    assert settings["command"] == "bench" and settings["command_line"] == ["spgd", *argv]
    assert settings["versions"] == record["versions"] and settings["plan"]["steps"] == 1
    assert record["command"] == ["spgd", *argv] and record["date"] == settings["created"]
    text = (run / "bench.md").read_text()
    assert "| tiny 16px | reference | 1 |" in text and "fast bf16 eager" in text and "peak RSS" in text


def test_bench_rejects_bad_options(tmp_path: Path, capsys):
    assert main(["bench", "--device", "cpu", "--arch", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown architecture 'nope'" in capsys.readouterr().err
    assert main(["bench", "--device", "cpu", "--batch-sizes", "0", "--out", str(tmp_path)]) == 2
    assert main(["bench", "--device", "cpu", "--precision", "fp16", "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())  # nothing written before the options were checked


def test_flop_counter_counts():
    f = count_flops(TINY, (3, 16, 16))
    ref = count_flops(TINY, (3, 16, 16), param_grads=True)
    assert f["forward"] > 0
    assert 1.5 * f["forward"] < f["forward_vjp"] < 3.5 * f["forward"]  # a VJP costs about two forwards
    assert ref["forward_vjp"] > f["forward_vjp"]  # parameter gradients are extra work


def test_bf16_fast_path_same_results_tiny_unet():
    """bf16 autocast (what the fast path does on CUDA) against fp32 eager: < 0.1 dB PSNR apart."""
    prior = tiny_prior()
    gt = ground_truth(2, 32)
    y, x_start, op = restore_pair(prior, gt)
    fp32 = mean_psnr(prior, gt, y, op, x_start)
    prior.configure(precision="bf16")
    bf16 = mean_psnr(prior, gt, y, op, x_start)
    assert abs(fp32 - bf16) < 0.1


def test_bf16_fast_path_same_results_default_prior(demo_dir: Path):
    from spgd.priors.checkpoint import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip("bundled default prior weights absent")
    gt = ground_truth(2, 32, str(demo_dir))
    prior = spgd.load_prior("default", fast=False)
    y, x_start, op = restore_pair(prior, gt)
    fp32 = mean_psnr(prior, gt, y, op, x_start, steps=10)
    prior.configure(precision="bf16")
    bf16 = mean_psnr(prior, gt, y, op, x_start, steps=10)
    assert abs(fp32 - bf16) < 0.1


def test_analytic_prior_unaffected_by_fast_flag():
    plain = spgd.load_prior("gaussian", fast=False)
    fast = spgd.load_prior("gaussian", fast=True)
    gt = ground_truth(2, 16)
    y, x_start, op = restore_pair(plain, gt)
    a = SPGD(steps=4, warmup_steps=2).run(y, op, plain, x_start=x_start).x
    b = SPGD(steps=4, warmup_steps=2).run(y, op, fast, x_start=x_start).x
    assert torch.equal(a, b)


def test_auto_batch_size_on_cpu():
    prior = tiny_prior()
    assert auto_batch_size(prior, (3, 16, 16), "cpu") == CPU_BATCH_SIZE == 4
    assert auto_batch_size(prior, (3, 16, 16), "cpu", max_batch=2) == 2
    with pytest.raises(SpgdError):
        auto_batch_size(prior, (3, 16, 16), "cpu", max_batch=0)


def test_fast_defaults(monkeypatch):
    monkeypatch.delenv("SPGD_FAST", raising=False)
    assert resolve_fast(None, "cpu") == EAGER_FP32
    assert resolve_fast(None, "cuda") == FastPath(precision="bf16", compile=True)
    assert resolve_fast(False, "cuda") == EAGER_FP32
    assert resolve_fast({"precision": "bf16", "compile": False}, "cpu").precision == "bf16"
    monkeypatch.setenv("SPGD_FAST", "0")
    assert resolve_fast(None, "cuda") == EAGER_FP32
    with pytest.raises(SpgdError, match="precision"):
        FastPath(precision="fp16")
    prior = spgd.load_prior("default")  # on the CPU: float32 eager, frozen
    if isinstance(prior, VPPrecond):
        assert prior.settings()["precision"] == "fp32" and not prior.settings()["compile"]
        assert not any(p.requires_grad for p in prior.parameters())


def test_compile_failure_falls_back_to_eager(monkeypatch):
    prior = tiny_prior()
    check_compile_failure_falls_back(prior, torch.randn(1, 3, 16, 16), monkeypatch)
    assert "_compiled" not in "".join(prior.state_dict())


def test_compiled_network_traces_forward_and_vjp(monkeypatch):
    """The compile path traces the UNet's forward and backward (AOTAutograd; the 'aot_eager' back end stands in
    for Inductor, whose C++/Triton code generation is too slow for a unit test) and gives the same gradient."""
    import functools

    import torch._dynamo

    prior = tiny_prior()
    op = spgd.make_operator("gaussian_blur", kernel_size=5, std=1.0)
    x = torch.randn(2, 3, 16, 16)
    y = op.forward(torch.zeros_like(x))
    _, expected, _ = likelihood_grad(prior, op, x, 2.0, y, CostMeter(x.device, 2))
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    prior.configure(compile=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, grad, _ = likelihood_grad(prior, op, x, 2.0, y, CostMeter(x.device, 2))
        assert not [w for w in caught if "torch.compile" in str(w.message)]  # no eager fallback
        assert prior.settings()["compile"] is True
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)
    finally:
        torch._dynamo.reset()


def test_channels_last_same_output():
    prior = tiny_prior()
    x = torch.randn(2, 3, 16, 16)
    expected = prior.denoise(x, 0.5)
    prior.configure(channels_last=True)
    torch.testing.assert_close(prior.denoise(x, 0.5), expected, rtol=1e-4, atol=1e-5)


def test_compile_mode_auto_graphs_small_cuda_batches_only(monkeypatch):
    """compile_mode "auto": CUDA graphs (reduce-overhead) for CUDA batches <= GRAPH_MAX_BATCH, the default mode
    for larger ones and for the CPU; on the CPU it compiles with the default mode and gives the same output."""
    from types import SimpleNamespace

    import torch._dynamo

    from spgd.priors.execution import GRAPH_MAX_BATCH

    prior = tiny_prior().configure(compile=True, compile_mode="auto")
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    assert prior.runner.compile_mode_for(SimpleNamespace(device=cuda, shape=(1, 3, 16, 16))) == "reduce-overhead"
    assert prior.runner.compile_mode_for(SimpleNamespace(device=cuda, shape=(GRAPH_MAX_BATCH, 3, 16, 16))) == "reduce-overhead"
    assert prior.runner.compile_mode_for(SimpleNamespace(device=cuda, shape=(GRAPH_MAX_BATCH + 1, 3, 16, 16))) is None
    assert prior.runner.compile_mode_for(torch.zeros(1, 3, 16, 16)) is None
    assert prior.configure(compile_mode="reduce-overhead").runner.compile_mode_for(torch.zeros(8, 3, 16, 16)) == "reduce-overhead"
    prior.configure(compile_mode="auto")

    calls = []
    real = torch.compile

    def recording(model, **kwargs):
        calls.append(kwargs.get("mode"))
        return real(model, backend="aot_eager", dynamic=kwargs.get("dynamic"))

    x = torch.randn(1, 3, 16, 16)
    expected = prior.runner(x, torch.full((1,), 10.0), eager=True)
    monkeypatch.setattr(torch, "compile", recording)
    try:
        out = prior.runner(x, torch.full((1,), 10.0))
        prior.runner(x, torch.full((1,), 10.0))  # cached: no second compile
    finally:
        torch._dynamo.reset()
    assert calls == [None]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_bench_compile_modes_label_rows():
    from spgd.experiment.bench import build_modes

    modes = build_modes(["bf16"], ["on", "off"], ["off"], ["default", "auto"], with_reference=True)
    assert [m.label for m in modes] == ["reference", "fast bf16 compiled", "fast bf16 compiled auto", "fast bf16 eager"]
    assert modes[2].fast.compile_mode == "auto" and modes[3].fast.compile_mode == "default"
