"""`spgd sweep`: the stability study. Vary one setting (e.g. lr over a log range) for several methods on the
same images and plot quality against it, marking the values where restorations diverged.

Each (method, value) cell is an ordinary evaluation (spgd.experiment.evaluation) into its own sub-folder, so
every cell degrades, restores and scores through the one eval code path, with the eval seeding: image i gets the
same operator, measurement noise and initial noise in every cell, and only the varied setting differs. Run
folder layout::

    settings.json                 the sweep's plan, the varied key and values, versions, command line
    METHOD/KEY=VALUE/             one `spgd eval` run folder (records/, restored/, metrics.json, grid.png, ...)
    METHOD/KEY=VALUE/cell.json    written when the cell is complete (a resumed sweep skips it)
    sweep.csv                     method, value, image, psnr, ssim, failed (one row per image and cell)
    sweep.json                    per method and value: mean/std PSNR and SSIM over the images that did not
                                  fail, n_failed, failed images; per method the best value and the values
                                  where nothing failed
    sweep.png                     mean PSNR and SSIM (band: +- one std) against the value, one line per method;
                                  an x in the strip at the bottom marks a value where images diverged (count)

A diverged image (non-finite values, Stats.failed) is excluded from the means and counted: it is a result of
the study, not an error.

Python: ``sweep(SweepPlan(images_dir, "gaussian_blur", "lr=log:0.1:10:5", methods=["spgd", "dps"]))`` returns a
:class:`SweepRecord`.
"""

from __future__ import annotations

import io as _io
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..diagnostics.plots import pyplot
from ..errors import SpgdError
from ..io import list_images
from ..presets import (
    RESERVED_OPERATOR_KEYS,
    RESERVED_SAMPLER_KEYS,
    apply_overrides,
    load_preset,
    operator_keys,
    overrides_for,
    parse_value,
    sampler_keys,
)
from ..samplers import check_methods, fixed_settings, setting_defaults
from ..samplers.catalog import require_support
from .console import Console
from .evaluation import EvalPlan, evaluate_in
from .measurement import OperatorFactory
from .runs import (
    PathLike,
    RunLock,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    new_run_dir,
    provenance,
    read_json,
    read_plan,
    utc_now,
)
from .tables import csv_text, mean_and_std, plus_minus, read_records

SEEDING = ("every cell uses the spgd eval seeding with the same seed: image i gets the same operator, "
           "measurement noise and initial noise in every cell")


# ----------------------------------------------------------------------------------------------------------
# the plan


@dataclass
class SweepPlan:
    """A stability study: `vary` ("KEY=VALUES", see :func:`parse_values`) for each of `methods`, every cell an
    evaluation of the same images. The fields besides batch_size and device define the experiment (a resumed
    sweep keeps them)."""

    images_dir: PathLike
    task: str
    vary: str  # e.g. "lr=log:0.1:10:5", "beta=0,0.5,0.9", "noise_sigma=0.01,0.05"
    methods: list[str]
    overrides: list[str] = field(default_factory=list)  # key=value over the task's preset, in every cell
    prior: str = "default"
    checkpoint: Optional[str] = None
    limit: Optional[int] = None
    size: Optional[tuple[int, int]] = None
    resize: bool = False
    seed: int = 0
    kernel: Optional[str] = None
    mask: Optional[str] = None
    batch_size: int = 1
    device: Optional[str] = None

    def __post_init__(self) -> None:  # as read back from settings.json
        self.images_dir = str(self.images_dir)
        self.size = None if self.size is None else (int(self.size[0]), int(self.size[1]))
        self.methods, self.overrides = list(self.methods), list(self.overrides)


@dataclass
class SweepRecord:
    """What a sweep did: its run folder, whether it was interrupted, and sweep.json's content."""

    run_dir: Path
    interrupted: bool
    tables: dict
    varied: "Varied"


# ----------------------------------------------------------------------------------------------------------
# the varied setting


