"""Land one GPU lease's chain block into weights/: what `bash scripts/gpu_lease.sh collect "..."` brought back.

    python scripts/land_chain.py /work/.device/N                       # drift and ddpm, from their main arms
    python scripts/land_chain.py /work/.device/N --arm drift=drift_trial --no-assets
    python scripts/land_chain.py /work/.device/N --models drift --export drift=export_ema0.9998   # an extra EMA won

For each model: rebuilds the exported shards from their 15 MiB parts (checked by opening them), copies the export
(shards, index, config.json with device weight paths made local, eval.json), the merged FID curve and the block's log
(appended to train_log.jsonl) into weights/<model>-cifar10/, samples a new grid, rewrites the card, and prints the block's command for
training/chains/<model>-cifar10.sh (the run's own arguments, device paths made local, `--steps` the step the
block stopped at instead of its minutes). Then the comparison grid, GIF
and app screenshot (unless --no-assets). The README tables and the chain script's comments stay hand-written: they
say what changed and why.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from driftin.hub import write_config  # noqa: E402
from driftin.modelcard import draw_samples  # noqa: E402
DEVICE_WEIGHTS = "/root/stage/weights/"
EXPORT_FILES = ("model.safetensors.index.json", "config.json", "eval.json")


def rebuild_shards(files_at: Path, arm: str, export: Path) -> list[Path]:
    """The export's shards, each the concatenation of its parts (collect names them chain_<arm>_<export>_<file>.partNN,
    <export> the folder's name: export, or export_emaD for an extra EMA)."""
    index = json.loads((export / "model.safetensors.index.json").read_text())
    shards = []
    for name in sorted(set(index["weight_map"].values())):
        parts = sorted(files_at.glob(f"chain_{arm}_{export.name}_{name}.part*"))
        if not parts:
            raise FileNotFoundError(f"no parts of {name} for arm {arm!r} in {files_at}: was it named in `collect`?")
        with open(export / name, "wb") as out:
            for p in parts:
                out.write(p.read_bytes())
        with safe_open(export / name, "pt") as f:  # a missing or truncated part fails here, not in the app
            missing = {k for k, v in index["weight_map"].items() if v == name} - set(f.keys())
        if missing:
            raise ValueError(f"{name} lacks {len(missing)} tensors of its index (e.g. {sorted(missing)[0]})")
        shards.append(export / name)
    return shards


def local_paths(value):
    """`value` (a config, a list, a string) with the device's weight folders named as a checkout has them
    (/root/stage/weights/X -> weights/X): a shipped config.json and its card must name files the repository holds."""
    if isinstance(value, str):
        return "weights/" + value[len(DEVICE_WEIGHTS):] if value.startswith(DEVICE_WEIGHTS) else value
    if isinstance(value, list):
        return [local_paths(v) for v in value]
    if isinstance(value, dict):
        return {k: local_paths(v) for k, v in value.items()}
    return value


def block_of(config: dict) -> int:
    """The block a config's run was: "chain" lists the boundaries it started after (block 1 has none)."""
    return len(config.get("chain", [])) + 1


def run_folder(model: str, block: int) -> str:
    return f"runs/{model}-cifar10-b{block}"


def local_args(train_args: list[str], run: str) -> list[str]:
    """The run's arguments as they run from a checkout: weight folders the repository's, --out the block's run folder."""
    args = local_paths(list(train_args))
    return [run if i and args[i - 1] == "--out" else a for i, a in enumerate(args)]


def local_config(config: dict, model: str) -> dict:
    """A landed config.json naming what a checkout has: the card's reproduce command and resume folder come from it."""
    config = local_paths(config)
    run = run_folder(model, block_of(config))
    config["train_args"] = local_args(config["train_args"], run)
    config["train_config"]["out"] = run
    return config


def stop_at(args: list[str], end_step: int) -> list[str]:
    """args stopping at end_step (`--steps END`, no `--max-minutes`): the learning rate is a function of the step alone
    (warmup, then constant or a `--lr-decay [FIRST,END]` fall in absolute steps), so this is the block as it ran, on
    any GPU (a lease stops on minutes, which depend on the GPU and who shares it)."""
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
        elif a == "--max-minutes":
            skip = True
        else:
            out.append(str(end_step) if i and args[i - 1] == "--steps" else a)
    return out if "--steps" in out else out + ["--steps", str(end_step)]


