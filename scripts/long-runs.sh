#!/usr/bin/env bash
# The long, resumable runs that produce the README's trained models and robustness tables, in the order
# they are needed, as lanes (one per core of the 2-core dev VM; a wasm process uses one core). Every step
# resumes from its own checkpoint or log, so after an interruption rerun the same lane: finished steps
# cost seconds. The foundation comes first: the purifier's robustness tables are measured once the
# Fashion-MNIST diffusion model has finished training and been shipped (lane `eval`), because a log
# is tied to the weights it was measured with (a new model refuses an old log).
#
# The queue as of 2026-12-02 (session 31): lane smoothadv has its sigma-0.5 eps-1 and sigma-1 eps-1 rows (validation and
# test) and eps 2 at sigma 0.5 (validation: worse); `smoothadv 1 2 2 2 5 4` (sigma 1, eps 2) was training, then its
# validation and test rows; lane `cert100k runs/mnist/experiments/smoothadv-e1-k2-m2-l5 consistency 0.5` (n 100,000, ~2 min
# a digit) had begun from digit 0 (a second core: the same with `99-0`). cons20's sigma-0.5 test rows were not run
# (validation said no). Then core 1 goes on with cons-fashion (sigma 0.5, then 0.25), core 2 with the rest of MNIST's dds-ft table
# (sigma 1), then lane consistency. One lane per core (each runs the lanes below in order):
#   nohup scripts/long-runs.sh core1 >> runs/long-runs-core1.log 2>&1 &
#   nohup scripts/long-runs.sh core2 >> runs/long-runs-core2.log 2>&1 &
# or single lanes:
#   nohup scripts/long-runs.sh a >> runs/long-runs-a.log 2>&1 &
#   nohup scripts/long-runs.sh b >> runs/long-runs-b.log 2>&1 &
#   (after shipping the diffusion EMA) nohup scripts/long-runs.sh eval1 >> runs/long-runs-eval1.log 2>&1 &
#                                      nohup scripts/long-runs.sh eval2 >> runs/long-runs-eval2.log 2>&1 &
#                                      nohup scripts/long-runs.sh cert >> runs/long-runs-cert.log 2>&1 &
#
# Run `npm run -s build` first: the steps run the compiled CLI (bin/advpurify.js -> dist/).
# What runs now: scripts/long-runs.sh status. To stop every lane: pkill -f long-runs.sh; pkill -f 'advpurify.js|train-diffusion|train-restore'
# (kill the scripts first: a lane runs its sub-lanes as child scripts, which outlive a killed parent and
# would start their next step when their node process ends).
set -u
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
CLI="node bin/advpurify.js"
ROB="$CLI bench robustness --dataset fashion-mnist --split test --count 200 --preset standard"
CERT="$CLI certify --sigma 0.25,0.5,1 --n0 100 --n 10000 --alpha 0.001 --count 100 --workers 1"

# The Fashion-MNIST training set (Debian package dataset-fashion-mnist) is not on a fresh VM: install it
# when we can (root), else stop with the how-to instead of failing every step.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ ! -f data/fashion-mnist/train-images-idx3-ubyte.gz ] \
   && [ ! -f data/train-images-idx3-ubyte.gz ] && [ -z "${ADVPURIFY_DATA:-}" ]; then
  echo "long-runs: Fashion-MNIST not installed; trying apt-get install dataset-fashion-mnist" >&2
  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >&2 \
    || { echo "long-runs: install dataset-fashion-mnist (or put the IDX files in ./data) and rerun" >&2; exit 1; }
fi

step() { # name, log file, command...: the command's output goes to its log, start/end marks to both.
  # A step holds runs/.locks/<name>.lock while it runs; a lane that finds it held skips the step (another
  # lane is running it, on the same log), so the lanes may list the same steps in different orders.
  local name=$1 log=$2 fd; shift 2
  mkdir -p runs/.locks
  exec {fd}>"runs/.locks/$name.lock"
  if ! flock -n "$fd"; then
    echo "== $(date -u +%FT%TZ) skip $name: another lane is running it"
    exec {fd}>&-
    return 0
  fi
  echo "== $(date -u +%FT%TZ) start $name" | tee -a "$log"
  "$@" >> "$log" 2>&1
  local rc=$?
  echo "== $(date -u +%FT%TZ) end $name (exit $rc)" | tee -a "$log"
  exec {fd}>&-
  return $rc
}

wait_for() { # step names: block until no lane runs any of them
  local name fd
  mkdir -p runs/.locks
  for name in "$@"; do
    exec {fd}>"runs/.locks/$name.lock"
    flock "$fd"
    exec {fd}>&-
  done
}

models_links() { # dir (runs/<ds>/experiments/<name>), dataset, [shipped files]: a models directory for ADVPURIFY_MODELS,
  # <dir>/models/<dataset>, of links to the shipped weight files named (default: all of models/<dataset>)
  local d=$1/models/$2 ds=$2 f; shift 2
  mkdir -p $d
  [ $# -gt 0 ] || set -- $(cd models/$ds && ls)
  # (a link that is already there stays: link_weights may have pointed it at weights trained in <dir>, and a second
  # lane sharing the directory, e.g. another sigma, must not put the shipped file back in their place)
  for f in "$@"; do [ -e $d/$f ] || [ -L $d/$f ] || ln -sn ../../../../../../models/$ds/$f $d/$f; done
}

link_weights() { # dir, dataset, variant, [name]: the weights trained to <dir>/<variant>.{json,bin}, linked into that
  # models directory as <name> (default: the variant's own name; e.g. `classifier` to stand in for the shipped one)
  local e; for e in json bin; do ln -sfn ../../$3.$e $1/models/$2/${4:-$3}.$e; done
}

best_acr() { # log of a classifier training kept by validation ACR: the ACR of the weights it kept
  sed -n 's/^best validation ACR of the smoothed classifier //p' "$1" | tail -1
}

done_before() { # name, log file: whether the step already ended with exit 0 (its checkpoint need not be kept)
  grep -q "end $1 (exit 0)" "$2" 2>/dev/null
}

trained() { # name, log file, command...: the step has finished with exit 0, run here or by another lane (whose run
  # `step` skips and this waits for), so what it wrote may be used; fails when it did not end well
  done_before "$1" "$2" && return 0
  step "$@" || return 1
  wait_for "$1"
  done_before "$1" "$2"
}

# issue #4's four purifier rows: name -> log file (runs/robustness/<norm>-<defence>.log)
ROWS="diffpure-linf oneshot-l2 oneshot-linf diffpure-l2"
row_log() { local def=${1%%-*} norm=${1#*-}; echo "runs/robustness/$norm-$def.log"; }

# issue #4's tuning of the default purifier against the full adaptive suite (L-inf 0.1) on validation images
# 0-19 with the final diffusion weights: name -> purifier flags (the test set only produces the reported rows)
# (votes3: the purifier deployed with draws: 3, majority vote, ~3x the attack cost of one draw; advclf: the
# default purifier in front of the PGD-trained classifier instead of the standard one)
# (adv: the PGD-trained classifier alone, on the same images, as advclf's reference)
# (t200s1: the most robust-looking candidate that keeps issue #2's 87% floor on clean validation accuracy,
# diffpure t* 200 with one DDPM step, 87.6% in the sweep: what complying with that floor would cost)
TUNE="ddim5 ddpm5 advclf votes3 adv t200s1"
tune_flags() {
  case $1 in
    t200s1) echo "--defense diffpure --t-star 200 --steps 1";;
    ddpm5) echo "--defense diffpure --t-star 450 --steps 5";;
    ddim5) echo "--defense diffpure --t-star 450 --steps 5 --sampler ddim";;
    votes3) echo "--defense diffpure --t-star 450 --steps 5 --votes 3";;
    advclf) echo "--defense diffpure@classifier-adv --t-star 450 --steps 5";;
    adv) echo "--defense adv";;
  esac
}
# issue #7's validation runs of the restoration designs: name -> bench corruptions flags ('default' also runs
# the references: raw, diffpure and oneshot in front of the same classifier)
RVAL="default x0-t50 cold-10 x0-t200 x0-t450 cold-3 x0-t300"
rv_flags() {
  case $1 in
    default) echo "--preprocessors raw,diffpure,oneshot,restore,restore-cold";;
    x0-t*) echo "--preprocessors restore --restore-t-star ${1#x0-t}";;
    cold-*) echo "--preprocessors restore-cold --cold-steps ${1#cold-}";;
  esac
}
VAL="$CLI bench robustness --dataset fashion-mnist --split val --count 20 --preset standard --workers 1 --norm linf --eps 0.1"

