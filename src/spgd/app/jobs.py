"""The web app's work, apart from its widgets (no Gradio here): what a run asks for (:class:`Request`, checked in
the page's words), the uploads checked as they arrive, the run's folder with its inputs, the pipeline calls
(`spgd eval` on a clean image, `spgd restore` on a degraded photo) in a worker thread with live progress, one run
at a time per server, and what the page shows of the records they return (:class:`Outcome`).

Everything a run writes is the pipelines' own run folders (spgd.experiment.evaluation / .restore), inside one
folder per app run under the server's `out` folder::

    runs/<UTC time>-app-<task>/
        request.json                   what the page asked for
        inputs/                        the uploads as used: clean/ or degraded/ photo, kernel, mask.png
        <UTC time>-eval-<task>/        "degrade a clean image and restore it": one eval run folder
        <UTC time>-restore-<task>/     "restore my degraded photo": one restore run folder per method
        angles.png                     (restore, several methods) every method's gradient angles in one figure
    runs/<UTC time>-app-<task>.zip     the download
"""

from __future__ import annotations

import math
import queue
import re
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from .. import io
from ..device import resolve_device
from ..diagnostics.plots import plot_angles
from ..errors import SpgdError
from ..experiment.console import Console
from ..experiment.evaluation import EvalPlan, evaluate
from ..experiment.images import size_multiple
from ..experiment.measurement import INPAINTING, KERNEL_TASKS, load_kernel_file, load_mask_file, load_measurement
from ..experiment.progress import Step
from ..experiment.restore import PAD_TASKS, RestorePlan, restore
from ..experiment.runs import atomic_write_json, new_run_dir, read_json
from ..experiment.tables import number
from ..operators import TASKS, make_operator
from ..priors import load_prior
from ..priors.base import prior_channels
from ..samplers import METHODS, setting_defaults
from ..samplers.catalog import operator_support
from ..verdict import verdict_of_record

MODES = {
    "degrade": "Degrade a clean image and restore it",
    "restore": "Restore my degraded photo",
}
#: the tasks the app offers: nonlinear_blur needs BKSE's network file and has no known kernel to restore with
APP_TASKS = tuple(t for t in TASKS if t != "nonlinear_blur")
SIZES = (64, 128, 256, 512)  # "degrade": the longest side the clean image is worked at
DEFAULT_SIZE = 128
DEFAULT_STEPS = 20  # the presets use 200 (SPGD); 20 keeps a CPU run to seconds or a minute
MAX_SAMPLES = 8
LARGE_SIDE = 1024  # a degraded photo larger than this takes long on a CPU: the page says so


class Cancelled(Exception):
    """The page stopped the run (the Stop button, or the page was closed)."""


# ----------------------------------------------------------------------------------------------------------
# the server: the prior chosen at launch, one run at a time


@dataclass
class Server:
    """What every run of one `spgd app` shares: the prior loaded at launch, the device, the out folder, and the
    lock that lets one run go at a time."""

    prior_name: str = "default"
    checkpoint: Optional[str] = None
    class_label: Optional[int] = None
    device: Optional[str] = None
    out: Path = Path("runs")
    prior: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> "Server":
        """Load the prior (an error here stops the server before it starts)."""
        self.device = str(resolve_device(self.device))
        self.prior = load_prior(self.prior_name, self.checkpoint, device=self.device, class_label=self.class_label)
        self.out = Path(self.out)
        return self

    @property
    def channels(self) -> int:
        return prior_channels(self.prior) or 3

    def describe(self) -> str:
        """One line on the prior and the device, for the page."""
        what = self.prior_name + (f" ({self.checkpoint})" if self.checkpoint else "")
        return f"prior **{what}** ({type(self.prior).__name__}) on **{self.device}**"


_SUPPORT_CACHE: dict[str, list[tuple[str, str]]] = {}


def methods_for(task: str) -> list[tuple[str, str]]:
    """(label, method) of every method that can take `task`'s operator (spgd.samplers.catalog), in METHODS order:
    a method added to the library appears here by itself. "~" marks an approximate capability."""
    if task not in _SUPPORT_CACHE:
        op = make_operator(task)
        choices = []
        for m in METHODS:
            support = operator_support(m, op)
            if support.status != "no":
                choices.append((m + (" (~)" if support.status == "approximate" else ""), m))
        _SUPPORT_CACHE[task] = choices
    return list(_SUPPORT_CACHE[task])


