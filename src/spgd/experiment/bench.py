"""`spgd bench`: time full SPGD restorations, the fast path against the released code's configuration.

For each architecture (FFHQ-256 / ImageNet-256 ADM UNets with random weights, or a UNet config from a JSON
file), each mode and each batch size, one whole SPGD restoration (K levels x N warm-up steps, Gaussian blur
measurement) is timed after an untimed warm-up restoration (which is where torch.compile compiles). Modes:

- reference: what the released code does: float32, eager, and the network's parameters requiring grad, so
  every likelihood gradient is a full backward that also computes parameter gradients;
- fast: frozen weights, bf16 or fp32 autocast, torch.compile on or off, channels-last on or off.

Reported per row: seconds per image, images per second, peak memory (CUDA: torch.cuda.max_memory_allocated;
CPU: the process's peak resident set, which is not the run's own), achieved TFLOP/s from FLOPs *counted*
with torch.utils.flop_counter.FlopCounterMode on one batch-1 forward and forward+VJP (matmul, convolution
and attention FLOPs; normalisations and element-wise work are not counted), and the speed-up against the
reference at the same architecture and batch size, measured in the same run.

With check_quality it also restores the same measurements from the same starting noise with the reference and
each fast mode and reports the PSNR of each against the ground truth and its difference to the reference.

Python: ``bench(BenchPlan(archs=["ffhq256"], batch_sizes=[1], steps=2, warmup_steps=1, size=64))`` writes
bench.json, bench.md and settings.json into a new run folder and returns a :class:`BenchRecord`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from ..data import DEMO_IMAGE
from ..device import device_label, resolve_device
from ..errors import SpgdError
from ..io import list_images, load_image, to_unit
from ..metrics import psnr
from ..operators import make_operator
from ..priors import load_prior
from ..priors.execution import COMPILE_MODES, FastPath, apply_fast, auto_batch_size, execution_label, reference
from ..priors.precond import VPPrecond
from ..priors.unet import ARCHITECTURES, UNetModel
from ..samplers.schedule import SIGMA_MAX  # the start x = sigma_max * eps of the SPGD schedule
from ..samplers.spgd import SPGD
from .console import Console
from .measurement import measure_per_image
from .runs import PathLike, atomic_write_json, atomic_write_text, check_writable, new_run_dir, provenance
from .seeding import image_seed, noise_seed, sample_generators
from .tables import markdown_table, number

PAPER_STEPS, PAPER_WARMUP = 200, 5  # K and N of the paper, for the extrapolated column
PRECISIONS = ("fp32", "bf16")


# ----------------------------------------------------------------------------------------------------------
# the plan


@dataclass
class BenchPlan:
    """What to time and compare: architectures, batch sizes, K and N, the fast path's modes, the quality check."""

    archs: list[str] = field(default_factory=lambda: ["ffhq256"])  # ARCHITECTURES names or JSON files
    batch_sizes: list[Union[int, str]] = field(default_factory=lambda: [1, 8, 32, "auto"])  # "auto": free memory
    steps: int = PAPER_STEPS  # K
    warmup_steps: int = PAPER_WARMUP  # N
    precisions: list[str] = field(default_factory=lambda: ["bf16"])  # of the fast path: fp32, bf16
    compiles: Optional[list[bool]] = None  # fast path compiled or not; None: compiled on CUDA only
    compile_modes: list[str] = field(default_factory=lambda: ["default"])  # of the compiled rows (COMPILE_MODES)
    channels_last: list[bool] = field(default_factory=lambda: [False])
    size: Optional[int] = None  # image side; None: the architecture's
    repeat: int = 1  # timed restorations per row (the median is reported)
    max_batch: int = 64  # upper bound of the auto batch size
    lr: float = 1.0  # SPGD step size (Gaussian blur preset)
    reference: bool = True  # time the reference too (the speed-up column)
    check_quality: bool = False  # compare the restorations of the reference and the fast modes
    quality_priors: list[str] = field(default_factory=lambda: ["default", "gaussian"])  # or "random"
    quality_images: Optional[str] = None  # a folder of ground truths; None: the bundled photo
    quality_count: int = 2
    quality_steps: Optional[int] = None  # K of the quality check; None: steps
    quality_only: bool = False  # no timing rows
    seed: int = 0  # of the random weights, the timing batch and (as image i of spgd eval) the quality images
    device: Optional[str] = None

    def validate(self) -> None:
        """Refuse step counts, repeats, sizes and choices that cannot be benchmarked."""
        if self.steps < 1 or self.warmup_steps < 1:
            raise SpgdError(f"steps and warmup_steps must be >= 1, got {self.steps} and {self.warmup_steps}")
        for name, value, low in (("repeat", self.repeat, 1), ("quality_steps", self.quality_steps, 1),
                                 ("size", self.size, 8), ("quality_count", self.quality_count, 1)):
            if value is not None and value < low:
                raise SpgdError(f"{name} must be >= {low}, got {value}")
        for name, values, allowed in (("precisions", self.precisions, PRECISIONS),
                                      ("compile_modes", self.compile_modes, COMPILE_MODES)):
            bad = [v for v in values if v not in allowed] + ([] if values else ["(none)"])
            if bad:
                raise SpgdError(f"{name}: {bad[0]!r} is not one of {', '.join(allowed)}")
        if not self.archs:
            raise SpgdError("archs needs at least one architecture")
        for b in self.batch_sizes:
            if b != "auto" and not (isinstance(b, int) and b >= 1):
                raise SpgdError(f"batch_sizes: batch sizes must be >= 1 or 'auto', got {b!r}")
        if not self.batch_sizes:
            raise SpgdError("batch_sizes needs at least one batch size, e.g. [1, 8, 32, 'auto']")


