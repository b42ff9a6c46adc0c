"""Markdown tables from `spgd eval` run folders: one row per task and method (mean +- std over images).

Usage: python benchmarks/collect_tables.py RUNS_DIR [RUNS_DIR ...]   (every run folder found below them)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _pm(stat: dict | None, digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def rows(run_dir: Path, with_measurement: bool = True) -> list[str]:
    m = json.loads((run_dir / "metrics.json").read_text())
    out = []
    base = m.get("measurement") or {}
    if with_measurement and base.get("psnr"):
        out.append(f"| {m['task']} | ({base.get('kind', 'measurement')}) | | {_pm(base['psnr'])} | "
                   f"{_pm(base.get('ssim'), 3)} | | | | | | |")
    for method, s in m["per_method"].items():
        mem = s.get("peak_memory_bytes", {}).get("max")
        failed = ", ".join(s.get("failed_images", [])) or "0"
        res = s.get("rms_residual") or {}
        res = "-" if res.get("mean") is None else f"{res['mean']:.4f}"
        out.append(
            f"| {m['task']} | {method} | {'-' if method == 'classical' else m['prior']} | {_pm(s['psnr'])} | {_pm(s['ssim'], 3)} | {res} | {s['denoiser_calls']['mean']:.0f} | "
            f"{s['vjps']['mean']:.0f} | {s['seconds']['mean']:.1f} | "
            f"{'-' if mem is None else f'{mem / 2**30:.1f}'} | {failed} |"
        )
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    found = {p.parent for a in argv for p in Path(a).rglob("metrics.json")}
    runs = sorted(found, key=lambda r: (json.loads((r / "metrics.json").read_text())["task"], str(r)))
    if not runs:
        print(f"no run folders (metrics.json) under {' '.join(argv)}", file=sys.stderr)
        return 2
    print("| task | method | prior | PSNR (dB) | SSIM | \\|Ax-y\\| | denoiser calls | VJPs | s/img | peak memory (GiB) | failed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    tasks_done = set()
    for run in runs:  # the measurement row once per task (every run of a task has the same measurements)
        task = json.loads((run / "metrics.json").read_text())["task"]
        print("\n".join(rows(run, with_measurement=task not in tasks_done)))
        tasks_done.add(task)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