# ----------------------------------------------------------------------------------------------------------
# uploads, checked as they arrive


def check_photo(path: Optional[str], mode: str) -> str:
    """What the page says about an uploaded photo (its size, a warning for a very large one); an SpgdError if it
    cannot be read (not an image, ...)."""
    if not path:
        raise SpgdError("no file was uploaded")
    name = Path(path).name
    if mode == "restore" and Path(path).suffix.lower() in (".npy", ".pt"):
        y, _ = load_measurement(path)
        return f"{name}: a {tuple(y.shape)} measurement (raw values)"
    try:
        x, notes = io.load_image(path)
    except SpgdError as e:
        raise SpgdError(f"{name} is not an image this app can read ({_reason(e)})") from None
    h, w = x.shape[-2:]
    text = f"{name}: {w}x{h} (width x height)" + (f"; {'; '.join(notes)}" if notes else "")
    if mode == "restore" and max(h, w) > LARGE_SIDE:
        text += f". It is restored at this size (never resized): on a CPU a photo above {LARGE_SIDE} px takes long"
    return text


def check_kernel(path: Optional[str]) -> str:
    """What the page says about an uploaded blur kernel; an SpgdError if it is not one."""
    if not path:
        raise SpgdError("no file was uploaded")
    name = Path(path).name
    try:
        k, sums = load_kernel_file(path, with_sums=True)
    except SpgdError as e:
        raise SpgdError(f"{name} is not a blur kernel file ({_reason(e)})") from None
    note = "" if all(abs(s - 1) <= 1e-3 for s in sums) else f", sums to {sums[0]:.4g}: divided by its sum"
    return f"kernel {name}: {k.shape[-1]}x{k.shape[-2]}{note}"


def check_mask(path: Optional[str]) -> str:
    """What the page says about an uploaded mask; an SpgdError if it is not one (or keeps no pixel)."""
    if not path:
        raise SpgdError("no file was uploaded")
    name = Path(path).name
    try:
        m = load_mask_file(path)
    except SpgdError as e:
        raise SpgdError(f"{name} is not a usable mask ({_reason(e)})") from None
    return f"mask {name}: {m.shape[-1]}x{m.shape[-2]}, {float((m > 0.5).float().mean()):.0%} of the pixels kept"


def _reason(e: SpgdError) -> str:
    """An error's text without the file's path (the page names the file itself)."""
    return re.sub(r"(?<![\w/.])/[^\s:'\"()]+", lambda m: Path(m.group(0)).name, str(e))


def drawn_mask(editor: Any, shape: Optional[Sequence[int]] = None) -> Optional[np.ndarray]:
    """The missing pixels painted with the brush on the image editor's layers, as an (H, W) bool array (True =
    painted = missing), resized (nearest) to `shape` (H, W) when given; None when nothing is painted. `editor` is
    the editor's value: a dict with "layers", each an (H, W, 4) RGBA array (or None)."""
    layers = [] if not isinstance(editor, dict) else [a for a in (editor.get("layers") or []) if a is not None]
    painted = None
    for layer in layers:
        a = np.asarray(layer)
        alpha = a[..., 3] > 0 if a.ndim == 3 and a.shape[-1] == 4 else (a.reshape(a.shape[0], a.shape[1], -1) > 0).any(-1)
        painted = alpha if painted is None else painted | alpha
    if painted is None or not painted.any():
        return None
    if shape is not None and tuple(painted.shape) != tuple(shape[-2:]):
        im = Image.fromarray(painted.astype(np.uint8) * 255).resize((int(shape[-1]), int(shape[-2])), Image.NEAREST)
        painted = np.asarray(im) > 127
    return painted


# ----------------------------------------------------------------------------------------------------------
# a run's request