@dataclass
class BenchRecord:
    """What a benchmark came to: its run folder and bench.json's content (rows, quality check, provenance)."""

    run_dir: Path
    record: dict


# ----------------------------------------------------------------------------------------------------------
# modes and architectures


@dataclass(frozen=True)
class Mode:
    """One benchmarked configuration: the reference (fast is None) or a fast path."""

    label: str
    fast: Optional[FastPath]

    @property
    def is_reference(self) -> bool:
        return self.fast is None


def build_modes(precisions: Sequence[str], compiles: Sequence[str], channels_last: Sequence[str],
                mode: Union[str, Sequence[str]], with_reference: bool) -> list[Mode]:
    """The reference (if asked) and every combination of the fast-path settings; compile modes other than
    "default" label their rows ("fast bf16 compiled reduce-overhead") and apply to compiled rows only."""
    compile_modes = [mode] if isinstance(mode, str) else list(mode)
    modes = [Mode("reference", None)] if with_reference else []
    for p in precisions:
        for c in compiles:
            for m in compile_modes if c == "on" else ["default"]:
                for cl in channels_last:
                    fast = FastPath(precision=p, compile=c == "on", compile_mode=m, channels_last=cl == "on")
                    label = f"fast {p}" + (" compiled" if fast.compile else " eager")
                    label += f" {m}" if fast.compile and m != "default" else ""
                    label += " NHWC" if fast.channels_last else ""
                    modes.append(Mode(label, fast))
    return modes


def load_arch(spec: str) -> tuple[str, dict]:
    """An architecture name of ARCHITECTURES, or a JSON file holding UNetModel keywords."""
    if spec in ARCHITECTURES:
        return spec, dict(ARCHITECTURES[spec])
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpgdError(f"architecture file not found: {path}") from None
        except (OSError, json.JSONDecodeError) as e:
            raise SpgdError(f"cannot read the architecture file {path}: {e}") from None
        if not isinstance(config, dict):
            raise SpgdError(f"the architecture file {path} must hold a JSON object of UNetModel keywords")
        return path.stem, config
    raise SpgdError(f"unknown architecture {spec!r}; valid: {', '.join(ARCHITECTURES)}, or a .json file")


# ----------------------------------------------------------------------------------------------------------
# building blocks


# A tiny ADM UNet (2 levels, attention at the lower one, scale-shift norm, res-block resampling): the toy
# architecture of the tests and of benchmarks/gpu_run.sh --cpu-rehearsal (which needs nothing beyond the package,
# so it lives here, not in tests/conftest.py).
TINY_UNET = dict(
    image_size=16,
    num_channels=32,
    num_res_blocks=1,
    channel_mult="1,2",
    learn_sigma=True,
    attention_resolutions="8",
    num_head_channels=16,
    use_scale_shift_norm=True,
    resblock_updown=True,
)


