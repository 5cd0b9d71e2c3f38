#!/usr/bin/env bash
# Lease-1 launcher on the GPU machine: the two classifiers, then DDPM and drift side by side on one GPU.
# Detached (setsid nohup) so the device call can return; poll runs/*.log. Everything is written under
# runs/ (git-ignored, so it survives between device calls); weights are copied to weights/ afterwards.
set -u
export PYTHONUNBUFFERED=1 DRIFTIN_DATA=${DRIFTIN_DATA:-data/cifar10}
mkdir -p runs
python3 -c "from driftin.data import load_cifar10_tar as l; l('train'); l('test')"  # decode once, cache
setsid nohup python3 -m driftin.train --config training/ddpm_cifar10.json > runs/ddpm.log 2>&1 &
setsid nohup bash -c "python3 -m driftin.classifier train --arch encoder --out runs/weights/encoder-cifar10 --compile > runs/encoder.log 2>&1 \
  && python3 -m driftin.train --config training/drift_cifar10.json --drift-encoder-weights runs/weights/encoder-cifar10 > runs/drift.log 2>&1" &
setsid nohup bash -c "python3 -m driftin.classifier train --arch evalnet --out runs/weights/evalnet-cifar10 --compile > runs/evalnet.log 2>&1 \
  && python3 -m driftin.train --config training/drift_pixels_cifar10.json > runs/drift_pixels.log 2>&1" &
sleep 2
