"""How a network prior's network is run, and how large a batch fits: the execution apart from the maths.

`VPPrecond` computes its coefficients and hands `F(x_in, c_noise)` to a `NetworkRunner`. The network's weights
are frozen (no parameter gradients) outside the reference mode, and its attention runs through
`scaled_dot_product_attention` (PyTorch picks its flash / memory-efficient kernels). The runner's settings
change nothing beyond rounding:

- bf16 autocast (`precision="bf16"`): the network call alone, convolutions and attention in bfloat16,
  GroupNorm and the output in float32; the sampler state, the likelihood and its gradient stay float32;
- `torch.compile` of the network (`compile`; forward and, through AOTAutograd, its backward); a failure while
  compiling falls back to eager with a warning;
- with `compile_mode="reduce-overhead"`, CUDA graphs: each compiled graph is replayed as one launch, which is
  what pays at batch 1, where a step is bound by kernel-launch overhead rather than arithmetic;
  `compile_mode="auto"` uses them for CUDA batches of at most `GRAPH_MAX_BATCH` (4) images only;
- optionally channels-last (NHWC) memory format, off by default: whether it pays depends on the card and
  the cuDNN version (measure it with `spgd bench --channels-last on,off`);
- `param_grads=True`, the released code's configuration kept for benchmarks ("reference mode"): the network's
  parameters require grad, and a gradient through the network also computes their gradients and accumulates
  them into `.grad`, in the same backward pass (`ReferenceBackward`).

The fast path (`FastPath`) is bf16 autocast and torch.compile. `load_prior(..., fast=None)` turns it on for
CUDA devices and leaves it off elsewhere; `fast=False` keeps the plain float32 eager network, `fast=True` asks
for it on any device (bf16 autocast works on CPUs too, but is rarely faster there). `reference(prior)` is the
released code's configuration.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..errors import SpgdError, first_line

PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs", "auto")
# compile_mode "auto": CUDA graphs (torch.compile's "reduce-overhead") for CUDA batches of at most this many images,
# where a step is bound by kernel launches rather than arithmetic; the default mode for larger batches and off CUDA.
GRAPH_MAX_BATCH = 4
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the torch.compile modes that replay CUDA graphs
CPU_BATCH_SIZE = 4  # what auto_batch_size answers off CUDA (no free-memory measurement there)
MEMORY_FRACTION = 0.85  # share of free GPU memory auto_batch_size plans to fill

Network = Callable[[Tensor, Tensor], Tensor]


def autocast(device: torch.device, precision: str):
    """bf16 autocast on `device` for precision "bf16" (CUDA and CPU both support it); else nothing."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class ReferenceBackward(torch.autograd.Function):
    """F(x_in, c_noise) whose backward runs one full backward pass through the network: the input's gradient
    and the parameters' gradients, accumulated into their `.grad` as the released code's `loss.backward()`
    does; a caller asking for the input's gradient alone (`torch.autograd.grad(loss, x)`) so pays its cost."""

    @staticmethod
    def forward(ctx, net: Network, params: list[Tensor], x_in: Tensor, c_noise: Tensor) -> Tensor:
        with torch.enable_grad():
            ctx.x_in = x_in.detach().requires_grad_(True)
            ctx.f = net(ctx.x_in, c_noise)  # the network's graph, kept for the backward pass
        ctx.params = params
        return ctx.f.detach()

    @staticmethod
    def backward(ctx, grad_f: Tensor):
        torch.autograd.backward(ctx.f, grad_f, inputs=[ctx.x_in, *ctx.params])
        grad_x, ctx.f, ctx.x_in = ctx.x_in.grad, None, None
        return None, None, grad_x, None


