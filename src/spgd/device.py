"""Which torch device a run uses (one rule for every command and for training), and how records name it."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from typing import Mapping, Optional, Union

import torch

from .errors import SpgdError


def resolve_device(name: Optional[Union[str, torch.device]]) -> torch.device:
    """None or 'auto' = CUDA when available, else the CPU; an unusable device is an SpgdError.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise SpgdError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SpgdError(f"device {name!r} requested but CUDA is not available; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SpgdError(f"device {name!r} does not exist; {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise SpgdError(f"device {name!r} requested but MPS is not available")
    return dev


def device_label(device: Union[str, torch.device]) -> str:
    """The hardware behind `device`, as records name it: "NVIDIA H100 80GB HBM3 (CUDA 12.4)", or
    "CPU (x86_64, 2 threads)" (torch's thread count: it decides the speed of a CPU run)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ----------------------------------------------------------------------------------------------------------
# CPU threads: one rule for every command

THREADS_ENV = "SPGD_THREADS"


@dataclass(frozen=True)
class Threads:
    """The torch thread count a process runs with, and why."""

    threads: int
    cores: int  # CPU cores this process may use
    load: Optional[float]  # the 1-minute load average when chosen (None where the system has none)
    source: str  # "auto", "SPGD_THREADS", "OMP_NUM_THREADS" or "torch"
    note: Optional[str] = None  # what to tell the user (a busy machine, an oversubscribed one), else None


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(os.cpu_count() or 1, 1)


def load_average() -> Optional[float]:
    """The 1-minute load average (runnable processes, ours included once we run), or None."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


def choose_threads(env: Optional[Mapping[str, str]] = None, cores: Optional[int] = None,
                   load: Optional[float] = None, default: Optional[int] = None) -> Threads:
    """The torch thread count for a CPU run on this machine, now.

    A CPU run's speed depends on its threads having a core each: torch's OpenMP threads wait for each other at
    every operation, so with more threads than free cores each step waits for a descheduled thread, and two
    processes of two threads on two cores ran 8 times slower each than one alone (issue 28; one thread each:
    1.6 times). The rule, in order:

    - ``SPGD_THREADS=N``: N threads; ``SPGD_THREADS=torch``: torch's own choice (every core, or
      OMP_NUM_THREADS), as without spgd;
    - ``OMP_NUM_THREADS`` set (torchrun sets 1 per process): torch follows it; a note if it asks for more
      threads than the cores left free by the load;
    - else (``auto``): every usable core minus the load already on the machine (the 1-minute load average,
      rounded), at least 1; a note says so when that is fewer than the cores.

    >>> choose_threads(env={}, cores=2, load=0.1, default=2).threads
    2
    >>> t = choose_threads(env={}, cores=2, load=5.3, default=2); (t.threads, t.source)
    (1, 'auto')
    >>> choose_threads(env={"SPGD_THREADS": "3"}, cores=2, load=0.0, default=2).threads
    3
    """
    env = os.environ if env is None else env
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    default = torch.get_num_threads() if default is None else default
    free = None if load is None else cores - load
    busy = "" if load is None else f"load average {load:.1f} on {cores} core(s)"
    text = env.get(THREADS_ENV, "auto").strip().lower() or "auto"
    if text == "torch":
        return Threads(default, cores, load, "torch")
    if text != "auto":
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise SpgdError(f"{THREADS_ENV} must be a positive integer, 'auto' or 'torch', got {text!r}")
        return Threads(n, cores, load, THREADS_ENV, _oversubscribed(n, free, busy, THREADS_ENV))
    if env.get("OMP_NUM_THREADS"):
        return Threads(default, cores, load, "OMP_NUM_THREADS",
                       _oversubscribed(default, free, busy, "OMP_NUM_THREADS"))
    if free is None:
        return Threads(default, cores, load, "auto")
    n = max(1, min(default, cores, int(math.floor(free + 0.5))))
    note = None
    if n < min(default, cores):
        note = (f"the machine is busy ({busy}): using {n} torch thread(s) instead of {min(default, cores)}, so "
                "that no thread waits for a busy core; a CPU run is slower than on an idle machine "
                f"(set {THREADS_ENV}=N to choose)")
    return Threads(n, cores, load, "auto", note)


def _oversubscribed(n: int, free: Optional[float], busy: str, source: str) -> Optional[str]:
    """A note when `n` threads are more than the cores the load leaves free."""
    if free is None or n <= max(1.0, free + 0.5):
        return None
    return (f"{source} asks for {n} threads but the machine is busy ({busy}): threads that wait for a busy core "
            f"can make a CPU run many times slower; {THREADS_ENV}=auto (unset {source}) picks a count that fits")


def apply_threads(choice: Threads) -> Threads:
    """Set torch's thread count to `choice.threads` (where it differs)."""
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice
