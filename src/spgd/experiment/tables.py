"""Tables from results: per-image records in, means and standard deviations out, as CSV, JSON, text and
Markdown tables and the comparison grid; one number formatter for all of them.

An eval run's tables (metrics.csv, metrics.json, grid.png) are rebuilt from its records/ (every complete
record: also those of earlier, resumed or other processes' runs) by :func:`write_tables`.
"""

from __future__ import annotations

import csv
import io as _io
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import io
from ..errors import SpgdError
from ..metrics.fid import whole_set_scores
from ..verdict import UNDER_FIT_FACTOR
from .runs import PathLike, atomic_write_json, atomic_write_text, read_json, utc_now
from .samples import UNCERTAINTY_VMAX

GRID_ROWS = 16  # at most this many images in grid.png
FID_REFERENCE = "ground_truth"  # fid_features/ground_truth/: the clean images, the reference set of FID/KID


# ----------------------------------------------------------------------------------------------------------
# numbers and table formats


def number(v: Optional[float], spec: str = ".2f") -> str:
    """A number as `spec` formats it, "-" where there is none (None, NaN, inf); a fixed-point number too large
    for a column (>= 1e6) in scientific notation (2.55e+10), so columns never run together."""
    if v is None or not math.isfinite(v):
        return "-"
    if spec.endswith("f") and abs(v) >= 1e6:
        return f"{v:.2e}"
    return format(v, spec)


def plus_minus(s: Optional[dict], digits: int) -> str:
    """{"mean", "std"} as mean±std with `digits` decimals ("-" without a mean)."""
    if not s or s.get("mean") is None:
        return "-"
    return f"{number(s['mean'], f'.{digits}f')}±{number(s['std'], f'.{digits}f')}"