def block_command(train_args: list[str], model: str, block: int, ema_decay: float | None = None,
                  end_step: int | None = None) -> str:
    """The block's two commands as they run from a checkout (device paths replaced by the repository's); ema_decay:
    the extra EMA the export took (None: the recipe's); end_step: the step the block stopped at (stop_at)."""
    run = run_folder(model, block)
    args = local_args(train_args, run)
    args = stop_at(args, end_step) if end_step is not None else args
    train = "python -m driftin.train " + shlex.join(args)  # quoted as the card's command
    pick = f" --ema-decay {ema_decay}" if ema_decay is not None else ""
    return f"{train}\npython -m driftin.train export {run} weights/{model}-cifar10{pick}"


def land(res: Path, files_at: Path, model: str, arm: str, export: str = "export") -> str:
    src, dst = res / f"chain_{arm}", ROOT / "weights" / f"{model}-cifar10"
    for shard in rebuild_shards(files_at, arm, src / export):
        shutil.copy2(shard, dst / shard.name)
    for name in EXPORT_FILES:
        shutil.copy2(src / export / name, dst / name)
    for name in ("fid_curve.json", "fid_curve.png"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    with open(dst / "train_log.jsonl", "a") as log:
        log.write((src / "log.jsonl").read_text())
    config = local_config(json.loads((dst / "config.json").read_text()), model)
    write_config(dst, config)  # the export's own writer (driftin.hub)
    draw_samples(dst)  # with the sampler settings the card shows
    subprocess.run([sys.executable, "-m", "driftin.publish", "card", str(dst)], check=True, cwd=ROOT)
    extra = config.get("ema_decay", config["train_config"]["ema_decay"])
    return block_command(config["train_args"], model, block_of(config),
                         extra if extra != config["train_config"]["ema_decay"] else None, config.get("steps"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files_at", type=Path, help="the folder the collect call's files came back in (results.tgz + parts)")
    ap.add_argument("--arm", action="append", default=[], help="MODEL=ARM: land this arm's export (e.g. drift=drift_trial)")
    ap.add_argument("--models", nargs="+", default=["drift", "ddpm"])
    ap.add_argument("--export", action="append", default=[], help="MODEL=FOLDER: land this export folder of the model's arm "
                    "(e.g. drift=export_ema0.9998, an extra EMA that scored better; its shards collected as "
                    "chain_ARM/export_ema0.9998/model-...); default: export")
    ap.add_argument("--no-assets", action="store_true", help="skip the comparison grid, GIF and app screenshot")
    a = ap.parse_args(argv)
    def per_model(flag: str, pairs: list[str], default) -> dict[str, str]:  # MODEL=VALUE flags over default(model)
        given = dict(kv.split("=", 1) for kv in pairs)
        if set(given) - set(a.models):
            ap.error(f"{flag} names models not landed: {sorted(set(given) - set(a.models))}")
        return {m: given.get(m, default(m)) for m in a.models}

    arms = per_model("--arm", a.arm, lambda m: m)
    exports = per_model("--export", a.export, lambda m: "export")
    res = ROOT / "runs" / f"lease-{a.files_at.name}"
    res.mkdir(parents=True, exist_ok=True)
    with tarfile.open(a.files_at / "results.tgz") as tar:
        tar.extractall(res, filter="data")
    for model in a.models:
        print(f"\n# {model}: landed arm {arms[model]!r}; block command for training/chains/{model}-cifar10.sh:\n"
              + land(res, a.files_at, model, arms[model], exports[model]))
    if not a.no_assets:
        for cmd in (["scripts/make_assets.py", "compare"], ["scripts/make_assets.py", "gif"],
                    ["scripts/screenshot_app.py", "--ddpm-min-step", "22"]):
            subprocess.run([sys.executable, *cmd], check=True, cwd=ROOT)
    print(f"\nresults unpacked in {res}; now: the README tables, the chain scripts' comments, benchmarks/ from the lease")


if __name__ == "__main__":
    main()
