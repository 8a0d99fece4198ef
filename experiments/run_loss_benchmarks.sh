#!/usr/bin/env bash
# The loss benchmarks behind the README's tables, one after the other at one commit, then the tables themselves:
#   bash experiments/run_loss_benchmarks.sh [FOLDER]     # default experiments/results/loss_benchmarks_<commit>
# 1. benchmark_losses.py --quick           every loss, one child process per row (about 5 min on 2 cores)
# 2. benchmark_losses.py --paired 315      SCRAPL against MSS Linear in one process, 5 rounds (about 10 min)
# 3. compare_kymatio_jtfs.py               the full JTFS beside kymatio main (about 15 min; needs the oracle venv
#                                          of `make oracle-fixtures`, skipped without it)
# then FOLDER/tables.md from experiments/loss_tables.py. Nothing else should run meanwhile: these are timings.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short HEAD)
out=${1:-experiments/results/loss_benchmarks_$commit}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python experiments/benchmark_losses.py --quick --json "$out/quick.json" | tee "$out/quick.log"
python experiments/benchmark_losses.py --paired 315 --rounds 5 --json "$out/paired_315.json" | tee "$out/paired_315.log"
if [ -x .oracle-venv/bin/python ]; then
    python experiments/compare_kymatio_jtfs.py --json "$out/kymatio.json" | tee "$out/kymatio.log"
else
    echo "no .oracle-venv: the kymatio main comparison is skipped (make oracle-fixtures builds it)"
fi
python experiments/loss_tables.py "$out" > "$out/tables.md"
cat "$out/tables.md"