def parse_values(text: str) -> list[Any]:
    """The values of ``vary="KEY=VALUES"``: a comma-separated list (``0.1,0.3,1``; names and true/false work
    too), ``log:START:STOP:N`` (N values evenly spaced in log scale, 4 significant digits) or
    ``lin:START:STOP:N`` (evenly spaced)."""
    s = text.strip()
    if not s:
        raise SpgdError("vary needs values, e.g. lr=0.1,1,10 or lr=log:0.1:10:5")
    kind = s.split(":", 1)[0].lower()
    if kind in ("log", "lin"):
        parts = s.split(":")
        if len(parts) != 4:
            raise SpgdError(f"expected {kind}:START:STOP:N in vary, got {s!r}")
        try:
            start, stop, n = float(parts[1]), float(parts[2]), int(parts[3])
        except ValueError:
            raise SpgdError(f"expected {kind}:START:STOP:N with numbers and an integer N, got {s!r}") from None
        if not (math.isfinite(start) and math.isfinite(stop)):
            raise SpgdError(f"START and STOP must be finite in vary, got {s!r}")
        if n < 1:
            raise SpgdError(f"N must be >= 1 in vary {s!r}")
        if kind == "log":
            if start <= 0 or stop <= 0:
                raise SpgdError(f"a log range needs START and STOP > 0, got {s!r}")
            raw = np.geomspace(start, stop, n) if n > 1 else np.array([start])
        else:
            raw = np.linspace(start, stop, n) if n > 1 else np.array([start])
        values: list[Any] = [float(f"{v:.4g}") for v in raw]
    else:
        items = [p.strip() for p in s.split(",")]
        if any(not p for p in items):
            raise SpgdError(f"empty value in vary list {s!r}")
        values = [parse_value(p) for p in items]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise SpgdError(f"vary values must be finite, got {v!r}")
    if len({_label(v) for v in values}) != len(values):
        raise SpgdError(f"vary lists a value twice: {', '.join(_label(v) for v in values)}")
    return values


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``KEY=VALUES`` -> (key, values); see :func:`parse_values`."""
    key, eq, rest = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise SpgdError(f"vary expects KEY=VALUES (e.g. lr=0.1,1,10 or lr=log:0.1:10:5), got {text!r}")
    return key, parse_values(rest)


def _label(v: Any) -> str:
    """A value as written in folder names, the CSV and the plot: 0.3162, 1, 1e+30, true, pixel."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _override_text(v: Any) -> str:
    """A value as override text (key=VALUE) that parses back to exactly `v`."""
    return repr(v) if isinstance(v, float) else _label(v)


@dataclass
class Varied:
    """The setting a sweep varies: a sampler setting (of every method) or an operator parameter."""

    key: str
    scope: str  # "sampler" or "operator"
    values: list

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)

    def override(self, method: str, value: Any) -> str:
        scope = method if self.scope == "sampler" else "operator"
        return f"{scope}.{self.key}={_override_text(value)}"


def resolve_varied(key: str, values: list, task: str, methods: Sequence[str]) -> Varied:
    """Check that every method can vary `key` (a sampler setting it has and does not fix) or that `key` is an
    operator parameter of `task`; int settings get their values rounded (log ranges)."""
    scope, _, name = key.rpartition(".")
    if scope not in ("", "sampler", "operator"):
        raise SpgdError(f"vary takes a setting name, sampler.NAME or operator.NAME, got {key!r}")
    if not scope:
        scope = "sampler" if name in sampler_keys(methods) else "operator" if name in operator_keys(task) else ""
    if name in RESERVED_SAMPLER_KEYS and scope != "operator":
        raise SpgdError(f"{name!r} cannot be varied: {RESERVED_SAMPLER_KEYS[name]}")
    if name in RESERVED_OPERATOR_KEYS and scope == "operator":
        raise SpgdError(f"{name!r} cannot be varied: {RESERVED_OPERATOR_KEYS[name]}")
    if scope == "sampler":
        values = _sampler_values(name, values, methods)
    elif scope == "operator":
        if name not in operator_keys(task):
            raise SpgdError(
                f"unknown operator parameter {name!r} for task {task!r}; valid: {', '.join(operator_keys(task))}"
            )
    else:
        raise SpgdError(
            f"unknown setting {name!r} to vary; sampler settings of {', '.join(methods)}: "
            f"{', '.join(sampler_keys(methods))}; operator parameters of {task}: {', '.join(operator_keys(task))}"
        )
    for v in values:
        if any(c in _label(v) for c in "/\\") or _label(v) in (".", ".."):
            raise SpgdError(f"vary value {_label(v)!r} cannot name a folder")
    return Varied(name, scope, list(values))


