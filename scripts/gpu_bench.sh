#!/usr/bin/env bash
# GPU lease: the fast-path and field tests, DDIM-25 eval, then the inference
# benchmark alone on the GPU (timings). Detached; poll runs/bench/*.log. Results: runs/bench/results.tar.gz.
#   DRIFTIN_GIT_COMMIT=$(git rev-parse HEAD) bash scripts/gpu_bench.sh
set -u
export PYTHONUNBUFFERED=1 DRIFTIN_DATA=${DRIFTIN_DATA:-data/cifar10}
R=runs/bench; mkdir -p $R
setsid nohup bash -c "
  python3 -m pytest -q -rs tests/test_field_gpu.py > $R/test_field_gpu.log 2>&1
  python3 -m pytest -q -rs tests/test_fast_gpu.py > $R/test_fast_gpu.log 2>&1
  echo done > $R/tests.done" > /dev/null 2>&1 &
setsid nohup bash -c "
  python3 -m driftin.eval --weights weights/ddpm-cifar10 --method ddim --steps 25 --batch 2500 --device cuda > $R/eval25.log 2>&1
  echo done > $R/eval.done" > /dev/null 2>&1 &
setsid nohup bash -c "
  while [ ! -f $R/tests.done ] || [ ! -f $R/eval.done ]; do sleep 2; done
  python3 -m driftin.bench infer --presets small base --out $R/infer_h100.json --md $R/infer_h100.md > $R/infer.log 2>&1
  tar czf $R/results.tar.gz $R/*.log $R/*.json $R/*.md weights/ddpm-cifar10/eval.json
  echo done > $R/all.done" > /dev/null 2>&1 &
