#!/usr/bin/env bash
# CPU-scale granular twin of the paper's Table 1 (comparison) and Tables 2/6 (ablation), then the tables.
#
#   bash experiments/run_granular_cpu.sh            # N_STEPS=100 by default; N_STEPS=300 bash ... for longer runs
#   ONLY=scrapl_psaga_thetais bash experiments/run_granular_cpu.sh   # one arm only, then the ablation table only
#
# Every arm × seed (0, 1, 2) runs one after another (1 BLAS thread each) into outputs/granular_cpu/<method>/seed<k>;
# a run folder that already holds metrics.json is skipped (re-running the script resumes the plan).
# Settings (experiment=cpu_granular): 16×16 θ grid × 2 seeds (308 train / 102 val / 102 test rows), batch 8,
# encoder=small, lr 1e-3, meso regime, N_STEPS steps, validation every 50 steps, test on the best checkpoint; test
# audio distances: MSS and the JTFS distance on 8 evenly spaced paths of 315 (test/audio/jtfs_8of315).
# * SCRAPL: uniform path sampling, one path per step (P = 315). 𝒫-Adam / 𝒫-SAGA use grad_mult 1e8 (the authors'
#   granular value). The AdamW arm uses eps 1e-16, which is exactly AdamW on gradients × 1e8 (the update
#   m/(√v + ε) is invariant to scaling g by c when ε → ε/c; decoupled weight decay is unaffected).
# * θ-IS (arm scrapl_psaga_thetais = 𝒫-SAGA + θ-IS π): the warm-up runs inside train.py at each seed's untrained encoder
#   (π is a function of the initialisation, so every seed gets its own warm-up; files in $ROOT/data/theta_is/).
#   CPU-scale warm-up settings: N_IS = THETA_IS_EXAMPLES (2) training rows in one batch (paper: 320), at most
#   THETA_IS_ITERS (10) power iterations with tol 1e-4 (paper: 20), no uniform floor. With the fast warm-up
#   (synth + JTFS differentiated once per path, power iteration through the encoder only) this measured 1.3–3 s per
#   path (load-dependent), 7.5–14 min per seed for P = 315 (1 thread); the direct double backward in every iteration
#   took 3.7–8.5 s per path at these settings. 3 iterations are not enough (λ up to 17× below the 20-iteration value on
#   sample paths); on every 5th path of seed 0, 20 vs 10 iterations: Spearman(π) 0.96, TV(π) 0.07; 4 vs 2 examples:
#   Spearman(π) 0.78, TV(π) 0.20 — at this N_IS the θ-IS π depends more on the examples than on the iterations.
# * JTFS: the full JTFS loss (all 323 paths): JTFS_SEEDS (0) × JTFS_STEPS (3) steps, no val/test loss
#   (module.eval_loss=false), eps 1e-16 as for SCRAPL — a cost-and-trend row, not a converged result. The first
#   session's engine took 152 s per batch-8 step (1 thread). With the second session's engine (6.3 s per batch-4
#   loss step, 2 idle threads) a batch-8 training step is still ~20 s of CPU and ~5.8 GB: 3 seeds × 100 steps
#   (JTFS_SEEDS="0 1 2" JTFS_STEPS=100) is ~2 h per seed on this 2-core VM — a GPU job. An attempt with three seeds
#   in parallel (1 thread each, beside other jobs) ran at ~70 s per step and was stopped. The committed JTFS row is
#   ONLY=jtfs JTFS_SEEDS="0 1 2" JTFS_STEPS=30 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 bash experiments/run_granular_cpu.sh
#   (594–719 s per seed, 21.6 s per step).
# * MSS Random (the paper's best MSS) and P-loss: AdamW, default eps.
set -euo pipefail
cd "$(dirname "$0")/.."
N_STEPS=${N_STEPS:-100}
JTFS_STEPS=${JTFS_STEPS:-3}
JTFS_SEEDS=${JTFS_SEEDS:-0}
SEEDS=${SEEDS:-0 1 2}  # e.g. SEEDS=1 ONLY=jtfs to run one arm × seed per process
THETA_IS_EXAMPLES=${THETA_IS_EXAMPLES:-2}
THETA_IS_ITERS=${THETA_IS_ITERS:-10}
ROOT=${ROOT:-outputs/granular_cpu}
# 1 BLAS thread: the measured runs (2026-11-25) shared the 2-core VM with another process, where 2 threads were
# ~2.5x slower per step than 1.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
COMMON="experiment=cpu_granular trainer.max_steps=$N_STEPS trainer.val_check_interval=50 trainer.enable_progress_bar=false
  module.test_audio.jtfs_paths=8"
mkdir -p "$ROOT"

run() {  # run METHOD SEED OVERRIDES...
  local method=$1 seed=$2; shift 2
  local dir=$ROOT/$method/seed$seed
  if [[ -n ${ONLY:-} && $method != "$ONLY" ]]; then return; fi
  if [[ -f $dir/metrics.json ]]; then echo "skip $dir (done)"; return; fi
  local t0=$(date +%s)
  python train.py $COMMON seed="$seed" sampler.seed="$seed" "$@" hydra.run.dir="$dir" > "$ROOT/$method.seed$seed.log" 2>&1
  echo "$(date -u +%H:%M:%S) $method seed$seed $(( $(date +%s) - t0 )) s: $*" | tee -a "$ROOT/runlog.txt"
}

for seed in $SEEDS; do
  run param "$seed" loss=param optim=adamw
  run mss_rand "$seed" loss=mss_random optim=adamw
  run scrapl_adamw "$seed" loss=scrapl optim=adamw sampler=uniform optim.eps=1.0e-16
  run scrapl_padam "$seed" loss=scrapl optim=p_adam sampler=uniform optim.grad_mult=1.0e8
  run scrapl_psaga "$seed" loss=scrapl optim=p_saga sampler=uniform optim.grad_mult=1.0e8
  SCRAPLAB_DATA_DIR=$PWD/$ROOT/data run scrapl_psaga_thetais "$seed" loss=scrapl optim=p_saga sampler=theta_is \
    optim.grad_mult=1.0e8 sampler.warmup.n_examples="$THETA_IS_EXAMPLES" sampler.warmup.batch_size="$THETA_IS_EXAMPLES" \
    sampler.warmup.n_iter="$THETA_IS_ITERS" sampler.warmup.tol=1.0e-4
done
for seed in $JTFS_SEEDS; do
  run jtfs "$seed" loss=jtfs optim=adamw optim.eps=1.0e-16 module.eval_loss=false \
    trainer.max_steps="$JTFS_STEPS" trainer.val_check_interval="$JTFS_STEPS"
done

if [[ -z ${ONLY:-} ]]; then python experiments/aggregate.py "$ROOT" --name granular_cpu --plot; fi
python experiments/aggregate.py "$ROOT"/scrapl_adamw "$ROOT"/scrapl_padam "$ROOT"/scrapl_psaga "$ROOT"/scrapl_psaga_thetais \
  --name granular_cpu_ablation
