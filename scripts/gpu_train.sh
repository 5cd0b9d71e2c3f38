#!/usr/bin/env bash
# GPU launcher for the shipped CIFAR-10 weights. Each target runs detached (setsid nohup) so a device call
# can return while it trains; poll runs/ship/*.log and runs/ship/*.done. Weights go straight into weights/
# (the folders are moved aside and listed in .git/info/exclude for the run, so the working tree fits the
# device's 64 MiB and the device keeps them between calls); evaluations go to runs/ship/eval_<model>.json,
# to be copied to weights/<model>/eval.json.
#   DRIFTIN_GIT_COMMIT=$(git rev-parse HEAD) bash scripts/gpu_train.sh encoder evalnet drift eval-drift calibrate
#   DRIFTIN_GIT_COMMIT=$(git rev-parse HEAD) bash scripts/gpu_train.sh eval-ddpm
#   bash scripts/gpu_train.sh ddpm      # the DDPM generator itself (60k steps, several leases: it resumes)
# Dependencies are waited for through .done files: drift needs the encoder, every eval needs the evalnet.
# Set DRIFTIN_GIT_COMMIT to this checkout's HEAD as a literal: the device's .git can be older than the
# tree it receives. On the lent GPU machine every call re-syncs git-tracked paths from the local tree, so
# files written under weights/ there (even in folders moved aside locally and listed in .git/info/exclude)
# are gone at the next call: fetch a target's weights/ output through $OUT in the call where it finishes,
# or re-export it into runs/ (kept between calls) from runs/<run>/checkpoint.pt, as the 2026-11-25 ship did.
set -u
export PYTHONUNBUFFERED=1 DRIFTIN_DATA=${DRIFTIN_DATA:-data/cifar10}
R=runs/ship; mkdir -p $R
python3 -c "from driftin.data import load_cifar10_tar as l; l('train'); l('test')"  # decode once, cache

# wait for the .done markers of the named targets that this call also runs (others are taken as present
# in the working tree), then run the command; mark this target done (or failed) when it ends
REQ=" $* "
step() {
  local name=$1 needs="" d; shift
  for d in $1; do [[ $REQ == *" $d "* ]] && needs+=" $d"; done; shift
  setsid nohup bash -c "
    for d in $needs; do while [ ! -e $R/\$d.done ]; do [ -e $R/\$d.failed ] && exit 1; sleep 5; done; done
    ( $* ) > $R/$name.log 2>&1 && touch $R/$name.done || touch $R/$name.failed" > /dev/null 2>&1 &
}

EVAL="python3 -m driftin.eval --batch 2500 --device cuda"
for t in "$@"; do
  case $t in
    encoder) step encoder "" python3 -m driftin.classifier train --arch encoder --out weights/encoder-cifar10 --compile ;;
    evalnet) step evalnet "" python3 -m driftin.classifier train --arch evalnet --out weights/evalnet-cifar10 --compile ;;
    drift) step drift encoder "python3 -m driftin.train --config training/drift_cifar10.json \
             && python3 -m driftin.train export runs/drift-cifar10 weights/drift-cifar10" ;;
    ddpm) step ddpm "" "python3 -m driftin.train --config training/ddpm_cifar10.json \
             && python3 -m driftin.train export runs/ddpm-cifar10 weights/ddpm-cifar10" ;;
    calibrate) step calibrate evalnet python3 -m driftin.eval.calibrate --out $R/fd_calibration.json --device cuda ;;
    eval-drift) step eval-drift "evalnet drift" "$EVAL --weights weights/drift-cifar10 --out $R/eval_drift.json \
                  && $EVAL --weights weights/drift-cifar10 --guidance 1.5 --out $R/eval_drift.json" ;;
    eval-ddpm) step eval-ddpm evalnet "for s in 10 25 50; do $EVAL --weights weights/ddpm-cifar10 --method ddim --steps \$s --out $R/eval_ddpm.json || exit 1; done" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
sleep 2
