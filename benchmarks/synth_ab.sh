#!/bin/bash
# A/B of --synth-fakes on the LeNet agent: same split, seed, subset and epochs; only the synthetic fakes differ.
cd "$(dirname "$0")/.." && . .venv/bin/activate
export KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=3
for r in 0.0 0.5; do
  fakeface train --manifest benchmarks/splits/dfdc.csv --agents lenet --out runs/synth_$r --epochs 4 \
    --optimizer adam --lr 1e-3 --patience 3 --max-train-images 8000 --synth-fakes $r --seed 0 > runs/synth_$r.log 2>&1
  python benchmarks/bench_agents.py --bundle runs/synth_$r --train-seconds 1 --out runs/synth_$r.json >> runs/synth_$r.log 2>&1
done
echo SYNTHDONE >> runs/synth_0.5.log
