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


def _replace_atomically(path, fill, tmp_suffix: str, fsync: bool = False) -> None:
    """fill(binary file) writes a temporary file beside `path`, which then replaces it in one rename: a killed run
    never leaves half a file. fsync: on disk before the rename (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + tmp_suffix)
    with open(tmp, "wb") as f:
        fill(f)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def write_atomic(path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes atomically. JSON results, benchmark tables and compile artifacts go through it."""
    _replace_atomically(path, lambda f: f.write(data if isinstance(data, bytes) else data.encode()), f".tmp{os.getpid()}")


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save atomically, fsynced before the rename."""
    _replace_atomically(path, lambda f: torch.save(obj, f), ".tmp", fsync=True)


def save_checkpoint(path, *, model, ema, optimizer, step: int, config: dict, meta: dict | None = None,
                    objective: dict | None = None, ema_extra: dict | None = None) -> None:
    """meta: the run's bookkeeping as JSON (images seen, where the LR warmup restarted, the chain of blocks);
    objective: the objective's own state (drift's sample queues), tensors only; ema_extra: {decay: EMA module} of the
    config's ema_extra, stored under ema_key(decay)."""
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
    if ema_extra:
        state["ema_extra"] = {ema_key(d): clean_state_dict(m.state_dict()) for d, m in ema_extra.items()}
    atomic_torch_save(state, path)


def ema_key(decay: float) -> str:
    """A checkpoint's name for an extra EMA: the decay as Python writes the float (0.9998 -> "0.9998")."""
    return repr(float(decay))


def saved_emas(state: dict) -> dict[str, dict]:
    """Every EMA a loaded checkpoint holds, by ema_key(decay): the main one (its config's ema_decay) first, then the
    ema_extra ones. Resume and export pick theirs from this one map."""
    return {ema_key(state["config"]["ema_decay"]): state["ema"], **state.get("ema_extra", {})}


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
