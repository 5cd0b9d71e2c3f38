"""What a model card is built from: the weights folder's eval.json, train_log.jsonl, infer_*.json and config."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _num(v):
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def objective_of(cfg: dict) -> str:
    """A weights folder's objective ("drift" or "ddpm") from its config.json: its own record, else its training
    config's, else drift (the oldest folders recorded neither)."""
    return cfg.get("objective") or (cfg.get("train_config") or {}).get("objective") or "drift"


# The metric keys `python -m driftin.eval` writes, card row name -> eval.json key.
_METRIC_KEYS = {"fid": "fid", "kid": "kid", "fd": "fd", "precision": "precision", "recall": "recall",
                "is": "is_analogue", "class_acc": "class_acc"}


def load_eval(folder: str | Path) -> list[dict]:
    """Rows of the folder's eval.json as `python -m driftin.eval` writes it ({entry key: entry}): name, fid, kid,
    fd, precision, recall, is, class_acc, n, method, steps, guidance, classes, split. Entries with no finite
    metric are skipped; a missing or unreadable file gives []."""
    raw = _read_json(Path(folder) / "eval.json")
    rows = []
    for name, e in (raw.items() if isinstance(raw, dict) else []):
        if not isinstance(e, dict):
            continue
        row = {k: _num(e.get(key)) for k, key in _METRIC_KEYS.items()}
        if all(v is None for v in row.values()):
            continue
        steps = _num(e.get("steps"))
        row.update(name=name, n=int(_num(e.get("n")) or 0) or None, method=e.get("method"),
                   steps=int(steps) if steps is not None else None, guidance=_num(e.get("guidance")),
                   classes=e.get("classes"), split=(e.get("reference") or {}).get("split", "train"),
                   spacing=e.get("spacing", "uniform"),
                   guidance_interval=tuple(e["guidance_interval"]) if e.get("guidance_interval") else None)
        rows.append(row)
    order = {"drift": 0, "ddim": 1, "ddpm": 2}
    rows.sort(key=lambda r: (order.get(str(r["method"]), 9), r["steps"] or 0, r["guidance"] or 0, -(r["n"] or 0), str(r["name"])))
    return rows


def read_log(path: str | Path) -> list[dict]:
    """log.jsonl records sorted by step; a resumed run's repeated steps keep the last record."""
    by_step = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if isinstance(rec, dict) and _num(rec.get("step")) is not None:
            by_step[int(rec["step"])] = rec
    return [by_step[s] for s in sorted(by_step)]


def copy_speed_files(folder: str | Path, repo_root: str | Path | None) -> list[Path]:
    """Copy <repo>/benchmarks/infer_*.json (sampling speed from `python -m driftin.bench infer`) into the folder,
    replacing older copies, so that the card can be regenerated from the folder alone."""
    copied = []
    for f in sorted(Path(repo_root, "benchmarks").glob("infer_*.json")) if repo_root is not None else []:
        dest = Path(folder) / f.name
        if _read_json(f) is not None and f.resolve() != dest.resolve():
            shutil.copyfile(f, dest)
            copied.append(dest)
    return copied


def load_speed(folder: str | Path) -> list[tuple[str, dict, list[dict]]]:
    """(file name, meta, rows) of the folder's infer_*.json as `python -m driftin.bench infer` writes them
    ({"meta": ..., "rows": [...]}); files without rows are skipped."""
    out = []
    for f in sorted(Path(folder).glob("infer_*.json")):
        raw = _read_json(f)
        rows = [r for r in raw.get("rows", []) if isinstance(r, dict)] if isinstance(raw, dict) else []
        if rows:
            meta = raw.get("meta")
            out.append((f.name, meta if isinstance(meta, dict) else {}, rows))
    return out


def count_parameters(model_cfg: dict) -> int | None:
    """Parameter count of the UNet for a config dict, built on the meta device (no memory, no init)."""
    try:
        import torch

        from ..config import UNetConfig, from_dict
        from ..unet import UNet, count_params

        with torch.device("meta"):
            return count_params(UNet(from_dict(UNetConfig, model_cfg)))
    except Exception:  # noqa: BLE001 - the card then omits the number
        return None


def _weights_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _repo_root() -> Path:
    from ..data import REPO

    return REPO
