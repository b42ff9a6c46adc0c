#!/usr/bin/env bash
# One prepared GPU run: the CUDA tests, every speed figure, the same-results check, and a prior candidate.
#
#   benchmarks/gpu_run.sh OUT_DIR                  # on a CUDA machine: about 9 minutes in all
#   benchmarks/gpu_run.sh --cpu-rehearsal OUT_DIR  # every step at toy size on the CPU, in under 3 minutes
#
# Runs from the source tree (PYTHONPATH=src), nothing installed beyond python3 with torch, numpy, pillow,
# tqdm and matplotlib; pytest is used when importable, else benchmarks/mini_pytest.py runs the CUDA tests.
# Steps, in order, each in its own time box (so a slow one cannot starve the rest):
#   1. tests     pytest -m cuda tests/test_cuda.py                                   -> tests.log
#   2. bench     spgd bench, FFHQ-256 architecture: reference and fast path (bf16, compiled, compile mode
#                auto = CUDA graphs at batch 1), batch 1, 32, auto, 8, then batch 1 without CUDA graphs;
#                one bench run per batch size, so a time-out loses one row group only  -> bench.json, bench.md
#   3. quality   fast path vs fp32 eager on the demo faces (< 0.1 dB)                 -> same_results.json
#   4. train     a 7.4M-parameter prior candidate for the time left (bf16 autocast, a batch that fills the
#                card, float16 file)                                                  -> candidate.pt, train_log.txt
#   then summary.md (steps, table, targets, verdicts) and run.log (every step's output): at most 8 files.
# Inputs (environment): PYTHON (default python3); FACES, the demo faces (default shared/data/ffhq-demo or
# ../shared/data/ffhq-demo); PHOTOS, the training photos that benchmarks/training_photos.sh assembles (default
# benchmarks/training_photos); GPU_RUN_SECONDS, the whole run's budget (default 525; rehearsal 170).
set -u -o pipefail

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; }
REHEARSAL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-rehearsal) REHEARSAL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { usage >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
if [ -n "$(ls -A "$OUT")" ]; then echo "gpu_run.sh: $OUT is not empty" >&2; exit 2; fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/spgd-gpu-run.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor-cache"
export PYTHONUNBUFFERED=1
cd "$ROOT" || exit 2

FACES=${FACES:-}
if [ -z "$FACES" ]; then
  for d in "$ROOT/shared/data/ffhq-demo" "$ROOT/../shared/data/ffhq-demo"; do
    if [ -d "$d" ]; then FACES=$(cd "$d" && pwd); break; fi
  done
fi
PHOTOS=${PHOTOS:-$ROOT/benchmarks/training_photos}

START=$(date +%s)
if [ $REHEARSAL = 1 ]; then TOTAL=${GPU_RUN_SECONDS:-170}; else TOTAL=${GPU_RUN_SECONDS:-525}; fi
left() { echo $(( TOTAL - ($(date +%s) - START) )); }
say() { echo "[gpu_run $(( $(date +%s) - START ))s] $*" | tee -a "$OUT/run.log"; }

# step NAME BOX_SECONDS COMMAND...: run COMMAND in at most BOX seconds (and never past the whole budget),
# its output appended to run.log, its exit status and time recorded for the summary.
step() {
  local name=$1 box=$2 t0 rc
  shift 2
  local budget; budget=$(left)
  [ "$box" -le "$budget" ] || box=$budget
  if [ "$box" -lt 5 ]; then
    say "$name: skipped, no time left"
    printf '%s\t%s\t%s\t%s\n' "$name" "skipped" 0 "$box" >> "$WORK/steps.tsv"
    return 0
  fi
  say "$name: start (time box ${box}s): $*"
  t0=$(date +%s)
  timeout --kill-after=10 "$box" "$@" >> "$OUT/run.log" 2>&1
  rc=$?
  say "$name: exit status $rc after $(( $(date +%s) - t0 ))s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$box" >> "$WORK/steps.tsv"
  return 0
}

say "spgd gpu_run.sh$([ $REHEARSAL = 1 ] && echo ' --cpu-rehearsal') into $OUT; budget ${TOTAL}s"
"$PY" - >> "$OUT/run.log" 2>&1 <<'PYEOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "CUDA", torch.version.cuda,
      "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only")
PYEOF
if ! "$PY" -c "import spgd" >> "$OUT/run.log" 2>&1; then
  say "cannot import spgd from $ROOT/src with $PY (see run.log)"; exit 2
