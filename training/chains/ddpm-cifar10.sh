#!/usr/bin/env bash
# weights/ddpm-cifar10 from scratch, block by block: each block is one GPU lease that continues the last one's
# exported EMA weights (`--init-from`: step count, images seen, LR schedule and data order go on; the optimizer
# and its warmup restart). config.json's "chain" records every boundary; train_log.jsonl holds all blocks, with
# a {"event": "boundary"} record where one starts. Run from the repository root on a GPU machine.
set -euo pipefail
# Every block stops at the step its lease stopped at (`--steps END`): the leases from block 2 on stopped on
# `--max-minutes N` (config.json's "train_args" keep how each ran), and the learning rate is constant after warmup, so `--steps` decides only
# where a block stops and the chain reproduces on any GPU, alone or shared.

# block 1: steps 0 -> 18,000 (4.61M images), one H100 (before the #17 trainer: CPU-drawn data order).
python -m driftin.train --config training/ddpm_cifar10.json --steps 18000 --out runs/ddpm-cifar10
python -m driftin.train export runs/ddpm-cifar10 weights/ddpm-cifar10

# block 2 ran at commit dc1a6fc, where the batch's image indices and the timesteps and noise were drawn from equal seeds
# (fixed after it: data.stream_seed), so this command now draws other, independent numbers.
# block 2: steps 18,000 -> 32,800 (8.40M images), 11 minutes on one H200 shared with the drift block;
# compile mode reduce-overhead (CUDA graphs: 2.3x the default mode's steps/s alone, benchmarks/train_ddpm_profile_h200.md).
python -m driftin.train --config training/ddpm_cifar10.json --init-from weights/ddpm-cifar10 --steps 32800 \
    --compile-mode reduce-overhead --snapshot-every 4000 --sample-every 0 --out runs/ddpm-cifar10-b2
python -m driftin.train export runs/ddpm-cifar10-b2 weights/ddpm-cifar10

# block 3 (commit 6ed857e, independent random streams): steps 32,800 -> 45,400 (11.62M images), 10 minutes on one H200
# shared with the drift block; EMA decay 0.9995 -> 0.9999 (the DDPM paper's; the EMA starts from the exported weights),
# warmup of the fresh optimizer shortened to 200 steps.
python -m driftin.train --config training/ddpm_cifar10.json --init-from weights/ddpm-cifar10 --steps 45400 \
    --snapshot-every 4000 --sample-every 0 --out runs/ddpm-cifar10-b3 --warmup 200 --ema-decay 0.9999
python -m driftin.train export runs/ddpm-cifar10-b3 weights/ddpm-cifar10

# block 4 (commit 8964c2b): steps 45,400 -> 53,600 (13.72M images), 10 minutes on one H200 shared with two drift arms;
# same flags as block 3.
python -m driftin.train --config training/ddpm_cifar10.json --init-from weights/ddpm-cifar10 --steps 53600 \
    --snapshot-every 4000 --sample-every 0 --out runs/ddpm-cifar10-b4 --warmup 200 --ema-decay 0.9999
python -m driftin.train export runs/ddpm-cifar10-b4 weights/ddpm-cifar10

# block 5 (commit c9885e9): steps 53,600 -> 61,600 (15.77M images), 10 minutes on one H200 shared with two drift arms;
# a learning-rate cool-down (3e-4 -> 1e-4) against block 4's flat curve. It did not move the curve (FID-10k 10.32 ->
# 9.91 / 10.03; FID-50k 8.40 -> 8.53). Since then the recipe file forces inductor's layout optimisation (a speed change
# only, +9% img/s; this block ran without it).
python -m driftin.train --config training/ddpm_cifar10.json --init-from weights/ddpm-cifar10 --steps 61600 \
    --snapshot-every 4000 --sample-every 0 --out runs/ddpm-cifar10-b5 --warmup 200 --ema-decay 0.9999 \
    --lr 1e-4
python -m driftin.train export runs/ddpm-cifar10-b5 weights/ddpm-cifar10