def random_unet(config: dict, device: torch.device, seed: int = 0) -> UNetModel:
    """A UNet of `config` with random weights on `device`. The zero-initialised output layers get small random
    weights too, so the network's output (and the restoration) depends on every layer."""
    torch.manual_seed(seed)
    try:
        with torch.device(device):
            net = UNetModel(**config)
    except TypeError as e:
        raise SpgdError(f"invalid UNet config: {e}") from None
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, 0.02)
    return net


def count_flops(config: dict, image_shape: Sequence[int], param_grads: bool = False) -> dict[str, int]:
    """FLOPs per image of one forward and of one forward + VJP of the UNet of `config`, counted with
    FlopCounterMode at batch 1 on the meta device (shapes only; nothing is computed). With `param_grads`, the
    backward also computes parameter gradients (the reference's cost)."""
    with torch.device("meta"):
        net = UNetModel(**config)
    prior = VPPrecond(net).configure(param_grads=param_grads)
    x = torch.zeros((1, *image_shape), device="meta")
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            prior.denoise(x, 1.0)
    with FlopCounterMode(display=False) as vjp:
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(prior.denoise(xg, 1.0).square().sum(), xg)
    return {"forward": int(fwd.get_total_flops()), "forward_vjp": int(vjp.get_total_flops())}


def ground_truth(count: int, size: int, folder: Optional[str] = None) -> Tensor:
    """`count` images (count, 3, size, size) in [-1, 1]: from `folder` (cycled) or the bundled photo, the
    copies after the first flipped and shifted so they differ."""
    paths = list_images(folder) if folder else [DEMO_IMAGE]
    if not paths:
        raise SpgdError(f"quality_images: no images in {folder}")
    images = []
    for i in range(count):
        x, _ = load_image(paths[i % len(paths)], size=size, resize=True)
        k = i // len(paths)
        if k:
            x = torch.roll(x.flip(-1) if k % 2 else x, shifts=(3 * k, 5 * k), dims=(-2, -1))
        images.append(x)
    return torch.cat(images)


def blur_operator(size: int, device: torch.device):
    """The benchmark's Gaussian blur (kernel 61, std 3), with the kernel shrunk to fit images under 62 px."""
    kernel = 61 if size > 61 else max(3, size - 1 if (size - 1) % 2 else size - 2)
    return make_operator("gaussian_blur", kernel_size=kernel).to(device)


def quality_problem(op: Any, gt: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """(y, x_start) of the quality check, image i seeded as image i of `spgd eval --seed SEED`
    (spgd.experiment.seeding): its noise, and a starting noise sigma_max * eps drawn from its sample-0 generator."""
    seeds = [image_seed(seed, i) for i in range(gt.shape[0])]
    y = measure_per_image(op, gt, [noise_seed(s) for s in seeds])
    gens = sample_generators(seeds, 0, gt.device)
    x_start = torch.stack([SIGMA_MAX * torch.randn(gt.shape[1:], generator=g, device=gt.device) for g in gens])
    return y, x_start


def restore_once(prior: Any, y: Tensor, op: Any, steps: int, warmup: int, lr: float, x_start: Tensor):
    sampler = SPGD(steps=steps, warmup_steps=warmup, lr=lr)
    return sampler.run(y, op, prior, x_start=x_start)


def run_in_mode(prior: VPPrecond, mode: Mode) -> VPPrecond:
    """The prior's network set to run as `mode` says: the released code's reference mode or a fast path."""
    prior.zero_grad(set_to_none=True)
    return reference(prior) if mode.is_reference else apply_fast(prior, mode.fast)


def fresh_compile_cache() -> None:
    """Forget torch.compile's graphs, and allow a graph per batch size and grad mode: otherwise the graphs of
    earlier modes fill the recompile limit of UNetModel.forward and later rows silently run eagerly."""
    import torch._dynamo  # lazy: start-up time (about 1 s), which every `spgd` command would pay

    torch._dynamo.reset()
    for key in ("recompile_limit", "cache_size_limit"):  # the name changed in torch 2.6
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, max(64, getattr(torch._dynamo.config, key)))
            break


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------------
# the benchmark


