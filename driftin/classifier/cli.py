"""python -m driftin.classifier {train, pretrain-mae, card}: the classifiers' command line."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .card import write_card
from .nets import ARCHS, NORMS
from .training import pretrain_mae, train_classifier

DESCRIPTION = "Two small CIFAR-10 classifiers, one training loop, safetensors weights."


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m driftin.classifier", description=DESCRIPTION)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train and save a classifier")
    m = sub.add_parser("pretrain-mae", help="MAE-pretrain a GroupNorm encoder (then fine-tune: train --init FOLDER)")
    for q in (t, m):
        q.add_argument("--config", help="JSON recipe with any of these options (flags override it), "
                                         "e.g. training/encoder_resnet_cifar10.json")
        q.add_argument("--arch", choices=sorted(ARCHS))
        q.add_argument("--out", help="weights folder, e.g. weights/evalnet-cifar10")
        q.add_argument("--epochs", type=int)
        q.add_argument("--batch", type=int)
        q.add_argument("--lr", type=float)
        q.add_argument("--seed", type=int)
        q.add_argument("--device")
        q.add_argument("--widths", type=lambda s: [int(v) for v in s.split(",")], help="override, e.g. 32,64,128")
        q.add_argument("--blocks", type=lambda s: [int(v) for v in s.split(",")], help="encoder/resnet: blocks per stage, e.g. 2,2,2,2")
        q.add_argument("--norm", choices=NORMS, help="encoder/resnet: GroupNorm (default) or BatchNorm (frozen encoder: eval mode)")
        q.add_argument("--weight-decay", dest="weight_decay", type=float)
        q.add_argument("--compile", action="store_true", help="torch.compile the model (faster epochs, ~1 min compile)")
    t.add_argument("--label-smoothing", dest="label_smoothing", type=float)
    t.add_argument("--init", help="start from this saved classifier (same architecture), e.g. an MAE-pretrained encoder")
    t.add_argument("--cutout-size", dest="cutout_size", type=int, help="Cutout square side after crop+flip (e.g. 16; 0 = off)")
    m.add_argument("--mask-ratio", dest="mask_ratio", type=float)
    c = sub.add_parser("card", help="rewrite a saved classifier's README.md (model card) from its config.json")
    c.add_argument("folder")
    a = ap.parse_args(argv)
    if a.cmd == "card":
        print(write_card(a.folder))
        return
    command = "python -m driftin.classifier " + " ".join(shlex.quote(v) for v in (argv if argv is not None else sys.argv[1:]))
    opts = train_options(a)
    fn = pretrain_mae if a.cmd == "pretrain-mae" else train_classifier
    fn(opts.pop("arch"), opts.pop("out"), **opts, command=command)


def train_options(a: argparse.Namespace) -> dict:
    """train_classifier's / pretrain_mae's arguments from the recipe file (if any) overridden by the flags given."""
    keys = ("arch", "out", "epochs", "batch", "lr", "seed", "device", "widths", "blocks", "norm", "weight_decay", "compile")
    keys += ("mask_ratio",) if a.cmd == "pretrain-mae" else ("label_smoothing", "init", "cutout_size")
    recipe = json.loads(Path(a.config).read_text()) if a.config else {}
    unknown = sorted(set(recipe) - set(keys))
    if unknown:
        raise ValueError(f"{a.config}: unknown keys {unknown}; allowed: {list(keys)}")
    o = {**recipe, **{k: getattr(a, k) for k in keys if getattr(a, k) not in (None, False)}}
    if not o.get("arch") or not o.get("out"):
        raise ValueError("need --arch and --out (or a --config that sets them)")
    arch_kwargs = {k: o.pop(k) for k in ("widths", "blocks", "norm") if o.get(k)}
    for k in ("blocks", "norm"):
        if k in arch_kwargs and o["arch"] == "evalnet":
            raise ValueError(f"evalnet has no {k} option")
    return {**o, "arch_kwargs": arch_kwargs or None}