class NetworkRunner:
    """Runs a network F(x_in, c_noise) as configured: precision, memory format, compiled or not, reference mode.

    Not an nn.Module, so state_dict() and .to() of the prior holding it see the plain net; the compiled networks
    (one per torch.compile mode in use) are kept here for the same reason.
    """

    def __init__(self, net: nn.Module | Network):
        self.net = net
        self.precision = "fp32"
        self.channels_last = False
        self.compile = False
        self.compile_mode: Optional[str] = None
        self.param_grads = False
        self.compiled: dict[Optional[str], Network] = {}

    def configure(
        self,
        precision: Optional[str] = None,
        channels_last: Optional[bool] = None,
        compile: Optional[bool] = None,
        compile_mode: Optional[str] = None,
        param_grads: Optional[bool] = None,
    ) -> None:
        """Change how the network is run (None keeps a setting); see the module docstring."""
        if precision is not None:
            if precision not in PRECISIONS:
                raise SpgdError(f"precision must be one of {PRECISIONS}, got {precision!r}")
            self.precision = precision
        net = self.net if isinstance(self.net, nn.Module) else None
        if channels_last is not None:
            changed = bool(channels_last) != self.channels_last
            self.channels_last = bool(channels_last)
            if net is not None and changed:
                net.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        if param_grads is not None:
            self.param_grads = bool(param_grads)
            if net is not None:
                net.requires_grad_(self.param_grads)
        if compile_mode is not None:
            if compile_mode not in COMPILE_MODES:
                raise SpgdError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
            self.compile_mode = None if compile_mode == "default" else compile_mode
            self.compiled = {}  # recompiled on the next call with the new mode
        if compile is not None:
            self.compile = bool(compile)
            if not self.compile:
                self.compiled = {}

    def settings(self) -> dict:
        """The execution settings, as `configure` takes them."""
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "compile_mode": self.compile_mode or "default",
            "param_grads": self.param_grads,
        }

    def compile_mode_for(self, x_in: Tensor) -> Optional[str]:
        """The torch.compile mode used for the network input `x_in` (None: the default mode). "auto" resolves
        to "reduce-overhead" (CUDA graphs) for CUDA batches of at most GRAPH_MAX_BATCH, else to None."""
        if self.compile_mode != "auto":
            return self.compile_mode
        small = x_in.device.type == "cuda" and x_in.shape[0] <= GRAPH_MAX_BATCH
        return "reduce-overhead" if small else None

    def __call__(self, x_in: Tensor, c_noise: Tensor, eager: bool = False) -> Tensor:
        """F(x_in, c_noise) as configured; `eager` skips torch.compile. The output is float32 whatever the
        precision."""
        if self.channels_last and x_in.ndim == 4:
            x_in = x_in.contiguous(memory_format=torch.channels_last)
        mode = self.compile_mode_for(x_in)
        net = self.net if eager or not self.compile else self._compiled(mode)
        with autocast(x_in.device, self.precision):
            try:
                f = self._forward(net, x_in, c_noise)
            except SpgdError:
                raise
            except Exception as e:  # noqa: BLE001 - a compiler failure must not end a restoration
                if net is self.net:
                    raise
                warnings.warn(f"torch.compile of the denoiser failed, running it eagerly: {first_line(e)}")
                self.compile = False
                self.compiled = {}
                f = self._forward(self.net, x_in, c_noise)
        if net is not self.net and mode in GRAPH_MODES:
            f = f.clone()  # CUDA-graph outputs are overwritten by the next replay; the sampler keeps x0_hat
        return f.float()

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """Run the network eagerly inside the block, whatever `compile` says."""
        compile, self.compile = self.compile, False
        try:
            yield
        finally:
            self.compile = compile

    def _forward(self, net: Network, x_in: Tensor, c_noise: Tensor) -> Tensor:
        if self.param_grads and torch.is_grad_enabled() and x_in.requires_grad:
            params = [p for p in self.net.parameters() if p.requires_grad] if isinstance(self.net, nn.Module) else []
            return ReferenceBackward.apply(net, params, x_in, c_noise)
        return net(x_in, c_noise)

    def _compiled(self, mode: Optional[str]) -> Network:
        compiled = self.compiled.get(mode)
        if compiled is None:
            try:
                kwargs = {} if mode is None else {"mode": mode}
                # dynamic=False: one specialised graph per batch shape (a restoration uses one or two)
                compiled = torch.compile(self.net, dynamic=False, **kwargs)
            except Exception as e:  # noqa: BLE001 - e.g. no compiler back end on this platform
                warnings.warn(f"torch.compile is not available here, running the denoiser eagerly: {first_line(e)}")
                self.compile = False
                return self.net
            self.compiled[mode] = compiled
        return compiled

    def extra_repr(self) -> str:
        """The settings for a module repr: '' when the network runs plain (float32, eager, frozen)."""
        if self.precision == "fp32" and not (self.compile or self.channels_last or self.param_grads):
            return ""
        return (f"precision={self.precision}, channels_last={self.channels_last}, compile={self.compile}"
                f", param_grads={self.param_grads}")


