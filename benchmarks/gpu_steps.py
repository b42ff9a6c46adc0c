"""The Python steps of benchmarks/gpu_run.sh: training the prior candidate, the same-results verdict, and the
summary that merges the bench runs. Run by the script; each subcommand is usable alone:

    python benchmarks/gpu_steps.py train PHOTOS --out OUT/candidate.pt --log OUT/train_log.txt --seconds 180
    python benchmarks/gpu_steps.py same-results QUALITY_RUNS_DIR --out OUT/same_results.json
    python benchmarks/gpu_steps.py summary --work WORK --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

SAME_RESULTS_DB = 0.1  # the fast path may differ from fp32 eager by less than this (mean PSNR per prior)
TARGET_BEST_S, TARGET_BATCH1_S = 3.0, 12.0  # s/image at K=200, N=5: the targets
RELEASED = {"batch 1": 68.3, "batch 32": 12.5}  # the released code on an H200 (s/image), from the issue
CANDIDATE = dict(channels=64, res_blocks=1)  # 7.4M parameters: 14.2 MiB in float16
MAX_FILE_BYTES = 16 * 2**20
TRAIN_BATCH_CAP = 512  # crops are cut on the CPU, one by one: larger batches wait for them


def _log(path: Path, text: str) -> None:
    print(text, flush=True)
    with open(path, "a") as f:
        f.write(text + "\n")


# ----------------------------------------------------------------------------------------------- training


def train_batch_size(config: dict, crop: int, device: torch.device, fraction: float = 0.8) -> int:
    """The training batch that fills `fraction` of the free GPU memory (peak of one bf16 training step measured
    at batch 8 and 16, extrapolated linearly), a multiple of 8, at most TRAIN_BATCH_CAP; 4 off CUDA."""
    if device.type != "cuda":
        return 4
    from spgd.priors import UNetModel, VPPrecond

    net = UNetModel(**config).to(device)
    precond = VPPrecond(net, precision="bf16", scaling="edm", sigma_data=1.0)
    net.requires_grad_(True)
    peaks = {}
    for b in (8, 16):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        x = torch.randn(b, 3, crop, crop, device=device)
        loss = precond.denoise(x, torch.ones(b, device=device)).square().mean()
        loss.backward()
        net.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        peaks[b] = torch.cuda.max_memory_allocated(device) - base
        del x, loss
    per = max((peaks[16] - peaks[8]) / 8, 1.0)
    free, _ = torch.cuda.mem_get_info(device)
    del net, precond
    torch.cuda.empty_cache()
    b = int((fraction * free - (peaks[8] - 8 * per)) // per)
    return max(8, min(TRAIN_BATCH_CAP, b // 8 * 8))


def cmd_train(args: argparse.Namespace) -> int:
    """Train in chunks of at most `--chunk` seconds (each ends with a saved file and a held-out report, so a kill
    loses at most one chunk) until `--seconds` of wall-clock time (loading, reports and saving included) are
    spent; the last chunk is shortened by the measured overhead of the one before."""
    from spgd.training import DEFAULT_CONFIG, format_report, train_prior

    log = Path(args.log)
    photos = Path(args.photos)
    if not photos.is_dir() or not any(photos.iterdir()):
        _log(log, f"train: no training photos in {photos}: run benchmarks/training_photos.sh on a CPU machine and "
                  "carry the folder; nothing trained")
        return 3
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = {**DEFAULT_CONFIG, "num_channels": args.channels, "num_res_blocks": args.res_blocks}
    batch = args.batch_size or train_batch_size(config, args.crop, device)
    settings = dict(batch_size=batch, crop=args.crop, lr=args.lr, ema_decay=0.999, config=config, seed=0,
                    device=device, progress=False, holdout_fraction=0.1, uniform_fraction=0.3, scaling="edm",
                    sigma_data=1.0, precision=args.precision, save_dtype="fp16", checkpoint=args.checkpoint,
                    checkpoint_every=0, steps=10**8)
    command = (f"python benchmarks/gpu_steps.py train {photos.name}/ --seconds {args.seconds:.0f} --batch-size "
               f"{batch} --crop {args.crop} --channels {args.channels} --res-blocks {args.res_blocks} "
               f"--precision {args.precision} (spgd.training.train_prior: edm, sigma_data 1.0, uniform fraction "
               "0.3, lr 1e-3, EMA 0.999, seed 0, fp16 file)")
    _log(log, f"train: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
              f"{len(list(photos.iterdir()))} files in {photos.name}/, batch {batch}, crop {args.crop}, "
              f"{args.channels} channels x {args.res_blocks} res blocks, {args.precision}, {args.seconds:.0f} s")
    t0 = time.perf_counter()
    first, meta, overhead = True, None, args.overhead  # wall seconds of a chunk beyond its training: guessed, then measured
    while True:
        chunk = min(args.chunk, args.seconds - (time.perf_counter() - t0) - overhead - 2)
        if chunk < 1:
            break
        c0, trained0 = time.perf_counter(), meta["wall_time_s"] if meta else 0.0
        meta = train_prior(photos, args.out, resume=not first, max_minutes=chunk / 60, command=command, **settings)
        first = False
        overhead = (time.perf_counter() - c0) - (meta["wall_time_s"] - trained0)
        held = meta["report"]["psnr_db"]
        line = ", ".join(f"sigma {s}: {row['trained']:.2f} dB" for s, row in held.items())
        _log(log, f"train: step {meta['steps']}, {meta['wall_time_s']:.0f} s training, "
                  f"{time.perf_counter() - t0:.0f} s wall; held-out {line}")
    if meta is None:
        _log(log, "train: no time left to train")
        return 3
    size = Path(args.out).stat().st_size
    _log(log, f"train: wrote {Path(args.out).name} ({size / 2**20:.1f} MiB, {meta['parameters']:,} parameters, "
              f"{meta['steps']} steps); held-out denoising PSNR (held out: {meta['report']['held_out']}):")
    _log(log, format_report(meta["report"]["psnr_db"]))
    if size > MAX_FILE_BYTES:
        _log(log, f"train: {size} bytes is over the 16 MiB limit")
        return 4
    return 0


# ------------------------------------------------------------------------------------------ same results


def _bench_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/bench.json"))] if folder.is_dir() else []


def cmd_same_results(args: argparse.Namespace) -> int:
    records = _bench_records(Path(args.runs))
    quality = [q for r in records for q in r.get("quality", [])]
    out = {"threshold_db": SAME_RESULTS_DB, "rows": quality, "images": args.images_label}
    if not quality:
        out.update(verdict="missing", note="the quality run wrote no results (see run.log)")
    else:
        worst = max(abs(q["psnr_diff_vs_reference"]) for q in quality)
        out.update(worst_mean_diff_db=worst, verdict="pass" if worst < SAME_RESULTS_DB else "fail",
                   settings={k: records[0]["settings"].get(k) for k in ("quality_steps", "warmup_steps",
                             "quality_count", "precision", "compile", "compile_mode", "quality_prior")},
                   device_name=records[0].get("device_name"))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"same results: {out['verdict']}" + (f" (worst mean difference {out['worst_mean_diff_db']:.4f} dB, "
                                               f"limit {SAME_RESULTS_DB} dB)" if quality else ""))
    return 0 if out["verdict"] == "pass" else 1


# -------------------------------------------------------------------------------------------------- summary


def _best(rows: list[dict], pred) -> dict | None:
    ok = [r for r in rows if pred(r) and r.get("est_seconds_per_image_paper")]
    return min(ok, key=lambda r: r["est_seconds_per_image_paper"]) if ok else None


def _cap(path: Path, limit: int = 4 * 2**20) -> None:
    """Keep at most the last `limit` bytes of a log file."""
    if path.is_file() and path.stat().st_size > limit:
        data = path.read_bytes()[-limit:]
        path.write_bytes(b"[... start cut to keep the file small ...]\n" + data)


def cmd_summary(args: argparse.Namespace) -> int:
    from spgd.experiment.bench import format_table

    work, out = Path(args.work), Path(args.out)
    records = _bench_records(work / "bench")
    rows = [row for r in records for row in r["rows"]]
    merged = {
        "note": "rows of several `spgd bench` runs (one per batch size), merged by benchmarks/gpu_steps.py",
        "runs": [{k: r.get(k) for k in ("command", "date", "device_name", "versions", "seconds_total",
                                         "flops_per_image_step")} for r in records],
        "rows": rows,
    }
    (out / "bench.json").write_text(json.dumps(merged, indent=2) + "\n")
    device = records[0]["device_name"] if records else "(no bench run finished)"
    memory = "CUDA max allocated" if records and records[0]["device"].startswith("cuda") else "CPU: process peak RSS"
    table = format_table(rows, memory) if rows else "(no bench rows: see run.log)"
    steps = [line.split("\t") for line in (work / "steps.tsv").read_text().splitlines()] if (
        work / "steps.tsv").is_file() else []
    md = [f"# gpu_run.sh{' --cpu-rehearsal' if args.rehearsal else ''}: {device}", "",
          f"Date (UTC): {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}; torch {torch.__version__}, CUDA "
          f"{torch.version.cuda}; python {sys.version.split()[0]}.", "",
          *(["**CPU rehearsal at toy sizes: no figure below is a GPU measurement.**", ""] if args.rehearsal else []),
          "## Steps", "", "| step | exit status | seconds | time box s | note |", "|---|---|---|---|---|"]
    for s in steps:
        name, rc, secs, box = (s + ["", "", "", ""])[:4]
        note = {"124": "timed out", "137": "killed at its time box", "0": "ok"}.get(rc, "failed" if rc else "")
        md.append(f"| {name} | {rc} | {secs} | {box} | {note} |")
    speed = ["## Speed (SPGD, Gaussian blur, random-weight networks)", "", f"{device}, {time.strftime('%Y-%m-%d')}. "
             "Speed-up: the reference's s/image (fp32, eager, parameter gradients: the released code) over the "
             "row's, same batch, same run; TFLOP/s from FLOPs counted with FlopCounterMode.", "", table, ""]
    if records:
        speed += ["Commands:", ""] + [f"- `{' '.join(r['command'])}`" for r in records] + [""]
    (out / "bench.md").write_text("\n".join(["# " + speed[0][3:], *speed[1:]]) + "\n")
    md += ["", *speed]
    if records:
        best = _best(rows, lambda r: r["mode"] != "reference")
        b1 = _best(rows, lambda r: r["mode"] != "reference" and r["batch"] == 1)
        md += [f"Targets (s/image at K=200, N=5, scaled from the measured K; released code on an H200: "
               f"{RELEASED['batch 1']} s at batch 1, {RELEASED['batch 32']} s at batch 32):", ""]
        for label, r, target in (("best batch", best, TARGET_BEST_S), ("batch 1", b1, TARGET_BATCH1_S)):
            if r is None:
                md.append(f"- {label}: no row")
                continue
            v = r["est_seconds_per_image_paper"]
            md.append(f"- {label}: {v:.3g} s/image ({r['mode']}, batch {r['batch']}): "
                      f"{'meets' if v <= target else 'misses'} <= {target} s")
        md.append("")
    same = out / "same_results.json"
    if same.is_file():
        s = json.loads(same.read_text())
        md += ["## Same results (fast path vs fp32 eager reference)", "", f"Verdict: **{s['verdict']}** (limit "
               f"{s['threshold_db']} dB on the mean PSNR per prior; images: {s.get('images')}).", ""]
        if s["rows"]:
            from spgd.experiment.bench import format_quality

            md += [format_quality(s["rows"]), ""]
    log = out / "train_log.txt"
    if log.is_file():
        md += ["## Prior candidate", "", "```", *log.read_text().splitlines()[-12:], "```", ""]
    md += ["Files: " + ", ".join(sorted(p.name for p in out.iterdir() if p.is_file()) + ["summary.md"])]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    for name in ("run.log", "tests.log", "train_log.txt"):
        _cap(out / name)
    files = [p for p in out.iterdir() if p.is_file()]
    too_big = [p.name for p in files if p.stat().st_size > MAX_FILE_BYTES]
    print(f"summary: {len(files)} files in {out}" + (f"; over 16 MiB: {too_big}" if too_big else ""))
    return 1 if too_big or len(files) > 8 else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the prior candidate for a number of seconds")
    t.add_argument("photos")
    t.add_argument("--out", required=True)
    t.add_argument("--log", required=True)
    t.add_argument("--checkpoint", required=True, help="training-state file (keep it out of the output folder)")
    t.add_argument("--seconds", type=float, required=True, help="wall-clock budget, everything included")
    t.add_argument("--chunk", type=float, default=60.0, help="seconds between saved snapshots (default 60)")
    t.add_argument("--overhead", type=float, default=20.0,
                   help="guess of a chunk's seconds beyond training (loading, report, saving) (default 20)")
    t.add_argument("--batch-size", type=int, default=None, help="default: fill the card (4 on the CPU)")
    t.add_argument("--crop", type=int, default=64)
    t.add_argument("--channels", type=int, default=CANDIDATE["channels"])
    t.add_argument("--res-blocks", type=int, default=CANDIDATE["res_blocks"])
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    t.add_argument("--device", default=None)
    q = sub.add_parser("same-results", help="verdict of the --check-quality bench run")
    q.add_argument("runs", help="folder holding the quality bench run folder(s)")
    q.add_argument("--out", required=True)
    q.add_argument("--images-label", default="")
    s = sub.add_parser("summary", help="merge the bench runs and write summary.md")
    s.add_argument("--work", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--rehearsal", action="store_true")
    args = parser.parse_args(argv)
    return {"train": cmd_train, "same-results": cmd_same_results, "summary": cmd_summary}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