def time_row(prior: VPPrecond, op: Any, batch: int, size: int, device: torch.device, plan: BenchPlan) -> dict:
    """Warm up (untimed, compiles), then time `plan.repeat` full restorations of a batch; median seconds."""
    gen = torch.Generator(device=device).manual_seed(plan.seed)
    gt = torch.rand((batch, 3, size, size), generator=gen, device=device) * 2 - 1
    y = op.measure(gt, gen)
    x_start = SIGMA_MAX * torch.randn(gt.shape, generator=gen, device=device)
    restore_once(prior, y, op, 2, 1, plan.lr, x_start)  # warm-up: compiles the forward, VJP and no-grad graphs
    seconds, peaks, failed, kind = [], [], 0, "none"
    for _ in range(plan.repeat):
        _sync(device)
        result = restore_once(prior, y, op, plan.steps, plan.warmup_steps, plan.lr, x_start)
        seconds.append(result.stats.seconds)
        peaks.append(result.stats.peak_memory_bytes or 0)
        kind = result.stats.peak_memory_kind
        failed = max(failed, sum(result.stats.failed))
    prior.zero_grad(set_to_none=True)
    s = statistics.median(seconds)
    return {
        "batch": batch,
        "seconds": s,
        "seconds_all": seconds,
        "seconds_per_image": s / batch,
        "images_per_second": batch / s,
        "peak_memory_gib": max(peaks) / 2**30,
        "peak_memory_kind": kind,
        "failed_images": failed,
    }


def run_arch(name: str, config: dict, modes: list[Mode], device: torch.device, plan: BenchPlan,
             con: Console) -> tuple[list[dict], dict]:
    """The timing rows of one architecture: every mode at every batch size; and its FLOPs per image."""
    size = plan.size or int(config.get("image_size", 256))
    net = random_unet(config, device, plan.seed)
    prior = VPPrecond(net)
    op = blur_operator(size, device)
    image_shape = (3, size, size)
    flops = {
        "fast": count_flops(config, image_shape, param_grads=False),
        "reference": count_flops(config, image_shape, param_grads=True),
    }
    K, N = plan.steps, plan.warmup_steps
    rows = []
    for mode in modes:
        fresh_compile_cache()
        run_in_mode(prior, mode)
        f = flops["reference" if mode.is_reference else "fast"]
        flops_per_image = K * N * f["forward_vjp"] + K * f["forward"]  # N VJPs and one fresh denoise per level
        for requested in plan.batch_sizes:
            batch = requested
            if requested == "auto":
                batch = auto_batch_size(prior, image_shape, device, max_batch=plan.max_batch)
            con.info(f"bench: {name} {size}px, {mode.label}, batch {batch}{' (auto)' if requested == 'auto' else ''}")
            row = time_row_or_oom(prior, op, int(batch), size, device, plan, con, f"{name}, {mode.label}")
            spi = row["seconds_per_image"]
            row.update(
                arch=name,
                size=size,
                mode=mode.label,
                execution=execution_label(prior),
                settings=prior.settings(),
                batch_requested=requested,
                flops_per_image=flops_per_image,
                tflops=flops_per_image / spi / 1e12 if spi else None,
                est_seconds_per_image_paper=spi * (PAPER_STEPS * PAPER_WARMUP + PAPER_STEPS) / (K * N + K)
                if spi
                else None,
            )
            rows.append(row)
            con.detail(f"bench:   {execution_label(prior)}, settings {prior.settings()}, "
                       f"{flops_per_image / 1e9:.1f} GFLOP per image, {spi if spi else float('nan'):.4g} s per image")
    add_speedups(rows)
    del prior, net
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows, {"size": size, **flops}


def time_row_or_oom(prior: VPPrecond, op: Any, batch: int, size: int, device: torch.device, plan: BenchPlan,
                    con: Console, label: str) -> dict:
    """time_row, or a row marked OOM when the batch does not fit in GPU memory."""
    try:
        return time_row(prior, op, batch, size, device, plan)
    except torch.cuda.OutOfMemoryError:
        prior.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        con.warn(f"{label}, batch {batch}: out of GPU memory; row marked OOM")
        return {"batch": batch, "oom": True, "seconds": None, "seconds_all": [], "seconds_per_image": None,
                "images_per_second": None, "peak_memory_gib": None, "peak_memory_kind": "none", "failed_images": 0}