def runner_of(prior: Any) -> Optional[NetworkRunner]:
    """The NetworkRunner of a network prior (`VPPrecond`); None for priors without one (the analytic Gaussian
    prior, latent priors, plain callables)."""
    runner = getattr(prior, "runner", None)
    return runner if isinstance(runner, NetworkRunner) else None


# ---------------------------------------------------------------------------------------------- fast path


@dataclass(frozen=True)
class FastPath:
    """Execution settings of a network prior (see `NetworkRunner.configure`)."""

    precision: str = "bf16"  # "fp32" or "bf16" (autocast for the network call only)
    channels_last: bool = False  # NHWC memory format for the network
    compile: bool = True  # torch.compile the network
    compile_mode: str = "default"  # "default", "reduce-overhead" (CUDA graphs), "max-autotune", ..., "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SpgdError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise SpgdError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")

    def as_dict(self) -> dict:
        return asdict(self)


EAGER_FP32 = FastPath(precision="fp32", channels_last=False, compile=False)

FastLike = Union[None, bool, FastPath, dict]


def resolve_fast(fast: FastLike, device: Union[str, torch.device, None]) -> FastPath:
    """The settings `fast` asks for on `device`: None = the environment variable SPGD_FAST if set (0/off or
    1/on; this is how the command line turns the fast path off), else the fast path on CUDA and float32 eager
    elsewhere; True/False = on/off; a FastPath or a dict of its fields = exactly those."""
    if isinstance(fast, FastPath):
        return fast
    if isinstance(fast, dict):
        unknown = sorted(set(fast) - set(FastPath.__dataclass_fields__))
        if unknown:
            valid = ", ".join(FastPath.__dataclass_fields__)
            raise SpgdError(f"unknown fast-path setting(s) {unknown}; valid: {valid}")
        return FastPath(**fast)
    if fast is None:
        env = os.environ.get("SPGD_FAST", "").strip().lower()
        if env in ("0", "off", "false", "no"):
            fast = False
        elif env in ("1", "on", "true", "yes"):
            fast = True
        else:
            dev = torch.device(device) if device is not None else torch.device("cpu")
            fast = dev.type == "cuda"
    if not isinstance(fast, bool):
        raise SpgdError(f"fast must be None, True, False, a FastPath or a dict, got {type(fast).__name__}")
    return FastPath() if fast else EAGER_FP32


def apply_fast(prior: Any, fast: FastLike = None, device: Union[str, torch.device, None] = None) -> Any:
    """Configure a network prior for `fast` (see `resolve_fast`; `device` defaults to the prior's own).
    Priors without a network runner (the analytic Gaussian prior, plain callables) are returned unchanged."""
    if runner_of(prior) is None:
        return prior
    if device is None:
        device = _device_of(prior)
    settings = resolve_fast(fast, device)
    return prior.configure(
        precision=settings.precision,
        channels_last=settings.channels_last,
        compile=settings.compile,
        compile_mode=settings.compile_mode,
        param_grads=False,
    )


def reference(prior: Any) -> Any:
    """The released code's configuration: float32, eager, and the network's parameters requiring grad, so
    every likelihood gradient also computes (and accumulates) parameter gradients."""
    if runner_of(prior) is None:
        raise SpgdError(f"reference mode needs a network prior (VPPrecond), got {type(prior).__name__}")
    return prior.configure(precision="fp32", channels_last=False, compile=False, param_grads=True)


def execution_label(prior: Any) -> str:
    """A short label of how a prior's network runs: 'fp32 eager', 'bf16 compiled', 'reference', ...; 'analytic'
    for a prior without parameters (the Gaussian prior), 'callable' for a plain function."""
    runner = runner_of(prior)
    if runner is None:
        return _label_without_runner(prior)
    if runner.param_grads:
        return "reference (fp32 eager, parameter gradients)"
    parts = [runner.precision, "compiled" if runner.compile else "eager"]
    if runner.compile and runner.compile_mode:
        parts.append(runner.compile_mode)
    if runner.channels_last:
        parts.append("channels-last")
    return " ".join(parts)