@dataclass
class Request:
    """What the page asks a run to do (the widgets' values)."""

    mode: str  # a key of MODES
    photo: Optional[str]  # the uploaded clean image (degrade) or degraded photo (restore)
    task: str
    methods: list[str]
    steps: Optional[int] = DEFAULT_STEPS  # every method's steps; None: each method's preset
    seed: int = 0
    samples: int = 1
    size: int = DEFAULT_SIZE  # degrade: the longest side to work at
    kernel: Optional[str] = None  # an uploaded blur kernel file
    mask: Optional[str] = None  # an uploaded mask file
    painted: Optional[np.ndarray] = field(default=None, repr=False)  # the brushed missing pixels (H, W) bool
    settings: str = ""  # more key=value settings, one a line (as `--set`)

    def overrides(self, methods: Optional[Sequence[str]] = None) -> list[str]:
        """The settings as the pipelines' overrides (key=value), the steps first when one of `methods` (default:
        the request's) takes steps (the classical solvers have none)."""
        lines = [ln.strip() for ln in re.split(r"[\n;]", self.settings or "") if ln.strip() and not ln.strip().startswith("#")]
        bad = [ln for ln in lines if "=" not in ln]
        if bad:
            raise SpgdError(f"more settings: each line is key=value (e.g. lr=2 or spgd.beta=0.5), got {bad[0]!r}")
        takes_steps = any("steps" in setting_defaults(m) for m in (self.methods if methods is None else methods)
                          if m in METHODS)
        return ([f"steps={self.steps}"] if self.steps and takes_steps else []) + lines

    def check(self) -> None:
        """Refuse, in the page's words, a request that cannot run."""
        if self.mode not in MODES:
            raise SpgdError(f"unknown mode {self.mode!r}")
        if not self.photo:
            raise SpgdError("upload a photo first" if self.mode == "restore" else "upload a clean image first")
        if self.task not in APP_TASKS:
            raise SpgdError(f"choose a task: {', '.join(APP_TASKS)}")
        if not self.methods:
            raise SpgdError("tick at least one method")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise SpgdError(f"unknown method {unknown[0]!r}")
        if self.steps is not None and not 1 <= int(self.steps) <= 10_000:
            raise SpgdError(f"steps must be between 1 and 10000, got {self.steps}")
        if not 1 <= int(self.samples) <= MAX_SAMPLES:
            raise SpgdError(f"samples must be between 1 and {MAX_SAMPLES}, got {self.samples}")
        if int(self.seed) < 0:
            raise SpgdError(f"the seed must be >= 0, got {self.seed}")
        if self.mode == "degrade" and int(self.size) not in SIZES:
            raise SpgdError(f"size must be one of {', '.join(map(str, SIZES))}, got {self.size}")
        if self.task in INPAINTING:
            if self.mask and self.painted is not None:
                raise SpgdError("a mask file and a painted mask: clear the painting or remove the mask file")
            if self.mode == "restore" and not self.mask and self.painted is None:
                raise SpgdError(f"{self.task}: paint the missing pixels on the photo with the brush, or upload a "
                                "mask file (white = kept pixel)")
        if self.task == "motion_blur" and self.mode == "restore" and not self.kernel:
            raise SpgdError("motion_blur: upload the blur kernel of the photo (.npy, .png or .pt)")
        self.overrides()

    def record(self) -> dict:
        """What request.json holds."""
        out = {k: v for k, v in asdict(self).items() if k != "painted"}
        out["painted_pixels"] = None if self.painted is None else int(self.painted.sum())
        return out


# ----------------------------------------------------------------------------------------------------------
# what a finished run shows


@dataclass
class Shown:
    """One picture of the result: its file (absolute) and caption."""

    path: str
    caption: str


