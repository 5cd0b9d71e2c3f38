#!/usr/bin/env bash
# Lay out the working tree for one staging call of scripts/gpu_lease.sh: a call carries at most 64 MiB (tracked files
# present + the carried ignored folders), so weight folders that call does not need wait in ../aside (outside the
# repository) and come back with `back`. Prints the call's carry list and the size that will travel.
#
#   bash scripts/lease_tree.sh a      # FID part 1 + CIFAR-10 train      -> carry [".stage_a","data/cifar10/train.tar.gz"]
#   bash scripts/lease_tree.sh b      # FID part 2 + test split + encoder + evalnet -> carry [".stage_b","data/cifar10/test.tar.gz"] (+ ".stage_c")
#   bash scripts/lease_tree.sh c      # the two generators + drift encoder -> carry [] (+ ".stage_enc", ".stage_c" if they fit)
#   bash scripts/lease_tree.sh d      # the weight folders calls a-c leave out, an encoder not (yet) in git for a trial arm
#                                     # (.stage_enc/<name>/, 22 MB) and the compile artifacts -> carry [".stage_enc",".stage_c"]
#                                     # (call b may carry .stage_c too, when it fits)
#   bash scripts/lease_tree.sh back   # every weight folder back in weights/ (do this before committing)
set -eu
cd "$(dirname "$0")/.."
ASIDE=../aside LIMIT=$((64 * 1024 * 1024))
# the weight folders each call keeps (tests/test_shipped.py reads these and checks every call fits)
A_KEEP="" B_KEEP="encoder-cifar10 evalnet-cifar10" C_KEEP="drift-cifar10 ddpm-cifar10 encoder-resnet-bn-cutout-cifar10"
mkdir -p $ASIDE
back() { for d in $ASIDE/*/; do [ -d "$d" ] && mv "$d" weights/; done; return 0; }
keep() {  # keep only these weight folders in the tree
  back
  for d in weights/*/; do n=$(basename "$d"); [[ " $* " == *" $n "* ]] || mv "$d" $ASIDE/; done
}
size() {  # tracked files present + untracked ones git does not ignore: what travels besides `carry`
  git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1
}
others() {  # every weights folder that calls a-c do not keep
  back
  for d in weights/*/; do n=$(basename "$d"); [[ " $A_KEEP $B_KEEP $C_KEEP " == *" $n "* ]] || echo "$n"; done
}
carry() {  # carry FOLDER... (optional ones are added while they fit)
  local total=$(size) list="" f s
  for f in "$@"; do
    [ -e "$f" ] || continue
    s=$(du -sb "$f" | cut -f1)
    if (( total + s < LIMIT )); then total=$((total + s)); list="$list\"$f\","; else echo "left out $f ($s bytes): over the limit"; fi
  done
  echo "carry: [${list%,}]   travels $((total / 1024 / 1024)) MiB of 64"
}
case ${1:-} in
  a) keep $A_KEEP; carry .stage_a data/cifar10/train.tar.gz ;;
  b) keep $B_KEEP; carry .stage_b data/cifar10/test.tar.gz .stage_c ;;
  c) keep $C_KEEP; carry .stage_enc .stage_c ;;
  d) keep $(others); carry .stage_enc .stage_c ;;
  back) back; ls weights ;;
  *) echo "usage: $0 a|b|c|d|back" >&2; exit 2 ;;
esac
