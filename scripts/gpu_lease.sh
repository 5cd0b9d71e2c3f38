#!/usr/bin/env bash
# One GPU lease on the lent H200, staged over several device calls: the working tree travels at most
# 64 MiB a call, while the FID network (87 MB), the data (19 MB) and the generators (2 x 19 MB) together
# are far more. Everything is staged outside the repository (/root/stage, kept while the machine is held),
# the code is copied to /root/code/<time> when a job starts (so a later call's re-laid tree cannot change it
# under a running job), and all outputs go to /root/res, packed into $OUT by `collect`.
#
#   call 1: bash scripts/gpu_lease.sh stage     (carry .stage_a data/cifar10/train.tar.gz)   FID network part 1 + train split
#   call 2: bash scripts/gpu_lease.sh stage     (carry .stage_b data/cifar10/test.tar.gz)    part 2 + test split (+ encoder, evalnet)
#   call 3: CHAIN_MODELS=drift bash scripts/gpu_lease.sh stage start chains+refs profile  (drift + ddpm weights and
#           the drift chain's encoder from the tree: 61.6 of 64 MiB, so no further encoder fits in this call)
#   (phases: profile, encoder, mae, refs, calibrate, evals, sweep, bench, ablation, chains, trial; knobs in ENC_* / ABL_* / CHAIN_* variables;
#    A+B runs phases A and B at the same time. Jobs queue: a job started while another runs waits for it, so call 2
#    can start what needs only the data, e.g. `stage start encoder`, and call 3 its own phases after it)
#   later:  bash scripts/gpu_lease.sh status [seconds to wait]; bash scripts/gpu_lease.sh collect [best]
#   last:   bash scripts/gpu_lease.sh cache   -> the chains' compile artifacts (driftin/train/compile_cache.py),
#           xz-compressed as <arm>.bin.xz.partNN: keep them in .stage_c/ (ignored) and carry .stage_c in a stage call of the
#           next lease (call 2 if it has room; else `lease_tree.sh d`): each chain then loads its arm's compiled code
#           instead of compiling for 1-2.5 min of its block (a changed graph or torch version just misses). Measured
#           2026-12-01: the artifacts are 103 / 138 / 125 MB (ddpm / drift / drift trial), mostly pickled kernels that xz
#           shrinks ~23x (63 MB of ddpm's -> 2.7 MB); the whole inductor + triton folders were 850 MB (132 MB packed).
#
# Between calls, move aside the weight folders a call does not carry (the tree must stay under 64 MiB):
# `bash scripts/lease_tree.sh a|b|c` lays the tree out for call 1/2/3 and prints its carry list; `... back` after.
# Set DRIFTIN_GIT_COMMIT to this checkout's HEAD as a literal: the device's .git can be older than its tree.
set -u
S=/root/stage O=${DRIFTIN_LEASE_RES:-/root/res}  # not /root/out: that is the device's $OUT, emptied at every call (tests: a tmp folder)
C=/root/code/$(date +%s%N)  # each job runs its own copy of the code: a later `start` cannot change it under a running job
export PYTHONUNBUFFERED=1 DRIFTIN_DATA=$S/cifar10 DRIFTIN_WEIGHTS=$S/weights DRIFTIN_CACHE=/root/cache
export TORCHINDUCTOR_CACHE_DIR=/root/cache/inductor TRITON_CACHE_DIR=/root/cache/triton  # this lease's (`cache` carries artifacts)
FIDNET=$S/default_1.pt
FID_SHA1=a16e4d89c0ecbc17a915dd76ea9e41211aa82562  # = driftin.eval.inception.FID_HELPER_SHA1 (tests/test_inception.py checks)
EVAL="python3 -m driftin.eval --batch 2500 --device cuda --inception $FIDNET --evalnet $S/weights/evalnet-cifar10"

# xz streams (stdin -> stdout) for the compile artifacts; Python's lzma where the machine has no xz binary
pack() { if command -v xz > /dev/null; then xz -T0 -6 -c; else python3 -c "import lzma, sys; sys.stdout.buffer.write(lzma.compress(sys.stdin.buffer.read(), preset=6))"; fi; }
unpack() { if command -v xz > /dev/null; then xz -dc; else python3 -c "import lzma, sys; sys.stdout.buffer.write(lzma.decompress(sys.stdin.buffer.read()))"; fi; }