@dataclass
class Outcome:
    """What the page shows of a finished run, read from the records the pipelines wrote."""

    folder: Path  # the app run's folder
    zip: Path  # the download
    pictures: list[Shown]  # measurement (and ground truth), each method's restoration, means and uncertainties
    rows: list[dict]  # per method (and the measurement): the numbers of its record
    angles: Optional[str]  # the gradient-angle plot
    seconds: float  # wall-clock time of the run
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The rows as a Markdown table (every column a row has; None as "-")."""
        if not self.rows:
            return ""
        cols = list(dict.fromkeys(k for r in self.rows for k in r))
        lines = ["| " + " | ".join(_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
        for r in self.rows:
            lines.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
        return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None or isinstance(v, float):
        return number(v, ".4g")  # the tables' formatter: "-" for None, NaN and inf
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_cell(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|")  # a bare | would end the cell


# ----------------------------------------------------------------------------------------------------------
# a run


@dataclass
class Update:
    """A report of a running job: the fraction done, a status line, and now and then the current x0_hat."""

    fraction: float
    text: str
    preview: Optional[np.ndarray] = None  # (H, W, 3) or (H, W) uint8


class Job:
    """One run of the app in a worker thread: the request's inputs saved, the pipelines called with a progress
    callable, the outcome read from their records. Iterate :meth:`updates` for the live reports; the job holds the
    server's lock while it works (one run at a time per server); :meth:`cancel` stops it at the next level."""

    def __init__(self, server: Server, request: Request, preview_every: int = 0):
        self.server, self.request = server, request
        self.preview_every = preview_every  # a preview every this many levels (0: about 10 per method)
        self.events: "queue.Queue[Optional[Update]]" = queue.Queue()
        self.cancelled = threading.Event()
        self.outcome: Optional[Outcome] = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._work, name="spgd-app-job", daemon=True)

    def start(self) -> "Job":
        self.thread.start()
        return self

    def cancel(self) -> None:
        self.cancelled.set()

    def updates(self, poll: float = 0.5) -> Iterator[Update]:
        """The job's reports until it ends (then `outcome` or `error` is set)."""
        while True:
            try:
                ev = self.events.get(timeout=poll)
            except queue.Empty:
                if not self.thread.is_alive():
                    return
                continue
            if ev is None:
                return
            yield ev

    def _put(self, fraction: float, text: str, preview: Optional[np.ndarray] = None) -> None:
        self.events.put(Update(max(0.0, min(1.0, fraction)), text, preview))

    def _work(self) -> None:
        try:
            if not self.server.lock.acquire(blocking=False):
                self._put(0.0, "waiting for the run before this one to finish ...")
                while not self.server.lock.acquire(timeout=0.5):
                    if self.cancelled.is_set():
                        raise Cancelled()
            try:
                self.outcome = self._run()
            finally:
                self.server.lock.release()
        except BaseException as e:  # noqa: BLE001 - reported to the page, never lost
            self.error = e
        finally:
            self.events.put(None)

    # -- the work ---------------------------------------------------------------------------------------------
    def _run(self) -> Outcome:
        req, server = self.request, self.server
        req.check()
        t0 = time.perf_counter()
        folder = new_run_dir(server.out, "app", req.task)
        try:
            atomic_write_json(folder / "request.json", {**req.record(), "prior": server.prior_name,
                                                        "checkpoint": server.checkpoint, "device": server.device})
            inputs = self._save_inputs(folder / "inputs")
            if req.mode == "degrade":
                pictures, rows, angles, notes = self._degrade(folder, inputs)
            else:
                pictures, rows, angles, notes = self._restore(folder, inputs)
        except BaseException:
            if not any(p.name != "inputs" and p.is_dir() for p in folder.iterdir()):  # nothing restored yet
                shutil.rmtree(folder, ignore_errors=True)
            raise
        self._put(1.0, "restored; packing the run folder ...")
        zip_path = Path(shutil.make_archive(str(folder), "zip", root_dir=folder.parent, base_dir=folder.name))
        return Outcome(folder, zip_path, pictures, rows, angles, time.perf_counter() - t0, notes)

    def _save_inputs(self, inputs: Path) -> dict:
        """The uploads as the pipelines read them: the photo in a folder of its own (eval takes folders), the
        kernel and mask files with their own suffixes, a painted mask as mask.png (white = kept)."""
        req = self.request
        src = Path(req.photo)  # type: ignore[arg-type]
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.stem).strip("._") or "photo"
        photo_dir = inputs / ("clean" if req.mode == "degrade" else "degraded")
        photo_dir.mkdir(parents=True)
        photo = photo_dir / f"{stem}{src.suffix.lower()}"
        shutil.copyfile(src, photo)
        out: dict = {"photo": photo, "dir": photo_dir, "kernel": None, "mask": None}
        if req.kernel and req.task in KERNEL_TASKS:
            out["kernel"] = inputs / f"kernel{Path(req.kernel).suffix.lower()}"
            shutil.copyfile(req.kernel, out["kernel"])
        if req.task in INPAINTING:
            if req.mask:
                out["mask"] = inputs / f"mask{Path(req.mask).suffix.lower()}"
                shutil.copyfile(req.mask, out["mask"])
            elif req.painted is not None:
                shape = self._work_shape(photo)
                kept = ~drawn_mask({"layers": [req.painted]}, shape)  # type: ignore[operator]
                out["mask"] = inputs / "mask.png"
                Image.fromarray(kept.astype(np.uint8) * 255).save(out["mask"])
        return out

    def _work_shape(self, photo: Path) -> tuple[int, int]:
        """(H, W) the photo is restored at: its own (restore), or scaled so that its longest side is the
        request's size with sides the prior's network takes (degrade)."""
        from ..experiment.images import probe_size

        h, w = probe_size(photo) if photo.suffix.lower() not in (".npy", ".pt") else load_measurement(str(photo))[0].shape[-2:]
        if self.request.mode == "restore":
            return int(h), int(w)
        f = max(size_multiple(self.server.prior), 1)
        scale = int(self.request.size) / max(h, w)
        return tuple(max(f, int(round(v * scale / f)) * f) for v in (h, w))  # type: ignore[return-value]

    def _progress(self, base: float, share: float, label: str) -> Callable[[Step], None]:
        """The pipelines' progress callable: the job's fraction (`base` + `share` x the pipeline's), a status line,
        x0_hat now and then; it raises Cancelled once the page has stopped the run. A pipeline that runs a
        method's samples one after another reports each sample's levels again: the repeats count as the next
        sample, so the fraction only grows."""
        t0 = time.perf_counter()
        seen: dict[tuple[int, int, int], int] = {}
        done = [0.0]
        n = max(1, int(self.request.samples))

        def report(step: Step) -> None:
            if self.cancelled.is_set():
                raise Cancelled()
            key = (step.image_index, step.method_index, step.step)
            r = seen[key] = seen.get(key, -1) + 1  # which sample of this method this level belongs to
            r = min(r, n - 1)
            within = (r + (step.step + 1) / max(step.steps, 1)) / n  # of this method on this image
            fraction = (step.image_index * step.methods + step.method_index + within) / max(step.images * step.methods, 1)
            done[0] = max(done[0], min(1.0, fraction))
            every = self.preview_every or max(1, math.ceil(step.steps / 10))
            preview = None
            if step.x0_hat is not None and (step.step % every == 0 or step.step + 1 == step.steps):
                preview = io.to_uint8(step.x0_hat[0])
            sample = f", sample {r + 1}/{n}" if n > 1 else ""
            text = (f"{label}{step.method}: level {step.step + 1}/{step.steps} (sigma {step.sigma:.3g}){sample}, "
                    f"{time.perf_counter() - t0:.0f} s")
            self._put(base + share * done[0], text, preview)

        return report

    def _degrade(self, folder: Path, inputs: dict) -> tuple[list[Shown], list[dict], Optional[str], list[str]]:
        """spgd eval on the clean image: every method in one run folder, scored against the image."""
        req, server = self.request, self.server
        h, w = self._work_shape(inputs["photo"])
        plan = EvalPlan(inputs["dir"], req.task, methods=list(req.methods), overrides=req.overrides(),
                        prior=server.prior_name, checkpoint=server.checkpoint, class_label=server.class_label,
                        samples=int(req.samples), seed=int(req.seed), size=(h, w), resize=True,
                        kernel=_str(inputs["kernel"]), mask=_str(inputs["mask"]), device=server.device, telemetry=True)
        self._put(0.0, f"degrading the image ({req.task}, {w}x{h}) and restoring with {', '.join(req.methods)} ...")
        summary = evaluate(plan, out=folder, console=Console(0), progress=self._progress(0.0, 1.0, ""),
                           loaded_prior=server.prior)
        run = summary.run_dir
        rec = read_json(next((run / "records").glob("*.json")))
        clean, _ = io.load_image(inputs["photo"], (h, w), resize=True, channels=server.channels)
        truth = folder / "inputs" / "clean-as-restored.png"
        io.save_image(clean[0], truth)
        mm = rec.get("measurement_metrics") or {}
        pictures = [Shown(str(truth), f"clean image ({w}x{h})"),
                    Shown(str(run / rec["measurement"]), "measurement" + _scores(mm))]
        rows = [{"method": "(measurement)", "PSNR": mm.get("psnr"), "SSIM": mm.get("ssim")}]
        for m in req.methods:
            r = rec["methods"][m]
            pictures.append(Shown(str(run / r["restored"][0]), m + _scores(r) + (" - FAILED" if r["failed"] else "")))
            ms = r.get("mean_of_samples")
            if ms:
                pictures.append(Shown(str(run / ms["restored"]), f"{m}: mean of {ms['n']} samples" + _scores(ms)))
                pictures.append(Shown(str(run / ms["uncertainty"]), f"{m}: uncertainty (per-pixel std)"))
            rows.append(_method_row(m, r, r.get("rms_residual"), rec, r.get("n_samples")))
        angles = str(run / summary.angles) if summary.angles else None
        return pictures, rows, angles, []

    def _restore(self, folder: Path, inputs: dict) -> tuple[list[Shown], list[dict], Optional[str], list[str]]:
        """spgd restore on the degraded photo, once per method (padded where the network needs it)."""
        req, server = self.request, self.server
        pictures: list[Shown] = []
        rows: list[dict] = []
        telemetries = {}
        notes: list[str] = []
        n = len(req.methods)
        for i, m in enumerate(req.methods):
            plan = RestorePlan(inputs["photo"], req.task, method=m, overrides=req.overrides([m]),
                               prior=server.prior_name, checkpoint=server.checkpoint, class_label=server.class_label,
                               kernel=_str(inputs["kernel"]), mask=_str(inputs["mask"]), seed=int(req.seed),
                               samples=int(req.samples), pad=req.task in PAD_TASKS, telemetry=True, device=server.device)
            self._put(i / n, f"restoring with {m} ({i + 1}/{n}) ...")
            record = restore(plan, out=folder, console=Console(0), progress=self._progress(i / n, 1 / n, ""),
                             loaded_prior=server.prior)
            im = record.images[0]
            run = record.run_dir
            if not pictures:
                size = im.record["output_size"]
                pictures.append(Shown(str(run / im.measurement), f"measurement ({size['width']}x{size['height']})"))
            fit = f" - |A(x) - y| {im.rms_residual:.3g} (noise {im.noise_sigma:g})"
            pictures.append(Shown(str(run / im.restored), m + fit + (" - FAILED" if im.failed else "")))
            if im.mean_of_samples:
                ms = im.mean_of_samples
                pictures.append(Shown(str(run / ms["restored"]), f"{m}: mean of {ms['n']} samples"))
                pictures.append(Shown(str(run / ms["uncertainty"]), f"{m}: uncertainty (per-pixel std)"))
            stats = im.stats
            rows.append({
                "method": m, "rms A(x) - y": im.rms_residual, "noise": im.noise_sigma,
                "failed": im.failure_reason if im.failed else "no", **_verdict(im.record),
                "denoiser calls": stats.denoiser_calls, "VJPs": stats.vjps, "seconds": stats.seconds,
                "samples": im.record.get("samples"),
            })
            if record.telemetry is not None:
                telemetries[m] = record.telemetry
            if im.record.get("padded_to"):
                pad = im.record["padded_to"]
                notes.append(f"{m}: restored padded to {pad['width']}x{pad['height']}, cropped back")
        angles = None
        if telemetries:
            angles = str(plot_angles(telemetries, folder / "angles.png", title=f"{req.task}, prior {server.prior_name}"))
        return pictures, rows, angles, list(dict.fromkeys(notes))