fi
if [ $REHEARSAL = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "no CUDA device here: use --cpu-rehearsal on a CPU machine"; exit 2
fi

# ---------------------------------------------------------------------------------------------- settings
if [ $REHEARSAL = 1 ]; then
  "$PY" -c "import json; from spgd.experiment.bench import TINY_UNET; print(json.dumps(TINY_UNET))" \
    > "$WORK/tiny.json" 2>> "$OUT/run.log" || { say "cannot write the toy architecture"; exit 1; }
  ARCH=(--arch "$WORK/tiny.json" --size 16 --device cpu)
  BENCH=(--steps 1 --warmup-steps 1 --precision bf16 --compile off --max-batch 4)
  QUALITY=(--quality-count 2 --quality-steps 2 --warmup-steps 1 --quality-prior default,random --compile off)
  BOX_TESTS=40; BOX_BENCH=75; BOX_QUALITY=40; TRAIN_MIN=5
  TRAIN=(--device cpu --batch-size 2 --crop 16 --channels 32 --chunk 3 --overhead 4); TRAIN_SECONDS=20
  BATCHES=("1" "auto")
else
  ARCH=(--arch ffhq256)
  BENCH=(--steps 5 --warmup-steps 5 --precision bf16 --compile on --max-batch 64)
  QUALITY=(--quality-count 10 --quality-steps 20 --warmup-steps 5 --quality-prior default,random --compile on)
  BOX_TESTS=150; BOX_BENCH=200; BOX_QUALITY=90; TRAIN_MIN=60
  TRAIN=(--chunk 60); TRAIN_SECONDS=
  BATCHES=("1" "32" "auto" "8")
fi

# ------------------------------------------------------------------------------------------------ 1. tests
if [ $REHEARSAL = 1 ] || ! "$PY" -c "import pytest" 2>/dev/null; then
  TESTS=("$PY" benchmarks/mini_pytest.py -m cuda tests/test_cuda.py)  # the rehearsal runs what the GPU runs
else
  TESTS=("$PY" -m pytest -m cuda tests/test_cuda.py -q -rs -p no:cacheprovider)
fi
say "tests: ${TESTS[*]}"
t0=$(date +%s)
box=$BOX_TESTS
timeout --kill-after=10 "$box" "${TESTS[@]}" > "$OUT/tests.log" 2>&1
rc=$?
printf '%s\t%s\t%s\t%s\n' "tests" "$rc" "$(( $(date +%s) - t0 ))" "$box" >> "$WORK/steps.tsv"
say "tests: exit status $rc: $(tail -n 1 "$OUT/tests.log")"

# ------------------------------------------------------------------------------------------------ 2. bench
bench_end=$(( $(date +%s) + BOX_BENCH ))
for b in "${BATCHES[@]}"; do
  box=$(( bench_end - $(date +%s) ))
  step "bench batch $b" "$box" "$PY" -m spgd bench "${ARCH[@]}" "${BENCH[@]}" --batch-sizes "$b" \
    --compile-mode auto --out "$WORK/bench" -q
done
box=$(( bench_end - $(date +%s) ))  # does CUDA graphs pay at batch 1? the default compile mode, if time is left
step "bench batch 1, no CUDA graphs" "$box" "$PY" -m spgd bench "${ARCH[@]}" "${BENCH[@]}" --batch-sizes 1 \
  --compile-mode default --no-reference --out "$WORK/bench" -q

# ---------------------------------------------------------------------------------------------- 3. quality
if [ -n "$FACES" ]; then
  IMAGES=(--quality-images "$FACES"); LABEL="demo faces ($FACES)"
else
  IMAGES=(); LABEL="bundled photo (no demo faces found: set FACES)"
  say "quality: no demo faces found (set FACES); using the bundled photo"
fi
step "same results" "$BOX_QUALITY" "$PY" -m spgd bench "${ARCH[@]}" --quality-only --precision bf16 \
  --compile-mode auto "${QUALITY[@]}" ${IMAGES[@]+"${IMAGES[@]}"} --out "$WORK/quality" -q
"$PY" benchmarks/gpu_steps.py same-results "$WORK/quality" --out "$OUT/same_results.json" \
  --images-label "$LABEL" >> "$OUT/run.log" 2>&1

# ------------------------------------------------------------------------------------------------ 4. train
if [ $REHEARSAL = 1 ] && [ ! -d "$PHOTOS" ]; then
  # plumbing only: three generated images stand in for the photos the real run trains on
  PHOTOS="$WORK/photos"
  "$PY" - "$PHOTOS" >> "$OUT/run.log" 2>&1 <<'PYEOF'
import sys
from pathlib import Path
import torch
from spgd.io import save_image
out = Path(sys.argv[1]); out.mkdir(parents=True)
g = torch.Generator().manual_seed(0)
for i in range(3):
    coarse = torch.rand(1, 3, 5, 5, generator=g) * 2 - 1
    save_image(torch.nn.functional.interpolate(coarse, size=(40, 40), mode="bilinear"), out / f"gen{i}.png")
PYEOF
  say "train: rehearsal with generated images in place of $ROOT/benchmarks/training_photos"
fi
reserve=20  # the summary
train_s=${TRAIN_SECONDS:-$(( $(left) - reserve - 10 ))}  # wall clock of the training step, saves included
if [ "$train_s" -ge "$TRAIN_MIN" ]; then
  step "train" $(( train_s + 10 )) "$PY" benchmarks/gpu_steps.py train "$PHOTOS" --out "$OUT/candidate.pt" \
    --log "$OUT/train_log.txt" --checkpoint "$WORK/candidate.ckpt" --seconds "$train_s" "${TRAIN[@]}"
else
  say "train: skipped, ${train_s}s left (< ${TRAIN_MIN}s)"
  printf '%s\t%s\t%s\t%s\n' "train" "skipped" 0 0 >> "$WORK/steps.tsv"
fi

# ---------------------------------------------------------------------------------------------- summary
say "summary"
"$PY" benchmarks/gpu_steps.py summary --work "$WORK" --out "$OUT" $([ $REHEARSAL = 1 ] && echo --rehearsal) \
  >> "$OUT/run.log" 2>&1
rc=$?
say "done in $(( $(date +%s) - START ))s: $(ls "$OUT" | tr '\n' ' ')"
exit $rc
