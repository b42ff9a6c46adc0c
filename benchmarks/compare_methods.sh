#!/usr/bin/env bash
# Every method of the comparison tables (SPGD, DPS, DAPS, DDRM, DiffPIR, PiGDM, RED-diff and the classical
# baseline) on the same faces, operators, seeds and prior, four benchmark tasks (issues 5 and 24). Budgets are
# cut to fit a 2-core CPU, about 30 network calls per image and method:
#   SPGD     K=10 levels x N=2 warm-up steps  (20 VJPs + 10 denoiser calls; paper: K=200, N=5)
#   DPS      30 ancestral steps               (30 VJPs; paper: 1000)
#   DAPS     10 levels x 3 ODE steps, 50 Langevin steps per level (30 denoiser calls, no VJP; DAPS-1K: 200 x 5, 100)
#   DDRM     steps=30: 31 timesteps (skip 1000 // 30 = 33), no VJP (release: 20)
#   DiffPIR  30 timesteps, the t = 0 one included (29 data steps), no VJP (release: 100 / 20 for inpainting)
#   PiGDM    steps=30: 31 timesteps, 31 VJPs (release: 1000)
#   RED-diff steps=30: 31 timesteps, no VJP (release: 1000)
# DDRM needs an exact SVD, which a motion blur has not: it is left out of that task (`spgd methods`).
# SPGD also runs with the analytic Gaussian prior at the same budget (into OUT_DIR/gaussian-prior).
# Step sizes are each method's task preset (the paper / released values). Then the markdown table:
#   python benchmarks/collect_tables.py OUT_DIR
# Usage: bash benchmarks/compare_methods.sh [FACES_DIR] [OUT_DIR] [PRIOR]
#   env: TASKS="..." picks tasks; METHODS=a,b,... picks methods; CHECKPOINT=FILE for PRIOR ffhq256/imagenet256;
#        BUDGET=paper; BATCH=N; GAUSSIAN=0 skips the Gaussian-prior SPGD rows
# e.g. on a GPU: BUDGET=paper CHECKPOINT=ffhq_10m.pt BATCH=auto bash benchmarks/compare_methods.sh faces/ runs/ffhq ffhq256
set -euo pipefail
faces=${1:-../shared/data/ffhq-demo}
out=${2:-runs/compare-methods}
prior=${3:-default}
tasks=${TASKS:-gaussian_blur motion_blur super_resolution inpainting_random}
spgd=${SPGD:-.venv/bin/spgd}
# exit status 1 = some images diverged: reported per image in the run's tables, the comparison goes on
ok_or_diverged() { "$@" || [ $? -eq 1 ]; }
# CHECKPOINT=ffhq_10m.pt with PRIOR ffhq256: a real checkpoint; BUDGET=paper: the presets' full budgets
prior_args=(--prior "$prior")
[ -n "${CHECKPOINT:-}" ] && prior_args+=(--checkpoint "$CHECKPOINT")
budget=(--set spgd.steps=10 --set spgd.warmup_steps=2 --set dps.steps=30
        --set daps.steps=10 --set daps.ode_steps=3 --set daps.langevin_steps=50
        --set ddrm.steps=30 --set diffpir.steps=30 --set pigdm.steps=30 --set reddiff.steps=30)
gaussian_budget=(--set steps=10 --set warmup_steps=2)
if [ "${BUDGET:-cpu}" = paper ]; then budget=(); gaussian_budget=(); fi
methods=${METHODS:-spgd,dps,daps,ddrm,diffpir,pigdm,reddiff,classical}
for task in $tasks; do
  task_methods=$methods
  [ "$task" = motion_blur ] && task_methods=${methods//ddrm,/}  # no exact SVD for a camera-shake kernel
  # eval refuses an override for a method it does not run: keep only the run methods' budgets
  task_budget=()
  for ((i = 1; i < ${#budget[@]}; i += 2)); do
    [[ ",$task_methods," == *",${budget[i]%%.*},"* ]] && task_budget+=(--set "${budget[i]}")
  done
  ok_or_diverged "$spgd" eval "$faces" --task "$task" "${prior_args[@]}" --method "$task_methods" \
    --batch-size "${BATCH:-10}" ${task_budget[@]+"${task_budget[@]}"} --out "$out" -q
  # SPGD at the same budget with the analytic Gaussian prior (what the trained prior adds)
  [ "${GAUSSIAN:-1}" = 0 ] && continue
  ok_or_diverged "$spgd" eval "$faces" --task "$task" --prior gaussian --method spgd --batch-size 10 \
    "${gaussian_budget[@]}" --out "$out/gaussian-prior" -q
done