def _sampler_values(name: str, values: list, methods: Sequence[str]) -> list:
    """The values of sampler setting `name`, which every method must have and none may fix (an ablation's
    defining setting always wins, so varying it would change nothing); rounded when the setting is an int."""
    default = None
    for m in methods:
        defaults = setting_defaults(m)
        if name not in defaults:
            raise SpgdError(
                f"method {m!r} has no setting {name!r} to vary; its settings: {', '.join(defaults)} "
                f"(drop it from the methods)"
            )
        fixed = fixed_settings(m)
        if name in fixed:
            raise SpgdError(
                f"method {m!r} fixes {name}={_label(fixed[name])} (that is what defines it), so varying "
                f"{name!r} does not change it; drop it from the methods"
            )
        default = defaults[name] if default is None else default
    if isinstance(default, int) and not isinstance(default, bool) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        return list(dict.fromkeys(int(round(v)) for v in values))
    return values


def _set_keys(overrides: Sequence[str]) -> set[str]:
    return {item.partition("=")[0].strip().rpartition(".")[2] for item in overrides}


# ----------------------------------------------------------------------------------------------------------
# the sweep


@dataclass
class Cell:
    method: str
    value: Any
    rel: str  # folder, relative to the sweep's run folder
    plan: EvalPlan


class Sweep:
    """A sweep over the plan's varied setting: one EvalPlan per (method, value), built and checked up front."""

    def __init__(self, plan: SweepPlan):
        if plan.batch_size < 1:
            raise SpgdError(f"batch_size must be >= 1, got {plan.batch_size}")
        self.plan = plan
        methods = check_methods(plan.methods)
        key, values = parse_vary(plan.vary)
        self.varied = resolve_varied(key, values, plan.task, methods)
        self.methods = methods
        if self.varied.key in _set_keys(plan.overrides):
            raise SpgdError(f"overriding {self.varied.key}=... conflicts with vary={self.varied.key}=...; drop one")
        apply_overrides(load_preset(plan.task), plan.overrides, methods)  # bad overrides fail once, with every method
        self.cells: list[Cell] = []
        for m in methods:
            for v in self.varied.values:
                overrides = overrides_for(m, plan.overrides, plan.task, methods) + [self.varied.override(m, v)]
                cell = EvalPlan(
                    images_dir=plan.images_dir, task=plan.task, methods=[m], overrides=overrides, prior=plan.prior,
                    checkpoint=plan.checkpoint, seed=plan.seed, size=plan.size, resize=plan.resize,
                    limit=plan.limit, kernel=plan.kernel, mask=plan.mask, batch_size=plan.batch_size,
                    device=plan.device,
                )
                cell.validate()
                cell.preset()  # a bad per-method setting fails now
                self.cells.append(Cell(m, v, f"{m}/{self.varied.key}={_label(v)}", cell))
        # every method can take the task's operator (a varied operator setting changes no capability): checked
        # before the first cell runs, not when the method's turn comes
        first = self.cells[0].plan
        operators = OperatorFactory(plan.task, first.preset().get("operator", {}), plan.kernel, plan.mask,
                                    first.overrides, 3)
        require_support(methods, operators(plan.seed, torch.device("cpu")))

    def settings_entry(self) -> dict:
        """The sweep as settings.json records it: the varied key, its values and labels, the methods, the cells."""
        return {
            "key": self.varied.key,
            "scope": self.varied.scope,
            "values": self.varied.values,
            "labels": [_label(v) for v in self.varied.values],
            "methods": self.methods,
            "cells": {c.rel: {"method": c.method, "value": c.value} for c in self.cells},
        }

    def run(self, run_dir: Path, console: Console, argv: Optional[list[str]]) -> bool:
        """Run every cell not yet complete (a line per cell); returns whether it was interrupted."""
        inner = Console(2 if console.level >= 2 else 0)  # cells run quietly; the sweep says a line per cell
        for i, c in enumerate(self.cells):
            cell_dir = run_dir / c.rel
            tag = f"[{i + 1}/{len(self.cells)}] {c.method} {self.varied.key}={_label(c.value)}"
            if (cell_dir / "cell.json").is_file():
                console.info(f"{tag}: done earlier")
                continue
            t0 = time.perf_counter()
            summary = evaluate_in(c.plan, cell_dir, inner, argv)
            if summary.interrupted:
                return True
            entry = summary.tables.get("per_method", {}).get(c.method, {})
            atomic_write_json(
                cell_dir / "cell.json",
                {"method": c.method, "key": self.varied.key, "value": c.value, "finished": utc_now(),
                 "n_images": summary.n_images, "n_failed": entry.get("n_failed")},
            )
            console.info(
                f"{tag}: PSNR {plus_minus(entry.get('psnr'), 2)}, SSIM {plus_minus(entry.get('ssim'), 4)}, "
                f"{entry.get('n_failed', 0)} of {summary.n_images} failed ({time.perf_counter() - t0:.0f} s)"
            )
        return False


