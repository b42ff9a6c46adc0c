"""The measurements behind spgd.verdict's thresholds (issue 28): every method's honest runs at the CPU budgets
of RESULTS.md section 2, and the garbage cases, each result judged by spgd.verdict.judge.

    .venv/bin/python benchmarks/verdict_cases.py IMAGES_DIR OUT_DIR [--size 64] [--limit 2] [--prior default]

Prints one row per (task, method, image): status, fit (residual / noise), residual / RMS(y), outside share,
saturation above the measurement's, PSNR.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from spgd.errors import SpgdError
from spgd.experiment.console import Console
from spgd.experiment.evaluation import EvalPlan, evaluate

TASKS = ("gaussian_blur", "motion_blur", "super_resolution", "inpainting_random")
METHODS = ("spgd", "spgd-official", "spgd-no-warmup", "spgd-no-momentum", "spgd-pixel-cosine", "spgd-reused-denoise",
           "dps", "daps", "daps-2025", "ddrm", "diffpir", "pigdm", "reddiff", "classical")
# the CPU budgets of RESULTS.md section 2 (SPGD K = 10, N = 2; DPS 30 steps; DAPS 10 x 3, 50 Langevin steps),
# and 20-30 steps for the methods added later
BUDGET = [f"{m}.{k}={v}" for m in METHODS[:6] for k, v in (("steps", 10), ("warmup_steps", 2))
          if not (m == "spgd-no-warmup" and k == "warmup_steps")]
BUDGET += ["dps.steps=30", "ddrm.steps=20", "diffpir.steps=30", "pigdm.steps=30", "reddiff.steps=30"]
BUDGET += [f"{m}.{k}={v}" for m in ("daps", "daps-2025") for k, v in (("steps", 10), ("ode_steps", 3),
                                                                        ("langevin_steps", 50))]
GARBAGE = {  # issue 28's cases: (task, method, overrides)
    "spgd lr=30": ("gaussian_blur", "spgd", ["spgd.lr=30", "spgd.steps=10", "spgd.warmup_steps=2"]),
    "spgd sigma_max=1e30": ("gaussian_blur", "spgd", ["spgd.sigma_max=1e30", "spgd.steps=10", "spgd.warmup_steps=2"]),
    "dps lr=1e6": ("gaussian_blur", "dps", ["dps.lr=1e6", "dps.steps=30"]),
}


def rows_of(run_dir: Path, case: str):
    for rec_path in sorted((run_dir / "records").glob("*.json")):
        rec = json.loads(rec_path.read_text())
        for method, entry in rec["methods"].items():
            for s in entry["samples"]:
                v = s.get("verdict") or {}
                yield (case, method, rec["name"], v.get("status"), v.get("fit"),
                       (v.get("residual") or 0) / max(v.get("rms_y") or 1e-12, 1e-12), v.get("outside"),
                       (v.get("saturated") or 0) - (v.get("saturated_measurement") or 0), s.get("psnr"),
                       v.get("reason"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("images")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=2)
    ap.add_argument("--prior", default="default")
    ap.add_argument("--only", default=None, help="honest or garbage")
    args = ap.parse_args()
    jobs = []
    if args.only in (None, "honest"):
        for task in TASKS:
            methods = [m for m in METHODS if not (m == "ddrm" and task == "motion_blur")]  # ddrm: svd only
            jobs.append((task, task, methods, [o for o in BUDGET if o.split(".")[0] in methods]))
    if args.only in (None, "garbage"):
        jobs += [(case, task, [m], ov) for case, (task, m, ov) in GARBAGE.items()]
    print("| case | method | image | verdict | fit (x noise) | residual / RMS(y) | outside | extra saturation | PSNR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case, task, methods, ov in jobs:
        plan = EvalPlan(images_dir=args.images, task=task, methods=methods, overrides=list(ov), prior=args.prior,
                        size=(args.size, args.size), resize=True, limit=args.limit, batch_size=args.limit)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                summary = evaluate(plan, args.out, console=Console(0))
        except SpgdError as e:
            print(f"| {case} | {methods[0]} | - | refused: {e} | | | | | |")
            continue
        for row in rows_of(summary.run_dir, case):
            c, m, name, st, fit, rel, out, sat, psnr, reason = row
            print(f"| {c} | {m} | {name} | {st} | {fit:.1f} | {rel:.2f} | {out:.3f} | {sat:+.3f} | "
                  f"{'-' if psnr is None else f'{psnr:.2f}'} |", flush=True)


if __name__ == "__main__":
    main()