wide() { # marker, command...: runs the command (a row on both cores) with the marker present
  local m=$1 rc; shift
  touch "$m"; "$@"; rc=$?; rm -f "$m"
  return $rc
}

wait_wide() { # a lane with nothing else for its core waits while a row runs on both cores (markers left by a
  # killed run are stale: wait_for returns at once when nobody holds the lock)
  local m
  for m in runs/.locks/*.wide; do [ -e "$m" ] && wait_for "$(basename "$m" .wide)"; done
  return 0
}

case "${1:-}" in
  a)
    # issue #4's anchor: PGD-7 adversarial fine-tuning of the shipped classifier, then its evaluation
    step classifier-adv runs/fashion-mnist/classifier-adv.log $CLI train classifier --dataset fashion-mnist --variant classifier-adv --init models/fashion-mnist/classifier \
      --lr 1e-3 --epochs 2 --adv-eps 0.1 --adv-steps 7 --seed 1 || exit 1
    # (a finished row is not rerun: a one-defence run rewrites the directory's report with that row only)
    done_before adv-linf runs/robustness/linf.log || step adv-linf runs/robustness/linf.log $ROB --workers 1 --norm linf --eps 0.1 --defense adv --out runs/robustness/linf
    done_before adv-l2 runs/robustness/l2.log || step adv-l2 runs/robustness/l2.log $ROB --workers 1 --norm l2 --eps 1.5 --defense adv --out runs/robustness/l2
    # issue #5's Cohen baselines: Gaussian-noise fine-tuning of each data set's shipped classifier per sigma
    # (uint8 weights: three more classifiers per data set within the 10 MB budget)
    for ds in fashion-mnist mnist; do
      ep=4; [ $ds = mnist ] && ep=8
      for s in 0.25 0.5 1; do
        done_before noise-$ds-$s runs/$ds/classifier-noise$s.log && continue
        step noise-$ds-$s runs/$ds/classifier-noise$s.log $CLI train classifier --dataset $ds --variant classifier-noise$s --init models/$ds/classifier \
          --noise-sigma $s --lr 1e-3 --epochs $ep --weights-dtype uint8 --seed 1
      done
    done
    # issue #5's Cohen baseline table on Fashion-MNIST (100 test images, n 10,000; ~2.5 core-hours; resumes from its logs)
    step cert-fashion-noisy runs/fashion-mnist/certify.log $CERT --dataset fashion-mnist --base noisy
    # issue #5's MNIST diffusion model (same U-Net and schedule), EMA to runs/mnist/diffusion-ema.*. Shorter than
    # Fashion-MNIST's 10,000 steps: the Fashion run plateaued at a constant rate by step ~4,200 and the cosine decay
    # then bought +0.3 dB; MNIST (8,000 digits, simpler images) gets 6,000 steps, decaying from 3,500 (~5 core-hours)
    step mnist-diffusion runs/mnist/diffusion.log node --import tsx scripts/train-diffusion.ts mnist 6000 3500
    # ship it when scripts/candidate.sh mnist shows it sound, then lane cert runs the MNIST tables
    ;;
  cert)
    # issue #5's denoised-smoothing tables (~16 core-hours a data set; MNIST once its diffusion model is shipped)
    step cert-fashion-dds runs/fashion-mnist/certify.log $CERT --dataset fashion-mnist --base dds
    step cert-fashion-table runs/fashion-mnist/certify.log $CERT --dataset fashion-mnist --base dds,noisy
    step cert-mnist-noisy runs/mnist/certify.log $CERT --dataset mnist --base noisy
    [ -f models/mnist/diffusion.json ] || { echo "models/mnist/diffusion.json missing: ship the MNIST diffusion model first" >&2; exit 1; }
    step cert-mnist-dds runs/mnist/certify.log $CERT --dataset mnist --base dds
    step cert-mnist-table runs/mnist/certify.log $CERT --dataset mnist --base dds,noisy
    ;;
  consistency)
    # issue #5: Gaussian-noise training with consistency regularization (Jeong & Shin 2020, lambda 5 as in their MNIST
    # recipe; epoch kept by validation ACR) as a second stage on each Cohen baseline (--init classifier-noise<sigma>:
    # from the clean classifier, lambda 5-10 cost 20-30 points of accuracy under noise in the first epochs at MNIST
    # sigma 1 and Fashion-MNIST sigma 0.5; runs/<ds>/experiments/consistency/), then the validation check against the
    # clean-initialised sigma-0.5 run (runs/mnist/experiments/consistency.md), then MNIST's test table with
    # --base consistency. Fashion-MNIST's weights go to runs/fashion-mnist/experiments/consistency/: three more
    # classifiers do not fit its 10 MB model budget (README, issue #5).
    for s in 0.5 1 0.25; do
      done_before cons-mnist-$s runs/mnist/classifier-consistency$s.log && continue
      step cons-mnist-$s runs/mnist/classifier-consistency$s.log $CLI train classifier --dataset mnist --variant classifier-consistency$s \
        --init models/mnist/classifier-noise$s --noise-sigma $s --consistency 5 --lr 1e-3 --epochs 8 --weights-dtype uint8 --seed 1 || exit 1
    done
    step cons-val-mnist runs/mnist/experiments/consistency-val.log $CLI certify --dataset mnist --split val --base consistency --sigma 0.5 \
      --n0 100 --n 10000 --alpha 0.001 --count 100 --workers 1 --out runs/mnist/experiments/consistency-val-noise-init
    step cert-mnist-consistency runs/mnist/certify.log $CERT --dataset mnist --base consistency
    "$SELF" cons-fashion
    ;;
  ddscons)
    # issue #5: denoised smoothing's classifier fine-tuned with consistency regularization over two separately noised
    # and denoised copies of each image (--purify-sigma S --consistency 5), as a second stage on the dds-ft classifier
    # of that sigma (from the clean classifier, consistency collapsed in the noisy-base runs: README), the epoch kept
    # by the smoothed classifier's validation ACR; then the test rows (--base dds-cons). `ddscons` is Fashion-MNIST:
    # sigma 1 (issue #5's r 1.5 / 2 goals), then 0.5 (r 0.5 / 1), 2 epochs (~25 min each on one core: two U-Net passes
    # per image). `ddscons mnist` (session 23, after Fashion-MNIST's sigma 0.5 led dds-ft at r 1.0 on its test images,
    # 61 vs 54%): sigma 0.5 (r 1.0 / 1.5; done, 90 / 60%), then 1 (r 2.0), 4 epochs of the 8,000 digits (~14 min each
    # with its validation).
    # Weights in runs/<ds>/experiments/dds-cons/ (the 10 MB model budgets), read through a models directory of links.
    # Two lanes may run it at once (`trained` waits for a training the other lane runs; a certification the other
    # runs is joined from the last image down).
    # `ddscons <ds> <lambda> [sigmas]` (session 24): the same second stage with another consistency weight, in
    # dds-cons-l<lambda>/, certified only when its validation ACR beats lambda 5's at that sigma (chosen on
    # validation images).
    ds=${2:-fashion-mnist} lam=${3:-5}
    if [ $ds = mnist ]; then sigmas="0.5 1"; ep=4; else sigmas="1 0.5"; ep=2; fi
    sigmas=${4:-$sigmas}
    short=${ds%-mnist} # step names: cert-fashion-..., cert-mnist-...
    exp5=runs/$ds/experiments/dds-cons exp=$exp5 tag=""
    [ $lam = 5 ] || { exp=$exp5-l$lam; tag=-l$lam; }
    models_links $exp $ds diffusion.json diffusion.bin
    for s in $sigmas; do
      out=$exp/classifier-dds-cons$s
      init=runs/$ds/experiments/dds-ft/classifier-dds$s; [ -f $init.json ] || init=models/$ds/classifier-dds$s
      trained ddscons-$ds-$s$tag $out.log $CLI train classifier --dataset $ds \
        --purify-sigma $s --consistency $lam --init $init --variant classifier-dds-cons$s \
        --out $out --checkpoint $out.ckpt --lr 1e-3 --epochs $ep --weights-dtype uint8 --seed 1 || exit 1
      if [ -n "$tag" ]; then
        a=$(best_acr $out.log) b=$(best_acr $exp5/classifier-dds-cons$s.log)
        if ! awk -v a="$a" -v b="$b" 'BEGIN { exit !(a != "" && b != "" && a + 0 > b + 0) }'; then
          echo "== $(date -u +%FT%TZ) ddscons $ds lambda $lam sigma $s: validation ACR $a, not above lambda 5's $b; not certified"
          continue
        fi
      fi
      link_weights $exp $ds classifier-dds-cons$s
      ADVPURIFY_MODELS=$exp/models step cert-$short-ddscons$tag-$s $exp/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp/certify || exit 1
      # (a lane that found the other certifying this sigma joins it from the last image down; runs sharing a log skip
      # each other's images, so after a finished run this step ends at once)
      ADVPURIFY_MODELS=$exp/models step cert-$short-ddscons$tag-$s-down $exp/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp/certify \
        --indices 99-0 || exit 1
    done
    ;;
  ddscons-at)
    # issue #5 (session 27): a dds-cons classifier certified at a sigma it was not trained at, `ddscons-at <ds> <sigma>
    # <trained sigma>`. At n = 10,000 and alpha = 0.001 the largest radius sigma 0.5 can certify is 1.60 (r 1.5 needs
    # at most 4 errors in 10,000 draws) and sigma 1's rows fall away early, so sigma 0.75 (max radius 2.40) is the
    # natural middle row. Which trained classifier stands in was chosen on 500 validation images (one-shot DDS at
    # sigma 0.75, 100 draws, alpha 0.01; scripts/smoothed-val.ts): the sigma-1 classifier on both datasets (README).
    ds=${2:-mnist} s=${3:-0.75} from=${4:-1}
    short=${ds%-mnist} exp=runs/$ds/experiments/dds-cons
    models_links $exp $ds diffusion.json diffusion.bin
    link_weights $exp $ds classifier-dds-cons$from classifier-dds-cons$s
    ADVPURIFY_MODELS=$exp/models step cert-$short-ddscons-$s $exp/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp/certify || exit 1
    ADVPURIFY_MODELS=$exp/models step cert-$short-ddscons-$s-down $exp/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp/certify \
      --indices 99-0 || exit 1
    ;;
  ddsden)
    # issue #5 (session 24): denoised smoothing's denoiser fine-tuned at one sigma through the frozen dds-cons
    # classifier of that sigma (`advpurify train denoiser`: Salman et al.'s classification-objective denoiser, on the
    # diffusion model's one-shot x0 prediction, with the consistency loss; the best validation ACR of the pair kept,
    # step 0 = the shipped diffusion model), then the test rows of that pair (--base dds-cons, the denoiser linked in
    # as the models directory's diffusion model) when fine-tuning beat step 0 on validation.
    # `ddsden <ds> <sigma>`; weights in runs/<ds>/experiments/dds-den/ (the model budgets).
    ds=${2:-fashion-mnist} s=${3:-0.5}
    short=${ds%-mnist}
    exp=runs/$ds/experiments/dds-den
    clf=runs/$ds/experiments/dds-cons/classifier-dds-cons$s
    out=$exp/diffusion-dds$s
    mkdir -p $exp
    trained ddsden-$ds-$s $out.log $CLI train denoiser --dataset $ds --sigma $s --classifier $clf --out $out --checkpoint $out.ckpt \
      --steps 1500 --batch-size 32 --lr 5e-5 --consistency 5 --validate-every 500 --acr-val-count 500 --seed 1 || exit 1
    r=$(grep -o 'validation ACR [0-9.]* at the start, best [0-9.]*' $out.log | tail -1)
    if ! echo "$r" | awk '{ exit !($8 + 0 > $3 + 0) }'; then
      echo "== $(date -u +%FT%TZ) ddsden $ds sigma $s: $r: no better than the shipped diffusion model; not certified"
      exit 0
    fi
    mkdir -p $exp/models/$ds
    for e in json bin; do
      ln -sfn ../../diffusion-dds$s.$e $exp/models/$ds/diffusion.$e
      ln -sfn ../../../dds-cons/classifier-dds-cons$s.$e $exp/models/$ds/classifier-dds-cons$s.$e
    done
    ADVPURIFY_MODELS=$exp/models step cert-$short-ddsden-$s $exp/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp/certify || exit 1
    ADVPURIFY_MODELS=$exp/models step cert-$short-ddsden-$s-down $exp/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp/certify \
      --indices 99-0 || exit 1
    ;;
  ddsstudent)
    # issue #5's throughput goal (session 29): denoised smoothing on a narrower U-Net (base width <ch>, ~4.3x cheaper
    # than the shipped 32 at 12) distilled from the diffusion model's one-shot x0 at one sigma (`train denoiser
    # --student-ch --distill 1 --cls 0`; weights kept by validation ACR behind the dds-cons classifier of that sigma,
    # whose ACR with the teacher is the reference), then that pair's test rows (--base dds-cons, the student linked
    # in as the models directory's diffusion model). `ddsstudent <ds> <sigma> <ch> [down]`; weights in
    # runs/<ds>/experiments/dds-student/ (the model budgets).
    ds=${2:-fashion-mnist} s=${3:-0.5} ch=${4:-12}
    short=${ds%-mnist}
    exp=runs/$ds/experiments/dds-student-ch$ch
    clf=runs/$ds/experiments/dds-cons/classifier-dds-cons$s
    out=$exp/diffusion-dds$s
    mkdir -p $exp
    trained ddsstudent-$ds-$s-$ch $out.log $CLI train denoiser --dataset $ds --sigma $s --classifier $clf --out $out --checkpoint $out.ckpt \
      --student-ch $ch --distill 1 --cls 0 --steps 3000 --batch-size 32 --lr 1e-3 --validate-every 1000 --acr-val-count 500 --seed 1 || exit 1
    mkdir -p $exp/models/$ds
    for e in json bin; do
      ln -sfn ../../diffusion-dds$s.$e $exp/models/$ds/diffusion.$e
      ln -sfn ../../../dds-cons/classifier-dds-cons$s.$e $exp/models/$ds/classifier-dds-cons$s.$e
    done
    if [ "${5:-}" = down ]; then
      ADVPURIFY_MODELS=$exp/models step cert-$short-student$ch-$s-down $exp/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp/certify --indices 99-0 || exit 1
    else
      ADVPURIFY_MODELS=$exp/models step cert-$short-student$ch-$s $exp/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp/certify || exit 1
    fi
    ;;
  ddsstudent-ft)
    # the student's second stage (session 29): the dds-cons classifier of that sigma fine-tuned for one epoch on the
    # student's denoisings (the same consistency training, ADVPURIFY_MODELS pointing at the student), certified only
    # when its validation ACR beats the student pair's. `ddsstudent-ft <ds> <sigma> <ch> [down]`; in
    # runs/<ds>/experiments/dds-student-ch<ch>/ft/.
    ds=${2:-fashion-mnist} s=${3:-0.5} ch=${4:-12}
    short=${ds%-mnist}
    exp=runs/$ds/experiments/dds-student-ch$ch
    exp2=$exp/ft
    out=$exp2/classifier-dds-cons$s
    mkdir -p $exp2/models/$ds
    done_before ddsstudent-$ds-$s-$ch $exp/diffusion-dds$s.log || { echo "ddsstudent-ft: the student ($exp/diffusion-dds$s) is not trained yet" >&2; exit 1; }
    ADVPURIFY_MODELS=$exp/models trained ddsstudentft-$ds-$s-$ch $out.log $CLI train classifier --dataset $ds \
      --purify-sigma $s --consistency 5 --init runs/$ds/experiments/dds-cons/classifier-dds-cons$s --variant classifier-dds-cons$s \
      --out $out --checkpoint $out.ckpt --lr 3e-4 --epochs 1 --weights-dtype uint8 --seed 1 || exit 1
    a=$(best_acr $out.log)
    b=$(sed -n 's/^step [0-9]*: validation ACR \([0-9.]*\).*/\1/p' $exp/diffusion-dds$s.log | sort -n | tail -1)
    if ! awk -v a="$a" -v b="$b" 'BEGIN { exit !(a != "" && b != "" && a + 0 > b + 0) }'; then
      echo "== $(date -u +%FT%TZ) ddsstudent-ft $ds sigma $s ch $ch: validation ACR $a, not above the student pair's $b; not certified"
      exit 0
    fi
    for e in json bin; do ln -sfn ../../../diffusion-dds$s.$e $exp2/models/$ds/diffusion.$e; done
    link_weights $exp2 $ds classifier-dds-cons$s
    if [ "${5:-}" = down ]; then
      ADVPURIFY_MODELS=$exp2/models step cert-$short-student$ch-ft-$s-down $exp2/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp2/certify --indices 99-0 || exit 1
    else
      ADVPURIFY_MODELS=$exp2/models step cert-$short-student$ch-ft-$s $exp2/certify.log $CERT --dataset $ds --base dds-cons --sigma $s --out $exp2/certify || exit 1
    fi
    ;;
  cons20)
    # issue #5 (session 30): Jeong & Shin's own MNIST recipe for Gaussian + consistency uses lambda 20 (their EXPERIMENTS.MD;
    # lambda 5 is for SmoothAdv + consistency), where our runs used 5. `cons20 [sigmas]`: a third stage at lambda 20 from the
    # shipped lambda-5 classifier of that sigma (8 epochs, cosine from 1e-3; epoch kept by validation ACR) to
    # runs/mnist/experiments/cons-l20/, then both on validation digits 0-99 with the same seed (the lambda-5 sigma-0.5 run
    # exists: consistency-val-noise-init), then lambda 20's test rows.
    exp=runs/mnist/experiments/cons-l20
    models_links $exp mnist
    for s in ${2:-0.5 1}; do
      trained cons20-mnist-$s $exp/classifier-consistency$s.log $CLI train classifier --dataset mnist \
        --variant classifier-consistency$s --out $exp/classifier-consistency$s --checkpoint $exp/classifier-consistency$s.ckpt \
        --init models/mnist/classifier-consistency$s --noise-sigma $s --consistency 20 --lr 1e-3 --epochs 8 --weights-dtype uint8 --seed 1 || exit 1
      link_weights $exp mnist classifier-consistency$s
      vseed=1769563314 # consistency-val-noise-init's seed: paired draws
      [ $s = 0.5 ] || step cons5-val-mnist-$s $exp/val-l5.log $CLI certify --dataset mnist --split val --base consistency --sigma $s \
        --n0 100 --n 10000 --alpha 0.001 --count 100 --workers 1 --seed $vseed --out $exp/val-l5-$s || exit 1
      ADVPURIFY_MODELS=$exp/models step cons20-val-mnist-$s $exp/val.log $CLI certify --dataset mnist --split val --base consistency --sigma $s \
        --n0 100 --n 10000 --alpha 0.001 --count 100 --workers 1 --seed $vseed --out $exp/val-$s || exit 1
      ADVPURIFY_MODELS=$exp/models step cert-mnist-cons20-$s $exp/certify.log $CERT --dataset mnist --base consistency --sigma $s --out $exp/certify || exit 1
    done
    ;;
  smoothadv)
    # issue #5 (session 30): SmoothAdv + consistency (Salman et al. 2019; Jeong & Shin 2020's best MNIST rows, there eps 1.0,
    # PGD-10, 4 draws, lambda 5 over 90 epochs) as a stage on a consistency classifier of MNIST:
    # `smoothadv <sigma> <eps> <pgd steps> <draws> <lambda> <epochs> [init weights]`; the default is a cheap variant (PGD-2,
    # 2 draws: ~2.3x a consistency epoch, ~8 min on one core) from the shipped lambda-5 classifier, eps warmed up over 2 epochs.
    # Weights, the paired validation certification (digits 0-99, consistency-val-noise-init's seed) and the test rows in
    # runs/mnist/experiments/smoothadv-<settings>/.
    s=${2:-0.5}; eps=${3:-1}; k=${4:-2}; m=${5:-2}; lam=${6:-5}; ep=${7:-6}; init=${8:-models/mnist/classifier-consistency$s}
    name=e$eps-k$k-m$m-l$lam
    exp=runs/mnist/experiments/smoothadv-$name
    models_links $exp mnist
    trained smoothadv-mnist-$s-$name $exp/classifier-consistency$s.log $CLI train classifier --dataset mnist \
      --variant classifier-consistency$s --out $exp/classifier-consistency$s --checkpoint $exp/classifier-consistency$s.ckpt --init $init \
      --noise-sigma $s --smooth-adv $eps --adv-steps $k --noise-draws $m --consistency $lam --adv-warmup 2 --lr 1e-3 --epochs $ep \
      --weights-dtype uint8 --seed 1 || exit 1
    link_weights $exp mnist classifier-consistency$s
    ADVPURIFY_MODELS=$exp/models step smoothadv-val-mnist-$s-$name $exp/val.log $CLI certify --dataset mnist --split val --base consistency \
      --sigma $s --n0 100 --n 10000 --alpha 0.001 --count 100 --workers 1 --seed 1769563314 --out $exp/val-$s || exit 1
    ADVPURIFY_MODELS=$exp/models step cert-mnist-smoothadv-$s-$name $exp/certify.log $CERT --dataset mnist --base consistency --sigma $s --out $exp/certify || exit 1
    ;;
  conslong)
    # issue #5 (session 32): the shipped consistency classifiers had 8 epochs (cosine from 1e-3) on their Cohen baseline, and
    # their loss and validation ACR were still moving at epoch 8 (the papers train 90). `conslong <sigma> <epochs> [lambda]`: the
    # same second stage, longer (~3.5 min an epoch on one core at MNIST), into runs/mnist/experiments/cons-long-e<epochs>/, then
    # the paired validation certification (digits 0-99, consistency-val-noise-init's seed) and the test rows.
    s=${2:-1}; ep=${3:-20}; lam=${4:-5}
    exp=runs/mnist/experiments/cons-long-e$ep-l$lam
    models_links $exp mnist
    trained conslong-mnist-$s-e$ep-l$lam $exp/classifier-consistency$s.log $CLI train classifier --dataset mnist \
      --variant classifier-consistency$s --out $exp/classifier-consistency$s --checkpoint $exp/classifier-consistency$s.ckpt \
      --init models/mnist/classifier-noise$s --noise-sigma $s --consistency $lam --lr 1e-3 --epochs $ep --weights-dtype uint8 --seed 1 || exit 1
    link_weights $exp mnist classifier-consistency$s
    ADVPURIFY_MODELS=$exp/models step conslong-val-mnist-$s-e$ep-l$lam $exp/val.log $CLI certify --dataset mnist --split val --base consistency \
      --sigma $s --n0 100 --n 10000 --alpha 0.001 --count 100 --workers 1 --seed 1769563314 --out $exp/val-$s || exit 1
    ADVPURIFY_MODELS=$exp/models step cert-mnist-conslong-$s-e$ep-l$lam $exp/certify.log $CERT --dataset mnist --base consistency --sigma $s --out $exp/certify || exit 1
    ;;
  cert100k)
    # issue #5 (session 31): the published MNIST rows certify with n = 100,000 noise draws; ours use 10,000, which caps
    # sigma 0.5 at r 1.60 and certifies r 1.5 only with at most ~3 misclassified draws in 10,000 (with 100,000, ~100).
    # `cert100k <experiment dir|-> <base> <sigma> [indices]`: test digits 0-99 (or the given indices, e.g. 99-0 for a
    # second core from the other end) at n 100,000, alpha 0.001, with that experiment's models directory (`-`: the shipped
    # models), into <dir>/certify-n100k (runs/mnist/certify-n100k). ~10x the n-10,000 run: ~130 s a digit on one core.
    dir=${2:?experiment dir or -}; base=${3:?base}; s=${4:?sigma}; idx=${5:-0-99}
    if [ "$dir" = - ]; then dir=runs/mnist; models=models; else models=$dir/models; fi
    ADVPURIFY_MODELS=$models step cert100k-mnist-$base-$s-$(basename $dir)-$idx $dir/certify-n100k.log $CLI certify --dataset mnist \
      --base $base --sigma $s --n0 100 --n 100000 --alpha 0.001 --indices $idx --workers 1 --out $dir/certify-n100k || exit 1
    ;;
  cons-fashion)
    # Fashion-MNIST's consistency runs (4 epochs of the second stage, ~17 min an epoch on one core here; sigma 0.5
    # ran 3 of them on 2026-11-30, validation ACR 0.560 / 0.553 / 0.558) and their test rows: sigma 1 first, the base
    # most likely to move issue #5's r 1.5 goal (on MNIST consistency lifted sigma 1's r 1.5 from 37 to 50%), then 0.5
    # and 0.25 (`cons-fashion <sigmas>`: those only). The weights stay in runs/fashion-mnist/experiments/consistency/ (the 10 MB model budget); the
    # certification reads them from a models directory of links next to the shipped models, as lane ddsft does.
    exp=runs/fashion-mnist/experiments/consistency
    models_links $exp fashion-mnist
    for s in ${2:-1 0.5 0.25}; do
      trained cons-fashion-mnist-$s runs/fashion-mnist/classifier-consistency$s.log $CLI train classifier --dataset fashion-mnist \
        --variant classifier-consistency$s --out $exp/classifier-consistency$s --init models/fashion-mnist/classifier-noise$s \
        --noise-sigma $s --consistency 5 --lr 1e-3 --epochs 4 --weights-dtype uint8 --seed 1 || exit 1
      link_weights $exp fashion-mnist classifier-consistency$s
      ADVPURIFY_MODELS=$exp/models step cert-fashion-cons-$s $exp/certify.log $CERT --dataset fashion-mnist --base consistency --sigma $s --out $exp/certify || exit 1
    done
    ;;
  restore-clf)
    # issue #7's first goal (severity-3 accuracy through restore >= clean - 5 points): the classifier behind mode
    # restore fine-tuned on restored images (--restore-aug: half of each batch damaged by random degradation
    # sequences, then restored; 2 epochs from the shipped classifier), then the corruption benchmark on validation
    # images 0-199 with it in the classifier's place (raw and restore), to compare with runs/fashion-mnist/restore-val/default.
    # The weights stay in runs/fashion-mnist/experiments/restore-clf/ (the 10 MB model budget).
    restore_clf_stage() { # experiment directory, init weights, lr, seed, step-name suffix: train, link as `classifier`, benchmark
      local exp=$1 out=$1/classifier-restore
      models_links $exp fashion-mnist
      done_before restore-clf-train$5 $out.log || step restore-clf-train$5 $out.log $CLI train classifier --dataset fashion-mnist --restore-aug \
        --init $2 --variant classifier-restore --out $out --checkpoint $out.ckpt --lr $3 --epochs 2 --weights-dtype uint8 --seed $4 || return 1
      link_weights $exp fashion-mnist classifier-restore classifier
      ADVPURIFY_MODELS=$exp/models step restore-clf-val$5 $exp/val.log $CLI bench corruptions --split val --count 200 --preprocessors raw,restore --out $exp/val
    }
    restore_clf_stage runs/fashion-mnist/experiments/restore-clf models/fashion-mnist/classifier 5e-4 1 "" || exit 1
    # (validation, 2026-12-01: severity 3 86.6 -> 87.4%, clean 94.0 -> 93.0%; restored corrupted rose 78.7 -> 79.8% from epoch
    # 1 to 2, so a second stage: 2 more epochs from it at half the rate, in experiments/restore-clf2)
    restore_clf_stage runs/fashion-mnist/experiments/restore-clf2 runs/fashion-mnist/experiments/restore-clf/classifier-restore 2.5e-4 2 2 || exit 1
    ;;
  restore-clf-test)
    # issue #7's corruption benchmark on the test set (1,000 images, raw and restore; ~45 min on one core) with the
    # restore-aware classifier chosen on validation in the classifier's place; $2: its experiment directory
    # (runs/fashion-mnist/experiments/restore-clf or restore-clf2), whose models directory lane restore-clf made
    d=${2:?usage: long-runs.sh restore-clf-test runs/fashion-mnist/experiments/<name>}
    ADVPURIFY_MODELS=$d/models step restore-clf-test-$(basename $d) $d/test.log $CLI bench corruptions --preprocessors raw,restore --out $d/test
    ;;
  ddsft)
    # (`ddsft first` stops after Fashion-MNIST's sigma-0.5 test rows, `ddsft sigma1` after its sigma-1 rows)
    # issue #5: denoised smoothing with its classifier fine-tuned on the one-shot denoisings at each sigma (--base dds-ft;
    # epoch kept by the smoothed classifier's validation ACR). Fashion-MNIST's weights stay in
    # runs/fashion-mnist/experiments/dds-ft/ (one more classifier would pass its 10 MB model budget) and its test-set
    # certification reads them from a models directory of links (ADVPURIFY_MODELS) next to the shipped diffusion
    # model; MNIST's ship (models/mnist/classifier-dds<sigma>, within its budget). Order: Fashion-MNIST sigma 0.5 and
    # its test rows (issue #5's r 0.5 and 1 goals; done 2026-11-30), sigma 1 and its rows (the r 1.5 and 2 goals),
    # sigma 0.25 and the table, then MNIST's three and its table.
    exp=runs/fashion-mnist/experiments/dds-ft
    models_links $exp fashion-mnist diffusion.json diffusion.bin
    fashion() { # sigma: train (resumes) and link the weights
      local out=$exp/classifier-dds$1 e
      done_before ddsft-fashion-mnist-$1 $out.log || step ddsft-fashion-mnist-$1 $out.log $CLI train classifier --dataset fashion-mnist --purify-sigma $1 \
        --init models/fashion-mnist/classifier --variant classifier-dds$1 --out $out --checkpoint $out.ckpt --lr 1e-3 --epochs 3 --weights-dtype uint8 --seed 1 || return 1
      link_weights $exp fashion-mnist classifier-dds$1
    }
    fashion 0.5 || exit 1
    ADVPURIFY_MODELS=$exp/models step cert-fashion-ddsft-0.5 $exp/certify.log $CERT --dataset fashion-mnist --base dds-ft --sigma 0.5 --out $exp/certify || exit 1
    [ "${2:-}" = first ] && exit 0
    fashion 1 || exit 1
    ADVPURIFY_MODELS=$exp/models step cert-fashion-ddsft-1 $exp/certify.log $CERT --dataset fashion-mnist --base dds-ft --sigma 1 --out $exp/certify || exit 1
    [ "${2:-}" = sigma1 ] && exit 0
    fashion 0.25 || exit 1
    ADVPURIFY_MODELS=$exp/models step cert-fashion-ddsft $exp/certify.log $CERT --dataset fashion-mnist --base dds-ft --out $exp/certify || exit 1
    # MNIST: sigma 0.5 ships (models/mnist/classifier-dds0.5); sigma 1 and 0.25 would take models/mnist past 10 MB
    # (8.9 MB now, 0.88 MB a classifier), so they stay in runs/mnist/experiments/dds-ft/ and the table reads all
    # three from a models directory of links, as Fashion-MNIST's does
    mexp=runs/mnist/experiments/dds-ft
    models_links $mexp mnist
    done_before ddsft-mnist-0.5 runs/mnist/classifier-dds0.5.log || step ddsft-mnist-0.5 runs/mnist/classifier-dds0.5.log $CLI train classifier --dataset mnist \
      --purify-sigma 0.5 --init models/mnist/classifier --variant classifier-dds0.5 --lr 1e-3 --epochs 4 --weights-dtype uint8 --seed 1 || exit 1
    for s in 1 0.25; do
      done_before ddsft-mnist-$s runs/mnist/classifier-dds$s.log || step ddsft-mnist-$s runs/mnist/classifier-dds$s.log $CLI train classifier --dataset mnist \
        --purify-sigma $s --init models/mnist/classifier --variant classifier-dds$s --out $mexp/classifier-dds$s --lr 1e-3 --epochs 4 \
        --weights-dtype uint8 --seed 1 || exit 1
      link_weights $mexp mnist classifier-dds$s
    done
    ADVPURIFY_MODELS=$mexp/models step cert-mnist-ddsft runs/mnist/certify.log $CERT --dataset mnist --base dds-ft
    ;;
  b)
    # the foundation's Fashion-MNIST diffusion model: at a constant rate it had plateaued (validation PSNR +0.15 dB
    # and clean accuracy after purification unchanged from step 4,200 to 6,100), so it ends at 10,000 steps with a
    # cosine annealing of the rate from step 6,500; EMA to runs/fashion-mnist/diffusion-ema.*
    step diffusion runs/fashion-mnist/diffusion.log node --import tsx scripts/train-diffusion.ts fashion-mnist 10000 6500
    ;;
  eval|eval1|eval2)
    # the default purifier (diffpure t* 450, 5 steps) and oneshot under the standard adaptive suite, both norms
    # (~20 core-hours in all). eval1 and eval2 list the four runs in opposite orders, so two lanes (one per
    # core) share them: a run another lane holds is skipped (each log is written by one lane at a time).
    # The last unfinished row runs on two worker threads (results do not depend on the number of workers)
    # and leaves a marker, so that the other lane waits for it (wait_wide) instead of crowding the cores.
    if [ "$1" = eval2 ]; then order="diffpure-l2 oneshot-linf oneshot-l2 diffpure-linf"
    else order="$ROWS"; fi
    finished=0
    for run in $order; do
      def=${run%%-*}; norm=${run#*-}; eps=0.1; [ $norm = l2 ] && eps=1.5
      # a finished row is not rerun (it would rewrite the directory's report with its row only)
      done_before $run "$(row_log $run)" && { finished=$((finished + 1)); continue; }
      others=0
      for o in $ROWS; do [ $o != $run ] && done_before $o "$(row_log $o)" && others=$((others + 1)); done
      w=1; on=(); [ $others = 3 ] && { w=2; on=(wide runs/.locks/$run.wide); }
      step $run "$(row_log $run)" "${on[@]}" $ROB --workers $w --norm $norm --eps $eps --defense $def --out runs/robustness/$norm
      done_before $run "$(row_log $run)" && finished=$((finished + 1))
    done
    # the lane that finishes the last of the four writes the tables (no lane waits idle for another); once
    # written they are not rewritten on every restart (a rerun of a row's command keeps every logged row)
    [ $finished = 4 ] && ! done_before report-l2 runs/robustness/l2.log && "$SELF" report
    ;;
  tune1|tune2)
    # two lanes share the tuning runs (opposite orders; a run the other lane holds is skipped)
    order="$TUNE"; [ "$1" = tune2 ] && order="$(echo $TUNE | tr ' ' '\n' | tac | tr '\n' ' ')"
    for cfg in $order; do
      done_before tune-$cfg runs/robustness/val-tune-$cfg.log && continue
      step tune-$cfg runs/robustness/val-tune-$cfg.log $VAL $(tune_flags $cfg) --out runs/robustness/val-tune/$cfg
    done
    ;;
  restore-val|restore-val1|restore-val2)
    # issue #7: choosing the restoration design and its defaults on validation images 0-199 (every
    # degradation, severities 1-5, mixtures, clean), final restoration weights; one directory per setting
    # (a log is tied to its settings); compare with: node --import tsx scripts/restore-val-table.ts
    # (restore-val1 and restore-val2 share the runs in opposite orders, one lane per core)
    order="$RVAL"; [ "$1" = restore-val2 ] && order="$(echo $RVAL | tr ' ' '\n' | tac | tr '\n' ' ')"
    for cfg in $order; do
      [ -f runs/fashion-mnist/restore-val/$cfg/corruptions.json ] && done_before rv-$cfg runs/fashion-mnist/restore-val.log && continue
      step rv-$cfg runs/fashion-mnist/restore-val.log $CLI bench corruptions --split val --count 200 $(rv_flags $cfg) --out runs/fashion-mnist/restore-val/$cfg
    done
    ;;
  restore-test)
    # issue #7 on the test set, once the design and defaults chosen on validation images are shipped: the
    # corruption benchmark (1,000 test images, every preprocessor; ~1.5 core-hours), then the standard
    # adaptive suite against restore at both norms (a finished row is not rerun)
    git ls-files --error-unmatch models/fashion-mnist/restore.json >/dev/null 2>&1 \
      || { echo "models/fashion-mnist/restore.* not shipped (committed) yet: pick the design first (scripts/restore-val-table.ts)" >&2; exit 0; }
    step bench-corruptions runs/fashion-mnist/bench-corruptions.log $CLI bench corruptions
    # (cold, the default, is deterministic; the x0 design with diffpure's t* 450 keeps diffpure's randomness,
    # in its own directory since its rows are also named restore; L-inf first, the norm the goal is judged on)
    # (the x0 design's row, ~7.5 core-hours, runs as `restore-test x0`: core 1 runs issue #6's 6x6 patch
    # benchmark before it)
    # (`restore-test x0-l2`: the x0 design's L2 1.5 row, so that both norms compare with diffpure's; session 28:
    # `restore-test x0-l2 down` is a second run on the same log from the last image (--reverse), the two meet)
    runs="restore-linf restore-l2"; [ "${2:-}" = x0 ] && runs=restore-x0-linf; [ "${2:-}" = x0-l2 ] && runs=restore-x0-l2
    down=""; [ "${3:-}" = down ] && down=-down
    for run in $runs; do
      norm=${run##*-}; eps=0.1; [ $norm = l2 ] && eps=1.5
      out=runs/robustness/$norm; flags=""
      case $run in restore-x0-*) out=runs/robustness/$norm-restore-x0; flags="--restorer x0 --t-star 450";; esac
      [ -n "$down" ] && flags="$flags --reverse"
      done_before $run runs/robustness/$norm-${run%-*}.log || \
        step $run$down runs/robustness/$norm-${run%-*}.log $ROB --workers 1 --norm $norm --eps $eps --defense restore $flags --out $out
    done
    ;;
  report)
    # every defence's table, plot and JSON from the logs (computes only what is missing), once no lane is
    # still running one of the purifier's rows
    wait_for $ROWS
    step report-linf runs/robustness/linf.log $ROB --workers 1 --norm linf --eps 0.1 --defense none,jpeg,bitdepth,median,oneshot,diffpure,adv --out runs/robustness/linf
    step report-l2 runs/robustness/l2.log $ROB --workers 1 --norm l2 --eps 1.5 --defense none,jpeg,bitdepth,median,oneshot,diffpure,adv --out runs/robustness/l2
    ;;
  core1)
    # everything still to run for one core, in order (each finished step is skipped in seconds): issue #4's
    # purifier rows (shared with core2; whichever lane ends the last one writes the tables), its validation
    # tuning runs (shared with core2), then issue #7's
    # restoration model (~4 more core-hours; writes models/<ds>/restore.*), then the patch benchmark
    "$SELF" eval1; wait_wide; "$SELF" tune1
    # (validation PSNR of both designs levelled off from step 1,500 to 2,000 at a constant rate: the run ends at
    # 6,000 steps with a cosine decay of the rate from step 3,000, as the diffusion model's did, instead of 10,000)
    step restore runs/fashion-mnist/restore.log node --import tsx scripts/train-restore.ts fashion-mnist 6000 3000
    # then the restoration designs on validation images (~2 core-hours; a person picks the design and
    # defaults from scripts/restore-val-table.ts and ships the model before its test-set benchmark), then
    # issue #6's full patch benchmark (~25 core-hours; core 2 is busy with certification by then)
    "$SELF" restore-val1
    # (issue #5's Fashion-MNIST denoised-smoothing table, shared with lane cert on core 2: sigma 1, then sigma 0.5
    # from image 99 down while core 2 goes up; runs sharing a log skip each other's images; quick once all logged)
    step cert-fashion-dds-1 runs/fashion-mnist/certify-core1.log $CERT --dataset fashion-mnist --base dds --sigma 1 --workers 1
    step cert-fashion-dds-0.5-down runs/fashion-mnist/certify-core1.log $CERT --dataset fashion-mnist --base dds --sigma 0.5 --indices 99-0
    "$SELF" restore-test
    # (issue #5's MNIST denoised-smoothing table, shared with lane cert on core 2: from image 99 down while core 2
    # goes up, each sigma in turn; certification comes before the patch benchmark in the issues' order)
    [ -f models/mnist/diffusion.json ] && step cert-mnist-dds-down runs/mnist/certify-core1.log $CERT --dataset mnist --base dds --indices 99-0
    # (6x6 first: issue #6's goal size, so that a run cut short still gives the headline figure; then the
    # x0 restoration design's L-inf row, then the other patch sizes)
    # (issue #6's other sizes come before issue #7's x0 row: the issues' order)
    done_before bench-patch-6 runs/fashion-mnist/bench-patch.log || step bench-patch-6 runs/fashion-mnist/bench-patch.log $CLI bench patch --count 200 --sizes 6
    step bench-patch runs/fashion-mnist/bench-patch.log $CLI bench patch --count 200
    "$SELF" restore-test x0
    # (issue #5: Fashion-MNIST's dds-ft classifiers with consistency regularization, then the noisy base's; shared
    # with core 2, which ends with cons-fashion too)
    "$SELF" ddscons
    # (session 24: consistency weight 10 at sigma 1 scored validation ACR 0.812 after epoch 1 against lambda 5's
    # 0.827 / 0.831 and was stopped; then MNIST's sigma 1 rows with core 2, then Fashion-MNIST's dds-cons at sigma
    # 0.25 (r 0.5, 7 points short; dds-ft sigma 0.25 has 72%), whose rows core 2 joins)
    # (session 27: both datasets' dds-cons rows at sigma 0.75 with core 2, before issue #7's x0 L2 row)
    "$SELF" ddscons mnist; "$SELF" ddscons fashion-mnist 5 0.25; "$SELF" ddscons-at mnist; "$SELF" ddscons-at fashion-mnist
    "$SELF" restore-test x0-l2; "$SELF" cons-fashion 1; "$SELF" ddsstudent fashion-mnist 0.5 12 down
    "$SELF" ddsstudent-ft fashion-mnist 0.5 12 down; "$SELF" cons-fashion
    ;;
  core2)
    # the other core: issue #4's purifier rows (shared with core1, the longest first), then
    # issue #5's MNIST diffusion model (lane a; its earlier steps are done) and denoised-smoothing tables
    # (lane cert; its MNIST half waits for the MNIST diffusion model to be shipped by hand, after
    # scripts/candidate.sh mnist), then issue #6's full patch benchmark (~25 core-hours)
    # (from session 18: Fashion-MNIST's dds-ft sigma-0.5 test rows, then the 6x6 patch benchmark's auto and
    # universal rows with core 1, before the remaining dds-ft and consistency runs)
    "$SELF" eval2; wait_wide; "$SELF" tune2; "$SELF" a; "$SELF" cert; "$SELF" ddsft first
    # (the same patch runs as core 1, from the other end of the images: runs sharing the logs skip each
    # other's images, so the two lanes meet in the middle)
    done_before bench-patch-6-down runs/fashion-mnist/bench-patch.log || step bench-patch-6-down runs/fashion-mnist/bench-patch.log $CLI bench patch --count 200 --sizes 6 --indices 199-0
    # (Fashion-MNIST's dds-ft sigma 1, the base most likely to move issue #5's r 1.5 / 2 figures; then core 2 joins
    # issue #6's 4x4 / 8x8 rows, the last that issue lacks (its 6x6 goal is met), before the remaining dds-ft and
    # consistency runs)
    "$SELF" ddsft sigma1
    done_before bench-patch-down runs/fashion-mnist/bench-patch.log || step bench-patch-down runs/fashion-mnist/bench-patch.log $CLI bench patch --count 200 --indices 199-0
    # (session 22: issue #7's restore-aware classifier before the rest of MNIST's dds-ft table)
    # (stage 1 of restore-clf kept on validation: severity 3 87.4% and clean 93.0% against stage 2's 87.2 / 92.5%)
    # (session 23: MNIST's dds-cons with core 1, then Fashion-MNIST's noisy-base consistency (sigma 1 scored validation
    # ACR 0.754 after its first epoch, against Cohen's 0.747 and dds-cons's 0.831, so it came second), then the rest of
    # MNIST's dds-ft table)
    "$SELF" restore-clf; "$SELF" restore-clf-test runs/fashion-mnist/experiments/restore-clf; "$SELF" ddscons mnist
    # (session 24: then the rest of MNIST's dds-ft table while core 1 trains Fashion-MNIST's dds-cons sigma 0.25, then
    # that one's rows with core 1; session 25: that one's rows first, the only ones that may move a goal, MNIST's
    # dds-ft sigma 0.5 and 1 rows after them)
    # (session 27: the sigma 0.75 dds-cons rows with core 1 first)
    # (session 28: issue #7's x0 L2 row from the other end with core 1 (--reverse) before the rest of dds-ft)
    "$SELF" ddscons fashion-mnist 5 0.25; "$SELF" ddscons-at mnist; "$SELF" ddscons-at fashion-mnist
    "$SELF" restore-test x0-l2 down
    # (session 29: issue #5's throughput goal first: a ch-12 student denoiser for Fashion-MNIST's sigma 0.5 dds-cons
    # pair, then its rows; core 1 joins the rows from image 99 down after cons-fashion)
    "$SELF" ddsstudent fashion-mnist 0.5 12; "$SELF" ddsstudent-ft fashion-mnist 0.5 12
    "$SELF" ddsft; "$SELF" restore-test x0-l2; "$SELF" cons-fashion; "$SELF" consistency
    ;;
  status)
    # which steps are running now (their lock is held) and the last progress line of each
    mkdir -p runs/.locks
    for l in runs/.locks/*.lock; do
      [ -e "$l" ] || continue
      name=$(basename "$l" .lock)
      exec {fd}>"$l"
      if flock -n "$fd"; then exec {fd}>&-; continue; fi
      exec {fd}>&-
      log=$(ls runs/*.log runs/*/*.log runs/*/experiments/*/*.log 2>/dev/null | grep -v '/long-runs-' | xargs grep -l "start $name\$" 2>/dev/null | head -1)
      echo "running: $name ($log)"
      [ -n "$log" ] && tail -c 2000 "$log" | tr '\r' '\n' | grep -v '^$' | tail -1 | sed 's/^/  /'
    done
    ;;
  *)
    echo "usage: scripts/long-runs.sh core1|core2|a|b|eval|eval1|eval2|tune1|tune2|cert|consistency|cons-fashion|ddscons [ds [lambda [sigmas]]]|ddscons-at [ds [sigma [trained sigma]]]|ddsden [ds [sigma]]|ddsstudent[-ft] [ds [sigma [ch [down]]]]|ddsft|report|restore-val|restore-test|status" >&2
    exit 2
    ;;
esac