def _label_without_runner(prior: Any) -> str:
    """Priors that run their networks themselves (discrete-time, diffusers, latent) run eagerly, in the
    precision their modules hold (latent priors: `precision`), else float32."""
    if not isinstance(prior, nn.Module):
        return "callable"
    if not any(True for _ in prior.parameters()):
        return "analytic"
    precisions = sorted({m.precision for m in prior.modules() if isinstance(getattr(m, "precision", None), str)})
    return f"{'/'.join(precisions) or 'fp32'} eager"


# ---------------------------------------------------------------------------------------------- batch size


def _device_of(prior: Any) -> torch.device:
    for t in list(prior.parameters()) + list(prior.buffers()):
        return t.device
    return torch.device("cpu")


def auto_batch_size(
    prior: Any,
    image_shape: Sequence[int],  # (C, H, W) of one image
    device: Union[str, torch.device, None] = None,
    max_batch: int = 64,
    fraction: float = MEMORY_FRACTION,
    sigma: float = 1.0,
) -> int:
    """The largest batch whose SPGD step (one forward + VJP through the prior) fits in `fraction` of the free
    GPU memory, at most `max_batch`.

    On CUDA it measures the peak memory (`torch.cuda.max_memory_allocated`) of one forward + VJP at batch 1
    and at batch 2, run eagerly with the prior's precision and memory format (a compiled network needs less,
    so the estimate errs on the safe side), and extrapolates linearly: peak(b) = fixed + b * per_image.
    Off CUDA no measurement is made and it returns `CPU_BATCH_SIZE` (4), capped at `max_batch`.
    """
    if max_batch < 1:
        raise SpgdError(f"max_batch must be >= 1, got {max_batch}")
    if not 0 < fraction <= 1:
        raise SpgdError(f"fraction must be in (0, 1], got {fraction}")
    dev = torch.device(device) if device is not None else _device_of(prior)
    if dev.type != "cuda":
        return min(CPU_BATCH_SIZE, max_batch)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    own = getattr(prior, "step_peak_bytes", None)  # a prior with its own step (latent: UNet + VAE decoder)
    peaks = {b: own(b, tuple(image_shape), dev, sigma) if callable(own) else
             step_peak_bytes(prior, b, tuple(image_shape), dev, sigma) for b in (1, 2)}
    per_image = max(peaks[2] - peaks[1], 1)
    fixed = max(peaks[1] - per_image, 0)
    free, _total = torch.cuda.mem_get_info(dev)
    batch = int((fraction * free - fixed) // per_image)
    if batch < 1:
        warnings.warn(
            f"even a batch of 1 may not fit: {peaks[1] / 2**30:.2f} GiB per step, {free / 2**30:.2f} GiB free",
            stacklevel=2,
        )
    return max(1, min(batch, max_batch))


def step_peak_bytes(prior: Any, batch: int, image_shape: tuple, dev: torch.device, sigma: float) -> int:
    """Extra peak bytes of one eager forward + VJP of the prior at `batch` (above what was allocated); in
    reference mode the VJP also fills the parameters' gradients, as in the sampler (they are cleared after)."""
    x = torch.randn((batch, *image_shape), device=dev)
    torch.cuda.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    runner = runner_of(prior)
    with torch.enable_grad(), (runner.eager() if runner is not None else contextlib.nullcontext()):
        x.requires_grad_(True)
        x0 = getattr(prior, "denoise", prior)(x, sigma)
        torch.autograd.grad(x0.square().sum(), x)
    del x0
    if runner is not None and runner.param_grads:
        prior.zero_grad(set_to_none=True)
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) - base
    torch.cuda.empty_cache()
    return int(peak)


__all__ = [
    "CPU_BATCH_SIZE",
    "COMPILE_MODES",
    "EAGER_FP32",
    "GRAPH_MAX_BATCH",
    "PRECISIONS",
    "FastPath",
    "NetworkRunner",
    "ReferenceBackward",
    "apply_fast",
    "auto_batch_size",
    "autocast",
    "execution_label",
    "reference",
    "resolve_fast",
    "runner_of",
]
