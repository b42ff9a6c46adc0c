#!/usr/bin/env bash
# SPGD with the bundled default prior on the ten FFHQ demo faces, four benchmark tasks (operators at their
# benchmark settings), beside the classical baseline and SPGD with the analytic Gaussian prior.
# The sampler budget is cut to fit a 2-core CPU: K and N below (the paper uses K=200, N=5).
# Usage: bash benchmarks/default_prior_restoration.sh [FACES_DIR] [OUT_DIR] [K] [N]
set -euo pipefail
faces=${1:-../shared/data/ffhq-demo}
out=${2:-runs/bench-default-prior}
K=${3:-20}
N=${4:-2}
spgd=${SPGD:-.venv/bin/spgd}
for task in gaussian_blur motion_blur super_resolution inpainting_random; do
  "$spgd" eval "$faces" --task "$task" --prior default --method spgd --batch-size 10 \
    --set steps="$K" --set warmup_steps="$N" --out "$out/default" -q
  "$spgd" eval "$faces" --task "$task" --prior gaussian --method spgd,classical --batch-size 10 \
    --set steps="$K" --set warmup_steps="$N" --out "$out/gaussian" -q
done
