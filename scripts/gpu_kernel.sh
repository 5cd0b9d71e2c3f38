#!/usr/bin/env bash
# GPU lease: drift-field GPU tests, the kernel benchmark, then drift-training throughput with the dense
# torch field vs the blocked triton field (300 steps each). Detached; poll runs/kernel/*.log.
#   DRIFTIN_GIT_COMMIT=$(git rev-parse HEAD) bash scripts/gpu_kernel.sh
set -u
export PYTHONUNBUFFERED=1 DRIFTIN_DATA=${DRIFTIN_DATA:-data/cifar10}
R=runs/kernel; mkdir -p $R
setsid nohup bash -c "
  python3 -m pytest -q -rs tests/test_field_gpu.py > $R/test_field_gpu.log 2>&1
  python3 -m driftin.bench kernel --out $R/kernel_h100.json > $R/kernel.log 2>&1
  for impl in torch triton; do
    python3 -m driftin.train --config training/drift_cifar10.json --steps 300 --log-every 50 --sample-every 0 \
      --ckpt-every 100000 --drift-impl \$impl --out $R/train-\$impl > $R/train_\$impl.log 2>&1
  done
  tar czf $R/results.tar.gz $R/*.log $R/*.json $R/train-*/log.jsonl
  echo done > $R/all.done" > /dev/null 2>&1 &