def mean_and_std(values: list[float]) -> dict:
    """{"mean", "std"} (population std, float64) of a table's values; both None when there are none."""
    if not values:
        return {"mean": None, "std": None}
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std())}


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV table ("\\n" line ends; an empty cell for None)."""
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of text cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def write_grid(path: PathLike, rows: Sequence[Sequence[Optional[Tensor]]], labels: Optional[Sequence[str]] = None,
               cell_size: Optional[Sequence[int]] = None) -> Path:
    """A comparison grid of images (:func:`spgd.io.make_grid`: one row per image) written atomically as a PNG."""
    grid = io.make_grid(rows, labels=labels, cell_size=cell_size)
    return io.atomic_write(path, lambda f: grid.save(f, format="PNG"))


# ----------------------------------------------------------------------------------------------------------
# an eval run's tables, from its per-image records


def read_records(run_dir: Path) -> list[dict]:
    """Every complete per-image record of a run, sorted by image index (unreadable ones are ignored)."""
    out = []
    for p in sorted((Path(run_dir) / "records").glob("*.json")):
        try:
            out.append(read_json(p))
        except SpgdError:
            continue
    return sorted(out, key=lambda r: r.get("index", 0))


def write_tables(run_dir: Path, size: Optional[Sequence[int]] = None, resize: bool = False) -> dict:
    """Rebuild metrics.csv, metrics.json and grid.png of an eval run from records/*.json. Returns the
    metrics.json content."""
    run_dir = Path(run_dir)
    settings = read_json(run_dir / "settings.json")
    plan, resolved = settings["plan"], settings["resolved"]
    methods: list[str] = plan["methods"]
    lpips_label = resolved.get("lpips_label")
    records = read_records(run_dir)
    # per method: (image name, the method's entry in the image's record), in image order
    results = {m: [(r["name"], r["methods"][m]) for r in records if m in r.get("methods", {})] for m in methods}
    atomic_write_text(run_dir / "metrics.csv", _metrics_csv(results, lpips_label, plan["samples"] > 1))
    per_method = {m: _method_summary(rows, lpips_label) for m, rows in results.items()}
    if resolved.get("fid"):
        for m, rows in results.items():
            scored = [name for name, result in rows if result["psnr"] is not None]
            per_method[m]["fid"] = _fid_entry(run_dir, m, scored)
    tables = _run_summary(plan, resolved, records, per_method)
    atomic_write_json(run_dir / "metrics.json", tables)
    if records:
        _write_grid(run_dir, records[:GRID_ROWS], methods, size or resolved.get("image_size"), resize)
    return tables


# metrics.csv's columns of the mean of an image's samples (with several samples): column -> entry of
# mean_of_samples (its scores and the mean per-pixel std, uncertainty/)
MEAN_OF_SAMPLES_COLUMNS = {"psnr_of_mean": "psnr", "ssim_of_mean": "ssim", "pixel_std": "pixel_std"}


def _metrics_csv(results: dict[str, list[tuple[str, dict]]], lpips_label: Optional[str], several_samples: bool) -> str:
    """metrics.csv: one row per image and method (an empty cell where a value is missing, e.g. a failed image)."""
    scores = ["psnr", "ssim"] + ([lpips_label] if lpips_label else [])
    scores += ["rms_residual", "denoiser_calls", "vjps", "seconds", "peak_memory_bytes"]
    of_mean = MEAN_OF_SAMPLES_COLUMNS if several_samples else {}
    rows = []
    for m, entries in results.items():
        for name, result in entries:
            mean_of_samples = result.get("mean_of_samples") or {}
            rows.append([name, m, *(result.get(c) for c in scores), result["failed"], result.get("under_fit"),
                         result.get("fit"), worst_verdict(result), result["n_samples"],
                         *(mean_of_samples.get(key) for key in of_mean.values())])
    return csv_text(["name", "method", *scores, "failed", "under_fit", "fit", "verdict", "samples", *of_mean], rows)


def failure_reason(result: dict) -> Optional[str]:
    """Why a method's restoration of one image failed (its first failed sample's reason)."""
    for sample in result.get("samples", []):
        if sample.get("failed"):
            return sample.get("failure_reason") or (sample.get("verdict") or {}).get("reason")
    return None


def worst_verdict(result: dict) -> Optional[str]:
    """The worst verdict of a method's samples of one image ("failed: REASON", "under-fit" or "ok"; None for
    records written before verdicts)."""
    verdicts = [s.get("verdict") for s in result.get("samples", []) if s.get("verdict")]
    for status in ("failed", "under-fit", "ok"):
        hit = [v for v in verdicts if v.get("status") == status]
        if hit:
            return f"failed: {hit[0].get('reason')}" if status == "failed" else status
    return None


def ok_rows(rows: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The rows of images whose restoration did not fail."""
    return [(name, result) for name, result in rows if result["psnr"] is not None]


def _method_summary(rows: list[tuple[str, dict]], lpips_label: Optional[str]) -> dict:
    """One method's entry of metrics.json: its scores over the images that did not fail, which failed, its
    cost, and the scores of the mean of the samples."""
    ok = [result for _, result in rows if result["psnr"] is not None]
    entry = {
        "n": len(ok),
        "n_failed": len(rows) - len(ok),
        "failed_images": [name for name, result in rows if result["psnr"] is None],
        "failure_reasons": {name: failure_reason(result) for name, result in rows if result["psnr"] is None},
        # kept and counted, but flagged: residual far above the noise level (spgd.verdict: a cut budget)
        "n_under_fit": sum(1 for _, result in ok_rows(rows) if result.get("under_fit")),
        "under_fit_images": [name for name, result in ok_rows(rows) if result.get("under_fit")],
        "fit": mean_and_std([result["fit"] for _, result in ok_rows(rows) if result.get("fit") is not None]),
        "psnr": mean_and_std([result["psnr"] for result in ok]),
        "ssim": mean_and_std([result["ssim"] for result in ok]),
    }
    for key in ([lpips_label] if lpips_label else []) + ["rms_residual"]:
        entry[key] = mean_and_std([result[key] for result in ok if result.get(key) is not None])
    for key in ("denoiser_calls", "vjps", "seconds"):
        entry[key] = mean_and_std([result[key] for _, result in rows])
    memory = [result["peak_memory_bytes"] for _, result in rows if result.get("peak_memory_bytes")]
    kind = rows[0][1]["peak_memory_kind"] if rows else None
    entry["peak_memory_bytes"] = {"max": max(memory) if memory else None, "kind": kind}
    summaries = [result["mean_of_samples"] for _, result in rows if result.get("mean_of_samples")]
    if summaries:
        entry["mean_of_samples"] = {
            "n_images": len(summaries),  # those with >= 2 successful samples
            **{k: mean_and_std([v[k] for v in summaries]) for k in ("psnr", "ssim", "pixel_std")},
        }
        if lpips_label:
            entry["mean_of_samples"][lpips_label] = mean_and_std(
                [v[lpips_label] for v in summaries if v.get(lpips_label) is not None]
            )
    return entry


METRICS_NOTES = (
    "PSNR/SSIM (piq definitions) on [0, 1] images; an image's value is the mean over its samples; "
    "mean and std (population) over the images that did not fail; rms_residual: sqrt(mean((A(x) - y)^2)) of "
    "a restoration, about noise_sigma when it fits the measurement; mean_of_samples: the same scores of the "
    "mean of an image's samples (pixel_std: its mean per-pixel standard deviation, [0, 1] units); cost per "
    "restoration; "
    "seconds = batch wall time / batch size; peak memory: CUDA max allocated, or the process's peak RSS on "
    "the CPU"
)


def _run_summary(plan: dict, resolved: dict, records: list[dict], per_method: dict[str, dict]) -> dict:
    """metrics.json: the run's task and scorers, the measurement's own scores and the per-method entries."""
    measured = [r["measurement_metrics"] for r in records if r.get("measurement_metrics")]
    return {
        "task": plan["task"],
        "prior": plan["prior"],
        "methods": plan["methods"],
        "n_images": len(records),
        "per_method": per_method,
        "measurement": None
        if not measured
        else {
            "kind": measured[0]["kind"],
            "psnr": mean_and_std([v["psnr"] for v in measured]),
            "ssim": mean_and_std([v["ssim"] for v in measured]),
        },
        "noise_sigma": (resolved.get("operator") or {}).get("noise_sigma"),  # what rms_residual should reach
        "lpips": resolved.get("lpips"),
        "lpips_label": resolved.get("lpips_label"),
        "fid": resolved.get("fid"),
        "notes": METRICS_NOTES,
        "updated": utc_now(),
    }


def _fid_entry(run_dir: Path, method: str, names: list[str]) -> Optional[dict]:
    """FID/KID of a method's restorations against the clean images (a whole-set score), from saved features."""
    def load(kind: str) -> list[Tensor]:
        out = []
        for n in names:
            p = run_dir / "fid_features" / kind / f"{n}.pt"
            if p.is_file():
                out.append(io.load_torch_file(p))
        return out

    feats, ref = load(method), load(FID_REFERENCE)
    if len(feats) < 2 or len(ref) < 2:
        return {"fid": None, "kid": None, "n": len(feats), "n_ref": len(ref),
                "warning": "FID/KID need at least 2 images per set"}
    return whole_set_scores(torch.stack(feats), torch.stack(ref), resize="pytorch-fid")


def _write_grid(run_dir: Path, records: list[dict], methods: list[str], size, resize: bool) -> None:
    """grid.png: ground truth | measurement | each method's first restoration, and with several samples each
    method's mean and uncertainty map."""
    rows = []
    for r in records:
        gt = None
        try:
            gt = io.load_image(r["source"], size, resize)[0]
        except SpgdError:
            pass
        row = [gt, _maybe_image(run_dir / r["measurement"])]
        for m in methods:
            rm = r["methods"].get(m)
            row.append(_maybe_image(run_dir / rm["restored"][0]) if rm else None)
        rows.append(row)
    extra = [m for m in methods if any((r["methods"].get(m) or {}).get("mean_of_samples") for r in records)]
    for r, row in zip(records, rows):
        for m in extra:
            ms = (r["methods"].get(m) or {}).get("mean_of_samples")
            row += [_maybe_image(run_dir / ms["restored"]), _maybe_image(run_dir / ms["uncertainty"])] if ms else [
                None, None]
    if not any(c is not None for row in rows for c in row):
        return
    cell = tuple(size) if size else None
    labels = ["ground truth", "measurement", *methods]
    for m in extra:
        labels += [f"{m} mean", f"{m} std (0-{UNCERTAINTY_VMAX:g})"]
    write_grid(run_dir / "grid.png", rows, labels=labels, cell_size=cell)


def _maybe_image(path: Path) -> Optional[Tensor]:
    try:
        return io.load_image(path)[0]
    except SpgdError:
        return None


def format_table(tables: dict) -> str:
    """An eval run's per-method summary (metrics.json) as a small text table. Every cell is right-aligned and
    preceded by a space, and numbers of any magnitude keep to a bounded width, so columns never run together."""
    label = tables.get("lpips_label")
    with_fid = bool(tables.get("fid"))
    widths = [14, 16] + ([16] if label else []) + [10, 7, 6, 8, 8, 16] + ([10, 10, 8] if with_fid else [])

    def row(name: str, cells: list[str]) -> str:
        return f"{name:<22}" + "".join(" " + c.rjust(w - 1) for c, w in zip(cells, widths))

    head = ["PSNR", "SSIM"] + ([label] if label else []) + ["|Ax-y|", "NFE", "VJP", "s/img", "failed", "under-fit"]
    lines = [row("method", head + (["FID", "KID", "n(FID)"] if with_fid else []))]
    meas = tables.get("measurement")
    if meas:
        lines.append(row("(" + meas["kind"][:20] + ")", [plus_minus(meas["psnr"], 2), plus_minus(meas["ssim"], 4)]).rstrip())
    for m, e in tables.get("per_method", {}).items():
        cells = [plus_minus(e["psnr"], 2), plus_minus(e["ssim"], 4)] + ([plus_minus(e.get(label, {}), 4)] if label else [])
        calls, vjps, secs = (e[k]["mean"] for k in ("denoiser_calls", "vjps", "seconds"))
        cells += [number((e.get("rms_residual") or {}).get("mean"), ".4f"), number(calls, ".0f"),
                  number(vjps, ".0f"), number(secs, ".1f")]
        cells.append(str(e["n_failed"]))
        fit = (e.get("fit") or {}).get("mean")
        cells.append(str(e.get("n_under_fit", 0)) + (f"({number(fit, '.0f')}x)" if e.get("n_under_fit") else ""))
        if with_fid:
            fe = e.get("fid") or {}
            cells += [number(fe.get("fid"), ".2f"), number((fe.get("kid") or {}).get("mean"), ".4f"),
                      str(fe.get("n", 0))]
        lines.append(row(m, cells))
        ms = e.get("mean_of_samples")
        if ms:
            cells = [plus_minus(ms["psnr"], 2), plus_minus(ms["ssim"], 4)] + (
                [plus_minus(ms.get(label, {}), 4)] if label else [])
            lines.append(row("  mean of samples", cells).rstrip())
    if any(e.get("n_under_fit") or e.get("n_failed") for e in tables.get("per_method", {}).values()):
        lines.append(f"failed: garbage (not in the means); under-fit N(Fx): N images with a residual > "
                     f"{UNDER_FIT_FACTOR:g} x the noise level, kept (a cut budget), F = the method's mean residual / "
                     "noise; the rule: spgd.verdict")
    if with_fid:
        warnings = {(e.get("fid") or {}).get("warning") for e in tables.get("per_method", {}).values()} - {None}
        lines += [f"note: {w}" for w in sorted(warnings)]
        lines.append("FID/KID: whole-set scores of each method's first restorations against the clean images "
                     "(pytorch-fid Inception features)")
    return "\n".join(lines)
