#!/usr/bin/env bash
# SPGD, DPS, DAPS and the classical baseline on the same faces, operators, seeds and prior, four benchmark
# tasks (issue 5). Budgets are cut to fit a 2-core CPU, chosen so that each diffusion method costs about the
# same wall time per image (~30 s at 256x256 with the default prior):
#   SPGD  K=10 levels x N=2 warm-up steps  (20 VJPs + 10 denoiser calls; paper: K=200, N=5)
#   DPS   30 ancestral steps               (30 VJPs; paper: 1000)
#   DAPS  10 levels x 3 ODE steps, 50 Langevin steps per level (30 denoiser calls, no VJP; DAPS-1K: 200 x 5, 100)
# SPGD also runs with the analytic Gaussian prior at the same budget (into OUT_DIR/gaussian-prior).
# Step sizes are each method's task preset (the paper / released values). Then the markdown table:
#   python benchmarks/collect_tables.py OUT_DIR
# Usage: bash benchmarks/compare_methods.sh [FACES_DIR] [OUT_DIR] [PRIOR]
set -euo pipefail
faces=${1:-../shared/data/ffhq-demo}
out=${2:-runs/compare-methods}
prior=${3:-default}
spgd=${SPGD:-.venv/bin/spgd}
for task in gaussian_blur motion_blur super_resolution inpainting_random; do
  "$spgd" eval "$faces" --task "$task" --prior "$prior" --method spgd,dps,daps,classical --batch-size 10 \
    --set spgd.steps=10 --set spgd.warmup_steps=2 --set dps.steps=30 \
    --set daps.steps=10 --set daps.ode_steps=3 --set daps.langevin_steps=50 --out "$out" -q
  # SPGD at the same budget with the analytic Gaussian prior (what the trained prior adds)
  "$spgd" eval "$faces" --task "$task" --prior gaussian --method spgd --batch-size 10 \
    --set steps=10 --set warmup_steps=2 --out "$out/gaussian-prior" -q
done
