"""GPU-only check (run it on a CUDA machine; the CPU test suite cannot): the SPGD loop synchronises the host
with the GPU only at its rare failure checks (2 per check, plus the one-time check of y).

    python benchmarks/check_no_sync.py

tests/test_cuda.py runs `count_host_syncs` too (`pytest -m cuda`).
"""

from __future__ import annotations

import warnings

import torch

import spgd
from spgd.priors import UNetModel, VPPrecond
from spgd.samplers import SPGD

TINY = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=(1, 2), learn_sigma=True,
            attention_resolutions="", num_head_channels=16, use_scale_shift_norm=True, resblock_updown=True)


def host_syncs(fn) -> list[str]:
    """The messages of the host-device synchronisations `fn()` makes (torch.cuda.set_sync_debug_mode)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]


def count_host_syncs(steps: int = 12, every: int = 6) -> tuple[list[str], int]:
    """(synchronisation messages of one SPGD run of `steps` levels checked every `every`, the number allowed)."""
    dev = torch.device("cuda")
    prior = VPPrecond(UNetModel(**TINY).to(dev)).configure(precision="bf16")
    op = spgd.make_operator("gaussian_blur", kernel_size=5, std=1.0).to(dev)
    y = torch.rand(2, 3, 16, 16, device=dev)
    SPGD(steps=2, warmup_steps=1).run(y, op, prior)  # warm up kernels and caches
    syncs = host_syncs(lambda: SPGD(steps=steps, warmup_steps=3, check_every=every).run(y, op, prior))
    return syncs, 2 * (steps // every) + 2


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("needs CUDA")
    syncs, allowed = count_host_syncs()
    print(f"host synchronisations: {len(syncs)} (allowed {allowed})")
    if len(syncs) > allowed:
        raise SystemExit("\n".join(syncs))


if __name__ == "__main__":
    main()
