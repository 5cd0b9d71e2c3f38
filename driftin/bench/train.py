"""Training throughput: the trainer's own step (driftin.train.Trainer.step) against a naive eager step.

python -m driftin.bench train --objectives ddpm drift --presets small base \
    --out benchmarks/train_h200.json --md benchmarks/train_h200.md                       # GPU
python -m driftin.bench train --device cpu --presets tiny --variants baseline eager \
    --steps 2 --warmup 1 --num-images 64 --out /tmp/train.json                           # CPU smoke test

Each (objective, preset, batch) is run in three variants of the same step on the same recipe
(training/ddpm_cifar10.json, training/drift_cifar10.json; preset and batch replaced); only
driftin.train.StepOptions differ:
  baseline   plain eager bf16 step: no compile, AdamW and EMA as loops over parameters, the batch drawn
             on the CPU (per-class pools, CPU generator) and copied over, the loss read on the host every step
  eager      the trainer's step without compile: data, indices and flips on the device, fused AdamW,
             foreach EMA, channels_last, finiteness checked on the device
  compiled   the trainer's step as `compile: true` trains (the DDPM loss compiled whole, drift's generator compiled)
  graphs     compiled with mode "reduce-overhead" (the compiled graphs replayed as CUDA graphs)
Time: --warmup steps first (the first one compiles; first_step_s), then --steps steps back to back between
two CUDA events (wall clock on the CPU): ms_per_step = elapsed / steps, img/s = batch / ms_per_step.
--profile DIR: after the timed steps, torch.profiler over --profile-steps more steps (driftin.bench.profile):
device-busy time against wall time, device ops and host syncs per step in the row, op tables in DIR.
FLOPs: torch.utils.flop_counter.FlopCounterMode over one eager step (forward + backward; matmuls,
convolutions, attention; the drift encoder and field included), so TFLOP/s = flop_per_step / ms_per_step
and MFU = TFLOP/s / --peak-tflops (989: dense bf16 of an H100/H200 SXM). Data: random uint8 images
(--data synthetic, speed does not depend on the pixels) or CIFAR-10 (--data cifar10).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import time
from pathlib import Path

import torch

from driftin.bench.timing import Timer
from driftin.config import from_dict
from driftin.checkpoint import write_atomic
from driftin.eval import write_json
from driftin.train import StepOptions, Trainer, TrainConfig
from driftin.unet import UNet, count_params

RECIPES = {"ddpm": "training/ddpm_cifar10.json", "drift": "training/drift_cifar10.json"}
VARIANTS = {
    "baseline": lambda cfg, dev: StepOptions.naive(),
    "eager": lambda cfg, dev: StepOptions.for_config(dataclasses.replace(cfg, compile=False), dev),
    "compiled": lambda cfg, dev: StepOptions.for_config(dataclasses.replace(cfg, compile=True), dev),
    "graphs": lambda cfg, dev: StepOptions.for_config(dataclasses.replace(cfg, compile=True, compile_mode="reduce-overhead"), dev),
}


def recipe_config(path: str | Path, preset: str, batch: int | None) -> TrainConfig:
    rec = json.loads(Path(path).read_text())
    rec.update({"preset": preset, "sample_every": 0, "out": "/nonexistent"})  # the bench never writes a run
    if batch:
        rec["batch_size"] = batch
    return from_dict(TrainConfig, rec)


def synthetic_data(n: int, num_classes: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(n) % max(num_classes, 1)


def count_flops(cfg: TrainConfig, device, images, labels) -> int:
    """FLOPs of one training step (forward + backward), counted on the eager step."""
    from torch.utils.flop_counter import FlopCounterMode

    tr = Trainer(cfg, device, images, labels, VARIANTS["eager"](cfg, device))
    tr.step(0)  # cuDNN / encoder set-up outside the count
    with FlopCounterMode(display=False) as fc:
        tr.step(1)
    return int(fc.get_total_flops())


def time_steps(tr: Trainer, warmup: int, steps: int, device) -> dict:
    timer = Timer(device)
    loss, first = None, None
    for i in range(warmup):
        if i == 0:  # the first step compiles: host wall time until the device is done
            (loss, _, _), ms = timer.wall(lambda: tr.step(0))
            first = ms / 1e3
        else:
            loss, _, _ = tr.step(i)

    def timed():
        out = None
        for i in range(warmup, warmup + steps):
            out = tr.step(i)
        return out

    out, ms = timer.call(timed)
    loss = out[0] if out is not None else loss
    tr.check_finite("(benchmark)")
    return {"ms_per_step": ms / steps, "first_step_s": first, "loss": float(loss.detach())}


def run_one(cfg: TrainConfig, opts: StepOptions, device, images, labels, warmup: int, steps: int,
            profile_to: Path | None = None, profile_steps: int = 5) -> dict:
    """One row: the trainer's step under `opts` (a VARIANTS entry), timed and optionally profiled."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    if opts.compile:
        torch._dynamo.reset()  # each row compiles its own model; stale guards would count against the recompile limit
    tr = Trainer(cfg, device, images, labels, opts)
    try:
        row = time_steps(tr, warmup, steps, device)
        row["compile_fallback"] = tr.compile_error  # set when compiling failed and the step ran eager
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        if profile_to:
            from driftin.bench.profile import profile_calls

            step = tr.step
            row["profile"] = profile_calls(lambda i: step(warmup + steps + i), profile_steps, device, profile_to)
        return row
    finally:
        del tr
        gc.collect()


