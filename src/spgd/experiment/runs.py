"""Run folders: a new folder per call, atomic files, settings.json (one schema for every command), resuming,
sharding.

Every file a run writes appears atomically (written to a temporary file in the same folder, then renamed with
``os.replace``), so an interrupted run or a merge by another process never sees a half-written file.

settings.json, written by :func:`provenance` for every command::

    command        the pipeline that made the folder: "eval", "restore", "demo", "sweep", "diagnose", "bench", "train"
    plan           the pipeline's plan, every field (its dataclass as JSON): what was asked; a resumed run reads
                   this key, whatever the command
    resolved       what the pipeline made of the plan: the device, sizes, each method's settings, the operator
                   used, the network's execution ... (the command's own keys)
    versions       spgd, torch, numpy, python, platform, pillow (cuda and the GPU where there is one)
    command_line   the command line, or null from Python
    created        UTC time
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import tempfile

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: run folders are not locked
    fcntl = None  # type: ignore[assignment]
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np
import PIL
import torch

from .. import __version__
from ..device import device_label
from ..errors import SpgdError
from ..io import atomic_write

PathLike = Union[str, os.PathLike]


def new_run_dir(out: PathLike, command: str, task: Optional[str] = None) -> Path:
    """Create and return a new folder ``out/<UTC timestamp>-<command>[-<task>]``, never an existing one
    (``-2``, ``-3``, ... is appended when the name is taken)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpgdError(f"cannot create the output folder {out}: {e.strerror or e}") from None
    if not out.is_dir():
        raise SpgdError(f"out={out} is not a folder")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = "-".join(p for p in (stamp, command, task) if p)
    for n in range(1, 10_000):
        path = out / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise SpgdError(f"cannot create the run folder {path}: {e.strerror or e}") from None
    raise SpgdError(f"cannot find a free run folder name under {out}")  # pragma: no cover


def check_writable(out: PathLike, what: str = "out") -> Path:
    """Check, before any work and without creating anything, that files can be written under the folder `out`
    (which need not exist yet): its nearest existing ancestor is a folder in which a file can be created. An
    SpgdError naming `what` (the parameter) and the path otherwise. Returns `out` as a Path."""
    out = Path(out)
    probe = out
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        bad = "is a file" if probe == out else f"cannot be created: {probe} is a file"
        raise SpgdError(f"{what}={out} {bad}, not a folder; give a folder for the run folders")
    try:  # a real write (access() cannot see a full or read-only disk for every user)
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".spgd-write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        where = str(out) if probe == out else f"{out} (in {probe})"
        raise SpgdError(f"cannot write into {what}={where}: {e.strerror or e}; choose a folder you can write to")
    return out


LOCK_FILE = ".lock"  # in a run folder while a process works in it (see RunLock)


class RunLock:
    """An exclusive lock on a run folder while a process works in it, so that two processes never do the same
    work or write the same files (two `--resume` of one run, a resume while the run is still going).

    ``with RunLock(run_dir, "eval"): ...`` holds an advisory lock (``fcntl.flock``) on RUN_DIR/.lock, which names
    the holder (process id, host, command, since when); the kernel releases it when the process ends, however it
    ends, so a crash never leaves a stale lock. A second process gets an SpgdError naming the holder. The file is
    removed on release. Where ``fcntl`` is missing (Windows) no lock is taken."""

    def __init__(self, run_dir: PathLike, command: str):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        if not self.run_dir.is_dir():
            raise SpgdError(f"run folder {self.run_dir} not found")
        if fcntl is None:  # pragma: no cover - Windows
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise SpgdError(f"cannot lock the run folder {self.run_dir}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise SpgdError(
                    f"the run folder {self.run_dir} is in use by another process ({holder}); wait until it ends "
                    "(or stop it), then run again"
                ) from None
            try:  # the file may have been removed by its last holder between our open and our lock: retry
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        info = {"pid": os.getpid(), "host": platform.node(), "command": self.command, "since": utc_now()}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a waiting process then retries on a new file
        except OSError:
            pass
        os.close(self._fd)  # releases the lock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock_holder(fd: int) -> str:
    """Who holds a run folder's lock, as its lock file says."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return (f"`spgd {info.get('command')}`, process {info.get('pid')} on {info.get('host')}, since "
            f"{info.get('since')}")


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temporary file in the same folder, then os.replace)."""
    return atomic_write(path, lambda f: f.write(data))


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: tensors/arrays to lists, paths to strings, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return repr(obj)


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2) + "\n").encode())


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def read_json(path: PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SpgdError(f"{path} not found") from None
    except (OSError, json.JSONDecodeError) as e:
        raise SpgdError(f"cannot read {path}: {e}") from None


def read_run_settings(run_dir: PathLike, command: str) -> dict:
    """settings.json of a run folder that `spgd COMMAND` made, to resume it; an SpgdError saying why not otherwise."""
    run_dir = Path(run_dir)
    path = run_dir / "settings.json"
    if not path.is_file():
        raise SpgdError(f"cannot resume {run_dir}: no settings.json there (not an `spgd {command}` run folder)")
    saved = read_json(path)
    if saved.get("command") != command:
        raise SpgdError(f"cannot resume {run_dir}: it is a run of `spgd {saved.get('command')}`, not `spgd {command}`")
    return saved


def read_plan(run_dir: PathLike, command: str) -> dict:
    """The plan a run folder of `command` was made with (settings.json's "plan"), to resume it.

    >>> import json, tempfile; d = tempfile.mkdtemp()
    >>> _ = Path(d, "settings.json").write_text(json.dumps({"command": "eval", "plan": {"seed": 3}}))
    >>> read_plan(d, "eval")
    {'seed': 3}
    """
    saved = read_run_settings(run_dir, command)
    if not isinstance(saved.get("plan"), dict):
        raise SpgdError(f"cannot resume {run_dir}: its settings.json holds no plan (made by an older spgd)")
    return saved["plan"]


def versions() -> dict:
    """Versions of what produced a result."""
    out = {
        "spgd": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pillow": PIL.__version__,
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        out["gpu"] = device_label("cuda:0")
    return out


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(run_dir: PathLike, command: str, plan: Any, resolved: dict, argv: Optional[list[str]]) -> dict:
    """Write the run folder's settings.json (the schema of the module doc): how it was made, by which command,
    from which plan (a dataclass), with what resolved; returns its content."""
    content = {
        "command": command,
        "plan": dataclasses.asdict(plan),
        "resolved": resolved,
        "versions": versions(),
        "command_line": argv,
        "created": utc_now(),
    }
    atomic_write_json(Path(run_dir) / "settings.json", content)
    return content


def shard(items: Iterable[Any], rank: int = 0, world_size: int = 1) -> list:
    """The contiguous block of `items` that process `rank` of `world_size` handles (blocks differ in size by
    at most one). Contiguous blocks keep batches of consecutive images, whose operator seeds are consecutive."""
    items = list(items)
    if world_size < 1 or not 0 <= rank < world_size:
        raise SpgdError(f"rank {rank} is outside a world of size {world_size}")
    n = len(items)
    start = rank * n // world_size
    stop = (rank + 1) * n // world_size
    return items[start:stop]
