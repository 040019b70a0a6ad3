#!/usr/bin/env bash
# Ships a diffusion training run's EMA (runs/<dataset>/diffusion-ema.*) as the data set's diffusion weights
# (models/<dataset>/diffusion.*): a deliberate step, after scripts/candidate.sh has shown the EMA better on
# validation images. Every log that was measured with the old weights (robustness, certification, patch
# and corruption benchmarks record the weights' content hash) would be refused by the next run; they are
# moved to <their folder>-diffusion<old steps>/ so that the results stay readable and the runs restart
# cleanly. Then update the README's figures (scripts/measure.sh re-measures the foundation's).
#   scripts/ship-diffusion.sh [dataset=fashion-mnist]
set -euo pipefail
cd "$(dirname "$0")/.."
ds=${1:-fashion-mnist}
new=runs/$ds/diffusion-ema
[ -f "$new.json" ] && [ -f "$new.bin" ] || { echo "no $new.{json,bin}: nothing to ship" >&2; exit 1; }
old=models/$ds/diffusion
steps() { node -e "console.log(require('./$1.json').meta.trainedSteps ?? 'unknown')"; }
if [ -f "$old.bin" ]; then
  hash=$(sha256sum "$old.bin" | cut -c1-16)
  was=$(steps "$old")
  moved=0
  # robustness logs carry the hash in their first line; the others in a .settings.json beside the log
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    dir=$(dirname "$f"); dest="$dir-diffusion$was"; mkdir -p "$dest"
    case "$f" in
      *.settings.json) base=${f%.settings.json}; [ -e "$base.tsv" ] && mv "$base.tsv" "$dest/"; mv "$f" "$dest/" ;;
      *) mv "$f" "$dest/" ;;
    esac
    moved=$((moved + 1))
  done < <(grep -rl --include='*.jsonl' --include='*.settings.json' --include='universal-*.json' "\"$hash\"" runs/ 2>/dev/null | grep -v -- '-diffusion[0-9]*/' || true)
  echo "moved $moved log(s) measured with $old (step $was, $hash) aside"
fi
cp "$new.json" "$old.json"; cp "$new.bin" "$old.bin"
echo "shipped $new (step $(steps "$old")) as $old"