def add_speedups(rows: list[dict]) -> None:
    """Each row's speed-up against the reference row of the same requested batch size (None without one)."""
    refs = {r["batch_requested"]: r for r in rows if r["mode"] == "reference"}
    for r in rows:
        ref = refs.get(r["batch_requested"])
        ok = ref is not None and ref["seconds_per_image"] and r["seconds_per_image"]
        r["speedup"] = ref["seconds_per_image"] / r["seconds_per_image"] if ok else None


def quality_check(modes: list[Mode], arch_configs: list[tuple[str, dict]], device: torch.device,
                  plan: BenchPlan, con: Console) -> list[dict]:
    """Restore the same y from the same x_start with every mode; PSNR against the ground truth per mode."""
    out = []
    for pname in plan.quality_priors:
        priors: list[tuple[str, Any, int]] = []
        if pname == "random":
            for aname, config in arch_configs:
                size = plan.size or int(config.get("image_size", 256))
                priors.append((f"random {aname}", VPPrecond(random_unet(config, device, plan.seed)), size))
        else:
            priors.append((pname, load_prior(pname, device=device, fast=False), plan.size or 256))
        for label, prior, size in priors:
            gt = ground_truth(plan.quality_count, size, plan.quality_images).to(device)
            op = blur_operator(size, device)
            y, x_start = quality_problem(op, gt, plan.seed)
            scores: dict[str, list[float]] = {}
            # An analytic prior has no network: every mode runs the same code, so two of them show it.
            runs = modes if isinstance(prior, VPPrecond) else modes[:2]
            for mode in runs:
                if isinstance(prior, VPPrecond):
                    fresh_compile_cache()
                    run_in_mode(prior, mode)
                con.info(f"bench: quality, {label}, {mode.label}")
                res = restore_once(prior, y, op, plan.quality_steps or plan.steps, plan.warmup_steps, plan.lr,
                                   x_start)
                scores[mode.label] = psnr(to_unit(res.x.clamp(-1, 1)), to_unit(gt)).tolist()
            base = scores.get("reference") or next(iter(scores.values()))
            for m, vals in scores.items():
                out.append(
                    {
                        "prior": label,
                        "mode": m,
                        "images": len(vals),
                        "psnr": vals,
                        "psnr_mean": sum(vals) / len(vals),
                        "psnr_diff_vs_reference": sum(vals) / len(vals) - sum(base) / len(base),
                        "max_abs_psnr_diff_per_image": max(abs(a - b) for a, b in zip(vals, base)),
                    }
                )
            if isinstance(prior, VPPrecond):
                prior.zero_grad(set_to_none=True)
    return out


# ----------------------------------------------------------------------------------------------------------
# the benchmark, and its report


def bench(plan: BenchPlan, out: PathLike = "runs", console: Optional[Console] = None,
          argv: Optional[list[str]] = None) -> BenchRecord:
    """The timing rows, the quality check, bench.json, bench.md and settings.json in a new run folder."""
    con = console or Console()
    check_writable(out)
    device = resolve_device(plan.device)
    plan.validate()
    archs = [load_arch(a) for a in plan.archs]
    modes = bench_modes(plan, device)

    run_dir = new_run_dir(out, "bench")
    made = provenance(run_dir, "bench", plan, {"device": str(device)}, argv)
    started = time.perf_counter()
    rows: list[dict] = []
    flops: dict[str, dict] = {}
    for name, config in archs if not plan.quality_only else []:
        arch_rows, arch_flops = run_arch(name, config, modes, device, plan, con)
        rows += arch_rows
        flops[name] = arch_flops
    # the quality check always compares against the reference, even when its timing rows are skipped
    quality_modes = modes if plan.reference else [Mode("reference", None), *modes]
    check = plan.check_quality or plan.quality_only
    quality = quality_check(quality_modes, archs, device, plan, con) if check else []

    record = bench_record(plan, device, made, rows, flops, quality, time.perf_counter() - started)
    atomic_write_json(run_dir / "bench.json", record)
    atomic_write_text(run_dir / "bench.md", bench_markdown(record, plan, device))
    con.info(f"bench: wrote {run_dir / 'bench.json'} and bench.md")
    return BenchRecord(run_dir, record)


