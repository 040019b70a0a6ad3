#!/usr/bin/env bash
# Compares a diffusion training run's current EMA (runs/<dataset>/diffusion-ema.*) with the shipped
# weights (models/<dataset>/diffusion.*) on VALIDATION images only, without touching models/: clean
# accuracy of the shipped classifier after the default purification, and one-shot denoising PSNR.
# The candidate directory links every shipped model except the diffusion weights, so ADVPURIFY_MODELS
# points the whole CLI at it. Deciding whether to ship (and when to stop training) uses these figures.
#   scripts/candidate.sh [dataset=fashion-mnist] [count=500] [seed=7]
set -euo pipefail
cd "$(dirname "$0")/.."
ds=${1:-fashion-mnist}; count=${2:-500}; seed=${3:-7}
cand=runs/candidate
rm -rf "$cand/$ds"; mkdir -p "$cand/$ds"
for f in models/"$ds"/*; do ln -s "$PWD/$f" "$cand/$ds/$(basename "$f")"; done
[ -f "runs/$ds/diffusion-ema.json" ] || { echo "no runs/$ds/diffusion-ema.json: train first" >&2; exit 1; }
rm -f "$cand/$ds"/diffusion.*
cp "runs/$ds/diffusion-ema.json" "$cand/$ds/diffusion.json"; cp "runs/$ds/diffusion-ema.bin" "$cand/$ds/diffusion.bin"
step=$(node -e "const m=require('./$cand/$ds/diffusion.json').meta; console.log(m.trainedSteps ?? '?')")
export ADVPURIFY_QUIET=1
# a data set without shipped diffusion weights yet (MNIST's first model) has only the candidate to measure
whiches="shipped candidate"; [ -f "models/$ds/diffusion.json" ] || whiches=candidate
for which in $whiches; do
  if [ $which = candidate ]; then export ADVPURIFY_MODELS=$PWD/$cand; fi
  echo "## $which diffusion ($( [ $which = candidate ] && echo "EMA at step $step" || echo models/$ds/diffusion ))"
  node bin/advpurify.js eval --dataset "$ds" --split val --count "$count" --mode diffpure --seed "$seed" 2>/dev/null
  node bin/advpurify.js eval --dataset "$ds" --split val --count "$count" --denoise --seed "$seed" 2>/dev/null
done
