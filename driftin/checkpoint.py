"""Resume state (atomic, loaded without executing pickled code) for the trainer, and write_atomic: the atomic writer of
JSON results, benchmark tables and compile artifacts."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def clean_state_dict(sd: dict) -> dict:
    """Drop the `_orig_mod.` (torch.compile) and `module.` (DDP) prefixes so weights load anywhere."""
    out = {}
    for k, v in sd.items():
        for prefix in ("_orig_mod.", "module."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k.replace("._orig_mod.", ".")] = v
    return out


def write_atomic(path, data: str | bytes) -> None:
    """Write text or bytes atomically (a temporary file beside it, then a rename): a killed run never leaves half a
    file. JSON results, benchmark tables and compile artifacts go through it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data)
    os.replace(tmp, path)


def atomic_torch_save(obj, path: str | Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a kill never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path, *, model, ema, optimizer, step: int, config: dict, meta: dict | None = None,
                    objective: dict | None = None) -> None:
    """meta: the run's bookkeeping as JSON (images seen, where the LR warmup restarted, the chain of blocks);
    objective: the objective's own state (drift's sample queues), tensors only."""
    state = {
        "model": clean_state_dict(model.state_dict()),
        "ema": clean_state_dict(ema.state_dict()),
        "optimizer": optimizer.state_dict(),
        "step": int(step),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "config": json.dumps(config),  # plain JSON text, not a pickled object
        "meta": json.dumps(meta or {}),
    }
    if objective:
        state["objective"] = objective
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict:
    """weights_only=True: the unpickler accepts tensors and plain containers only, never code."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file, keep the cause
        raise ValueError(f"checkpoint {path} could not be loaded safely (corrupt, truncated or not a driftin checkpoint): {e}") from e
    missing = {"model", "ema", "optimizer", "step", "config"} - set(state)
    if missing:
        raise ValueError(f"checkpoint {path} lacks {sorted(missing)}")
    state["config"] = json.loads(state["config"])
    state["meta"] = json.loads(state.get("meta", "{}"))  # checkpoints older than the meta field have none
    return state