def bench_modes(plan: BenchPlan, device: torch.device) -> list[Mode]:
    """The modes the plan asks for (compiled by default on CUDA only)."""
    compiles = plan.compiles if plan.compiles is not None else [device.type == "cuda"]
    return build_modes(list(dict.fromkeys(plan.precisions)), ["on" if c else "off" for c in dict.fromkeys(compiles)],
                       ["on" if c else "off" for c in dict.fromkeys(plan.channels_last)],
                       list(dict.fromkeys(plan.compile_modes)), plan.reference)


def format_table(rows: list[dict], memory_label: str) -> str:
    """The timing rows as a Markdown table."""
    head = ["arch", "mode", "batch", "s/image", "images/s", f"peak memory GiB ({memory_label})", "TFLOP/s",
            "speed-up", f"s/image at K={PAPER_STEPS}, N={PAPER_WARMUP}"]
    cells = []
    for r in rows:
        batch = f"{r['batch']} (auto)" if r["batch_requested"] == "auto" else str(r["batch"])
        if r.get("oom"):
            batch += " OOM"
        cells.append([f"{r['arch']} {r['size']}px", r["mode"], batch, number(r["seconds_per_image"], ".3g"),
                      number(r["images_per_second"], ".3g"), number(r["peak_memory_gib"], ".2f"),
                      number(r["tflops"], ".3g"),
                      number(r["speedup"], ".2f") + ("x" if r["speedup"] is not None else ""),
                      number(r["est_seconds_per_image_paper"], ".3g")])
    return markdown_table(head, cells)


def format_quality(rows: list[dict]) -> str:
    """The quality check as a Markdown table."""
    head = ["prior", "mode", "images", "mean PSNR dB", "diff vs reference dB", "max per-image diff dB"]
    return markdown_table(head, [[q["prior"], q["mode"], str(q["images"]), f"{q['psnr_mean']:.3f}",
                                  f"{q['psnr_diff_vs_reference']:+.4f}", f"{q['max_abs_psnr_diff_per_image']:.4f}"]
                                 for q in rows])


def memory_label(device: torch.device) -> str:
    return "CUDA max allocated" if device.type == "cuda" else "CPU: process peak RSS"


def bench_record(plan: BenchPlan, device: torch.device, made: dict, rows: list[dict], flops: dict,
                 quality: list[dict], seconds: float) -> dict:
    """The content of bench.json: the rows, the quality check and what produced them (`made`: the run folder's
    settings.json)."""
    return {
        "command": made["command_line"] or ["spgd", "bench", "(Python)"],
        "date": made["created"],
        "device": str(device),
        "device_name": device_label(device),
        "versions": made["versions"],
        "settings": made["plan"],
        "task": "gaussian_blur",
        "flops_per_image_step": flops,
        "flops_note": "counted with torch.utils.flop_counter.FlopCounterMode (batch 1, meta device): matmul, "
        "convolution and attention FLOPs of one forward and one forward+VJP; TFLOP/s = counted FLOPs of the "
        "whole restoration (K*N forward+VJP + K forwards) per image / seconds per image",
        "memory_note": "CUDA: torch.cuda.max_memory_allocated during the timed run"
        if device.type == "cuda"
        else "CPU: peak resident set of the whole process (ru_maxrss), not of the run alone",
        "rows": rows,
        "quality": quality,
        "seconds_total": seconds,
    }


def bench_markdown(record: dict, plan: BenchPlan, device: torch.device) -> str:
    """bench.md: the tables of bench.json with what they mean."""
    rows, quality = record["rows"], record["quality"]
    md = [
        f"# spgd bench: {record['device_name']}, {record['date']}",
        "",
        f"Command: `{' '.join(record['command'])}`",
        "",
        f"SPGD, Gaussian blur, K = {plan.steps}, N = {plan.warmup_steps}, random-weight networks. Speed-up: "
        "seconds per image of the reference (fp32, eager, parameter gradients, as the released code) over this "
        "row's, same architecture and batch, same run. TFLOP/s from counted FLOPs (FlopCounterMode). The last "
        f"column scales the measured time to K = {PAPER_STEPS}, N = {PAPER_WARMUP} (cost per level is constant).",
        "",
        format_table(rows, memory_label(device)) if rows
        else "(no timing rows: quality only)",
        "",
    ]
    if quality:
        md += ["## Same results", "", "Same measurements and starting noise; PSNR against the ground truth.", "",
               format_quality(quality), ""]
    return "\n".join(md)
