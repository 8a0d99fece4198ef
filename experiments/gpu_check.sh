#!/usr/bin/env bash
# The GPU checks no CPU session can do, as one command for a session that is lent a CUDA machine:
#   1. the `gpu`-marked tests: a seed renders the same audio on CPU and GPU (every synth), JTFS on CUDA = CPU;
#   2. the synth benchmark on CUDA (issue 3's batched vs B = 1 loop target);
#   3. the quick loss benchmark on CUDA;
#   4. one SCRAPL training step per synth (train.py, 30 steps, median of the step-cost callback timing every step),
#      and the same with trainer.deterministic=true (deterministic scatter_add_).
# Results land in $OUT (the device tool's folder) or experiments/results/gpu.
#
# The device image has CUDA torch, lightning, numpy and scipy but not kymatio or auraloss. Fetch them here once
# (the folder .whl/ is git-ignored) and carry it:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl kymatio==0.3.0 auraloss appdirs configparser hydra-core omegaconf \
#       antlr4-python3-runtime==4.9.3 soundfile matplotlib tqdm pyyaml
#   device run: command="bash experiments/gpu_check.sh", carry=[".whl"], timeout_s=540
set -uo pipefail
OUT=${OUT:-experiments/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The package itself, without its dependencies (the image's torch must stay).
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/scraplab . || exit 1
export PYTHONPATH=/tmp/scraplab:$PYTHONPATH

nvidia-smi -L | tee "$OUT/device.txt"
$PY -c "import torch, scraplab.synths, scraplab.scattering; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$OUT/device.txt" || exit 1

status=0
timeout 120 $PY -m pytest -q -p no:cacheprovider -o addopts="" -m gpu tests/test_synth_audio.py tests/test_jtfs.py \
    2>&1 | tee "$OUT/pytest_gpu.txt" || status=1
timeout 180 $PY experiments/benchmark_synths.py --device cuda --threads 1 --reps 10 --reps-slow 1 \
    --json "$OUT/benchmark_synths_cuda.json" --md "$OUT/benchmark_synths_cuda.md" 2>&1 | tail -20 || status=1
timeout 180 $PY experiments/benchmark_losses.py --quick --device cuda --json "$OUT/benchmark_losses_cuda.json" \
    2>&1 | tail -20 || status=1
for synth in granular chirplet tr808; do
    for det in false true; do
        # ~experiment: no CPU preset (it would set trainer.accelerator=cpu, and cpu_tr808 needs make drums' kits)
        timeout 120 $PY train.py synth=$synth '~experiment' loss=scrapl optim=p_saga sampler=uniform trainer=gpu trainer.max_steps=30 \
            trainer.deterministic=$det trainer.val_check_interval=null trainer.limit_val_batches=0 eval_init=false \
            module.test_audio=null callbacks.step_cost.every_n_steps=1 data.batch_size=8 \
            hydra.run.dir="$OUT/train_step/${synth}_det_${det}" > "$OUT/train_step_${synth}_det_${det}.log" 2>&1 \
            || status=1
        $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[2], m.get('status'), \
'ms/step', m.get('cost/ms_per_step_median'))" "$OUT/train_step/${synth}_det_${det}/metrics.json" "$synth det=$det" \
            | tee -a "$OUT/train_step.txt" || status=1
    done
done
exit $status