def sweep(plan: SweepPlan, out: PathLike = "runs", resume: Optional[PathLike] = None,
          console: Optional[Console] = None, argv: Optional[list[str]] = None) -> SweepRecord:
    """Run the sweep into a new run folder under `out`, or finish the sweep folder `resume` (its cells not yet
    complete; `plan` must be its plan: spgd.experiment.runs.read_plan). Every bad input fails before any folder
    exists."""
    console = console or Console()
    study = Sweep(plan)
    if resume is None:
        list_images(Path(plan.images_dir))
        check_writable(out)
        run_dir = new_run_dir(out, "sweep", plan.task)
    else:
        run_dir = Path(resume)
    with RunLock(run_dir, "sweep"):  # one process at a time in a sweep folder
        if resume is None:
            provenance(run_dir, "sweep", plan, {"sweep": study.settings_entry(), "seeding": SEEDING}, argv)
        else:
            _check_resumable(run_dir, plan)
        console.info(
            f"sweep {study.varied.key} over {', '.join(_label(v) for v in study.varied.values)} for "
            f"{', '.join(study.methods)} ({len(study.cells)} cells) into {run_dir}"
        )
        interrupted = study.run(run_dir, console, argv)
        return SweepRecord(run_dir, interrupted, write_sweep_tables(run_dir), study.varied)


def _check_resumable(run_dir: Path, plan: SweepPlan) -> None:
    """A sweep folder to finish was made with this plan (batch size and device aside: they change no result)."""
    saved = SweepPlan(**read_plan(run_dir, "sweep"))
    diffs = [f"{f.name} (run: {getattr(saved, f.name)!r}, now: {getattr(plan, f.name)!r})" for f in fields(SweepPlan)
             if f.name not in ("batch_size", "device") and getattr(saved, f.name) != getattr(plan, f.name)]
    if diffs:
        raise SpgdError(f"refusing to resume {run_dir}: the settings differ: {'; '.join(diffs)}")


# ----------------------------------------------------------------------------------------------------------
# tables and plot, from the cells' per-image records


def write_sweep_tables(run_dir: Path) -> dict:
    """Rebuild sweep.csv, sweep.json and sweep.png from the cells' records/ (complete or not). Returns the
    sweep.json content."""
    run_dir = Path(run_dir)
    settings = read_json(run_dir / "settings.json")
    sweep = settings["resolved"]["sweep"]
    csv_rows: list[list] = []
    results: dict[str, list[dict]] = {m: [] for m in sweep["methods"]}
    measurement: list[float] = []  # the measurement's own PSNR per image (the same in every cell)
    for rel, cell in sweep["cells"].items():
        m, v = cell["method"], cell["value"]
        records = read_records(run_dir / rel) if (run_dir / rel / "records").is_dir() else []
        rows = _image_results(records, m)
        for record, result, failed in rows:
            csv_rows.append([m, _label(v), record["name"], None if failed else result["psnr"],
                             None if failed else result["ssim"], int(failed)])
        if sweep["scope"] == "sampler":  # an operator sweep changes the measurement from cell to cell
            for record, _, _ in rows:
                scores = record.get("measurement_metrics")
                if scores and len(measurement) < len(records):
                    measurement.append(scores["psnr"])
        results[m].append(_cell_summary(run_dir, rel, v, rows))
    atomic_write_text(run_dir / "sweep.csv", csv_text(["method", sweep["key"], "image", "psnr", "ssim", "failed"],
                                                      csv_rows))
    tables = _sweep_summary(settings, results, measurement)
    atomic_write_json(run_dir / "sweep.json", tables)
    if any(c["n"] for cells in results.values() for c in cells):
        plot_sweep(tables, run_dir / "sweep.png")
    return tables