stage() {
  mkdir -p $S/weights $O
  for p in .stage_a/* .stage_b/*; do [ -e "$p" ] && cp "$p" $S/; done
  ls data/cifar10/*.tar.gz > /dev/null 2>&1 && mkdir -p $S/cifar10 && cp data/cifar10/*.tar.gz $S/cifar10/
  for p in .stage_c/*.bin.xz.part00; do [ -e "$p" ] && mkdir -p $S/compile && cat "${p%.part00}".part* | unpack > $S/compile/$(basename "${p%.xz.part00}"); done
  for w in weights/*/; do [ -e "$w/config.json" ] && rm -rf "$S/$w" && cp -r "$w" "$S/$w"; done
  for w in .stage_enc/*/; do [ -e "$w/config.json" ] && cp -r "$w" $S/weights/; done  # encoders not (yet) in git
  if [ ! -e $FIDNET ] && [ -e $S/fid.part00 ] && [ -e $S/fid.part01 ]; then cat $S/fid.part00 $S/fid.part01 > $FIDNET; fi
  [ -e $FIDNET ] && { echo "$FID_SHA1  $FIDNET" | sha1sum -c - || rm -f $FIDNET; }
  ls -la $S $S/weights; nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv
}

# how many GPUs this machine has (1 where nvidia-smi lists none): the ablation's rows and the chain arms spread over them
gpus() { local n; n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); echo $(( n > 0 ? n : 1 )); }

# the training step a staged weights folder ($S/weights/NAME) reached: where a run continuing it starts
staged_step() { python3 -c "import json; print(json.load(open('$S/weights/$1/config.json'))['steps'])"; }

# run NAME CMD...: one logged step of the job, its outcome marked by $O/NAME.done or $O/NAME.failed
# (9>&-: the job's queue lock stays with the job, not with anything a step leaves running)
run() { local name=$1; shift; echo "== $(date +%T) $name"; ( "$@" ) > $O/$name.log 2>&1 9>&- && touch $O/$name.done || { touch $O/$name.failed; echo "   $name FAILED"; }; }

# the trainer's own step (as the recipes run it: DDPM with CUDA graphs, drift compiled) vs a naive eager bf16 step (#17),
# both presets; capped so the lease keeps time for the rest. Needs call 3's weights (the drift chain's encoder).
# BENCH_OBJECTIVES / BENCH_PRESETS / BENCH_DDPM_BATCH narrow it, e.g. the row #17 still lacks (drift base; DDPM base
# at 1,024 with graphs ran in block 7's lease; ~2 min): BENCH_OBJECTIVES=drift BENCH_PRESETS=base bash scripts/gpu_lease.sh start bench
# BENCH_DRIFT_VARIANTS adds e.g. `graphs` (reduce-overhead: the compiled drift step replayed as CUDA graphs, never
# measured; the compiled step kept the GPU busy 89-90% of each step: benchmarks/profiles/drift_small_1280_compiled.txt).
# A cold compiled drift row spends ~3.5 min in its first step (213 s in block 8's lease, where a flat 240 s cap killed
# the second of four rows), so the cap is 5 min per drift row: ask for the rows a lease has time for, e.g.
# BENCH_OBJECTIVES=drift BENCH_PRESETS=base BENCH_DRIFT_VARIANTS=compiled (~4 min).
BENCH_OBJECTIVES=${BENCH_OBJECTIVES:-ddpm drift} BENCH_PRESETS=${BENCH_PRESETS:-small base} BENCH_DDPM_BATCH=${BENCH_DDPM_BATCH:-256 1024}
BENCH_DRIFT_VARIANTS=${BENCH_DRIFT_VARIANTS:-baseline compiled}
bench() {
  [[ " $BENCH_OBJECTIVES " == *" ddpm "* ]] && run bench_ddpm timeout 360 python3 -m driftin.bench train --objectives ddpm \
      --presets $BENCH_PRESETS --batch $BENCH_DDPM_BATCH \
      --variants baseline graphs --steps 15 --warmup 3 --data cifar10 --out $O/train_ddpm_h200.json --md $O/train_ddpm_h200.md
  local drift_rows=$(( $(wc -w <<< "$BENCH_PRESETS") * $(wc -w <<< "$BENCH_DRIFT_VARIANTS") ))
  [[ " $BENCH_OBJECTIVES " == *" drift "* ]] && run bench_drift timeout $((300 * (drift_rows > 0 ? drift_rows : 1))) \
      python3 -m driftin.bench train --objectives drift \
      --presets $BENCH_PRESETS --batch 1280 \
      --variants $BENCH_DRIFT_VARIANTS --steps 10 --warmup 3 --data cifar10 --out $O/train_drift_h200.json --md $O/train_drift_h200.md
}

# where a drift step's time goes (#17): device-busy vs wall time per step, op tables and the copies by shape (the
# bench's --profile). Forcing inductor's layout optimisation took the copies from 15% to 9% of the drift step's device
# time (+5.7% img/s; DDPM with graphs +9.4%; benchmarks/train_{drift,ddpm}_layout_*_h200.*): both recipes force it.
# What was left in the drift profile (benchmarks/profiles/layout/): ~19% of device time in small eager kernels (mul,
# sub, sum, cat, div, bmm: ~560 a step), most of them the fp32 field loss, which ran eager. This phase measures the
# recipe's drift step (at batch 1,280) with and without compiling the field too (--compile-field; compile_field).
# Measured 2026-12-01 (block 6's lease): 8,882 -> 10,969 img/s (+23.5%), so the drift recipe compiles its field since
# (benchmarks/train_drift_field_{false,true}_h200.*). ~5 min alone (two drift compiles); needs call 3's tree.
profile() {
  local f
  for f in false true; do
    run profile_drift_field_$f python3 -m driftin.bench train --data cifar10 --profile $O/profile --objectives drift \
        --presets small --batch 1280 --variants compiled --steps 10 --warmup 3 --compile-field $f \
        --out $O/train_drift_field_${f}_h200.json --md $O/train_drift_field_${f}_h200.md
  done
}

# a stronger drift encoder (#19): ENC_RECIPE (its epochs, or ENC_EPOCHS). 60 epochs: GroupNorm resnet 87.8%, BatchNorm
# 90.3% (benchmarks/encoder_resnet*_h200.json; the BatchNorm one ships since block 4). For the >= 94% target:
# ENC_RECIPE=training/encoder_resnet_bn_cutout_cifar10.json (200 epochs + Cutout 16; ~5 min by the 60-epoch timing),
# landing in $O/encoder-resnet-bn-cutout-cifar10. ENC_FLAGS: more `python -m driftin.classifier train` flags.
ENC_EPOCHS=${ENC_EPOCHS:-} ENC_RECIPE=${ENC_RECIPE:-training/encoder_resnet_bn_cutout_cifar10.json} ENC_FLAGS=${ENC_FLAGS:-}
encoder() {
  local name=$(basename $ENC_RECIPE .json)
  run $name python3 -m driftin.classifier train --config $ENC_RECIPE ${ENC_EPOCHS:+--epochs $ENC_EPOCHS} --device cuda \
      --out $O/${name//_/-} $ENC_FLAGS
}

# DDPM's sampler settings (#21: DDIM-50 <= 6): DDIM-50 at each SWEEP_G guidance x SWEEP_SPACING spacing x
# SWEEP_INTERVALS guidance interval ("all": every step; LO-HI: only steps with LO <= t <= HI, generate()'s
# guidance_interval), FID-10k each, added to the committed benchmarks/eval_ddpm_sweep.json (copied to
# $O/eval_ddpm_sweep.json), then FID-50k of the best 10k setting in the file unless it has one already (~1.5 min per
# 10k run, 2.5 for the 50k). Block 7's lease swept guidance 1 / 1.5 x uniform / quadratic: 1.5 uniform won (FID-10k
# 8.13, FID-50k 6.19, was 8.53 at guidance 1); block 8's swept 1.75 / 2 / 2.5 at every step: FID-10k 8.33 / 9.10 /
# 11.55, all worse. So the defaults try guidance in a limited interval (Kynkaanniemi et al. 2024: EDM2's sigma range
# 0.28-5.42 is t 82-578 in this schedule; 80-580 rounds it out to 26 of DDIM-50's steps), where stronger scales cost
# less diversity. Block 9's swept 1.75 / 2 / 2.5 at t 80-580: FID-10k 7.87 / 7.77 / 8.32, and guidance 2 there scored
# FID-50k 5.82 (the DDPM's documented sampler since). The defaults now move the interval's ends around that scale.
# Land it with
# `python scripts/land_sweep.py <collected>/eval_ddpm_sweep.json` (benchmarks/, the DDPM's eval.json and card).
SWEEP_G=${SWEEP_G:-2 2.25} SWEEP_SPACING=${SWEEP_SPACING:-uniform} SWEEP_INTERVALS=${SWEEP_INTERVALS:-80-800 150-580}
interval_flags() { local iv=${1:-all}; [ "$iv" = all ] || echo "--guidance-interval ${iv%-*} ${iv#*-}"; }
sweep() {
  local g sp iv out=$O/eval_ddpm_sweep.json best
  [ -e $out ] || cp benchmarks/eval_ddpm_sweep.json $out 2>/dev/null
  for sp in $SWEEP_SPACING; do for iv in $SWEEP_INTERVALS; do for g in $SWEEP_G; do
    run sweep_${sp}_g${g}_$iv $EVAL --weights $S/weights/ddpm-cifar10 --method ddim --steps 50 --guidance $g --spacing $sp \
        $(interval_flags "$iv") --n 10000 --out $out
  done; done; done
  # the best 10k setting of these weights (entries of other training steps are history), empty if it has its 50k:
  # "guidance spacing interval" with the interval as LO-HI or all
  best=$(w=$(staged_step ddpm-cifar10) && python3 -c "import json
d = [e for e in json.load(open('$out')).values() if e.get('train_steps') == $w]
s = lambda e: (e['guidance'], e.get('spacing', 'uniform'), '-'.join(map(str, e.get('guidance_interval') or [])) or 'all')
b = s(min((e for e in d if e['n'] == 10000), key=lambda e: e['fid']))
print(*b) if all(s(e) != b for e in d if e['n'] == 50000) else None") || echo "   sweep: no best picked (see above)"
  [ -n "$best" ] && set -- $best && run sweep_best $EVAL --weights $S/weights/ddpm-cifar10 --method ddim --steps 50 \
      --guidance $1 --spacing $2 $(interval_flags "${3:-all}") --out $out
}

# the paper's kind of encoder (#19): the GroupNorm resnet pretrained as an MAE, then fine-tuned for classification
# (training/encoder_resnet_mae{,_ft}_cifar10.json, their 200 + 100 epochs, never timed; MAE_EPOCHS / MAE_FT_EPOCHS
# shorten them to leave a lease time for a drift arm on it); the fine-tuned one lands in $O/encoder-resnet-mae-ft-cifar10
MAE_EPOCHS=${MAE_EPOCHS:-} MAE_FT_EPOCHS=${MAE_FT_EPOCHS:-}
mae() {
  run mae_pretrain python3 -m driftin.classifier pretrain-mae --config training/encoder_resnet_mae_cifar10.json --device cuda \
      ${MAE_EPOCHS:+--epochs $MAE_EPOCHS} --out $O/encoder-resnet-mae-cifar10
  [ -e $O/mae_pretrain.done ] && run mae_finetune python3 -m driftin.classifier train --config training/encoder_resnet_mae_ft_cifar10.json --device cuda \
      ${MAE_FT_EPOCHS:+--epochs $MAE_FT_EPOCHS} --init $O/encoder-resnet-mae-cifar10 --out $O/encoder-resnet-mae-ft-cifar10
}

# the evalnet and Inception statistics of the 50k reference images, computed once into $DRIFTIN_CACHE (a fresh machine
# has none): run beside the trainings (`chains+refs`), while they compile, so the curves and evals after them only read
# the cache instead of each computing both at once
refs() {
  run refs $EVAL --weights $S/weights/drift-cifar10 --n 2500 --no-fast --out $O/refs_warmup.json
}

calibrate() {
  run calibrate python3 -m driftin.eval.calibrate --out $O/fd_calibration.json --device cuda --inception $FIDNET \
      --evalnet $S/weights/evalnet-cifar10
}

evals() {
  for g in 1 1.5 2; do run eval_drift_g$g $EVAL --weights $S/weights/drift-cifar10 --guidance $g --out $O/eval_drift.json; done
  for s in 50 25 10; do run eval_ddim$s $EVAL --weights $S/weights/ddpm-cifar10 --method ddim --steps $s --out $O/eval_ddpm.json; done
}

# the rows of training/ablation/rows.txt (the drift recipe + each row's flags) one after another at one budget: seed 0,
# ABL_STEPS steps with ABL_WARMUP warmup (ABL_MAX_MIN caps a row's minutes), each then exported and scored by FID-10k.
# ABL_ROWS="01_recipe 07_group128" runs only those rows (a lease fits a few). From scratch, or with ABL_FROM=drift-cifar10
# about ABL_STEPS more steps from the staged shipped weights, to the next multiple of the drift chain's snapshot
# interval, with the chain's flags (CHAIN_DRIFT_FLAGS, not ABL_WARMUP) before the row's: --init-from continues the
# step count and data order, so the chain's snapshot at that step is the 01_recipe row of the same lease for free;
# rows that change the architecture (06_styles) cannot start from it. One at a time per GPU: run together on one
# H200 (16 cores), eight compiles competed for the CPU and no row got past 200 steps (benchmarks/ablation_drift.md); in
# sequence, repeated graphs come from the inductor cache. A machine of several GPUs (nvidia-h200-x8: 128 cores) runs
# row i on GPU i mod #GPUs, each GPU its rows in sequence (nine rows: two rounds on eight GPUs); `start refs ablation`
# there, so the reference statistics are computed once before the rows' evals read them (the cache is atomic anyway).
# Output: $O/ablation/<row> from scratch, $O/ablation_from/<row> continued (a folder holding a checkpoint would be
# resumed, so the two modes never share one). With ABL_FROM and no ABL_ROWS, 01_recipe is skipped (the chain is it).
# ABL_GPU_FIRST=K: the rows use GPUs K.. only (e.g. 3 beside `chains+trial`, whose arms take GPUs 0-2: arm_gpu); where
# the machine has no GPU K, all of them.
ABL_STEPS=${ABL_STEPS:-2500} ABL_WARMUP=${ABL_WARMUP:-200} ABL_MAX_MIN=${ABL_MAX_MIN:-8} ABL_ROWS=${ABL_ROWS:-} ABL_FROM=${ABL_FROM:-}
ABL_GPU_FIRST=${ABL_GPU_FIRST:-0}
ablation() {
  local row flags start=(--warmup $ABL_WARMUP) steps=$ABL_STEPS out=$O/ablation skip=""
  if [ -n "$ABL_FROM" ]; then
    start=(--init-from $S/weights/$ABL_FROM $CHAIN_DRIFT_FLAGS) out=$O/ablation_from
    [ -z "$ABL_ROWS" ] && skip=01_recipe
    steps=$(staged_step $ABL_FROM)
    steps=$(( (steps + ABL_STEPS + DRIFT_SNAP - 1) / DRIFT_SNAP * DRIFT_SNAP ))
  fi
  local rows=() row_args=() ngpu=$(gpus) first=$ABL_GPU_FIRST gpu i
  (( first < ngpu )) || first=0
  while read -r -u 3 row flags; do  # fd 3: the runs must not read the rows file from stdin
    [[ -z "$row" || "$row" == \#* || "$row" == "$skip" ]] && continue
    [[ -n "$ABL_ROWS" && " $ABL_ROWS " != *" $row "* ]] && continue
    rows+=("$row") row_args+=("$flags")
  done 3< training/ablation/rows.txt
  for ((gpu = first; gpu < ngpu; gpu++)); do
    ( for ((i = gpu - first; i < ${#rows[@]}; i += ngpu - first)); do
        ablation_row "${rows[i]}" $gpu "${row_args[i]}"; done ) &
  done
  wait
}
ablation_row() {  # ROW GPU FLAGS: one row trained, exported and scored on that GPU (ablation's start, steps and out)
  local row=$1 on=(env CUDA_VISIBLE_DEVICES=$2) flags=()
  read -ra flags <<< "$3"  # read -a: split on spaces, never globbed
  run abl_$row "${on[@]}" python3 -m driftin.train --config training/drift_cifar10.json "${start[@]}" "${flags[@]}" --seed 0 \
      --steps $steps --sample-every 0 --ckpt-every $ABL_STEPS --log-every 50 \
      --max-minutes $ABL_MAX_MIN --out $out/$row
  run abl_${row}_export "${on[@]}" python3 -m driftin.train export $out/$row $out/$row/ema
  run abl_${row}_eval "${on[@]}" $EVAL --weights $out/$row/ema --n 10000 --out $out/$row/eval.json
}

# one block of both chains (#21), the two models at once (each step leaves the GPU partly idle): continue each from
# the staged weights (the committed export of the last block) for CHAIN_MIN minutes with EMA snapshots, export,
# FID-10k over the snapshots (the curve, the starting weights as its first point), FID-50k of the export.
# Then: `collect best` (each arm's export with the lowest FID-50k; `status` lists them all) and land it with
# scripts/land_chain.py, with --export MODEL=export_emaD where an extra EMA won (weights,
# curve, log, grid, card, assets; it prints the block's command for training/chains/).
# The defaults are the flags of the last block (training/chains/*.sh): a block changing them says so in its chain script
# (set to "" for none: no colon in the expansion, so an empty value is kept).
CHAIN_MIN=${CHAIN_MIN:-10}
CHAIN_DRIFT_FLAGS=${CHAIN_DRIFT_FLAGS---warmup 100}  # the recipe names its encoder folder: found in $S/weights
CHAIN_MODELS=${CHAIN_MODELS:-drift ddpm}  # e.g. CHAIN_MODELS=drift: the drift block alone gets the whole GPU
CHAIN_DDPM_FLAGS=${CHAIN_DDPM_FLAGS---warmup 200 --ema-decay 0.9999 --lr 1e-4}
# CHAIN_EMA_EXTRA="0.9995 0.9998": more EMA decays each chain keeps beside its recipe's (TrainConfig.ema_extra), each
# exported to $O/chain_ARM/export_emaD and scored by FID-50k with the first eval flags: the averaging length is chosen
# after the block, against the main export's eval.json (`collect best` fetches the winner's shards; land_chain --export MODEL=export_emaD)
CHAIN_EMA_EXTRA=${CHAIN_EMA_EXTRA:-}
# CHAIN_DECAY=N: the block runs N steps from the staged weights' step S0 with the learning rate falling linearly to 0
# over them (`--lr-decay [S0,S0+N]`, TrainConfig.lr_decay; the 100-step warmup's ramp caps its start), every arm of the
# job (each from its own S0: with CHAIN_MODELS="drift ddpm" the DDPM too; a trial arm too). CHAIN_MIN still caps the
# block, so choose an N the minutes can run: block 10, drift alone, ran 13,700 steps in 17 min; arms sharing the GPU run
# about half as many. Unset: the constant rate until CHAIN_MIN.
CHAIN_DECAY=${CHAIN_DECAY:-}
# the GPU of each chain arm: drift 0, ddpm 1, drift_trial 2, modulo the GPUs (one GPU: all share it, as block 8's
# arms did; several: each arm alone on its own, at full speed and equal conditions)
arm_gpu() { local slot; case $1 in drift) slot=0 ;; ddpm) slot=1 ;; *) slot=2 ;; esac; echo $((slot % $(gpus))); }
chain_one() {  # ARM MODEL RECIPE SNAPSHOT_EVERY EVAL_FLAGS [extra train flags...]; output in $O/chain_ARM
  local a=$1 m=$2 recipe=$3 snap=$4 evalflags=$5 d f s0 steps=(--steps 10000000) on; shift 5
  on=(env CUDA_VISIBLE_DEVICES=$(arm_gpu $a))
  if [ -n "$CHAIN_DECAY" ]; then
    s0=$(staged_step $m-cifar10) \
      || { echo "   chain_$a FAILED: no step count in $S/weights/$m-cifar10/config.json"; touch $O/chain_$a.failed; return 1; }
    steps=(--steps $((s0 + CHAIN_DECAY)) --lr-decay "[$s0,$((s0 + CHAIN_DECAY))]")
  fi
  run chain_$a "${on[@]}" DRIFTIN_COMPILE_ARTIFACTS=$S/compile/$a.bin \
      python3 -m driftin.train --config $recipe --init-from $S/weights/$m-cifar10 "${steps[@]}" \
      --snapshot-every $snap --max-minutes $CHAIN_MIN --sample-every 0 --out $O/chain_$a "$@" \
      ${CHAIN_EMA_EXTRA:+--ema-extra "[$(echo $CHAIN_EMA_EXTRA | tr ' ' ,)]"}
  run export_$a "${on[@]}" python3 -m driftin.train export $O/chain_$a $O/chain_$a/export
  cp $S/weights/$m-cifar10/fid_curve.json $O/chain_$a/ 2>/dev/null  # the committed curve: the new points are merged in
  run curve_$a "${on[@]}" python3 -m driftin.eval.curve $S/weights/$m-cifar10 $O/chain_$a/snapshots --label $m-cifar10 --n 10000 --batch 2500 --device cuda \
      --inception $FIDNET --evalnet $S/weights/evalnet-cifar10 --out $O/chain_$a/fid_curve.json --plot $O/chain_$a/fid_curve.png
  for f in $evalflags; do run eval_$a${f//[^0-9.]/} "${on[@]}" $EVAL --weights $O/chain_$a/export ${f//,/ } --out $O/chain_$a/export/eval.json; done
  f=${evalflags%% *}  # the extra EMAs last (a lease cut short loses these, not the main numbers); an arm's own decay
  for d in $CHAIN_EMA_EXTRA; do  # is not among its extras (TrainConfig drops it), so its export is refused and skipped
    run export_${a}_ema$d "${on[@]}" python3 -m driftin.train export $O/chain_$a $O/chain_$a/export_ema$d --ema-decay $d
    [ -e $O/export_${a}_ema$d.done ] && run eval_${a}_ema$d "${on[@]}" $EVAL --weights $O/chain_$a/export_ema$d ${f//,/ } --out $O/chain_$a/export_ema$d/eval.json
  done
}
DRIFT_SNAP=${DRIFT_SNAP:-1000}  # the drift chain's snapshot (FID-10k curve point) interval in steps
DRIFT_ARM="drift training/drift_cifar10.json $DRIFT_SNAP"  # model, recipe, snapshot interval: one for both drift arms
# the drift export's FID-50k evaluations: guidance 1.5 scored worse than 1 in blocks 4-6 (20.74 / 19.31 / 17.62 vs
# 20.13 / 18.62 / 16.53; benchmarks/eval_drift_block{4,5,6}.json), and 1.25 in block 7 (15.08 vs 14.60) and on block 8's
# encoder in block 9 (10.22 vs 9.74), so only guidance 1 by default (CHAIN_DRIFT_EVALS="--guidance,1 --guidance,1.25"
# scores both, ~1 min more)
CHAIN_DRIFT_EVALS=${CHAIN_DRIFT_EVALS:---guidance,1}
chains() {
  [[ " $CHAIN_MODELS " == *" drift "* ]] && chain_one drift $DRIFT_ARM "$CHAIN_DRIFT_EVALS" $CHAIN_DRIFT_FLAGS &
  [[ " $CHAIN_MODELS " == *" ddpm "* ]] && chain_one ddpm ddpm training/ddpm_cifar10.json 4000 "--method,ddim,--steps,50" $CHAIN_DDPM_FLAGS &
  wait
}
# a second arm of the drift block from the same start weights with other flags (`chains+trial`: both arms share the GPU
# under equal conditions, same minutes; on a machine of three or more GPUs each arm has its own, arm_gpu): the arm
# with the lower FID-50k is the one to ship, the other is the ablation row
# (the trial arm is scored at guidance 1 only, to keep the lease's evaluation time; score CHAIN_DRIFT_EVALS' other
# guidance if it is shipped).
# The trial's flags come after CHAIN_DRIFT_FLAGS, so a flag given in both takes the trial's value (argparse: the last
# one wins; the run's train_args record both). E.g. CHAIN_TRIAL_FLAGS="--compile-force-layout true", or an encoder
# trained earlier in the same job: `start encoder chains+trial` with CHAIN_TRIAL_FLAGS="--drift-encoder-weights
# /root/res/encoder-resnet-bn-cifar10" (block 4 chose the BatchNorm ResNet-18 this way: benchmarks/ablation_block4.md).
# CHAIN_TRIAL_ROW=NAME puts an ablation row's flags (training/ablation/rows.txt, #19) before CHAIN_TRIAL_FLAGS: each
# block can then resolve one row against the recipe at equal minutes from the same weights (rows that change the
# architecture, 06_styles, cannot continue the weights). scripts/ablation_table.py --rows chain_drift chain_drift_trial
# --at-step S compares the two arms at a common snapshot step too.
CHAIN_TRIAL_FLAGS=${CHAIN_TRIAL_FLAGS:-} CHAIN_TRIAL_ROW=${CHAIN_TRIAL_ROW:-}
row_flags() { awk -v r="$1" '$1 == r {$1 = ""; print substr($0, 2)}' training/ablation/rows.txt; }
trial() {
  local row=()
  [ -n "$CHAIN_TRIAL_ROW" ] && read -ra row <<< "$(row_flags $CHAIN_TRIAL_ROW)"  # read -a: split, never globbed
  chain_one drift_trial $DRIFT_ARM "--guidance,1" $CHAIN_DRIFT_FLAGS "${row[@]}" $CHAIN_TRIAL_FLAGS
}

# every chain export's FID-50k, best first per arm, and the `collect` argument that brings the best one back (`exports
# best`: only the best exports' shards, what `collect best` fetches): read this rather than the eval.json files in glob
# order (block 11's lease collected the EMA 0.999 export, 9.58, for the EMA 0.9995 one, 9.24, by reading two bare "fid"
# lines in the wrong order, and lost the better weights with the machine)
exports() {
  python3 - "$O" "${1:-}" <<'PY'
import json, pathlib, sys
out, best_only = pathlib.Path(sys.argv[1]), sys.argv[2] == "best"
for arm in sorted(p for p in out.glob("chain_*") if p.is_dir()):  # not chain_ARM.log / .done
    rows = []
    for ev in arm.glob("export*/eval.json"):
        try:  # one unreadable file (an eval cut short) must not hide the other exports
            entries = json.loads(ev.read_text()).items()
        except (OSError, ValueError) as e:
            print(f"exports: skipped {ev.relative_to(out)}: {e}", file=sys.stderr)
            continue
        for key, entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("fid"), (int, float)):
                rows.append((entry["fid"], ev.parent, key, entry.get("n", "?")))
            else:
                print(f"exports: skipped {ev.relative_to(out)} [{key}]: no FID", file=sys.stderr)
    if not rows:
        print(f"exports: {arm.relative_to(out)} has no scored export", file=sys.stderr)
        continue
    rows.sort(key=lambda r: r[0])
    shards = " ".join(str(f.relative_to(out)) for f in sorted(rows[0][1].glob("*.safetensors")))
    if best_only:
        print(shards, end=" ")
        continue
    for i, (fid, folder, key, n) in enumerate(rows):
        print(f"{folder.relative_to(out)}  {key}  FID-{n}: {fid:.2f}{'  <- best' if i == 0 else ''}")
    print(f'  collect "{shards}"   (or: collect best)')
