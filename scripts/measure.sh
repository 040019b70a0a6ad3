#!/usr/bin/env bash
# Re-measures the foundation's figures for the README (run on an otherwise idle machine):
# validation sweep, test-set accuracy with/without purification, denoising PSNR, perf bench.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/measure}
mkdir -p "$out"
export ADVPURIFY_QUIET=1
cli() { node --import tsx test/run-cli.ts "$@"; }
( node --import tsx scripts/sweep.ts 500 > "$out/sweep.md" 2> "$out/sweep.err" ) &
(
  cli eval --split test --json > "$out/eval-test-clean.json"
  cli eval --split test --count 1000 --mode diffpure --seed 1 --json > "$out/eval-test-diffpure.json"
  cli eval --split test --count 1000 --denoise --seed 1 > "$out/psnr-test.md"
) 2> "$out/eval.err" &
wait
npm run -s bench > "$out/bench-perf.md" 2> "$out/bench.err"
echo "done: $out"