def _image_results(records: list[dict], method: str) -> list[tuple[dict, dict, bool]]:
    """(record, the method's entry, whether it failed) of each image that `method` restored in a cell."""
    rows = []
    for record in records:
        result = record.get("methods", {}).get(method)
        if result is not None:
            rows.append((record, result, result["psnr"] is None or result.get("failed", 0) > 0))
    return rows


def _cell_summary(run_dir: Path, rel: str, value: Any, rows: list[tuple[dict, dict, bool]]) -> dict:
    """sweep.json's entry of one cell: how many images are done and failed, mean/std PSNR and SSIM over the
    others, and the cost per image."""
    ok = [result for _, result, failed in rows if not failed]
    return {
        "value": value,
        "label": _label(value),
        "dir": rel,
        "complete": (run_dir / rel / "cell.json").is_file(),
        "n": len(rows),
        "n_ok": len(ok),
        "n_failed": len(rows) - len(ok),
        "failed_images": [record["name"] for record, _, failed in rows if failed],
        "psnr": mean_and_std([result["psnr"] for result in ok]),
        "ssim": mean_and_std([result["ssim"] for result in ok]),
        "seconds_per_image": mean_and_std([result["seconds"] for _, result, _ in rows])["mean"],
        "denoiser_calls": mean_and_std([result["denoiser_calls"] for _, result, _ in rows])["mean"],
    }


def _best_values(cells: list[dict]) -> dict:
    """A method's verdict over its cells: the value of the best mean PSNR, and the values with and without
    diverged images."""
    done = [c for c in cells if c["n"]]
    scored = [c for c in done if c["psnr"]["mean"] is not None]
    best = max(scored, key=lambda c: c["psnr"]["mean"]) if scored else None
    return {
        "best_value": None if best is None else best["value"],
        "best_psnr": None if best is None else best["psnr"]["mean"],
        "values_without_failure": [c["value"] for c in done if c["n_failed"] == 0],
        "values_with_failure": [c["value"] for c in done if c["n_failed"] > 0],
    }


SWEEP_NOTES = (
    "PSNR/SSIM (piq definitions) on [0, 1] images; mean and std (population) over the images that "
    "did not fail; n_failed: images whose restoration diverged (non-finite values), excluded from the means; "
    "every cell restores the same images with the same operators, noise and seeds (spgd eval seeding)"
)


def _sweep_summary(settings: dict, results: dict[str, list[dict]], measurement: list[float]) -> dict:
    """sweep.json: the varied setting, the per-cell entries of each method and each method's verdict."""
    sweep, plan = settings["resolved"]["sweep"], settings["plan"]
    return {
        "task": plan["task"],
        "prior": plan["prior"],
        "key": sweep["key"],
        "scope": sweep["scope"],
        "values": sweep["values"],
        "methods": sweep["methods"],
        "n_images": max((c["n"] for cells in results.values() for c in cells), default=0),
        "measurement_psnr": mean_and_std(measurement) if measurement else None,
        "results": results,
        "summary": {m: _best_values(cells) for m, cells in results.items()},
        "notes": SWEEP_NOTES,
        "command_line": settings.get("command_line"),
        "updated": utc_now(),
    }


