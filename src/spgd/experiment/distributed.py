"""`spgd eval` on many processes: all GPUs of a machine, several machines, or CPU processes, with
``torchrun`` / ``torch.distributed``.

    torchrun --nproc-per-node 8 -m spgd eval faces/ --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt

The work is embarrassingly parallel: every image has its own seeds (spgd.experiment.seeding), so its result does not
depend on which process restores it, nor on how many there are. Process ``rank`` of ``world_size`` takes a
contiguous block of the images still to do (spgd.experiment.runs.shard) and writes their images and records/NAME.json
into the shared run folder, each file atomically. Only small Python objects travel between the processes,
never tensors: the run folder (rank 0 creates it), the list of images still to do (rank 0 reads it, so all
agree), any set-up error (raised on every rank), and at the end each rank's status, after which rank 0
merges the tables from all records (spgd.experiment.tables.write_tables) and returns the whole run's summary.

A rank that dies loses only its unfinished images (``torchrun`` then stops the others, which keep theirs);
resuming the run folder (``spgd eval --resume RUN_DIR``) under any number of processes does only the missing
ones, split evenly.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import torch
import torch.distributed as dist

from ..errors import SpgdError
from ..io import list_images
from .console import Console
from .evaluation import EvalPlan, EvalSummary, Evaluation, check_resumable, evaluate, set_up, settings_resolved
from .runs import LOCK_FILE, PathLike, RunLock, check_writable, new_run_dir, provenance
from .tables import write_tables

T = TypeVar("T")

BACKENDS = ("auto", "nccl", "gloo")
DEFAULT_TIMEOUT_MINUTES = 30.0  # longest wait for the other ranks at a synchronisation point


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the launcher's environment (torchrun sets RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT); (0, 1, 0) without one."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = os.environ.get(name, "0")
        try:
            values[name] = int(text)
        except ValueError:
            raise SpgdError(f"environment variable {name} must be an integer, got {text!r}") from None
    rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise SpgdError(f"inconsistent launcher environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return rank, world, local


def rank_device(name: Optional[str], local_rank: int, world_size: int) -> Optional[str]:
    """The device of this process: `name` as given, except that with several processes the default (or
    plain "cuda") becomes cuda:LOCAL_RANK, one GPU per process."""
    if world_size == 1 or name not in (None, "auto", "cuda"):
        return name
    if name in (None, "auto") and not torch.cuda.is_available():
        return "cpu"
    if not torch.cuda.is_available():
        raise SpgdError("device 'cuda' requested but CUDA is not available; use 'cpu'")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise SpgdError(
            f"LOCAL_RANK {local_rank} has no GPU of its own ({count} CUDA device(s) on this machine): "
            f"start at most {count} processes per node"
        )
    return f"cuda:{local_rank}"


def error_line(e: BaseException) -> str:
    """One line about an error, for another rank to report."""
    if isinstance(e, SpgdError):
        text = str(e)
    elif isinstance(e, OSError) and e.filename is not None:
        text = f"{e.strerror or type(e).__name__}: {e.filename}"
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join(text.split())


class Job:
    """This process's place in a (possibly one-process) job, and the few object collectives `spgd eval`
    needs. With one process every method runs locally and nothing is initialised. Use as a context manager:
    the process group is destroyed on the way out, errors included."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, backend: Optional[str] = None):
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.backend = backend

    @classmethod
    def from_env(
        cls, backend: str = "auto", timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES, device: Optional[str] = None
    ) -> "Job":
        """Join the job the launcher describes (nothing to join without torchrun or with one process).
        backend "auto": NCCL when this process uses a CUDA device, else Gloo."""
        if backend not in BACKENDS:
            raise SpgdError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if not timeout_minutes > 0:
            raise SpgdError(f"timeout_minutes must be > 0, got {timeout_minutes}")
        rank, world, local = env_world()
        if world == 1:
            return cls()
        if not dist.is_available():
            raise SpgdError("this torch build has no torch.distributed; run a single process")
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise SpgdError(f"WORLD_SIZE={world} is set but {name} is not: start the processes with torchrun")
        dev = rank_device(device, local, world)
        on_cuda = dev is not None and dev.startswith("cuda")
        if backend == "auto":
            backend = "nccl" if on_cuda else "gloo"
        if backend == "nccl":
            if not on_cuda:
                raise SpgdError(f"backend nccl needs CUDA devices, but this run uses {dev or 'the CPU'}; "
                                "use backend='gloo'")
            torch.cuda.set_device(torch.device(dev))  # NCCL's object collectives use the current device
        try:
            dist.init_process_group(
                backend, rank=rank, world_size=world, timeout=timedelta(minutes=float(timeout_minutes))
            )
        except (RuntimeError, ValueError) as e:
            what = f"cannot join the {world}-process job as rank {rank} ({backend})"
            raise SpgdError(f"{what}: {error_line(e)}") from None
        return cls(rank, world, local, backend)

    def __enter__(self) -> "Job":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()

    # -- collectives (objects only) ---------------------------------------------------------------------
    def gather(self, obj: Any) -> list:
        """Every rank's `obj`, on every rank, in rank order."""
        if self.world_size == 1:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_rank0(self, fn: Callable[[], T]) -> T:
        """fn() run on rank 0 only; its result on every rank. If it fails, every rank raises (rank 0 its own
        exception, the others an SpgdError naming it)."""
        if self.world_size == 1:
            return fn()
        box: list = [None]
        error: Optional[BaseException] = None
        if self.rank == 0:
            try:
                box[0] = ("ok", fn())
            except Exception as e:  # noqa: BLE001 - sent to the other ranks, then raised
                error, box[0] = e, ("error", error_line(e))
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        kind, value = box[0]
        if kind == "error":
            raise SpgdError(f"rank 0: {value}")
        return value

    def agree(self, fn: Callable[[], T]) -> T:
        """fn() run on every rank; if it fails on any, every rank raises: a failing rank its own exception,
        the others an SpgdError with the error of the first failing rank. So that an error before the work
        (bad input, a missing file, no GPU) stops all ranks at once instead of leaving them waiting."""
        try:
            value, error = fn(), None
        except Exception as e:  # noqa: BLE001 - sent to the other ranks, then raised
            value, error = None, e
        if self.world_size == 1:
            if error is not None:
                raise error
            return value  # type: ignore[return-value]
        errors = self.gather(None if error is None else error_line(error))
        if error is not None:
            raise error
        for r, text in enumerate(errors):
            if text is not None:
                raise SpgdError(f"rank {r}: {text}")
        return value  # type: ignore[return-value]


