#!/usr/bin/env bash
# θ recovery by direct optimisation (issue: "Show that SCRAPL recovers what spectrogram losses cannot"), then the
# tables and plots in experiments/results/direct_<synth>.{json,md,png}.
#
#   bash experiments/run_direct.sh                     # both synths, every arm, 2 jobs at a time (1 thread each)
#   SYNTHS=chirplet ARMS="mss_linear scrapl_padam" bash experiments/run_direct.sh
#   TWIN=g32 bash experiments/run_direct.sh            # granular on the 32-grain twin's problem (1 s, P = 49):
#                                                      # outputs/direct_twin_g32, experiments/results/direct_granular_twin_g32.*
#
# Settings (defaults of experiments/direct_optimization.py, written into every result file):
# * 32 θ combinations of the paper grid's test split (32 per axis), each rendered once with its own grid seed;
#   3 optimisation seeds (each: its own random start θ ~ U[0.1, 0.9]², the same for every arm, its own render seeds
#   and path draws); meso regime (the prediction is rendered with a fresh seed every step).
# * θ = σ(z), 250 steps, lr 0.1 on a half cosine down to 0.01, θ recorded every 5 steps (a 6-target sweep: 200
#   constant-lr steps left granular slope at 100–120 ‰ at lr 0.05–0.2; the decay brought 𝒫-SAGA to 54 ‰).
#   MSS arms and the full JTFS: torch Adam. SCRAPL arms (P = 315, one uniformly drawn path per step shared by all targets): 𝒫-Adam (ε = 1e-16 inside the root, i.e. a
#   1e-8 floor on |g| like Adam's), + 𝒫-SAGA, + θ-IS (π from the warm-up at the starting θ of 4 further test-grid
#   targets, 20 power iterations, its CPU time charged to the arm).
# * The full JTFS (323 paths, 2–4 s of CPU per example-step, ~60× a SCRAPL path) runs on the first 8 targets,
#   seed 0, 60 steps (the cosine over 60): the same start and render seeds as every arm's seed 0 there, so the
#   comparison on those targets is paired. 3 seeds × 32 targets × 250 steps would take ~23 CPU hours for granular.
# * chirplet runs 100 steps (JTFS 30): the 6-target sweep had it at 37–58 ‰ by step 100 (lr 0.05–0.1), and the 2-core
#   budget of a session could not hold 250 for both synths (ARGS_chirplet / ARGS_granular change either).
# Raw per-arm files go to $RAW (default outputs/direct); the aggregation refuses raw files of different commits.
# TWIN=g16|g32: the same experiment on a granular CPU twin's problem (configs/experiment/twin_granular.yaml, 16 or
# 32 grains per 1 s example, P = 49), with the SCRAPL + Adam arm beside the 𝒫-arms: does a per-path unit step point
# θ's slope back to the target there, without an encoder in between?
set -euo pipefail
cd "$(dirname "$0")/.."
TWIN=${TWIN:-}
case "$TWIN" in
  "") TAG=""; TWIN_ARGS=""; DEFAULT_ARMS="jtfs scrapl_thetais scrapl_psaga scrapl_padam mss_linear mss_loglin mss_random" ;;
  g16) TAG=twin_g16; TWIN_ARGS="--preset twin_granular" ;;
  g32) TAG=twin_g32; TWIN_ARGS='--preset twin_granular --synth-kw {"n_grains":32}' ;;
  *) echo "TWIN must be g16 or g32, got $TWIN" >&2; exit 2 ;;
esac
if [[ -n $TWIN ]]; then
  SYNTHS=granular
  DEFAULT_ARMS="jtfs scrapl_thetais scrapl_psaga scrapl_padam scrapl_adam mss_linear mss_random"
fi
SYNTHS=${SYNTHS:-granular chirplet}
ARMS=${ARMS:-$DEFAULT_ARMS}
RAW=${RAW:-outputs/direct${TAG:+_$TAG}}
JOBS=${JOBS:-2}
ARGS_granular="${ARGS_granular:-} $TWIN_ARGS"
ARGS_chirplet=${ARGS_chirplet:---steps 100 --jtfs-steps 30}
export ARGS_granular ARGS_chirplet
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then
  echo "uncommitted changes: commit first, so that the results name the code that made them" >&2
  exit 1
fi
rm -rf "$RAW"  # never mix raw files of an earlier run (or other code) into the tables
mkdir -p "$RAW"
for synth in $SYNTHS; do for arm in $ARMS; do echo "$synth $arm"; done; done |
  xargs -P "$JOBS" -L 1 bash -c 'args=ARGS_$0; python experiments/direct_optimization.py run --synth "$0" \
    --arm "$1" ${!args} --out '"$RAW"' > '"$RAW"'/"$0"_"$1".log 2>&1 && echo "$(date -u +%H:%M:%S) done $0 $1"'
for synth in $SYNTHS; do
  python experiments/direct_optimization.py aggregate --synth "$synth" --raw "$RAW" --out experiments/results \
    ${TAG:+--tag $TAG}
done