def plot_sweep(tables: dict, path: Path) -> Path:
    """sweep.png: mean PSNR and SSIM against the varied value, one line per method with a +-std band; log x
    when the (positive) values span more than 10x; an x (with the count) in the bottom strip where images
    diverged."""
    plt = pyplot()
    values = tables["values"]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    positions = {_label(v): (float(v) if numeric else float(i)) for i, v in enumerate(values)}
    log_x = numeric and min(values) > 0 and max(values) / min(values) > 10
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric, name in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ssim", "SSIM")):
        any_failed = _plot_metric(ax, tables, metric, positions, colors)
        if metric == "psnr" and tables.get("measurement_psnr") and tables["measurement_psnr"]["mean"] is not None:
            ax.axhline(tables["measurement_psnr"]["mean"], color="gray", ls="--", lw=1, label="measurement")
        _style_axes(ax, tables, name, positions, numeric, log_x)
        if any_failed:
            ax.plot([], [], "x", color="red", ms=8, mew=2, label="diverged (failed/images)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=9, frameon=False)
    fig.suptitle(
        f"{tables['task']}, {tables['n_images']} image(s), prior {tables.get('prior')}: quality against "
        f"{tables['key']} (mean ± std over non-diverged images)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(path)
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _plot_metric(ax, tables: dict, metric: str, positions: dict[str, float], colors: list) -> bool:
    """One panel's curves: per method the mean of `metric` with a +-std band, and in the strip at the bottom
    a mark per value where images diverged. Returns whether any did."""
    methods = tables["methods"]
    strip = ax.get_xaxis_transform()  # x in data units, y in axes units
    any_failed = False
    for i, m in enumerate(methods):
        color = colors[i % len(colors)]
        cells = [c for c in tables["results"][m] if c["n"]]
        xs = np.array([positions[c["label"]] for c in cells])
        mean = np.array([np.nan if c[metric]["mean"] is None else c[metric]["mean"] for c in cells])
        std = np.array([np.nan if c[metric]["std"] is None else c[metric]["std"] for c in cells])
        ax.plot(xs, mean, "o-", color=color, label=m, lw=1.8, ms=5)
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.15, lw=0)
        y_strip = 0.03 + 0.045 * (len(methods) - 1 - i)
        for c, x in zip(cells, xs):
            if c["n_failed"]:
                any_failed = True
                ax.plot([x], [y_strip], "x", color="red", ms=8, mew=2, transform=strip, clip_on=False)
                ax.plot([x], [y_strip], "o", mfc="none", mec=color, ms=12, mew=1.2, transform=strip, clip_on=False)
                ax.annotate(f"{c['n_failed']}/{c['n']}", (x, y_strip), xycoords=strip, xytext=(8, -3),
                            textcoords="offset points", fontsize=8, color="red")
    return any_failed


def _style_axes(ax, tables: dict, ylabel: str, positions: dict[str, float], numeric: bool, log_x: bool) -> None:
    """Room for the divergence strip below the lowest curve, the x scale and ticks, labels and grid."""
    values = tables["values"]
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - (hi - lo) * (0.06 + 0.05 * len(tables["methods"])), hi)
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.07)
    if not numeric:
        ax.set_xticks(list(positions.values()), list(positions))
    elif len(values) <= 10:
        ax.set_xticks([float(v) for v in values], [_label(v) for v in values])
        ax.minorticks_off()
    ax.set_xlabel(tables["key"] + (" (log scale)" if log_x else ""))
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def format_sweep(tables: dict) -> str:
    """sweep.json as a text table: one row per value, one column per method (PSNR mean±std, failed count)."""
    key, methods = tables["key"], tables["methods"]
    width = 22
    lines = [f"{key:>10}" + "".join(f"{m:>{width}}" for m in methods)]
    by = {m: {c["label"]: c for c in tables["results"][m]} for m in methods}
    for v in tables["values"]:
        row = f"{_label(v):>10}"
        for m in methods:
            c = by[m].get(_label(v))
            text = "-" if c is None or not c["n"] else f"{plus_minus(c['psnr'], 2)}" + (
                f" ({c['n_failed']}x)" if c["n_failed"] else ""
            )
            row += f"{text:>{width}}"
        lines.append(row)
    lines.append("PSNR mean±std over non-diverged images; (Nx): N images diverged")
    return "\n".join(lines)
