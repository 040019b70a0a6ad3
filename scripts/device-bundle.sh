#!/bin/bash
# Run a long CLI job (certification, a benchmark) on the device machine's 16 cores as wasm worker threads.
# That machine has no Node.js and no network, and a call carries at most 64 MiB (tracked files included), so:
#
#   scripts/device-bundle.sh build     # .devcarry/: node (xz), the node_modules files a tiny certify run opens
#                                      # (traced with strace, both data sets), the Fashion-MNIST test files; about 40 MB
#   scripts/device-bundle.sh hold      # move the committed training checkpoints (runs/*/*.ckpt.bin, ~125 MB)
#                                      # out of the tree so that the working tree fits in the 64 MiB a call sends
#   device run, carry [".devcarry", "dist"], command e.g.
#     TLIM=470 bash .devcarry/run.sh certify --dataset fashion-mnist --base dds --sigma 1 --n0 100 --n 10000 \
#       --alpha 0.001 --count 100 --workers 16
#   scripts/device-bundle.sh unhold    # put the checkpoints back (do it before any commit)
#   scripts/device-bundle.sh merge /work/.device/N/certify.tar   # rows certified there into runs/*/certify/
#
# .devcarry/run.sh unpacks node with python3's lzma, runs `advpurify <args>` under `timeout $TLIM`, and returns
# the certify directories as certify.tar. For another job, trace a tiny run of it at build time (TRACE). `merge`
# checks that the run seed and each log's settings are the local ones (or takes them where there are none yet)
# and appends the rows for images the local log lacks: a log's rows are keyed by image index and each image's
# noise seed depends only on the run seed, base, sigma and index, so a row certified there is the row a local
# run would write, and a local run sharing the log skips it.
# The patch benchmark (`bench patch ... --workers 16 --chunk 1`) merges the same way: its rows are per image,
# made under the settings recorded beside each log (a chunk's attack seed depends on the chunk, so a row made
# there is an equally valid draw rather than the very row a local run would write).
# Measured 2026-11-30: 16 workers certified 52 Fashion-MNIST dds images (n 10,000) in 720 s, ~170 s an image
# per worker (a local core takes ~70 s).
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=/tmp/advpurify-ckpt-hold
case "${1:-}" in
  build)
    npm run -s build
    mkdir -p .devcarry/data
    ex=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$ex")"
    grep -qx '/.devcarry/' "$ex" 2>/dev/null || echo '/.devcarry/' >> "$ex"
    data=${ADVPURIFY_DATA:-/usr/share/datasets/fashion-mnist}
    cp "$data"/t10k-*-ubyte.gz .devcarry/data/
    trace=$(mktemp)
    # tiny runs of the jobs the bundle is for; add another job's tiny run with TRACE='<cli args>;<cli args>'
    TRACE=${TRACE:-"certify --dataset fashion-mnist --base dds,noisy --sigma 1 --n0 10 --n 20 --count 2 --workers 2 --out $(mktemp -d);certify --dataset mnist --base dds,noisy --sigma 1 --n0 10 --n 20 --count 2 --workers 2 --out $(mktemp -d);bench patch --split fixture --count 2 --sizes 4 --defense none,patch --attacks perimage,universal --steps 1 --workers 2 --out $(mktemp -d)"}
    k=0
    IFS=';' read -ra runs <<< "$TRACE"
    for args in "${runs[@]}"; do
      k=$((k + 1))
      # shellcheck disable=SC2086
      strace -f -e trace=openat,open -o "$trace.$k" node bin/advpurify.js $args >/dev/null
    done
    cat "$trace".* > "$trace"
    grep -o "\"$PWD/node_modules/[^\"]*\"" "$trace" | tr -d '"' | sort -u | while read -r f; do
      [ -f "$f" ] && realpath --relative-to=. "$f"; done | sort -u > "$trace.files"
    tar cf - -T "$trace.files" | xz -T2 -6 > .devcarry/nm.tar.xz
    xz -T2 -9 -c "$(command -v node)" > .devcarry/node.xz
    cat > .devcarry/run.sh <<'EOF'
