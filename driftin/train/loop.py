"""The training loop (train), its outputs (checkpoints, snapshots, sample grids) and export to a weights folder."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from .. import distributed as dist
from ..checkpoint import ema_key, load_checkpoint, save_checkpoint, saved_emas
from ..data import load_dataset
from ..unet import UNet, count_params
from .compile_cache import artifacts_path, load_artifacts, save_artifacts
from .recipe import TrainConfig
from .trainer import Trainer


# -------------------------------------------------------------------- the loop
def weights_meta(config: dict, step: int, images_seen: int, chain: list, train_args: list[str] | None = None) -> dict:
    """What an inference folder records about its training: the next block starts from these. train_args: the
    command-line arguments of `driftin.train` that ran it, recorded as given (the card shows them as they were)."""
    meta = {"objective": config["objective"], "steps": int(step), "images_seen": int(images_seen),
            "chain": chain, "train_config": config, "ema_decay": config["ema_decay"]}  # export may pick an ema_extra
    if train_args is not None:
        meta["train_args"] = list(train_args)
    return meta


def train(cfg: TrainConfig, stop_after: int | None = None, quiet: bool = False, init_from: str | None = None,
          max_minutes: float | None = None, train_args: list[str] | None = None) -> dict:
    """Run (or resume) training; returns the final state. stop_after: halt at that step (for tests).

    init_from: an inference weights folder (or Hub id) to start from when there is no checkpoint:
    model and EMA take its weights, the step count and images seen continue from its meta (so do the
    LR schedule and the data order, both functions of the step), the optimizer starts fresh with a new
    warmup, and a {"event": "boundary"} record goes into log.jsonl. This is how a run continues on a
    new machine from committed weights. max_minutes: stop cleanly (checkpoint) at the first log step
    after this much wall time, so a block ends before its lease does. train_args: the command-line arguments
    of this invocation, recorded in checkpoints and weights folders (main() passes them)."""
    device = dist.init()
    out = Path(cfg.out)
    images, labels = load_dataset(cfg.data, "train")
    tr = Trainer(cfg, device, images, labels)
    model, ema = tr.model, tr.ema
    config = dataclasses.asdict(cfg)
    artifacts = artifacts_path() if cfg.compile else None  # compiled code of an earlier machine (compile_cache)
    if load_artifacts(artifacts):
        dist.print0(f"loaded compile artifacts from {artifacts}")

    start, ckpt, boundary = 0, out / "checkpoint.pt", None
    images_seen, chain, last_good = 0, [], None
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["config"] != json.loads(json.dumps(config)):
            diff = sorted(k for k, v in config.items() if json.loads(json.dumps(v)) != state["config"].get(k))
            dist.print0(f"note: resuming {ckpt} with changed config keys {diff}")
        tr.load_state(state)
        torch.set_rng_state(state["rng_cpu"])
        start, meta = state["step"], state["meta"]
        images_seen = int(meta.get("images_seen", start * state["config"].get("batch_size", cfg.batch_size)))
        chain, last_good = meta.get("chain", []), start
        dist.print0(f"resumed from {ckpt} at step {start}")
    elif init_from:
        meta = tr.init_from(init_from)
        start = tr.warm_start
        images_seen = int(meta.get("images_seen", start * meta.get("train_config", {}).get("batch_size", cfg.batch_size)))
        chain = list(meta.get("chain", [])) + [{"step": start, "images_seen": images_seen, "init_from": str(init_from)}]
        boundary = {"event": "boundary", "step": start, "images_seen": images_seen, "init_from": str(init_from),
                    "warmup_from": start, "warmup": cfg.warmup, "batch_size": cfg.batch_size,
                    "source_batch_size": meta.get("train_config", {}).get("batch_size")}
        dist.print0(f"initialised from {init_from} (step {start}, {images_seen:,} images seen); optimizer and warmup start fresh")
    if cfg.lr_decay and start < cfg.steps and start >= cfg.lr_decay[1]:  # absolute steps: easy to reuse by mistake
        raise ValueError(f"lr_decay {list(cfg.lr_decay)} ends at step {cfg.lr_decay[1]}, but this run starts at step "
                         f"{start}: every step would train at learning rate 0 (name this block's own [FIRST, END])")

    def run_meta():
        meta = {"warm_start": tr.warm_start, "images_seen": images_seen, "chain": chain}
        return meta if train_args is None else {**meta, "train_args": list(train_args)}

    def good():
        return (f"The last good checkpoint is {ckpt} (step {last_good})" if last_good is not None
                else f"No checkpoint was saved before it ({ckpt} does not hold a good state)")

    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        dist.print0(f"{cfg.objective} | {cfg.preset} {count_params(model) / 1e6:.1f}M params | world {tr.world} | "
                    f"global batch {cfg.batch_size} | {device}")

    last = stop_after if stop_after is not None else cfg.steps
    bar = None
    if dist.is_main() and not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=last, initial=start, dynamic_ncols=True)
    log_file = open(out / "log.jsonl", "a") if dist.is_main() else None
    if boundary and log_file:
        log_file.write(json.dumps(boundary) + "\n")
        log_file.flush()
    t_begin = t0 = time.time()
    seen, done, checked = 0, start, -1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def check(at):
        nonlocal checked
        if checked != at:  # one host sync per step at most, however many reasons to check
            tr.check_finite(good())
            checked = at

    for step in range(start, last):
        loss, logs, gnorm = tr.step(step)
        seen += cfg.batch_size
        images_seen += cfg.batch_size
        done = step + 1
        if bar is not None:
            bar.update(1)
        stop = False
        if done % cfg.log_every == 0 or done == last:
            check(done)
            elapsed = time.time() - t0
            # an objective may log its loss unscaled (drift multiplies the backward loss by the world size)
            shown = logs.pop("loss", loss).detach()
            rec = {"step": done, "loss": dist.all_reduce_mean(float(shown), device), "grad_norm": float(gnorm),
                   "lr": tr.lr(step), "img_per_s": seen / max(elapsed, 1e-9), "images_seen": images_seen,
                   "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0,
                   **{k: float(v) for k, v in logs.items()}}
            if log_file:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{rec['img_per_s']:.0f}")
            if max_minutes:  # every rank must agree, or the ones that go on would wait for the others forever
                over = torch.tensor(float(time.time() - t_begin >= 60 * max_minutes), device=device)
                stop = bool(dist.all_reduce_max_(over)) and done < last
            t0, seen = time.time(), 0
        final = done == last or stop
        if done % cfg.ckpt_every == 0 or final:
            check(done)  # never write a checkpoint over the last good one with broken weights
            if dist.is_main():
                save_checkpoint(ckpt, model=model, ema=ema, optimizer=tr.opt, step=done, config=config, meta=run_meta(),
                                objective=tr.objective_state(), ema_extra=tr.ema_extra)
            last_good = done
        if cfg.snapshot_every and done % cfg.snapshot_every == 0:
            check(done)
            if dist.is_main():
                save_snapshot(ema, out, weights_meta(config, done, images_seen, chain, train_args))
        if dist.is_main() and cfg.sample_every and (done % cfg.sample_every == 0 or final):
            save_grid(ema, cfg, out / f"samples_{done:07d}.png")
        if stop:
            dist.print0(f"stopping at step {done}: the {max_minutes} min limit is reached; re-run the same command to resume")
            break
    if bar is not None:
        bar.close()
    if log_file:
        log_file.close()
    if dist.is_main() and artifacts is not None:  # every rank compiled the same graphs: one file
        size = save_artifacts(artifacts)
        dist.print0(f"compile artifacts: {size:,} bytes -> {artifacts}" if size else "compile artifacts: nothing compiled")
    dist.barrier()
    return {"model": model, "ema": ema, "optimizer": tr.opt, "step": done, "images_seen": images_seen, "trainer": tr}


def save_snapshot(ema, out: Path, meta: dict) -> Path:
    """The EMA as an inference folder <out>/snapshots/step_XXXXXXX (loads with driftin.hub.load_pretrained)."""
    from ..hub import save_pretrained

    return save_pretrained(ema, Path(out) / "snapshots" / f"step_{meta['steps']:07d}", meta)


def save_grid(ema, cfg: TrainConfig, path: Path, n: int = 100):
    from torchvision.utils import save_image

    from ..generate import generate

    labels = torch.arange(n) % cfg.num_classes if cfg.class_cond else None
    method = "drift" if cfg.objective == "drift" else "ddim"
    was_training = ema.training
    ema.eval()
    imgs = generate(ema, n, 0, method=method, steps=50, class_labels=labels)
    ema.train(was_training)
    save_image(imgs, path, nrow=10)


def export(run_dir: str | Path, folder: str | Path, ema_decay: float | None = None) -> Path:
    """Write the EMA weights of a run as an inference folder (safetensors + config.json). ema_decay: which EMA (the
    config's ema_decay, the default, or one of its ema_extra); the folder's config.json records it."""
    from ..hub import save_pretrained

    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    cfg = TrainConfig(**state["config"])
    decay = cfg.ema_decay if ema_decay is None else float(ema_decay)
    emas = saved_emas(state)
    if ema_key(decay) not in emas:
        raise ValueError(f"{run_dir} has no EMA with decay {decay}: it kept {[float(k) for k in emas]}")
    model = UNet(cfg.model_config())
    model.load_state_dict(emas[ema_key(decay)])
    run = state["meta"]
    seen = run.get("images_seen", state["step"] * cfg.batch_size)  # checkpoints before images_seen was recorded
    meta = weights_meta(state["config"], state["step"], seen, run.get("chain", []), run.get("train_args"))
    return save_pretrained(model, folder, {**meta, "ema_decay": decay})