def _wait_visible(path: Path, seconds: float = 10.0) -> None:
    """Check that a run folder another rank created is visible here (a shared filesystem may lag a moment)."""
    deadline = time.monotonic() + seconds
    while not path.is_dir():
        if time.monotonic() > deadline:
            raise SpgdError(
                f"the run folder {path} created by rank 0 is not visible on this machine: put out=... on a "
                "filesystem that all nodes share"
            )
        time.sleep(0.2)


def run_eval(plan: EvalPlan, job: Job, resume: Optional[PathLike] = None, out: PathLike = "runs",
             console: Optional[Console] = None, argv: Optional[list[str]] = None) -> EvalSummary:
    """`spgd eval` on one or many processes (see the module doc): set up on every rank, do this rank's block of
    the images still to do, merge on rank 0. Returns the summary: on rank 0 (the only one of a single process)
    of the whole run, with the tables; on other ranks of their own block only."""
    console = console or Console()
    if job.world_size == 1:
        return evaluate(plan, out, resume, console, argv)
    run_dir = Path(resume) if resume is not None else job.on_rank0(lambda: _new_run_dir(plan, out))
    lock = RunLock(run_dir, "eval")  # rank 0 holds the run folder for the whole job
    try:
        job.on_rank0(lambda: lock.acquire() and None)
        return _run_locked(plan, job, run_dir, resume, console, argv)
    finally:
        lock.release()