#!/bin/bash
# on the device machine: unpack node and node_modules, run the CLI under a time limit, return the certify directories
set -x
python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.devcarry/node.xz'),open('/tmp/node','wb'))" && chmod +x /tmp/node || exit 1
python3 -c "import tarfile;tarfile.open('.devcarry/nm.tar.xz').extractall('.')" || exit 1
export ADVPURIFY_DATA=$PWD/.devcarry/data
nproc; touch /tmp/start
timeout ${TLIM:-470} /tmp/node bin/advpurify.js "$@" > $OUT/cert.out 2>&1
echo rc $?
# the certify and patch-bench directories, logs with their settings, run seeds and universal patches, as one
# file (scripts/device-bundle.sh merge)
tar cf $OUT/certify.tar $(ls -d runs/*/certify runs/*/bench-patch 2>/dev/null)
tail -c 2000 $OUT/cert.out
EOF
    du -sh .devcarry
    ;;
  hold)
    for f in runs/*/*.ckpt.bin; do mkdir -p "$HOLD/$(dirname "$f")"; mv "$f" "$HOLD/$f"; done
    echo "checkpoints held in $HOLD; run '$0 unhold' afterwards"
    ;;
  unhold)
    (cd "$HOLD" && find runs -name '*.ckpt.bin') | while read -r f; do mv "$HOLD/$f" "$f"; done
    git status --short -- 'runs/*.ckpt.bin' 'runs/*/*.ckpt.bin'
    ;;
  merge)
    # merge a returned certify.tar into runs/: a run seed or log settings that differ from the local ones stop it;
    # rows for images the local log lacks are appended (safe while a local run appends to the same log)
    tar=${2:?usage: scripts/device-bundle.sh merge /work/.device/N/certify.tar}
    tmp=$(mktemp -d)
    tar xf "$tar" -C "$tmp"
    for dir in "$tmp"/runs/*/certify "$tmp"/runs/*/bench-patch; do
      [ -d "$dir" ] || continue
      rel=${dir#"$tmp"/}
      # a row's fields: certify logs 8, patch-bench logs 10 (PatchCleanser's 6)
      case $rel in */bench-patch) fields=10 ;; *) fields=8 ;; esac
      # universal patches (trained once per defence and size, recorded with their settings): taken where missing,
      # else they must be the local ones (the rows made with them depend on them)
      for f in "$dir"/universal-*.json; do
        [ -f "$f" ] || continue
        local_f=$rel/$(basename "$f")
        if [ ! -f "$local_f" ]; then cp "$f" "$local_f"; elif ! cmp -s "$f" "$local_f"; then echo "$local_f differs from the returned one: not merging $rel" >&2; exit 1; fi
      done
      mkdir -p "$rel"
      for f in "$dir"/seed.json "$dir"/*.settings.json; do
        [ -f "$f" ] || continue
        local_f=$rel/$(basename "$f")
        if [ -f "$local_f" ]; then
          cmp -s "$f" "$local_f" || { echo "$local_f differs from the returned one: not merging $rel" >&2; exit 1; }
        else
          cp "$f" "$local_f"
        fi
      done
      for f in "$dir"/*.tsv; do
        [ -f "$f" ] || continue
        local_f=$rel/$(basename "$f")
        if [ ! -f "$local_f" ]; then cp "$f" "$local_f"; echo "$local_f: $(($(wc -l < "$f") - 1)) rows (new)"; continue; fi
        # complete rows for indices not yet in the local log
        nf=$fields; case $(basename "$f") in patchcleanser*) nf=6 ;; esac
        rows=$(awk -F'\t' -v nf="$nf" 'NR == FNR { seen[$1] = 1; next } FNR > 1 && NF == nf && !($1 in seen) { print; seen[$1] = 1 }' "$local_f" "$f")
        # (a local run killed mid-row leaves an unfinished line: end it, readLog skips it)
        [ -n "$rows" ] && [ -n "$(tail -c1 "$local_f")" ] && echo >> "$local_f"
        [ -n "$rows" ] && printf '%s\n' "$rows" >> "$local_f"
        echo "$local_f: $(printf '%s' "$rows" | grep -c .) rows added"
      done
    done
    rm -rf "$tmp"
    ;;
  *) echo "usage: scripts/device-bundle.sh build|hold|unhold|merge TAR" >&2; exit 2 ;;
esac