PY
}

[[ "${BASH_SOURCE[0]}" != "$0" ]] && return 0  # sourced (tests/test_gpu_lease.py): the functions only

case ${1:-} in
  stage) stage; shift; [ "${1:-}" = start ] || exit 0 ;;&
  start|stage)
    [ "${1:-}" = start ] && shift
    for phase in $(echo "$@" | tr + ' '); do  # a misspelt phase fails now, not when the job reaches it
      case $phase in profile|encoder|mae|refs|calibrate|evals|sweep|bench|ablation|chains|trial) ;; *) echo "unknown phase $phase" >&2; exit 2 ;; esac
    done
    for m in $CHAIN_MODELS; do [[ $m == drift || $m == ddpm ]] || { echo "CHAIN_MODELS: unknown model $m (drift, ddpm)" >&2; exit 2; }; done
    [[ -z $CHAIN_DECAY || $CHAIN_DECAY =~ ^[1-9][0-9]*$ ]] || { echo "CHAIN_DECAY: $CHAIN_DECAY is not a step count" >&2; exit 2; }
    [[ $ABL_GPU_FIRST =~ ^[0-9]+$ ]] || { echo "ABL_GPU_FIRST: $ABL_GPU_FIRST is not a GPU index" >&2; exit 2; }
    for r in $ABL_ROWS $CHAIN_TRIAL_ROW; do grep -q "^$r\b" training/ablation/rows.txt || { echo "ABL_ROWS / CHAIN_TRIAL_ROW: no row $r in training/ablation/rows.txt" >&2; exit 2; }; done
    mkdir -p $C $O && cp -a driftin training scripts benchmarks pyproject.toml $C/ 2>/dev/null
    # a plain command with & (no `cd && ...` list): the detached job must not hold this call's stdout open
    cd $C; setsid nohup bash scripts/gpu_lease.sh job "$@" >> $O/job.log 2>&1 < /dev/null &
    sleep 5; cat $O/job.log ;;
  job) shift
    exec 9> $O/.job.lock; echo "== $(date +%T) job $* queued"; flock 9  # one job at a time, in the order started
    python3 -c "from driftin.data import load_cifar10_tar as l; l('train'); l('test')"
    for phase in "$@"; do for p in ${phase//+/ }; do $p & done; wait; done
    echo "== $(date +%T) job $* done" ;;
  status)  # status [seconds]: wait up to that long for the queued jobs to finish, then show where they are
    for ((i = 0; i < ${2:-0}; i += 15)); do flock -n $O/.job.lock true && break; sleep 15; done
    cat $O/job.log; tail -n 3 $O/*.log 2>/dev/null | tail -n 60; exports; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv ;;
  collect)  # collect ["FILE..." | best]: results without weights, plus the named files under $O (split in 15 MiB parts:
    #           a file over 16 MiB does not come back; here: cat FILE.part* > FILE); `best`: each chain arm's export
    #           with the lowest FID-50k (`exports`)
    tar czf $OUT/results.tgz -C $O --exclude='*.safetensors' --exclude='*.pt' .
    files=${2:-}; [ "$files" = best ] && { files=$(exports best); echo "collect: ${files:-no scored export}"; }
    for f in $files; do n=$(echo "$f" | tr / _); split -b 15M -d "$O/$f" "$OUT/$n.part"; done; ls -la $OUT ;;
  cache)  # the chains' compile artifacts of this lease, for the next one (see the top), in 15 MiB parts (a file comes
    #        back only up to 16 MiB)
    for f in $S/compile/*.bin; do [ -e "$f" ] && pack < "$f" | split -b 15M -d - "$OUT/$(basename "$f").xz.part"; done
    ls -la $S/compile $OUT ;;
  *) echo "usage: $0 stage [start PHASE...] | start PHASE... | status [wait_s] | collect [\"FILE...\" | best] | cache" >&2; exit 2 ;;
esac
