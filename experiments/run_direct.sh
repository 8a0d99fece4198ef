#!/usr/bin/env bash
# θ recovery by direct optimisation (issue: "Show that SCRAPL recovers what spectrogram losses cannot"), then the
# tables and plots in experiments/results/direct_<synth>.{json,md,png}.
#
#   bash experiments/run_direct.sh                     # both synths, every arm, 2 jobs at a time (1 thread each)
#   SYNTHS=chirplet ARMS="mss_linear scrapl_padam" bash experiments/run_direct.sh
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
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTHS=${SYNTHS:-granular chirplet}
ARMS=${ARMS:-jtfs scrapl_thetais scrapl_psaga scrapl_padam mss_linear mss_loglin mss_random}
RAW=${RAW:-outputs/direct}
JOBS=${JOBS:-2}
ARGS_granular=${ARGS_granular:-}
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
  python experiments/direct_optimization.py aggregate --synth "$synth" --raw "$RAW" --out experiments/results
done