def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine() or "cpu")


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"# Training throughput ({m['device_name']}, torch {m['torch']}, peak {m['peak_tflops']} TFLOP/s)", "",
             f"`{m['command']}`", "",
             "| objective | preset | batch | variant | ms/step | img/s | TFLOP/s | MFU | × baseline | first step s | peak GB |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['objective']} | {r['preset']} | {r['batch']} | {r['variant']} | {r['status']} | | | | | | |")
            continue
        f = lambda v, fmt: "" if v is None else format(v, fmt)  # noqa: E731
        nchw = " NCHW" if m["device"].startswith("cuda") and r.get("channels_last") is False and r["variant"] != "baseline" else ""
        nchw += " force-layout" if r.get("force_layout") else ""
        nchw += " + field" if r.get("compile_field") else ""
        nchw += " cudnn-benchmark" if r.get("cudnn_benchmark") else ""
        lines.append(f"| {r['objective']} | {r['preset']} | {r['batch']} | {r['variant']}{nchw}{' (eager fallback)' if r.get('compile_fallback') else ''} "
                     f"| {r['ms_per_step']:.2f} | {r['img_per_s']:,.0f} | {f(r['tflops'], '.1f')} | {f(r['mfu'], '.1%')} "
                     f"| {f(r.get('speedup_vs_baseline'), '.2f')} | {f(r['first_step_s'], '.1f')} | {f(r['peak_mem_gb'], '.1f')} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m driftin.bench train", description=__doc__.split("\n")[0])
    ap.add_argument("--objectives", nargs="+", default=["ddpm", "drift"], choices=list(RECIPES))
    ap.add_argument("--presets", nargs="+", default=["small", "base"])
    ap.add_argument("--batch", nargs="+", type=int, default=None, help="global batch sizes (default: each recipe's own)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--ddpm-config", default=RECIPES["ddpm"])
    ap.add_argument("--drift-config", default=RECIPES["drift"])
    ap.add_argument("--compile-mode", default=None, help="override the recipes' compile_mode (e.g. reduce-overhead)")
    ap.add_argument("--channels-last", default=None, choices=["true", "false"], help="override the recipes' channels_last")
    ap.add_argument("--drift-encoder-weights", default=None,
                    help="override the drift recipe's encoder weights (e.g. weights/encoder-resnet-bn-cifar10, blocks 4-7's)")
    ap.add_argument("--force-layout", default=None, choices=["true", "false"],
                    help="override the recipes' compile_force_layout (inductor layout optimisation in backward graphs too)")
    ap.add_argument("--compile-field", default=None, choices=["true", "false"],
                    help="override the drift recipe's compile_field (its field loss compiled too)")
    ap.add_argument("--cudnn-benchmark", default=None, choices=["true", "false"],
                    help="override the recipes' cudnn_benchmark (cuDNN's autotuner picks each convolution's algorithm; CUDA only)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first (the first one compiles)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100/H200 SXM: 989)")
    ap.add_argument("--data", default="synthetic", choices=["synthetic", "cifar10"])
    ap.add_argument("--num-images", type=int, default=50_000, help="synthetic dataset size")
    ap.add_argument("--profile", default=None, help="folder for per-row profiler tables (adds a 'profile' summary to each row)")
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="benchmarks/train.json")
    ap.add_argument("--md", default=None, help="also write a markdown table here")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())

    import sys

    result = {"meta": {"device_name": device_name(device), "device": str(device), "torch": torch.__version__,
                       "peak_tflops": a.peak_tflops, "steps": a.steps, "warmup": a.warmup, "data": a.data,
                       "command": "python -m driftin.bench train " + " ".join(sys.argv[2:] if argv is None else argv),
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "variants": {"baseline": "eager bf16, loops over parameters for AdamW and EMA, CPU-drawn batch, host sync every step",
                                    "eager": "trainer step without compile", "compiled": "trainer step with compile",
                                    "graphs": "trainer step compiled with mode reduce-overhead (CUDA graphs)"}},
              "rows": []}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        write_json(out, result)  # after every row, atomically: a killed run keeps what it measured
        if a.md:
            write_atomic(a.md, markdown(result))  # likewise: never half a table

    datasets = {}  # "cifar10" or the synthetic data per class count
    for objective in a.objectives:
        recipe = a.ddpm_config if objective == "ddpm" else a.drift_config
        for p in a.presets:
            for batch in a.batch or [None]:
                cfg = recipe_config(recipe, p, batch)
                if cfg.objective != objective:
                    raise SystemExit(f"{recipe} is a {cfg.objective!r} recipe, not {objective!r}")
                if a.compile_mode:
                    cfg = dataclasses.replace(cfg, compile_mode=a.compile_mode)
                if a.channels_last:
                    cfg = dataclasses.replace(cfg, channels_last=a.channels_last == "true")
                if a.force_layout:
                    cfg = dataclasses.replace(cfg, compile_force_layout=a.force_layout == "true")
                if a.compile_field:
                    cfg = dataclasses.replace(cfg, compile_field=a.compile_field == "true")
                if a.cudnn_benchmark:
                    cfg = dataclasses.replace(cfg, cudnn_benchmark=a.cudnn_benchmark == "true")
                if a.drift_encoder_weights and objective == "drift":
                    cfg = dataclasses.replace(cfg, drift=dataclasses.replace(cfg.drift, encoder_weights=a.drift_encoder_weights))
                key = {"objective": objective, "preset": p, "batch": cfg.batch_size, "recipe": recipe,
                       **({"encoder_weights": cfg.drift.encoder_weights} if objective == "drift" else {})}
                if objective == "drift" and cfg.class_cond and cfg.batch_size % cfg.num_classes:
                    result["rows"].extend({**key, "variant": v, "status": f"skipped: batch not a multiple of {cfg.num_classes} classes"}
                                          for v in a.variants)
                    save()
                    continue
                data_key = "cifar10" if a.data == "cifar10" else cfg.num_classes  # made once, shared by the rows
                if data_key not in datasets:
                    if a.data == "cifar10":
                        from driftin.data import load_dataset

                        datasets[data_key] = load_dataset("cifar10", "train")
                    else:
                        datasets[data_key] = synthetic_data(a.num_images, cfg.num_classes)
                images, labels = datasets[data_key]
                try:
                    flops = count_flops(cfg, device, images, labels)
                except Exception as e:  # noqa: BLE001 - e.g. out of memory: record and go on
                    flops = None
                    print(f"{objective} {p} {cfg.batch_size}: FLOP count failed: {type(e).__name__}: {e}", flush=True)
                with torch.device("meta"):  # shapes only: no weights initialised to count them
                    params = count_params(UNet(cfg.model_config()))
                base_ms = None
                for v in a.variants:
                    opts = VARIANTS[v](cfg, device)  # the variant's own mode: "graphs" compiles with reduce-overhead
                    row = {**key, "variant": v, "params_m": params / 1e6, "flop_per_step": flops, "steps": a.steps, "warmup": a.warmup,
                           "channels_last": opts.channels_last,  # the variant's own: the naive baseline runs NCHW
                           "compile_mode": opts.compile_mode if opts.compile else None,
                           "force_layout": opts.force_layout if opts.compile else None,  # it changes compiled steps only
                           "compile_field": opts.compile_field if opts.compile and objective == "drift" else None,
                           # every variant's Trainer sets it (trainer.set_backends), on CUDA only
                           "cudnn_benchmark": cfg.cudnn_benchmark if device.type == "cuda" else None}
                    try:
                        layout = ("_nchw" if device.type == "cuda" and not cfg.channels_last else "") + (
                            "_forcelayout" if row["force_layout"] else "") + ("_field" if row["compile_field"] else "") + (
                            "_cudnnbench" if row["cudnn_benchmark"] else "")
                        prof = Path(a.profile) / f"{objective}_{p}_{cfg.batch_size}_{v}{layout}.txt" if a.profile else None
                        row.update(run_one(cfg, opts, device, images, labels, a.warmup, a.steps, prof, a.profile_steps), status="ok")
                    except Exception as e:  # noqa: BLE001
                        row.update(status=f"error: {type(e).__name__}: {str(e)[:300]}")
                        result["rows"].append(row)
                        print(f"{objective} {p} bs {cfg.batch_size} {v}: {row['status']}", flush=True)
                        save()
                        continue
                    ms = row["ms_per_step"]
                    row["img_per_s"] = cfg.batch_size / ms * 1e3
                    row["tflops"] = flops / (ms * 1e-3) / 1e12 if flops else None
                    row["mfu"] = row["tflops"] / a.peak_tflops if flops else None
                    if v == "baseline":
                        base_ms = ms
                    row["speedup_vs_baseline"] = base_ms / ms if base_ms else None
                    result["rows"].append(row)
                    print(f"{objective} {p} bs {cfg.batch_size} {v}: {ms:.2f} ms/step, {row['img_per_s']:,.0f} img/s"
                          + (f", {row['tflops']:.1f} TFLOP/s, MFU {row['mfu']:.1%}" if flops else "")
                          + (f" (compile failed, eager: {row['compile_fallback']})" if row.get("compile_fallback") else ""), flush=True)
                    save()
    save()
    print(f"wrote {out}" + (f" and {a.md}" if a.md else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