def _str(p: Optional[Path]) -> Optional[str]:
    return None if p is None else str(p)


def _scores(r: dict) -> str:
    """" - PSNR 24.1 dB, SSIM 0.712" of a record with scores ("" without)."""
    if r.get("psnr") is None:
        return ""
    return f" - PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}"


def _verdict(record: dict) -> dict:
    """The verdict column (spgd.verdict: ok, under-fit Nx, failed) of a restore record or of an eval record's
    method entry (each of its samples judged; their distinct labels)."""
    samples = record.get("samples")
    entries = samples if isinstance(samples, list) and samples else [record]
    labels = []
    for entry in entries:
        v = verdict_of_record(entry) if isinstance(entry, dict) else None
        if v is not None and v.label not in labels:
            labels.append(v.label)
    return {"verdict": ", ".join(labels)} if labels else {}


def _method_row(m: str, r: dict, residual: Optional[float], image_record: dict, samples: Any) -> dict:
    """A method's row of the table from its entry in an eval record."""
    return {"method": m, "PSNR": r.get("psnr"), "SSIM": r.get("ssim"), "rms A(x) - y": residual,
            "failed": f"{r['failed']} of {r.get('n_samples', 1)}" if r.get("failed") else "no", **_verdict(r),
            "denoiser calls": r.get("denoiser_calls"), "VJPs": r.get("vjps"), "seconds": r.get("seconds"),
            "samples": samples}
