#!/usr/bin/env bash
# The granular CPU twin of the paper's Tables 1–2 (issue 12), from one clean commit:
#   bash experiments/run_twin_granular.sh            # every arm × seed 0 1 2, then the tables
#   SEEDS="0 1 2 3 4" bash experiments/run_twin_granular.sh
#   TWIN=g32 ARMS="param mss_linear mss_random scrapl_adamw" bash experiments/run_twin_granular.sh
#       (the preset at 32 grains: outputs/twin_granular_g32, experiments/results/twin_granular_g32.*)
# Runs: outputs/twin_granular/<arm>/seed<k> (2 at once, 1 BLAS thread each; experiment=twin_granular, see the
# preset for every choice). A rerun skips the runs this commit and command already finished and refuses folders made
# by other code (OVERWRITE=1 deletes them). Results: experiments/results/twin_granular.{json,md,png}.
# The sweep that chose the preset: python experiments/twin_granular.py sweep (experiments/results/twin_sweep.*).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a seeds <<< "${SEEDS:-0 1 2}"
twin=(--twin "${TWIN:-g16}")
extra=()
if [[ -n ${ARMS:-} ]]; then read -r -a arms <<< "$ARMS"; extra+=(--arms "${arms[@]}"); fi
[[ -n ${OVERWRITE:-} ]] && extra+=(--overwrite)
python experiments/twin_granular.py run "${twin[@]}" --seeds "${seeds[@]}" --jobs "${JOBS:-2}" "${extra[@]}"
python experiments/twin_granular.py table "${twin[@]}"