def _run_locked(plan: EvalPlan, job: Job, run_dir: Path, resume: Optional[PathLike], console: Console,
                argv: Optional[list[str]]) -> EvalSummary:
    """run_eval's work once rank 0 holds the run folder's lock."""
    ev = _open_on_every_rank(plan, run_dir, job, resume, console, argv)
    # rank 0 decides what is left to do, so that all ranks split the same list
    pending = job.on_rank0(lambda: [it.index for it in ev.pending()])
    if job.rank == 0:
        console.info(f"distributed: {job.world_size} processes ({job.backend}); run folder {run_dir}")
    probe_skipped = ev.n_skipped
    own, status, error = _run_own_block(ev, job, pending, probe_skipped)
    statuses = job.gather(status)  # waits for every rank to finish its block
    # rank 0 merges while the others wait: a rank that exits with an error now would make torchrun stop rank 0
    tables = job.on_rank0(lambda: write_tables(run_dir, ev.setup.size, plan.resize))
    if error is not None:
        raise error
    if job.rank != 0:
        return own
    return _merged_summary(ev, own, statuses, probe_skipped, tables)


def _new_run_dir(plan: EvalPlan, out: PathLike) -> Path:
    """A new run folder, once what can be checked before creating it is checked (the images folder)."""
    list_images(plan.images_dir)
    check_writable(out)
    return new_run_dir(out, "eval", plan.task)


def _open_on_every_rank(plan: EvalPlan, run_dir: Path, job: Job, resume: Optional[PathLike], console: Console,
                        argv: Optional[list[str]]) -> Evaluation:
    """The set-up on every rank (all stop if one fails), then rank 0 checks the run to resume or writes a new
    run's settings.json. A new run folder that stays empty is removed on failure."""

    def set_up_here():
        if job.rank != 0:
            _wait_visible(run_dir)
        return set_up(plan, console)

    try:
        setup = job.agree(set_up_here)
        if resume is not None:
            job.on_rank0(lambda: check_resumable(run_dir, plan, setup))
        else:
            job.on_rank0(lambda: provenance(run_dir, "eval", plan, settings_resolved(plan, setup, job.world_size),
                                            argv))
    except BaseException:
        if job.rank == 0 and resume is None and run_dir.is_dir() and not any(
                p.name != LOCK_FILE for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing was written: leave no empty folder behind
        raise
    return Evaluation(plan, setup, run_dir, console)


def _run_own_block(
    ev: Evaluation, job: Job, pending: list[int], probe_skipped: int
) -> tuple[EvalSummary, dict, Optional[BaseException]]:
    """This rank's block of `pending`: its summary, the status it reports to the others, and its error (kept
    to raise after the merge)."""
    error: Optional[BaseException] = None
    items = ev.setup.items
    try:
        own = ev.run(job.rank, job.world_size, pending)
    except Exception as e:  # noqa: BLE001 - reported to rank 0 below, then raised here
        error = e
        own = EvalSummary(ev.run_dir, len(items), len(items) - len(pending), 0, ev.n_skipped)
    own.rank = job.rank
    status = {
        "done": own.n_done_now,
        "skipped": own.n_skipped - probe_skipped,
        "interrupted": own.interrupted,
        "error": None if error is None else error_line(error),
    }
    return own, status, error


def _merged_summary(ev: Evaluation, own: EvalSummary, statuses: list[dict], probe_skipped: int,
                    tables: dict) -> EvalSummary:
    """Rank 0's summary of the whole run from every rank's status; raises naming the ranks that failed."""
    summary = EvalSummary(
        ev.run_dir,
        len(ev.setup.items),
        own.n_done_before,
        sum(s["done"] for s in statuses),
        probe_skipped + sum(s["skipped"] for s in statuses),
        interrupted=any(s["interrupted"] for s in statuses),
    )
    summary.tables = tables
    failed = [(r, s["error"]) for r, s in enumerate(statuses) if s["error"]]
    if failed:
        what = "; ".join(f"rank {r}: {text}" for r, text in failed)
        raise SpgdError(
            f"{what}; the finished images are kept ({summary.tables['n_images']} of {summary.n_images}) in "
            f"{ev.run_dir}; finish them with resume={ev.run_dir}"
        )
    return summary
